/* Unit tests for appliance/loop (fd watchers, timers, signals, child exits) and
 * appliance/worker (forked jobs reported back on the loop). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "appliance/loop.h"
#include "appliance/worker.h"
#include "lib/spawn.h"
#include "lib/util.h"
#include "tests/tap.h"

/* Runs the loop until *flag is set or 10 s pass (a safety net, not a timing check). */
static int run_until(struct loop *l, const int *flag)
{
	uint64_t deadline = now_ms() + 10000;

	while (!*flag && now_ms() < deadline)
		loop_run_once(l, 50);
	return *flag;
}

/* ---- fd watchers ---- */

struct pipe_ctx {
	int calls;
	char got[16];
	int other_fd; /* deleted by the callback */
	struct loop *l;
};

static void pipe_read(struct loop *l, int fd, uint32_t events, void *arg)
{
	struct pipe_ctx *c = arg;
	ssize_t n = read(fd, c->got, sizeof(c->got) - 1);

	(void)l;
	(void)events;
	if (n > 0)
		c->got[n] = '\0';
	c->calls++;
}

static void test_fd(void)
{
	struct loop *l;
	struct pipe_ctx c = {0};
	int p[2];

	is_int(loop_new(&l), 0, "loop_new");
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		exit(2);
	is_int(loop_fd_add(l, p[0], EPOLLIN, pipe_read, &c), 0, "watch a pipe");
	is_int(loop_fd_add(l, p[0], EPOLLIN, pipe_read, &c), -EEXIST, "second watcher refused");
	loop_run_once(l, 0);
	is_int(c.calls, 0, "no event on an empty pipe");
	if (write(p[1], "hello", 5) != 5)
		exit(2);
	run_until(l, &c.calls);
	is_str(c.got, "hello", "callback read the bytes");
	is_int(loop_fd_mod(l, p[0], EPOLLIN), 0, "loop_fd_mod on a watched fd");
	is_int(loop_fd_mod(l, 999, EPOLLIN), -ENOENT, "loop_fd_mod on an unknown fd");
	loop_fd_del(l, p[0]);
	loop_fd_del(l, p[0]); /* twice is harmless */
	if (write(p[1], "x", 1) != 1)
		exit(2);
	c.calls = 0;
	loop_run_once(l, 20);
	is_int(c.calls, 0, "no callback after loop_fd_del");
	close(p[0]);
	close(p[1]);
	loop_free(l);
}

static int del_calls;

static void del_other(struct loop *l, int fd, uint32_t events, void *arg)
{
	struct pipe_ctx *c = arg;

	(void)fd;
	(void)events;
	del_calls++;
	loop_fd_del(l, c->other_fd);
}

/* Two fds ready in the same round; whichever runs first removes the other:
 * the collected event of the removed one must not be dispatched. */
static void test_fd_del_in_round(void)
{
	struct loop *l;
	struct pipe_ctx a = {0}, b = {0};
	int p[2], q[2];

	loop_new(&l);
	if (pipe2(p, O_NONBLOCK) < 0 || pipe2(q, O_NONBLOCK) < 0)
		exit(2);
	a.other_fd = q[0];
	b.other_fd = p[0];
	loop_fd_add(l, p[0], EPOLLIN, del_other, &a);
	loop_fd_add(l, q[0], EPOLLIN, del_other, &b);
	if (write(p[1], "1", 1) != 1 || write(q[1], "2", 1) != 1)
		exit(2);
	loop_run_once(l, 1000);
	is_int(del_calls, 1, "a watcher removed in the round is not called");
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	loop_free(l);
}

/* ---- timers ---- */

static int order[300], norder;

static void record(struct loop *l, void *arg)
{
	(void)l;
	order[norder++] = (int)(intptr_t)arg;
}

