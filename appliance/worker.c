/* Worker pool (see worker.h). Jobs wait in a FIFO under one mutex; idle threads
 * sleep on a condition variable. A finished job moves to the done list and bumps
 * an eventfd that the loop watches; the loop then runs the done callbacks in
 * completion order. Threads are created with every signal blocked, so signals
 * keep arriving at the loop's signalfd only. The pool is sized for a handful of
 * concurrent exports; the disk, not the CPU, is the limit there.
 *
 * worker_fork is the other shape: the job runs in a forked child whose exit code
 * carries the result (0, or the errno value), watched through a pidfd. It can be
 * killed at any moment, which a thread cannot; jobs that publish their output
 * atomically (temp file + rename) lose nothing but the temp file then. */
#include "appliance/worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

struct job {
	struct job *next;
	worker_fn fn;
	worker_done_cb done;
	void *arg;
	int result;
};

struct workers {
	struct loop *loop;
	int efd;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *queue, **queue_tail;
	struct job *done, **done_tail;
	pthread_t *threads;
	unsigned nthreads, max_threads, idle, pending;
	int quit;
};

static void *worker_main(void *arg)
{
	struct workers *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		struct job *j;
		uint64_t one = 1;

		while (!w->queue && !w->quit) {
			w->idle++;
			pthread_cond_wait(&w->cv, &w->mu);
			w->idle--;
		}
		if (w->quit)
			break;
		j = w->queue;
		w->queue = j->next;
		if (!w->queue)
			w->queue_tail = &w->queue;
		pthread_mutex_unlock(&w->mu);
		j->result = j->fn(j->arg);
		pthread_mutex_lock(&w->mu);
		j->next = NULL;
		*w->done_tail = j;
		w->done_tail = &j->next;
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* the counter cannot overflow at our job counts */
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void done_readable(struct loop *l, int fd, uint32_t events, void *arg)
{
	struct workers *w = arg;
	struct job *list;
	uint64_t n;

	(void)l;
	(void)events;
	if (read(fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: a spurious wake-up */
	}
	pthread_mutex_lock(&w->mu);
	list = w->done;
	w->done = NULL;
	w->done_tail = &w->done;
	pthread_mutex_unlock(&w->mu);
	while (list) {
		struct job *j = list;

		list = j->next;
		w->pending--;
		j->done(j->result, j->arg);
		free(j);
	}
}

struct workers *workers_new(struct loop *l, unsigned max_threads)
{
	struct workers *w = xcalloc(1, sizeof(*w));

	w->loop = l;
	w->max_threads = max_threads ? max_threads : 1;
	w->threads = xcalloc(w->max_threads, sizeof(*w->threads));
	w->queue_tail = &w->queue;
	w->done_tail = &w->done;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0 || loop_fd_add(l, w->efd, EPOLLIN, done_readable, w) < 0) {
		log_error("cannot set up the worker pool: %s", strerror(errno));
		if (w->efd >= 0)
			close(w->efd);
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		free(w->threads);
		free(w);
		return NULL;
	}
	return w;
}

/* Called with w->mu held. */
static int thread_add(struct workers *w)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&w->threads[w->nthreads], NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return -r;
	w->nthreads++;
	return 0;
}

int worker_submit(struct workers *w, worker_fn fn, worker_done_cb done, void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));
	int r = 0;

	j->fn = fn;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&w->mu);
	*w->queue_tail = j;
	w->queue_tail = &j->next;
	w->pending++;
	if (w->idle == 0 && w->nthreads < w->max_threads)
		r = thread_add(w);
	if (r < 0 && w->nthreads == 0) {
		/* nobody would ever run it: take it back */
		w->queue = NULL;
		w->queue_tail = &w->queue;
		w->pending--;
		free(j);
		log_error("cannot start a worker thread: %s", strerror(-r));
	} else {
		r = 0;
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return r;
}

unsigned workers_pending(const struct workers *w)
{
	return w->pending;
}

void workers_free(struct workers *w)
{
	struct job *j;

	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->quit = 1;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	for (unsigned i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	while ((j = w->queue)) {
		w->queue = j->next;
		j->done(-ECANCELED, j->arg);
		free(j);
	}
	while ((j = w->done)) {
		w->done = j->next;
		j->done(j->result, j->arg);
		free(j);
	}
	loop_fd_del(w->loop, w->efd);
	close(w->efd);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w->threads);
	free(w);
}

/* ---- forked workers ---- */

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
	pid_t pid;
	int r;

	pid = fork();
	if (pid < 0) {
		r = -errno;
		log_error("cannot fork a worker: %s", strerror(-r));
		return r;
	}
	if (pid == 0) {
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
