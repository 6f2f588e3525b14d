/* Machine snapshots (see snapshot.h).
 *
 * Layout (under the store root, reserved by store.c, walked by gc as roots):
 *     machines/NAME/snapshots/N.manifest   snapshot N of machine NAME
 *     machines/NAME/snapshots/N.removed    tombstone of a pruned snapshot (empty):
 *                                          keeps N from being allocated again
 *     machines/NAME/snapshots/N.gold       optional: "IMAGE@VERSION\n", the gold
 *                                          version the volume was written over
 *                                          (goldctl machine vm boots it on that);
 *                                          written after N.manifest (a crash in
 *                                          between leaves it unrecorded), removed
 *                                          with it by retention
 * A snapshot manifest is an ordinary lib/manifest.h manifest: name = the
 * machine, version = the snapshot id, kind fs, parent = the base snapshot of
 * the same machine (0 for the first one, or a base on another machine).
 *
 * Commit order (the durability rule: data, flush, then metadata):
 *   1. every claimed chunk is read from the upload file, hashed and compared
 *      with the claim (a claim with parts: the uploaded parts are hashed and
 *      compared, then laid over the base's chunk, read from the store and
 *      verified by it; so a 4 KiB write costs one 64 KiB part of upload, not
 *      the 1 MiB store chunk); the bytes that were hashed are the bytes
 *      stored, so an agent rewriting the file meanwhile cannot slip in
 *      unverified data;
 *   2. store_sync() makes the new chunk files and their directories durable;
 *   3. the manifest is written to a temp file, fsynced, link(2)ed to
 *      N.manifest (EEXIST: a concurrent commit took N, try N + 1) and the
 *      directory fsynced. Only now is the snapshot visible;
 *   4. retention renames the oldest N.manifest files to N.removed.
 * A crash before 3 leaves only unreferenced chunks (gc frees them) and no
 * snapshot; the store lock (shared) keeps gc from sweeping chunks of a commit
 * in flight. */
#include "appliance/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

/* "N.manifest" -> 0, "N.removed" -> 1, anything else -1. */

static int snap_dir(struct store *s, const char *machine, char *buf, size_t size)
{
	if (!name_is_valid(machine))
		return -EINVAL;
	return store_path(s, buf, size, "machines/%s/snapshots", machine);
}

/* Live ids ascending (optional) and the highest id ever used. -ENOENT: no dir. */
static int scan_ids(struct store *s, const char *machine, uint32_t **out, size_t *n,
		    uint32_t *max_used)
{
	char p[4096];
	int r;

	if ((r = snap_dir(s, machine, p, sizeof(p))) < 0)
		return r;
	return store_scan_ids(p, out, n, max_used);
}

int snapshot_max_used(const char *store_root, const char *machine, uint32_t after,
		      uint32_t *max_used, uint32_t *first_after)
{
	char p[4096];
	uint32_t *v = NULL;
	size_t n = 0;
	int r;

	*max_used = 0;
	if (first_after)
		*first_after = 0;
	if (!name_is_valid(machine))
		return -EINVAL;
	if ((r = fmt_buf(p, sizeof(p), "%s/machines/%s/snapshots", store_root, machine)) < 0)
		return r;
	r = store_scan_ids(p, &v, &n, max_used);
	if (r == -ENOENT) {
		*max_used = 0;
		r = 0;
	}
	for (size_t i = 0; r == 0 && first_after && i < n; i++) {
		if (v[i] > after) {
			*first_after = v[i];
			break;
		}
	}
	free(v);
	return r;
}

int snapshot_latest(struct store *s, const char *machine, uint32_t *id)
{
	uint32_t *v = NULL, max_used;
	size_t n = 0;
	int r = scan_ids(s, machine, &v, &n, &max_used);

	if (r == 0 && n == 0)
		r = -ENOENT;
	if (r == 0)
		*id = v[n - 1];
	free(v);
	return r;
}

int snapshot_manifest_path(struct store *s, const char *machine, uint32_t id, char *buf,
			   size_t size)
{
	char dir[4096];
	int r = snap_dir(s, machine, dir, sizeof(dir));

	return r < 0 ? r : fmt_buf(buf, size, "%s/%u.manifest", dir, id);
}

