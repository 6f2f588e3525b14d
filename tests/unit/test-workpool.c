/* Unit tests for agent/workpool: every pushed item runs exactly once on a
 * pool thread (never on the caller's), comes back through workpool_take when
 * the eventfd says so, and workpool_free runs what is still queued before it
 * joins. */
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
	unsigned value;
};

static pthread_t main_thread;

static void square(void *ctx, struct work_item *it)
{
	struct item *x = (struct item *)it;

	atomic_fetch_add((atomic_int *)ctx, 1);
	atomic_fetch_add(&x->runs, 1);
	x->by = pthread_self();
	x->value = x->n * x->n;
}

int main(void)
{
	enum { N = 500 };
	struct item *items = calloc(N, sizeof(*items));
	struct workpool *p = NULL;
	atomic_int total = 0;
	unsigned back = 0, bad = 0, polls = 0;

	log_init("test-workpool", LOG_ERROR);
	main_thread = pthread_self();
	is_int(workpool_new(3, square, &total, &p), 0, "a pool of 3 threads");
	if (!p || !items)
		return done_testing();
	is_int(workpool_threads(p), 3, "it says 3");
	ok(workpool_take(p) == NULL, "nothing done yet");
	for (unsigned i = 0; i < N; i++) {
		items[i].n = i;
		workpool_push(p, &items[i].wi);
	}
	while (back < N && polls < 6000) {
		struct pollfd pf = {.fd = workpool_fd(p), .events = POLLIN};
		struct work_item *it;

		polls++;
		if (poll(&pf, 1, 10) <= 0)
			continue;
		for (it = workpool_take(p); it; it = it->next)
			back++;
	}
	is_int(back, N, "every item came back through take (the fd said when)");
	for (unsigned i = 0; i < N; i++)
		if (atomic_load(&items[i].runs) != 1 || items[i].value != i * i ||
		    pthread_equal(items[i].by, main_thread))
			bad++;
	is_int(bad, 0, "each ran exactly once, on a pool thread, with its own item");
	workpool_free(p);

	/* free runs what is still queued */
	memset(items, 0, N * sizeof(*items));
	atomic_store(&total, 0);
	p = NULL;
	is_int(workpool_new(0, square, &total, &p), 0, "a pool of one thread per CPU");
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
