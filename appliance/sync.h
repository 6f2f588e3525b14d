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

/* A commit request's body is at most this large (about 90 bytes per chunk:
 * ~90 000 changed chunks, 90 GiB at 1 MiB chunks, per commit). */
#define SYNC_MAX_BODY ((size_t)8 << 20)

struct sync;

/* A parsed commit request (heap; sync_commit_start takes it over). */
struct sync_commit {
	uint64_t volume_size;
	uint32_t chunk_size;
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
 *    "chunks": [{"index": N, "sha256": "64 hex"}, ...]}
 * 0 and *out (free with sync_commit_free), or -EINVAL with a reason in err. */
int sync_commit_parse(const char *body, size_t len, struct sync_commit **out, char *err,
		      size_t errsize);
void sync_commit_free(struct sync_commit *c);

/* Queues the commit of machine name (takes c over, even on failure). -EBUSY
 * when a commit of name is already running; 0 otherwise. */
int sync_commit_start(struct sync *s, const char *name, unsigned retention, struct sync_commit *c);

/* The state of name's last commit since goldcached started (new reference):
 * {"state": "none"|"running"|"done"|"failed", "snapshot", "started",
 *  "finished", "changed", "new_chunks", "new_bytes", "zero_chunks",
 *  "inherited", "pruned", and on failure "reason" ("mismatch", "invalid",
 *  "base_missing", "base_geometry", "io"), "error" (text) and for a mismatch
 *  "chunk" (the index to upload again)}. */
json_t *sync_commit_status(struct sync *s, const char *name);

#endif
