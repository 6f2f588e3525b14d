/* Restore LUN files: a machine snapshot FROM@SNAP materialised as a raw volume
 * file for LUN 3 of every machine whose pending restore/reset order names it
 * (docs/restore.md, docs/sync.md "Restore and reset").
 *
 *     restores_new(&opts, &r);                    at start (sweeps temp files)
 *     f = restores_get(r, "pc1", 4);               per desired computation
 *     path = restore_file_path(f);                 NULL until published
 *     restores_unmark(r); restore_file_mark(f);    the set the wants use
 *     restores_pump(r);                            start exports (forked)
 *     restores_prune(r, all);                      after a complete reconcile
 *     n = restores_kill(r, gone, arg);             shutdown
 *
 * One file per snapshot (snapshots are immutable), shared by every machine
 * restoring from it: STATE/restore/FROM@SNAP.img, written by a forked worker
 * (appliance/worker.h) from the store with every chunk hash-checked, published
 * by temp file + fsync + rename (image_export_manifest), so the path is either
 * absent or whole. A file no order names any more is removed once tgtd no
 * longer serves it (restores_prune after a complete reconcile). */
#ifndef GC_APPLIANCE_RESTORE_H
#define GC_APPLIANCE_RESTORE_H

#include <stdint.h>

#include "appliance/loop.h"

#define RESTORE_LUN 3

struct restores_opts {
	struct loop *loop;
	const char *store_dir;
	const char *dir; /* STATE/restore: created when missing */
	/* Runs first in each forked export job (the daemon drops its fds there). */
	void (*child_setup)(void *arg);
	/* A file was published: the caller refreshes its targets. */
	void (*ready)(void *arg);
	void *arg;
};

enum restore_file_state {
	RESTORE_QUEUED,
	RESTORE_RUNNING,
	RESTORE_READY,
	RESTORE_FAILED, /* retried after RESTORE_RETRY_MS */
};

struct restores;
struct restore_file;

/* 0 and *out, or -errno (the directory cannot be created: logged). Removes
 * temp files of jobs killed with an earlier goldcached. */
int restores_new(const struct restores_opts *o, struct restores **out);
/* Frees (running jobs must have been killed and reaped: restores_kill). */
void restores_free(struct restores *r);

/* The file of from@snap, created on first use (ready at once when its file
 * exists from an earlier run, else queued). Never NULL. */
struct restore_file *restores_get(struct restores *r, const char *from, uint32_t snap);
/* Looks from@snap up without creating it: NULL when unknown. */
struct restore_file *restores_find(struct restores *r, const char *from, uint32_t snap);
/* The published path (owned by r), or NULL while not ready. */
const char *restore_file_path(const struct restore_file *f);
enum restore_file_state restore_file_state(const struct restore_file *f);
/* Bytes of the published file (0 while not ready). */
uint64_t restore_file_size(const struct restore_file *f);

/* Wanted marks: the daemon clears them all, marks what its current targets
 * use, then pumps. Only wanted files are exported. */
void restores_unmark(struct restores *r);
void restore_file_mark(struct restore_file *f);
/* Starts queued (and due failed) exports of wanted files, RESTORE_JOBS at a time. */
void restores_pump(struct restores *r);
/* Drops unwanted files that no job writes and unlinks them; with all, also
 * unlinks files in the directory that no entry names (once, at start). Call
 * only when no LUN uses an unwanted file (after a complete reconcile). */
void restores_prune(struct restores *r, int all);
/* SIGKILLs running jobs; gone(arg) runs once per killed job when it is
 * reaped. Returns how many were killed. */
unsigned restores_kill(struct restores *r, void (*gone)(void *arg), void *arg);

#endif
