/* Gold-update deltas: the codec and stream parser (lib/delta.c), goldcached's
 * generator with its on-disk cache and streaming reader (appliance/delta.c),
 * and goldagent's applier into a real cache (agent/delta.c): round trip,
 * corrupt frame, wrong prefix, oversized size claims, truncated and
 * malformed streams, a damaged cache file, chunks the store cannot give. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cache.h"
#include "agent/delta.h"
#include "agent/source.h"
#include "appliance/delta.h"
#include "appliance/http.h"
#include "appliance/store.h"
#include "lib/delta.h"
#include "lib/hash.h"
#include "lib/manifest.h"
#include "lib/util.h"
#include "tests/tap.h"

#define CS (64u << 10)
#define NCH 6u

static uint64_t rng = 88172645463325252ull;

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		p[i] = (uint8_t)rng;
	}
}

/* new = old with two 4 KiB blocks rewritten */
static void mutate(const uint8_t *old, uint8_t *nw, size_t len)
{
	memcpy(nw, old, len);
	fill_random(nw + 4096, 4096);
	if (len >= 12 * 4096)
		fill_random(nw + 11 * 4096, 4096);
}

static void test_codec(void)
{
	uint8_t *old = xmalloc(CS), *nw = xmalloc(CS), *frame = xmalloc(CS), *out = xmalloc(CS),
		*big = xmalloc(2 * CS);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	size_t flen = 0, blen = 0;

	fill_random(old, CS);
	mutate(old, nw, CS);
	ok(delta_compress(cc, 3, old, CS, nw, CS, frame, CS - 1, &flen) == 0,
	   "compress with the old chunk as prefix");
	ok(flen < 3 * 4096, "  the delta (%zu bytes) is about the changed 8 KiB", flen);
	is_int(delta_decompress(dc, old, CS, frame, flen, out, CS), 0, "round trip decodes");
	ok(memcmp(out, nw, CS) == 0, "  to the new chunk");
	is_int(delta_compress(cc, 3, NULL, 0, nw, CS, frame, CS - 1, &blen), -ENOSPC,
	       "without the prefix random data does not fit under a chunk: -ENOSPC");

	/* a wrong prefix decodes (zstd cannot tell) but not to the new chunk */
	old[4096 * 5] ^= 0xff;
	if (delta_decompress(dc, old, CS, frame, flen, out, CS) == 0)
		ok(memcmp(out, nw, CS) != 0,
		   "a wrong prefix gives other bytes (the hash check rejects them)");
	else
		ok(1, "a wrong prefix is refused");
	old[4096 * 5] ^= 0xff;

	/* corrupt frame: a flipped byte in the middle */
	frame[flen / 2] ^= 0x55;
	{
		int r = delta_decompress(dc, old, CS, frame, flen, out, CS);

		ok(r == -EBADMSG || memcmp(out, nw, CS) != 0,
		   "a corrupt frame fails or decodes wrong");
	}
	frame[flen / 2] ^= 0x55;

	/* oversized claims: a frame of 2 chunks, into one chunk */
	memset(big, 0, 2 * CS);
	ok(delta_compress(cc, 3, NULL, 0, big, 2 * CS, frame, CS - 1, &blen) == 0,
	   "a frame of 2 chunks of zeros (small)");
	is_int(delta_decompress(dc, NULL, 0, frame, blen, out, CS), -EBADMSG,
	       "a frame claiming more than the chunk is refused");
	is_int(delta_decompress(dc, NULL, 0, frame, blen, out, 2 * CS - 1), -EBADMSG,
	       "  also one byte more");
	/* a frame without a declared size (streamed) */
	{
		ZSTD_outBuffer o = {frame, CS, 0};
		ZSTD_inBuffer in = {big, CS, 0};

		ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
		ZSTD_compressStream2(cc, &o, &in, ZSTD_e_end);
		is_int(delta_decompress(dc, NULL, 0, frame, o.pos, out, CS), -EBADMSG,
		       "a frame without a declared size is refused");
	}
	/* two frames back to back */
	ok(delta_compress(cc, 3, NULL, 0, big, 100, frame, CS - 1, &blen) == 0, "a small frame");
	memcpy(frame + blen, frame, blen);
	is_int(delta_decompress(dc, NULL, 0, frame, 2 * blen, out, 100), -EBADMSG,
	       "two frames in one record are refused");
	is_int(delta_decompress(dc, NULL, 0, frame, blen - 1, out, 100), -EBADMSG,
	       "a truncated frame is refused");
	is_int(delta_window_log(CS, CS), 17, "window for 64 KiB + 64 KiB: 2^17");
	is_int(delta_window_log(0, 100), 10, "at least zstd's minimum");
	ZSTD_freeCCtx(cc);
	ZSTD_freeDCtx(dc);
	free(old);
	free(nw);
	free(frame);
	free(out);
	free(big);
}

