/* goldcached's gold-update deltas (see delta.h, lib/delta.h, docs/update.md).
 *
 * One delta: the new chunk and the old chunk (same index, previous version)
 * are read from the store, each checked against its id by store_chunk_get;
 * the new one is compressed with the old one as zstd prefix (patch-from). A
 * delta that is not smaller than the chunk is not sent (DELTA_NONE: the agent
 * reads that chunk over iSCSI as before).
 *
 * Cache: DIR/OLD-NEW.zd (OLD is "0" without a prefix), content-addressed by
 * the pair of chunk ids, so an entry never goes stale while both chunks
 * exist, and a removed chunk only leaves an entry nobody asks for. File:
 *     0  "GCDZ"   4 u32 format (1)   8 u32 new chunk length   12 u32 frame length
 *    16  SHA-256 of the frame (32)   48  the frame
 * written to a temp file and renamed (not fsynced: a cache; a torn or damaged
 * file fails the check on read, is removed and made again). Bounded: the
 * bytes of the files found at start plus those written since; at the bound
 * the least recently used files go (a hit sets its file's mtime to now) until
 * three quarters are left, so entries of updates nobody takes any more (a
 * chunk removed by gc included) age out. `goldctl store gc` does not look at
 * the folder: removing it is always safe. */
#include "appliance/delta.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "appliance/http.h"
#include "appliance/store.h"
#include "lib/delta.h"
#include "lib/hash.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/manifest.h"
#include "lib/util.h"

#define ZD_MAGIC "GCDZ"
#define ZD_HDR 48u

struct delta_gen {
	struct store *store;
	char *dir;
	uint64_t cache_max, cache_bytes;
	ZSTD_CCtx *cc;
	uint8_t *oldb, *newb, *rec; /* chunk, chunk, record (header + frame) */
	size_t cap; /* bytes of each (the largest chunk seen) */
	struct delta_gen_stats st;
};

static uint64_t dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t sum = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		struct stat st;

		if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
		    S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_size;
	}
	closedir(d);
	return sum;
}

int delta_gen_new(struct store *store, const char *cache_dir, uint64_t cache_max,
		  struct delta_gen **out)
{
	struct delta_gen *g = xcalloc(1, sizeof(*g));
	int r;

	*out = NULL;
	g->store = store;
	g->cache_max = cache_max ? cache_max : DELTA_CACHE_MAX;
	g->cc = ZSTD_createCCtx();
	if (!g->cc) {
		free(g);
		return -ENOMEM;
	}
	if (cache_dir) {
		r = io_mkdir_p(cache_dir, 0700);
		if (r < 0) {
			log_warn("delta cache '%s': %s: deltas are made at every request",
				 cache_dir, strerror(-r));
		} else {
			g->dir = xstrdup(cache_dir);
			g->cache_bytes = dir_bytes(cache_dir);
		}
	}
	*out = g;
	return 0;
}

void delta_gen_free(struct delta_gen *g)
{
	if (!g)
		return;
	ZSTD_freeCCtx(g->cc);
	free(g->oldb);
	free(g->newb);
	free(g->rec);
	free(g->dir);
	free(g);
}

const struct delta_gen_stats *delta_gen_stats(const struct delta_gen *g)
{
	return &g->st;
}

static void grow(struct delta_gen *g, size_t chunk)
{
	if (chunk <= g->cap)
		return;
	free(g->oldb);
	free(g->newb);
	free(g->rec);
	g->oldb = xmalloc(chunk);
	g->newb = xmalloc(chunk);
	g->rec = xmalloc(DELTA_REC_LEN + ZD_HDR + chunk);
	g->cap = chunk;
}

