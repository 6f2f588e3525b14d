/* The event loop (see loop.h), in the spirit of redis' ae and dnsmasq's poll loop:
 * one thread, one epoll set, callbacks that never block.
 *
 * - fd watchers live in a table indexed by fd. Each registration gets a fresh
 *   generation number that travels in the epoll event (data.u64 = gen << 32 | fd),
 *   so an event collected for a watcher that was removed (and whose fd number may
 *   already be reused) within the same round is recognised as stale and dropped.
 * - timers sit in a binary min-heap ordered by (due, sequence); epoll_wait's
 *   timeout is the distance to the earliest. A round fires only timers that were
 *   armed before the round began, so a callback re-arming itself with delay 0
 *   cannot starve the fds.
 * - signals arrive through one signalfd; the loop blocks them in its thread.
 * - children are watched through pidfds (Linux >= 5.3): readable when the child
 *   exits, reaped with waitid(P_PIDFD). Since a pid is not reused before it is
 *   reaped, signalling through the pidfd can never hit a stranger.
 */
#include "appliance/loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define LOOP_MAX_EVENTS 64
#define LOOP_NSIG 65

struct watcher {
	uint32_t gen;
	uint32_t events;
	loop_fd_cb cb;
	void *arg;
};

struct loop_timer {
	uint64_t due;
	uint64_t seq;
	size_t idx; /* position in the heap */
	loop_timer_cb cb;
	void *arg;
};

struct child {
	struct child *next;
	pid_t pid;
	int pidfd;
	loop_child_cb cb;
	void *arg;
};

struct sig_handler {
	loop_signal_cb cb;
	void *arg;
};

struct loop {
	int epfd;
	int stopped;
	uint32_t next_gen;
	struct watcher **fds; /* indexed by fd */
	size_t nfds_cap;
	struct loop_timer **heap;
	size_t nheap, heap_cap;
	uint64_t next_seq;
	uint64_t now;
	int sigfd;
	sigset_t sigmask; /* signals delivered through sigfd */
	sigset_t oldmask; /* the thread's mask before the first loop_signal */
	int mask_saved;
	struct sig_handler sig[LOOP_NSIG];
	struct child *children;
};

int loop_new(struct loop **out)
{
	struct loop *l = xcalloc(1, sizeof(*l));

	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int r = -errno;

		log_error("cannot create epoll set: %s", strerror(-r));
		free(l);
		return r;
	}
	l->sigfd = -1;
	l->next_gen = 1;
	sigemptyset(&l->sigmask);
	l->now = now_ms();
	*out = l;
	return 0;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	while (l->children)
		loop_child_del(l, l->children->pid);
	for (size_t i = 0; i < l->nheap; i++)
		free(l->heap[i]);
	free(l->heap);
	for (size_t i = 0; i < l->nfds_cap; i++)
		free(l->fds[i]);
	free(l->fds);
	if (l->sigfd >= 0) {
		struct signalfd_siginfo si;

		/* swallow signals that arrived unhandled, or unblocking would act on them */
		while (read(l->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			;
		close(l->sigfd);
	}
	if (l->mask_saved)
		sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
	close(l->epfd);
	free(l);
}

/* ---- fd watchers ---- */

int loop_fd_add(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *arg)
{
	struct epoll_event ev = {.events = events};
	struct watcher *w;

	if (fd < 0)
		return -EBADF;
	if ((size_t)fd >= l->nfds_cap) {
		size_t old = l->nfds_cap;

		xgrow((void **)&l->fds, &l->nfds_cap, (size_t)fd + 1, sizeof(struct watcher *));
		memset(l->fds + old, 0, (l->nfds_cap - old) * sizeof(struct watcher *));
	}
	if (l->fds[fd])
		return -EEXIST;
	w = xcalloc(1, sizeof(*w));
	w->gen = l->next_gen++;
	if (l->next_gen == 0)
		l->next_gen = 1;
	w->events = events;
	w->cb = cb;
	w->arg = arg;
	ev.data.u64 = (uint64_t)w->gen << 32 | (uint32_t)fd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;

		log_error("cannot watch fd %d: %s", fd, strerror(-r));
		free(w);
		return r;
	}
	l->fds[fd] = w;
	return 0;
}

