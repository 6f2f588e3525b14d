/* A private tgtd: the argv that starts it (foreground, own control port or
 * socket, own portal), waiting until it answers, and the clean shutdown
 * sequence (tgtd ignores SIGTERM while targets exist). */
#ifndef GC_TARGETS_TGTD_H
#define GC_TARGETS_TGTD_H

#include <stddef.h>
#include <sys/types.h>

#include "targets/tgtadm.h"

#define TGTD_ARGV_MAX 8

/* Fills argv (TGTD_ARGV_MAX entries, NULL-terminated) with
 *   tgtd -f -C PORT --iscsi portal=PORTAL
 * portal is "ADDR:PORT" ("[v6]:PORT" for IPv6). The strings in bufs (size >=
 * 2 * 256) back the formatted arguments. Returns 0 or -ENAMETOOLONG. Run it with
 * spawn_start (env TGT_IPC_SOCKET=ctl->ipc_socket when set; new_session). */
int tgtd_argv(const struct tgt_ctl *ctl, const char *portal, const char **argv, char *bufs,
	      size_t bufs_size);

/* The environment entry a tgtd (and tgtadm) needs for ctl: "TGT_IPC_SOCKET=..."
 * into buf, or "" when ctl->ipc_socket is NULL. Returns 0 or -ENAMETOOLONG. */
int tgtd_env(const struct tgt_ctl *ctl, char *buf, size_t size);

/* Starts tgtd as a child (its stdout/stderr to log_fd, or inherited when -1)
 * and waits up to timeout_ms until it answers on the control socket and serves
 * exactly portal (tgtd_ready_check). Returns 0 and *pid; -EADDRINUSE when
 * another tgtd already answers there, or when tgtd could not bind the portal
 * (it is killed: it would have fallen back to every interface); -ETIMEDOUT
 * (the child is killed and reaped); -ECHILD when it exited at start (portal in
 * use, bad arguments: its log says why). */
int tgtd_start(struct tgt_ctl *ctl, const char *portal, int log_fd, int timeout_ms, pid_t *pid);

/* Readiness of a tgtd started for portal: 0 when it answers on the control
 * socket and listens on exactly that portal; -ECONNREFUSED while it does not
 * answer yet; -EADDRINUSE when it answers but serves other portals. tgtd that
 * cannot bind its portal (address in use) does not exit: it falls back to
 * 0.0.0.0:3260 and [::]:3260, i.e. every interface; a supervisor must treat
 * -EADDRINUSE as a failed start and kill it. */
int tgtd_ready_check(struct tgt_ctl *ctl, const char *portal);

/* Polls until tgtd answers on the control socket: 0 or -ETIMEDOUT. */
int tgtd_wait_ready(struct tgt_ctl *ctl, int timeout_ms);

/* Clean shutdown: deletes every target (--force: sessions are dropped) and
 * every account, then `--op delete --mode system`, upon which tgtd exits.
 * Waits up to timeout_ms until the control socket stops answering. Returns 0,
 * -ECONNREFUSED when no tgtd answered to begin with, -EIO or -ETIMEDOUT. The
 * caller still reaps its child (spawn_wait). */
int tgtd_shutdown(struct tgt_ctl *ctl, int timeout_ms);

#endif
