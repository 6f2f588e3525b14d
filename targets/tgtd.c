/* A private tgtd (see tgtd.h).
 *
 * tgtd 1.0.85 runs in the foreground with -f, takes its control socket from
 * $TGT_IPC_SOCKET (default /var/run/tgtd/socket) plus ".PORT" with -C PORT,
 * and listens on the portals given by `--iscsi portal=ADDR:PORT`. It ignores
 * SIGTERM while any target exists; `tgtadm --op delete --mode system` makes it
 * exit, but only once no target is left, hence the order of tgtd_shutdown. */
#include "targets/tgtd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>

#include "lib/log.h"
#include "lib/spawn.h"
#include "lib/util.h"
#include "targets/reconcile.h"
#include "targets/tgtshow.h"

int tgtd_argv(const struct tgt_ctl *ctl, const char *portal, const char **argv, char *bufs,
	      size_t bufs_size)
{
	size_t n = 0, half = bufs_size / 2;
	int r;

	if (bufs_size < 64)
		return -ENAMETOOLONG;
	r = fmt_buf(bufs, half, "%d", ctl->control_port);
	if (r == 0)
		r = fmt_buf(bufs + half, half, "portal=%s", portal);
	if (r < 0)
		return r;
	argv[n++] = ctl->tgtd ? ctl->tgtd : "tgtd";
	argv[n++] = "-f";
	argv[n++] = "-C";
	argv[n++] = bufs;
	argv[n++] = "--iscsi";
	argv[n++] = bufs + half;
	argv[n] = NULL;
	return 0;
}

int tgtd_env(const struct tgt_ctl *ctl, char *buf, size_t size)
{
	if (!ctl->ipc_socket)
		return fmt_buf(buf, size, "%s", "");
	return fmt_buf(buf, size, "TGT_IPC_SOCKET=%s", ctl->ipc_socket);
}

int tgtd_ready_check(struct tgt_ctl *ctl, const char *portal)
{
	const char *args[] = {"--op", "show", "--mode", "portal", NULL};
	char *out = NULL, **portals = NULL;
	size_t len = 0, n = 0;
	int r;

	r = tgtadm_try(ctl, args, &out, &len);
	if (r < 0)
		return r == -ECONNREFUSED ? r : -ECONNREFUSED;
	r = tgtshow_parse_portals(out, len, &portals, &n);
	free(out);
	if (r < 0) {
		log_error("cannot read the portal list of tgtd on control port %d",
			  ctl->control_port);
		return -EADDRINUSE;
	}
	if (n == 1 && strcmp(portals[0], portal) == 0) {
		r = 0;
	} else {
		log_error(
			"tgtd on control port %d serves %zu portal(s)%s%s%s, not '%s' (address in "
			"use?)",
			ctl->control_port, n, n ? " '" : "", n ? portals[0] : "", n ? "'..." : "",
			portal);
		r = -EADDRINUSE;
	}
	tgtshow_free_list(portals, n);
	return r;
}

int tgtd_wait_ready(struct tgt_ctl *ctl, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		if (tgtadm_ping(ctl) == 0)
			return 0;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(20000);
	}
}

int tgtd_start(struct tgt_ctl *ctl, const char *portal, int log_fd, int timeout_ms, pid_t *pidp)
{
	const char *argv[TGTD_ARGV_MAX];
	char bufs[512], line[600], *env_sock = NULL;
	const char *env[2] = {NULL, NULL};
	struct spawn_opts o = SPAWN_OPTS_INIT;
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	pid_t pid;
	int r, code;

	r = tgtd_argv(ctl, portal, argv, bufs, sizeof(bufs));
	if (r < 0)
		return r;
	spawn_argv_str(argv, line, sizeof(line));
	if (tgtadm_ping(ctl) == 0) {
		log_error("cannot start '%s': a tgtd already answers on control port %d", line,
			  ctl->control_port);
		return -EADDRINUSE;
	}
	if (ctl->ipc_socket) {
		env_sock = xasprintf("TGT_IPC_SOCKET=%s", ctl->ipc_socket);
		env[0] = env_sock;
		o.env = env;
	}
	o.stdout_fd = log_fd;
	o.stderr_fd = log_fd;
	o.new_session = 1;
	r = spawn_start(argv, &o, &pid);
	free(env_sock);
	if (r < 0) {
		log_error("cannot start '%s': %s", line, strerror(-r));
		return r;
	}
	for (;;) {
		if (spawn_wait(pid, 0, &code) == 0) {
			log_error("'%s' exited at start (status %d); see its log", line, code);
			return -ECHILD;
		}
		r = tgtd_ready_check(ctl, portal);
		if (r == 0)
			break;
		if (r == -EADDRINUSE) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return r;
		}
		if (now_ms() >= deadline) {
			log_error("'%s' did not answer within %d ms", line, timeout_ms);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return -ETIMEDOUT;
		}
		usleep(20000);
	}
	log_info("started '%s' (pid %d)", line, (int)pid);
	*pidp = pid;
	return 0;
}

int tgtd_shutdown(struct tgt_ctl *ctl, int timeout_ms)
{
	const char *sys_args[] = {"--op", "delete", "--mode", "system", NULL};
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	struct tgt_state st;
	char **accounts = NULL, tid[16];
	size_t n_accounts = 0;
	int r, failed = 0;

	r = tgt_show(ctl, &st, &accounts, &n_accounts);
	if (r < 0)
		return r;
	for (size_t i = 0; i < st.n; i++) {
		const char *args[] = {"--op",	 "delete", "--mode", "target",
				      "--force", "--tid",  tid,	     NULL};

		snprintf(tid, sizeof(tid), "%d", st.targets[i].tid);
		if (tgtadm_run(ctl, args, NULL, NULL) < 0)
			failed = 1;
	}
	for (size_t i = 0; i < n_accounts; i++) {
		const char *args[] = {"--op",	"delete",    "--mode", "account",
				      "--user", accounts[i], NULL};

		if (tgtadm_run(ctl, args, NULL, NULL) < 0)
			failed = 1;
	}
	tgt_state_release(&st);
	tgtshow_free_list(accounts, n_accounts);
	if (ctl->memo) /* the accounts are gone: forget their secrets */
		tgt_ctl_release(ctl);
	/* Deleting a target with sessions is asynchronous in tgtd (the nexus goes
	 * first); retry the system delete until it is accepted. */
	for (;;) {
		r = tgtadm_try(ctl, sys_args, NULL, NULL);
		if (r == 0 || r == -ECONNREFUSED)
			break;
		if (now_ms() >= deadline) {
			log_error("tgtd on control port %d refuses to stop (targets left?)",
				  ctl->control_port);
			return -ETIMEDOUT;
		}
		usleep(50000);
	}
	while (tgtadm_ping(ctl) == 0) {
		if (now_ms() >= deadline) {
			log_error("tgtd on control port %d still answers after delete system",
				  ctl->control_port);
			return -ETIMEDOUT;
		}
		usleep(20000);
	}
	log_info("tgtd on control port %d stopped", ctl->control_port);
	return failed ? -EIO : 0;
}
