/* A reconnecting chunk source for the serve loop (see source-retry.h).
 *
 * The NBD server registers a source's fd once, so this wrapper offers a
 * stable fd of its own: an epoll set holding the inner session's fd and a
 * timerfd for reconnection. Every request is kept in a list until its inner
 * completion succeeded: when the session is lost (an inner request or
 * service fails), the inner source is freed (libiscsi drops what it had
 * queued, without callbacks), the requests are marked unissued, and the
 * timer fires after the backoff (0.5 s doubling to 10 s by default). A new
 * session re-issues them all, so a reader waiting for a chunk only sees a
 * delay. A request whose data arrives is handed to its caller, who verifies
 * it against the manifest as for any source. While requests are out on a
 * session the timer ticks every second (the watchdog) so the session is
 * serviced on a silent link too: that is when libiscsi notices a command
 * past its deadline (`--timeout`) and the session is declared lost; without
 * it a reader waited until the link came back and TCP retransmitted.
 *
 * Idle sessions are probed: with a session up the watchdog ticks even with no
 * request out, and a session idle (no request, no completion) for
 * PROBE_IDLE_MS gets a keepalive (the inner source's probe op: an iSCSI
 * NOP-Out). A NOP-In that has not come PROBE_DEADLINE_MS later marks the
 * session lost, and it is reopened in the background as above. So a cut
 * that happens while the machine reads nothing is noticed within about
 * PROBE_IDLE_MS + PROBE_DEADLINE_MS, the session is back by the time the link
 * is, and the first request after it does not wait a command deadline on a
 * dead session first. Any answered traffic counts as activity: a busy
 * session is never probed. */
#include "agent/source-retry.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

struct rsrc;

struct rreq {
	struct rsrc *r;
	uint64_t idx, off;
	void *buf;
	size_t len;
	chunk_fetch_cb cb;
	void *arg;
	unsigned gen; /* session it was issued on; 0: not issued */
	struct rreq *next, *prev;
};

struct rsrc {
	struct chunk_source *inner;
	retry_open_fn open;
	void *open_arg;
	int epfd, tfd, inner_fd;
	uint32_t inner_ev;
	unsigned gen, backoff, min_ms, max_ms;
	uint64_t give_up_ms, down_since;
	struct rreq *reqs;
	unsigned reconnects;
	uint64_t active_at; /* last request issued or completed, or the login */
	uint64_t probe_at; /* an unanswered keepalive was sent then; 0: none */
	int lost; /* the session failed: torn down at the top of service, never
		   * inside the inner source's own callback */
	int watching; /* the timer ticks for the inner source's deadlines */
	/* reconnection runs on a thread: a login that goes unanswered (packets
	 * dropped) takes the whole --timeout, and the serve loop must keep
	 * serving the volume and the present chunks meanwhile */
	int efd; /* the opener thread is done (epoll tag 2) */
	int opening; /* an opener thread runs: join it before anything else */
	pthread_t opener;
	struct chunk_source *opened; /* its result, read after the join */
	int open_err;
};

enum { WATCH_MS = 1000, PROBE_IDLE_MS = 5000, PROBE_DEADLINE_MS = 5000 };

/* Takes the first request off the list. */
static struct rreq *req_pop(struct rsrc *r)
{
	struct rreq *q = r->reqs;

	r->reqs = q->next;
	if (r->reqs)
		r->reqs->prev = NULL;
	return q;
}

static void req_unlink(struct rsrc *r, struct rreq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		r->reqs = q->next;
	if (q->next)
		q->next->prev = q->prev;
}

static void arm(struct rsrc *r, unsigned ms)
{
	struct itimerspec it = {
		.it_value = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L + 1}};

	timerfd_settime(r->tfd, 0, &it, NULL);
	r->watching = 0;
}

/* While the session is up with requests on it, the timer ticks every
 * WATCH_MS so the inner source is serviced even when its fd stays silent:
 * libiscsi checks its command deadlines only when serviced, and a link that
 * went quiet (cable out, packets dropped) never makes the fd readable. A
 * session that can be probed is watched while idle too (probe_tick). */