static void test_timers(void)
{
	struct loop *l;
	struct loop_timer *t;
	int done = 0;

	loop_new(&l);
	loop_timer_add(l, 30, record, (void *)3);
	loop_timer_add(l, 10, record, (void *)1);
	t = loop_timer_add(l, 15, record, (void *)9);
	loop_timer_add(l, 20, record, (void *)2);
	loop_timer_add(l, 20, record, (void *)22); /* same due: FIFO */
	loop_timer_cancel(l, t);
	loop_timer_cancel(l, NULL);
	while (norder < 4)
		loop_run_once(l, -1);
	is_int(norder, 4, "four timers fired, the cancelled one did not");
	ok(order[0] == 1 && order[1] == 2 && order[2] == 22 && order[3] == 3,
	   "timers fire by due time, ties in arming order (%d %d %d %d)", order[0], order[1],
	   order[2], order[3]);
	(void)done;
	loop_free(l);
}

/* Many timers, half cancelled at random: the rest fire in due order. */
static void test_timer_heap(void)
{
	struct loop *l;
	struct loop_timer *t[300];
	int cancelled[300] = {0}, good = 1, n_live = 0;
	uint64_t due[300];

	loop_new(&l);
	srand(7);
	norder = 0;
	for (int i = 0; i < 300; i++) {
		due[i] = (uint64_t)(rand() % 40);
		t[i] = loop_timer_add(l, due[i], record, (void *)(intptr_t)i);
	}
	for (int i = 0; i < 300; i++)
		if (rand() % 2) {
			loop_timer_cancel(l, t[i]);
			cancelled[i] = 1;
		} else {
			n_live++;
		}
	while (norder < n_live)
		loop_run_once(l, -1);
	loop_run_once(l, 60);
	is_int(norder, n_live, "every live timer fired once (%d)", n_live);
	for (int i = 0; i < norder; i++) {
		if (cancelled[order[i]])
			good = 0;
		/* arming took well under a millisecond per timer: allow the skew */
		if (i > 0 && due[order[i]] + 5 < due[order[i - 1]])
			good = 0;
	}
	ok(good, "no cancelled timer fired; order follows due times");
	loop_free(l);
}

static int rearm_count;

static void rearm(struct loop *l, void *arg)
{
	(void)arg;
	rearm_count++;
	loop_timer_add(l, 0, rearm, NULL);
}

static void test_timer_rearm(void)
{
	struct loop *l;

	loop_new(&l);
	loop_timer_add(l, 0, rearm, NULL);
	loop_run_once(l, 0);
	is_int(rearm_count, 1, "a timer re-armed with delay 0 waits for the next round");
	loop_run_once(l, 0);
	is_int(rearm_count, 2, "and fires there");
	loop_free(l);
}

static void stop_cb(struct loop *l, void *arg)
{
	(void)arg;
	loop_stop(l);
}

static void test_stop(void)
{
	struct loop *l;

	loop_new(&l);
	loop_timer_add(l, 5, stop_cb, NULL);
	is_int(loop_run(l), 0, "loop_run returns 0 after loop_stop");
	ok(loop_now_ms(l) > 0, "loop_now_ms is set");
	loop_free(l);
}

/* ---- signals ---- */

static int sig_seen[65];

static void on_sig(struct loop *l, int signo, void *arg)
{
	(void)l;
	(void)arg;
	sig_seen[signo]++;
}

static void test_signals(void)
{
	struct loop *l;

	loop_new(&l);
	is_int(loop_signal(l, SIGUSR1, on_sig, NULL), 0, "watch SIGUSR1");
	is_int(loop_signal(l, SIGHUP, on_sig, NULL), 0, "watch SIGHUP");
	is_int(loop_signal(l, 0, on_sig, NULL), -EINVAL, "signal 0 refused");
	raise(SIGUSR1);
	raise(SIGHUP);
	run_until(l, &sig_seen[SIGHUP]);
	is_int(sig_seen[SIGUSR1], 1, "SIGUSR1 delivered through the loop");
	is_int(sig_seen[SIGHUP], 1, "SIGHUP delivered through the loop");
	loop_free(l);
	/* the mask is restored: SIGUSR1 is deliverable again (ignored here) */
	signal(SIGUSR1, SIG_IGN);
	raise(SIGUSR1);
	ok(1, "loop_free restored the signal mask");
}

