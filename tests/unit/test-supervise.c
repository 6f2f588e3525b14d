/* Unit tests for appliance/supervise with real child processes (sh, sleep):
 * output forwarding, restart with backoff after kill -9, readiness probe and its
 * time limit, stop with SIGTERM and with SIGKILL after the grace period. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "appliance/loop.h"
#include "appliance/supervise.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"
#include "tests/tap.h"

static char logpath[4200];
static char *dir;

/* Runs the loop until cond(arg) holds or 10 s pass (a safety net only). */
static int run_until(struct loop *l, int (*cond)(void *), void *arg)
{
	uint64_t deadline = now_ms() + 10000;

	while (!cond(arg) && now_ms() < deadline)
		loop_run_once(l, 50);
	return cond(arg);
}

static int is_running(void *arg)
{
	return supervise_state(arg) == SV_RUNNING;
}

static int is_stopped(void *arg)
{
	return supervise_state(arg) == SV_STOPPED;
}

static char *log_text(void)
{
	char *s = NULL;
	size_t n;

	if (io_read_file(logpath, 1 << 20, &s, &n) < 0)
		return xstrdup("");
	return s;
}

struct grep {
	const char *needle;
};

static int log_has(void *arg)
{
	struct grep *g = arg;
	char *s = log_text();
	int r = strstr(s, g->needle) != NULL;

	free(s);
	return r;
}

static int pid_alive(pid_t pid)
{
	return kill(pid, 0) == 0;
}

static void test_output_and_restart(struct loop *l)
{
	const char *const argv[] = {"sh", "-c", "echo hello out; echo hello err >&2; exec sleep 30",
				    NULL};
	struct supervise_opts o = {.name = "kid", .argv = argv, .backoff_min_ms = 20};
	struct supervisor *sv = supervise_new(l, &o);
	struct grep g;
	char want[128];
	pid_t first, second;

	is_int(supervise_state(sv), SV_STOPPED, "new supervisor is stopped");
	is_int(supervise_start(sv), 0, "start");
	is_int(supervise_start(sv), -EALREADY, "second start refused");
	first = supervise_pid(sv);
	ok(first > 0 && supervise_state(sv) == SV_RUNNING, "running without a probe");
	snprintf(want, sizeof(want), "kid[%d]: hello err", (int)first);
	g.needle = want;
	ok(run_until(l, log_has, &g), "stderr line forwarded with name and pid");
	snprintf(want, sizeof(want), "kid[%d]: hello out", (int)first);
	ok(log_has(&g), "stdout line forwarded");

	kill(first, SIGKILL);
	g.needle = "exited with code 137";
	ok(run_until(l, log_has, &g), "kill -9 noticed and logged");
	is_int(supervise_backoff_ms(sv), 20, "first restart waits backoff_min");
	ok(run_until(l, is_running, sv), "restarted");
	second = supervise_pid(sv);
	ok(second > 0 && second != first, "new pid %d (was %d)", (int)second, (int)first);
	is_int(supervise_starts(sv), 2, "two starts counted");
	ok(!pid_alive(first), "old child gone");

	supervise_stop(sv, NULL, NULL);
	is_int(supervise_state(sv), SV_STOPPING, "stopping");
	ok(run_until(l, is_stopped, sv), "stopped by SIGTERM");
	ok(!pid_alive(second), "child gone after stop");
	supervise_free(sv);
}

struct exits {
	int n;
	uint64_t at[8];
	uint64_t delay[8];
	struct supervisor *sv;
};

static void on_exit_rec(struct supervisor *sv, int code, void *arg)
{
	struct exits *e = arg;

	(void)code;
	if (e->n < 8) {
		e->at[e->n] = now_ms();
		e->delay[e->n] = supervise_backoff_ms(sv);
	}
	e->n++;
}

static int five_exits(void *arg)
{
	return ((struct exits *)arg)->n >= 5;
}

static void test_backoff(struct loop *l)
{
	const char *const argv[] = {"sh", "-c", "exit 3", NULL};
	struct exits e = {0};
	struct supervise_opts o = {.name = "crashy",
				   .argv = argv,
				   .backoff_min_ms = 10,
				   .backoff_max_ms = 40,
				   .on_exit = on_exit_rec,
				   .arg = &e};
	struct supervisor *sv = supervise_new(l, &o);
	int good = 1;

	supervise_start(sv);
	ok(run_until(l, five_exits, &e), "a crashing child is restarted again and again");
	ok(e.delay[0] == 10 && e.delay[1] == 20 && e.delay[2] == 40 && e.delay[3] == 40 &&
		   e.delay[4] == 40,
	   "delays double up to the cap: %llu %llu %llu %llu %llu", (unsigned long long)e.delay[0],
	   (unsigned long long)e.delay[1], (unsigned long long)e.delay[2],
	   (unsigned long long)e.delay[3], (unsigned long long)e.delay[4]);
	/* timers never fire early: each gap is at least the delay before it */
	for (int i = 1; i < 5; i++)
		if (e.at[i] - e.at[i - 1] < e.delay[i - 1])
			good = 0;
	ok(good, "no restart came before its backoff delay");
	supervise_stop(sv, NULL, NULL);
	is_int(supervise_state(sv), SV_STOPPED, "stop during backoff is immediate");
	supervise_free(sv);
}