static void watchdog(struct rsrc *r)
{
	int want = r->inner && !r->lost && (r->reqs || r->inner->ops->probe);

	if (want == r->watching || !r->inner || r->lost)
		return;
	if (want) {
		struct itimerspec it = {.it_value = {.tv_sec = WATCH_MS / 1000},
					.it_interval = {.tv_sec = WATCH_MS / 1000}};

		timerfd_settime(r->tfd, 0, &it, NULL);
	} else {
		struct itimerspec off = {0};

		timerfd_settime(r->tfd, 0, &off, NULL);
	}
	r->watching = want;
}

/* Called from inside inner callbacks too: only records the loss and makes
 * the wrapper's fd readable (timer in 1 ms) so service() tears it down. */
static void mark_lost(struct rsrc *r, int err)
{
	if (r->lost || !r->inner)
		return;
	r->lost = err ? err : -EIO;
	arm(r, 1);
}

static void lose(struct rsrc *r, int err)
{
	r->lost = 0;
	if (!r->inner)
		return;
	log_warn("%s: session lost (%s): reconnecting in %u ms", r->inner->desc, strerror(-err),
		 r->backoff);
	if (r->inner_fd >= 0)
		epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->inner_fd, NULL);
	chunk_source_free(r->inner);
	r->inner = NULL;
	r->inner_fd = -1;
	r->gen++;
	for (struct rreq *q = r->reqs; q; q = q->next)
		q->gen = 0;
	r->probe_at = 0;
	if (!r->down_since)
		r->down_since = now_ms();
	arm(r, r->backoff);
	r->backoff = MIN(r->backoff * 2, r->max_ms);
}

static void inner_done(void *arg, uint64_t idx, int err)
{
	struct rreq *q = arg;
	struct rsrc *r = q->r;

	if (q->gen != r->gen)
		return; /* an abandoned session's completion */
	r->active_at = now_ms();
	if (err) {
		q->gen = 0;
		mark_lost(r, err);
		return;
	}
	req_unlink(r, q);
	q->cb(q->arg, idx, 0);
	free(q);
}

static int issue(struct rsrc *r, struct rreq *q)
{
	int e;

	if (!r->inner)
		return 0;
	q->gen = r->gen;
	e = r->inner->ops->start(r->inner, q->idx, q->off, q->buf, q->len, inner_done, q);
	if (e < 0 && q->gen == r->gen) {
		q->gen = 0;
		mark_lost(r, e);
	}
	return 0;
}

static void watch_inner(struct rsrc *r)
{
	struct epoll_event ev = {0};
	uint32_t want;

	if (!r->inner || r->inner_fd < 0)
		return;
	want = (uint32_t)r->inner->ops->events(r->inner);
	if (want == r->inner_ev)
		return;
	ev.events = want;
	ev.data.u32 = 1;
	epoll_ctl(r->epfd, EPOLL_CTL_MOD, r->inner_fd, &ev);
	r->inner_ev = want;
}

static int attach_inner(struct rsrc *r, struct chunk_source *in)
{
	struct epoll_event ev = {0};

	r->inner = in;
	r->gen++;
	r->active_at = now_ms();
	r->probe_at = 0;
	r->inner_fd = in->ops->fd ? in->ops->fd(in) : -1;
	if (r->inner_fd >= 0) {
		r->inner_ev = (uint32_t)in->ops->events(in);
		ev.events = r->inner_ev;
		ev.data.u32 = 1;
		if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->inner_fd, &ev) < 0)
			return -errno;
	}
	return 0;
}

static int r_start(struct chunk_source *s, uint64_t idx, uint64_t off, void *buf, size_t len,
		   chunk_fetch_cb cb, void *arg)
{
	struct rsrc *r = s->priv;
	struct rreq *q = xcalloc(1, sizeof(*q));

	*q = (struct rreq){.r = r,
			   .idx = idx,
			   .off = off,
			   .buf = buf,
			   .len = len,
			   .cb = cb,
			   .arg = arg,
			   .next = r->reqs};
	if (r->reqs)
		r->reqs->prev = q;
	r->reqs = q;
	r->active_at = now_ms();
	if (r->inner && !r->lost)
		issue(r, q);
	watch_inner(r);
	watchdog(r);
	return 0;
}

static int r_fd(struct chunk_source *s)
{
	return ((struct rsrc *)s->priv)->epfd;
}

static int r_events(struct chunk_source *s)
{
	(void)s;
	return EPOLLIN;
}

static void reconnect(struct rsrc *r, int e, struct chunk_source *in);