int snapshot_manifest_load(struct store *s, const char *machine, uint32_t id, struct manifest **out)
{
	char p[4096], err[256];
	char *buf = NULL;
	size_t len;
	int r;

	if (id == 0 && (r = snapshot_latest(s, machine, &id)) < 0)
		return r;
	if ((r = snapshot_manifest_path(s, machine, id, p, sizeof(p))) < 0)
		return r;
	r = io_read_file(p, MANIFEST_MAX_BYTES, &buf, &len);
	if (r == -ENOENT)
		return r;
	if (r < 0) {
		log_error("cannot read snapshot %s@%u ('%s'): %s", machine, id, p, strerror(-r));
		return r == -EFBIG ? -EBADMSG : r;
	}
	r = manifest_decode(buf, len, out, err, sizeof(err));
	free(buf);
	if (r == 0 && (strcmp((*out)->name, machine) != 0 || (*out)->version != id)) {
		snprintf(err, sizeof(err), "manifest says %s@%u", (*out)->name, (*out)->version);
		manifest_free(*out);
		*out = NULL;
		r = -EINVAL;
	}
	if (r < 0) {
		log_error("snapshot %s@%u ('%s') is damaged: %s", machine, id, p, err);
		return -EBADMSG;
	}
	return 0;
}

/* Publishes m under the next free id of its machine (see top). */
static int publish(struct store *s, struct manifest *m)
{
	char dir[4096], p[4096];
	uint32_t max_used = 0;
	int r;

	if ((r = snap_dir(s, m->name, dir, sizeof(dir))) < 0)
		return r;
	if (access(dir, F_OK) < 0) {
		if ((r = io_mkdir_p(dir, 0755)) < 0)
			return r;
		/* make the new directories themselves durable */
		if ((r = store_path(s, p, sizeof(p), "machines/%s", m->name)) < 0 ||
		    (r = io_fsync_dir(p)) < 0 ||
		    (r = store_path(s, p, sizeof(p), "machines")) < 0 ||
		    (r = io_fsync_dir(p)) < 0 || (r = store_path(s, p, sizeof(p), ".")) < 0 ||
		    (r = io_fsync_dir(p)) < 0)
			return r;
	}
	if ((r = scan_ids(s, m->name, NULL, NULL, &max_used)) < 0)
		return r;
	return store_publish_manifest(dir, m, max_used);
}

static int gold_path(struct store *s, const char *machine, uint32_t id, char *buf, size_t size)
{
	if (!name_is_valid(machine))
		return -EINVAL;
	return store_path(s, buf, size, "machines/%s/snapshots/%u.gold", machine, id);
}

/* Best effort: the snapshot is committed already; without the record an
 * operator names the gold version himself (goldctl machine vm --image). */
static void record_gold(struct store *s, const char *machine, uint32_t id, const char *image,
			uint32_t version)
{
	char p[4096], line[96];
	int r, n;

	n = snprintf(line, sizeof(line), "%s@%u\n", image, version);
	if (!name_is_valid(image) || n < 0 || (size_t)n >= sizeof(line) ||
	    gold_path(s, machine, id, p, sizeof(p)) < 0)
		return;
	if ((r = io_write_file_atomic(p, line, (size_t)n, 0444)) < 0)
		log_warn("snapshot %s@%u: cannot record its gold image %s@%u: %s", machine, id,
			 image, version, strerror(-r));
}

int snapshot_gold(struct store *s, const char *machine, uint32_t id, char image[65],
		  uint32_t *version)
{
	char p[4096], *text = NULL;
	size_t len;
	int r;

	if ((r = gold_path(s, machine, id, p, sizeof(p))) < 0)
		return r;
	if ((r = io_read_file(p, 128, &text, &len)) < 0)
		return r;
	if (len > 0 && text[len - 1] == '\n')
		text[len - 1] = '\0';
	r = image_ref_parse(text, image, version);
	if (r == 0 && *version == 0)
		r = -EINVAL;
	if (r < 0) {
		log_warn("snapshot %s@%u: '%s' is not IMAGE@VERSION: ignored", machine, id, p);
		r = -ENOENT;
	}
	free(text);
	return r;
}