int loop_fd_mod(struct loop *l, int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events};
	struct watcher *w;

	if (fd < 0 || (size_t)fd >= l->nfds_cap || !l->fds[fd])
		return -ENOENT;
	w = l->fds[fd];
	ev.data.u64 = (uint64_t)w->gen << 32 | (uint32_t)fd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -errno;
	w->events = events;
	return 0;
}

void loop_fd_del(struct loop *l, int fd)
{
	if (fd < 0 || (size_t)fd >= l->nfds_cap || !l->fds[fd])
		return;
	/* fails harmlessly when fd was already closed (epoll dropped it then) */
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	free(l->fds[fd]);
	l->fds[fd] = NULL;
}

/* ---- timers: binary min-heap on (due, seq) ---- */

static int timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->idx = i;
}

static void heap_up(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!timer_before(t, l->heap[p]))
			break;
		heap_set(l, i, l->heap[p]);
		i = p;
	}
	heap_set(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= l->nheap)
			break;
		if (c + 1 < l->nheap && timer_before(l->heap[c + 1], l->heap[c]))
			c++;
		if (!timer_before(l->heap[c], t))
			break;
		heap_set(l, i, l->heap[c]);
		i = c;
	}
	heap_set(l, i, t);
}

static void heap_remove(struct loop *l, size_t i)
{
	struct loop_timer *last = l->heap[--l->nheap];

	if (i == l->nheap)
		return;
	heap_set(l, i, last);
	if (i > 0 && timer_before(last, l->heap[(i - 1) / 2]))
		heap_up(l, i);
	else
		heap_down(l, i);
}

struct loop_timer *loop_timer_add(struct loop *l, uint64_t delay_ms, loop_timer_cb cb, void *arg)
{
	struct loop_timer *t = xcalloc(1, sizeof(*t));

	t->due = now_ms() + delay_ms;
	t->seq = l->next_seq++;
	t->cb = cb;
	t->arg = arg;
	xgrow((void **)&l->heap, &l->heap_cap, l->nheap + 1, sizeof(struct loop_timer *));
	l->heap[l->nheap++] = t;
	heap_up(l, l->nheap - 1);
	return t;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	if (!t)
		return;
	heap_remove(l, t->idx);
	free(t);
}

static void timers_fire(struct loop *l)
{
	uint64_t limit = l->next_seq;

	l->now = now_ms();
	while (l->nheap > 0 && !l->stopped) {
		struct loop_timer *t = l->heap[0];

		if (t->due > l->now || t->seq >= limit)
			break;
		heap_remove(l, 0);
		t->cb(l, t->arg);
		free(t);
	}
}

static int timers_timeout(struct loop *l)
{
	uint64_t now;

	if (l->nheap == 0)
		return -1;
	now = now_ms();
	if (l->heap[0]->due <= now)
		return 0;
	return (int)MIN(l->heap[0]->due - now, (uint64_t)1 << 30);
}

/* ---- signals ---- */

static void signals_read(struct loop *l, int fd, uint32_t events, void *arg)
{
	struct signalfd_siginfo si;

	(void)events;
	(void)arg;
	for (;;) {
		ssize_t n = read(fd, &si, sizeof(si));

		if (n != (ssize_t)sizeof(si))
			return; /* EAGAIN: drained */
		if (si.ssi_signo < LOOP_NSIG && l->sig[si.ssi_signo].cb)
			l->sig[si.ssi_signo].cb(l, (int)si.ssi_signo, l->sig[si.ssi_signo].arg);
		if (l->stopped)
			return;
	}
}

int loop_signal(struct loop *l, int signo, loop_signal_cb cb, void *arg)
{
	sigset_t block;
	int fd, r;

	if (signo <= 0 || signo >= LOOP_NSIG)
		return -EINVAL;
	sigemptyset(&block);
	sigaddset(&block, signo);
	if (!l->mask_saved) {
		if (sigprocmask(SIG_BLOCK, &block, &l->oldmask) < 0)
			return -errno;
		l->mask_saved = 1;
	} else if (sigprocmask(SIG_BLOCK, &block, NULL) < 0) {
		return -errno;
	}
	sigaddset(&l->sigmask, signo);
	fd = signalfd(l->sigfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		log_error("cannot create signalfd: %s", strerror(-r));
		sigdelset(&l->sigmask, signo);
		return r;
	}
	if (l->sigfd < 0) {
		r = loop_fd_add(l, fd, EPOLLIN, signals_read, NULL);
		if (r < 0) {
			close(fd);
			return r;
		}
		l->sigfd = fd;
	}
	l->sig[signo].cb = cb;
	l->sig[signo].arg = arg;
	return 0;
}

