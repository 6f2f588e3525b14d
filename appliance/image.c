/* Image versions on top of the chunk store (see image.h).
 *
 * Layout (under the store root):
 *     images/NAME/versions/N.manifest   version N of NAME (lib/manifest.h format)
 *     images/NAME/versions/N.removed    tombstone of a removed version: keeps N
 *                                       from being allocated again
 *     images/NAME/current               "N\n": the current version
 *
 * Version ids: a new version gets max(N over *.manifest and *.removed) + 1 and
 * is published with link(2) from a fsynced temp file, which fails with EEXIST
 * when a concurrent import took N first; the loser re-encodes with N + 1. So
 * ids are unique and never reused, and a version is visible only once its
 * manifest is complete and every chunk it names is durable (store_sync()
 * before publishing: data, flush, then metadata).
 *
 * Import reads the source in chunk-size blocks, skipping holes with
 * SEEK_DATA, and hashes each block once; zero blocks are only marked in the
 * manifest. Images in another format (qcow2, vmdk, vdi, vhdx, vpc, qed,
 * detected by their magic) are first converted with `qemu-img convert -O raw`
 * into the store's tmp/ directory.
 *
 * Import, export and verify hold the store lock shared; gc takes it
 * exclusively (see gc.c), so a sweep never sees a half-imported version. */
#include "appliance/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/chunkset.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/spawn.h"
#include "lib/util.h"