static int is_pinned(uint32_t id, const uint32_t *pinned, size_t npinned)
{
	for (size_t i = 0; i < npinned; i++)
		if (pinned[i] == id)
			return 1;
	return 0;
}

/* Keeps the newest keep snapshots and every pinned one (named by a pending
 * restore/reset order), tombstones the rest. */
static int prune_locked(struct store *s, const char *machine, unsigned keep, const uint32_t *pinned,
			size_t npinned, uint64_t *removed)
{
	char dir[4096], from[4096], to[4096];
	uint32_t *v = NULL, max_used;
	size_t n = 0;
	int r;

	if (removed)
		*removed = 0;
	if (keep == 0)
		return 0;
	r = scan_ids(s, machine, &v, &n, &max_used);
	if (r == -ENOENT)
		return 0;
	if (r < 0 || (r = snap_dir(s, machine, dir, sizeof(dir))) < 0)
		goto out;
	for (size_t i = 0; i + keep < n; i++) {
		if (is_pinned(v[i], pinned, npinned))
			continue;
		if ((r = fmt_buf(from, sizeof(from), "%s/%u.manifest", dir, v[i])) < 0 ||
		    (r = fmt_buf(to, sizeof(to), "%s/%u.removed", dir, v[i])) < 0)
			goto out;
		/* one rename: the snapshot is either whole or gone, its id stays taken */
		if ((r = io_rename(from, to)) < 0) {
			log_error("cannot prune snapshot %s@%u: %s", machine, v[i], strerror(-r));
			goto out;
		}
		if (truncate(to, 0) < 0)
			log_warn("cannot truncate tombstone '%s': %s", to, strerror(errno));
		if (fmt_buf(to, sizeof(to), "%s/%u.gold", dir, v[i]) == 0)
			unlink(to);
		if (removed)
			(*removed)++;
	}
	r = n > keep ? io_fsync_dir(dir) : 0;
out:
	free(v);
	return r;
}

int snapshot_prune(struct store *s, const char *machine, unsigned keep, uint64_t *removed)
{
	int r = store_lock(s, LOCK_SH);

	if (r < 0)
		return r;
	r = prune_locked(s, machine, keep, NULL, 0, removed);
	store_unlock(s);
	return r;
}

static int is_zero(const uint8_t *p, size_t n)
{
	static const uint8_t z[64];

	if (n < 64)
		return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
	return memcmp(p, z, 64) == 0 && memcmp(p, p + 64, n - 64) == 0;
}

static int cmp_claim(const void *a, const void *b)
{
	uint64_t x = ((const struct snapshot_claim *)a)->index;
	uint64_t y = ((const struct snapshot_claim *)b)->index;

	return x < y ? -1 : x > y;
}

/* A parts mask is meaningful: a part size dividing the chunk into at most
 * SNAPSHOT_MAX_PARTS parts, no bit past the last part. */
static int parts_ok(const struct snapshot_commit_req *rq, uint64_t parts)
{
	uint32_t n;

	if (rq->part_size < 4096 || (rq->part_size & (rq->part_size - 1)) ||
	    rq->part_size > rq->chunk_size)
		return 0;
	n = rq->chunk_size / rq->part_size;
	if (n > SNAPSHOT_MAX_PARTS)
		return 0;
	return n == 64 || (parts >> n) == 0;
}

static int read_range(const struct snapshot_commit_req *rq, int fd, uint8_t *buf, size_t len,
		      uint64_t off, uint64_t chunk)
{
	ssize_t got = io_pread_full(fd, buf, len, (off_t)off);
	int r;

	if (got >= 0 && (size_t)got == len)
		return 0;
	r = got < 0 ? (int)got : -EIO;
	log_error("cannot read upload file '%s' at %llu (chunk %llu): %s", rq->upload_path,
		  (unsigned long long)off, (unsigned long long)chunk,
		  got < 0 ? strerror(-r) : "short read");
	return r;
}

/* Chunk i of a claim uploaded in part: the base's chunk i (verified by the
 * store; zero without a base), then the uploaded parts read over it; *ph gets
 * the SHA-256 of the uploaded parts (ascending, each clipped to the chunk):
 * what the claim's hash covers. */
