/* Supervision of one long-running child (dnsmasq, tgtd) inside the event loop:
 * start it with its stdout and stderr forwarded line by line into our log, find
 * out when it is ready, restart it with exponential backoff when it dies, and stop
 * it (SIGTERM, then SIGKILL after a grace period) on shutdown. Only the process we
 * started is ever signalled, through its pidfd. */
#ifndef GC_APPLIANCE_SUPERVISE_H
#define GC_APPLIANCE_SUPERVISE_H

#include <stdint.h>
#include <sys/types.h>

#include "appliance/loop.h"

struct supervisor;

enum supervise_state {
	SV_STOPPED, /* not running, no restart pending */
	SV_STARTING, /* running, readiness probe not yet answered */
	SV_RUNNING, /* running and ready */
	SV_BACKOFF, /* died; restart timer pending */
	SV_STOPPING, /* stop signal sent; waiting for the exit */
};

struct supervise_opts {
	const char *name; /* log prefix and messages ("tgtd") */
	const char *const *argv; /* NULL-terminated; copied */
	const char *const *env; /* extra NAME=VALUE entries or NULL; copied */
	uint64_t backoff_min_ms; /* first restart delay (0: 500) */
	uint64_t backoff_max_ms; /* cap of the doubling delay (0: 30000) */
	uint64_t stable_ms; /* a run this long resets the backoff (0: 60000) */
	uint64_t grace_ms; /* stop: SIGTERM, then SIGKILL after this (0: 5000) */
	uint64_t ready_interval_ms; /* probe period (0: 100) */
	uint64_t ready_timeout_ms; /* not ready by then: killed and restarted (0: never) */
	int death_signal; /* the child gets it when we die, even by SIGKILL (0: SIGKILL) */
	/* Readiness probe, called every ready_interval_ms while SV_STARTING: returns 0
	 * when ready, anything else for "not yet". NULL: ready as soon as started. */
	int (*ready)(struct supervisor *sv, void *arg);
	/* Called each time the child becomes ready (first start and every restart). */
	void (*on_ready)(struct supervisor *sv, void *arg);
	/* Called each time the child exits on its own (not on supervise_stop). */
	void (*on_exit)(struct supervisor *sv, int code, void *arg);
	void *arg;
};

typedef void (*supervise_done_cb)(struct supervisor *sv, void *arg);

/* Creates a supervisor (nothing started yet). Free with supervise_free. */
struct supervisor *supervise_new(struct loop *l, const struct supervise_opts *o);
/* Kills (SIGKILL) a child still running, without waiting, and frees. NULL is fine.
 * For error paths; a clean shutdown calls supervise_stop first. */
void supervise_free(struct supervisor *sv);

/* Starts the child. 0, or -errno when it could not be started (then it is retried
 * with backoff, as after a crash, and the error is logged). */
int supervise_start(struct supervisor *sv);
/* Stops the child: SIGTERM, SIGKILL after grace_ms; cancels a pending restart.
 * done (may be NULL) runs once the child is gone, possibly before this returns
 * (when nothing was running). */
void supervise_stop(struct supervisor *sv, supervise_done_cb done, void *arg);
/* Stops the running child (as supervise_stop) and starts it again at once, with
 * no backoff (e.g. after its config changed); starts it when none runs. */
void supervise_restart(struct supervisor *sv);
/* Sends sig to the running child (e.g. SIGHUP). 0, -ESRCH when not running. */
int supervise_signal(struct supervisor *sv, int sig);
/* Replaces argv and env for the next start (the running child is left alone). */
void supervise_set_argv(struct supervisor *sv, const char *const *argv, const char *const *env);

enum supervise_state supervise_state(const struct supervisor *sv);
/* The child's pid, or 0 when none is running. */
pid_t supervise_pid(const struct supervisor *sv);
/* How many times the child was started (1 after the first start). */
unsigned supervise_starts(const struct supervisor *sv);
/* The delay of the last restart scheduled after a crash (0 before any). */
uint64_t supervise_backoff_ms(const struct supervisor *sv);
const char *supervise_name(const struct supervisor *sv);
const char *supervise_state_name(enum supervise_state s);

#endif
