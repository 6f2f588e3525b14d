/* Threads that verify and write chunks off the event loop (see workpool.c):
 * the hydrator's, the restore's and the NBD server's (agent/nbd.c: chunks
 * fetched on demand or by the background hydration of serve and attach). */
#ifndef GC_AGENT_WORKPOOL_H
#define GC_AGENT_WORKPOOL_H

/* Embedded in the caller's item (first member, or found with offsetof): the
 * pool only links items, it never allocates or frees them. */
struct work_item {
	struct work_item *next;
};

/* Runs on a pool thread with a batch: a list of 1 to `batch` items through
 * next (which it must not change); must touch only what the items own and
 * what is safe from several threads (hashes, pwrite). A batch lets a worker
 * hash two chunks together (multi-buffer SHA-256). */
typedef void (*work_fn)(void *ctx, struct work_item *items);

struct workpool;

/* Starts n threads running fn(ctx, items) on batches of up to `batch` items
 * (0 or 1: one at a time) (n 0: online CPUs, at most 8). 0 and *out, or
 * -errno with nothing left running (logged). */
int workpool_new(unsigned n, unsigned batch, work_fn fn, void *ctx, struct workpool **out);
/* While hold is set, a thread waits until a whole batch is queued instead of
 * taking fewer items (e.g. while more chunks are on the wire: the partner is
 * coming). Clear it before waiting for the last items (workpool_free ignores
 * it). Loop thread only. */
void workpool_hold(struct workpool *p, int hold);
unsigned workpool_threads(const struct workpool *p);
/* The loop hands an item over; some thread runs fn on it. */
void workpool_push(struct workpool *p, struct work_item *it);
/* Readable (POLLIN) when items are done; workpool_take clears it. */
int workpool_fd(const struct workpool *p);
/* The items finished since the last call, as a list through next (in no
 * particular order), or NULL. The loop owns them again. */
struct work_item *workpool_take(struct workpool *p);
/* Runs every item still queued, then stops and joins the threads and frees
 * the pool (finished items not taken are the caller's: take them first). */
void workpool_free(struct workpool *p);

#endif
