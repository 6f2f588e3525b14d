/* Child processes by argv (see spawn.h).
 *
 * fork + execvp with a CLOEXEC status pipe: the child writes its exec errno
 * there, so "could not start" is told apart from "ran and failed". Captured
 * output is read with poll() against a deadline; a child past its limit gets
 * SIGKILL (to its process group when it leads one) and is reaped, never left
 * as a zombie. */
#include "lib/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

static int decode_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 255;
}

static void child_exec(const char *const argv[], const struct spawn_opts *o, int in, int out,
		       int err, int status_fd, pid_t parent)
{
	sigset_t none;
	int e;

	/* the daemon blocks the signals its loop reads through a signalfd; an exec'd
	 * program must not inherit that mask (tgtd would never see SIGTERM) */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (o->death_signal) {
		prctl(PR_SET_PDEATHSIG, o->death_signal);
		if (getppid() != parent) /* the parent died before prctl took hold */
			_exit(127);
	}
	if (o->new_session)
		setsid();
	else
		setpgid(0, 0);
	if (in >= 0 && dup2(in, 0) < 0)
		goto fail;
	if (out >= 0 && dup2(out, 1) < 0)
		goto fail;
	if (err >= 0 && dup2(err, 2) < 0)
		goto fail;
	for (const char *const *e2 = o->env; e2 && *e2; e2++)
		putenv((char *)*e2);
	signal(SIGPIPE, SIG_DFL);
	execvp(argv[0], (char *const *)argv);
fail:
	e = errno;
	if (write(status_fd, &e, sizeof(e)) < 0) {
		/* parent sees EOF and reports a generic failure */
	}
	_exit(127);
}

static int start(const char *const argv[], const struct spawn_opts *o, int out_pipe[2],
		 int err_pipe[2], pid_t *pidp)
{
	int sp[2], devnull = -1, in, out, err, e = 0, r;
	pid_t pid, parent;
	ssize_t n;

	if (pipe2(sp, O_CLOEXEC) < 0)
		return -errno;
	in = o->stdin_fd;
	if (in < 0) {
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		in = devnull;
	}
	out = out_pipe ? out_pipe[1] : o->stdout_fd;
	err = err_pipe ? err_pipe[1] : o->stderr_fd;
	parent = getpid();
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(sp[0]);
		close(sp[1]);
		if (devnull >= 0)
			close(devnull);
		return r;
	}
	if (pid == 0) {
		close(sp[0]);
		child_exec(argv, o, in, out, err, sp[1], parent);
	}
	close(sp[1]);
	if (devnull >= 0)
		close(devnull);
	do
		n = read(sp[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(sp[0]);
	if (n == (ssize_t)sizeof(e)) {
		waitpid(pid, NULL, 0);
		return -e;
	}
	*pidp = pid;
	return 0;
}

int spawn_start(const char *const argv[], const struct spawn_opts *o, pid_t *pid)
{
	return start(argv, o, NULL, NULL, pid);
}

int spawn_wait(pid_t pid, int timeout_ms, int *code)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	useconds_t nap = 100;
	int st = 0;

	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid) {
			if (code)
				*code = decode_status(st);
			return 0;
		}
		if (w < 0 && errno != EINTR)
			return -errno;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		/* short commands (tgtadm: ~2 ms) exit right after closing their
		 * output: poll fast first, then back off to 5 ms */
		usleep(nap);
		nap = nap < 5000 ? nap * 2 : 5000;
	}
}

struct capture {
	int fd;
	char *buf;
	size_t len, cap, max;
};

static void capture_read(struct capture *c)
{
	char tmp[8192];
	ssize_t n = read(c->fd, tmp, sizeof(tmp));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close(c->fd);
		c->fd = -1;
		return;
	}
	if (c->len < c->max) {
		size_t k = MIN((size_t)n, c->max - c->len);

		xgrow((void **)&c->buf, &c->cap, c->len + k + 1, 1);
		memcpy(c->buf + c->len, tmp, k);
		c->len += k;
		c->buf[c->len] = '\0';
	}
}

int spawn_run(const char *const argv[], const struct spawn_opts *o, int *code)
{
	struct capture cap[2] = {{.fd = -1}, {.fd = -1}};
	int op[2] = {-1, -1}, ep[2] = {-1, -1}, r, st = 0;
	uint64_t deadline = o->timeout_ms ? now_ms() + (uint64_t)o->timeout_ms : 0;
	pid_t pid = -1;
	char line[512];

	if ((o->out && pipe2(op, O_CLOEXEC) < 0) || (o->err && pipe2(ep, O_CLOEXEC) < 0)) {
		r = -errno;
		goto out_pipes;
	}
	r = start(argv, o, o->out ? op : NULL, o->err ? ep : NULL, &pid);
	if (op[1] >= 0)
		close(op[1]);
	if (ep[1] >= 0)
		close(ep[1]);
	op[1] = ep[1] = -1;
	if (r < 0) {
		spawn_argv_str(argv, line, sizeof(line));
		log_debug("cannot run '%s': %s", line, strerror(-r));
		goto out_pipes;
	}
	cap[0] = (struct capture){.fd = op[0], .max = o->out_max};
	cap[1] = (struct capture){.fd = ep[0], .max = o->out_max};
	op[0] = ep[0] = -1;
	while (cap[0].fd >= 0 || cap[1].fd >= 0) {
		struct pollfd pfd[2];
		int nfd = 0, wait = -1;

		for (int i = 0; i < 2; i++)
			if (cap[i].fd >= 0)
				pfd[nfd++] = (struct pollfd){.fd = cap[i].fd, .events = POLLIN};
		if (deadline) {
			uint64_t now = now_ms();

			if (now >= deadline)
				break;
			wait = (int)(deadline - now);
		}
		if (poll(pfd, (nfds_t)nfd, wait) < 0 && errno != EINTR)
			break;
		for (int i = 0, k = 0; i < 2; i++) {
			if (cap[i].fd < 0)
				continue;
			if (pfd[k++].revents)
				capture_read(&cap[i]);
		}
	}
	r = spawn_wait(pid,
		       deadline ? (int)(deadline > now_ms() ? deadline - now_ms() : 0) : 1 << 30,
		       &st);
	if (r == -ETIMEDOUT) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		spawn_argv_str(argv, line, sizeof(line));
		log_warn("'%s' killed after %d ms", line, o->timeout_ms);
	} else if (r == 0 && code) {
		*code = st;
	}
	for (int i = 0; i < 2; i++)
		if (cap[i].fd >= 0)
			close(cap[i].fd);
	if (o->out) {
		*o->out = cap[0].buf ? cap[0].buf : xstrdup("");
		if (o->out_len)
			*o->out_len = cap[0].len;
	} else {
		free(cap[0].buf);
	}
	if (o->err)
		*o->err = cap[1].buf ? cap[1].buf : xstrdup("");
	else
		free(cap[1].buf);
	return r;
out_pipes:
	for (int i = 0; i < 2; i++) {
		if (op[i] >= 0)
			close(op[i]);
		if (ep[i] >= 0)
			close(ep[i]);
	}
	return r;
}

void spawn_argv_str(const char *const argv[], char *buf, size_t size)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; argv[i] && n + 1 < size; i++) {
		/* the value after --password (tgtadm's CHAP secret) never reaches a log */
		int secret = i > 0 && strcmp(argv[i - 1], "--password") == 0;
		int k = snprintf(buf + n, size - n, "%s%s", i ? " " : "", secret ? "***" : argv[i]);

		if (k < 0)
			break;
		n += (size_t)k;
	}
}
