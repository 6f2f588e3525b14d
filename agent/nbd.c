/* goldagent's NBD server (see nbd.h): sockets and epoll around the protocol
 * engine of nbdproto.c, and the two exports backed by the cache.
 *
 * The loop is level-triggered. A connection reads only while its session
 * is not blocked on a fetch and has less than NBD_OUT_HIGH bytes of replies
 * waiting; otherwise it only writes. This bounds each connection's memory to
 * one request plus one reply past the mark. A blocked gold read waits for
 * its chunk's fetch; the fetch completion wakes every session waiting on
 * that chunk, and the loop runs woken sessions before sleeping again.
 *
 * In-flight fetches are keyed by chunk: a second reader of the same absent
 * chunk joins the waiters instead of fetching it again. A fetched chunk is
 * verified against its hash before it is written; a mismatch is never
 * stored and every waiter gets EIO.
 *
 * Verify and write run off the loop, on agent/workpool.c threads (as in
 * hydrator.c): the source's completion (fetch_done) hands the chunk to the
 * pool; a thread hashes it (two at once when two are queued: two-lane
 * SHA-256) and writes it to its place (O_DIRECT when aligned); the loop
 * takes the verdicts back through the pool's eventfd (pool_collect), marks
 * the chunk written, starts a commit and wakes the waiters. A reader's chunk
 * is committed as soon as it is back; background chunks every
 * HYD_COMMIT_BYTES. The commit's I/O (data fdatasync, then the present-map
 * pages, fdatasync: 0.3-9 ms) runs on a thread of its own (commit_start,
 * commit_collect: cache_commit_begin / _io / _end); one is out at a time. Its
 * chunks are readable from its start (cache.h says why that is safe); a
 * reader of a chunk written while another commit is out waits for that one
 * to end, then the next starts at once. With all of it on the loop,
 * `serve --hydrate` filled a 1 GiB cache on disk at 0.2-0.5x the rate of
 * `goldagent hydrate`, and 4 KiB reads of present chunks stalled up to
 * 120-140 ms meanwhile (docs/agent.md, Performance). While background
 * chunks are on the wire a lone queued chunk waits for a partner
 * (workpool_hold), unless a reader waits for one (pool_hold_update).
 *
 * Read throughput (bench/agent-nbd.sh, qemu-img bench against the same reads
 * of the cache file): a gold READ reply's data goes from the page cache to
 * the socket without a copy: spliced into a per-connection pipe (1 MiB) and
 * from there into the socket (sendfile when there is no pipe; it splices
 * through a 64 KiB internal pipe, sixteen rounds per MiB). Each connection's
 * send buffer is raised to NBD_SNDBUF so a whole reply (and the next ones)
 * leaves in one call: with the default 208 KiB the server woke five times per
 * MiB and spent 0.9 s of CPU per 10 GiB, with both 0.38 s. Readahead hints
 * (POSIX_FADV_WILLNEED) are given only when the end of a range is not in the
 * page cache: on a warm cache the hint itself walked every page. Reads of up
 * to NBD_COPY_MAX (16 KiB) that the page cache holds are copied instead
 * (gold_read_cached, RWF_NOWAIT): one preadv2 plus a share of one send for
 * all the replies of a wake-up, where the splice path takes five calls; the
 * crossover and the figures are in docs/agent.md "Performance".
 *
 * Wake-ups: every request in the input is answered before anything is sent,
 * the replies leave in one sendmsg (nbd_session_outvec), and the connection
 * is read again, up to NBD_ROUNDS times, polling up to NBD_SPIN_US for the
 * client's next requests before the loop sleeps in epoll_wait. The poll is
 * long enough to span a client's turnaround (woken by the reply, it
 * completes the request and sends the next: 20-40 us here), so a client
 * reading one 4 KiB block after another never finds the server asleep: its
 * send wakes nobody and the server pays no sleep and wake-up (on this
 * virtual machine each costs more than the poll). 4 KiB warm reads went
 * from 0.46-0.56x to 1.16-1.19x of the direct read at queue depth 1 and
 * from 0.37-0.46x to 0.97-1.06x at depth 8, where QEMU's one-thread client
 * is then the bound: against the direct read's faster mode that is 0.5x
 * (docs/agent.md "Performance").
 * A poll that finds nothing is skipped for the next 1, 2, 4 events, so a
 * client that pauses (or reads 1 MiB at a time: its turnaround is longer)
 * costs a poll in every few events, not in each. A process that may run on
 * one CPU only (a one-vCPU machine, a taskset) does not poll: the client
 * needs that CPU to send what the poll waits for (pinned to one CPU, 4 KiB
 * warm reads at depth 1 took 0.52-0.58 s without the poll and 0.81-0.99 s
 * with it, for 40% less server CPU). */
#include "agent/nbd.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/cache.h"
#include "agent/nbdproto.h"
#include "agent/source.h"
#include "agent/workpool.h"
#include "lib/log.h"
#include "lib/util.h"

#define TAG_LISTEN_GOLD 1
#define TAG_LISTEN_VOLUME 2
#define TAG_SIGNAL 3
#define TAG_SOURCE 4
#define TAG_NOTIFY 5
#define TAG_POOL 6
#define TAG_COMMIT 7

struct conn {
	struct conn *next;
	int fd;
	unsigned id;
	struct nbd_session *s;
	uint32_t events; /* registered with epoll */
	int pfd[2]; /* gold replies: file -> pipe -> socket; -1: sendfile */
	size_t piped; /* bytes in the pipe: the head of the session's file range */
	unsigned spin_skip, spin_backoff; /* conn_recv */
};

