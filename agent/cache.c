/* The local cache (see cache.h for the contract, docs/agent.md for the bytes).
 *
 * Layout, every offset derived from four numbers in the header (chunk size,
 * dirty block size, gold capacity, volume size), so a corrupt offset is caught
 * by recomputing it:
 *
 *   0        header copy A (4 KiB block, 640 bytes used, SHA-256 at 608)
 *   4096     header copy B
 *   8192     present map, slot A   (bit per chunk, LSB first, 4 KiB pages)
 *   ...      present map, slot B
 *   ...      dirty map, volume     (bit per dirty block)
 *   1 MiB al gold slot A           (chunk i at i * chunk_size)
 *   1 MiB al gold slot B
 *   1 MiB al machine volume
 *
 * State machine of a gold chunk: ABSENT -> WRITTEN (cache_chunk_write: data
 * in the page cache, or sent to the device with O_DIRECT when aligned, maybe
 * still in its volatile cache; pending bit in memory only) -> PRESENT in
 * memory (cache_commit_begin: bit set, readers served; the map pages copied)
 * -> FLUSHED (the commit's data fdatasync) -> PERSISTED (the copy written
 * and fdatasynced). A failed data flush takes the bit back (ABSENT). A crash
 * between any two steps leaves the chunk ABSENT or PRESENT with durable data,
 * never a present bit on disk over data that did not reach the disk: the
 * pages written are the copy taken at begin, whose bits are all flushed
 * before it is written, and one commit is out at a time. A slot is
 * re-assigned by first making it EMPTY in the header, then zeroing its map,
 * then FILLING: a bit from an older version can never be read as a bit of
 * the new one.
 *
 * Dirty map: bits are only set while serving (write-ahead: bit written and
 * fdatasynced before the data write starts) and only cleared by a sync after
 * the appliance acknowledged the upload. A torn map-page write can therefore
 * only lose bits whose data was never written. If the map cannot be read, or
 * the previous writer did not use write-ahead and stopped uncleanly, the
 * header gets CACHE_F_DIRTY_ALL: every block counts as dirty until a full
 * compare clears it; never a silent skip. */
#include "agent/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/bytes.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

#define HDR_SUM_OFF 608u
#define SLOT_REC_OFF 192u
#define SLOT_REC_LEN 192u
#define ZERO_BUF (1u << 20)

static const uint8_t cache_magic[8] = {'G', 'C', 'C', 'A', 'C', 'H', 'E', '\n'};

struct cache {
	int fd;
	int dfd; /* the same file opened O_DIRECT for chunk writes, or -1 */
	char *path;
	int rdonly;
	struct cache_header hdr;
	int hdr_copy; /* copy holding hdr */
	int other_bad; /* the other copy failed validation at open */
	uint64_t dev_size;
	uint8_t *pmap[CACHE_NSLOTS];
	uint8_t *pend[CACHE_NSLOTS]; /* written, not yet committed */
	uint64_t npend;
	uint64_t present[CACHE_NSLOTS];
	uint8_t *dmap;
	uint64_t ndirty;
	uint8_t *wseen; /* blocks written since cache_dirty_track(on), or NULL */
	struct cache_commit_job *job; /* the commit between begin and end, or NULL */
	char *notes;
	size_t notes_len;
};

static void commit_job_free(struct cache_commit_job *j);

/* ---- little helpers ---- */

static inline int bit_get(const uint8_t *m, uint64_t i)
{
	return (m[i >> 3] >> (i & 7)) & 1;
}
static inline void bit_set(uint8_t *m, uint64_t i)
{
	m[i >> 3] |= (uint8_t)(1u << (i & 7));
}
static inline void bit_clear(uint8_t *m, uint64_t i)
{
	m[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}
static uint64_t bits_count(const uint8_t *m, uint64_t nbits)
{
	uint64_t n = 0, i;

	for (i = 0; i + 8 <= nbits; i += 8)
		n += (uint64_t)__builtin_popcount(m[i >> 3]);
	for (; i < nbits; i++)
		n += (uint64_t)bit_get(m, i);
	return n;
}
static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}
static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}
static uint64_t div_up(uint64_t v, uint64_t d)
{
	return v / d + (v % d != 0);
}

static void note(struct cache *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct cache *c, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	n = strlen(line);
	if (c->notes_len + n + 2 > (size_t)64 << 10)
		return;
	c->notes = xrealloc(c->notes, c->notes_len + n + 2);
	memcpy(c->notes + c->notes_len, line, n);
	c->notes[c->notes_len + n] = '\n';
	c->notes_len += n + 1;
	c->notes[c->notes_len] = '\0';
	log_warn("cache '%s': %s", c->path, line);
}

/* ---- geometry and header ---- */

int cache_geometry_layout(struct cache_geometry *g)
{
	uint64_t slot_bytes;

	if (!is_pow2(g->chunk_size) || g->chunk_size < CACHE_MIN_CHUNK ||
	    g->chunk_size > CACHE_MAX_CHUNK)
		return -EINVAL;
	if (!is_pow2(g->dirty_block_size) || g->dirty_block_size < 4096 ||
	    g->dirty_block_size > g->chunk_size)
		return -EINVAL;
	if (g->gold_capacity == 0 || g->gold_capacity > CACHE_MAX_SIZE)
		return -EINVAL;
	if (g->volume_size == 0 || g->volume_size > CACHE_MAX_SIZE || g->volume_size % 4096)
		return -EINVAL;
	/* all below stays far from 2^64: sizes <= 2^44, chunks >= 2^12 */
	g->nchunks = div_up(g->gold_capacity, g->chunk_size);
	g->nblocks = div_up(g->volume_size, g->dirty_block_size);
	g->pmap_len = round_up(div_up(g->nchunks, 8), CACHE_ALIGN);
	g->dmap_len = round_up(div_up(g->nblocks, 8), CACHE_ALIGN);
	g->pmap_off[0] = 2ull * CACHE_HDR_COPY_SIZE;
	g->pmap_off[1] = g->pmap_off[0] + g->pmap_len;
	g->dmap_off = g->pmap_off[1] + g->pmap_len;
	slot_bytes = round_up(g->nchunks * g->chunk_size, CACHE_DATA_ALIGN);
	g->slot_off[0] = round_up(g->dmap_off + g->dmap_len, CACHE_DATA_ALIGN);
	g->slot_off[1] = g->slot_off[0] + slot_bytes;
	g->volume_off = g->slot_off[1] + slot_bytes;
	g->total_size = g->volume_off + g->volume_size;
	return 0;
}

static void put_str(uint8_t *p, const char *s)
{
	size_t n = strnlen(s, CACHE_NAME_MAX);

	memset(p, 0, CACHE_NAME_MAX + 1);
	memcpy(p, s, n);
}

