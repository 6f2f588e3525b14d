/* Chunk sources and chunk verification (see source.h).
 *
 * The file source is deliberately synchronous: start() preads and runs the
 * callback before returning. Asynchronous sources (iSCSI) complete from
 * service(); chunk_source_fetch() and hydrate_slot() drive them with poll()
 * so both kinds go through the same code path. Invariant: nothing reaches
 * cache_chunk_write() without chunk_hashes_verify() when hashes are known. */
#include "agent/source.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cache.h"
#include "lib/hash-x2.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/manifest.h"
#include "lib/util.h"

#define HASHES_MAX_CHUNKS (1ull << 26)
#define HASHES_MAX_FILE ((size_t)HASHES_MAX_CHUNKS * 66)

/* ---- file source ---- */

/* A fetch the deferring file source has queued. */
struct deferred {
	struct deferred *next;
	uint64_t idx, off;
	void *buf;
	size_t len;
	chunk_fetch_cb cb;
	void *arg;
};

struct file_source {
	int fd;
	char *path;
	/* GOLDAGENT_SOURCE_DEFER=1 (tests): completions are queued and delivered
	 * from service() when an eventfd fires, as an asynchronous (iSCSI)
	 * source would deliver them, so the serve loop's async path is tested
	 * with real clients. */
	int efd;
	struct deferred *q, **qtail;
};

static void file_read(struct chunk_source *s, uint64_t idx, uint64_t off, void *buf, size_t len,
		      chunk_fetch_cb cb, void *arg)
{
	struct file_source *f = s->priv;
	ssize_t n;
	int r = 0;

	if (off > s->size || len > s->size - off) {
		log_error("source '%s': chunk %llu (offset %llu) beyond its %llu bytes", f->path,
			  (unsigned long long)idx, (unsigned long long)off,
			  (unsigned long long)s->size);
		r = -ERANGE;
	} else {
		n = io_pread_full(f->fd, buf, len, (off_t)off);
		if (n < 0 || (size_t)n != len) {
			r = n < 0 ? (int)n : -EIO;
			log_error("source '%s': cannot read chunk %llu: %s", f->path,
				  (unsigned long long)idx, strerror(-r));
		}
	}
	cb(arg, idx, r);
}

static int file_start(struct chunk_source *s, uint64_t idx, uint64_t off, void *buf, size_t len,
		      chunk_fetch_cb cb, void *arg)
{
	struct file_source *f = s->priv;
	struct deferred *d;
	uint64_t one = 1;

	if (f->efd < 0) {
		file_read(s, idx, off, buf, len, cb, arg);
		return 0;
	}
	d = xcalloc(1, sizeof(*d));
	*d = (struct deferred){NULL, idx, off, buf, len, cb, arg};
	*f->qtail = d;
	f->qtail = &d->next;
	return write(f->efd, &one, sizeof(one)) == (ssize_t)sizeof(one) ? 0 : -errno;
}

static int file_fd(struct chunk_source *s)
{
	return ((struct file_source *)s->priv)->efd;
}

static int file_events(struct chunk_source *s)
{
	(void)s;
	return POLLIN;
}

