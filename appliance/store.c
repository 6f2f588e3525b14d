/* Chunk store (see store.h).
 *
 * Layout under the store root:
 *     format                 "goldcache-store 1\n"; marks the directory as a store
 *     lock                   flock(2) target: shared for import/export/verify, exclusive for gc
 *     chunks/ab/<64 hex>     one immutable file per chunk, ab = first byte of the id
 *     images/NAME/...        versions and current pointer (image.c)
 *     machines/NAME/snapshots/N.manifest   machine snapshots (later; gc roots already)
 *     tmp/                   temp files; anything here is garbage after a crash
 *
 * Chunk file: a 16-byte header then the payload.
 *     0  u32 magic "GCCK"    4  u8 format (1)   5  u8 flags (bit 0: zstd)
 *     6  u16 reserved (0)    8  u32 raw length  12 u32 payload length
 * The payload is the raw bytes or one zstd frame of them. zstd is used only
 * when it saves at least 1/8 (the compressor is given 7/8 of the raw length
 * as its output bound, so incompressible data fails fast and is stored raw).
 *
 * Durability: a chunk is written to tmp/, fdatasynced, then renamed into
 * place, so a chunk name never points at data that is not on disk. The fan-out
 * directory fsync is batched: store_sync() fsyncs every directory that got a
 * chunk (or was deduplicated against: another writer's rename may not be
 * durable yet) before the caller publishes a manifest naming them. Reads
 * always recompute the SHA-256: a chunk that does not match its name is
 * reported as damaged (-EBADMSG), never returned. */
#include "appliance/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "lib/bytes.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/manifest.h"
#include "lib/util.h"

#define STORE_FORMAT "goldcache-store 1\n"
#define STORE_MAX_PAYLOAD (MANIFEST_MAX_CHUNK + (MANIFEST_MAX_CHUNK >> 7) + 4096)

int store_path(const struct store *s, char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n, m;

	n = snprintf(buf, size, "%s/", s->root);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	va_start(ap, fmt);
	m = vsnprintf(buf + n, size - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= size - (size_t)n)
		return -ENAMETOOLONG;
	return 0;
}

int store_chunk_path(const struct store *s, const struct hash *id, char *buf, size_t size)
{
	char hex[HASH_HEX_LEN + 1];

	hash_to_hex(id, hex);
	return store_path(s, buf, size, "chunks/%.2s/%s", hex, hex);
}

static int store_create_layout(const char *root)
{
	static const char *const dirs[] = {"chunks", "images", "machines", "tmp"};
	char p[4096];
	int r;

	r = io_mkdir_p(root, 0755);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		if ((r = fmt_buf(p, sizeof(p), "%s/%s", root, dirs[i])) < 0 ||
		    (r = io_mkdir_p(p, 0755)) < 0)
			return r;
	}
	for (int i = 0; i < 256; i++) {
		if ((r = fmt_buf(p, sizeof(p), "%s/chunks/%02x", root, i)) < 0 ||
		    (r = io_mkdir_p(p, 0755)) < 0)
			return r;
	}
	if ((r = fmt_buf(p, sizeof(p), "%s/chunks", root)) < 0 || (r = io_fsync_dir(p)) < 0)
		return r;
	if ((r = fmt_buf(p, sizeof(p), "%s/format", root)) < 0)
		return r;
	return io_write_file_atomic(p, STORE_FORMAT, strlen(STORE_FORMAT), 0644);
}

static void pending_drop(struct store *s);

int store_open(const char *root, int create, struct store **out)
{
	struct store *s;
	char p[4096], *fmt = NULL;
	int r;

	if ((r = fmt_buf(p, sizeof(p), "%s/format", root)) < 0)
		return r;
	r = io_read_file(p, 64, &fmt, NULL);
	if (r == -ENOENT && create) {
		r = store_create_layout(root);
		if (r < 0) {
			log_error("cannot create store in '%s': %s", root, strerror(-r));
			return r;
		}
		r = io_read_file(p, 64, &fmt, NULL);
	}
	if (r < 0) {
		if (r != -ENOENT)
			log_error("cannot read '%s': %s", p, strerror(-r));
		return r;
	}
	if (strcmp(fmt, STORE_FORMAT) != 0) {
		log_error("'%s' is not a goldcache store of a known format", root);
		free(fmt);
		return -EPROTO;
	}
	free(fmt);
	s = xcalloc(1, sizeof(*s));
	s->root = xstrdup(root);
	s->compress = 1;
	s->zstd_level = 1;
	if ((r = store_path(s, p, sizeof(p), "lock")) < 0)
		goto fail;
	s->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->lock_fd < 0) {
		r = -errno;
		log_error("cannot open '%s': %s", p, strerror(-r));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	free(s->root);
	free(s);
	return r;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	pending_drop(s);
	if (s->lock_fd > 0)
		close(s->lock_fd);
	ZSTD_freeCCtx(s->zcctx);
	free(s->root);
	free(s);
}