struct seen {
	unsigned n;
	uint64_t idx[8];
};

static int count_rec(void *arg, const struct delta_rec *r)
{
	struct seen *s = arg;

	if (s->n < 8)
		s->idx[s->n] = r->idx;
	s->n++;
	return 0;
}

static size_t mk_stream(uint8_t *buf, uint32_t cs, uint32_t count, const uint32_t *flens)
{
	size_t off = DELTA_HDR_LEN;

	delta_hdr_encode(buf, cs, count);
	for (uint32_t i = 0; i < count; i++) {
		delta_rec_encode(buf + off, 10 + i, flens[i] ? DELTA_OK : DELTA_NONE, flens[i]);
		off += DELTA_REC_LEN;
		memset(buf + off, 0xab, flens[i]);
		off += flens[i];
	}
	return off;
}

static void test_parse(void)
{
	uint8_t buf[4096];
	uint32_t fl[3] = {100, 0, 50};
	size_t len = mk_stream(buf, 1024, 3, fl);
	struct seen s = {0};
	char err[256];

	is_int(delta_parse(buf, len, 1024, 3, count_rec, &s, err, sizeof(err)), 0,
	       "a stream parses");
	is_int(s.n, 3, "  3 records");
	ok(s.idx[0] == 10 && s.idx[2] == 12, "  in order");
	s.n = 0;
	is_int(delta_parse(buf, len - 10, 1024, 3, count_rec, &s, err, sizeof(err)), -EPIPE,
	       "cut in the last frame: -EPIPE");
	is_int(s.n, 2, "  the 2 whole records before the cut are delivered");
	ok(strstr(err, "cut short") != NULL, "  the error says so: %s", err);
	s.n = 0;
	is_int(delta_parse(buf, 10, 1024, 3, count_rec, &s, err, sizeof(err)), -EPIPE,
	       "cut in the header: -EPIPE");
	is_int(delta_parse(buf, len, 2048, 3, count_rec, &s, err, sizeof(err)), -EBADMSG,
	       "another chunk size: -EBADMSG");
	ok(strstr(err, "1024") != NULL, "  naming it: %s", err);
	is_int(delta_parse(buf, len, 1024, 2, count_rec, &s, err, sizeof(err)), -EBADMSG,
	       "more records than asked: -EBADMSG");
	buf[len] = 0;
	is_int(delta_parse(buf, len + 1, 1024, 3, count_rec, &s, err, sizeof(err)), -EBADMSG,
	       "bytes after the last record: -EBADMSG");
	fl[0] = 1024;
	len = mk_stream(buf, 1024, 3, fl);
	is_int(delta_parse(buf, len, 1024, 3, count_rec, &s, err, sizeof(err)), -EBADMSG,
	       "a frame as large as a chunk: -EBADMSG");
	fl[0] = 100;
	len = mk_stream(buf, 1024, 3, fl);
	buf[DELTA_HDR_LEN + 8] = 7;
	is_int(delta_parse(buf, len, 1024, 3, count_rec, &s, err, sizeof(err)), -EBADMSG,
	       "an unknown status: -EBADMSG");
	buf[0] = 'X';
	is_int(delta_parse(buf, len, 1024, 3, count_rec, &s, err, sizeof(err)), -EBADMSG,
	       "bad magic: -EBADMSG");
	/* a huge announced frame in a small buffer: cut, never read */
	len = mk_stream(buf, 1u << 30, 1, fl);
	buf[DELTA_HDR_LEN + 12] = 0xff;
	buf[DELTA_HDR_LEN + 13] = 0xff;
	buf[DELTA_HDR_LEN + 14] = 0xff;
	buf[DELTA_HDR_LEN + 15] = 0x3f;
	is_int(delta_parse(buf, len, 1u << 30, 1, count_rec, &s, err, sizeof(err)), -EPIPE,
	       "a frame announced past the end is a cut stream, not a read past it");
}