static void test_stable_reset(struct loop *l)
{
	const char *const argv[] = {"sh", "-c", "sleep 0.1", NULL};
	struct exits e = {0};
	struct supervise_opts o = {.name = "steady",
				   .argv = argv,
				   .backoff_min_ms = 10,
				   .stable_ms = 50,
				   .on_exit = on_exit_rec,
				   .arg = &e};
	struct supervisor *sv = supervise_new(l, &o);

	supervise_start(sv);
	ok(run_until(l, five_exits, &e), "five runs");
	ok(e.delay[0] == 10 && e.delay[2] == 10 && e.delay[4] == 10,
	   "a run longer than stable_ms resets the backoff (%llu %llu %llu)",
	   (unsigned long long)e.delay[0], (unsigned long long)e.delay[2],
	   (unsigned long long)e.delay[4]);
	supervise_stop(sv, NULL, NULL);
	run_until(l, is_stopped, sv);
	supervise_free(sv);
}

struct ready_ctx {
	const char *flag;
	int probes, readies;
};

static int probe_file(struct supervisor *sv, void *arg)
{
	struct ready_ctx *r = arg;

	(void)sv;
	r->probes++;
	return access(r->flag, F_OK) == 0 ? 0 : -EAGAIN;
}

static void on_ready(struct supervisor *sv, void *arg)
{
	struct ready_ctx *r = arg;

	(void)sv;
	r->readies++;
}

static void test_ready(struct loop *l)
{
	char *flag = xasprintf("%s/ready", dir);
	char *script = xasprintf("sleep 0.2; touch '%s'; exec sleep 30", flag);
	const char *const argv[] = {"sh", "-c", script, NULL};
	struct ready_ctx r = {.flag = flag};
	struct supervise_opts o = {.name = "slow",
				   .argv = argv,
				   .ready = probe_file,
				   .on_ready = on_ready,
				   .ready_interval_ms = 20,
				   .arg = &r};
	struct supervisor *sv = supervise_new(l, &o);

	supervise_start(sv);
	is_int(supervise_state(sv), SV_STARTING, "starting until the probe answers");
	ok(run_until(l, is_running, sv), "running once ready");
	ok(access(flag, F_OK) == 0, "the probe saw the child's readiness");
	ok(r.probes >= 2, "probed repeatedly (%d)", r.probes);
	is_int(r.readies, 1, "on_ready called once");
	supervise_stop(sv, NULL, NULL);
	run_until(l, is_stopped, sv);
	supervise_free(sv);
	free(script);
	free(flag);
}

static int never(struct supervisor *sv, void *arg)
{
	(void)sv;
	(void)arg;
	return -EAGAIN;
}

static int two_starts(void *arg)
{
	return supervise_starts(arg) >= 2;
}

static void test_ready_timeout(struct loop *l)
{
	const char *const argv[] = {"sleep", "30", NULL};
	struct supervise_opts o = {.name = "mute",
				   .argv = argv,
				   .ready = never,
				   .ready_interval_ms = 10,
				   .ready_timeout_ms = 100,
				   .backoff_min_ms = 10};
	struct supervisor *sv = supervise_new(l, &o);
	struct grep g = {"not ready after 100 ms"};

	supervise_start(sv);
	ok(run_until(l, two_starts, sv), "never ready: killed and started again");
	ok(log_has(&g), "the time limit is logged");
	supervise_stop(sv, NULL, NULL);
	run_until(l, is_stopped, sv);
	supervise_free(sv);
}

static int stop_done;

static void on_stopped(struct supervisor *sv, void *arg)
{
	(void)sv;
	(void)arg;
	stop_done++;
}

static void test_stop_kill(struct loop *l)
{
	const char *const argv[] = {"sh", "-c", "trap '' TERM; exec sleep 30", NULL};
	struct supervise_opts o = {.name = "stubborn", .argv = argv, .grace_ms = 100};
	struct supervisor *sv = supervise_new(l, &o);
	struct grep g = {"sending SIGKILL"};
	pid_t pid;

	supervise_start(sv);
	pid = supervise_pid(sv);
	usleep(100000); /* let sh install the trap before exec */
	supervise_stop(sv, on_stopped, NULL);
	ok(run_until(l, is_stopped, sv), "a child ignoring SIGTERM is stopped");
	ok(log_has(&g), "by SIGKILL after the grace period");
	is_int(stop_done, 1, "done callback once");
	ok(!pid_alive(pid), "child gone");
	supervise_free(sv);
}

