/* Child supervision (see supervise.h), after daemontools/runit and systemd's
 * Restart=: a small state machine per child, driven entirely by loop events.
 *
 *   STOPPED --start--> STARTING --probe ok--> RUNNING
 *   STARTING/RUNNING --exit--> BACKOFF --timer--> STARTING
 *   STARTING/RUNNING --stop--> STOPPING --exit--> STOPPED
 *
 * - Backoff: the first restart waits backoff_min; each further crash within
 *   stable_ms of its start doubles the delay up to backoff_max; a run that lasted
 *   stable_ms resets it. A crash loop thus costs little and a rare crash restarts fast.
 * - Output: the child's stdout and stderr share one pipe read by the loop; each
 *   line goes to our log as "NAME[PID]: line" (lines longer than the buffer are
 *   split). What is still in the pipe when the child exits is drained first.
 * - Signals go through the child's pidfd, which stays valid until we reap it, so
 *   a recycled pid can never be hit. Children get their own session, so a ^C meant
 *   for goldcached reaches them only through our shutdown order; and a parent-death
 *   signal, so that none outlives a goldcached killed with SIGKILL (an orphaned
 *   dnsmasq would go on answering DHCP beside the next goldcached's).
 */
#include "appliance/supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/spawn.h"
#include "lib/util.h"

#define SV_LINE_MAX 4096

struct supervisor {
	struct loop *loop;
	struct supervise_opts o;
	char *name;
	char **argv;
	char **env;
	enum supervise_state state;
	pid_t pid;
	int pidfd;
	int out_fd; /* read end of the child's stdout+stderr pipe */
	char line[SV_LINE_MAX];
	size_t line_len;
	struct loop_timer *timer; /* restart, readiness probe or kill, by state */
	uint64_t started_ms;
	uint64_t delay_ms; /* next backoff delay */
	uint64_t last_delay_ms; /* the one scheduled last */
	unsigned starts;
	supervise_done_cb done;
	void *done_arg;
	int restart; /* start again once the stop completes */
};

static char **strv_dup(const char *const *v)
{
	size_t n = 0;
	char **out;

	if (!v)
		return NULL;
	while (v[n])
		n++;
	out = xcalloc(n + 1, sizeof(*out));
	for (size_t i = 0; i < n; i++)
		out[i] = xstrdup(v[i]);
	return out;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

const char *supervise_state_name(enum supervise_state s)
{
	static const char *const names[] = {"stopped", "starting", "running", "backoff",
					    "stopping"};

	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "?";
}

struct supervisor *supervise_new(struct loop *l, const struct supervise_opts *o)
{
	struct supervisor *sv = xcalloc(1, sizeof(*sv));

	sv->loop = l;
	sv->o = *o;
	sv->name = xstrdup(o->name);
	sv->o.name = sv->name;
	sv->argv = strv_dup(o->argv);
	sv->env = strv_dup(o->env);
	sv->o.argv = NULL;
	sv->o.env = NULL;
	if (!sv->o.backoff_min_ms)
		sv->o.backoff_min_ms = 500;
	if (!sv->o.backoff_max_ms)
		sv->o.backoff_max_ms = 30000;
	if (!sv->o.stable_ms)
		sv->o.stable_ms = 60000;
	if (!sv->o.grace_ms)
		sv->o.grace_ms = 5000;
	if (!sv->o.ready_interval_ms)
		sv->o.ready_interval_ms = 100;
	sv->delay_ms = sv->o.backoff_min_ms;
	sv->pidfd = -1;
	sv->out_fd = -1;
	return sv;
}

void supervise_set_argv(struct supervisor *sv, const char *const *argv, const char *const *env)
{
	strv_free(sv->argv);
	strv_free(sv->env);
	sv->argv = strv_dup(argv);
	sv->env = strv_dup(env);
}

/* ---- output forwarding ---- */

static void line_emit(struct supervisor *sv)
{
	if (sv->line_len == 0)
		return;
	log_info("%s[%d]: %.*s", sv->name, (int)sv->pid, (int)sv->line_len, sv->line);
	sv->line_len = 0;
}

static void out_close(struct supervisor *sv)
{
	if (sv->out_fd < 0)
		return;
	line_emit(sv);
	loop_fd_del(sv->loop, sv->out_fd);
	close(sv->out_fd);
	sv->out_fd = -1;
}

/* Reads what the pipe holds now; closes it at end of file. */
static void out_drain(struct supervisor *sv)
{
	char buf[4096];

	while (sv->out_fd >= 0) {
		ssize_t n = read(sv->out_fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			out_close(sv);
			return;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				line_emit(sv);
				continue;
			}
			if (buf[i] == '\r')
				continue;
			if (sv->line_len == sizeof(sv->line))
				line_emit(sv);
			sv->line[sv->line_len++] = buf[i];
		}
	}
}

