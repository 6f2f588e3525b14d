/* Restore and reset orders on the agent side (docs/restore.md, docs/sync.md
 * "Restore and reset"): the machine volume replaced by another machine's
 * snapshot, by one of its own, or by zeros, crash-safely. */
#ifndef GC_AGENT_RESTORE_H
#define GC_AGENT_RESTORE_H

#include <stdint.h>

struct cache;
struct apic;
struct apic_machine;
struct apic_iscsi;

struct restore_opts {
	struct apic *api; /* token loaded */
	const struct apic_iscsi *login; /* the machine's own target (portal, CHAP) */
	const char *base_path; /* the uploader's state file (upload_base_set) */
	unsigned depth; /* reads in flight (0: 8) */
	int timeout_s; /* iSCSI login */
	uint64_t give_up_ms; /* waiting for the LUN, and without progress (0: 300 s) */
};

struct restore_stats {
	int64_t order; /* the order carried out, 0: none */
	uint64_t chunks, zero_chunks, bytes; /* read from the LUN / zeroed */
	unsigned attempts; /* iSCSI sessions used */
	uint64_t elapsed_ms; /* the whole order: manifest, marker, copy, zeroing, syncs */
	uint64_t copy_ms; /* of which reading, verifying and writing the chunks */
};

/* Carries out the pending order in *m (as GET .../machines/NAME answered; it
 * is re-read when the appliance answers 409 and while waiting for the LUN):
 * marker, volume rewritten (every chunk verified against the snapshot's
 * manifest before it is written), dirty map cleared, marker cleared, the
 * sync base recorded, then POST .../hydrated. Returns 0 (nothing pending, or
 * done), -EUCLEAN (the volume is half-restored and the appliance has no
 * order for it), -EFBIG (the snapshot does not fit this machine's volume:
 * nothing touched, the order stays pending), -EBADMSG (a chunk from the LUN
 * does not match: the volume stays marked half-restored), -ETIMEDOUT (the
 * LUN never came, or the session kept failing), or another -errno. Logs. */
int restore_pending(struct cache *c, struct apic_machine *m, const struct restore_opts *o,
		    struct restore_stats *st);

/* Offline start: 0 when no restore is half done, else -EUCLEAN with a clear
 * message naming the cache and the order (the volume must not be served). */
int restore_offline_check(const struct cache *c, const char *url);

#endif