/* NUL-padded 64-byte field: a NUL inside it, nothing but NULs after. */
static int get_str(const uint8_t *p, char *out)
{
	size_t n = strnlen((const char *)p, CACHE_NAME_MAX + 1);

	if (n > CACHE_NAME_MAX)
		return -1;
	for (size_t i = n; i <= CACHE_NAME_MAX; i++)
		if (p[i])
			return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

void cache_header_encode(const struct cache_header *h, uint8_t *b)
{
	const struct cache_geometry *g = &h->geo;
	struct hash sum;

	memset(b, 0, CACHE_HDR_LEN);
	memcpy(b, cache_magic, sizeof(cache_magic));
	put_le32(b + 8, CACHE_FORMAT_VERSION);
	put_le32(b + 12, CACHE_HDR_LEN);
	put_le64(b + 16, h->generation);
	put_le32(b + 24, g->chunk_size);
	put_le32(b + 28, g->dirty_block_size);
	put_le64(b + 32, g->gold_capacity);
	put_le64(b + 40, g->volume_size);
	put_le64(b + 48, g->pmap_off[0]);
	put_le64(b + 56, g->pmap_off[1]);
	put_le64(b + 64, g->pmap_len);
	put_le64(b + 72, g->dmap_off);
	put_le64(b + 80, g->dmap_len);
	put_le64(b + 88, g->slot_off[0]);
	put_le64(b + 96, g->slot_off[1]);
	put_le64(b + 104, g->volume_off);
	put_le64(b + 112, g->total_size);
	put_le32(b + 120, h->flags);
	put_le32(b + 124, h->active_slot);
	put_le32(b + 128, h->dirty_protocol);
	put_le32(b + 132, h->unclean_stops);
	put_le64(b + 136, (uint64_t)h->created);
	put_le64(b + 144, (uint64_t)h->last_sync);
	put_le64(b + 152, (uint64_t)h->restore_order);
	put_le64(b + 160, (uint64_t)h->restore_done);
	put_le64(b + 168, h->last_sync_bytes);
	put_le32(b + 176, h->last_sync_pause_ms);
	put_le32(b + 180, h->last_sync_snapshot);
	for (int s = 0; s < CACHE_NSLOTS; s++) {
		uint8_t *r = b + SLOT_REC_OFF + (size_t)s * SLOT_REC_LEN;
		const struct cache_slot_info *si = &h->slot[s];

		put_le32(r, si->state);
		put_le64(r + 8, si->image_size);
		put_str(r + 16, si->name);
		put_str(r + 80, si->version);
		memcpy(r + 144, si->manifest.b, HASH_LEN);
	}
	hash_buf(b, HDR_SUM_OFF, &sum);
	memcpy(b + HDR_SUM_OFF, sum.b, HASH_LEN);
}

int cache_header_decode(const uint8_t *b, size_t len, struct cache_header *h)
{
	struct cache_geometry *g = &h->geo, want;
	struct hash sum;

	memset(h, 0, sizeof(*h));
	if (len < CACHE_HDR_LEN || memcmp(b, cache_magic, sizeof(cache_magic)) != 0)
		return -EBADMSG;
	hash_buf(b, HDR_SUM_OFF, &sum);
	if (memcmp(sum.b, b + HDR_SUM_OFF, HASH_LEN) != 0)
		return -EBADMSG;
	if (get_le32(b + 8) != CACHE_FORMAT_VERSION)
		return -EPROTONOSUPPORT;
	if (get_le32(b + 12) != CACHE_HDR_LEN)
		return -EUCLEAN;
	h->generation = get_le64(b + 16);
	g->chunk_size = get_le32(b + 24);
	g->dirty_block_size = get_le32(b + 28);
	g->gold_capacity = get_le64(b + 32);
	g->volume_size = get_le64(b + 40);
	want = *g;
	if (cache_geometry_layout(&want) < 0)
		return -EUCLEAN;
	g->pmap_off[0] = get_le64(b + 48);
	g->pmap_off[1] = get_le64(b + 56);
	g->pmap_len = get_le64(b + 64);
	g->dmap_off = get_le64(b + 72);
	g->dmap_len = get_le64(b + 80);
	g->slot_off[0] = get_le64(b + 88);
	g->slot_off[1] = get_le64(b + 96);
	g->volume_off = get_le64(b + 104);
	g->total_size = get_le64(b + 112);
	want.nchunks = 0, want.nblocks = 0;
	g->nchunks = 0, g->nblocks = 0;
	if (memcmp(&want, g, sizeof(want)) != 0)
		return -EUCLEAN;
	cache_geometry_layout(g); /* fills nchunks, nblocks */
	h->flags = get_le32(b + 120);
	h->active_slot = get_le32(b + 124);
	h->dirty_protocol = get_le32(b + 128);
	h->unclean_stops = get_le32(b + 132);
	h->created = (int64_t)get_le64(b + 136);
	h->last_sync = (int64_t)get_le64(b + 144);
	h->restore_order = (int64_t)get_le64(b + 152);
	h->restore_done = (int64_t)get_le64(b + 160);
	h->last_sync_bytes = get_le64(b + 168);
	h->last_sync_pause_ms = get_le32(b + 176);
	h->last_sync_snapshot = get_le32(b + 180);
	if (h->flags & ~CACHE_F_KNOWN)
		return -EUCLEAN;
	/* the flag and the order id go together */
	if (!(h->flags & CACHE_F_RESTORING) != !h->restore_order)
		return -EUCLEAN;
	for (int s = 0; s < CACHE_NSLOTS; s++) {
		const uint8_t *r = b + SLOT_REC_OFF + (size_t)s * SLOT_REC_LEN;
		struct cache_slot_info *si = &h->slot[s];

		si->state = get_le32(r);
		si->image_size = get_le64(r + 8);
		if (get_str(r + 16, si->name) < 0 || get_str(r + 80, si->version) < 0)
			return -EUCLEAN;
		memcpy(si->manifest.b, r + 144, HASH_LEN);
		switch (si->state) {
		case CACHE_SLOT_EMPTY:
			if (si->name[0] || si->version[0] || si->image_size)
				return -EUCLEAN;
			break;
		case CACHE_SLOT_FILLING:
		case CACHE_SLOT_COMPLETE:
			if (!name_is_valid(si->name) || !name_is_valid(si->version) ||
			    si->image_size == 0 || si->image_size > g->gold_capacity)
				return -EUCLEAN;
			break;
		default:
			return -EUCLEAN;
		}
	}
	if (h->active_slot != CACHE_NO_SLOT &&
	    (h->active_slot >= CACHE_NSLOTS || h->slot[h->active_slot].state == CACHE_SLOT_EMPTY))
		return -EUCLEAN;
	return 0;
}

/* Picks the newest valid of the two copies at buf (2 * CACHE_HDR_COPY_SIZE).
 * Ties (both written at init) go to A. */
static int header_select(const uint8_t *buf, size_t len, struct cache_header *h, int *copy,
			 int *other_bad, int err[2])
{
	struct cache_header c[2];

	for (int i = 0; i < 2; i++) {
		size_t off = (size_t)i * CACHE_HDR_COPY_SIZE;

		err[i] = off < len ? cache_header_decode(buf + off, len - off, &c[i]) : -EBADMSG;
	}
	if (err[0] < 0 && err[1] < 0)
		return err[0] == -EBADMSG ? err[1] : err[0];
	if (err[0] == 0 && (err[1] < 0 || c[0].generation >= c[1].generation))
		*copy = 0;
	else
		*copy = 1;
	*other_bad = err[1 - *copy] < 0;
	*h = c[*copy];
	return 0;
}

static uint64_t slot_nchunks(const struct cache_header *h, int slot)
{
	const struct cache_slot_info *si = &h->slot[slot];

	if (si->state == CACHE_SLOT_EMPTY)
		return 0;
	return div_up(si->image_size, h->geo.chunk_size);
}

/* Maps the map regions of a memory image (fuzzing): counts bits inside the
 * valid ranges. */
int cache_load_mem(const uint8_t *buf, size_t len, struct cache_header *h, uint64_t *present,
		   uint64_t *dirty)
{
	int copy, other_bad, err[2], r;
	const struct cache_geometry *g;

	r = header_select(buf, len, h, &copy, &other_bad, err);
	if (r < 0)
		return r;
	g = &h->geo;
	*present = 0;
	for (int s = 0; s < CACHE_NSLOTS; s++) {
		if (g->pmap_off[s] > len || g->pmap_len > len - g->pmap_off[s])
			return -EFBIG;
		*present += bits_count(buf + g->pmap_off[s], slot_nchunks(h, s));
	}
	if (g->dmap_off > len || g->dmap_len > len - g->dmap_off)
		return -EFBIG;
	*dirty = bits_count(buf + g->dmap_off, g->nblocks);
	return 0;
}

/* ---- header writes ---- */

/* Writes nh (generation = current + 1) to the copy not holding the current
 * header and fdatasyncs it; on success it becomes the cache's header. On
 * failure the current header stays (and the next attempt targets the same,
 * possibly torn, copy again, never the last good one). */
static int header_update(struct cache *c, const struct cache_header *nh)
{
	uint8_t blk[CACHE_HDR_COPY_SIZE];
	struct cache_header h = *nh;
	int target = 1 - c->hdr_copy, r;

	if (c->rdonly)
		return -EROFS;
	h.generation = c->hdr.generation + 1;
	memset(blk, 0, sizeof(blk));
	cache_header_encode(&h, blk);
	r = io_pwrite_all(c->fd, blk, sizeof(blk), (off_t)target * CACHE_HDR_COPY_SIZE);
	if (r == 0)
		r = io_fdatasync(c->fd);
	if (r < 0) {
		log_error("cache '%s': cannot write header copy %c: %s", c->path, 'A' + target,
			  strerror(-r));
		return r;
	}
	c->hdr = h;
	c->hdr_copy = target;
	c->other_bad = 0;
	return 0;
}

/* Writes the map pages covering bytes [lo, hi) of map (at disk offset moff). */
static int map_write(struct cache *c, const uint8_t *map, uint64_t moff, uint64_t lo, uint64_t hi)
{
	uint64_t a = lo / CACHE_ALIGN * CACHE_ALIGN, b = round_up(hi, CACHE_ALIGN);

	return io_pwrite_all(c->fd, map + a, (size_t)(b - a), (off_t)(moff + a));
}

static int zero_range(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[ZERO_BUF];

	while (len > 0) {
		size_t n = (size_t)MIN(len, (uint64_t)sizeof(zeros));
		int r = io_pwrite_all(fd, zeros, n, (off_t)off);

		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

static int dev_size_of(int fd, uint64_t *size, int *is_blk)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	*is_blk = S_ISBLK(st.st_mode);
	if (*is_blk) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0)
			return -errno;
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*size = (uint64_t)st.st_size;
	return 0;
}

/* ---- create / open / close ---- */

/* One writer per cache: two processes writing the same file (hydrating,
 * syncing, serving, assigning a slot) would interleave header and map
 * writes. An exclusive flock on the descriptor: it goes with the descriptor
 * (close, exit, crash), so nothing is left to clean up. Readers take none. */
static int lock_writer(int fd, const char *path)
{
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno != EWOULDBLOCK) {
		int e = errno;

		log_error("cache '%s': cannot lock: %s", path, strerror(e));
		return -e;
	}
	log_error("cache '%s' is in use by another goldagent", path);
	return -EBUSY;
}