static void out_readable(struct loop *l, int fd, uint32_t events, void *arg)
{
	(void)l;
	(void)fd;
	(void)events;
	out_drain(arg);
}

/* ---- state machine ---- */

static void timer_clear(struct supervisor *sv)
{
	loop_timer_cancel(sv->loop, sv->timer);
	sv->timer = NULL;
}

static void restart_due(struct loop *l, void *arg);
static void child_exited(struct loop *l, pid_t pid, int code, void *arg);

static void schedule_restart(struct supervisor *sv)
{
	sv->state = SV_BACKOFF;
	sv->last_delay_ms = sv->delay_ms;
	sv->timer = loop_timer_add(sv->loop, sv->delay_ms, restart_due, sv);
	sv->delay_ms = MIN(sv->delay_ms * 2, sv->o.backoff_max_ms);
}

static void become_ready(struct supervisor *sv)
{
	sv->state = SV_RUNNING;
	log_info("%s[%d] is ready", sv->name, (int)sv->pid);
	if (sv->o.on_ready)
		sv->o.on_ready(sv, sv->o.arg);
}

static void kill_now(struct loop *l, void *arg)
{
	struct supervisor *sv = arg;

	(void)l;
	sv->timer = NULL;
	if (sv->pidfd < 0)
		return;
	log_warn("%s[%d] still running after %llu ms: sending SIGKILL", sv->name, (int)sv->pid,
		 (unsigned long long)sv->o.grace_ms);
	pidfd_send_signal(sv->pidfd, SIGKILL, NULL, 0);
}

static void probe_due(struct loop *l, void *arg)
{
	struct supervisor *sv = arg;

	(void)l;
	sv->timer = NULL;
	if (sv->state != SV_STARTING)
		return;
	if (sv->o.ready(sv, sv->o.arg) == 0) {
		/* on_ready may stop us; become_ready is the last thing done here */
		become_ready(sv);
		return;
	}
	if (sv->o.ready_timeout_ms && now_ms() - sv->started_ms >= sv->o.ready_timeout_ms) {
		log_error("%s[%d] not ready after %llu ms: killing it", sv->name, (int)sv->pid,
			  (unsigned long long)sv->o.ready_timeout_ms);
		pidfd_send_signal(sv->pidfd, SIGKILL, NULL, 0);
		return; /* the exit restarts it with backoff */
	}
	sv->timer = loop_timer_add(sv->loop, sv->o.ready_interval_ms, probe_due, sv);
}

