/* Fuzz harness for goldagent's delta record parser and frame decoder
 * (lib/delta.c, as agent/delta.c uses them): the input is an answer of
 * POST /api/v1/images/IMAGE/delta for chunks of 4 KiB. Every whole record
 * with a frame is decoded with a fixed 4 KiB prefix and without one, into a
 * buffer of exactly one chunk (ASan catches any write past it). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/delta.h"
#include "lib/log.h"

#define FCS 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
	ZSTD_DCtx *dc;
	uint8_t prefix[FCS], out[FCS];
	unsigned n;
};

static int on_rec(void *arg, const struct delta_rec *r)
{
	struct fz *f = arg;

	f->n++;
	if (r->status == DELTA_OK) {
		if (!r->frame || r->len == 0 || r->len >= FCS)
			abort(); /* the parser promised a frame shorter than a chunk */
		delta_decompress(f->dc, f->prefix, FCS, r->frame, r->len, f->out, FCS);
		delta_decompress(f->dc, NULL, 0, r->frame, r->len, f->out, FCS);
	} else if (r->len != 0) {
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz f;
	char err[256];

	log_set_level(LOG_ERROR);
	if (!f.dc) {
		f.dc = ZSTD_createDCtx();
		for (unsigned i = 0; i < FCS; i++)
			f.prefix[i] = (uint8_t)(i * 131 + (i >> 7));
	}
	f.n = 0;
	if (delta_parse(data, size, FCS, DELTA_MAX_CHUNKS, on_rec, &f, err, sizeof(err)) == 0 &&
	    f.n > DELTA_MAX_CHUNKS)
		abort();
	return 0;
}