int cache_create(const char *path, const struct cache_params *p)
{
	struct cache_header h;
	struct cache_geometry *g = &h.geo;
	uint8_t blk[2 * CACHE_HDR_COPY_SIZE];
	uint64_t dev_size = 0;
	int fd, r, is_blk = 0;

	memset(&h, 0, sizeof(h));
	if (!p->image || !name_is_valid(p->image) || !p->version || !name_is_valid(p->version)) {
		log_error("cache '%s': image name and version must be 1-63 characters of "
			  "[A-Za-z0-9._-]",
			  path);
		return -EINVAL;
	}
	g->chunk_size = p->chunk_size;
	g->dirty_block_size = p->dirty_block_size ? p->dirty_block_size
						  : MIN(CACHE_DEFAULT_DIRTY_BLOCK, p->chunk_size);
	g->gold_capacity = p->gold_capacity ? p->gold_capacity : p->image_size;
	g->volume_size = p->volume_size;
	if (p->image_size == 0 || p->image_size > g->gold_capacity ||
	    cache_geometry_layout(g) < 0) {
		log_error("cache '%s': bad geometry (chunk size a power of two 4 KiB-64 MiB, "
			  "dirty block a power of two 4 KiB-chunk size, sizes 1 byte-16 TiB, "
			  "volume a multiple of 4 KiB)",
			  path);
		return -EINVAL;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		log_error("cache '%s': cannot open: %s", path, strerror(errno));
		return r;
	}
	r = lock_writer(fd, path);
	if (r < 0)
		goto out;
	r = dev_size_of(fd, &dev_size, &is_blk);
	if (r < 0) {
		log_error("cache '%s': not a regular file or block device", path);
		goto out;
	}
	if (!p->force && dev_size >= sizeof(blk)) {
		struct cache_header old;
		int copy, bad, err[2];

		if (io_pread_full(fd, blk, sizeof(blk), 0) == (ssize_t)sizeof(blk) &&
		    header_select(blk, sizeof(blk), &old, &copy, &bad, err) == 0) {
			log_error("cache '%s': already holds a cache (image '%s'); use --force to "
				  "format it again (its volume is lost)",
				  path, old.slot[old.active_slot == 1].name);
			r = -EEXIST;
			goto out;
		}
	}
	/* 1. no valid header while the rest is being laid down */
	memset(blk, 0, sizeof(blk));
	if (is_blk) {
		if (dev_size < g->total_size) {
			log_error("cache '%s': device has %llu bytes, the layout needs %llu", path,
				  (unsigned long long)dev_size, (unsigned long long)g->total_size);
			r = -ENOSPC;
			goto out;
		}
		r = io_pwrite_all(fd, blk, sizeof(blk), 0);
		if (r == 0)
			r = io_fdatasync(fd);
		/* maps, then the volume (a partition holds old data) */
		if (r == 0)
			r = zero_range(fd, g->pmap_off[0], g->slot_off[0] - g->pmap_off[0]);
		if (r == 0)
			r = zero_range(fd, g->volume_off, g->volume_size);
	} else {
		/* a fresh sparse file reads as zeros everywhere */
		r = ftruncate(fd, 0) < 0 ? -errno : 0;
		if (r == 0)
			r = ftruncate(fd, (off_t)g->total_size) < 0 ? -errno : 0;
	}
	if (r == 0)
		r = io_fdatasync(fd);
	if (r < 0) {
		log_error("cache '%s': cannot lay out: %s", path, strerror(-r));
		goto out;
	}
	/* 2. the headers, both copies at generation 1 */
	h.generation = 1;
	h.active_slot = 0;
	h.dirty_protocol = CACHE_DIRTY_WRITE_AHEAD;
	h.created = now_unix();
	h.slot[0].state = CACHE_SLOT_FILLING;
	h.slot[0].image_size = p->image_size;
	memcpy(h.slot[0].name, p->image, strlen(p->image) + 1);
	memcpy(h.slot[0].version, p->version, strlen(p->version) + 1);
	if (p->manifest)
		h.slot[0].manifest = *p->manifest;
	cache_header_encode(&h, blk);
	cache_header_encode(&h, blk + CACHE_HDR_COPY_SIZE);
	r = io_pwrite_all(fd, blk, sizeof(blk), 0);
	if (r == 0)
		r = io_fsync(fd);
	if (r < 0)
		log_error("cache '%s': cannot write headers: %s", path, strerror(-r));
out:
	close(fd);
	return r;
}

static int map_read(struct cache *c, uint8_t *map, uint64_t off, uint64_t len)
{
	ssize_t n = io_pread_full(c->fd, map, (size_t)len, (off_t)off);

	if (n < 0)
		return (int)n;
	return (uint64_t)n == len ? 0 : -EIO;
}

