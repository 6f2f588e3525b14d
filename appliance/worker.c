/* Forked workers (see worker.h). The job's result travels in the child's exit
 * code: 0, or the errno value (1..127; anything else becomes EIO), so no pipe or
 * shared memory is needed. The child _exits without running atexit handlers or
 * flushing stdio buffers it inherited. Jobs that publish their output atomically
 * (temp file + rename) lose nothing but the temp file when killed. */
#include "appliance/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

struct worker_child {
	pid_t pid;
	int pidfd;
	worker_done_cb done;
	void *arg;
};

static void fork_exited(struct loop *l, pid_t pid, int code, void *arg)
{
	struct worker_child *c = arg;
	int result;

	(void)l;
	(void)pid;
	if (code == 0)
		result = 0;
	else if (code == 128 + SIGKILL)
		result = -EINTR;
	else if (code > 0 && code < 128)
		result = -code;
	else
		result = -ECHILD;
	c->done(result, c->arg);
	free(c);
}

int worker_fork(struct loop *l, worker_fn fn, worker_done_cb done, void *arg,
		struct worker_child **out)
{
	struct worker_child *c;
	pid_t pid, parent = getpid();
	int r;

	pid = fork();
	if (pid < 0) {
		r = -errno;
		log_error("cannot fork a worker: %s", strerror(-r));
		return r;
	}
	if (pid == 0) {
		/* dies with the loop's process, even when that is SIGKILLed */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(EINTR);
		r = fn(arg);
		/* exit codes carry errno values (< 128); anything else is a failure */
		_exit(r == 0 ? 0 : (-r > 0 && -r < 128 ? -r : EIO));
	}
	c = xcalloc(1, sizeof(*c));
	c->pid = pid;
	c->done = done;
	c->arg = arg;
	r = loop_child_add(l, pid, fork_exited, c, &c->pidfd);
	if (r < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		free(c);
		return r;
	}
	if (out)
		*out = c;
	return 0;
}

pid_t worker_child_pid(const struct worker_child *c)
{
	return c->pid;
}

void worker_child_kill(struct worker_child *c)
{
	pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0);
}