/* ---- appliance generator + agent applier, on a real store and cache ---- */

static char dir[4096];
static struct store *st;

static struct manifest *mk_manifest(uint32_t version, uint8_t data[][CS], const int *zero)
{
	struct manifest *m = NULL;

	if (manifest_new("deb", (uint64_t)NCH * CS, CS, &m) < 0)
		return NULL;
	m->version = version;
	for (unsigned i = 0; i < NCH; i++) {
		if (zero && zero[i]) {
			m->chunks[i].zero = 1;
			continue;
		}
		m->chunks[i].zero = 0;
		hash_buf(data[i], CS, &m->chunks[i].id);
		store_chunk_put(st, &m->chunks[i].id, data[i], CS, NULL);
	}
	store_sync(st);
	return m;
}

struct collect {
	uint8_t *buf;
	size_t len, cap;
};

/* A stream over private copies of from and to (the stream takes them). */
static struct delta_stream *stream_of(struct delta_gen *g, const struct manifest *m1,
				      const struct manifest *m2, uint64_t *idx, uint32_t n)
{
	struct manifest *a = NULL, *b = NULL;
	char *t1, *t2;
	size_t l1, l2;

	manifest_encode(m1, &t1, &l1);
	manifest_encode(m2, &t2, &l2);
	manifest_decode(t1, l1, &a, NULL, 0);
	manifest_decode(t2, l2, &b, NULL, 0);
	free(t1);
	free(t2);
	return delta_stream_new(g, a, b, idx, n);
}

/* One read of at most piece bytes appended to c: 1 at the end (or an error). */
static int read_piece(struct delta_stream *s, size_t piece, struct collect *c)
{
	char tmp[4096];
	ssize_t n = delta_stream_read(s, c->len, tmp, MIN(piece, sizeof(tmp)));

	if (n <= 0)
		return 1;
	if (c->len + (size_t)n > c->cap) {
		c->cap = (c->len + (size_t)n) * 2;
		c->buf = realloc(c->buf, c->cap);
	}
	memcpy(c->buf + c->len, tmp, (size_t)n);
	c->len += (size_t)n;
	return 0;
}

static int read_all(struct delta_stream *s, size_t piece, struct collect *c)
{
	ssize_t n;
	uint8_t tmp[70000];

	for (;;) {
		n = delta_stream_read(s, c->len, (char *)tmp, piece);
		if (n == HTTP_READER_END)
			return 0;
		if (n <= 0)
			return -1;
		if (c->len + (size_t)n > c->cap) {
			c->cap = (c->len + (size_t)n) * 2;
			c->buf = realloc(c->buf, c->cap);
		}
		memcpy(c->buf + c->len, tmp, (size_t)n);
		c->len += (size_t)n;
	}
}

