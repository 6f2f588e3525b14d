/* A set of chunk ids (open addressing on the id's first bytes, which are
 * uniformly distributed), for gc marking and verify. Grows without bound but
 * costs 32 bytes per id: 1 M chunks (1 TiB at 1 MiB chunks) is ~64 MB. */
#ifndef GC_APPLIANCE_CHUNKSET_H
#define GC_APPLIANCE_CHUNKSET_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hash.h"

struct chunkset {
	struct hash *slots;
	uint8_t *used;
	size_t cap, n; /* cap is a power of two */
};

void chunkset_init(struct chunkset *cs);
void chunkset_release(struct chunkset *cs);
/* Adds id; returns 1 when it was new, 0 when already present. */
int chunkset_add(struct chunkset *cs, const struct hash *id);
int chunkset_has(const struct chunkset *cs, const struct hash *id);
/* Iteration: for (size_t i = 0; chunkset_next(cs, &i, &id);) */
int chunkset_next(const struct chunkset *cs, size_t *i, struct hash *id);

#endif