static void *opener_main(void *arg)
{
	struct rsrc *r = arg;
	uint64_t one = 1;
	ssize_t w;

	r->open_err = r->open(r->open_arg, &r->opened);
	w = write(r->efd, &one, sizeof(one));
	(void)w; /* a full counter still reads as done */
	return NULL;
}

/* The timer says it is time to log in again: on the opener thread. */
static void reconnect_start(struct rsrc *r)
{
	if (r->inner || r->opening)
		return;
	r->opened = NULL;
	r->open_err = 0;
	if (pthread_create(&r->opener, NULL, opener_main, r) != 0) {
		/* no thread: log in on the loop, as before */
		r->open_err = r->open(r->open_arg, &r->opened);
		reconnect(r, r->open_err, r->opened);
		return;
	}
	r->opening = 1;
}

/* The opener thread's result (or the synchronous one). */
static void reconnect(struct rsrc *r, int e, struct chunk_source *in)
{
	if (r->inner) {
		chunk_source_free(in);
		return;
	}
	if (e == 0)
		e = attach_inner(r, in);
	if (e < 0) {
		if (in) {
			chunk_source_free(in);
			r->inner = NULL;
			r->inner_fd = -1;
		}
		if (now_ms() - r->down_since >= r->give_up_ms && r->reqs) {
			log_error("no session for %llu ms: failing %s waiting chunk requests",
				  (unsigned long long)(now_ms() - r->down_since), "the");
			while (r->reqs) {
				struct rreq *q = req_pop(r);

				q->cb(q->arg, q->idx, -EIO);
				free(q);
			}
		}
		arm(r, r->backoff);
		r->backoff = MIN(r->backoff * 2, r->max_ms);
		return;
	}
	r->reconnects++;
	{
		unsigned waiting = 0;

		for (struct rreq *q = r->reqs; q; q = q->next)
			waiting++;
		log_info("%s: session back after %llu ms; re-issuing %u waiting chunk requests",
			 in->desc, (unsigned long long)(now_ms() - r->down_since), waiting);
	}
	r->down_since = 0;
	r->backoff = r->min_ms;
	for (struct rreq *q = r->reqs; q && !r->lost; q = q->next)
		if (!q->gen)
			issue(r, q);
	watch_inner(r);
	watchdog(r);
}

/* On a watchdog tick: the keepalive of an idle session. An answered probe
 * counts as activity (the next goes PROBE_IDLE_MS later); one unanswered for
 * PROBE_DEADLINE_MS means the link is silent: the session is lost. */
static void probe_tick(struct rsrc *r)
{
	uint64_t now = now_ms();
	int n;

	if (!r->inner || r->lost || !r->inner->ops->probe)
		return;
	if (r->probe_at) {
		n = r->inner->ops->probe(r->inner, 0);
		if (n < 0) {
			mark_lost(r, n);
		} else if (n == 0) {
			log_debug("%s: NOP-Out answered (seen %llu ms after it)", r->inner->desc,
				  (unsigned long long)(now - r->probe_at));
			r->probe_at = 0;
			r->active_at = now;
		} else if (now - r->probe_at >= PROBE_DEADLINE_MS) {
			log_warn("%s: no answer to a NOP-Out in %llu ms (idle %llu ms): the link "
				 "is silent",
				 r->inner->desc, (unsigned long long)(now - r->probe_at),
				 (unsigned long long)(r->probe_at - r->active_at));
			mark_lost(r, -ETIMEDOUT);
		}
		return;
	}
	if (r->reqs || now - r->active_at < PROBE_IDLE_MS)
		return;
	n = r->inner->ops->probe(r->inner, 1);
	if (n < 0)
		mark_lost(r, n);
	else if (n > 0)
		r->probe_at = now;
	log_debug("%s: idle %llu ms: NOP-Out sent", r->inner->desc,
		  (unsigned long long)(now - r->active_at));
}

