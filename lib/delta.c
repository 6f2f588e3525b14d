/* Gold-update deltas: stream encoding, a bounded parser, and zstd patch-from
 * with the old chunk as prefix (see delta.h; docs/api.md "Deltas").
 *
 * The parser is fed by the network (goldagent) and fuzzed
 * (tests/fuzz/fuzz-delta.c): every length is checked in the subtraction form
 * before it is used, a frame may not be as large as a chunk, and the record
 * count is bounded by the caller's request size.
 *
 * The decoder is the other half of the bound: ZSTD_d_windowLogMax caps the
 * memory a frame can ask for, the frame's declared content size must be the
 * chunk's, and the output buffer is exactly the chunk, so zstd stops with an
 * error rather than write one byte more. */
#include "lib/bytes.h"
#include "lib/delta.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zstd_errors.h>

void delta_hdr_encode(uint8_t out[DELTA_HDR_LEN], uint32_t chunk_size, uint32_t count)
{
	memcpy(out, DELTA_MAGIC, 8);
	put_le32(out + 8, DELTA_FORMAT);
	put_le32(out + 12, chunk_size);
	put_le32(out + 16, count);
	put_le32(out + 20, 0);
}

void delta_rec_encode(uint8_t out[DELTA_REC_LEN], uint64_t idx, uint32_t status, uint32_t len)
{
	put_le64(out, idx);
	put_le32(out + 8, status);
	put_le32(out + 12, len);
}

int delta_parse(const uint8_t *buf, size_t len, uint32_t chunk_size, uint32_t max_count,
		delta_rec_fn fn, void *arg, char *err, size_t errsize)
{
	uint32_t count, fmt, cs;
	size_t off = DELTA_HDR_LEN;
	char dummy[8];

	if (!err) {
		err = dummy;
		errsize = sizeof(dummy);
	}
	err[0] = '\0';
	if (len < DELTA_HDR_LEN) {
		snprintf(err, errsize, "stream of %zu bytes cut short in its header", len);
		return len >= 8 && memcmp(buf, DELTA_MAGIC, 8) != 0 ? -EBADMSG : -EPIPE;
	}
	if (memcmp(buf, DELTA_MAGIC, 8) != 0) {
		snprintf(err, errsize, "not a delta stream (bad magic at byte 0)");
		return -EBADMSG;
	}
	fmt = get_le32(buf + 8);
	cs = get_le32(buf + 12);
	count = get_le32(buf + 16);
	if (fmt != DELTA_FORMAT) {
		snprintf(err, errsize, "delta stream format %u, this reader knows %u", fmt,
			 DELTA_FORMAT);
		return -EBADMSG;
	}
	if (cs != chunk_size) {
		snprintf(err, errsize, "delta stream for chunks of %u bytes, expected %u", cs,
			 chunk_size);
		return -EBADMSG;
	}
	if (count > max_count || get_le32(buf + 20) != 0) {
		snprintf(err, errsize,
			 "delta stream header: %u records (at most %u asked), "
			 "reserved field %u",
			 count, max_count, get_le32(buf + 20));
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < count; i++) {
		struct delta_rec r;
		uint32_t flen;
		int rc;

		if (off > len || DELTA_REC_LEN > len - off) {
			snprintf(err, errsize, "stream cut short at byte %zu (record %u of %u)",
				 off, i + 1, count);
			return -EPIPE;
		}
		r.idx = get_le64(buf + off);
		r.status = get_le32(buf + off + 8);
		flen = get_le32(buf + off + 12);
		if (r.status > DELTA_FAILED || (r.status != DELTA_OK && flen != 0) ||
		    (r.status == DELTA_OK && (flen == 0 || flen >= chunk_size))) {
			snprintf(err, errsize,
				 "record %u at byte %zu: status %u with a frame of %u bytes "
				 "(chunks of %u)",
				 i + 1, off, r.status, flen, chunk_size);
			return -EBADMSG;
		}
		off += DELTA_REC_LEN;
		if (flen > len - off) {
			snprintf(err, errsize,
				 "stream cut short at byte %zu in the frame of record %u (%u bytes "
				 "announced)",
				 len, i + 1, flen);
			return -EPIPE;
		}
		r.frame = flen ? buf + off : NULL;
		r.len = flen;
		off += flen;
		rc = fn(arg, &r);
		if (rc)
			return rc;
	}
	if (off != len) {
		snprintf(err, errsize, "%zu bytes after the last record (byte %zu)", len - off,
			 off);
		return -EBADMSG;
	}
	return 0;
}

int delta_window_log(size_t prefix_len, size_t len)
{
	int w = 10; /* ZSTD_WINDOWLOG_MIN */
	size_t need = prefix_len + len;

	while (w < 30 && ((size_t)1 << w) < need)
		w++;
	return w;
}

int delta_compress(ZSTD_CCtx *cc, int level, const void *prefix, size_t plen, const void *src,
		   size_t len, void *dst, size_t cap, size_t *out_len)
{
	size_t z;

	ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(
		    ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, delta_window_log(plen, len))) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 0)) ||
	    (plen && ZSTD_isError(ZSTD_CCtx_refPrefix(cc, prefix, plen))))
		return -EIO;
	z = ZSTD_compress2(cc, dst, cap, src, len);
	if (ZSTD_isError(z))
		return ZSTD_getErrorCode(z) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EIO;
	*out_len = z;
	return 0;
}

int delta_decompress(ZSTD_DCtx *dc, const void *prefix, size_t plen, const void *frame, size_t flen,
		     void *dst, size_t len)
{
	unsigned long long declared = ZSTD_getFrameContentSize(frame, flen);
	size_t z;

	if (declared != (unsigned long long)len ||
	    ZSTD_findFrameCompressedSize(frame, flen) != flen)
		return -EBADMSG;
	ZSTD_DCtx_reset(dc, ZSTD_reset_session_and_parameters);
	if (ZSTD_isError(
		    ZSTD_DCtx_setParameter(dc, ZSTD_d_windowLogMax, delta_window_log(plen, len))) ||
	    (plen && ZSTD_isError(ZSTD_DCtx_refPrefix(dc, prefix, plen))))
		return -EIO;
	z = ZSTD_decompressDCtx(dc, dst, len, frame, flen);
	if (ZSTD_isError(z) || z != len)
		return -EBADMSG;
	return 0;
}
