/* A small pool of worker threads for the agent's event loops (see workpool.h).
 *
 * Why: receiving a 1 MiB chunk costs the loop about 0.3 ms, SHA-256 about
 * 0.55 ms and the cache write about 0.3 ms (hydrator.c has the measurements);
 * with the hash and the write on the loop the wire idles while it works. The
 * loop keeps the wire full and pushes each received chunk here; a thread
 * verifies it and writes its data; the loop takes the verdicts back when the
 * eventfd says so and does the bookkeeping (maps, bits, counters), which
 * stays single-threaded.
 *
 * Two intrusive lists under one mutex: the work queue (LIFO, order does not
 * matter) and the done list. A thread takes a batch (up to `batch` items; a
 * whole one while the loop holds), runs the caller's function unlocked,
 * links the items onto the done list and bumps the eventfd. Stopping drains
 * the work queue first, so every pushed item has run when workpool_free
 * returns. */
#include "agent/workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define WORKPOOL_MAX 8u

struct workpool {
	work_fn fn;
	void *ctx;
	pthread_t *thr;
	unsigned n, batch, nwork;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct work_item *work, *done;
	int efd, stop, hold;
};

static void *thread_main(void *arg)
{
	struct workpool *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct work_item *list, *last, *it, *next;
		uint64_t one = 1;
		ssize_t w;
		unsigned k = 1;

		while (!p->stop && !(p->work && (p->nwork >= p->batch || !p->hold)))
			pthread_cond_wait(&p->cv, &p->mu);
		if (!p->work)
			break;
		list = last = p->work;
		while (k < p->batch && last->next)
			last = last->next, k++;
		p->work = last->next;
		p->nwork -= k;
		last->next = NULL;
		pthread_mutex_unlock(&p->mu);
		p->fn(p->ctx, list);
		pthread_mutex_lock(&p->mu);
		for (it = list; it; it = next) {
			next = it->next;
			it->next = p->done;
			p->done = it;
		}
		w = write(p->efd, &one, sizeof(one)); /* fails only when the counter is full */
		(void)w;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Stops and joins the first n threads, frees the pool. */
static void stop(struct workpool *p, unsigned n)
{
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < n; i++)
		pthread_join(p->thr[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	if (p->efd >= 0)
		close(p->efd);
	free(p->thr);
	free(p);
}

int workpool_new(unsigned n, unsigned batch, work_fn fn, void *ctx, struct workpool **out)
{
	struct workpool *p = xcalloc(1, sizeof(*p));
	unsigned started;
	int r = 0;

	*out = NULL;
	if (!n) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

		n = ncpu < 1 ? 1 : ncpu > WORKPOOL_MAX ? WORKPOOL_MAX : (unsigned)ncpu;
	}
	p->fn = fn;
	p->ctx = ctx;
	p->n = n;
	p->batch = batch ? batch : 1;
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->thr = xcalloc(n, sizeof(*p->thr));
	if (p->efd < 0)
		r = -errno;
	for (started = 0; r == 0 && started < n;) {
		int e = pthread_create(&p->thr[started], NULL, thread_main, p);

		if (e)
			r = -e;
		else
			started++;
	}
	if (r < 0) {
		log_error("cannot start %u worker threads: %s", n, strerror(-r));
		stop(p, started);
		return r;
	}
	*out = p;
	return 0;
}

unsigned workpool_threads(const struct workpool *p)
{
	return p->n;
}

void workpool_push(struct workpool *p, struct work_item *it)
{
	pthread_mutex_lock(&p->mu);
	it->next = p->work;
	p->work = it;
	p->nwork++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void workpool_hold(struct workpool *p, int hold)
{
	if (p->hold == hold) /* only the loop writes it */
		return;
	pthread_mutex_lock(&p->mu);
	p->hold = hold;
	if (!hold)
		pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

int workpool_fd(const struct workpool *p)
{
	return p->efd;
}

struct work_item *workpool_take(struct workpool *p)
{
	struct work_item *list;
	uint64_t cnt;
	ssize_t n = read(p->efd, &cnt, sizeof(cnt)); /* EAGAIN: the list may still hold some */

	(void)n;
	pthread_mutex_lock(&p->mu);
	list = p->done;
	p->done = NULL;
	pthread_mutex_unlock(&p->mu);
	return list;
}

void workpool_free(struct workpool *p)
{
	if (p)
		stop(p, p->n);
}