static int r_service(struct chunk_source *s, int revents)
{
	struct rsrc *r = s->priv;
	struct epoll_event evs[4];
	int n = epoll_wait(r->epfd, evs, 4, 0);

	(void)revents;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u32 == 2) {
			uint64_t t;
			ssize_t k = read(r->efd, &t, sizeof(t));

			(void)k;
			if (r->opening) {
				pthread_join(r->opener, NULL);
				r->opening = 0;
				reconnect(r, r->open_err, r->opened);
			}
		} else if (evs[i].data.u32 == 0) {
			uint64_t t;
			ssize_t k = read(r->tfd, &t, sizeof(t));

			(void)k;
			if (!r->lost && !r->inner) {
				reconnect_start(r);
			} else if (r->inner && !r->lost) {
				/* the watchdog's tick: lets libiscsi expire commands */
				int e = r->inner->ops->service(r->inner, 0);

				if (e < 0)
					mark_lost(r, e);
				else
					probe_tick(r);
			}
		} else if (r->inner && !r->lost) {
			int e = r->inner->ops->service(r->inner, (int)evs[i].events);

			if (e < 0)
				mark_lost(r, e);
		}
	}
	if (r->lost)
		lose(r, r->lost);
	watch_inner(r);
	watchdog(r);
	return 0;
}

static void r_free(struct chunk_source *s)
{
	struct rsrc *r = s->priv;

	if (r->opening) { /* bounded by the login's time-out */
		pthread_join(r->opener, NULL);
		chunk_source_free(r->opened);
	}
	chunk_source_free(r->inner);
	while (r->reqs) {
		free(req_pop(r));
	}
	close(r->epfd);
	close(r->tfd);
	close(r->efd);
	free(r);
}

static const struct chunk_source_ops retry_ops = {
	.kind = "retry",
	.start = r_start,
	.fd = r_fd,
	.events = r_events,
	.service = r_service,
	.free = r_free,
};

/* The first login of a boot: the appliance may answer HTTP while its target
 * is not there yet (goldcached just started and is still adding it, tgtd
 * restarting), so a failed login is tried again with the same backoff as a
 * lost session, one log line per attempt, for up to give_up_ms. A refusal
 * (-EACCES: CHAP secret, initiator name) or an unusable target description is
 * final at once: no wait makes it work. */
static int first_open(struct rsrc *r, struct chunk_source **in)
{
	uint64_t t0 = now_ms();
	unsigned backoff = r->min_ms;
	int e;

	for (unsigned n = 1;; n++) {
		e = r->open(r->open_arg, in);
		if (e == 0 || e == -EACCES || e == -EINVAL || e == -ENAMETOOLONG || e == -ENOMEM)
			return e;
		if (now_ms() - t0 + backoff > r->give_up_ms) {
			log_error("login attempt %u failed (%s): giving up after %llu s", n,
				  strerror(-e), (unsigned long long)((now_ms() - t0) / 1000));
			return e;
		}
		log_warn("login attempt %u failed (%s): next in %u ms", n, strerror(-e), backoff);
		sleep_ms(backoff);
		backoff = MIN(backoff * 2, r->max_ms);
	}
}

int chunk_source_retry_new(retry_open_fn open, void *arg, unsigned min_ms, unsigned max_ms,
			   uint64_t give_up_ms, struct chunk_source **out)
{
	struct rsrc *r = xcalloc(1, sizeof(*r));
	struct chunk_source *in = NULL, *s;
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
	struct epoll_event done = {.events = EPOLLIN, .data.u32 = 2};
	int e;

	r->open = open;
	r->open_arg = arg;
	r->min_ms = r->backoff = min_ms ? min_ms : 500;
	r->max_ms = max_ms ? max_ms : 10000;
	r->give_up_ms = give_up_ms ? give_up_ms : 300000;
	r->inner_fd = -1;
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->epfd < 0 || r->tfd < 0 || r->efd < 0 ||
	    epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->tfd, &ev) < 0 ||
	    epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->efd, &done) < 0) {
		e = -errno;
		goto fail;
	}
	e = first_open(r, &in);
	if (e == 0)
		e = attach_inner(r, in);
	if (e < 0)
		goto fail;
	watchdog(r); /* an idle session is probed from the start */
	s = xcalloc(1, sizeof(*s));
	s->ops = &retry_ops;
	s->priv = r;
	s->desc = xasprintf("%s (reconnecting)", in->desc);
	s->size = in->size;
	*out = s;
	return 0;
fail:
	chunk_source_free(in);
	if (r->epfd >= 0)
		close(r->epfd);
	if (r->tfd >= 0)
		close(r->tfd);
	if (r->efd >= 0)
		close(r->efd);
	free(r);
	return e;
}