int supervise_start(struct supervisor *sv)
{
	struct spawn_opts so = SPAWN_OPTS_INIT;
	int p[2], r;
	pid_t pid;
	char cmd[512];

	if (sv->state == SV_STARTING || sv->state == SV_RUNNING || sv->state == SV_STOPPING)
		return -EALREADY;
	timer_clear(sv);
	out_close(sv);
	spawn_argv_str((const char *const *)sv->argv, cmd, sizeof(cmd));
	if (pipe2(p, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	so.stdout_fd = p[1];
	so.stderr_fd = p[1];
	so.env = (const char *const *)sv->env;
	so.new_session = 1;
	so.death_signal = sv->o.death_signal ? sv->o.death_signal : SIGKILL;
	r = spawn_start((const char *const *)sv->argv, &so, &pid);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		goto fail;
	}
	sv->pid = pid;
	sv->starts++;
	sv->started_ms = now_ms();
	r = loop_child_add(sv->loop, pid, child_exited, sv, &sv->pidfd);
	if (r < 0) {
		/* cannot supervise it: do not leave it running unsupervised */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(p[0]);
		sv->pid = 0;
		goto fail;
	}
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	sv->out_fd = p[0];
	if (loop_fd_add(sv->loop, sv->out_fd, EPOLLIN, out_readable, sv) < 0) {
		close(sv->out_fd);
		sv->out_fd = -1;
	}
	log_info("started %s[%d]: %s", sv->name, (int)pid, cmd);
	sv->state = SV_STARTING;
	if (!sv->o.ready)
		become_ready(sv);
	else
		sv->timer = loop_timer_add(sv->loop, 0, probe_due, sv);
	return 0;
fail:
	log_error("cannot start %s ('%s'): %s; retrying in %llu ms", sv->name, cmd, strerror(-r),
		  (unsigned long long)sv->delay_ms);
	schedule_restart(sv);
	return r;
}

static void restart_due(struct loop *l, void *arg)
{
	struct supervisor *sv = arg;

	(void)l;
	sv->timer = NULL;
	if (sv->state != SV_BACKOFF)
		return;
	sv->state = SV_STOPPED;
	supervise_start(sv);
}

static void child_exited(struct loop *l, pid_t pid, int code, void *arg)
{
	struct supervisor *sv = arg;
	uint64_t ran = now_ms() - sv->started_ms;
	enum supervise_state was = sv->state;

	(void)l;
	out_drain(sv);
	out_close(sv);
	timer_clear(sv);
	sv->pid = 0;
	sv->pidfd = -1; /* the loop closes it after this callback */
	if (was == SV_STOPPING) {
		supervise_done_cb done = sv->done;

		log_info("%s[%d] stopped (exit code %d)", sv->name, (int)pid, code);
		sv->state = SV_STOPPED;
		sv->done = NULL;
		if (sv->restart) {
			sv->restart = 0;
			supervise_start(sv);
		}
		if (done)
			done(sv, sv->done_arg);
		return;
	}
	if (ran >= sv->o.stable_ms)
		sv->delay_ms = sv->o.backoff_min_ms;
	log_error("%s[%d] exited with code %d after %llu ms; restarting in %llu ms", sv->name,
		  (int)pid, code, (unsigned long long)ran, (unsigned long long)sv->delay_ms);
	schedule_restart(sv);
	if (sv->o.on_exit)
		sv->o.on_exit(sv, code, sv->o.arg);
}

void supervise_stop(struct supervisor *sv, supervise_done_cb done, void *arg)
{
	sv->restart = 0;
	switch (sv->state) {
	case SV_STOPPED:
	case SV_BACKOFF:
		timer_clear(sv);
		sv->state = SV_STOPPED;
		if (done)
			done(sv, arg);
		return;
	case SV_STOPPING:
		sv->done = done;
		sv->done_arg = arg;
		return;
	case SV_STARTING:
	case SV_RUNNING:
		break;
	}
	timer_clear(sv);
	sv->state = SV_STOPPING;
	sv->done = done;
	sv->done_arg = arg;
	log_info("stopping %s[%d]", sv->name, (int)sv->pid);
	pidfd_send_signal(sv->pidfd, SIGTERM, NULL, 0);
	sv->timer = loop_timer_add(sv->loop, sv->o.grace_ms, kill_now, sv);
}

void supervise_restart(struct supervisor *sv)
{
	switch (sv->state) {
	case SV_STOPPED:
	case SV_BACKOFF:
		sv->state = SV_STOPPED;
		supervise_start(sv);
		return;
	case SV_STOPPING:
		sv->restart = 1;
		return;
	case SV_STARTING:
	case SV_RUNNING:
		supervise_stop(sv, NULL, NULL);
		sv->restart = 1;
		return;
	}
}

int supervise_signal(struct supervisor *sv, int sig)
{
	if (sv->pidfd < 0)
		return -ESRCH;
	if (pidfd_send_signal(sv->pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

void supervise_free(struct supervisor *sv)
{
	if (!sv)
		return;
	timer_clear(sv);
	if (sv->pidfd >= 0) {
		pid_t pid = sv->pid;

		log_warn("killing %s[%d]", sv->name, (int)pid);
		pidfd_send_signal(sv->pidfd, SIGKILL, NULL, 0);
		loop_child_del(sv->loop, pid);
		waitpid(pid, NULL, 0);
	}
	out_close(sv);
	strv_free(sv->argv);
	strv_free(sv->env);
	free(sv->name);
	free(sv);
}

enum supervise_state supervise_state(const struct supervisor *sv)
{
	return sv->state;
}

pid_t supervise_pid(const struct supervisor *sv)
{
	return sv->pid;
}

unsigned supervise_starts(const struct supervisor *sv)
{
	return sv->starts;
}

const char *supervise_name(const struct supervisor *sv)
{
	return sv->name;
}

uint64_t supervise_backoff_ms(const struct supervisor *sv)
{
	return sv->last_delay_ms;
}