static int read_parts(struct store *s, const struct snapshot_commit_req *rq, int fd,
		      const struct manifest *bm, uint64_t i, uint64_t parts, uint8_t *buf,
		      size_t len, struct hash *ph, struct snapshot_commit_result *res)
{
	uint64_t base_off = i * rq->chunk_size;
	struct hash_ctx *h;
	size_t got = 0;
	int r;

	res->partial++;
	if (!bm || bm->chunks[i].zero) {
		memset(buf, 0, len);
	} else {
		r = store_chunk_get(s, &bm->chunks[i].id, buf, len, &got);
		if (r == 0 && got != len)
			r = -EBADMSG;
		if (r < 0) {
			log_error("snapshot commit of '%s': base chunk %llu cannot be read: %s",
				  rq->machine, (unsigned long long)i, strerror(-r));
			return r == -ENOENT ? -EBADMSG : r;
		}
	}
	for (uint32_t j = 0; j < SNAPSHOT_MAX_PARTS && (parts >> j); j++) {
		uint64_t off = (uint64_t)j * rq->part_size;
		uint32_t run = 1;

		if (!(parts >> j & 1) || off >= len)
			continue;
		/* adjacent parts in one read */
		while (j + run < SNAPSHOT_MAX_PARTS && (parts >> (j + run) & 1))
			run++;
		r = read_range(rq, fd, buf + off,
			       (size_t)MIN((uint64_t)run * rq->part_size, len - off),
			       base_off + off, i);
		if (r < 0)
			return r;
		j += run - 1;
	}
	h = hash_ctx_new();
	for (uint32_t j = 0; j < SNAPSHOT_MAX_PARTS && (parts >> j); j++) {
		uint64_t off = (uint64_t)j * rq->part_size;

		if ((parts >> j & 1) && off < len)
			hash_ctx_update(h, buf + off,
					(size_t)MIN((uint64_t)rq->part_size, len - off));
	}
	hash_ctx_final(h, ph);
	return 0;
}

#define REFUSE(code, ...)                                              \
	do {                                                           \
		snprintf(res->error, sizeof(res->error), __VA_ARGS__); \
		r = (code);                                            \
		goto out;                                              \
	} while (0)

int snapshot_commit(struct store *s, const struct snapshot_commit_req *rq,
		    struct snapshot_commit_result *res)
{
	const char *base_machine = rq->base_machine ? rq->base_machine : rq->machine;
	char hex[HASH_HEX_LEN + 1], hex2[HASH_HEX_LEN + 1];
	struct manifest *m = NULL, *bm = NULL;
	struct snapshot_claim *sorted = NULL;
	uint8_t *buf = NULL;
	struct stat st;
	int fd = -1, r, locked = 0;
	uint64_t t0 = now_ms();