static int file_service(struct chunk_source *s, int revents)
{
	struct file_source *f = s->priv;
	struct deferred *d, *next;
	uint64_t v;

	if (f->efd < 0 || !(revents & POLLIN))
		return 0;
	if (read(f->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	/* detach first: a callback may queue the next fetch */
	d = f->q;
	f->q = NULL;
	f->qtail = &f->q;
	for (; d; d = next) {
		next = d->next;
		file_read(s, d->idx, d->off, d->buf, d->len, d->cb, d->arg);
		free(d);
	}
	return 0;
}

static void file_free(struct chunk_source *s)
{
	struct file_source *f = s->priv;

	while (f->q) {
		struct deferred *d = f->q;

		f->q = d->next;
		free(d);
	}
	if (f->efd >= 0)
		close(f->efd);
	close(f->fd);
	free(f->path);
	free(f);
}

static const struct chunk_source_ops file_ops = {
	.kind = "file",
	.start = file_start,
	.fd = file_fd,
	.events = file_events,
	.service = file_service,
	.free = file_free,
};

int chunk_source_file_new(const char *path, struct chunk_source **out)
{
	const char *defer;
	uint64_t size;
	struct file_source *f;
	struct chunk_source *s;
	struct stat st;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		log_error("source '%s': cannot open: %s", path, strerror(errno));
		return r;
	}
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		log_error("source '%s': not a regular file or block device", path);
		close(fd);
		return -EINVAL;
	}
	size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &size) < 0) {
		r = -errno;
		log_error("source '%s': cannot read its size: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	f = xcalloc(1, sizeof(*f));
	f->fd = fd;
	f->path = xstrdup(path);
	f->efd = -1;
	f->qtail = &f->q;
	defer = getenv("GOLDAGENT_SOURCE_DEFER");
	if (defer && strcmp(defer, "1") == 0)
		f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s = xcalloc(1, sizeof(*s));
	s->ops = &file_ops;
	s->priv = f;
	s->desc = xasprintf("file '%s'", path);
	s->size = size;
	*out = s;
	return 0;
}

void chunk_source_free(struct chunk_source *s)
{
	if (!s)
		return;
	if (s->ops->free)
		s->ops->free(s);
	free(s->desc);
	free(s);
}

struct sync_wait {
	int done;
	int err;
};

static void sync_done(void *arg, uint64_t idx, int err)
{
	struct sync_wait *w = arg;

	(void)idx;
	w->done = 1;
	w->err = err;
}

int chunk_source_fetch(struct chunk_source *s, uint64_t idx, uint64_t off, void *buf, size_t len)
{
	struct sync_wait w = {0, 0};
	int r = s->ops->start(s, idx, off, buf, len, sync_done, &w);

	if (r < 0)
		return r;
	while (!w.done) {
		struct pollfd p;

		if (!s->ops->fd || (p.fd = s->ops->fd(s)) < 0)
			return -EIO; /* a synchronous source must have completed */
		p.events = (short)s->ops->events(s);
		p.revents = 0;
		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			return -errno;
		r = s->ops->service(s, p.revents);
		if (r < 0)
			return r;
	}
	return w.err;
}

/* ---- hashes ---- */

int chunk_hashes_parse(const char *text, size_t len, struct chunk_hashes *out, unsigned *bad_line)
{
	size_t cap = 0, pos = 0;
	unsigned line = 0;

	memset(out, 0, sizeof(*out));
	while (pos < len) {
		const char *p = text + pos, *nl = memchr(p, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - p) : len - pos;
		char hex[HASH_HEX_LEN + 1];

		pos += n + (nl != NULL);
		line++;
		while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == 0 || p[0] == '#')
			continue;
		if (out->n >= HASHES_MAX_CHUNKS)
			goto bad;
		if (out->n == cap) {
			size_t zcap = cap;

			xgrow((void **)&out->h, &cap, out->n + 1, sizeof(*out->h));
			out->zero = xrealloc(out->zero, cap);
			memset(out->zero + zcap, 0, cap - zcap);
		}
		if (n == 4 && memcmp(p, "zero", 4) == 0) {
			memset(&out->h[out->n], 0, sizeof(out->h[0]));
			out->zero[out->n++] = 1;
			continue;
		}
		if (n != HASH_HEX_LEN)
			goto bad;
		memcpy(hex, p, n);
		hex[n] = '\0';
		if (hash_from_hex(hex, &out->h[out->n]) < 0)
			goto bad;
		out->zero[out->n++] = 0;
	}
	return 0;
bad:
	if (bad_line)
		*bad_line = line;
	chunk_hashes_release(out);
	return -EINVAL;
}

int chunk_hashes_load(const char *path, struct chunk_hashes *out)
{
	char *text;
	size_t len;
	unsigned line = 0;
	int r;

	r = io_read_file(path, HASHES_MAX_FILE, &text, &len);
	if (r < 0) {
		log_error("hash list '%s': cannot read: %s", path, strerror(-r));
		return r;
	}
	r = chunk_hashes_parse(text, len, out, &line);
	free(text);
	if (r < 0)
		log_error("hash list '%s':%u: expected 64 hex digits or 'zero'", path, line);
	return r;
}

