/* Machine snapshots in the store: each machine's volume ("user layer") as a
 * series of immutable manifests, committed from the machine's upload file
 * after checking the agent's claimed chunk hashes against the uploaded data.
 * Daemon-callable: 0 or a negative errno, logs once, never prints or exits.
 *
 * Error codes callers can rely on: -ENOENT unknown machine, snapshot or base;
 * -EINVAL a malformed request (res->error says why); -EBADMSG uploaded data
 * that does not match a claimed hash (res->error names the chunk) or damaged
 * store data; -ESTALE a base whose geometry differs from the commit's (the
 * agent must send a full commit without a base). */
#ifndef GC_APPLIANCE_SNAPSHOT_H
#define GC_APPLIANCE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "appliance/image.h"
#include "appliance/store.h"
#include "lib/hash.h"
#include "lib/manifest.h"

/* Bounds on a commit request (checked by snapshot_commit and the API). */
#define SNAPSHOT_MAX_VOLUME (16ull << 40) /* 16 TiB */

/* Parts: a chunk may be uploaded in part. The chunk is cut into parts of
 * part_size bytes (at most SNAPSHOT_MAX_PARTS of them); bit j of parts says
 * part j was written to the upload file, and id is then the SHA-256 of those
 * parts' bytes (ascending, the last one clipped to the chunk). The chunk
 * committed is the base's chunk (zero without a base) with the uploaded parts
 * laid over it. parts 0: the whole chunk was uploaded, id is its hash. */
#define SNAPSHOT_MAX_PARTS 64u

struct snapshot_claim {
	uint64_t index; /* chunk index in the volume */
	struct hash id; /* SHA-256 of the uploaded bytes (the chunk's, or its parts') */
	uint64_t parts; /* uploaded parts (bit j: part j); 0: the whole chunk */
};

struct snapshot_commit_req {
	const char *machine; /* the snapshot's owner */
	const char *upload_path; /* the upload LUN's backing file (volume layout) */
	uint64_t volume_size; /* bytes, a multiple of 512 */
	uint32_t chunk_size; /* a power of two in [4 KiB, 64 MiB] */
	uint32_t part_size; /* claims with parts: a power of two dividing chunk_size into
			     * at most SNAPSHOT_MAX_PARTS parts; 0: no claim has parts */
	const char *base_machine; /* NULL: machine (a restored machine's first commit
				   * names the machine it was restored from) */
	uint32_t base; /* snapshot whose chunks unclaimed indexes inherit; 0: none (zero) */
	const struct snapshot_claim *claims; /* any order, each index at most once */
	size_t nclaims;
	unsigned retention; /* keep the newest N snapshots after committing; 0: all */
	const uint32_t *pinned; /* ids of machine kept beyond retention (pending orders) */
	size_t npinned;
	const char *gold_image; /* the gold image@version the volume was written over, */
	uint32_t gold_version; /* recorded beside the snapshot; NULL/0: unknown */
};

struct snapshot_commit_result {
	uint32_t snapshot; /* the new snapshot's id */
	uint64_t changed; /* claimed chunks */
	uint64_t new_chunks, new_bytes; /* chunk files written (not deduplicated) */
	uint64_t zero_chunks; /* claimed chunks that were all zero */
	uint64_t partial; /* claimed chunks uploaded in part (completed from the base) */
	uint64_t inherited; /* chunks taken from the base */
	uint64_t pruned; /* older snapshots removed by retention */
	uint64_t elapsed_ms; /* from the request to the published manifest */
	int64_t bad_chunk; /* -EBADMSG: the first chunk whose data did not match, else -1 */
	char error[256]; /* why a commit was refused (for the agent and the log) */
};

/* Commits a new snapshot of rq->machine: reads every claimed chunk from the
 * upload file (a claim with parts: those parts over the base's chunk), checks it against its
 * claimed SHA-256 (any mismatch refuses the whole commit with -EBADMSG, naming the chunk: no
 * snapshot appears), stores the chunks deduplicated, makes them durable, then publishes the
 * manifest (temp + fsync + link + fsync dir; ids are a per-machine sequence never reused). Then
 * prunes to rq->retention. Holds the store lock shared. Uses its own buffers only: safe on a worker
 * thread with its own store. */
int snapshot_commit(struct store *s, const struct snapshot_commit_req *rq,
		    struct snapshot_commit_result *res);

struct snapshot_info {
	uint32_t id, parent;
	int64_t created;
	uint64_t size, nchunks, zero_chunks;
	uint32_t chunk_size;
	uint64_t changed; /* chunks differing from the parent (all non-zero without one) */
	char gold_image[65]; /* the gold image@version it was written over, */
	uint32_t gold_version; /* as recorded at commit; "" and 0: not recorded */
};
/* Snapshots of machine, ascending. -ENOENT when it has none ever. Caller frees *out. */
int snapshot_list(struct store *s, const char *machine, struct snapshot_info **out, size_t *n);
/* The gold image@version recorded for machine@id (N.gold beside N.manifest):
 * 0, or -ENOENT when none was recorded (snapshots committed without one). */
int snapshot_gold(struct store *s, const char *machine, uint32_t id, char image[65],
		  uint32_t *version);
/* The highest snapshot id machine ever used (live or pruned) in the store at
 * store_root, 0 when none; and *first_after (optional) the lowest live id
 * above after (0: none). Needs no store handle (goldcached's loop: commit
 * status recovery). 0 or -errno. */
int snapshot_max_used(const char *store_root, const char *machine, uint32_t after,
		      uint32_t *max_used, uint32_t *first_after);
/* The newest snapshot of machine. -ENOENT when none. */
int snapshot_latest(struct store *s, const char *machine, uint32_t *id);
/* Loads machine@id (0: the newest). *out freed with manifest_free. */
int snapshot_manifest_load(struct store *s, const char *machine, uint32_t id,
			   struct manifest **out);
/* The manifest file's path (for serving it as is). */
int snapshot_manifest_path(struct store *s, const char *machine, uint32_t id, char *buf,
			   size_t size);
/* Writes machine@id (0: the newest) as a raw volume; see image_export_to_file. */
int snapshot_export_to_file(struct store *s, const char *machine, uint32_t id, const char *path,
			    const struct export_opts *o);
/* Removes every snapshot of machine but the newest keep (tombstones keep the
 * ids). *removed (optional) gets how many. Holds the store lock shared. */
int snapshot_prune(struct store *s, const char *machine, unsigned keep, uint64_t *removed);

#endif