/* ---- children ---- */

struct child_ctx {
	int done;
	int code;
	pid_t pid;
};

static void on_child(struct loop *l, pid_t pid, int code, void *arg)
{
	struct child_ctx *c = arg;

	(void)l;
	c->done = 1;
	c->code = code;
	c->pid = pid;
}

static void test_children(void)
{
	const char *const exit7[] = {"sh", "-c", "exit 7", NULL};
	const char *const sleeper[] = {"sleep", "30", NULL};
	struct spawn_opts so = SPAWN_OPTS_INIT;
	struct child_ctx a = {0}, b = {0};
	struct loop *l;
	pid_t pid;
	int pidfd = -1;

	loop_new(&l);
	/* SIGTERM blocked in our thread, as in the daemon */
	loop_signal(l, SIGTERM, on_sig, NULL);
	is_int(spawn_start(exit7, &so, &pid), 0, "spawn sh");
	is_int(loop_child_add(l, pid, on_child, &a, NULL), 0, "watch it");
	is_int(loop_child_add(l, pid, on_child, &a, NULL), -EEXIST, "watch it twice: refused");
	run_until(l, &a.done);
	is_int(a.code, 7, "exit code delivered");
	ok(waitpid(pid, NULL, WNOHANG) < 0 && errno == ECHILD, "the loop reaped it");

	is_int(spawn_start(sleeper, &so, &pid), 0, "spawn sleep");
	loop_child_add(l, pid, on_child, &b, &pidfd);
	ok(pidfd >= 0, "pidfd returned");
	/* the child must not inherit our blocked SIGTERM */
	is_int(pidfd_send_signal(pidfd, SIGTERM, NULL, 0), 0, "SIGTERM through the pidfd");
	run_until(l, &b.done);
	is_int(b.code, 128 + SIGTERM, "child died of SIGTERM (mask not inherited)");
	is_int(b.pid, pid, "callback names the pid");

	is_int(spawn_start(sleeper, &so, &pid), 0, "spawn another sleep");
	loop_child_add(l, pid, on_child, &b, NULL);
	loop_child_del(l, pid);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ok(1, "loop_child_del leaves reaping to the caller");
	loop_free(l);
}

/* ---- forked workers ---- */

struct job_ctx {
	int in, done, result;
};

static int jobs_done;

static void job_done(int result, void *arg)
{
	struct job_ctx *j = arg;

	j->done = 1;
	j->result = result;
	jobs_done++;
}

static int fork_job(void *arg)
{
	struct job_ctx *j = arg;

	if (j->in < 0)
		pause(); /* until killed */
	return j->in == 5 ? -ENOSPC : 0;
}

static void test_worker_fork(void)
{
	struct job_ctx a = {.in = 1}, b = {.in = 5}, c = {.in = -1};
	struct worker_child *child;
	struct loop *l;
	pid_t pid;

	loop_new(&l);
	jobs_done = 0;
	is_int(worker_fork(l, fork_job, job_done, &a, NULL), 0, "fork a worker");
	worker_fork(l, fork_job, job_done, &b, NULL);
	is_int(worker_fork(l, fork_job, job_done, &c, &child), 0, "fork one that never ends");
	pid = worker_child_pid(child);
	while (jobs_done < 2)
		loop_run_once(l, 100);
	ok(a.done && a.result == 0, "success reported through the exit code");
	ok(b.done && b.result == -ENOSPC, "an errno reported through the exit code");
	worker_child_kill(child);
	while (jobs_done < 3)
		loop_run_once(l, 100);
	is_int(c.result, -EINTR, "a killed worker reports -EINTR");
	ok(kill(pid, 0) < 0 && errno == ESRCH, "and is reaped");
	loop_free(l);
}

int main(void)
{
	test_fd();
	test_fd_del_in_round();
	test_timers();
	test_timer_heap();
	test_timer_rearm();
	test_stop();
	test_signals();
	test_children();
	test_worker_fork();
	return done_testing();
}