#define NBD_SNDBUF (4 << 20) /* the output mark: a whole 1 MiB reply and more in one call */
#define NBD_PIPE (1 << 20)
#define NBD_IOV 64 /* output buffers per sendmsg */
/* reads of one connection per readiness event: after sending its replies
 * the loop reads again before it sleeps (the client often sent its next
 * requests meanwhile); bounded so other connections are not starved */
#define NBD_ROUNDS 8
/* how long a connection whose replies just left polls for its next request
 * before sleeping, and at most how many readiness events a spin that caught
 * nothing makes the next one wait (conn_recv). 4 KiB warm reads: with 5 us
 * the server slept once per request at depth 1 and once per 8 at depth 8;
 * 25 us, once per 2.5 and per 8; 60 us, once per 8 and per 50; 100 us was
 * no better than 60. */
#define NBD_SPIN_US 60
#define NBD_SPIN_BACKOFF 4u

struct fetch {
	/* first: the pool hands it back. buf: chunk_size bytes, CACHE_DIO_ALIGN
	 * aligned (buf_get); verdict, the pool's: 0 written, -EBADMSG/-ERANGE
	 * no match, or the write's */
	struct chunk_check ck;
	struct fetch *next;
	struct nbd_server *srv;
	int done, err;
	int background; /* started by the hydrator, not by a reader */
	int queued; /* in the pool: verified and written there, collected by the loop */
	struct cache_chunk_io io;
	struct nbd_session **waiters;
	size_t nwaiters, cap;
};

struct nbd_server {
	struct nbd_server_opts o;
	int epfd, sigfd, lfd[2];
	char *path[2];
	struct nbd_export exp[2]; /* gold, volume */
	struct conn *conns;
	unsigned nconns, next_id;
	struct fetch *fetches;
	uint32_t src_events;
	int src_fd;
	sigset_t oldmask;
	/* background hydration */
	uint64_t hyd_next; /* next chunk to consider */
	unsigned hyd_inflight; /* background fetches not completed */
	uint64_t hyd_since; /* bytes written since the last commit */
	uint64_t hyd_fetched, hyd_rejected;
	int hyd_done;
	unsigned hyd_wire; /* background fetches the source has not completed */
	unsigned hyd_max; /* background fetches at most not completed (wire + pool) */
	/* verify + write of fetched chunks (fetch_work), off the loop */
	struct workpool *pool;
	uint8_t **spare; /* chunk buffers for reuse (buf_get) */
	unsigned nspare, spare_max;
	unsigned delay_ms; /* GOLDAGENT_TEST_CHUNK_DELAY_MS */
	int writes_paused; /* nbd_server_pause_writes */
	/* the commit's I/O, off the loop (commit_start / commit_collect) */
	struct workpool *cpool; /* one thread */
	struct commit_req {
		struct work_item wi;
		struct cache_commit_job *job;
	} creq;
	int committing; /* creq is out on cpool */
	int commit_again; /* start the next one as soon as it ends */
	struct nbd_session **cwait; /* readers of pending chunks, woken at its end */
	size_t ncwait, ccap;
	unsigned spin_us; /* conn_recv's poll: NBD_SPIN_US, 0 on one CPU */
};

#define HYD_COMMIT_BYTES (32ull << 20)

/* ---- gold export ---- */

/* A chunk buffer: a spare one, or a new one aligned for O_DIRECT
 * (cache_chunk_io_write). Spares are kept because a fresh 1 MiB costs 256
 * first-touch page faults, on the loop thread that receives into it. */
static uint8_t *buf_get(struct nbd_server *srv)
{
	if (srv->nspare)
		return srv->spare[--srv->nspare];
	return cache_dio_buf(cache_header(srv->o.cache)->geo.chunk_size);
}

/* Frees the spare buffers (the background is over, or the server). */
static void spares_free(struct nbd_server *srv)
{
	while (srv->nspare)
		free(srv->spare[--srv->nspare]);
}

static void buf_put(struct nbd_server *srv, uint8_t *buf)
{
	if (buf && srv->nspare < srv->spare_max)
		srv->spare[srv->nspare++] = buf;
	else
		free(buf);
}

/* On a pool thread: verify the batch's chunks (two hashed together when
 * there are two: chunk_hashes_verify2), then write the data of each that
 * matches to its place. Touches only the fetches (owned by the pool until
 * the loop takes them back), the immutable hashes and the cache device. */
static void fetch_work(void *ctx, struct work_item *items)
{
	struct nbd_server *srv = ctx;

	(void)chunk_checks_verify(srv->o.hashes, items);
	for (struct work_item *it = items; it; it = it->next) {
		struct fetch *f = (struct fetch *)it;

		if (f->ck.verdict == 0)
			f->ck.verdict = cache_chunk_io_write(&f->io, f->ck.buf);
	}
}

/* On the commit thread: the job's fdatasyncs and map pages. */
static void commit_work(void *ctx, struct work_item *items)
{
	(void)ctx;
	for (struct work_item *it = items; it; it = it->next)
		(void)cache_commit_io(((struct commit_req *)it)->job); /* end reports */
}

/* Starts a commit of every pending chunk (their bits are set at once), or,
 * with one out, has the next start as soon as that one ends. Without the
 * thread (no source: nothing is ever pending) it commits in place. */
