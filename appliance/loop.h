/* The daemon's one event loop (epoll): fd watchers, one-shot timers, signals
 * (signalfd) and child exits (pidfd). Every callback runs on the loop's thread;
 * nothing here blocks except epoll_wait itself. Long work goes to appliance/worker.h. */
#ifndef GC_APPLIANCE_LOOP_H
#define GC_APPLIANCE_LOOP_H

#include <stdint.h>
#include <sys/types.h>

struct loop;
struct loop_timer;

/* events: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP as epoll reports them. */
typedef void (*loop_fd_cb)(struct loop *l, int fd, uint32_t events, void *arg);
typedef void (*loop_timer_cb)(struct loop *l, void *arg);
typedef void (*loop_signal_cb)(struct loop *l, int signo, void *arg);
/* code: the exit status, or 128 + signal number when it was killed. */
typedef void (*loop_child_cb)(struct loop *l, pid_t pid, int code, void *arg);

/* Creates a loop. Returns 0 and *out (free with loop_free), or -errno. */
int loop_new(struct loop **out);
/* Closes the loop's own fds, cancels its timers and stops watching children (their
 * pidfds are closed; the children are not signalled or reaped). Restores the signal
 * mask that was in place before the first loop_signal(). NULL is fine. */
void loop_free(struct loop *l);

/* Watches fd for events (level-triggered). One watcher per fd: -EEXIST otherwise.
 * The loop never closes fd. */
int loop_fd_add(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *arg);
/* Changes the events watched on fd. -ENOENT when fd is not watched. */
int loop_fd_mod(struct loop *l, int fd, uint32_t events);
/* Stops watching fd; safe from any callback, also for fd's own (events already
 * collected for it are dropped). Unknown fds are ignored. */
void loop_fd_del(struct loop *l, int fd);

/* Calls cb once, delay_ms from now. Returns a handle that stays valid until the
 * timer has fired (its callback is running or has returned) or is cancelled. */
struct loop_timer *loop_timer_add(struct loop *l, uint64_t delay_ms, loop_timer_cb cb, void *arg);
/* Cancels a pending timer; NULL is fine. Must not be called after it fired. */
void loop_timer_cancel(struct loop *l, struct loop_timer *t);

/* Delivers signo through the loop (signalfd): the signal is blocked for the calling
 * thread, so call this before starting any other thread (threads inherit the mask).
 * Children started by lib/spawn get an empty mask again. 0 or -errno. */
int loop_signal(struct loop *l, int signo, loop_signal_cb cb, void *arg);

/* Watches child pid (ours, not yet reaped) through a pidfd; when it exits the loop
 * reaps it and calls cb once. Returns 0 and *pidfd_out (if non-NULL: for
 * pidfd_send_signal, valid until cb returns), or -errno. */
int loop_child_add(struct loop *l, pid_t pid, loop_child_cb cb, void *arg, int *pidfd_out);
/* Stops watching pid without reaping it (closes its pidfd). */
void loop_child_del(struct loop *l, pid_t pid);

/* Dispatches events until loop_stop(). Returns 0, or -errno when epoll fails. */
int loop_run(struct loop *l);
/* Runs one round: waits at most timeout_ms (-1: until an event or timer) and
 * dispatches what arrived. Returns 0 or -errno. */
int loop_run_once(struct loop *l, int timeout_ms);
/* Makes loop_run() return after the current callback. */
void loop_stop(struct loop *l);
/* Milliseconds on the monotonic clock, as the loop's timers see it. */
uint64_t loop_now_ms(const struct loop *l);

#endif
