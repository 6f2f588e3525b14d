/* Long work off the event loop: a small pool of threads runs jobs (materialising
 * an image version's export file, for one) and reports each result back on the
 * loop's thread through an eventfd. Job functions must not touch loop state. */
#ifndef GC_APPLIANCE_WORKER_H
#define GC_APPLIANCE_WORKER_H

#include <sys/types.h>

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

/* Long work that must stay killable (an export the daemon may abandon at
 * shutdown): fn(arg) runs in a forked child of the (single-threaded) loop
 * process and _exits with fn's result; done(result, arg) follows on the loop
 * (result: fn's 0 or -errno, -EINTR when the child was killed, -ECHILD when it
 * died otherwise). Returns 0 and *out (valid until done has run; may be NULL),
 * or -errno. The child inherits the loop's blocked signals: only SIGKILL (see
 * worker_child_kill) ends it from outside. */
struct worker_child;
int worker_fork(struct loop *l, worker_fn fn, worker_done_cb done, void *arg,
		struct worker_child **out);
pid_t worker_child_pid(const struct worker_child *c);
/* SIGKILLs the child; its done callback then reports -EINTR. */
void worker_child_kill(struct worker_child *c);

#endif
