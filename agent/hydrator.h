/* Pipelined, resumable hydration of a gold slot from a reconnecting chunk
 * source (the machine's iSCSI target), see hydrator.c. */
#ifndef GC_AGENT_HYDRATOR_H
#define GC_AGENT_HYDRATOR_H

#include <stdint.h>

#include "agent/source.h"

struct cache;

/* Opens a (new) source: called at the start and after a lost session. */
typedef int (*hydr_open_fn)(void *arg, struct chunk_source **out);

struct hydr_opts {
	unsigned depth; /* chunks in flight (0: 8) */
	unsigned workers; /* threads verifying and writing chunks (0: online CPUs, at most 8) */
	uint64_t commit_bytes; /* 0: 64 MiB */
	unsigned backoff_min_ms; /* 0: 500 */
	unsigned backoff_max_ms; /* 0: 10000 */
	uint64_t give_up_ms; /* total time without progress before giving up (0: 300 s) */
	hydr_open_fn open;
	void *open_arg;
	/* gold update: the hashes of the other slot's image (the previous
	 * version); a chunk whose hash is present there is copied locally
	 * (verified) instead of fetched. NULL: none. */
	const struct chunk_hashes *other;
};

struct hydr_stats {
	struct hydrate_stats h; /* fetched, copied, zero, skipped, rejected, bytes */
	unsigned reconnects; /* sessions reopened after a failure */
	uint64_t paired; /* chunks verified two at a time (chunk_hashes_verify2) */
	uint64_t elapsed_ms;
};

/* Fills every absent chunk of slot, verified against hs (required): zero
 * chunks are written locally, the rest fetched with depth requests in flight.
 * A failing source is freed and reopened after a backoff (min, doubling to
 * max); after give_up_ms without a chunk stored it returns -ETIMEDOUT (or the
 * open's error). Returns 0 when the slot is complete, -EBADMSG when chunks were
 * rejected (every other chunk is stored), or a cache I/O error. */
int hydrate_pipelined(struct cache *c, int slot, const struct chunk_hashes *hs,
		      const struct hydr_opts *o, struct hydr_stats *st);

#endif
