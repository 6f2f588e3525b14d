/* Threads that verify and write chunks off the event loop (see workpool.c):
 * the hydrator's and the restore's. */
#ifndef GC_AGENT_WORKPOOL_H
#define GC_AGENT_WORKPOOL_H

/* Embedded in the caller's item (first member, or found with offsetof): the
 * pool only links items, it never allocates or frees them. */
struct work_item {
	struct work_item *next;
};

/* Runs on a pool thread, one item at a time per thread; must touch only what
 * the item owns and what is safe from several threads (hashes, pwrite). */
typedef void (*work_fn)(void *ctx, struct work_item *it);

struct workpool;

/* Starts n threads running fn(ctx, item) (0: online CPUs, at most 8). 0 and
 * *out, or -errno with nothing left running (logged). */
int workpool_new(unsigned n, work_fn fn, void *ctx, struct workpool **out);
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
