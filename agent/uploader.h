/* Sync of the machine volume to the appliance (docs/sync.md, agent side):
 * dirty blocks up to the upload LUN, commit, dirty bits cleared. */
#ifndef GC_AGENT_UPLOADER_H
#define GC_AGENT_UPLOADER_H

#include <stdint.h>

struct cache;
struct apic;
struct fetch_target;

struct upl_opts {
	struct apic *api; /* token loaded */
	const struct fetch_target *target; /* the upload LUN */
	unsigned depth; /* writes in flight (0: 8) */
	int timeout_s;
	const char *state_path; /* "snapshot N" of the last acknowledged commit */
	unsigned attempts; /* upload/commit attempts (0: 5) */
};

struct upl_stats {
	uint64_t dirty_blocks, dirty_bytes; /* at the start */
	uint64_t sent_blocks, sent_bytes; /* written to the LUN (last attempt) */
	uint64_t cleared; /* dirty bits cleared after the commit */
	uint32_t snapshot; /* the new snapshot */
	unsigned attempts;
	uint64_t upload_ms, commit_ms;
};

/* One sync: 0 (also when nothing was dirty: no commit), or a negative errno
 * (the dirty bits are untouched: the next sync uploads them again). */
int upload_sync(struct cache *c, const struct upl_opts *o, struct upl_stats *st);

/* Records in state_path the base the next commit names (docs/sync.md): this
 * machine's snapshot snap (from NULL), FROM's snapshot snap (a restore), or
 * none (snap 0: a fresh volume). Atomic and durable; 0 or -errno (logged). */
int upload_base_set(const char *state_path, const char *from, uint32_t snap);

#endif