/* ---- children ---- */

static struct child **child_find(struct loop *l, pid_t pid)
{
	struct child **pp;

	for (pp = &l->children; *pp; pp = &(*pp)->next)
		if ((*pp)->pid == pid)
			return pp;
	return NULL;
}

static void child_ready(struct loop *l, int fd, uint32_t events, void *arg)
{
	struct child *c = arg, **pp;
	siginfo_t si;
	int code;

	(void)events;
	memset(&si, 0, sizeof(si));
	if (waitid((idtype_t)P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) < 0) {
		if (errno == EINTR || errno == EAGAIN)
			return;
		/* ECHILD: somebody else reaped it; report it as gone */
		log_warn("cannot reap child %d: %s", (int)c->pid, strerror(errno));
		code = 255;
	} else if (si.si_pid == 0) {
		return; /* not exited yet */
	} else if (si.si_code == CLD_EXITED) {
		code = si.si_status;
	} else {
		code = 128 + si.si_status;
	}
	pp = child_find(l, c->pid);
	if (pp)
		*pp = c->next;
	loop_fd_del(l, fd);
	c->cb(l, c->pid, code, c->arg);
	close(c->pidfd);
	free(c);
}

int loop_child_add(struct loop *l, pid_t pid, loop_child_cb cb, void *arg, int *pidfd_out)
{
	struct child *c;
	int fd, r;

	if (child_find(l, pid))
		return -EEXIST;
	fd = pidfd_open(pid, 0);
	if (fd < 0) {
		r = -errno;
		log_error("cannot open pidfd for child %d: %s", (int)pid, strerror(-r));
		return r;
	}
	c = xcalloc(1, sizeof(*c));
	c->pid = pid;
	c->pidfd = fd;
	c->cb = cb;
	c->arg = arg;
	r = loop_fd_add(l, fd, EPOLLIN, child_ready, c);
	if (r < 0) {
		close(fd);
		free(c);
		return r;
	}
	c->next = l->children;
	l->children = c;
	if (pidfd_out)
		*pidfd_out = fd;
	return 0;
}

void loop_child_del(struct loop *l, pid_t pid)
{
	struct child **pp = child_find(l, pid), *c;

	if (!pp)
		return;
	c = *pp;
	*pp = c->next;
	loop_fd_del(l, c->pidfd);
	close(c->pidfd);
	free(c);
}

/* ---- running ---- */

int loop_run_once(struct loop *l, int timeout_ms)
{
	struct epoll_event ev[LOOP_MAX_EVENTS];
	int t = timers_timeout(l), n;

	l->stopped = 0;
	if (t < 0 || (timeout_ms >= 0 && timeout_ms < t))
		t = timeout_ms;
	n = epoll_wait(l->epfd, ev, LOOP_MAX_EVENTS, t);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		log_error("epoll_wait failed: %s", strerror(errno));
		return -errno;
	}
	l->now = now_ms();
	for (int i = 0; i < n && !l->stopped; i++) {
		int fd = (int)(uint32_t)ev[i].data.u64;
		uint32_t gen = (uint32_t)(ev[i].data.u64 >> 32);
		struct watcher *w;

		if ((size_t)fd >= l->nfds_cap || !(w = l->fds[fd]) || w->gen != gen)
			continue; /* removed earlier in this round */
		w->cb(l, fd, ev[i].events, w->arg);
	}
	if (!l->stopped)
		timers_fire(l);
	return 0;
}

int loop_run(struct loop *l)
{
	for (;;) {
		int r = loop_run_once(l, -1);

		if (r < 0)
			return r;
		if (l->stopped)
			return 0;
	}
}

void loop_stop(struct loop *l)
{
	l->stopped = 1;
}

uint64_t loop_now_ms(const struct loop *l)
{
	return l->now;
}
