/* goldcached's side of sync back (docs/sync.md): each cache-mode machine has an
 * upload file (STATE/uploads/NAME.img, LUN 2 of its target) that its agent
 * writes changed chunks into over iSCSI; a commit request (the chunk list and
 * the agent's SHA-256 of each) is checked and turned into a snapshot by
 * snapshot_commit() in a forked worker (appliance/worker.h), never on the loop. The agent polls the
 * commit's outcome (a commit of a large volume outlasts an HTTP timeout).
 *
 *     sync_new(loop, store_root, uploads_dir, &sync);   daemon start
 *     sync_commit_parse(body, len, &req, err)           API thread (the loop)
 *     sync_commit_start(sync, name, retention, req)     queues the job
 *     sync_commit_status(sync, name)                    what GET .../commit shows
 *     sync_kill(sync, gone, arg)                        shutdown: kills running commits
 *     sync_free(sync);                                  after the loop */
#ifndef GC_APPLIANCE_SYNC_H
#define GC_APPLIANCE_SYNC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "appliance/loop.h"
#include "appliance/snapshot.h"

/* A commit request's body is at most this large (about 110 bytes per chunk:
 * ~75 000 chunks per request). Larger commits are sent in batches (see
 * sync_commit_start): a transaction holds up to MANIFEST_MAX_CHUNKS chunks. */
#define SYNC_MAX_BODY ((size_t)8 << 20)

struct sync;

/* A parsed commit request (heap; sync_commit_start takes it over). */
struct sync_commit {
	uint64_t volume_size;
	uint32_t chunk_size;
	uint32_t part_size; /* claims with parts (snapshot.h); 0: none has parts */
	int has_batch; /* "batch" given: one request of a transaction */
	uint32_t batch; /* its number, 0 opens the transaction */
	int more; /* "more": true: further batches follow (stage, do not commit) */
	char base_machine[65]; /* "" : the machine itself */
	uint32_t base; /* 0: none */
	struct snapshot_claim *claims;
	size_t nclaims;
	uint32_t *pinned; /* snapshots of the machine retention must keep (set by the
			   * caller: those pending restore/reset orders name), heap */
	size_t npinned;
	char gold_image[65]; /* "gold": the image@version the volume was written over; */
	uint32_t gold_version; /* "" and 0: not said (h_commit fills in its own view) */
};

/* 0 and *out, or -errno (logged). The upload files live in uploads_dir (created). */
int sync_new(struct loop *l, const char *store_root, const char *uploads_dir, struct sync **out);
/* Kills every running commit (nothing half-done stays visible: see
 * snapshot.h); returns how many, and gone(arg) is called as each one's exit
 * is collected by the loop. For the daemon's shutdown. */
unsigned sync_kill(struct sync *s, void (*gone)(void *arg), void *arg);
/* Frees s; commits still running are killed. */
void sync_free(struct sync *s);

/* STATE/uploads/NAME.img for machine name (buf of size bytes). */
int sync_upload_path(const char *uploads_dir, const char *name, char *buf, size_t size);
/* Makes the upload file of name exist with at least size bytes (sparse;
 * never shrunk). 0 or -errno (logged). */
int sync_upload_ensure(const char *uploads_dir, const char *name, uint64_t size);

/* Parses and bounds-checks a commit body:
 *   {"volume_size": N, "chunk_size": N, "base_snapshot": null | N | "OTHER@N",
 *    "part_size": N, "batch": N, "more": bool, "gold": "IMAGE@V",
 *    "chunks": [{"index": N, "sha256": "64 hex", "parts": "hex mask"}, ...]}
 * (part_size, batch, more, gold and parts optional; docs/sync.md)
 * 0 and *out (free with sync_commit_free), or -EINVAL with a reason in err. */
int sync_commit_parse(const char *body, size_t len, struct sync_commit **out, char *err,
		      size_t errsize);
void sync_commit_free(struct sync_commit *c);

/* Queues the commit of machine name (takes c over, even on failure). -EBUSY
 * when a commit of name is already running; 0 otherwise.
 * Transactions: a request with "batch" K and "more" true stages its claims
 * (STATE/uploads/NAME.claims; indexes strictly ascending across the whole
 * transaction, so the staged list needs no sort and no duplicate check) and
 * commits nothing; batch 0 opens a new transaction (dropping any staged one);
 * the first request without "more" commits the staged claims and its own.
 * -ESRCH: batch K > 0 does not continue the open transaction (none open, as
 * after a restart, another K expected, or other geometry): start again at 0.
 * -EINVAL: indexes not ascending across batches. */
int sync_commit_start(struct sync *s, const char *name, unsigned retention, struct sync_commit *c);

/* The state of name's last commit (new reference), kept across goldcached
 * restarts in STATE/uploads/NAME.commit:
 * {"state": "none"|"staging"|"running"|"done"|"failed", "id" (the commit's,
 *  also in the 202 answer), "snapshot", "started",
 *  "finished", "changed", "new_chunks", "new_bytes", "zero_chunks",
 *  "inherited", "partial", "pruned", and on failure "reason" ("mismatch",
 *  "invalid", "base_missing", "base_geometry", "io", "interrupted": the job
 *  died with goldcached, nothing was published, commit again), "error" (text)
 *  and for a mismatch "chunk" (the index to upload again)}. */
json_t *sync_commit_status(struct sync *s, const char *name);

#endif