int store_lock(struct store *s, int mode)
{
	while (flock(s->lock_fd, mode) < 0) {
		if (errno == EINTR)
			continue;
		log_error("cannot lock store '%s': %s", s->root, strerror(errno));
		return -errno;
	}
	s->lock_mode = mode;
	return 0;
}

void store_unlock(struct store *s)
{
	if (s->lock_mode) {
		flock(s->lock_fd, LOCK_UN);
		s->lock_mode = 0;
	}
}

int store_chunk_has(struct store *s, const struct hash *id)
{
	char p[4096];
	struct stat st;
	int r;

	if ((r = store_chunk_path(s, id, p, sizeof(p))) < 0)
		return r;
	if (stat(p, &st) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

static void mark_dir(struct store *s, const struct hash *id)
{
	s->dirty_dirs[id->b[0] >> 3] |= (uint8_t)(1u << (id->b[0] & 7));
}

static void pending_drop(struct store *s)
{
	for (size_t i = 0; i < s->npending; i++) {
		close(s->pending[i].fd);
		unlink(s->pending[i].tmp);
		free(s->pending[i].tmp);
	}
	s->npending = 0;
}

/* fdatasync every pending chunk, then rename each into place. On error all
 * pending chunks are dropped (their temp files removed). */
static int pending_flush(struct store *s)
{
	char final[4096];
	int r;

	for (size_t i = 0; i < s->npending; i++) {
		struct store_pending *p = &s->pending[i];

		if ((r = io_fdatasync(p->fd)) < 0 || (fchmod(p->fd, 0444) < 0 && (r = -errno)) ||
		    (r = store_chunk_path(s, &p->id, final, sizeof(final))) < 0) {
			log_error("cannot store chunk '%s': %s", p->tmp, strerror(-r));
			pending_drop(s);
			return r;
		}
	}
	for (size_t i = 0; i < s->npending; i++) {
		struct store_pending *p = &s->pending[i];

		close(p->fd);
		p->fd = -1;
		if ((r = store_chunk_path(s, &p->id, final, sizeof(final))) < 0 ||
		    (r = io_rename(p->tmp, final)) < 0) {
			log_error("cannot store chunk '%s': %s", final, strerror(-r));
			for (size_t k = i; k < s->npending; k++) {
				if (s->pending[k].fd >= 0)
					close(s->pending[k].fd);
				unlink(s->pending[k].tmp);
				free(s->pending[k].tmp);
			}
			for (size_t k = 0; k < i; k++)
				free(s->pending[k].tmp);
			s->npending = 0;
			return r;
		}
		mark_dir(s, &p->id);
	}
	for (size_t i = 0; i < s->npending; i++)
		free(s->pending[i].tmp);
	s->npending = 0;
	return 0;
}

int store_chunk_put(struct store *s, const struct hash *id, const void *data, size_t len,
		    int *was_new)
{
	char tmp[4096];
	uint8_t hdr[STORE_CHUNK_HDR], *zbuf = NULL;
	const void *payload = data;
	size_t plen = len;
	int fd = -1, r, flags = 0;

	if (was_new)
		*was_new = 0;
	if (len > MANIFEST_MAX_CHUNK)
		return -EINVAL;
	for (size_t i = 0; i < s->npending; i++)
		if (hash_equal(&s->pending[i].id, id))
			return 0;
	r = store_chunk_has(s, id);
	if (r < 0)
		goto out;
	if (r == 1) {
		mark_dir(s, id);
		s->chunks_deduped++;
		return 0;
	}
	if (s->compress && len >= 4096) {
		size_t cap = len - len / 8, z;

		if (!s->zcctx)
			s->zcctx = ZSTD_createCCtx();
		zbuf = xmalloc(cap);
		z = ZSTD_compressCCtx(s->zcctx, zbuf, cap, data, len, s->zstd_level);
		if (!ZSTD_isError(z)) {
			payload = zbuf;
			plen = z;
			flags |= STORE_CHUNK_ZSTD;
		}
	}
	put_le32(hdr, STORE_CHUNK_MAGIC);
	hdr[4] = 1;
	hdr[5] = (uint8_t)flags;
	hdr[6] = hdr[7] = 0;
	put_le32(hdr + 8, (uint32_t)len);
	put_le32(hdr + 12, (uint32_t)plen);

	if ((r = store_path(s, tmp, sizeof(tmp), "tmp/chunk.XXXXXX")) < 0)
		goto out;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		log_error("cannot create a temp file in '%s/tmp': %s", s->root, strerror(-r));
		goto out;
	}
	if ((r = io_write_all(fd, hdr, sizeof(hdr))) < 0 ||
	    (r = io_write_all(fd, payload, plen)) < 0) {
		log_error("cannot write chunk file '%s': %s", tmp, strerror(-r));
		close(fd);
		unlink(tmp);
		goto out;
	}
	/* start writeback now; pending_flush waits for it */
	sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	s->pending[s->npending].id = *id;
	s->pending[s->npending].fd = fd;
	s->pending[s->npending].tmp = xstrdup(tmp);
	s->npending++;
	s->chunks_written++;
	s->bytes_written += sizeof(hdr) + plen;
	if (was_new)
		*was_new = 1;
	r = s->npending == STORE_BATCH ? pending_flush(s) : 0;
out:
	free(zbuf);
	return r;
}

int store_sync(struct store *s)
{
	char p[4096];
	int r;

	if ((r = pending_flush(s)) < 0)
		return r;
	for (int i = 0; i < 256; i++) {
		if (!(s->dirty_dirs[i >> 3] & (1u << (i & 7))))
			continue;
		if ((r = store_path(s, p, sizeof(p), "chunks/%02x", i)) < 0)
			return r;
		r = io_fsync_dir(p);
		if (r < 0) {
			log_error("cannot fsync '%s': %s", p, strerror(-r));
			return r;
		}
		s->dirty_dirs[i >> 3] &= (uint8_t) ~(1u << (i & 7));
	}
	return 0;
}

int store_chunk_get(struct store *s, const struct hash *id, void *buf, size_t size, size_t *len)
{
	char p[4096], hex[HASH_HEX_LEN + 1];
	uint8_t hdr[STORE_CHUNK_HDR], *zbuf = NULL;
	uint32_t raw, plen;
	struct stat st;
	struct hash got;
	ssize_t n;
	int fd, r;

	if ((r = store_chunk_path(s, id, p, sizeof(p))) < 0)
		return r;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno; /* the caller names the image and offset */
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	n = io_read_full(fd, hdr, sizeof(hdr));
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	r = -EBADMSG;
	if (n != sizeof(hdr) || get_le32(hdr) != STORE_CHUNK_MAGIC || hdr[4] != 1 ||
	    (hdr[5] & ~STORE_CHUNK_ZSTD) != 0)
		goto out;
	raw = get_le32(hdr + 8);
	plen = get_le32(hdr + 12);
	if (raw > MANIFEST_MAX_CHUNK || plen > STORE_MAX_PAYLOAD ||
	    (uint64_t)st.st_size != (uint64_t)plen + sizeof(hdr) ||
	    (!(hdr[5] & STORE_CHUNK_ZSTD) && plen != raw))
		goto out;
	if (raw > size) {
		r = -ENOBUFS;
		goto out;
	}
	if (hdr[5] & STORE_CHUNK_ZSTD) {
		size_t z;

		zbuf = xmalloc(plen ? plen : 1);
		n = io_read_full(fd, zbuf, plen);
		if (n < 0) {
			r = (int)n;
			goto out;
		}
		if ((size_t)n != plen)
			goto out;
		/* no shared context: store_chunk_get runs in several threads */
		z = ZSTD_decompress(buf, raw, zbuf, plen);
		if (ZSTD_isError(z) || z != raw)
			goto out;
	} else {
		n = io_read_full(fd, buf, raw);
		if (n < 0) {
			r = (int)n;
			goto out;
		}
		if ((size_t)n != raw)
			goto out;
	}
	{
		/* a context of our own: hash_buf's per-thread context would leak
		 * when an export's fetcher thread exits */
		struct hash_ctx *hc = hash_ctx_new();

		hash_ctx_update(hc, buf, raw);
		hash_ctx_final(hc, &got);
	}
	if (!hash_equal(&got, id))
		goto out;
	*len = raw;
	r = 0;
out:
	if (r < 0 && r != -ENOBUFS)
		log_debug("chunk %s: %s", hash_to_hex(id, hex), strerror(-r));
	free(zbuf);
	close(fd);
	return r;
}

int store_chunk_verify(struct store *s, const struct hash *id, size_t *len)
{
	static _Thread_local uint8_t *buf;
	size_t n = 0;
	int r;

	if (!buf)
		buf = xmalloc(MANIFEST_MAX_CHUNK);
	r = store_chunk_get(s, id, buf, MANIFEST_MAX_CHUNK, &n);
	if (r == 0 && len)
		*len = n;
	return r;
}

int store_chunk_foreach(struct store *s,
			int (*fn)(const struct hash *id, uint64_t stored, void *arg), void *arg)
{
	char p[4096];
	int r = 0;

	for (int i = 0; i < 256 && r == 0; i++) {
		DIR *d;
		struct dirent *e;

		if ((r = store_path(s, p, sizeof(p), "chunks/%02x", i)) < 0)
			return r;
		d = opendir(p);
		if (!d) {
			if (errno == ENOENT)
				continue;
			r = -errno;
			log_error("cannot read '%s': %s", p, strerror(-r));
			return r;
		}
		while (r == 0 && (e = readdir(d))) {
			struct hash id;
			struct stat st;

			/* only canonical chunk names: anything else is never removed by gc */
			if (strlen(e->d_name) != HASH_HEX_LEN ||
			    strspn(e->d_name, "0123456789abcdef") != HASH_HEX_LEN ||
			    hash_from_hex(e->d_name, &id) < 0 || id.b[0] != i)
				continue;
			if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue; /* removed meanwhile */
			r = fn(&id, (uint64_t)st.st_size, arg);
		}
		closedir(d);
	}
	return r;
}

int store_chunk_remove(struct store *s, const struct hash *id)
{
	char p[4096];
	int r;

	if ((r = store_chunk_path(s, id, p, sizeof(p))) < 0)
		return r;
	if (unlink(p) < 0 && errno != ENOENT) {
		r = -errno;
		log_error("cannot remove '%s': %s", p, strerror(-r));
		return r;
	}
	return 0;
}

int store_publish_manifest(const char *dir, struct manifest *m, uint32_t max_used)
{
	char final[4096], tmp[4096], base[4096];
	int r, fd, tries = 0;

	for (;;) {
		char *text = NULL;
		size_t len;

		if (++tries > 1000 || max_used >= MANIFEST_MAX_VERSION)
			return -EOVERFLOW;
		m->version = max_used + 1;
		if ((r = manifest_encode(m, &text, &len)) < 0)
			return r;
		if ((r = fmt_buf(final, sizeof(final), "%s/%u.manifest", dir, m->version)) < 0 ||
		    (r = fmt_buf(base, sizeof(base), "%s/new", dir)) < 0) {
			free(text);
			return r;
		}
		fd = io_open_tmp_for(base, tmp, sizeof(tmp), 0444);
		if (fd < 0) {
			free(text);
			return fd;
		}
		r = io_write_all(fd, text, len);
		free(text);
		if (r == 0)
			r = io_fsync(fd);
		if (close(fd) < 0 && r == 0)
			r = -errno;
		if (r == 0)
			r = io_fault(IO_OP_RENAME);
		if (r == 0 && link(tmp, final) < 0)
			r = -errno;
		unlink(tmp);
		if (r == -EEXIST) {
			max_used = m->version;
			continue;
		}
		if (r < 0)
			return r;
		return io_fsync_dir(dir);
	}
}

int store_parse_id_name(const char *d, uint32_t *v)
{
	const char *dot = strchr(d, '.');
	char num[16];
	uint64_t x;
	size_t n;

	if (!dot || dot == d || d[0] == '0')
		return -1;
	n = (size_t)(dot - d);
	if (n >= sizeof(num))
		return -1;
	memcpy(num, d, n);
	num[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (num[i] < '0' || num[i] > '9')
			return -1;
	if (parse_u64(num, &x) < 0 || x == 0 || x > MANIFEST_MAX_VERSION)
		return -1;
	*v = (uint32_t)x;
	if (strcmp(dot, ".manifest") == 0)
		return 0;
	if (strcmp(dot, ".removed") == 0)
		return 1;
	return -1;
}

static int cmp_id(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int store_scan_ids(const char *dir, uint32_t **out, size_t *n, uint32_t *max_used)
{
	DIR *d;
	struct dirent *e;
	uint32_t *v = NULL, x;
	size_t cap = 0, cnt = 0;
	int kind;

	d = opendir(dir);
	if (!d)
		return -errno;
	*max_used = 0;
	while ((e = readdir(d))) {
		kind = store_parse_id_name(e->d_name, &x);
		if (kind < 0)
			continue;
		*max_used = MAX(*max_used, x);
		if (kind == 0 && out) {
			xgrow((void **)&v, &cap, cnt + 1, sizeof(*v));
			v[cnt++] = x;
		}
	}
	closedir(d);
	if (out) {
		if (cnt)
			qsort(v, cnt, sizeof(*v), cmp_id);
		*out = v;
		*n = cnt;
	}
	return 0;
}
