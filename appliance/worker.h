/* Long work off the event loop: a small pool of threads runs jobs (materialising
 * an image version's export file, for one) and reports each result back on the
 * loop's thread through an eventfd. Job functions must not touch loop state. */
#ifndef GC_APPLIANCE_WORKER_H
#define GC_APPLIANCE_WORKER_H

#include "appliance/loop.h"

struct workers;

/* Runs on a worker thread; returns 0 or -errno. */
typedef int (*worker_fn)(void *arg);
/* Runs on the loop's thread with fn's result (-ECANCELED when the pool was freed
 * before the job started). */
typedef void (*worker_done_cb)(int result, void *arg);

/* A pool of at most max_threads threads (started on demand). NULL on failure. */
struct workers *workers_new(struct loop *l, unsigned max_threads);
/* Waits for running jobs to finish, cancels queued ones, joins the threads; every
 * job's done callback still runs (from here: with its result, or -ECANCELED for a
 * job that never started), so owners can free their args. NULL is fine. */
void workers_free(struct workers *w);

/* Queues fn(arg); done(result, arg) follows on the loop. 0 or -errno. */
int worker_submit(struct workers *w, worker_fn fn, worker_done_cb done, void *arg);
/* Jobs queued or running. */
unsigned workers_pending(const struct workers *w);

#endif