static void commit_start(struct nbd_server *srv)
{
	struct cache *c = srv->o.cache;
	struct cache_commit_job *j = NULL;

	srv->hyd_since = 0;
	if (srv->committing) {
		srv->commit_again = 1;
		return;
	}
	srv->commit_again = 0;
	if (!srv->cpool) {
		(void)cache_commit(c); /* logged there */
		return;
	}
	if (cache_commit_begin(c, &j) < 0 || !j)
		return;
	srv->creq.job = j;
	srv->committing = 1;
	workpool_push(srv->cpool, &srv->creq.wi);
}

/* Ends the commit whose I/O is done: a failed data flush took its chunks'
 * bits back (counted as rejected: the pump does not come back for them,
 * readers fetch them again); wakes the readers that waited for it. */
static void commit_finish(struct nbd_server *srv)
{
	struct cache *c = srv->o.cache;
	uint64_t before = cache_slot_present_count(c, srv->o.gold_slot), after;

	(void)cache_commit_end(c, srv->creq.job); /* logged there */
	srv->creq.job = NULL;
	srv->committing = 0;
	after = cache_slot_present_count(c, srv->o.gold_slot);
	if (after < before)
		srv->hyd_rejected += before - after;
	for (size_t i = 0; i < srv->ncwait; i++)
		nbd_session_wake(srv->cwait[i], 0); /* they read again */
	srv->ncwait = 0;
}

/* The commit thread's eventfd was readable. */
static void commit_collect(struct nbd_server *srv)
{
	if (!workpool_take(srv->cpool) || !srv->committing)
		return;
	commit_finish(srv);
	if (srv->commit_again)
		commit_start(srv);
}

/* On the loop: the chunk's verdict (err 0: verified and written by the pool)
 * is known. Marks it written, starts a commit when a reader waits for it (at
 * once) or when the background has written HYD_COMMIT_BYTES since the last
 * one, and wakes the waiters: they read again, from the chunk if its commit
 * started, else they wait for the commit out. */
static void fetch_finish(struct fetch *f, int err)
{
	struct nbd_server *srv = f->srv;
	struct cache *c = srv->o.cache;
	const struct cache_slot_info *si = &cache_header(c)->slot[srv->o.gold_slot];

	if (f->ck.verdict == -EBADMSG || f->ck.verdict == -ERANGE)
		log_error("gold '%s@%s': chunk %llu from %s does not match its hash: not stored",
			  si->name, si->version, (unsigned long long)f->ck.idx,
			  srv->o.source->desc);
	if (err == 0)
		cache_chunk_written(c, &f->io);
	if (err == 0 && f->background) {
		srv->hyd_fetched++;
		srv->hyd_since += f->ck.len;
		if (srv->delay_ms) /* tests: widen the window for kills */
			sleep_ms(srv->delay_ms);
	}
	/* a reader waits: a commit now (present at its start); background only:
	 * in batches */
	if (err == 0 && (!f->background || f->nwaiters || srv->hyd_since >= HYD_COMMIT_BYTES))
		commit_start(srv);
	if (err < 0 && f->background)
		srv->hyd_rejected++;
	if (err < 0 && err != -EIO)
		err = -EIO;
	if (f->background)
		srv->hyd_inflight--;
	f->done = 1;
	f->err = err;
	buf_put(srv, f->ck.buf);
	f->ck.buf = NULL;
	for (size_t i = 0; i < f->nwaiters; i++)
		nbd_session_wake(f->waiters[i], err);
	f->nwaiters = 0; /* woken: they retry (or fail) on their own now */
}

/* The source's completion (on the loop): the chunk goes to the pool to be
 * verified and written; a failed fetch finishes here. */
static void fetch_done(void *arg, uint64_t idx, int err)
{
	struct fetch *f = arg;
	struct nbd_server *srv = f->srv;

	(void)idx;
	if (f->background)
		srv->hyd_wire--;
	if (err == 0)
		err = cache_chunk_prepare(srv->o.cache, srv->o.gold_slot, f->ck.idx, f->ck.len,
					  &f->io);
	if (err < 0) {
		fetch_finish(f, err);
		return;
	}
	f->queued = 1;
	workpool_push(srv->pool, &f->ck.wi);
}

/* Takes the pool's verdicts back (the pool's eventfd was readable). */
static void pool_collect(struct nbd_server *srv)
{
	struct work_item *it, *next;

	for (it = workpool_take(srv->pool); it; it = next) {
		struct fetch *f = (struct fetch *)it;

		next = it->next;
		f->queued = 0;
		fetch_finish(f, f->ck.verdict);
	}
}

/* While background chunks are on the wire, a worker holding a lone chunk
 * waits for its partner (two-lane hashing), unless a reader waits for a
 * chunk in the pool (or on its way there): that one goes at once. */
static void pool_hold_update(struct nbd_server *srv)
{
	int hold = srv->hyd_wire > 0;

	for (struct fetch *f = srv->fetches; f && hold; f = f->next)
		if (!f->done && (!f->background || f->nwaiters))
			hold = 0;
	workpool_hold(srv->pool, hold);
}