	memset(res, 0, sizeof(*res));
	res->bad_chunk = -1;
	if (!name_is_valid(rq->machine) || !name_is_valid(base_machine)) {
		snprintf(res->error, sizeof(res->error), "invalid machine name");
		return -EINVAL;
	}
	if (manifest_geometry_ok(rq->volume_size, rq->chunk_size) < 0 || rq->volume_size == 0 ||
	    rq->volume_size > SNAPSHOT_MAX_VOLUME) {
		snprintf(res->error, sizeof(res->error),
			 "bad geometry: volume_size %llu, chunk_size %u (a non-zero multiple of "
			 "512 up to 16 TiB; a power of two from 4K to 64M)",
			 (unsigned long long)rq->volume_size, rq->chunk_size);
		return -EINVAL;
	}
	if (manifest_new(rq->machine, rq->volume_size, rq->chunk_size, &m) < 0) {
		snprintf(res->error, sizeof(res->error), "volume of %llu bytes has too many chunks",
			 (unsigned long long)rq->volume_size);
		return -EINVAL;
	}
	m->kind = MANIFEST_FS;
	/* claims sorted by index: duplicates are adjacent, reads go in volume order */
	sorted = xcalloc(rq->nclaims ? rq->nclaims : 1, sizeof(*sorted));
	if (rq->nclaims)
		memcpy(sorted, rq->claims, rq->nclaims * sizeof(*sorted));
	qsort(sorted, rq->nclaims, sizeof(*sorted), cmp_claim);
	for (size_t i = 0; i < rq->nclaims; i++) {
		uint64_t k = sorted[i].index;

		if (k >= m->nchunks)
			REFUSE(-EINVAL, "chunk index %llu is past the volume's %llu chunks",
			       (unsigned long long)k, (unsigned long long)m->nchunks);
		if (i && sorted[i - 1].index == k)
			REFUSE(-EINVAL, "chunk index %llu is claimed twice", (unsigned long long)k);
		if (sorted[i].parts && !parts_ok(rq, sorted[i].parts))
			REFUSE(-EINVAL,
			       "chunk %llu: parts %#llx do not fit part_size %u in chunk_size %u",
			       (unsigned long long)k, (unsigned long long)sorted[i].parts,
			       rq->part_size, rq->chunk_size);
	}
	fd = open(rq->upload_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		log_error("cannot open upload file '%s' of '%s': %s", rq->upload_path, rq->machine,
			  strerror(-r));
		REFUSE(r, "cannot read the upload file: %s", strerror(-r));
	}
	if (rq->nclaims && (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < rq->volume_size))
		REFUSE(-EINVAL, "the upload file holds %llu bytes, less than volume_size %llu",
		       (unsigned long long)st.st_size, (unsigned long long)rq->volume_size);
	if ((r = store_lock(s, LOCK_SH)) < 0)
		REFUSE(r, "cannot lock the store: %s", strerror(-r));
	locked = 1;
	if (rq->base) {
		r = snapshot_manifest_load(s, base_machine, rq->base, &bm);
		if (r == -ENOENT)
			REFUSE(-ENOENT,
			       "base snapshot %s@%u does not exist (pruned?): send a full "
			       "commit without a base",
			       base_machine, rq->base);
		if (r < 0)
			REFUSE(r, "base snapshot %s@%u cannot be read", base_machine, rq->base);
		if (bm->size != rq->volume_size || bm->chunk_size != rq->chunk_size)
			REFUSE(-ESTALE,
			       "base snapshot %s@%u has size %llu and chunk size %u, the commit "
			       "%llu and %u: send a full commit without a base",
			       base_machine, rq->base, (unsigned long long)bm->size, bm->chunk_size,
			       (unsigned long long)rq->volume_size, rq->chunk_size);
		if (!rq->base_machine || strcmp(rq->base_machine, rq->machine) == 0)
			m->parent = rq->base;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	buf = xmalloc(rq->chunk_size);
	for (uint64_t i = 0, ci = 0; i < m->nchunks; i++) {
		const struct snapshot_claim *c;
		uint32_t len = manifest_chunk_len(m, i);
		struct hash h, ph;
		int was_new;

		if (ci >= rq->nclaims || sorted[ci].index != i) {
			if (bm) {
				m->chunks[i] = bm->chunks[i];
				res->inherited++;
			}
			continue;
		}
		c = &sorted[ci++];
		res->changed++;
		if (c->parts)
			r = read_parts(s, rq, fd, bm, i, c->parts, buf, len, &ph, res);
		else
			r = read_range(rq, fd, buf, len, i * rq->chunk_size, i);
		if (r < 0)
			REFUSE(r, "cannot read chunk %llu of the upload file%s",
			       (unsigned long long)i,
			       r == -EBADMSG ? " (its base chunk is damaged)" : "");
		hash_buf(buf, len, &h);
		if (!hash_equal(c->parts ? &ph : &h, &c->id)) {
			res->bad_chunk = (int64_t)i;
			REFUSE(-EBADMSG,
			       "chunk %llu (offset %llu): uploaded data%s hashes to %s, the commit "
			       "claims %s",
			       (unsigned long long)i, (unsigned long long)(i * rq->chunk_size),
			       c->parts ? " (its parts)" : "",
			       hash_to_hex(c->parts ? &ph : &h, hex), hash_to_hex(&c->id, hex2));
		}
		if (is_zero(buf, len)) {
			m->chunks[i].zero = 1;
			memset(&m->chunks[i].id, 0, sizeof(m->chunks[i].id));
			res->zero_chunks++;
			continue;
		}
		m->chunks[i].zero = 0;
		m->chunks[i].id = h;
		if ((r = store_chunk_put(s, &h, buf, len, &was_new)) < 0)
			REFUSE(r, "cannot store chunk %llu: %s", (unsigned long long)i,
			       strerror(-r));
		if (was_new) {
			res->new_chunks++;
			res->new_bytes += len;
		}
	}
	/* data, flush, then metadata */
	if ((r = store_sync(s)) < 0)
		REFUSE(r, "cannot make the chunks durable: %s", strerror(-r));
	m->created = now_unix();
	if ((r = publish(s, m)) < 0) {
		log_error("cannot publish a snapshot of '%s': %s", rq->machine, strerror(-r));
		REFUSE(r, "cannot publish the snapshot: %s", strerror(-r));
	}
	res->snapshot = m->version;
	if (rq->gold_image && rq->gold_version)
		record_gold(s, rq->machine, m->version, rq->gold_image, rq->gold_version);
	res->elapsed_ms = now_ms() - t0;
	if ((r = prune_locked(s, rq->machine, rq->retention, rq->pinned, rq->npinned,
			      &res->pruned)) < 0) {
		/* the snapshot is committed; pruning is retried by the next commit */
		log_warn("snapshot %s@%u committed, retention pruning failed: %s", rq->machine,
			 m->version, strerror(-r));
	}
	log_info("committed snapshot %s@%u: %llu changed chunks, %llu new, %llu inherited",
		 rq->machine, m->version, (unsigned long long)res->changed,
		 (unsigned long long)res->new_chunks, (unsigned long long)res->inherited);
	r = 0;
out:
	if (r < 0 && res->error[0])
		log_warn("commit of '%s' refused: %s", rq->machine, res->error);
	if (locked)
		store_unlock(s);
	if (fd >= 0)
		close(fd);
	free(buf);
	free(sorted);
	manifest_free(m);
	manifest_free(bm);
	return r;
}

int snapshot_list(struct store *s, const char *machine, struct snapshot_info **out, size_t *n)
{
	uint32_t *ids = NULL, max_used;
	struct snapshot_info *v;
	struct manifest *prev = NULL;
	size_t cnt = 0;
	int r;

	r = scan_ids(s, machine, &ids, &cnt, &max_used);
	if (r < 0)
		return r;
	v = xcalloc(cnt ? cnt : 1, sizeof(*v));
	for (size_t i = 0; i < cnt; i++) {
		struct manifest *m = NULL, *par = NULL;

		r = snapshot_manifest_load(s, machine, ids[i], &m);
		if (r < 0) {
			r = r == -ENOENT ? -EBADMSG : r;
			goto fail;
		}
		v[i].id = ids[i];
		v[i].parent = m->parent;
		v[i].created = m->created;
		v[i].size = m->size;
		v[i].nchunks = m->nchunks;
		v[i].chunk_size = m->chunk_size;
		if (snapshot_gold(s, machine, ids[i], v[i].gold_image, &v[i].gold_version) < 0) {
			v[i].gold_image[0] = '\0';
			v[i].gold_version = 0;
		}
		if (m->parent && prev && prev->version == m->parent)
			par = prev;
		else if (m->parent && snapshot_manifest_load(s, machine, m->parent, &par) < 0)
			par = NULL;
		for (uint64_t k = 0; k < m->nchunks; k++) {
			const struct manifest_chunk *c = &m->chunks[k];

			v[i].zero_chunks += c->zero;
			if (par && par->chunk_size == m->chunk_size && k < par->nchunks)
				v[i].changed += par->chunks[k].zero != c->zero ||
						!hash_equal(&par->chunks[k].id, &c->id);
			else
				v[i].changed += !c->zero;
		}
		if (par && par != prev)
			manifest_free(par);
		manifest_free(prev);
		prev = m;
	}
	manifest_free(prev);
	free(ids);
	*out = v;
	*n = cnt;
	return 0;
fail:
	manifest_free(prev);
	free(ids);
	free(v);
	return r;
}

int snapshot_export_to_file(struct store *s, const char *machine, uint32_t id, const char *path,
			    const struct export_opts *o)
{
	struct manifest *m = NULL;
	int r = store_lock(s, LOCK_SH);

	if (r < 0)
		return r;
	r = snapshot_manifest_load(s, machine, id, &m);
	if (r == 0)
		r = image_export_manifest(s, m, path, o);
	store_unlock(s);
	manifest_free(m);
	return r;
}
