/* Store-wide operations over all manifests: garbage collection and stats.
 * Daemon-callable (0 or -errno, logs once, no printing). */
#ifndef GC_APPLIANCE_GC_H
#define GC_APPLIANCE_GC_H

#include <stdint.h>

#include "appliance/store.h"

struct gc_result {
	uint64_t manifests, chunks_kept, chunks_removed, bytes_removed, tmp_removed;
};

/* Mark and sweep: every chunk not named by an image version or machine
 * snapshot manifest is removed, and stale temp files with it. Takes the
 * store lock exclusively (waits for imports, exports and verifies in flight).
 * Refuses to sweep (-EBADMSG, nothing removed) when any manifest is damaged:
 * the chunks it names cannot be known. */
int gc_collect(struct store *s, struct gc_result *res);

struct store_stats {
	uint64_t images, versions, snapshots;
	uint64_t logical_bytes; /* sum of the sizes of all versions and snapshots */
	uint64_t zero_bytes; /* of which in zero chunks (never stored) */
	uint64_t unique_bytes; /* raw bytes of the distinct chunks referenced */
	uint64_t chunks, stored_bytes; /* chunk files and their total size */
	uint64_t referenced_chunks, unreferenced_chunks;
	uint64_t damaged_manifests;
	double dedup_ratio; /* logical_bytes / stored_bytes (0 when nothing stored) */
};

/* Store statistics (reads every manifest and stats every chunk file; no lock). */
int gc_stats(struct store *s, struct store_stats *st);

#endif
