/* Fuzz harness for the cache header and maps loader (agent/cache.c): the
 * input is the first bytes of a cache file (two header copies, then the
 * maps). Also feeds the input to the hash-list parser (agent/source.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "agent/cache.h"
#include "agent/source.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cache_header h;
	struct chunk_hashes hs;
	uint64_t present, dirty;
	unsigned line;

	log_set_level(LOG_ERROR);
	if (cache_load_mem(data, size, &h, &present, &dirty) == 0) {
		/* what the loader accepted must be self-consistent */
		if (h.geo.total_size < h.geo.volume_off || present > 2 * h.geo.nchunks ||
		    dirty > h.geo.nblocks)
			abort();
	}
	if (chunk_hashes_parse((const char *)data, size, &hs, &line) == 0)
		chunk_hashes_release(&hs);
	return 0;
}