int image_ref_parse(const char *ref, char name[65], uint32_t *version)
{
	const char *at = strchr(ref, '@');
	size_t n = at ? (size_t)(at - ref) : strlen(ref);
	uint64_t v;

	if (n == 0 || n > 64)
		return -EINVAL;
	memcpy(name, ref, n);
	name[n] = '\0';
	if (!name_is_valid(name))
		return -EINVAL;
	*version = 0;
	if (at) {
		if (at[1] < '1' || at[1] > '9' || parse_u64(at + 1, &v) < 0 || v == 0 ||
		    v > MANIFEST_MAX_VERSION)
			return -EINVAL;
		*version = (uint32_t)v;
	}
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Lists the live versions of name (ascending, heap array) and the highest id
 * ever used (live or removed). -ENOENT when the image does not exist. */
static int scan_versions(struct store *s, const char *name, uint32_t **out, size_t *n,
			 uint32_t *max_used)
{
	char p[4096];
	int r;

	if ((r = store_path(s, p, sizeof(p), "images/%s/versions", name)) < 0)
		return r;
	return store_scan_ids(p, out, n, max_used);
}

/* The pointer file's value: 0 or -ENOENT (no pointer) or -EBADMSG. */
static int read_pointer(struct store *s, const char *name, uint32_t *version)
{
	char p[4096], *buf = NULL;
	size_t len;
	uint64_t v;
	int r;

	if ((r = store_path(s, p, sizeof(p), "images/%s/current", name)) < 0)
		return r;
	r = io_read_file(p, 32, &buf, &len);
	if (r < 0)
		return r;
	if (len < 2 || buf[len - 1] != '\n') {
		r = -EBADMSG;
	} else {
		buf[len - 1] = '\0';
		r = parse_u64(buf, &v) < 0 || v == 0 || v > MANIFEST_MAX_VERSION ? -EBADMSG : 0;
	}
	if (r < 0)
		log_warn("current pointer '%s' is damaged; using the latest version", p);
	else
		*version = (uint32_t)v;
	free(buf);
	return r;
}

/* The pointer names a live version, or (no pointer yet: a crash between an
 * image's first version and its pointer; or the pointed version is gone: a
 * crash inside a forced rm) the latest live version is current. */
int image_current(struct store *s, const char *name, uint32_t *version)
{
	char p[4096];
	uint32_t *vers = NULL, max_used, v = 0;
	size_t n = 0;
	int r;

	if (read_pointer(s, name, &v) == 0 &&
	    store_path(s, p, sizeof(p), "images/%s/versions/%u.manifest", name, v) == 0 &&
	    access(p, F_OK) == 0) {
		*version = v;
		return 0;
	}
	r = scan_versions(s, name, &vers, &n, &max_used);
	if (r == 0 && n == 0)
		r = -ENOENT;
	if (r == 0)
		*version = vers[n - 1];
	free(vers);
	return r;
}

static int set_current(struct store *s, const char *name, uint32_t version)
{
	char p[4096], buf[16];
	int r, n;

	if ((r = store_path(s, p, sizeof(p), "images/%s/current", name)) < 0)
		return r;
	n = snprintf(buf, sizeof(buf), "%u\n", version);
	r = io_write_file_atomic(p, buf, (size_t)n, 0644);
	if (r < 0)
		log_error("cannot set current version of '%s' to %u: %s", name, version,
			  strerror(-r));
	return r;
}

/* Loads and checks the manifest file at path: it must decode and name the
 * expected image and version (when name is not NULL). */
static int load_manifest_file(const char *path, const char *name, uint32_t version,
			      struct manifest **out, char *err, size_t errsize)
{
	char *buf = NULL;
	size_t len;
	int r;

	r = io_read_file(path, MANIFEST_MAX_BYTES, &buf, &len);
	if (r < 0) {
		snprintf(err, errsize, "cannot read: %s", strerror(-r));
		return r == -EFBIG ? -EBADMSG : r;
	}
	r = manifest_decode(buf, len, out, err, errsize);
	free(buf);
	if (r < 0)
		return -EBADMSG;
	if (name && (strcmp((*out)->name, name) != 0 || (*out)->version != version)) {
		snprintf(err, errsize, "manifest says %s@%u, its file name %s@%u", (*out)->name,
			 (*out)->version, name, version);
		manifest_free(*out);
		*out = NULL;
		return -EBADMSG;
	}
	return 0;
}

int image_manifest_load(struct store *s, const char *name, uint32_t version, struct manifest **out)
{
	char p[4096], err[256];
	struct stat st;
	int r;

	*out = NULL;
	if (!name_is_valid(name))
		return -EINVAL;
	if (version == 0) {
		r = image_current(s, name, &version);
		if (r < 0)
			return r == -ENOENT ? -ENOENT : r;
	}
	if ((r = store_path(s, p, sizeof(p), "images/%s/versions/%u.manifest", name, version)) < 0)
		return r;
	if (stat(p, &st) < 0)
		return -errno;
	r = load_manifest_file(p, name, version, out, err, sizeof(err));
	if (r < 0)
		log_error("manifest of %s@%u ('%s') is damaged: %s", name, version, p, err);
	return r;
}

/* ---- import ---- */

static const char *detect_format(int fd)
{
	uint8_t b[72];
	ssize_t n = io_pread_full(fd, b, sizeof(b), 0);

	if (n < 8)
		return "raw";
	if (memcmp(b, "QFI\xfb", 4) == 0)
		return "qcow2";
	if (memcmp(b, "KDMV", 4) == 0 || memcmp(b, "# Disk DescriptorFile", 8) == 0)
		return "vmdk";
	if (memcmp(b, "vhdxfile", 8) == 0)
		return "vhdx";
	if (memcmp(b, "conectix", 8) == 0)
		return "vpc";
	if (memcmp(b, "QED\0", 4) == 0)
		return "qed";
	if (n >= 68 && b[64] == 0x7f && b[65] == 0x10 && b[66] == 0xda && b[67] == 0xbe)
		return "vdi";
	return "raw";
}

static int convert_to_raw(struct store *s, const char *src, const char *fmt, int timeout_ms,
			  char *tmp, size_t tmpsize)
{
	struct spawn_opts so = SPAWN_OPTS_INIT;
	char *err = NULL;
	int fd, r, code = 0;

	if ((r = store_path(s, tmp, tmpsize, "tmp/import.XXXXXX")) < 0)
		return r;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	close(fd);
	{
		const char *argv[] = {"qemu-img", "convert", "-q", "-f", fmt,
				      "-O",	  "raw",     src,  tmp,	 NULL};

		so.timeout_ms = timeout_ms > 0 ? timeout_ms : 3600 * 1000;
		so.err = &err;
		so.out_max = 4096;
		r = spawn_run(argv, &so, &code);
	}
	if (r < 0 || code != 0) {
		log_error("cannot convert '%s' (%s) to raw with qemu-img: %s", src, fmt,
			  r < 0 ? strerror(-r) : (err && *err ? err : "failed"));
		unlink(tmp);
		free(err);
		return r < 0 ? r : -EINVAL;
	}
	free(err);
	return 0;
}

static int is_zero(const uint8_t *p, size_t n)
{
	static const uint8_t z[64];

	if (n < 64)
		return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
	return memcmp(p, z, 64) == 0 && memcmp(p, p + 64, n - 64) == 0;
}

/* Publishes m under the next free version id of its image (see top). */
static int publish_version(struct store *s, struct manifest *m)
{
	char dir[4096];
	uint32_t max_used = 0;
	int r;

	if ((r = store_path(s, dir, sizeof(dir), "images/%s/versions", m->name)) < 0)
		return r;
	if (access(dir, F_OK) < 0) {
		char p[4096];

		if ((r = io_mkdir_p(dir, 0755)) < 0)
			return r;
		/* make the new directories themselves durable */
		if ((r = store_path(s, p, sizeof(p), "images/%s", m->name)) < 0 ||
		    (r = io_fsync_dir(p)) < 0 || (r = store_path(s, p, sizeof(p), "images")) < 0 ||
		    (r = io_fsync_dir(p)) < 0)
			return r;
	}
	r = scan_versions(s, m->name, NULL, NULL, &max_used);
	if (r < 0)
		return r;
	return store_publish_manifest(dir, m, max_used);
}

int image_import(struct store *s, const char *name, const char *path, const struct import_opts *o,
		 struct import_result *res)
{
	static const struct import_opts defaults;
	char conv[4096] = "";
	const char *fmt;
	struct manifest *m = NULL;
	struct stat st;
	uint8_t *buf = NULL;
	uint32_t cs, cur = 0;
	off_t end, next_data = 0;
	int fd = -1, r, had_current;

	if (!o)
		o = &defaults;
	memset(res, 0, sizeof(*res));
	cs = o->chunk_size ? o->chunk_size : STORE_DEFAULT_CHUNK;
	if (!name_is_valid(name)) {
		log_error("invalid image name '%s': use 1-64 of A-Z a-z 0-9 . _ -, not starting "
			  "with . or -",
			  name);
		return -EINVAL;
	}
	if (manifest_geometry_ok(0, cs) < 0) {
		log_error("invalid chunk size %u: use a power of two from 4K to 64M", cs);
		return -EINVAL;
	}
	/* O_NONBLOCK: a FIFO must be refused below, not block the open */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		log_error("cannot open '%s': %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		log_error("cannot import '%s': not a regular file or block device", path);
		goto out;
	}
	r = store_lock(s, LOCK_SH);
	if (r < 0)
		goto out;
	if (!o->chunk_size && image_current(s, name, &cur) == 0) {
		/* a new version keeps the image's chunk size: machines' caches are
		 * laid out for one, and a gold update to another is refused there */
		struct manifest *prev = NULL;

		if (image_manifest_load(s, name, cur, &prev) == 0 && prev->chunk_size != cs) {
			log_info("%s@%u has chunks of %u bytes: the new version too (--chunk-size "
				 "sets another)",
				 name, cur, prev->chunk_size);
			cs = prev->chunk_size;
		}
		manifest_free(prev);
	}
	fmt = o->format ? o->format : detect_format(fd);
	if (strcmp(fmt, "raw") != 0) {
		log_debug("converting '%s' from %s to raw", path, fmt);
		r = convert_to_raw(s, path, fmt, o->qemu_timeout_ms, conv, sizeof(conv));
		if (r < 0) {
			conv[0] = '\0';
			goto out;
		}
		close(fd);
		fd = open(conv, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			goto out;
		}
	}
	end = lseek(fd, 0, SEEK_END);
	if (end < 0) {
		r = -errno;
		goto out;
	}
	if (end % 512 != 0) {
		log_error("cannot import '%s': its size %lld is not a multiple of 512 (not a disk "
			  "or filesystem image?)",
			  path, (long long)end);
		r = -EINVAL;
		goto out;
	}
	r = manifest_new(name, (uint64_t)end, cs, &m);
	if (r < 0) {
		log_error("cannot import '%s': %lld bytes is too large for chunk size %u", path,
			  (long long)end, cs);
		goto out;
	}
	m->kind = o->kind;
	m->created = now_unix();
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	buf = xmalloc(cs);
	for (uint64_t i = 0; i < m->nchunks; i++) {
		uint64_t off = i * cs;
		uint32_t len = manifest_chunk_len(m, i);
		ssize_t n;
		int was_new;

		if ((off_t)off >= next_data) {
			next_data = lseek(fd, (off_t)off, SEEK_DATA);
			if (next_data < 0)
				next_data = errno == ENXIO ? end : (off_t)off;
		}
		if ((uint64_t)next_data >= off + len) {
			res->zero_chunks++;
			goto progress; /* a hole: zero chunk, already marked */
		}
		n = io_pread_full(fd, buf, len, (off_t)off);
		if (n < 0 || (size_t)n != len) {
			r = n < 0 ? (int)n : -EIO;
			log_error("cannot read '%s' at offset %llu: %s", path,
				  (unsigned long long)off, n < 0 ? strerror(-r) : "file shrank");
			goto out;
		}
		if (is_zero(buf, len)) {
			res->zero_chunks++;
			goto progress;
		}
		m->chunks[i].zero = 0;
		hash_buf(buf, len, &m->chunks[i].id);
		r = store_chunk_put(s, &m->chunks[i].id, buf, len, &was_new);
		if (r < 0)
			goto out;
		if (was_new) {
			res->new_chunks++;
			res->new_bytes += len;
		}
	progress:
		if (o->progress)
			o->progress(off + len, (uint64_t)end, o->progress_arg);
	}
	/* data, flush, then metadata */
	r = store_sync(s);
	if (r < 0)
		goto out;
	had_current = read_pointer(s, name, &cur) == 0;
	m->parent = image_current(s, name, &cur) == 0 ? cur : 0;
	r = publish_version(s, m);
	if (r < 0) {
		log_error("cannot publish new version of '%s': %s", name, strerror(-r));
		goto out;
	}
	if (!had_current || o->promote) {
		r = set_current(s, name, m->version);
		if (r < 0)
			goto out;
	}
	res->version = m->version;
	res->size = m->size;
	res->chunks = m->nchunks;
	log_debug("imported '%s' as %s@%u", path, name, m->version);
	r = 0;
out:
	store_unlock(s);
	if (fd >= 0)
		close(fd);
	if (conv[0])
		unlink(conv);
	free(buf);
	manifest_free(m);
	return r;
}

/* ---- export ---- */

/* Export pipeline: FETCH_THREADS fetchers take the next chunk index from a
 * shared counter, read and hash-check it into ring slot index % FETCH_SLOTS
 * (once the writer has released that slot's previous chunk), while the
 * caller's thread writes the chunks out in order. So the SHA-256 (the one
 * cost cp does not have: 0.42 s of CPU per GiB) runs beside the writes.
 * Measured on 1 GiB on a shared 2-core VM (docs/store.md): the single-
 * threaded loop used one core (best 0.98 s); the pipeline reached 1.56 cores
 * and 0.64 s when the second core was free, and falls back to ~1 s when it
 * is not. A static split (fetcher k took chunks k, k+2, ...) left one fetcher
 * with all the data when every other chunk was a hole. The fetchers only call
 * store_chunk_get, which is safe to call concurrently. */
#define FETCH_THREADS 2
#define FETCH_SLOTS 8

struct fetch_slot {
	uint8_t *buf;
	uint64_t idx; /* the chunk this slot is for now */
	int ready, err; /* ready: buf holds chunk idx (or err says why not) */
};

struct fetcher {
	struct store *s;
	const struct manifest *m;
	struct fetch_slot slot[FETCH_SLOTS];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop, nthreads;
	uint64_t next; /* next chunk index to fetch */
	pthread_t thread[FETCH_THREADS];
};

static void *fetch_main(void *arg)
{
	struct fetcher *f = arg;
	const struct manifest *m = f->m;

	for (;;) {
		struct fetch_slot *sl;
		size_t got = 0;
		uint64_t i;
		int err = 0;

		pthread_mutex_lock(&f->mu);
		i = f->next++;
		sl = &f->slot[i % FETCH_SLOTS];
		while (i < m->nchunks && sl->idx != i && !f->stop)
			pthread_cond_wait(&f->cv, &f->mu);
		pthread_mutex_unlock(&f->mu);
		if (f->stop || i >= m->nchunks)
			break;
		if (!m->chunks[i].zero) {
			err = store_chunk_get(f->s, &m->chunks[i].id, sl->buf, m->chunk_size, &got);
			if (err == 0 && got != manifest_chunk_len(m, i))
				err = -EBADMSG;
		}
		pthread_mutex_lock(&f->mu);
		sl->err = err;
		sl->ready = 1;
		pthread_cond_broadcast(&f->cv);
		pthread_mutex_unlock(&f->mu);
	}
	return NULL;
}

/* Waits for chunk i's slot; its error or 0. */
static int fetch_wait(struct fetcher *f, uint64_t i, struct fetch_slot **out)
{
	struct fetch_slot *sl = &f->slot[i % FETCH_SLOTS];

	pthread_mutex_lock(&f->mu);
	while (!(sl->ready && sl->idx == i))
		pthread_cond_wait(&f->cv, &f->mu);
	pthread_mutex_unlock(&f->mu);
	*out = sl;
	return sl->err;
}

static void fetch_release(struct fetcher *f, struct fetch_slot *sl)
{
	pthread_mutex_lock(&f->mu);
	sl->ready = 0;
	sl->idx += FETCH_SLOTS;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static void fetch_stop(struct fetcher *f)
{
	pthread_mutex_lock(&f->mu);
	f->stop = 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	for (int k = 0; k < f->nthreads; k++)
		pthread_join(f->thread[k], NULL);
	for (int i = 0; i < FETCH_SLOTS; i++)
		free(f->slot[i].buf);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
}

static int fetch_start(struct fetcher *f, struct store *s, const struct manifest *m)
{
	int r;

	memset(f, 0, sizeof(*f));
	f->s = s;
	f->m = m;
	for (int i = 0; i < FETCH_SLOTS; i++) {
		f->slot[i].buf = xmalloc(m->chunk_size);
		f->slot[i].idx = (uint64_t)i;
	}
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	for (unsigned k = 0; k < FETCH_THREADS; k++) {
		r = -pthread_create(&f->thread[k], NULL, fetch_main, f);
		if (r < 0) {
			fetch_stop(f);
			return r;
		}
		f->nthreads++;
	}
	return 0;
}

int image_export_to_file(struct store *s, const char *name, uint32_t version, const char *path,
			 const struct export_opts *o)
{
	struct manifest *m = NULL;
	int r;

	r = store_lock(s, LOCK_SH);
	if (r < 0)
		return r;
	r = image_manifest_load(s, name, version, &m);
	if (r == 0)
		r = image_export_manifest(s, m, path, o);
	store_unlock(s);
	manifest_free(m);
	return r;
}

int image_export_manifest(struct store *s, const struct manifest *m, const char *path,
			  const struct export_opts *o)
{
	static const struct export_opts defaults;
	char tmp[4096] = "", hex[HASH_HEX_LEN + 1];
	struct fetcher f;
	struct stat st;
	uint8_t *zeros = NULL;
	int fd = -1, r = 0, inplace = 0, fetching = 0;

	if (!o)
		o = &defaults;
	if (stat(path, &st) == 0 && S_ISBLK(st.st_mode)) {
		inplace = 1;
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			r = -errno;
	} else {
		fd = io_open_tmp_for(path, tmp, sizeof(tmp), 0644);
		if (fd < 0) {
			r = fd;
			tmp[0] = '\0';
		} else if (ftruncate(fd, (off_t)m->size) < 0) {
			r = -errno;
		}
	}
	if (r < 0) {
		log_error("cannot write '%s': %s", path, strerror(-r));
		goto out;
	}
	if (inplace)
		zeros = xcalloc(1, m->chunk_size);
	r = fetch_start(&f, s, m);
	if (r < 0)
		goto out_write;
	fetching = 1;
	for (uint64_t i = 0; i < m->nchunks; i++) {
		uint64_t off = i * m->chunk_size;
		uint32_t len = manifest_chunk_len(m, i);
		struct fetch_slot *sl;

		r = fetch_wait(&f, i, &sl);
		if (r < 0) {
			log_error("cannot export %s@%u: chunk %llu (%s) at offset %llu is %s",
				  m->name, m->version, (unsigned long long)i,
				  hash_to_hex(&m->chunks[i].id, hex), (unsigned long long)off,
				  r == -ENOENT	  ? "missing"
				  : r == -EBADMSG ? "damaged (hash mismatch)"
						  : strerror(-r));
			if (r == -ENOENT)
				r = -EBADMSG;
			goto out;
		}
		/* zero chunks: a hole (the file was ftruncated), or zeros in place */
		if (!m->chunks[i].zero)
			r = io_pwrite_all(fd, sl->buf, len, (off_t)off);
		else if (inplace)
			r = io_pwrite_all(fd, zeros, len, (off_t)off);
		fetch_release(&f, sl);
		if (r < 0)
			goto out_write;
		if (o->progress)
			o->progress(off + len, m->size, o->progress_arg);
	}
	fetch_stop(&f);
	fetching = 0;
	if (!o->no_sync && (r = io_fsync(fd)) < 0)
		goto out_write;
	r = close(fd) < 0 ? -errno : 0;
	fd = -1;
	if (r < 0)
		goto out_write;
	if (!inplace) {
		r = o->no_sync ? io_rename(tmp, path) : io_publish(tmp, path);
		if (r < 0)
			goto out_write;
		tmp[0] = '\0';
	}
	r = 0;
	goto out;
out_write:
	log_error("cannot write '%s': %s", path, strerror(-r));
out:
	if (fetching)
		fetch_stop(&f);
	if (fd >= 0)
		close(fd);
	if (tmp[0])
		unlink(tmp);
	free(zeros);
	return r;
}

/* ---- listing ---- */

static int cmp_info(const void *a, const void *b)
{
	return strcmp(((const struct image_info *)a)->name, ((const struct image_info *)b)->name);
}

int image_list(struct store *s, struct image_info **out, size_t *n)
{
	char p[4096];
	DIR *d;
	struct dirent *e;
	struct image_info *v = NULL;
	size_t cap = 0, cnt = 0;
	int r;

	if ((r = store_path(s, p, sizeof(p), "images")) < 0)
		return r;
	d = opendir(p);
	if (!d) {
		r = -errno;
		log_error("cannot read '%s': %s", p, strerror(-r));
		return r;
	}
	while ((e = readdir(d))) {
		struct image_info *ii;
		uint32_t *vers = NULL, max_used;
		size_t nv = 0;
		struct manifest *m = NULL;

		if (!name_is_valid(e->d_name))
			continue;
		if (scan_versions(s, e->d_name, &vers, &nv, &max_used) < 0)
			continue;
		xgrow((void **)&v, &cap, cnt + 1, sizeof(*v));
		ii = &v[cnt++];
		memset(ii, 0, sizeof(*ii));
		memcpy(ii->name, e->d_name, strlen(e->d_name) + 1);
		ii->nversions = (uint32_t)nv;
		ii->latest = nv ? vers[nv - 1] : 0;
		if (image_current(s, ii->name, &ii->current) < 0)
			ii->current = 0;
		if ((ii->current || ii->latest) &&
		    image_manifest_load(s, ii->name, ii->current ? ii->current : ii->latest, &m) ==
			    0)
			ii->size = m->size;
		manifest_free(m);
		free(vers);
	}
	closedir(d);
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_info);
	*out = v;
	*n = cnt;
	return 0;
}

int image_versions(struct store *s, const char *name, struct version_info **out, size_t *n)
{
	uint32_t *vers = NULL, max_used, cur = 0;
	struct version_info *v;
	size_t nv = 0;
	int r;

	if (!name_is_valid(name))
		return -EINVAL;
	r = scan_versions(s, name, &vers, &nv, &max_used);
	if (r < 0)
		return r;
	if (image_current(s, name, &cur) < 0)
		cur = 0;
	v = xcalloc(nv ? nv : 1, sizeof(*v));
	for (size_t i = 0; i < nv; i++) {
		struct manifest *m = NULL;

		v[i].version = vers[i];
		v[i].current = vers[i] == cur;
		r = image_manifest_load(s, name, vers[i], &m);
		if (r < 0 || !m) {
			free(v);
			free(vers);
			return r == -ENOENT || r == 0 ? -EBADMSG : r;
		}
		v[i].parent = m->parent;
		v[i].created = m->created;
		v[i].kind = m->kind;
		v[i].size = m->size;
		v[i].nchunks = m->nchunks;
		v[i].chunk_size = m->chunk_size;
		for (uint64_t k = 0; k < m->nchunks; k++)
			v[i].zero_chunks += m->chunks[k].zero;
		manifest_free(m);
	}
	free(vers);
	*out = v;
	*n = nv;
	return 0;
}

int image_promote(struct store *s, const char *name, uint32_t version)
{
	struct manifest *m = NULL;
	int r;

	/* shared lock: gc sweeps temp files, ours included, only when alone */
	r = store_lock(s, LOCK_SH);
	if (r < 0)
		return r;
	r = image_manifest_load(s, name, version, &m);
	if (r == 0) {
		manifest_free(m);
		r = set_current(s, name, version);
	}
	store_unlock(s);
	return r;
}

static int rm_locked(struct store *s, const char *name, uint32_t version, int force)
{
	char from[4096], to[4096], dir[4096];
	uint32_t cur = 0;
	int r, is_current;

	if (!name_is_valid(name) || version == 0)
		return -EINVAL;
	if ((r = store_path(s, dir, sizeof(dir), "images/%s/versions", name)) < 0 ||
	    (r = fmt_buf(from, sizeof(from), "%s/%u.manifest", dir, version)) < 0 ||
	    (r = fmt_buf(to, sizeof(to), "%s/%u.removed", dir, version)) < 0)
		return r;
	if (access(from, F_OK) < 0)
		return -errno;
	is_current = image_current(s, name, &cur) == 0 && cur == version;
	if (is_current && !force) {
		log_error("%s@%u is the current version: promote another first (or force)", name,
			  version);
		return -EBUSY;
	}
	/* one rename turns the manifest into the tombstone: the version is
	 * either fully there or fully gone, and its id stays taken */
	r = io_rename(from, to);
	if (r == 0)
		r = io_fsync_dir(dir);
	if (r < 0) {
		log_error("cannot remove %s@%u: %s", name, version, strerror(-r));
		return r;
	}
	if (is_current) {
		/* the latest remaining version becomes current (image_current's
		 * fallback says the same if we crash before this) */
		if (image_current(s, name, &cur) == 0) {
			r = set_current(s, name, cur);
		} else if ((r = store_path(s, from, sizeof(from), "images/%s/current", name)) ==
				   0 &&
			   unlink(from) < 0 && errno != ENOENT) {
			r = -errno;
		}
		if (r < 0)
			return r;
	}
	if (truncate(to, 0) < 0)
		log_warn("cannot truncate tombstone '%s': %s", to, strerror(errno));
	return 0;
}

int image_rm(struct store *s, const char *name, uint32_t version, int force)
{
	int r = store_lock(s, LOCK_SH);

	if (r < 0)
		return r;
	r = rm_locked(s, name, version, force);
	store_unlock(s);
	return r;
}

/* ---- walking manifests, verify ---- */

static int walk_dir(struct store *s, const char *sub, const char *owner, const char *label_fmt,
		    const char *check_name, uint32_t only, manifest_walk_fn *fn, void *arg)
{
	char dir[4096], p[4096], label[160], err[256];
	uint32_t *vers = NULL;
	size_t cnt = 0, cap = 0;
	DIR *d;
	struct dirent *e;
	int r = 0;

	if ((r = store_path(s, dir, sizeof(dir), "%s", sub)) < 0)
		return r;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		uint32_t v;

		if (store_parse_id_name(e->d_name, &v) != 0 || (only && v != only))
			continue;
		xgrow((void **)&vers, &cap, cnt + 1, sizeof(*vers));
		vers[cnt++] = v;
	}
	closedir(d);
	if (cnt)
		qsort(vers, cnt, sizeof(*vers), cmp_u32);
	for (size_t i = 0; i < cnt && r == 0; i++) {
		struct manifest *m = NULL;
		int e2;

		snprintf(label, sizeof(label), label_fmt, owner, vers[i]);
		if ((r = fmt_buf(p, sizeof(p), "%s/%u.manifest", dir, vers[i])) < 0)
			break;
		err[0] = '\0';
		e2 = load_manifest_file(p, check_name, vers[i], &m, err, sizeof(err));
		if (e2 == -ENOENT) /* removed meanwhile */
			continue;
		r = fn(label, p, m, e2, err, arg);
		manifest_free(m);
	}
	free(vers);
	return r;
}

