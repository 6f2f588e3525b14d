/* Fuzz harness for the manifest decoder (lib/manifest.c): any input must be
 * rejected cleanly or decode to a manifest whose encoding is the input byte
 * for byte (the format has one canonical form). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest *m = NULL;
	char err[256], *text = NULL;
	size_t len = 0;

	if (manifest_decode((const char *)data, size, &m, err, sizeof(err)) < 0) {
		if (strncmp(err, "manifest line ", 14) != 0)
			abort(); /* every rejection names its line */
		return 0;
	}
	if (manifest_encode(m, &text, &len) < 0 || len != size || memcmp(text, data, size) != 0)
		abort();
	for (uint64_t i = 0; i < m->nchunks; i++)
		if (manifest_chunk_len(m, i) == 0)
			abort();
	free(text);
	manifest_free(m);
	return 0;
}
