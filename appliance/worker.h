/* Long work off the event loop (materialising an image version's export file,
 * for one): the job runs in a forked child of the loop's process and reports its
 * result back through its exit code, which the loop collects through a pidfd.
 * A child, unlike a thread, can be killed at any moment (a shutdown does not
 * wait for a 100 GiB export), and cannot corrupt the loop's memory. */
#ifndef GC_APPLIANCE_WORKER_H
#define GC_APPLIANCE_WORKER_H

#include <sys/types.h>

#include "appliance/loop.h"

/* Runs in the child; returns 0 or -errno (values up to 127 survive the trip). */
typedef int (*worker_fn)(void *arg);
/* Runs on the loop's thread with fn's result: 0 or -errno, -EINTR when the child
 * was killed, -ECHILD when it died otherwise. */
typedef void (*worker_done_cb)(int result, void *arg);

struct worker_child;

/* Forks; the child runs fn(arg) and _exits with its result; done(result, arg)
 * follows on the loop. Call from a single-threaded process (the daemon is). The
 * child inherits the loop's blocked signals: only SIGKILL (worker_child_kill)
 * ends it from outside; it gets SIGKILL too when the loop's process dies. Returns 0 and *out (valid
 * until done has run; out may be NULL), or -errno. */
int worker_fork(struct loop *l, worker_fn fn, worker_done_cb done, void *arg,
		struct worker_child **out);
pid_t worker_child_pid(const struct worker_child *c);
/* SIGKILLs the child; its done callback then reports -EINTR. */
void worker_child_kill(struct worker_child *c);

#endif