static int walk_owners(struct store *s, const char *top, const char *subfmt, const char *label_fmt,
		       int check, manifest_walk_fn *fn, void *arg)
{
	char p[4096], sub[512];
	DIR *d;
	struct dirent *e;
	char **names = NULL;
	size_t cnt = 0, cap = 0;
	int r = 0;

	if ((r = store_path(s, p, sizeof(p), "%s", top)) < 0)
		return r;
	d = opendir(p);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		if (!name_is_valid(e->d_name))
			continue;
		xgrow((void **)&names, &cap, cnt + 1, sizeof(*names));
		names[cnt++] = xstrdup(e->d_name);
	}
	closedir(d);
	for (size_t i = 0; i < cnt; i++) {
		if (r == 0 && (r = fmt_buf(sub, sizeof(sub), subfmt, names[i])) == 0)
			r = walk_dir(s, sub, names[i], label_fmt, check ? names[i] : NULL, 0, fn,
				     arg);
		free(names[i]);
	}
	free(names);
	return r;
}

int image_walk_manifests(struct store *s, const char *name, uint32_t version, manifest_walk_fn *fn,
			 void *arg)
{
	char sub[512];
	int r;

	if (name) {
		if (!name_is_valid(name))
			return -EINVAL;
		if ((r = fmt_buf(sub, sizeof(sub), "images/%s/versions", name)) < 0)
			return r;
		return walk_dir(s, sub, name, "%s@%u", name, version, fn, arg);
	}
	r = walk_owners(s, "images", "images/%s/versions", "%s@%u", 1, fn, arg);
	if (r == 0)
		r = walk_owners(s, "machines", "machines/%s/snapshots", "machines/%s@%u", 0, fn,
				arg);
	return r;
}