static void test_start_fails(struct loop *l)
{
	const char *const argv[] = {"/nonexistent/goldcache-test-binary", NULL};
	struct supervise_opts o = {.name = "ghost", .argv = argv, .backoff_min_ms = 10};
	struct supervisor *sv = supervise_new(l, &o);
	struct grep g = {"cannot start ghost"};

	is_int(supervise_start(sv), -ENOENT, "a missing program: -ENOENT");
	is_int(supervise_state(sv), SV_BACKOFF, "and a retry is scheduled");
	ok(log_has(&g), "the failure is logged with the name");
	stop_done = 0;
	supervise_stop(sv, on_stopped, NULL);
	is_int(supervise_state(sv), SV_STOPPED, "stop cancels the retry");
	is_int(stop_done, 1, "done called at once");
	supervise_free(sv);
}

static int restarted(void *arg)
{
	return supervise_starts(arg) >= 2 && supervise_state(arg) == SV_RUNNING;
}

static void test_restart(struct loop *l)
{
	const char *const argv[] = {"sleep", "30", NULL};
	struct supervise_opts o = {.name = "again", .argv = argv, .backoff_min_ms = 5000};
	struct supervisor *sv = supervise_new(l, &o);
	pid_t first;

	supervise_start(sv);
	first = supervise_pid(sv);
	supervise_restart(sv);
	is_int(supervise_state(sv), SV_STOPPING, "restart stops the child first");
	ok(run_until(l, restarted, sv), "then starts it again");
	ok(supervise_pid(sv) != first && !pid_alive(first), "a new process replaced the old");
	is_int(supervise_backoff_ms(sv), 0, "no backoff delay for a restart");
	supervise_stop(sv, NULL, NULL);
	run_until(l, is_stopped, sv);
	supervise_free(sv);
}

static void test_free_running(struct loop *l)
{
	const char *const argv[] = {"sleep", "30", NULL};
	struct supervise_opts o = {.name = "orphan", .argv = argv};
	struct supervisor *sv = supervise_new(l, &o);
	pid_t pid;

	supervise_start(sv);
	pid = supervise_pid(sv);
	is_int(supervise_signal(sv, 0), 0, "supervise_signal reaches the child");
	supervise_free(sv);
	ok(!pid_alive(pid), "supervise_free kills and reaps a running child");
}

/* Has pid exited (gone, or a zombie its new parent did not reap yet)? */
static int exited(pid_t pid)
{
	char path[64], stat[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	n = read(fd, stat, sizeof(stat) - 1); /* /proc files report no size */
	close(fd);
	if (n <= 0)
		return 1;
	stat[n] = '\0';
	p = strrchr(stat, ')');
	return p && p[1] == ' ' && p[2] == 'Z';
}

/* A supervisor's child must not outlive its supervisor killed with SIGKILL. */
static void test_parent_death(void)
{
	const char *const argv[] = {"sleep", "30", NULL};
	int p[2];
	pid_t helper, kid = 0;
	uint64_t deadline;

	if (pipe(p) < 0)
		exit(2);
	helper = fork();
	if (helper == 0) {
		struct supervise_opts o = {.name = "kid", .argv = argv};
		struct loop *l;
		struct supervisor *sv;

		loop_new(&l);
		sv = supervise_new(l, &o);
		supervise_start(sv);
		kid = supervise_pid(sv);
		if (write(p[1], &kid, sizeof(kid)) != sizeof(kid))
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	if (read(p[0], &kid, sizeof(kid)) != sizeof(kid))
		kid = 0;
	close(p[0]);
	ok(kid > 0 && !exited(kid), "a supervisor in another process started a child (%d)",
	   (int)kid);
	kill(helper, SIGKILL);
	waitpid(helper, NULL, 0);
	deadline = now_ms() + 10000;
	while (kid > 0 && !exited(kid) && now_ms() < deadline)
		usleep(10000);
	ok(kid > 0 && exited(kid), "the supervisor killed with SIGKILL: its child is gone too");
}

int main(void)
{
	struct loop *l;
	int fd;

	dir = tap_tmpdir();
	snprintf(logpath, sizeof(logpath), "%s/log", dir);
	fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return 2;
	log_init("test", LOG_INFO);
	log_set_fd(fd);
	if (loop_new(&l) < 0)
		return 2;
	test_output_and_restart(l);
	test_backoff(l);
	test_stable_reset(l);
	test_ready(l);
	test_ready_timeout(l);
	test_stop_kill(l);
	test_start_fails(l);
	test_restart(l);
	test_free_running(l);
	test_parent_death();
	loop_free(l);
	close(fd);
	tap_rmtree(dir);
	return done_testing();
}