static void test_gen_apply(void)
{
	static uint8_t v1[NCH][CS], v2[NCH][CS];
	int zero1[NCH] = {0, 0, 0, 0, 1, 0}, zero2[NCH] = {0, 0, 0, 0, 0, 1};
	struct manifest *m1, *m2, *m3;
	struct delta_gen *g = NULL;
	const uint8_t *rec;
	size_t len;
	char deltas[4200], path[4200];
	struct cache *c = NULL;
	struct chunk_hashes h1, h2;
	struct delta_stats ds;
	struct collect col = {0};
	uint64_t *idx;
	struct delta_stream *s;

	snprintf(dir, sizeof(dir), "%s", tap_tmpdir());
	snprintf(path, sizeof(path), "%s/store", dir);
	if (store_open(path, 1, &st) < 0) {
		ok(0, "store");
		return;
	}
	/* v1: 6 random chunks, chunk 4 zero. v2: 0 and 2 patched, 1 the same,
	 * 3 all new random, 4 new where v1 had zeros (compressible), 5 zero */
	for (unsigned i = 0; i < NCH; i++)
		fill_random(v1[i], CS);
	memset(v1[4], 0, CS);
	memcpy(v2, v1, sizeof(v2));
	mutate(v1[0], v2[0], CS);
	mutate(v1[2], v2[2], CS);
	fill_random(v2[3], CS);
	memset(v2[4], 'x', CS);
	memset(v2[5], 0, CS);
	m1 = mk_manifest(1, v1, zero1);
	m2 = mk_manifest(2, v2, zero2);
	snprintf(deltas, sizeof(deltas), "%s/deltas", dir);
	ok(m1 && m2 && delta_gen_new(st, deltas, 0, &g) == 0, "a generator with a cache folder");

	ok(delta_gen_record(g, m1, m2, 0, &rec, &len) == 0, "the record of chunk 0");
	ok(len > DELTA_REC_LEN && len < DELTA_REC_LEN + 3 * 4096 && rec[8] == DELTA_OK,
	   "  a delta of %zu bytes", len - DELTA_REC_LEN);
	is_int(delta_gen_stats(g)->made, 1, "  made");
	ok(delta_gen_record(g, m1, m2, 0, &rec, &len) == 0 && rec[8] == DELTA_OK, "the same again");
	is_int(delta_gen_stats(g)->cache_hits, 1, "  from the cache");
	ok(delta_gen_record(g, m1, m2, 3, &rec, &len) == 0 && rec[8] == DELTA_NONE &&
		   len == DELTA_REC_LEN,
	   "an all-new random chunk: no delta (DELTA_NONE)");
	ok(delta_gen_record(g, m1, m2, 4, &rec, &len) == 0 && rec[8] == DELTA_OK &&
		   len < DELTA_REC_LEN + 1024,
	   "a chunk where v1 had zeros: compressed without a prefix");
	ok(delta_gen_record(g, m1, m2, 5, &rec, &len) == 0 && rec[8] == DELTA_NONE,
	   "a zero chunk: DELTA_NONE");
	is_int(delta_gen_record(g, m1, m2, NCH, &rec, &len), -EINVAL,
	       "an index past the end: -EINVAL");

	/* damage the cached delta of chunk 0: found, removed, made again */
	{
		char hx1[HASH_HEX_LEN + 1], hx2[HASH_HEX_LEN + 1], zd[8600];
		int fd;

		snprintf(zd, sizeof(zd), "%s/%s-%s.zd", deltas, hash_to_hex(&m1->chunks[0].id, hx1),
			 hash_to_hex(&m2->chunks[0].id, hx2));
		fd = open(zd, O_WRONLY);
		ok(fd >= 0 && pwrite(fd, "XX", 2, 60) == 2, "damage the cache file of chunk 0");
		if (fd >= 0)
			close(fd);
		ok(delta_gen_record(g, m1, m2, 0, &rec, &len) == 0 && rec[8] == DELTA_OK,
		   "chunk 0 again");
		is_int(delta_gen_stats(g)->cache_bad, 1, "  the damaged file was detected");
		is_int(delta_gen_stats(g)->made, 3, "  and the delta made again");
	}

	/* a bound of 10000 bytes holds one delta of about 8 KiB: the next one
	 * makes room by removing the least recently used */
	{
		struct delta_gen *g2 = NULL;
		char d2[4200], f0[8600], f2[8600], hx1[HASH_HEX_LEN + 1], hx2[HASH_HEX_LEN + 1];
		struct stat sb;

		snprintf(d2, sizeof(d2), "%s/deltas2", dir);
		snprintf(f0, sizeof(f0), "%s/%s-%s.zd", d2, hash_to_hex(&m1->chunks[0].id, hx1),
			 hash_to_hex(&m2->chunks[0].id, hx2));
		snprintf(f2, sizeof(f2), "%s/%s-%s.zd", d2, hash_to_hex(&m1->chunks[2].id, hx1),
			 hash_to_hex(&m2->chunks[2].id, hx2));
		ok(delta_gen_new(st, d2, 10000, &g2) == 0 &&
			   delta_gen_record(g2, m1, m2, 0, &rec, &len) == 0,
		   "a cache bounded to 10000 bytes keeps chunk 0's delta");
		ok(stat(f0, &sb) == 0, "  its file is there");
		ok(delta_gen_record(g2, m1, m2, 2, &rec, &len) == 0 && rec[8] == DELTA_OK,
		   "chunk 2's delta too");
		ok(stat(f0, &sb) < 0 && stat(f2, &sb) == 0,
		   "  the least recently used (chunk 0's) made room for it");
		delta_gen_free(g2);
	}

	/* the agent's side: a cache with v1 in slot A, v2 assigned to slot B */
	{
		struct cache_params p = {.image = "deb",
					 .version = "1",
					 .image_size = (uint64_t)NCH * CS,
					 .chunk_size = CS,
					 .volume_size = 1 << 20};

		snprintf(path, sizeof(path), "%s/c.img", dir);
		ok(cache_create(path, &p) == 0 && cache_open(path, 0, &c) == 0,
		   "a cache with deb@1");
		for (unsigned i = 0; c && i < NCH; i++)
			cache_chunk_write(c, 0, i, v1[i], CS);
		ok(c && cache_commit(c) == 0 && cache_slot_set_active(c, 0) == 0 &&
			   cache_slot_assign(c, 1, "deb", "2", (uint64_t)NCH * CS, NULL) == 0,
		   "  slot A complete, slot B gets deb@2");
	}
	if (!c)
		goto out;
	chunk_hashes_from_manifest(m1, &h1);
	chunk_hashes_from_manifest(m2, &h2);

	/* the stream of chunks 0, 2, 3, 4 read in small pieces */
	idx = xcalloc(4, sizeof(*idx));
	idx[0] = 0, idx[1] = 2, idx[2] = 3, idx[3] = 4;
	m3 = NULL;
	s = stream_of(g, m1, m2, idx, 4);
	ok(read_all(s, 1000, &col) == 0, "the stream of 4 records, read 1000 bytes at a time");
	delta_stream_free(s);

	/* two streams of one generator, read in turns (as the loop serves two
	 * connections): each gets its own records whole */
	{
		uint64_t *i1 = xcalloc(2, sizeof(*i1)), *i2 = xcalloc(2, sizeof(*i2));
		struct delta_stream *s1, *s2;
		struct collect c1 = {0}, c2 = {0}, a1 = {0}, a2 = {0};
		int done1 = 0, done2 = 0;

		i1[0] = 0, i1[1] = 2, i2[0] = 2, i2[1] = 0;
		s1 = stream_of(g, m1, m2, i1, 2);
		s2 = stream_of(g, m1, m2, i2, 2);
		while (!done1 || !done2) {
			if (!done1)
				done1 = read_piece(s1, 700, &c1);
			if (!done2)
				done2 = read_piece(s2, 1100, &c2);
		}
		delta_stream_free(s1);
		delta_stream_free(s2);
		i1 = xcalloc(2, sizeof(*i1)), i2 = xcalloc(2, sizeof(*i2));
		i1[0] = 0, i1[1] = 2, i2[0] = 2, i2[1] = 0;
		s1 = stream_of(g, m1, m2, i1, 2);
		s2 = stream_of(g, m1, m2, i2, 2);
		read_all(s1, 65536, &a1);
		read_all(s2, 65536, &a2);
		delta_stream_free(s1);
		delta_stream_free(s2);
		ok(c1.len == a1.len && memcmp(c1.buf, a1.buf, a1.len) == 0 && c2.len == a2.len &&
			   memcmp(c2.buf, a2.buf, a2.len) == 0 && a1.len > 2 * DELTA_REC_LEN + 4096,
		   "two streams read in turns: each the same as read alone");
		free(c1.buf);
		free(c2.buf);
		free(a1.buf);
		free(a2.buf);
	}
	memset(&ds, 0, sizeof(ds));
	{
		const uint64_t asked[4] = {0, 2, 3, 4};

		/* truncated: only what came whole before the cut is applied */
		size_t first = DELTA_HDR_LEN + DELTA_REC_LEN + 10;

		is_int(delta_apply(c, 1, &h2, 0, &h1, asked, 4, col.buf, first, &ds), 0,
		       "a stream cut in its first frame applies nothing");
		is_int(ds.applied, 0, "  0 applied");
		is_int(ds.fallback, 4, "  4 left for iSCSI");
		memset(&ds, 0, sizeof(ds));
		/* wrong prefix: slot A's chunk 2 damaged on disk */
		{
			int fd = open(path, O_WRONLY);
			uint64_t off = cache_header(c)->geo.slot_off[0] + 2ull * CS + 100;

			ok(fd >= 0 && pwrite(fd, "damaged", 7, (off_t)off) == 7,
			   "damage slot A's chunk 2");
			if (fd >= 0)
				close(fd);
		}
		is_int(delta_apply(c, 1, &h2, 0, &h1, asked, 4, col.buf, col.len, &ds), 0,
		       "the whole stream applies");
		is_int(ds.applied, 2, "  chunks 0 and 4 applied");
		is_int(ds.rejected, 1, "  chunk 2's delta (against the damaged chunk) rejected");
		is_int(ds.fallback, 1, "  chunk 3 (no delta offered) left for iSCSI");
		ok(cache_chunk_present(c, 1, 0) && cache_chunk_present(c, 1, 4) &&
			   !cache_chunk_present(c, 1, 2) && !cache_chunk_present(c, 1, 3),
		   "  present: 0 and 4; absent: 2 and 3");
		{
			uint8_t *b = xmalloc(CS);

			ok(cache_chunk_read_raw(c, 1, 0, b, CS) == 0 && memcmp(b, v2[0], CS) == 0,
			   "  slot B's chunk 0 is v2's");
			ok(cache_chunk_read_raw(c, 1, 4, b, CS) == 0 && memcmp(b, v2[4], CS) == 0,
			   "  slot B's chunk 4 is v2's");
			free(b);
		}
		/* a corrupt frame: chunk 0's record, a byte flipped in its frame */
		memset(&ds, 0, sizeof(ds));
		cache_slot_assign(c, 1, "deb", "2", (uint64_t)NCH * CS, NULL);
		col.buf[DELTA_HDR_LEN + DELTA_REC_LEN + 20] ^= 0x5a;
		is_int(delta_apply(c, 1, &h2, 0, &h1, asked, 1, col.buf, col.len, &ds), 0,
		       "a stream with more records than asked");
		is_int(ds.applied, 0, "  applies nothing");
		memset(&ds, 0, sizeof(ds));
		{
			uint8_t *one = xmalloc(col.len);
			uint32_t fl0 = (uint32_t)col.buf[DELTA_HDR_LEN + 12] |
				       (uint32_t)col.buf[DELTA_HDR_LEN + 13] << 8 |
				       (uint32_t)col.buf[DELTA_HDR_LEN + 14] << 16;
			size_t l = DELTA_HDR_LEN + DELTA_REC_LEN + fl0;

			memcpy(one, col.buf, l);
			delta_hdr_encode(one, CS, 1);
			is_int(delta_apply(c, 1, &h2, 0, &h1, asked, 1, one, l, &ds), 0,
			       "a corrupt frame for chunk 0");
			is_int(ds.rejected, 1, "  is rejected");
			is_int(ds.applied, 0, "  never applied");
			ok(!cache_chunk_present(c, 1, 0), "  chunk 0 stays absent");
			free(one);
		}
		/* records out of order */
		{
			const uint64_t other[4] = {2, 0, 3, 4};

			memset(&ds, 0, sizeof(ds));
			col.buf[DELTA_HDR_LEN + DELTA_REC_LEN + 20] ^= 0x5a;
			is_int(delta_apply(c, 1, &h2, 0, &h1, other, 4, col.buf, col.len, &ds), 0,
			       "records for other chunks than asked");
			is_int(ds.applied, 0, "  apply nothing");
			is_int(ds.fallback, 4, "  all 4 left for iSCSI");
		}
	}
	chunk_hashes_release(&h1);
	chunk_hashes_release(&h2);
	cache_close(c);
out:
	free(col.buf);
	manifest_free(m1);
	manifest_free(m2);
	manifest_free(m3);
	delta_gen_free(g);
	store_free(st);
	tap_rmtree(dir);
}

int main(void)
{
	test_codec();
	test_parse();
	test_gen_apply();
	return done_testing();
}
