/* Gold-update deltas: the wire format of POST /api/v1/images/IMAGE/delta
 * (docs/api.md "Deltas") and the zstd "patch-from" codec both ends share.
 *
 * A delta is one zstd frame of the NEW chunk compressed with the OLD chunk
 * (same index, previous version) as its prefix dictionary; the receiver
 * decompresses it with its own copy of the old chunk as prefix and must verify
 * the result against the new manifest's hash before it counts. When the old
 * chunk is a zero chunk or beyond the old image's end there is no prefix: the
 * frame is the new chunk, plainly compressed.
 *
 * Stream (little-endian):
 *   header, 24 bytes: magic "GCDELTA\n", u32 format (1), u32 chunk size,
 *                     u32 record count, u32 reserved (0)
 *   count records:    u64 chunk index, u32 status, u32 frame length,
 *                     then frame length bytes (0 unless status is DELTA_OK)
 * A stream cut short delivers the whole records before the cut. */
#ifndef GC_LIB_DELTA_H
#define GC_LIB_DELTA_H

#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#define DELTA_MAGIC "GCDELTA\n"
#define DELTA_FORMAT 1u
#define DELTA_HDR_LEN 24u
#define DELTA_REC_LEN 16u
/* chunks per request (the agent batches) */
#define DELTA_MAX_CHUNKS 256u
/* Deltas are offered for chunks up to this size: the appliance compresses one
 * chunk per write on its event loop (about 15 ms per MiB at its level), and a
 * larger chunk would stall the loop. Larger chunks come over iSCSI. */
#define DELTA_MAX_CHUNK_SIZE (4u << 20)

enum delta_status {
	DELTA_OK = 0, /* a frame follows */
	DELTA_NONE = 1, /* no delta smaller than the chunk: fetch it another way */
	DELTA_FAILED = 2, /* the appliance could not read a chunk (logged there) */
};

void delta_hdr_encode(uint8_t out[DELTA_HDR_LEN], uint32_t chunk_size, uint32_t count);
void delta_rec_encode(uint8_t out[DELTA_REC_LEN], uint64_t idx, uint32_t status, uint32_t len);

struct delta_rec {
	uint64_t idx;
	uint32_t status;
	const uint8_t *frame; /* into the parsed buffer; NULL when len is 0 */
	size_t len;
};

/* Called once per whole record; a non-zero return stops the parse and is
 * returned. */
typedef int (*delta_rec_fn)(void *arg, const struct delta_rec *r);

/* Parses a stream of len bytes: the header must say chunk_size and at most
 * max_count records; each frame must be shorter than chunk_size (a delta no
 * smaller than its chunk is never sent). Returns 0 when all records were
 * delivered, -EBADMSG for a malformed stream, -EPIPE when it was cut short
 * (whole records before the cut were delivered), or fn's return. err (may be
 * NULL) says what and at which byte. Never reads past len. */
int delta_parse(const uint8_t *buf, size_t len, uint32_t chunk_size, uint32_t max_count,
		delta_rec_fn fn, void *arg, char *err, size_t errsize);

/* The window a (prefix, chunk) pair needs: log2 of prefix + chunk rounded up,
 * at least 10 (zstd's minimum). */
int delta_window_log(size_t prefix_len, size_t len);

/* Compresses src (len) with prefix (plen, may be 0) into dst (cap). 0 and
 * *out_len; -ENOSPC when the frame would not fit cap (the caller passes cap <
 * len: such a delta is not worth sending); -EIO on a zstd error. */
int delta_compress(ZSTD_CCtx *cc, int level, const void *prefix, size_t plen, const void *src,
		   size_t len, void *dst, size_t cap, size_t *out_len);

/* Decompresses one frame with prefix (plen, may be 0) into dst, which must
 * come out exactly len bytes: a frame that declares another size, needs a
 * larger window than delta_window_log(plen, len), holds more than one frame or
 * would write past len is refused (-EBADMSG) before or while decoding, so a
 * hostile frame costs at most len bytes of output. */
int delta_decompress(ZSTD_DCtx *dc, const void *prefix, size_t plen, const void *frame, size_t flen,
		     void *dst, size_t len);

#endif