static void cache_path(const struct delta_gen *g, const struct manifest_chunk *o,
		       const struct hash *n, char *buf, size_t size)
{
	char oh[HASH_HEX_LEN + 1], nh[HASH_HEX_LEN + 1];

	hash_to_hex(n, nh);
	if (o)
		hash_to_hex(&o->id, oh);
	fmt_buf(buf, size, "%s/%s-%s.zd", g->dir, o ? oh : "0", nh);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The cached frame for (o, n) into g->rec + DELTA_REC_LEN: its length, or 0
 * when there is none (a damaged entry is removed). */
static size_t cache_get(struct delta_gen *g, const char *path, size_t nlen)
{
	uint8_t *hdr = g->rec + DELTA_REC_LEN;
	struct hash h;
	struct stat st;
	uint32_t flen;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = fstat(fd, &st) == 0 && st.st_size >= ZD_HDR && (uint64_t)st.st_size <= ZD_HDR + nlen
		    ? io_read_full(fd, hdr, (size_t)st.st_size)
		    : -1;
	close(fd);
	flen = n >= (ssize_t)ZD_HDR ? le32(hdr + 12) : 0;
	if (n >= (ssize_t)ZD_HDR && memcmp(hdr, ZD_MAGIC, 4) == 0 && le32(hdr + 4) == 1 &&
	    le32(hdr + 8) == nlen && flen > 0 && flen < nlen && (size_t)n == ZD_HDR + flen) {
		hash_buf(hdr + ZD_HDR, flen, &h);
		if (memcmp(h.b, hdr + 16, HASH_LEN) == 0) {
			utimensat(AT_FDCWD, path, NULL, 0); /* recently used (cache_trim) */
			memmove(hdr, hdr + ZD_HDR, flen);
			g->st.cache_hits++;
			return flen;
		}
	}
	log_warn("delta cache file '%s' is damaged: removed, the delta is made again", path);
	g->st.cache_bad++;
	if (unlink(path) == 0 && g->cache_bytes >= (uint64_t)st.st_size)
		g->cache_bytes -= (uint64_t)st.st_size;
	return 0;
}

struct lru {
	struct timespec mtime;
	uint64_t size;
	char name[160];
};

static int lru_cmp(const void *x, const void *y)
{
	const struct lru *a = x, *b = y;

	if (a->mtime.tv_sec != b->mtime.tv_sec)
		return a->mtime.tv_sec < b->mtime.tv_sec ? -1 : 1;
	return a->mtime.tv_nsec < b->mtime.tv_nsec ? -1 : a->mtime.tv_nsec > b->mtime.tv_nsec;
}

/* The cache is full: removes the least recently used files until three
 * quarters of the bound are left. */
static void cache_trim(struct delta_gen *g)
{
	DIR *d = opendir(g->dir);
	struct lru *v = NULL;
	size_t n = 0, cap = 0, removed = 0;
	uint64_t sum = 0;
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		struct stat st;

		if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof(v->name) ||
		    fstatat(dirfd(d), e->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (n == cap)
			xgrow((void **)&v, &cap, n + 1, sizeof(*v));
		v[n].mtime = st.st_mtim;
		v[n].size = (uint64_t)st.st_size;
		fmt_buf(v[n].name, sizeof(v[n].name), "%s", e->d_name);
		sum += v[n].size;
		n++;
	}
	if (n)
		qsort(v, n, sizeof(*v), lru_cmp);
	for (size_t i = 0; i < n && sum > g->cache_max / 4 * 3; i++)
		if (unlinkat(dirfd(d), v[i].name, 0) == 0) {
			sum -= v[i].size;
			removed++;
		}
	closedir(d);
	free(v);
	g->cache_bytes = sum;
	log_info("delta cache '%s' reached %llu bytes: %zu least recently used deltas removed",
		 g->dir, (unsigned long long)g->cache_max, removed);
}

static void cache_put(struct delta_gen *g, const char *path, const uint8_t *frame, size_t flen,
		      size_t nlen)
{
	uint8_t hdr[ZD_HDR];
	struct hash h;
	char tmp[4200];
	int fd;

	if (g->cache_bytes + ZD_HDR + flen > g->cache_max)
		cache_trim(g);
	if (g->cache_bytes + ZD_HDR + flen > g->cache_max)
		return;
	memcpy(hdr, ZD_MAGIC, 4);
	put32(hdr + 4, 1);
	put32(hdr + 8, (uint32_t)nlen);
	put32(hdr + 12, (uint32_t)flen);
	hash_buf(frame, flen, &h);
	memcpy(hdr + 16, h.b, HASH_LEN);
	fd = io_open_tmp_for(path, tmp, sizeof(tmp), 0600);
	if (fd < 0)
		return;
	if (io_write_all(fd, hdr, sizeof(hdr)) < 0 || io_write_all(fd, frame, flen) < 0 ||
	    close(fd) < 0 || io_rename(tmp, path) < 0) {
		log_warn("cannot keep a delta in '%s' (the cache is only an optimisation)", g->dir);
		unlink(tmp);
		return;
	}
	g->cache_bytes += ZD_HDR + flen;
}

/* Reads chunk id (nlen bytes) into buf; 0 or -errno, logged. */
static int read_chunk(struct delta_gen *g, const struct manifest *m, uint64_t i, uint8_t *buf,
		      size_t nlen)
{
	char hex[HASH_HEX_LEN + 1];
	size_t got = 0;
	int r = store_chunk_get(g->store, &m->chunks[i].id, buf, g->cap, &got);

	if (r == 0 && got != nlen)
		r = -EBADMSG;
	if (r < 0)
		log_error("delta for %s@%u: chunk %llu (%s) unreadable from the store: %s", m->name,
			  m->version, (unsigned long long)i, hash_to_hex(&m->chunks[i].id, hex),
			  strerror(-r));
	return r;
}

int delta_gen_record(struct delta_gen *g, const struct manifest *from, const struct manifest *to,
		     uint64_t idx, const uint8_t **rec, size_t *len)
{
	const struct manifest_chunk *o = NULL;
	size_t nlen, olen = 0, flen = 0;
	char path[4096];
	uint32_t status = DELTA_OK;
	int r;

	if (idx >= to->nchunks || from->chunk_size != to->chunk_size)
		return -EINVAL;
	grow(g, to->chunk_size);
	nlen = manifest_chunk_len(to, idx);
	if (idx < from->nchunks && !from->chunks[idx].zero) {
		o = &from->chunks[idx];
		olen = manifest_chunk_len(from, idx);
	}
	if (to->chunks[idx].zero) {
		status = DELTA_NONE; /* the agent writes zeros itself */
		goto out;
	}
	if (g->dir) {
		cache_path(g, o, &to->chunks[idx].id, path, sizeof(path));
		flen = cache_get(g, path, nlen);
		if (flen)
			goto out;
	}
	if (read_chunk(g, to, idx, g->newb, nlen) < 0 ||
	    (o && read_chunk(g, from, idx, g->oldb, olen) < 0)) {
		status = DELTA_FAILED;
		g->st.failed++;
		goto out;
	}
	r = delta_compress(g->cc, DELTA_GEN_LEVEL, g->oldb, olen, g->newb, nlen,
			   g->rec + DELTA_REC_LEN, nlen - 1, &flen);
	if (r < 0) {
		if (r != -ENOSPC)
			log_warn("delta for %s@%u chunk %llu: zstd failed", to->name, to->version,
				 (unsigned long long)idx);
		status = DELTA_NONE;
		g->st.none++;
		flen = 0;
		goto out;
	}
	g->st.made++;
	if (g->dir)
		cache_put(g, path, g->rec + DELTA_REC_LEN, flen, nlen);
out:
	if (status != DELTA_OK)
		flen = 0;
	delta_rec_encode(g->rec, idx, status, (uint32_t)flen);
	*rec = g->rec;
	*len = DELTA_REC_LEN + flen;
	g->st.bytes += *len;
	return 0;
}

struct delta_stream {
	struct delta_gen *g;
	struct manifest *from, *to;
	uint64_t *idx;
	uint32_t n, next;
	uint8_t hdr[DELTA_HDR_LEN];
	/* the record being sent: a copy, since other streams share g's buffer
	 * between two calls of this one */
	uint8_t *buf;
	size_t cap;
	const uint8_t *pend; /* bytes not yet handed to the server */
	size_t pend_len;
	int started;
};

struct delta_stream *delta_stream_new(struct delta_gen *g, struct manifest *from,
				      struct manifest *to, uint64_t *idx, uint32_t n)
{
	struct delta_stream *s = xcalloc(1, sizeof(*s));

	s->g = g;
	s->from = from;
	s->to = to;
	s->idx = idx;
	s->n = n;
	delta_hdr_encode(s->hdr, to->chunk_size, n);
	return s;
}

ssize_t delta_stream_read(void *arg, uint64_t pos, char *buf, size_t max)
{
	struct delta_stream *s = arg;
	size_t k;

	(void)pos;
	if (!s->started) {
		s->started = 1;
		s->pend = s->hdr;
		s->pend_len = sizeof(s->hdr);
	}
	if (s->pend_len == 0) {
		if (s->next >= s->n)
			return HTTP_READER_END;
		const uint8_t *rec;
		size_t len;

		/* the one expensive step of a call: at most one chunk compressed */
		if (delta_gen_record(s->g, s->from, s->to, s->idx[s->next], &rec, &len) < 0)
			return HTTP_READER_ERROR;
		s->next++;
		if (len > s->cap) {
			free(s->buf);
			s->buf = xmalloc(len);
			s->cap = len;
		}
		memcpy(s->buf, rec, len);
		s->pend = s->buf;
		s->pend_len = len;
	}
	k = MIN(max, s->pend_len);
	memcpy(buf, s->pend, k);
	s->pend += k;
	s->pend_len -= k;
	return (ssize_t)k;
}

void delta_stream_free(void *arg)
{
	struct delta_stream *s = arg;

	if (!s)
		return;
	manifest_free(s->from);
	manifest_free(s->to);
	free(s->idx);
	free(s->buf);
	free(s);
}
