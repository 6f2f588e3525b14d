/* Talking to one tgtd: where its control socket is, and running tgtadm with an
 * argv array and a time limit (lib/spawn.h). Every call is counted, and calls
 * that change tgtd's state are counted apart, so tests and the daemon can prove
 * that a reconcile with nothing to do changed nothing. */
#ifndef GC_TARGETS_TGTADM_H
#define GC_TARGETS_TGTADM_H

#include <stddef.h>

struct tgt_memo; /* reconcile.c: fingerprints of the CHAP secrets we set */

/* How to reach one tgtd. Set the public fields after tgt_ctl_init. */
struct tgt_ctl {
	int control_port; /* tgtd/tgtadm -C N (0 is tgt's default) */
	const char *ipc_socket; /* TGT_IPC_SOCKET base path, or NULL: /var/run/tgtd/socket */
	const char *tgtadm; /* program; NULL: "tgtadm" from PATH */
	const char *tgtd; /* program; NULL: "tgtd" from PATH */
	int timeout_ms; /* per tgtadm call; 0: 10000 */
	/* Targets whose IQN starts with this prefix are managed by the reconciler
	 * (deleted when not desired); others are left alone. NULL: every target in
	 * this (private) tgtd is managed. */
	const char *iqn_prefix;
	/* File keeping salted fingerprints of the CHAP secrets set in tgtd (tgtd
	 * cannot show them), so that a restarted goldcached knows which accounts are
	 * current. NULL: remembered in memory only (a new process resets each
	 * account once). */
	const char *state_path;

	/* private */
	struct tgt_memo *memo;
	unsigned long n_calls; /* tgtadm runs */
	unsigned long n_changes; /* runs of changing operations (not --op show) */
};

void tgt_ctl_init(struct tgt_ctl *ctl);
/* Frees what the reconciler cached in ctl (not the strings set by the caller). */
void tgt_ctl_release(struct tgt_ctl *ctl);

/* Runs `tgtadm -C PORT --lld iscsi ARGS...` (args NULL-terminated). Returns 0
 * when tgtadm exited 0; -EIO when tgtd reported an error (tgtadm exits 22 for
 * all of them; its message is logged, secrets never are), -ECONNREFUSED when no
 * tgtd answers on the control socket, -ETIMEDOUT, -ENOENT (no tgtadm). When out
 * is not NULL it receives stdout (heap, NUL-terminated; caller frees) on success;
 * -E2BIG when stdout is larger than the show parser accepts. */
int tgtadm_run(struct tgt_ctl *ctl, const char *const *args, char **out, size_t *out_len);

/* Like tgtadm_run, with the failure logged only at debug level (for probes and
 * for calls whose failure the caller expects and handles). */
int tgtadm_try(struct tgt_ctl *ctl, const char *const *args, char **out, size_t *out_len);

/* Does tgtd answer on the control socket? 0 when it does. */
int tgtadm_ping(struct tgt_ctl *ctl);

#endif