void chunk_hashes_from_manifest(const struct manifest *m, struct chunk_hashes *out)
{
	out->n = m->nchunks;
	out->h = xcalloc((size_t)MAX(m->nchunks, 1), sizeof(*out->h));
	out->zero = xcalloc((size_t)MAX(m->nchunks, 1), 1);
	for (uint64_t i = 0; i < m->nchunks; i++) {
		out->h[i] = m->chunks[i].id;
		out->zero[i] = m->chunks[i].zero;
	}
}

int manifest_load_file(const char *path, struct manifest **m, struct hash *file_hash)
{
	char err[256] = "", *text;
	size_t len;
	int r;

	r = io_read_file(path, MANIFEST_MAX_BYTES, &text, &len);
	if (r < 0) {
		log_error("manifest '%s': cannot read: %s", path, strerror(-r));
		return r;
	}
	r = manifest_decode(text, len, m, err, sizeof(err));
	if (r < 0)
		log_error("manifest '%s': %s", path, err[0] ? err : strerror(-r));
	else if (file_hash)
		hash_buf(text, len, file_hash);
	free(text);
	return r;
}

void chunk_hashes_release(struct chunk_hashes *hs)
{
	free(hs->h);
	free(hs->zero);
	memset(hs, 0, sizeof(*hs));
}

int chunk_hashes_verify(const struct chunk_hashes *hs, uint64_t idx, const void *data, size_t len)
{
	struct hash h;

	if (idx >= hs->n)
		return -ERANGE;
	if (hs->zero[idx]) {
		const uint8_t *p = data;

		for (size_t i = 0; i < len; i++)
			if (p[i])
				return -EBADMSG;
		return 0;
	}
	hash_buf(data, len, &h);
	return hash_equal(&h, &hs->h[idx]) ? 0 : -EBADMSG;
}

void chunk_hashes_verify2(const struct chunk_hashes *hs, uint64_t ia, const void *a, size_t la,
			  uint64_t ib, const void *b, size_t lb, int *ra, int *rb)
{
	struct hash ha, hb;

	if (ia >= hs->n || ib >= hs->n || hs->zero[ia] || hs->zero[ib] || la != lb) {
		*ra = chunk_hashes_verify(hs, ia, a, la);
		*rb = chunk_hashes_verify(hs, ib, b, lb);
		return;
	}
	hash_buf2(a, b, la, &ha, &hb);
	*ra = hash_equal(&ha, &hs->h[ia]) ? 0 : -EBADMSG;
	*rb = hash_equal(&hb, &hs->h[ib]) ? 0 : -EBADMSG;
}

unsigned chunk_checks_verify(const struct chunk_hashes *hs, struct work_item *items)
{
	struct chunk_check *a = (struct chunk_check *)items;
	struct chunk_check *b = items->next ? (struct chunk_check *)items->next : NULL;

	if (hs && b && !b->wi.next) {
		chunk_hashes_verify2(hs, a->idx, a->buf, a->len, b->idx, b->buf, b->len,
				     &a->verdict, &b->verdict);
		return 2;
	}
	for (struct work_item *it = items; it; it = it->next) {
		struct chunk_check *k = (struct chunk_check *)it;

		k->verdict = hs ? chunk_hashes_verify(hs, k->idx, k->buf, k->len) : 0;
	}
	return 0;
}

/* ---- hydration ---- */

/* (hash, chunk) of the other slot's present chunks, sorted by hash. */
struct donor {
	struct hash h;
	uint64_t idx;
};

static int donor_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct donor *)a)->h, &((const struct donor *)b)->h, HASH_LEN);
}

static struct donor *donors_build(struct cache *c, int slot, const struct chunk_hashes *other,
				  size_t *n)
{
	uint64_t cnt = cache_slot_chunks(c, slot);
	struct donor *d;

	*n = 0;
	if (!other || other->n != cnt || cnt == 0)
		return NULL;
	d = xcalloc((size_t)cnt, sizeof(*d));
	for (uint64_t i = 0; i < cnt; i++)
		if (!other->zero[i] && cache_chunk_present(c, slot, i))
			d[(*n)++] = (struct donor){other->h[i], i};
	qsort(d, *n, sizeof(*d), donor_cmp);
	return d;
}