struct verify_ctx {
	struct chunkset ids;
	struct verify_result *res;
	int pass; /* 1: collect ids, 2: collect users of bad chunks */
};

static int cmp_bad(const void *a, const void *b)
{
	return memcmp(&((const struct verify_bad *)a)->id, &((const struct verify_bad *)b)->id,
		      sizeof(struct hash));
}

static int verify_walk(const char *label, const char *path, const struct manifest *m, int err,
		       const char *errmsg, void *arg)
{
	struct verify_ctx *c = arg;
	struct verify_result *res = c->res;

	if (c->pass == 1) {
		res->manifests++;
		if (err < 0) {
			res->bad_manifests = xrealloc(res->bad_manifests,
						      (res->nbad_manifests + 1) * sizeof(char *));
			res->bad_manifests[res->nbad_manifests++] =
				xasprintf("%s (%s): %s", label, path, errmsg);
			return 0;
		}
		for (uint64_t i = 0; i < m->nchunks; i++)
			if (!m->chunks[i].zero)
				chunkset_add(&c->ids, &m->chunks[i].id);
		return 0;
	}
	if (err < 0)
		return 0;
	{
		/* users once per manifest per bad chunk */
		uint8_t *seen = xcalloc(res->nbad, 1);

		for (uint64_t i = 0; i < m->nchunks; i++) {
			struct verify_bad key = {0}, *hit;

			if (m->chunks[i].zero)
				continue;
			key.id = m->chunks[i].id;
			hit = bsearch(&key, res->bad, res->nbad, sizeof(key), cmp_bad);
			if (!hit || seen[hit - res->bad])
				continue;
			seen[hit - res->bad] = 1;
			if (hit->users) {
				char *u = xasprintf("%s %s", hit->users, label);

				free(hit->users);
				hit->users = u;
			} else {
				hit->users = xstrdup(label);
			}
		}
		free(seen);
	}
	return 0;
}

