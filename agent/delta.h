/* goldagent's delta pass for gold updates (see delta.c, docs/update.md):
 * before the iSCSI hydration of a slot being filled with a new version, the
 * chunks that differ from the same index of the active slot are fetched as
 * zstd deltas against it over HTTP and applied, each verified against the new
 * manifest. Whatever the pass cannot do is left absent for the hydrator. */
#ifndef GC_AGENT_DELTA_H
#define GC_AGENT_DELTA_H

#include <stddef.h>
#include <stdint.h>

struct apic;
struct cache;
struct chunk_hashes;

struct delta_stats {
	uint64_t candidates; /* chunks the pass asked for */
	uint64_t applied; /* made present from a delta */
	uint64_t fallback; /* left for iSCSI: no delta offered, or not answered */
	uint64_t rejected; /* a delta that did not decode or verify (left for iSCSI) */
	uint64_t wire_bytes; /* HTTP body bytes received */
	uint64_t chunk_bytes; /* bytes of the chunks applied */
	unsigned requests;
	uint64_t elapsed_ms;
};

struct delta_opts {
	struct apic *api;
	const char *image;
	uint32_t from, to; /* the active slot's version, the version being filled */
	int old_slot; /* the active slot (holds `from`) */
	const struct chunk_hashes *old; /* from's chunk hashes */
	unsigned batch; /* chunks per request; 0: up to DELTA_MAX_CHUNKS and 32 MiB */
};

/* The pass over slot (hashes hs): 0 when it ran (some chunks may be left for
 * the hydrator; st says how many; nothing is asked for chunks above
 * DELTA_MAX_CHUNK_SIZE), -ENOENT when the appliance offers no
 * deltas (an older one), another -errno when a request failed (the pass
 * stops; what was applied stays), or a cache I/O error. A crash loses at most
 * the chunks of the batch being applied. */
int delta_pass(struct cache *c, int slot, const struct chunk_hashes *hs, const struct delta_opts *o,
	       struct delta_stats *st);

/* Applies one answer (lib/delta.h stream) for the chunks asked (in order) to
 * slot: each frame decompressed with the old slot's chunk as prefix, verified
 * against hs, written; then one cache_commit. Exposed for the unit tests. 0,
 * or a cache I/O error; a malformed or short stream applies what came whole
 * before the damage and counts the rest as fallbacks (logged). */
int delta_apply(struct cache *c, int slot, const struct chunk_hashes *hs, int old_slot,
		const struct chunk_hashes *old, const uint64_t *asked, size_t n, const uint8_t *buf,
		size_t len, struct delta_stats *st);

#endif