/* Fills buf with chunk i of slot from the other slot when a chunk with its
 * hash is present there and verifies. 0 or -ENOENT. */
static int copy_local(struct cache *c, int other_slot, const struct donor *d, size_t nd,
		      const struct chunk_hashes *hs, uint64_t i, void *buf, size_t len)
{
	struct donor key = {hs->h[i], 0};
	const struct donor *hit = nd ? bsearch(&key, d, nd, sizeof(*d), donor_cmp) : NULL;

	if (!hit || cache_chunk_len(c, other_slot, hit->idx) != len ||
	    cache_chunk_read_raw(c, other_slot, hit->idx, buf, len) < 0 ||
	    chunk_hashes_verify(hs, i, buf, len) < 0)
		return -ENOENT;
	return 0;
}

int hydrate_slot(struct cache *c, int slot, struct chunk_source *src, const struct chunk_hashes *hs,
		 const struct chunk_hashes *other, uint64_t commit_bytes, struct hydrate_stats *st)
{
	const struct cache_header *h = cache_header(c);
	uint64_t n = cache_slot_chunks(c, slot), since = 0;
	struct donor *donors = NULL;
	size_t ndonors = 0;
	uint8_t *buf;
	int r = 0, rejected = 0;

	memset(st, 0, sizeof(*st));
	if (n == 0 || slot < 0 || slot >= CACHE_NSLOTS)
		return -EINVAL;
	if (hs && hs->n != n) {
		log_error("slot %c ('%s@%s'): hash list has %llu chunks, the image has %llu",
			  'A' + slot, h->slot[slot].name, h->slot[slot].version,
			  (unsigned long long)hs->n, (unsigned long long)n);
		return -EINVAL;
	}
	if (hs && other)
		donors = donors_build(c, 1 - slot, other, &ndonors);
	if (commit_bytes == 0)
		commit_bytes = 64ull << 20;
	buf = xmalloc(h->geo.chunk_size);
	for (uint64_t i = 0; i < n; i++) {
		size_t len = cache_chunk_len(c, slot, i);
		uint64_t off = i * h->geo.chunk_size;
		int fetched = 0;

		if (cache_chunk_present(c, slot, i)) {
			st->skipped++;
			continue;
		}
		if (hs && hs->zero[i]) {
			memset(buf, 0, len);
			st->zero++;
		} else if (hs && copy_local(c, 1 - slot, donors, ndonors, hs, i, buf, len) == 0) {
			st->copied++;
		} else if (!src) {
			log_error(
				"slot %c ('%s@%s'): chunk %llu is not in the other slot and there "
				"is no source to fetch it from",
				'A' + slot, h->slot[slot].name, h->slot[slot].version,
				(unsigned long long)i);
			r = -ENODATA;
			break;
		} else {
			r = chunk_source_fetch(src, i, off, buf, len);
			if (r < 0)
				break;
			fetched = 1;
		}
		if (hs && chunk_hashes_verify(hs, i, buf, len) < 0) {
			log_error("slot %c ('%s@%s'): chunk %llu from %s does not match its hash: "
				  "not stored",
				  'A' + slot, h->slot[slot].name, h->slot[slot].version,
				  (unsigned long long)i, src ? src->desc : "the other slot");
			st->rejected++;
			rejected = 1;
			continue;
		}
		r = cache_chunk_write(c, slot, i, buf, len);
		if (r < 0)
			break;
		if (fetched) {
			st->fetched++;
			st->bytes += len;
		}
		since += len;
		if (since >= commit_bytes) {
			r = cache_commit(c);
			if (r < 0)
				break;
			since = 0;
		}
	}
	if (r == 0)
		r = cache_commit(c);
	free(buf);
	free(donors);
	if (r == 0 && rejected)
		r = -EBADMSG;
	return r;
}
