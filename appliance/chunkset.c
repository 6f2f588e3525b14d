/* Chunk id set (see chunkset.h). Linear probing, load factor at most 1/2;
 * the slot index comes from the id's first 8 bytes (SHA-256 output is
 * uniform, so no further mixing is needed). No deletion: sets are built,
 * queried and dropped within one operation. */
#include "appliance/chunkset.h"

#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

void chunkset_init(struct chunkset *cs)
{
	memset(cs, 0, sizeof(*cs));
}

void chunkset_release(struct chunkset *cs)
{
	free(cs->slots);
	free(cs->used);
	memset(cs, 0, sizeof(*cs));
}

static size_t slot_of(const struct hash *id, size_t cap)
{
	uint64_t k;

	memcpy(&k, id->b, sizeof(k));
	return (size_t)(k & (cap - 1));
}

static int insert(struct hash *slots, uint8_t *used, size_t cap, const struct hash *id)
{
	size_t i = slot_of(id, cap);

	while (used[i]) {
		if (memcmp(&slots[i], id, sizeof(*id)) == 0)
			return 0;
		i = (i + 1) & (cap - 1);
	}
	used[i] = 1;
	slots[i] = *id;
	return 1;
}

int chunkset_add(struct chunkset *cs, const struct hash *id)
{
	int r;

	if ((cs->n + 1) * 2 > cs->cap) {
		size_t ncap = cs->cap ? cs->cap * 2 : 1024;
		struct hash *ns = xmalloc(ncap * sizeof(*ns));
		uint8_t *nu = xcalloc(ncap, 1);

		for (size_t i = 0; i < cs->cap; i++)
			if (cs->used[i])
				insert(ns, nu, ncap, &cs->slots[i]);
		free(cs->slots);
		free(cs->used);
		cs->slots = ns;
		cs->used = nu;
		cs->cap = ncap;
	}
	r = insert(cs->slots, cs->used, cs->cap, id);
	cs->n += (size_t)r;
	return r;
}

int chunkset_has(const struct chunkset *cs, const struct hash *id)
{
	size_t i;

	if (!cs->cap)
		return 0;
	for (i = slot_of(id, cs->cap); cs->used[i]; i = (i + 1) & (cs->cap - 1))
		if (memcmp(&cs->slots[i], id, sizeof(*id)) == 0)
			return 1;
	return 0;
}

int chunkset_next(const struct chunkset *cs, size_t *i, struct hash *id)
{
	for (; *i < cs->cap; (*i)++) {
		if (cs->used[*i]) {
			*id = cs->slots[(*i)++];
			return 1;
		}
	}
	return 0;
}