int cache_open(const char *path, int flags, struct cache **out)
{
	uint8_t blk[2 * CACHE_HDR_COPY_SIZE];
	struct cache *c = xcalloc(1, sizeof(*c));
	struct cache_geometry *g;
	int r, is_blk, err[2];
	ssize_t n;

	c->dfd = -1;
	c->path = xstrdup(path);
	c->rdonly = !!(flags & CACHE_OPEN_RDONLY);
	c->fd = open(path, (c->rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (c->fd < 0) {
		r = -errno;
		log_error("cache '%s': cannot open: %s", path, strerror(errno));
		goto fail;
	}
	if (!c->rdonly && (r = lock_writer(c->fd, path)) < 0)
		goto fail;
	/* chunk writes bypass the page cache where the file system allows it
	 * (see cache_chunk_io_write); opened now because the path may be gone
	 * later (switch_root). GOLDAGENT_CACHE_DIRECT=0: buffered (benchmarks) */
	if (!c->rdonly && !(getenv("GOLDAGENT_CACHE_DIRECT") &&
			    strcmp(getenv("GOLDAGENT_CACHE_DIRECT"), "0") == 0))
		c->dfd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	r = dev_size_of(c->fd, &c->dev_size, &is_blk);
	if (r < 0) {
		log_error("cache '%s': not a regular file or block device", path);
		goto fail;
	}
	memset(blk, 0, sizeof(blk));
	n = io_pread_full(c->fd, blk, sizeof(blk), 0);
	if (n < 0) {
		r = (int)n;
		log_error("cache '%s': cannot read headers: %s", path, strerror(-r));
		goto fail;
	}
	r = header_select(blk, (size_t)n, &c->hdr, &c->hdr_copy, &c->other_bad, err);
	if (r < 0) {
		log_error("cache '%s': no valid header in either copy (%s / %s): not a goldagent "
			  "cache, or both copies damaged; run 'goldagent cache init' to format it",
			  path, strerror(-err[0]), strerror(-err[1]));
		goto fail;
	}
	if (c->other_bad)
		note(c,
		     "header copy %c invalid (%s): torn header write? using copy %c, "
		     "generation %llu",
		     'A' + (1 - c->hdr_copy), strerror(-err[1 - c->hdr_copy]), 'A' + c->hdr_copy,
		     (unsigned long long)c->hdr.generation);
	g = &c->hdr.geo;
	if (c->dev_size < g->total_size) {
		log_error("cache '%s': has %llu bytes, its header needs %llu: truncated?", path,
			  (unsigned long long)c->dev_size, (unsigned long long)g->total_size);
		r = -EFBIG;
		goto fail;
	}
	for (int s = 0; s < CACHE_NSLOTS; s++) {
		c->pmap[s] = xcalloc(1, (size_t)g->pmap_len);
		c->pend[s] = xcalloc(1, (size_t)g->pmap_len);
		if (c->hdr.slot[s].state == CACHE_SLOT_EMPTY)
			continue;
		r = map_read(c, c->pmap[s], g->pmap_off[s], g->pmap_len);
		if (r < 0) {
			/* forgetting present chunks is safe: they are fetched again */
			memset(c->pmap[s], 0, (size_t)g->pmap_len);
			note(c,
			     "present map of slot %c unreadable (%s): its chunks count as "
			     "absent",
			     'A' + s, strerror(-r));
		}
		c->present[s] = bits_count(c->pmap[s], slot_nchunks(&c->hdr, s));
	}
	c->dmap = xcalloc(1, (size_t)g->dmap_len);
	r = map_read(c, c->dmap, g->dmap_off, g->dmap_len);
	if (r < 0) {
		memset(c->dmap, 0xff, (size_t)g->dmap_len);
		c->hdr.flags |= CACHE_F_DIRTY_ALL;
		note(c,
		     "dirty map unreadable (%s): every block counts as dirty until a full "
		     "compare",
		     strerror(-r));
		if (!c->rdonly) {
			struct cache_header nh = c->hdr;

			header_update(c, &nh);
		}
	}
	if ((c->hdr.flags & CACHE_F_VOL_OPEN) && c->hdr.dirty_protocol != CACHE_DIRTY_WRITE_AHEAD &&
	    !(c->hdr.flags & CACHE_F_DIRTY_ALL)) {
		c->hdr.flags |= CACHE_F_DIRTY_ALL;
		note(c, "volume was left open by a writer without write-ahead dirty tracking: "
			"every block counts as dirty until a full compare");
		if (!c->rdonly) {
			struct cache_header nh = c->hdr;

			header_update(c, &nh);
		}
	}
	c->ndirty = bits_count(c->dmap, g->nblocks);
	*out = c;
	return 0;
fail:
	cache_free(c);
	return r;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->dfd >= 0)
		close(c->dfd);
	for (int s = 0; s < CACHE_NSLOTS; s++) {
		free(c->pmap[s]);
		free(c->pend[s]);
	}
	commit_job_free(c->job); /* its I/O is done or never ran (cache.h) */
	free(c->dmap);
	free(c->wseen);
	free(c->notes);
	free(c->path);
	free(c);
}

int cache_close(struct cache *c)
{
	int r = 0;

	if (!c)
		return 0;
	if (c->job) {
		/* its I/O may still run: the owner ends it before closing */
		log_error("cache '%s': closed with a commit out: left as a crash would", c->path);
		cache_free(c);
		return -EBUSY;
	}
	if (!c->rdonly) {
		r = cache_commit(c);
		if (r == 0)
			r = io_fdatasync(c->fd);
		if (r == 0 && (c->hdr.flags & CACHE_F_VOL_OPEN)) {
			struct cache_header nh = c->hdr;

			nh.flags &= ~CACHE_F_VOL_OPEN;
			r = header_update(c, &nh);
		}
	}
	cache_free(c);
	return r;
}

const struct cache_header *cache_header(const struct cache *c)
{
	return &c->hdr;
}
const char *cache_path(const struct cache *c)
{
	return c->path;
}

int cache_fd(const struct cache *c)
{
	return c->fd;
}
int cache_header_copy(const struct cache *c, int *other_bad)
{
	if (other_bad)
		*other_bad = c->other_bad;
	return c->hdr_copy;
}
const char *cache_notes(const struct cache *c)
{
	return c->notes ? c->notes : "";
}

/* ---- gold slots ---- */

static int slot_ok(const struct cache *c, int slot)
{
	return slot >= 0 && slot < CACHE_NSLOTS && c->hdr.slot[slot].state != CACHE_SLOT_EMPTY;
}

uint64_t cache_slot_chunks(const struct cache *c, int slot)
{
	if (slot < 0 || slot >= CACHE_NSLOTS)
		return 0;
	return slot_nchunks(&c->hdr, slot);
}

size_t cache_chunk_len(const struct cache *c, int slot, uint64_t idx)
{
	uint64_t size, cs = c->hdr.geo.chunk_size;

	if (!slot_ok(c, slot) || idx >= slot_nchunks(&c->hdr, slot))
		return 0;
	size = c->hdr.slot[slot].image_size;
	return (size_t)MIN(cs, size - idx * cs);
}

int cache_chunk_present(const struct cache *c, int slot, uint64_t idx)
{
	if (!slot_ok(c, slot) || idx >= slot_nchunks(&c->hdr, slot))
		return 0;
	return bit_get(c->pmap[slot], idx);
}

int cache_chunk_pending(const struct cache *c, int slot, uint64_t idx)
{
	if (!slot_ok(c, slot) || idx >= slot_nchunks(&c->hdr, slot))
		return 0;
	return bit_get(c->pend[slot], idx);
}

uint64_t cache_slot_present_count(const struct cache *c, int slot)
{
	if (!slot_ok(c, slot))
		return 0;
	return c->present[slot];
}

int cache_slot_assign(struct cache *c, int slot, const char *name, const char *version,
		      uint64_t image_size, const struct hash *manifest)
{
	const struct cache_geometry *g = &c->hdr.geo;
	struct cache_header nh;
	struct cache_slot_info *si;
	int r;

	if (slot < 0 || slot >= CACHE_NSLOTS || !name_is_valid(name) || !name_is_valid(version) ||
	    image_size == 0 || image_size > g->gold_capacity)
		return -EINVAL;
	if (c->hdr.active_slot == (uint32_t)slot || c->job)
		return -EBUSY;
	if (c->rdonly)
		return -EROFS;
	/* 1. EMPTY: from here on no bit of the slot's map means anything */
	nh = c->hdr;
	memset(&nh.slot[slot], 0, sizeof(nh.slot[slot]));
	r = header_update(c, &nh);
	if (r < 0)
		return r;
	/* 2. zero map, durable */
	memset(c->pmap[slot], 0, (size_t)g->pmap_len);
	memset(c->pend[slot], 0, (size_t)g->pmap_len);
	c->present[slot] = 0;
	r = zero_range(c->fd, g->pmap_off[slot], g->pmap_len);
	if (r == 0)
		r = io_fdatasync(c->fd);
	if (r < 0) {
		log_error("cache '%s': cannot clear present map of slot %c: %s", c->path,
			  'A' + slot, strerror(-r));
		return r;
	}
	/* 3. FILLING */
	nh = c->hdr;
	si = &nh.slot[slot];
	si->state = CACHE_SLOT_FILLING;
	si->image_size = image_size;
	memcpy(si->name, name, strlen(name) + 1);
	memcpy(si->version, version, strlen(version) + 1);
	if (manifest)
		si->manifest = *manifest;
	return header_update(c, &nh);
}

int cache_slot_set_active(struct cache *c, int slot)
{
	struct cache_header nh = c->hdr;

	if (!slot_ok(c, slot))
		return -EINVAL;
	if (c->hdr.active_slot == (uint32_t)slot)
		return 0;
	nh.active_slot = (uint32_t)slot;
	return header_update(c, &nh);
}

int cache_chunk_prepare(struct cache *c, int slot, uint64_t idx, size_t len,
			struct cache_chunk_io *io)
{
	const struct cache_geometry *g = &c->hdr.geo;

	if (c->rdonly)
		return -EROFS;
	if (!slot_ok(c, slot) || idx >= slot_nchunks(&c->hdr, slot) ||
	    len != cache_chunk_len(c, slot, idx))
		return -EINVAL;
	if (bit_get(c->pmap[slot], idx))
		return -EEXIST;
	*io = (struct cache_chunk_io){.fd = c->fd,
				      .dfd = c->dfd,
				      .slot = slot,
				      .idx = idx,
				      .off = g->slot_off[slot] + idx * g->chunk_size,
				      .len = len,
				      .path = c->path};
	return 0;
}

uint8_t *cache_dio_buf(size_t n)
{
	void *p = NULL;

	if (posix_memalign(&p, CACHE_DIO_ALIGN, n ? n : 1) != 0)
		die(1, "out of memory (%zu bytes for a chunk buffer)", n);
	return p;
}

int cache_chunk_io_write(const struct cache_chunk_io *io, const void *data)
{
	int r;

	/* Direct I/O when the buffer, offset and length are aligned to 4 KiB
	 * (every logical block size): the chunk goes from the caller's buffer
	 * to the device, with no page-cache copy, no page allocation and no
	 * writeback later (disk cache, measured: 0.63 -> 0.12 CPU s per GiB).
	 * Reads stay coherent: the kernel writes back and drops cached pages of
	 * the range around a direct write. Durability is unchanged: the device
	 * may still hold it in its volatile cache, so it counts only after the
	 * commit's fdatasync (which also makes the file's block allocation
	 * durable). A file system that refuses (EINVAL) gets a buffered write. */
	if (io->dfd >= 0 && ((uintptr_t)data | io->off | io->len) % CACHE_DIO_ALIGN == 0) {
		r = io_pwrite_all(io->dfd, data, io->len, (off_t)io->off);
		if (r != -EINVAL)
			goto done;
	}
	r = io_pwrite_all(io->fd, data, io->len, (off_t)io->off);
	if (r == 0)
		/* start the writeback now, so the commit's fdatasync finds it mostly
		 * done instead of writing the whole batch then; durability still comes
		 * only from that fdatasync (a hint: its failure means nothing) */
		(void)sync_file_range(io->fd, (off_t)io->off, (off_t)io->len,
				      SYNC_FILE_RANGE_WRITE);
done:
	if (r < 0) {
		log_error("cache '%s': cannot write chunk %llu of slot %c: %s", io->path,
			  (unsigned long long)io->idx, 'A' + io->slot, strerror(-r));
		return r;
	}
	return 0;
}

void cache_chunk_written(struct cache *c, const struct cache_chunk_io *io)
{
	if (!bit_get(c->pend[io->slot], io->idx)) {
		bit_set(c->pend[io->slot], io->idx);
		c->npend++;
	}
}

int cache_chunk_write(struct cache *c, int slot, uint64_t idx, const void *data, size_t len)
{
	struct cache_chunk_io io;
	int r = cache_chunk_prepare(c, slot, idx, len, &io);

	if (r == 0)
		r = cache_chunk_io_write(&io, data);
	if (r == 0)
		cache_chunk_written(c, &io);
	return r;
}

/* A commit's job (cache_commit_begin .. cache_commit_end). Per slot, the
 * page-aligned byte range [a, b) of the present map it covers: add, the bits
 * it makes present; snap, the map's pages as they were at begin (bits of
 * flushed chunks and of this job's). The I/O touches only fd and snap. */
struct cache_commit_job {
	int fd;
	uint64_t nchunks;
	uint64_t a[CACHE_NSLOTS], b[CACHE_NSLOTS]; /* b == 0: slot untouched */
	uint64_t moff[CACHE_NSLOTS];
	uint8_t *add[CACHE_NSLOTS], *snap[CACHE_NSLOTS];
	int data_err, map_err;
};

static void commit_job_free(struct cache_commit_job *j)
{
	if (!j)
		return;
	for (int s = 0; s < CACHE_NSLOTS; s++) {
		free(j->add[s]);
		free(j->snap[s]);
	}
	free(j);
}

uint64_t cache_commit_job_chunks(const struct cache_commit_job *j)
{
	return j ? j->nchunks : 0;
}

int cache_commit_busy(const struct cache *c)
{
	return c->job != NULL;
}

int cache_commit_begin(struct cache *c, struct cache_commit_job **out)
{
	const struct cache_geometry *g = &c->hdr.geo;
	struct cache_commit_job *j;

	*out = NULL;
	if (c->job)
		return -EBUSY;
	if (c->npend == 0)
		return 0;
	j = xcalloc(1, sizeof(*j));
	j->fd = c->fd;
	j->nchunks = c->npend;
	for (int s = 0; s < CACHE_NSLOTS; s++) {
		uint64_t lo = UINT64_MAX, hi = 0;

		for (uint64_t i = 0; i < g->pmap_len; i++)
			if (c->pend[s][i]) {
				lo = MIN(lo, i);
				hi = i + 1;
			}
		if (hi == 0)
			continue;
		j->a[s] = lo / CACHE_ALIGN * CACHE_ALIGN;
		j->b[s] = round_up(hi, CACHE_ALIGN);
		j->moff[s] = g->pmap_off[s];
		j->add[s] = xcalloc(1, (size_t)(j->b[s] - j->a[s]));
		/* the bits: present for readers from now on */
		for (uint64_t i = lo; i < hi; i++) {
			uint8_t add = c->pend[s][i] & (uint8_t)~c->pmap[s][i];

			j->add[s][i - j->a[s]] = add;
			c->pmap[s][i] |= add;
			c->present[s] += (uint64_t)__builtin_popcount(add);
			c->pend[s][i] = 0;
		}
		/* the pages to write: a copy, so that a later batch's bits (set in
		 * c->pmap by the next begin) never reach the disk with this one */
		j->snap[s] = xmalloc((size_t)(j->b[s] - j->a[s]));
		memcpy(j->snap[s], c->pmap[s] + j->a[s], (size_t)(j->b[s] - j->a[s]));
	}
	c->npend = 0;
	c->job = j;
	*out = j;
	return 0;
}

int cache_commit_io(struct cache_commit_job *j)
{
	int r;

	/* 1. data */
	r = io_fdatasync(j->fd);
	if (r < 0) {
		j->data_err = r;
		return r;
	}
	/* 2. the pages, then 3. durable */
	for (int s = 0; s < CACHE_NSLOTS && r == 0; s++)
		if (j->b[s])
			r = io_pwrite_all(j->fd, j->snap[s], (size_t)(j->b[s] - j->a[s]),
					  (off_t)(j->moff[s] + j->a[s]));
	if (r == 0)
		r = io_fdatasync(j->fd);
	j->map_err = r;
	return r;
}

/* COMPLETE in the header for every FILLING slot whose chunks are all present
 * (also when nothing was pending: a crash between the last map fdatasync and
 * this header write is finished here). */
static int commit_promote(struct cache *c)
{
	struct cache_header nh;
	int complete = 0;

	if (c->rdonly)
		return 0;
	for (int s = 0; s < CACHE_NSLOTS; s++)
		if (c->hdr.slot[s].state == CACHE_SLOT_FILLING &&
		    c->present[s] == slot_nchunks(&c->hdr, s))
			complete |= 1 << s;
	if (!complete)
		return 0;
	nh = c->hdr;
	for (int s = 0; s < CACHE_NSLOTS; s++)
		if (complete & (1 << s))
			nh.slot[s].state = CACHE_SLOT_COMPLETE;
	return header_update(c, &nh);
}

int cache_commit_end(struct cache *c, struct cache_commit_job *j)
{
	int r;

	if (!j)
		return commit_promote(c);
	if (j != c->job) {
		log_error("cache '%s': commit job ended that is not the one out", c->path);
		return -EINVAL;
	}
	c->job = NULL;
	if (j->data_err < 0) {
		/* the written chunks may never reach the disk: forget them (the
		 * map on disk never had their bits) */
		r = j->data_err;
		log_error("cache '%s': fdatasync of %llu written chunks failed (%s): they will "
			  "be fetched again",
			  c->path, (unsigned long long)j->nchunks, strerror(-r));
		for (int s = 0; s < CACHE_NSLOTS; s++)
			for (uint64_t i = j->a[s]; i < j->b[s]; i++) {
				uint8_t add = j->add[s][i - j->a[s]];

				c->pmap[s][i] &= (uint8_t)~add;
				c->present[s] -= (uint64_t)__builtin_popcount(add);
			}
		commit_job_free(j);
		return r;
	}
	r = j->map_err;
	commit_job_free(j);
	if (r < 0) {
		/* the data is durable and the in-memory bits are right; a lost bit
		 * on disk only means a chunk fetched again after a crash */
		log_error("cache '%s': cannot persist present map: %s", c->path, strerror(-r));
		return r;
	}
	return commit_promote(c);
}

int cache_commit(struct cache *c)
{
	struct cache_commit_job *j;
	int r = cache_commit_begin(c, &j);

	if (r < 0) {
		log_error("cache '%s': commit while another is out: not committed", c->path);
		return r;
	}
	if (j)
		(void)cache_commit_io(j);
	return cache_commit_end(c, j);
}

int cache_gold_read(struct cache *c, int slot, void *buf, uint64_t off, size_t len,
		    uint64_t *missing)
{
	const struct cache_geometry *g = &c->hdr.geo;
	uint64_t size, first, last;
	ssize_t n;

	if (!slot_ok(c, slot))
		return -EINVAL;
	size = c->hdr.slot[slot].image_size;
	if (off > size || len > size - off)
		return -EINVAL;
	if (len == 0)
		return 0;
	first = off / g->chunk_size;
	last = (off + len - 1) / g->chunk_size;
	for (uint64_t i = first; i <= last; i++)
		if (!bit_get(c->pmap[slot], i)) {
			if (missing)
				*missing = i;
			return -ENODATA;
		}
	n = io_pread_full(c->fd, buf, len, (off_t)(g->slot_off[slot] + off));
	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

int cache_gold_locate(struct cache *c, int slot, uint64_t off, size_t len, uint64_t *foff)
{
	const struct cache_geometry *g = &c->hdr.geo;
	uint64_t size;

	if (!slot_ok(c, slot))
		return -EINVAL;
	size = c->hdr.slot[slot].image_size;
	if (len == 0 || off > size || len > size - off)
		return -EINVAL;
	for (uint64_t i = off / g->chunk_size; i <= (off + len - 1) / g->chunk_size; i++)
		if (!bit_get(c->pmap[slot], i))
			return -ENODATA;
	*foff = g->slot_off[slot] + off;
	return c->fd;
}

int cache_chunk_read_raw(struct cache *c, int slot, uint64_t idx, void *buf, size_t len)
{
	const struct cache_geometry *g = &c->hdr.geo;
	ssize_t n;

	if (!slot_ok(c, slot) || idx >= slot_nchunks(&c->hdr, slot) ||
	    len != cache_chunk_len(c, slot, idx))
		return -EINVAL;
	n = io_pread_full(c->fd, buf, len, (off_t)(g->slot_off[slot] + idx * g->chunk_size));
	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

/* ---- volume ---- */

int cache_vol_open(struct cache *c)
{
	struct cache_header nh = c->hdr;

	if (c->rdonly)
		return -EROFS;
	if (c->hdr.flags & CACHE_F_RESTORING) {
		log_error("cache '%s': the machine volume is half-restored (order %lld): not "
			  "served until an online goldagent attach completes the restore",
			  c->path, (long long)c->hdr.restore_order);
		return -EBUSY;
	}
	if (c->hdr.flags & CACHE_F_VOL_OPEN) {
		nh.unclean_stops++;
		log_warn("cache '%s': volume was not closed cleanly (unclean stop #%u); its dirty "
			 "map is complete by write-ahead ordering",
			 c->path, nh.unclean_stops);
	}
	nh.flags |= CACHE_F_VOL_OPEN;
	nh.dirty_protocol = CACHE_DIRTY_WRITE_AHEAD;
	return header_update(c, &nh);
}

int cache_set_vol_reset(struct cache *c, int on)
{
	struct cache_header nh = c->hdr;

	if (!!(c->hdr.flags & CACHE_F_VOL_RESET) == !!on)
		return 0;
	if (on)
		nh.flags |= CACHE_F_VOL_RESET;
	else
		nh.flags &= ~CACHE_F_VOL_RESET;
	return header_update(c, &nh);
}

static int vol_bounds(const struct cache *c, uint64_t off, size_t len)
{
	uint64_t size = c->hdr.geo.volume_size;

	return off > size || len > size - off ? -EINVAL : 0;
}

int cache_vol_read(struct cache *c, void *buf, uint64_t off, size_t len)
{
	ssize_t n;

	if (vol_bounds(c, off, len) < 0)
		return -EINVAL;
	if (len == 0)
		return 0;
	n = io_pread_full(c->fd, buf, len, (off_t)(c->hdr.geo.volume_off + off));
	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

/* Sets and persists the dirty bits of [off, off+len) before any data of it is
 * written. On failure the bits are taken back in memory, so the next write
 * of those blocks tries again (a failed fdatasync may have dropped the page). */
static int mark_dirty(struct cache *c, uint64_t off, size_t len)
{
	const struct cache_geometry *g = &c->hdr.geo;
	uint64_t b0 = off / g->dirty_block_size, b1 = (off + len - 1) / g->dirty_block_size;
	uint64_t lo = b0 >> 3, hi = (b1 >> 3) + 1, added = 0;
	uint8_t save[4096], *old = save;
	int r;

	for (uint64_t b = b0; b <= b1; b++)
		if (!bit_get(c->dmap, b))
			break;
		else if (b == b1)
			return 0; /* all already durable */
	if (hi - lo > sizeof(save))
		old = xmalloc((size_t)(hi - lo));
	memcpy(old, c->dmap + lo, (size_t)(hi - lo));
	for (uint64_t b = b0; b <= b1; b++)
		if (!bit_get(c->dmap, b)) {
			bit_set(c->dmap, b);
			added++;
		}
	r = map_write(c, c->dmap, g->dmap_off, lo, hi);
	if (r == 0)
		r = io_fdatasync(c->fd);
	if (r < 0) {
		memcpy(c->dmap + lo, old, (size_t)(hi - lo));
		log_error("cache '%s': cannot persist dirty map (%s): write refused", c->path,
			  strerror(-r));
	} else {
		c->ndirty += added;
	}
	if (old != save)
		free(old);
	return r;
}

int cache_vol_write(struct cache *c, const void *buf, uint64_t off, size_t len, int fua)
{
	int r;

	if (c->rdonly)
		return -EROFS;
	if (vol_bounds(c, off, len) < 0)
		return -ENOSPC;
	if (len == 0)
		return 0;
	r = mark_dirty(c, off, len);
	if (r < 0)
		return r;
	if (c->wseen)
		for (uint64_t b = off / c->hdr.geo.dirty_block_size;
		     b <= (off + len - 1) / c->hdr.geo.dirty_block_size; b++)
			bit_set(c->wseen, b);
	r = io_pwrite_all(c->fd, buf, len, (off_t)(c->hdr.geo.volume_off + off));
	if (r == 0 && fua)
		r = io_fdatasync(c->fd);
	if (r < 0)
		log_error("cache '%s': volume write at %llu+%zu failed: %s", c->path,
			  (unsigned long long)off, len, strerror(-r));
	return r;
}

int cache_vol_zero(struct cache *c, uint64_t off, size_t len, int fua)
{
	static const uint8_t zeros[ZERO_BUF];
	int r = 0;

	if (vol_bounds(c, off, len) < 0)
		return -ENOSPC;
	while (len > 0 && r == 0) {
		size_t n = MIN(len, sizeof(zeros));

		r = cache_vol_write(c, zeros, off, n, 0);
		off += n;
		len -= n;
	}
	if (r == 0 && fua)
		r = io_fdatasync(c->fd);
	return r;
}

int cache_flush(struct cache *c)
{
	int r;

	if (c->rdonly)
		return 0;
	r = io_fdatasync(c->fd);
	if (r < 0)
		log_error("cache '%s': flush failed: %s", c->path, strerror(-r));
	return r;
}

int cache_block_dirty(const struct cache *c, uint64_t block)
{
	if (block >= c->hdr.geo.nblocks)
		return 0;
	return (c->hdr.flags & CACHE_F_DIRTY_ALL) || bit_get(c->dmap, block);
}

uint64_t cache_dirty_count(const struct cache *c)
{
	return (c->hdr.flags & CACHE_F_DIRTY_ALL) ? c->hdr.geo.nblocks : c->ndirty;
}

void cache_dirty_track(struct cache *c, int on)
{
	free(c->wseen);
	c->wseen = on ? xcalloc((size_t)(c->hdr.geo.nblocks + 7) / 8, 1) : NULL;
}

int cache_dirty_seen(const struct cache *c, uint64_t block)
{
	return c->wseen && block < c->hdr.geo.nblocks && bit_get(c->wseen, block);
}

/* Sync done: bits cleared in memory, the changed pages written and
 * fdatasynced, then the header (DIRTY_ALL off, last_sync). A crash before the
 * map fdatasync leaves the bits set (the blocks are uploaded again: harmless);
 * a block written during the upload keeps its bit. */
int cache_sync_done(struct cache *c, const uint64_t *blocks, size_t n, int all, int64_t when,
		    uint64_t *cleared)
{
	return cache_sync_done_figures(c, blocks, n, all, when, NULL, cleared);
}

int cache_sync_done_figures(struct cache *c, const uint64_t *blocks, size_t n, int all,
			    int64_t when, const struct cache_sync_figures *fig, uint64_t *cleared)
{
	const struct cache_geometry *g = &c->hdr.geo;
	uint64_t lo = UINT64_MAX, hi = 0, cnt = 0, nb = all ? g->nblocks : n;
	struct cache_header nh;
	int r = 0;

	if (c->rdonly)
		return -EROFS;
	for (uint64_t k = 0; k < nb; k++) {
		uint64_t b = all ? k : blocks[k];

		if (b >= g->nblocks || !bit_get(c->dmap, b) || (c->wseen && bit_get(c->wseen, b)))
			continue;
		bit_clear(c->dmap, b);
		cnt++;
		lo = MIN(lo, b >> 3);
		hi = MAX(hi, (b >> 3) + 1);
	}
	if (cnt) {
		r = map_write(c, c->dmap, g->dmap_off, lo, hi);
		if (r == 0)
			r = io_fdatasync(c->fd);
		if (r < 0) {
			log_error("cache '%s': cannot write the dirty map after a sync: %s",
				  c->path, strerror(-r));
			return r;
		}
		c->ndirty -= MIN(c->ndirty, cnt);
	}
	nh = c->hdr;
	nh.last_sync = when;
	if (fig) {
		nh.last_sync_snapshot = fig->snapshot;
		nh.last_sync_bytes = fig->bytes;
		nh.last_sync_pause_ms = fig->pause_ms;
	}
	/* every block was uploaded; one written meanwhile has its bit (write-ahead) */
	if (all)
		nh.flags &= ~CACHE_F_DIRTY_ALL;
	r = header_update(c, &nh);
	if (r == 0) {
		c->ndirty = bits_count(c->dmap, g->nblocks);
		if (cleared)
			*cleared = cnt;
	}
	cache_dirty_track(c, 0);
	return r;
}

/* ---- restore ---- */

int cache_restore_begin(struct cache *c, int64_t order)
{
	struct cache_header nh = c->hdr;

	if (c->rdonly)
		return -EROFS;
	if (order == 0)
		return -EINVAL;
	nh.flags |= CACHE_F_RESTORING;
	nh.restore_order = order;
	return header_update(c, &nh);
}

int cache_restore_write(struct cache *c, const void *buf, uint64_t off, size_t len)
{
	int r;

	if (c->rdonly)
		return -EROFS;
	if (!(c->hdr.flags & CACHE_F_RESTORING))
		return -EPERM;
	if (vol_bounds(c, off, len) < 0)
		return -ENOSPC;
	r = io_pwrite_all(c->fd, buf, len, (off_t)(c->hdr.geo.volume_off + off));
	if (r < 0)
		log_error("cache '%s': restore write at %llu+%zu failed: %s", c->path,
			  (unsigned long long)off, len, strerror(-r));
	return r;
}

int cache_restore_zero(struct cache *c, uint64_t off, size_t len)
{
	uint64_t foff = c->hdr.geo.volume_off + off;
	int r;

	if (c->rdonly)
		return -EROFS;
	if (!(c->hdr.flags & CACHE_F_RESTORING))
		return -EPERM;
	if (vol_bounds(c, off, len) < 0)
		return -ENOSPC;
	if (len == 0)
		return 0;
	/* a hole reads as zeros (files; block devices that support it) */
	if (fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)foff, (off_t)len) ==
	    0)
		return 0;
	r = zero_range(c->fd, foff, len);
	if (r < 0)
		log_error("cache '%s': restore zeroing at %llu+%zu failed: %s", c->path,
			  (unsigned long long)off, len, strerror(-r));
	return r;
}

int cache_restore_finish(struct cache *c)
{
	const struct cache_geometry *g = &c->hdr.geo;
	struct cache_header nh;
	int r;

	if (c->rdonly)
		return -EROFS;
	if (!(c->hdr.flags & CACHE_F_RESTORING))
		return -EPERM;
	r = io_fdatasync(c->fd); /* the restored data first */
	if (r == 0) {
		memset(c->dmap, 0, (size_t)g->dmap_len);
		r = io_pwrite_all(c->fd, c->dmap, (size_t)g->dmap_len, (off_t)g->dmap_off);
	}
	if (r == 0)
		r = io_fdatasync(c->fd);
	if (r < 0) {
		log_error("cache '%s': cannot complete the restore: %s (it runs again)", c->path,
			  strerror(-r));
		return r;
	}
	c->ndirty = 0;
	nh = c->hdr;
	nh.flags &= ~(CACHE_F_RESTORING | CACHE_F_DIRTY_ALL);
	nh.restore_done = nh.restore_order;
	nh.restore_order = 0;
	return header_update(c, &nh);
}

/* ---- check ---- */

struct report {
	struct cache_check_report *rep;
	size_t len;
};

static void finding(struct report *r, int problem, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void finding(struct report *r, int problem, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	n = strlen(line);
	if (problem)
		r->rep->problems++;
	if (r->len + n + 2 > (size_t)256 << 10)
		return;
	r->rep->text = xrealloc(r->rep->text, r->len + n + 2);
	memcpy(r->rep->text + r->len, line, n);
	r->rep->text[r->len + n] = '\n';
	r->len += n + 1;
	r->rep->text[r->len] = '\0';
}

/* Clears bits [from, nbits_total) of map; returns how many were set. */
static uint64_t clear_tail(uint8_t *map, uint64_t from, uint64_t total)
{
	uint64_t n = 0;

	for (uint64_t i = from; i < total; i++) {
		if ((i & 7) == 0 && i + 8 <= total && map[i >> 3] == 0) {
			i += 7;
			continue;
		}
		if (bit_get(map, i)) {
			bit_clear(map, i);
			n++;
		}
	}
	return n;
}

int cache_check(struct cache *c, int repair, cache_verify_fn verify, void *arg,
		struct cache_check_report *rep)
{
	const struct cache_geometry *g = &c->hdr.geo;
	struct cache_header nh = c->hdr;
	struct report rp;
	int hdr_dirty = 0, maps_dirty = 0, r = 0;
	uint8_t *buf = NULL;

	uint8_t *saved[CACHE_NSLOTS + 1] = {NULL};
	uint64_t saved_present[CACHE_NSLOTS];

	memset(rep, 0, sizeof(*rep));
	rep->text = xstrdup("");
	rp.rep = rep;
	rp.len = 0;
	if (repair && c->rdonly)
		return -EROFS;
	/* a check without repair leaves the in-memory maps as they were */
	for (int s = 0; s < CACHE_NSLOTS && !repair; s++) {
		saved[s] = xmalloc((size_t)g->pmap_len);
		memcpy(saved[s], c->pmap[s], (size_t)g->pmap_len);
		saved_present[s] = c->present[s];
	}
	if (!repair) {
		saved[CACHE_NSLOTS] = xmalloc((size_t)g->dmap_len);
		memcpy(saved[CACHE_NSLOTS], c->dmap, (size_t)g->dmap_len);
	}
	if (c->other_bad) {
		finding(&rp, 1,
			"header copy %c invalid (torn write?); copy %c generation %llu in use",
			'A' + (1 - c->hdr_copy), 'A' + c->hdr_copy,
			(unsigned long long)c->hdr.generation);
		hdr_dirty = 1;
	}
	for (int s = 0; s < CACHE_NSLOTS; s++) {
		const struct cache_slot_info *si = &c->hdr.slot[s];
		uint64_t n = slot_nchunks(&c->hdr, s), extra;

		if (si->state == CACHE_SLOT_EMPTY) {
			uint8_t *m = xmalloc((size_t)g->pmap_len);

			if (map_read(c, m, g->pmap_off[s], g->pmap_len) == 0 &&
			    bits_count(m, g->pmap_len * 8)) {
				finding(&rp, 1,
					"slot %c: empty but its present map has bits set "
					"(interrupted re-assign)",
					'A' + s);
				memset(c->pmap[s], 0, (size_t)g->pmap_len);
				maps_dirty |= 1 << s;
			}
			free(m);
			continue;
		}
		extra = clear_tail(c->pmap[s], n, g->pmap_len * 8);
		if (extra) {
			finding(&rp, 1, "slot %c: %llu present bits beyond the image's %llu chunks",
				'A' + s, (unsigned long long)extra, (unsigned long long)n);
			maps_dirty |= 1 << s;
		}
		if (verify) {
			buf = buf ? buf : xmalloc(g->chunk_size);
			for (uint64_t i = 0; i < n; i++) {
				size_t len = cache_chunk_len(c, s, i);
				int v;

				if (!bit_get(c->pmap[s], i))
					continue;
				v = cache_chunk_read_raw(c, s, i, buf, len);
				if (v == 0)
					v = verify(arg, s, i, buf, len);
				if (v == 0)
					continue;
				finding(&rp, 1, "slot %c: chunk %llu marked present but %s",
					'A' + s, (unsigned long long)i,
					v == -EBADMSG ? "its data does not match its hash"
						      : strerror(-v));
				bit_clear(c->pmap[s], i);
				c->present[s]--;
				maps_dirty |= 1 << s;
			}
		}
		if (si->state == CACHE_SLOT_COMPLETE && c->present[s] != n) {
			finding(&rp, 1, "slot %c: marked complete but %llu of %llu chunks present",
				'A' + s, (unsigned long long)c->present[s], (unsigned long long)n);
			nh.slot[s].state = CACHE_SLOT_FILLING;
			hdr_dirty = 1;
		} else if (si->state == CACHE_SLOT_FILLING && c->present[s] == n) {
			finding(&rp, 0, "slot %c: every chunk present; marked complete", 'A' + s);
			nh.slot[s].state = CACHE_SLOT_COMPLETE;
			hdr_dirty = 1;
		}
	}
	if (clear_tail(c->dmap, g->nblocks, g->dmap_len * 8)) {
		finding(&rp, 1, "dirty map: bits beyond the volume's %llu blocks",
			(unsigned long long)g->nblocks);
		maps_dirty |= 4;
	}
	if (c->hdr.flags & CACHE_F_VOL_OPEN)
		finding(&rp, 0,
			"volume open (a server is running, or it stopped uncleanly: "
			"the dirty map is complete by write-ahead ordering)");
	if (c->hdr.flags & CACHE_F_DIRTY_ALL)
		finding(&rp, 0,
			"dirty map not provably complete: all %llu blocks count as dirty "
			"until a full compare",
			(unsigned long long)g->nblocks);
	if (c->hdr.flags & CACHE_F_RESTORING)
		finding(&rp, 0,
			"restore of order %lld in progress: the machine volume is half-restored "
			"until the next online attach completes it",
			(long long)c->hdr.restore_order);
	free(buf);
	if (!repair) {
		for (int s = 0; s < CACHE_NSLOTS; s++) {
			memcpy(c->pmap[s], saved[s], (size_t)g->pmap_len);
			c->present[s] = saved_present[s];
			free(saved[s]);
		}
		memcpy(c->dmap, saved[CACHE_NSLOTS], (size_t)g->dmap_len);
		free(saved[CACHE_NSLOTS]);
		return 0;
	}
	/* maps first (data untouched), then the header */
	for (int s = 0; s < CACHE_NSLOTS && r == 0; s++)
		if (maps_dirty & (1 << s))
			r = map_write(c, c->pmap[s], g->pmap_off[s], 0, g->pmap_len);
	if (r == 0 && (maps_dirty & 4))
		r = map_write(c, c->dmap, g->dmap_off, 0, g->dmap_len);
	if (r == 0 && maps_dirty)
		r = io_fdatasync(c->fd);
	if (r == 0 && hdr_dirty) {
		nh.flags = c->hdr.flags;
		r = header_update(c, &nh);
	}
	if (r < 0) {
		log_error("cache '%s': repair failed: %s", c->path, strerror(-r));
		return r;
	}
	rep->repaired = rep->problems;
	return 0;
}
