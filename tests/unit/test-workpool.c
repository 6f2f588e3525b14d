/* Unit tests for agent/workpool: every pushed item runs exactly once on a
 * pool thread (never on the caller's), comes back through workpool_take when
 * the eventfd says so, batches hold at most `batch` items and, while the loop
 * holds, exactly a whole batch; workpool_free runs what is still queued
 * before it joins. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "agent/workpool.h"
#include "lib/log.h"
#include "tests/tap.h"

struct item {
	struct work_item wi; /* first */
	unsigned n;
	atomic_int runs;
	pthread_t by;
	unsigned value, batch;
};

static pthread_t main_thread;

static atomic_int max_batch;

static void square(void *ctx, struct work_item *items)
{
	int k = 0;

	for (struct work_item *it = items; it; it = it->next) {
		struct item *x = (struct item *)it;

		atomic_fetch_add((atomic_int *)ctx, 1);
		atomic_fetch_add(&x->runs, 1);
		x->by = pthread_self();
		x->value = x->n * x->n;
		k++;
	}
	for (int m = atomic_load(&max_batch); k > m;)
		if (atomic_compare_exchange_weak(&max_batch, &m, k))
			break;
	for (struct work_item *it = items; it; it = it->next)
		((struct item *)it)->batch = (unsigned)k;
}

/* Waits (bounded) until n items came back; returns how many did. */
static unsigned take_n(struct workpool *p, unsigned n)
{
	unsigned back = 0;

	for (unsigned polls = 0; back < n && polls < 6000; polls++) {
		struct pollfd pf = {.fd = workpool_fd(p), .events = POLLIN};

		if (poll(&pf, 1, 10) <= 0)
			continue;
		for (struct work_item *it = workpool_take(p); it; it = it->next)
			back++;
	}
	return back;
}

int main(void)
{
	enum { N = 500 };
	struct item *items = calloc(N, sizeof(*items));
	struct workpool *p = NULL;
	atomic_int total = 0;
	unsigned bad = 0;

	log_init("test-workpool", LOG_ERROR);
	main_thread = pthread_self();
	is_int(workpool_new(3, 1, square, &total, &p), 0, "a pool of 3 threads");
	if (!p || !items)
		return done_testing();
	is_int(workpool_threads(p), 3, "it says 3");
	ok(workpool_take(p) == NULL, "nothing done yet");
	for (unsigned i = 0; i < N; i++) {
		items[i].n = i;
		workpool_push(p, &items[i].wi);
	}
	is_int(take_n(p, N), N, "every item came back through take (the fd said when)");
	for (unsigned i = 0; i < N; i++)
		if (atomic_load(&items[i].runs) != 1 || items[i].value != i * i ||
		    pthread_equal(items[i].by, main_thread))
			bad++;
	is_int(bad, 0, "each ran exactly once, on a pool thread, with its own item");
	is_int(atomic_load(&max_batch), 1, "one item at a time (batch 1)");
	workpool_free(p);

	/* batches of 2: never more; while held, only whole batches */
	memset(items, 0, N * sizeof(*items));
	atomic_store(&max_batch, 0);
	p = NULL;
	is_int(workpool_new(2, 2, square, &total, &p), 0, "a pool of 2 threads, batches of 2");
	if (!p)
		return done_testing();
	for (unsigned i = 0; i < N; i++) {
		items[i].n = i;
		workpool_push(p, &items[i].wi);
	}
	is_int(take_n(p, N), N, "batches: every item came back");
	ok(atomic_load(&max_batch) <= 2, "no batch larger than 2 (largest %d)",
	   atomic_load(&max_batch));
	memset(items, 0, 3 * sizeof(*items));
	workpool_hold(p, 1);
	workpool_push(p, &items[0].wi);
	workpool_push(p, &items[1].wi);
	is_int(take_n(p, 2), 2, "held: the pair came back");
	ok(items[0].batch == 2 && items[1].batch == 2, "held: run as one batch of 2 (%u, %u)",
	   items[0].batch, items[1].batch);
	workpool_hold(p, 0);
	workpool_push(p, &items[2].wi);
	is_int(take_n(p, 1), 1, "released: a lone item runs");
	is_int(items[2].batch, 1, "released: in a batch of 1");
	workpool_free(p);

	/* free runs what is still queued */
	memset(items, 0, N * sizeof(*items));
	atomic_store(&total, 0);
	p = NULL;
	is_int(workpool_new(0, 1, square, &total, &p), 0, "a pool of one thread per CPU");
	ok(p && workpool_threads(p) >= 1 && workpool_threads(p) <= 8, "1 to 8 threads");
	if (!p)
		return done_testing();
	for (unsigned i = 0; i < N; i++) {
		items[i].n = i;
		workpool_push(p, &items[i].wi);
	}
	workpool_free(p);
	is_int(atomic_load(&total), N, "free ran every queued item before it joined");
	free(items);
	return done_testing();
}
