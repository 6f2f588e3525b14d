/* goldcached's side of gold-update deltas (lib/delta.h has the format):
 * makes the delta of one chunk against the same index of the previous
 * version, keeps it in an on-disk cache (thousands of machines take the same
 * update), and streams a request's records to the HTTP server one record per
 * call, so the event loop never compresses more than one chunk at a time. */
#ifndef GC_APPLIANCE_DELTA_H
#define GC_APPLIANCE_DELTA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct store;
struct manifest;

/* zstd level of the deltas. The Debian update of bench/update.sh (50 chunks
 * of 1 MiB): 1.32 MiB at level 3 (2.2 ms per chunk), 1.26 MiB at 9 (14.5
 * ms), 1.15 MiB at 19 (181 ms); level 1 loses most of the prefix's matches.
 * The loop makes one delta per call and caches it: the middle. */
#define DELTA_GEN_LEVEL 9
/* default bound of the on-disk cache */
#define DELTA_CACHE_MAX ((uint64_t)512 << 20)

struct delta_gen_stats {
	uint64_t made; /* deltas compressed */
	uint64_t cache_hits; /* served from the cache, verified */
	uint64_t cache_bad; /* cache files that failed verification (removed, made again) */
	uint64_t none; /* chunks without a delta smaller than the chunk */
	uint64_t failed; /* chunks the store could not give */
	uint64_t bytes; /* record bytes produced (headers included) */
};

struct delta_gen;

/* A generator reading chunks from store (borrowed). cache_dir: where deltas
 * are kept (created when missing; NULL: no cache), at most cache_max bytes
 * (0: DELTA_CACHE_MAX). 0 and *out, or -errno. */
int delta_gen_new(struct store *store, const char *cache_dir, uint64_t cache_max,
		  struct delta_gen **out);
void delta_gen_free(struct delta_gen *g);
const struct delta_gen_stats *delta_gen_stats(const struct delta_gen *g);

/* The record (lib/delta.h) of chunk idx of `to` against the same index of
 * `from` (no prefix when from has no such chunk or it is a zero chunk), in
 * g's buffer: *rec stays valid until the next call. Both chunks are read
 * from the store hash-checked (or the delta from the cache, verified). A
 * chunk the store cannot give is a DELTA_FAILED record, logged. Returns 0, or
 * -EINVAL when idx is not a chunk of `to` or the chunk sizes differ. */
int delta_gen_record(struct delta_gen *g, const struct manifest *from, const struct manifest *to,
		     uint64_t idx, const uint8_t **rec, size_t *len);

/* One request's answer: the header, then one record per requested index. */
struct delta_stream;
/* Takes ownership of from, to and idx (heap). */
struct delta_stream *delta_stream_new(struct delta_gen *g, struct manifest *from,
				      struct manifest *to, uint64_t *idx, uint32_t n);
/* An http_response reader (appliance/http.h): copies the next bytes into buf;
 * produces the next record only when the previous one is sent. Returns the
 * count, HTTP_READER_END after the last record. */
ssize_t delta_stream_read(void *arg, uint64_t pos, char *buf, size_t max);
void delta_stream_free(void *arg);

#endif