int image_verify(struct store *s, const char *name, uint32_t version, struct verify_result *res)
{
	struct verify_ctx c = {.res = res, .pass = 1};
	struct hash id;
	size_t cap = 0;
	int r;

	memset(res, 0, sizeof(*res));
	chunkset_init(&c.ids);
	if (name) {
		char p[4096];

		if (!name_is_valid(name))
			return -EINVAL;
		if ((r = store_path(s, p, sizeof(p), "images/%s/versions", name)) < 0)
			return r;
		if (access(p, F_OK) < 0)
			return -ENOENT;
		if (version) {
			if ((r = store_path(s, p, sizeof(p), "images/%s/versions/%u.manifest", name,
					    version)) < 0)
				return r;
			if (access(p, F_OK) < 0)
				return -ENOENT;
		}
	}
	r = store_lock(s, LOCK_SH);
	if (r < 0)
		return r;
	r = image_walk_manifests(s, name, version, verify_walk, &c);
	if (r < 0)
		goto out;
	for (size_t i = 0; chunkset_next(&c.ids, &i, &id);) {
		int e = store_chunk_verify(s, &id, NULL);

		res->chunks_checked++;
		if (e == 0)
			continue;
		xgrow((void **)&res->bad, &cap, res->nbad + 1, sizeof(*res->bad));
		res->bad[res->nbad].id = id;
		res->bad[res->nbad].err = e;
		res->bad[res->nbad].users = NULL;
		res->nbad++;
	}
	if (res->nbad) {
		qsort(res->bad, res->nbad, sizeof(*res->bad), cmp_bad);
		c.pass = 2;
		r = image_walk_manifests(s, name, version, verify_walk, &c);
	}
out:
	store_unlock(s);
	chunkset_release(&c.ids);
	return r;
}

void image_verify_result_release(struct verify_result *res)
{
	for (size_t i = 0; i < res->nbad; i++)
		free(res->bad[i].users);
	for (size_t i = 0; i < res->nbad_manifests; i++)
		free(res->bad_manifests[i]);
	free(res->bad);
	free(res->bad_manifests);
	memset(res, 0, sizeof(*res));
}