static void fetch_unlink(struct nbd_server *srv, struct fetch *f)
{
	for (struct fetch **pp = &srv->fetches; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	buf_put(srv, f->ck.buf);
	free(f->waiters);
	free(f);
}

static int gold_read(void *priv, void *waiter, void *buf, uint64_t off, uint32_t len)
{
	struct nbd_server *srv = priv;
	struct cache *c = srv->o.cache;
	int slot = srv->o.gold_slot;
	const struct cache_header *h = cache_header(c);
	const struct cache_slot_info *si = &h->slot[slot];

	for (;;) {
		uint64_t missing = 0;
		struct fetch *f;
		int r = cache_gold_read(c, slot, buf, off, len, &missing);

		if (r != -ENODATA)
			return r;
		if (cache_chunk_pending(c, slot, missing)) {
			/* written, not committed yet: a commit starting now makes it
			 * readable at once; with one out, the next starts when it
			 * ends, and this reader waits for that */
			int out = srv->committing;

			commit_start(srv);
			if (!out) {
				if (cache_chunk_pending(c, slot, missing))
					return -EIO;
				continue;
			}
			log_debug("gold: chunk %llu waits for the commit out",
				  (unsigned long long)missing);
			xgrow((void **)&srv->cwait, &srv->ccap, srv->ncwait + 1,
			      sizeof(*srv->cwait)); // NOLINT(bugprone-sizeof-expression)
			srv->cwait[srv->ncwait++] = waiter;
			return -EINPROGRESS;
		}
		if (!srv->o.source) {
			log_error(
				"gold '%s@%s': read at %llu+%u needs chunk %llu (bytes %llu-%llu), "
				"which is not in the cache and there is no source to fetch it from",
				si->name, si->version, (unsigned long long)off, len,
				(unsigned long long)missing,
				(unsigned long long)(missing * h->geo.chunk_size),
				(unsigned long long)(missing * h->geo.chunk_size +
						     cache_chunk_len(c, slot, missing) - 1));
			return -EIO;
		}
		for (f = srv->fetches; f; f = f->next)
			if (f->ck.idx == missing)
				break;
		if (!f) {
			f = xcalloc(1, sizeof(*f));
			f->srv = srv;
			f->ck.idx = missing;
			f->ck.len = cache_chunk_len(c, slot, missing);
			f->ck.buf = buf_get(srv);
			f->next = srv->fetches;
			srv->fetches = f;
			if (srv->o.hashes && missing < srv->o.hashes->n &&
			    srv->o.hashes->zero[missing]) {
				memset(f->ck.buf, 0, f->ck.len);
				fetch_done(f, missing, 0);
			} else {
				log_debug("gold '%s@%s': fetching chunk %llu from %s", si->name,
					  si->version, (unsigned long long)missing,
					  srv->o.source->desc);
				r = srv->o.source->ops->start(srv->o.source, missing,
							      missing * h->geo.chunk_size,
							      f->ck.buf, f->ck.len, fetch_done, f);
				if (r < 0)
					fetch_done(f, missing, r);
			}
		}
		if (f->done) {
			/* completed inside start(): nobody else waited on it */
			r = f->err;
			fetch_unlink(srv, f);
			if (r < 0)
				return r;
			continue; /* present now: read again (next missing chunk?) */
		}
		xgrow((void **)&f->waiters, &f->cap, f->nwaiters + 1,
		      sizeof(*f->waiters)); // NOLINT(bugprone-sizeof-expression)
		f->waiters[f->nwaiters++] = waiter;
		return -EINPROGRESS;
	}
}

static int gold_write(void *priv, const void *buf, uint64_t off, uint32_t len, int fua)
{
	(void)priv, (void)buf, (void)off, (void)len, (void)fua;
	return -EPERM;
}
static int gold_zero(void *priv, uint64_t off, uint32_t len, int fua)
{
	(void)priv, (void)off, (void)len, (void)fua;
	return -EPERM;
}
static int gold_flush(void *priv)
{
	(void)priv;
	return 0;
}

/* Whether the page holding byte off of fd is in the page cache: a one-byte
 * read that may not wait for I/O (RWF_NOWAIT). Kernels without it: "no". */
static int range_cached(int fd, uint64_t off)
{
	char b;
	struct iovec iov = {.iov_base = &b, .iov_len = 1};

	return preadv2(fd, &iov, 1, (off_t)off, RWF_NOWAIT) == 1;
}

static int gold_locate(void *priv, uint64_t off, uint32_t len, uint64_t *foff)
{
	struct nbd_server *srv = priv;
	int fd = cache_gold_locate(srv->o.cache, srv->o.gold_slot, off, len, foff);

	/* start the disk read now, so sendfile finds the pages (or their I/O)
	 * in flight when this reply's turn comes: the loop never waits on one
	 * request's disk read with the others idle */
	if (fd >= 0 && len && !range_cached(fd, *foff + len - 1))
		posix_fadvise(fd, (off_t)*foff, (off_t)len, POSIX_FADV_WILLNEED);
	return fd;
}

/* A small present read that is in the page cache, copied without waiting:
 * RWF_NOWAIT fails (EAGAIN) or comes back short rather than start disk I/O,
 * so a cold small read still goes the locate way (readahead hint, then
 * splice) and never stalls the loop here. */
static int gold_read_cached(void *priv, void *buf, uint64_t off, uint32_t len)
{
	struct nbd_server *srv = priv;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	uint64_t foff;
	int fd = cache_gold_locate(srv->o.cache, srv->o.gold_slot, off, len, &foff);

	if (fd < 0)
		return -EAGAIN;
	return preadv2(fd, &iov, 1, (off_t)foff, RWF_NOWAIT) == (ssize_t)len ? 0 : -EAGAIN;
}

static const struct nbd_export_ops gold_ops = {
	.read = gold_read,
	.write = gold_write,
	.zero = gold_zero,
	.flush = gold_flush,
	.locate = gold_locate,
	.read_cached = gold_read_cached,
};

/* ---- volume export ---- */

static int vol_read(void *priv, void *waiter, void *buf, uint64_t off, uint32_t len)
{
	struct nbd_server *srv = priv;

	(void)waiter;
	return cache_vol_read(srv->o.cache, buf, off, len);
}
static int vol_write(void *priv, const void *buf, uint64_t off, uint32_t len, int fua)
{
	struct nbd_server *srv = priv;

	return cache_vol_write(srv->o.cache, buf, off, len, fua);
}
static int vol_zero(void *priv, uint64_t off, uint32_t len, int fua)
{
	struct nbd_server *srv = priv;

	return cache_vol_zero(srv->o.cache, off, len, fua);
}
static int vol_flush(void *priv)
{
	struct nbd_server *srv = priv;

	return cache_flush(srv->o.cache);
}

static int vol_hold(void *priv)
{
	struct nbd_server *srv = priv;

	return srv->writes_paused;
}

/* no locate: volume data may change while a reply waits to be sent */
static const struct nbd_export_ops vol_ops = {
	.read = vol_read,
	.write = vol_write,
	.zero = vol_zero,
	.flush = vol_flush,
	.hold = vol_hold,
};

void nbd_server_pause_writes(struct nbd_server *srv, int on)
{
	srv->writes_paused = !!on;
	if (on)
		return;
	/* volume sessions block only on held writes: let them parse again */
	for (struct conn *c = srv->conns; c; c = c->next)
		if (nbd_session_export(c->s) == &srv->exp[1] && nbd_session_blocked(c->s))
			nbd_session_wake(c->s, 0);
}

/* ---- sockets ---- */

static int listen_unix(const char *path)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, r;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("socket '%s': path too long (max %zu bytes)", path,
			  sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_error("socket '%s': exists and is not a socket; not replacing it",
				  path);
			return -EEXIST;
		}
		unlink(path); /* stale, from a previous run */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 64) < 0) {
		r = -errno;
		log_error("socket '%s': cannot listen: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	return fd;
}

static int ep_add(int epfd, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = {.events = events, .data.u64 = tag};

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* How many CPUs this process may run on. On one, a poll for the client's next
 * request only keeps the client (which needs that CPU to send it) waiting. */
static int cpus_usable(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return 2; /* unknown: assume the common case */
	return CPU_COUNT(&set);
}

int nbd_server_new(const struct nbd_server_opts *o, struct nbd_server **out)
{
	struct nbd_server *srv = xcalloc(1, sizeof(*srv));
	const struct cache_header *h = cache_header(o->cache);
	const char *paths[2] = {o->gold_socket, o->volume_socket};
	sigset_t mask;
	int r;

	srv->o = *o;
	if (!srv->o.max_clients)
		srv->o.max_clients = 64;
	srv->spin_us = cpus_usable() > 1 ? NBD_SPIN_US : 0;
	srv->lfd[0] = srv->lfd[1] = srv->sigfd = srv->src_fd = -1;
	srv->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (srv->epfd < 0) {
		r = -errno;
		goto fail;
	}
	if (o->gold_socket && (o->gold_slot < 0 || o->gold_slot >= CACHE_NSLOTS ||
			       h->slot[o->gold_slot].state == CACHE_SLOT_EMPTY)) {
		log_error("cache '%s': no gold image to serve (slot empty)", cache_path(o->cache));
		r = -ENOENT;
		goto fail;
	}
	srv->exp[0] = (struct nbd_export){
		.name = "gold",
		.description = "goldcache gold image (read-only)",
		.size = o->gold_socket ? h->slot[o->gold_slot].image_size : 0,
		.read_only = 1,
		.ops = &gold_ops,
		.priv = srv,
	};
	srv->exp[1] = (struct nbd_export){
		.name = "volume",
		.description = "goldcache machine volume",
		.size = h->geo.volume_size,
		.read_only = 0,
		.ops = &vol_ops,
		.priv = srv,
	};
	if (o->volume_socket) {
		r = cache_vol_open(o->cache);
		if (r < 0)
			goto fail;
	}
	for (int i = 0; i < 2; i++) {
		if (!paths[i])
			continue;
		srv->lfd[i] = listen_unix(paths[i]);
		if (srv->lfd[i] < 0) {
			r = srv->lfd[i];
			goto fail;
		}
		srv->path[i] = xstrdup(paths[i]);
		r = ep_add(srv->epfd, srv->lfd[i], EPOLLIN, (uint64_t)(TAG_LISTEN_GOLD + i));
		if (r < 0)
			goto fail;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, &srv->oldmask);
	signal(SIGPIPE, SIG_IGN);
	srv->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (srv->sigfd < 0 || ep_add(srv->epfd, srv->sigfd, EPOLLIN, TAG_SIGNAL) < 0) {
		r = -errno;
		goto fail;
	}
	if (o->notify && (r = ep_add(srv->epfd, o->notify_fd, EPOLLIN, TAG_NOTIFY)) < 0)
		goto fail;
	if (o->source) {
		/* buffers: depth on the wire plus two per worker and one coming
		 * back, never fewer than 2 x depth (16 MiB for 1 MiB chunks at
		 * depth 8 on 2 CPUs) */
		r = workpool_new(0, 2, fetch_work, srv, &srv->pool);
		if (r < 0)
			goto fail;
		srv->hyd_max = MAX(2 * o->hydrate_depth,
				   o->hydrate_depth + 2 * workpool_threads(srv->pool) + 1);
		srv->spare_max = srv->hyd_max + 2;
		srv->spare = xcalloc(srv->spare_max, sizeof(*srv->spare));
		if (getenv("GOLDAGENT_TEST_CHUNK_DELAY_MS"))
			parse_int(getenv("GOLDAGENT_TEST_CHUNK_DELAY_MS"), 0, 10000,
				  (int *)&srv->delay_ms);
		r = ep_add(srv->epfd, workpool_fd(srv->pool), EPOLLIN, TAG_POOL);
		if (r < 0)
			goto fail;
		r = workpool_new(1, 1, commit_work, srv, &srv->cpool);
		if (r < 0)
			goto fail;
		r = ep_add(srv->epfd, workpool_fd(srv->cpool), EPOLLIN, TAG_COMMIT);
		if (r < 0)
			goto fail;
	}
	if (o->source && o->source->ops->fd && (srv->src_fd = o->source->ops->fd(o->source)) >= 0) {
		srv->src_events = (uint32_t)o->source->ops->events(o->source);
		r = ep_add(srv->epfd, srv->src_fd, srv->src_events, TAG_SOURCE);
		if (r < 0)
			goto fail;
	}
	*out = srv;
	return 0;
fail:
	nbd_server_free(srv);
	return r;
}

static void conn_close(struct nbd_server *srv, struct conn *c)
{
	for (struct conn **pp = &srv->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	/* forget this session in any fetch it waits on */
	for (struct fetch *f = srv->fetches; f; f = f->next)
		for (size_t i = 0; i < f->nwaiters; i++)
			if (f->waiters[i] == c->s)
				f->waiters[i] = f->waiters[--f->nwaiters];
	for (size_t i = 0; i < srv->ncwait; i++)
		if (srv->cwait[i] == c->s)
			srv->cwait[i--] = srv->cwait[--srv->ncwait];
	log_debug("nbd client %u: closed", c->id);
	close(c->fd);
	if (c->pfd[0] >= 0) {
		close(c->pfd[0]);
		close(c->pfd[1]);
	}
	nbd_session_free(c->s);
	free(c);
	srv->nconns--;
}

void nbd_server_free(struct nbd_server *srv)
{
	if (!srv)
		return;
	while (srv->conns)
		conn_close(srv, srv->conns);
	if (srv->pool) {
		/* runs what is queued; what was verified and written is kept: the
		 * cache's close commits it (data, flush, then the map) */
		workpool_free(srv->pool);
		for (struct fetch *f = srv->fetches; f; f = f->next)
			if (f->queued && f->ck.verdict == 0)
				cache_chunk_written(srv->o.cache, &f->io);
	}
	if (srv->cpool) {
		/* the commit out finishes its I/O; then it ends here, before
		 * the cache's close commits the rest */
		workpool_free(srv->cpool);
		if (srv->committing)
			commit_finish(srv);
	}
	free(srv->cwait);
	while (srv->fetches)
		fetch_unlink(srv, srv->fetches);
	spares_free(srv);
	free(srv->spare);
	for (int i = 0; i < 2; i++) {
		if (srv->lfd[i] >= 0) {
			close(srv->lfd[i]);
			unlink(srv->path[i]);
		}
		free(srv->path[i]);
	}
	if (srv->sigfd >= 0) {
		close(srv->sigfd);
		sigprocmask(SIG_SETMASK, &srv->oldmask, NULL);
	}
	if (srv->epfd >= 0)
		close(srv->epfd);
	free(srv);
}

/* Sends what the session has queued: memory with send, file ranges (gold
 * READ replies) spliced through the connection's pipe (or with sendfile).
 * Bytes in the pipe count as sent only when they reached the socket.
 * 0 or -errno (connection lost). */
static int conn_write(struct conn *c)
{
	for (;;) {
		struct iovec iov[NBD_IOV];
		size_t len, niov;
		uint64_t foff;
		ssize_t n;
		int fd;

		if (c->piped) {
			n = splice(c->pfd[0], NULL, c->fd, NULL, c->piped,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0)
				c->piped -= (size_t)n;
		} else if ((niov = nbd_session_outvec(c->s, iov, ARRAY_SIZE(iov), &len)) > 0) {
			struct msghdr mh = {.msg_iov = iov, .msg_iovlen = niov};

			n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		} else if ((fd = nbd_session_outfile(c->s, &foff, &len)) >= 0 && c->pfd[0] >= 0) {
			loff_t o = (loff_t)foff;

			n = splice(fd, &o, c->pfd[1], NULL, MIN(len, (size_t)NBD_PIPE),
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n == 0)
				return -EIO; /* the cache file shrank under us */
			if (n > 0) {
				c->piped = (size_t)n;
				continue; /* not sent yet */
			}
			if (errno == EINVAL) { /* a file that cannot splice: sendfile */
				close(c->pfd[0]);
				close(c->pfd[1]);
				c->pfd[0] = c->pfd[1] = -1;
				continue;
			}
		} else if (fd >= 0) {
			off_t o = (off_t)foff;

			n = sendfile(c->fd, fd, &o, len);
			if (n == 0)
				return -EIO; /* the cache file shrank under us */
		} else {
			return 0;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		nbd_session_sent(c->s, (size_t)n);
	}
}

/* Re-arms epoll for what c can do now; closes it when its session ended
 * and everything was sent. Returns 0 or -1 when closed. */
static int conn_update(struct nbd_server *srv, struct conn *c)
{
	struct epoll_event ev;
	size_t pending;
	int done;

	for (;;) {
		if (conn_write(c) < 0) {
			conn_close(srv, c);
			return -1;
		}
		/* requests parked while replies were waiting: go on with them */
		pending = nbd_session_out_pending(c->s);
		if (pending > NBD_OUT_HIGH || !nbd_session_pending_input(c->s) ||
		    nbd_session_blocked(c->s) || nbd_session_done(c->s))
			break;
		nbd_session_run(c->s);
		if (nbd_session_out_pending(c->s) == 0)
			break;
	}
	done = nbd_session_done(c->s);
	if (done == 1) {
		conn_close(srv, c);
		return -1;
	}
	pending = nbd_session_out_pending(c->s);
	ev.events = 0;
	if (!done && !nbd_session_blocked(c->s) && pending <= NBD_OUT_HIGH)
		ev.events |= EPOLLIN;
	if (pending)
		ev.events |= EPOLLOUT;
	if (ev.events != c->events) {
		ev.data.ptr = c;
		epoll_ctl(srv->epfd, EPOLL_CTL_MOD, c->fd, &ev);
		c->events = ev.events;
	}
	return 0;
}

/* Socket buffer and splice pipe of a new connection. Both are optional:
 * without them replies are smaller per call, not wrong. */
static void conn_tune(struct conn *c, const struct nbd_export *e)
{
	int sz = NBD_SNDBUF;

	/* FORCE passes net.core.wmem_max for root; the plain one is capped by it */
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
		(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	c->pfd[0] = c->pfd[1] = -1;
	if (!e->ops->locate || pipe2(c->pfd, O_NONBLOCK | O_CLOEXEC) < 0)
		return;
	/* a smaller pipe (a user's pipe quota) still works, in smaller pieces */
	(void)fcntl(c->pfd[1], F_SETPIPE_SZ, NBD_PIPE);
}

static void conn_accept(struct nbd_server *srv, int which)
{
	for (;;) {
		const struct nbd_export *e = &srv->exp[which];
		struct epoll_event ev;
		struct conn *c;
		int fd = accept4(srv->lfd[which], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("socket '%s': accept: %s", srv->path[which],
					 strerror(errno));
			return;
		}
		if (srv->nconns >= srv->o.max_clients) {
			log_warn("socket '%s': %u clients already: refusing one", srv->path[which],
				 srv->nconns);
			close(fd);
			continue;
		}
		c = xcalloc(1, sizeof(*c));
		c->fd = fd;
		c->id = ++srv->next_id;
		conn_tune(c, e);
		c->s = nbd_session_new(&e, 1);
		c->events = EPOLLOUT;
		ev.events = c->events;
		ev.data.ptr = c;
		if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			nbd_session_free(c->s);
			free(c);
			close(fd);
			continue;
		}
		c->next = srv->conns;
		srv->conns = c;
		srv->nconns++;
		log_debug("nbd client %u: connected to '%s'", c->id, e->name);
		conn_update(srv, c);
	}
}

/* A non-blocking read of c's socket. With spin_us (c's replies were just
 * sent), a read that finds nothing is retried for up to spin_us: a pipelining
 * client's next request usually arrives within that, and catching it costs
 * less than the sleep in epoll_wait and the wake-up. A spin that caught
 * nothing makes the next ones wait (1, 2, 4 .. NBD_SPIN_BACKOFF readiness
 * events), so a client that pauses between requests costs a spin in every
 * few events only. */
static ssize_t conn_recv(struct conn *c, uint8_t *p, size_t avail, unsigned spin_us)
{
	ssize_t n = read(c->fd, p, avail);
	uint64_t until;

	if (n >= 0 || errno != EAGAIN || !spin_us)
		return n;
	if (c->spin_skip) {
		c->spin_skip--;
		return n;
	}
	until = now_ns() + spin_us * 1000ull;
	do
		n = read(c->fd, p, avail);
	while (n < 0 && errno == EAGAIN && now_ns() < until);
	if (n >= 0 || errno != EAGAIN) {
		c->spin_backoff = 0;
		return n;
	}
	c->spin_backoff = MIN(MAX(1u, c->spin_backoff * 2), NBD_SPIN_BACKOFF);
	c->spin_skip = c->spin_backoff;
	errno = EAGAIN;
	return -1;
}

/* Reads what arrived, runs the session, sends its replies (conn_update), and
 * reads again while the socket has more (up to NBD_ROUNDS times, spinning
 * briefly, see conn_recv): a non-blocking read that finds something saves
 * the epoll_wait, the sleep and the wake-up when the client has sent more
 * meanwhile. */
static void conn_readable(struct nbd_server *srv, struct conn *c)
{
	for (unsigned round = 0; round < NBD_ROUNDS; round++) {
		size_t avail;
		uint8_t *p = nbd_session_inbuf(c->s, &avail);
		ssize_t n = avail ? conn_recv(c, p, avail, round > 0 ? srv->spin_us : 0) : 0;

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			if (avail == 0)
				log_warn("nbd client %u: input buffer full: closing", c->id);
			conn_close(srv, c);
			return;
		}
		nbd_session_received(c->s, (size_t)n);
		nbd_session_run(c->s);
		if (conn_update(srv, c) < 0 || !(c->events & EPOLLIN))
			return;
	}
}

static void run_woken(struct nbd_server *srv)
{
	int again = 1;

	while (again) {
		again = 0;
		for (struct conn *c = srv->conns; c; c = c->next) {
			if (!nbd_session_woken(c->s))
				continue;
			nbd_session_run(c->s);
			conn_update(srv, c); /* may close c: restart the scan */
			again = 1;
			break;
		}
	}
	/* completed fetches: their waiters were woken and have run */
	for (struct fetch *f = srv->fetches, *next; f; f = next) {
		next = f->next;
		if (f->done)
			fetch_unlink(srv, f);
	}
}

/* Starts background fetches up to the depth; at most depth per call, so the
 * loop serves clients between batches even with a synchronous source.
 * Returns 1 while there is more to start. */
static int hydrate_pump(struct nbd_server *srv)
{
	struct cache *c = srv->o.cache;
	int slot = srv->o.gold_slot;
	uint64_t n = cache_slot_chunks(c, slot), cs = cache_header(c)->geo.chunk_size;
	unsigned started = 0;

	if (!srv->o.hydrate_depth || !srv->o.source || srv->hyd_done)
		return 0;
	while (srv->hyd_wire < srv->o.hydrate_depth && srv->hyd_inflight < srv->hyd_max &&
	       started < srv->o.hydrate_depth && srv->hyd_next < n) {
		uint64_t i = srv->hyd_next++;
		struct fetch *f;
		int r;

		if (cache_chunk_present(c, slot, i) || cache_chunk_pending(c, slot, i))
			continue;
		for (f = srv->fetches; f; f = f->next)
			if (f->ck.idx == i)
				break;
		if (f)
			continue; /* a reader's fetch has it */
		f = xcalloc(1, sizeof(*f));
		f->srv = srv;
		f->ck.idx = i;
		f->background = 1;
		f->ck.len = cache_chunk_len(c, slot, i);
		f->ck.buf = buf_get(srv);
		f->next = srv->fetches;
		srv->fetches = f;
		srv->hyd_inflight++;
		srv->hyd_wire++;
		started++;
		if (srv->o.hashes && i < srv->o.hashes->n && srv->o.hashes->zero[i]) {
			memset(f->ck.buf, 0, f->ck.len);
			fetch_done(f, i, 0);
		} else {
			r = srv->o.source->ops->start(srv->o.source, i, i * cs, f->ck.buf,
						      f->ck.len, fetch_done, f);
			if (r < 0)
				fetch_done(f, i, r);
		}
	}
	/* stopped by the per-call bound only: come back without sleeping; at
	 * the depth, a completion (source or pool) wakes the loop */
	if (srv->hyd_next < n)
		return started >= srv->o.hydrate_depth;
	if (srv->hyd_inflight)
		return 0;
	/* everything started has completed: the last commit (its end wakes
	 * the loop), then the slot's state (COMPLETE) */
	commit_start(srv);
	if (srv->committing)
		return 0;
	cache_commit(c);
	srv->hyd_done = 1;
	spares_free(srv); /* attach serves on for days without them */
	if (cache_slot_present_count(c, slot) == n)
		log_info("background hydration complete: %llu chunks fetched",
			 (unsigned long long)srv->hyd_fetched);
	else
		log_error("background hydration ended with %llu of %llu chunks present "
			  "(%llu rejected or failed): the rest is fetched on demand",
			  (unsigned long long)cache_slot_present_count(c, slot),
			  (unsigned long long)n, (unsigned long long)srv->hyd_rejected);
	return 0;
}

int nbd_server_run(struct nbd_server *srv)
{
	int more = srv->o.hydrate_depth > 0; /* start hydrating before any client */

	struct epoll_event evs[64];

	log_info("serving%s%s%s%s (cache '%s')", srv->path[0] ? " gold on " : "",
		 srv->path[0] ? srv->path[0] : "", srv->path[1] ? " volume on " : "",
		 srv->path[1] ? srv->path[1] : "", cache_path(srv->o.cache));
	uint64_t next_tick = srv->o.tick_ms ? now_ms() + srv->o.tick_ms : 0;

	for (;;) {
		int wait_ms = more ? 0 : srv->src_fd >= 0 ? 1000 : -1, n;

		if (next_tick) {
			uint64_t now = now_ms();

			if (now >= next_tick) {
				srv->o.tick(srv->o.tick_arg);
				next_tick = now_ms() + srv->o.tick_ms;
			}
			if (wait_ms < 0 || (uint64_t)wait_ms > next_tick - now_ms())
				wait_ms = (int)MIN(next_tick - MIN(now_ms(), next_tick), 1000u);
		}
		n = epoll_wait(srv->epfd, evs, (int)ARRAY_SIZE(evs), wait_ms);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;

			if (tag == TAG_LISTEN_GOLD || tag == TAG_LISTEN_VOLUME) {
				conn_accept(srv, (int)tag - TAG_LISTEN_GOLD);
			} else if (tag == TAG_SIGNAL) {
				struct signalfd_siginfo si;

				if (read(srv->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
					log_info("signal %u: stopping", si.ssi_signo);
					return 0;
				}
			} else if (tag == TAG_POOL) {
				pool_collect(srv);
			} else if (tag == TAG_COMMIT) {
				commit_collect(srv);
			} else if (tag == TAG_NOTIFY) {
				srv->o.notify(srv->o.tick_arg);
			} else if (tag == TAG_SOURCE) {
				int r = srv->o.source->ops->service(srv->o.source,
								    (int)evs[i].events);

				if (r < 0)
					log_warn("%s: %s", srv->o.source->desc, strerror(-r));
			} else {
				struct conn *c = evs[i].data.ptr;
				int still = 0;

				/* c may have been closed by an earlier event of this batch */
				for (struct conn *k = srv->conns; k; k = k->next)
					still |= k == c;
				if (!still)
					continue;
				if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
					conn_readable(srv, c);
				else if (conn_update(srv, c) < 0)
					continue;
			}
		}
		if (srv->src_fd >= 0) {
			uint32_t want = (uint32_t)srv->o.source->ops->events(srv->o.source);

			if (want != srv->src_events) {
				struct epoll_event ev = {.events = want, .data.u64 = TAG_SOURCE};

				epoll_ctl(srv->epfd, EPOLL_CTL_MOD, srv->src_fd, &ev);
				srv->src_events = want;
			}
		}
		run_woken(srv);
		more = hydrate_pump(srv);
		run_woken(srv);
		if (srv->pool)
			pool_hold_update(srv);
	}
}
