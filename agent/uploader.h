/* Sync of the machine volume to the appliance (docs/sync.md, agent side):
 * dirty blocks up to the upload LUN, commit, dirty bits cleared.
 *
 * Two ways to run one sync:
 *  - upload_sync(): blocking, for a volume nobody writes meanwhile
 *    (`goldagent sync`);
 *  - upl_live_start() + upl_live_step(): while the NBD server keeps serving
 *    the volume (`goldagent attach`). The uploading and the commit run on a
 *    thread; the loop runs upl_live_step() whenever notify_fd is readable,
 *    decides the next pass there (all cache metadata stays on the loop) and
 *    pauses the volume's writes only for the short final pass. */
#ifndef GC_AGENT_UPLOADER_H
#define GC_AGENT_UPLOADER_H

#include <stdint.h>

struct cache;
struct apic;
struct fetch_target;

struct upl_opts {
	struct apic *api; /* token loaded; copied (the strings must outlive the sync) */
	const struct fetch_target *target; /* the upload LUN; copied likewise */
	unsigned depth; /* writes in flight (0: 8) */
	int timeout_s;
	const char *state_path; /* "snapshot N" of the last acknowledged commit */
	unsigned attempts; /* upload/commit attempts (0: 5) */
	/* live syncs */
	unsigned max_passes; /* passes with writes flowing before the final one (0: 8) */
	uint64_t final_bytes; /* a set this small is uploaded with writes paused (0: 1 MiB) */
	int notify_fd; /* an eventfd the loop watches (upl_live_start) */
	void (*pause)(void *arg, int on); /* pauses / resumes the volume's writes */
	void *pause_arg;
	/* link failures (no login, session lost, API unreachable) do not use up
	 * an attempt until the link has been down this long (0: they do) */
	uint64_t give_up_ms;
};

struct upl_stats {
	uint64_t dirty_blocks, dirty_bytes; /* at the start */
	uint64_t sent_blocks, sent_bytes; /* written to the LUN, all passes */
	uint64_t chunks, partial; /* chunks committed; of those, uploaded in part */
	uint64_t cleared; /* dirty bits cleared after the commit */
	uint32_t snapshot; /* the new snapshot */
	unsigned attempts; /* commit attempts */
	unsigned passes; /* upload passes (the last one with writes paused) */
	unsigned requests; /* commit POSTs (batches) */
	uint64_t upload_ms, commit_ms;
	uint64_t pause_ms; /* writes paused (live syncs) */
};

/* One sync: 0 (also when nothing was dirty: no commit), or a negative errno
 * (the dirty bits are untouched: the next sync uploads them again). */
int upload_sync(struct cache *c, const struct upl_opts *o, struct upl_stats *st);

/* Records in state_path the base the next commit names (docs/sync.md): this
 * machine's snapshot snap (from NULL), FROM's snapshot snap (a restore), or
 * none (snap 0: a fresh volume). Atomic and durable; 0 or -errno (logged). */
int upload_base_set(const char *state_path, const char *from, uint32_t snap);

struct upl_live;
/* Starts a live sync of c: 0 and *out, 1 when nothing is dirty (no sync,
 * *out NULL), or -errno. The opts (with notify_fd and pause) are copied. */
int upl_live_start(struct cache *c, const struct upl_opts *o, struct upl_live **out);
/* On the loop when notify_fd is readable: 1 while the sync goes on, 0 when it
 * committed (dirty bits cleared), a negative errno when it failed (bits
 * untouched). Writes are never left paused when it returns. */
int upl_live_step(struct upl_live *l);
const struct upl_stats *upl_live_stats(const struct upl_live *l);
/* Stops the thread (a sync in progress is abandoned: its bits stay), resumes
 * writes if paused, frees. */
void upl_live_free(struct upl_live *l);

#endif
