/* Pipelined hydration with reconnection (see hydrator.h).
 *
 * hydrate_slot() in source.c fetches one chunk at a time through the blocking
 * chunk_source_fetch(): on a network source each chunk pays a full round trip
 * and tgtd idles between them. Here `depth` buffers are kept busy through
 * source->ops->start, and the source's fd is polled and serviced, so the LUN
 * sees a steady queue (the pattern fetch_copy_all measures). The order of
 * completions does not matter: each completed chunk is verified against the
 * manifest and written into its own place; a chunk that does not match is
 * remembered as rejected (never written, never fetched again in this run).
 *
 * Durability is the cache's: chunks written are only "pending" until
 * cache_commit() (data fdatasync, then present bits), done every
 * commit_bytes and at the end, so a kill -9 loses at most the last batch and
 * never marks an unverified or unsynced chunk present. A rerun skips what is
 * present: verified chunks are not fetched again.
 *
 * Link failures: a request that fails (lost session, time-out) makes the
 * whole source suspect: it is freed (libiscsi cancels what is queued; those
 * completions are ignored), the scan restarts from chunk 0 (present and
 * pending chunks are skipped, so only what was in flight is asked again) and
 * a new source is opened after a backoff of backoff_min doubling to
 * backoff_max. give_up_ms bounds the time without a stored chunk.
 *
 * Work per chunk is split between threads (measured with perf on the 2-core
 * build machine, tgtd on the same box): receiving a 1 MiB chunk costs the
 * loop about 0.3 ms, SHA-256 about 0.55 ms and the cache write about 0.3 ms
 * (page cache copy and allocation). With hashing and writing on the loop, the
 * wire idled while it worked (0.43x iscsi-perf); with one verifier thread and
 * the write on the loop, still 0.52-0.60x. Now the loop only keeps the wire
 * full (libiscsi service, issuing requests) and `workers` threads (the
 * agent's workpool, shared with the restore) each verify a chunk and, when
 * it matches, write it to its place in the cache (cache_chunk_io_write: the
 * data only; the maps stay the loop's). The loop
 * then marks it written (pending) and commits in batches. A slot is FREE ->
 * WIRE (request out) -> WORK (queued for a worker) -> DONE (verdict back) ->
 * FREE. There are depth + 2 x workers + 1 slots (at least 2 x depth), so the
 * wire keeps depth requests while the workers are busy.
 *
 * Second round (docs/agent.md, Performance): a worker takes two chunks and
 * hashes them together (chunk_hashes_verify2, two-lane SHA-NI: the agent's
 * hashing went from 0.55 to 0.31 CPU s per GB); while a chunk is on the wire
 * a lone queued chunk waits for its partner (workpool_hold), off the wire's
 * path. Buffers are 4 KiB aligned so the cache writes them with O_DIRECT
 * (a disk cache: 0.6 CPU s per GB of page-cache work and the writeback
 * gone). */
#include "agent/hydrator.h"

#include <errno.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cache.h"
#include "agent/workpool.h"
#include "lib/log.h"
#include "lib/util.h"

struct hyd;

struct donor {
	struct hash h;
	uint64_t idx;
};

static int donor_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct donor *)a)->h, &((const struct donor *)b)->h,
		      sizeof(struct hash));
}

enum { S_FREE, S_WIRE, S_WORK }; /* S_WORK: in the pool until collect() takes its verdict */

struct hslot {
	/* first: the pool hands it back; verdict: 0 stored, -EBADMSG no match
	 * (not written), or the write's error */
	struct chunk_check ck;
	struct hyd *h;
	unsigned gen; /* source generation it was started on */
	int busy; /* state: S_* (loop thread) */
	struct cache_chunk_io io;
};

struct hyd {
	struct cache *c;
	int slot;
	const struct chunk_hashes *hs;
	const struct hydr_opts *o;
	struct hydr_stats *st;
	struct chunk_source *src;
	unsigned gen;
	struct hslot *slots;
	uint8_t *bufs; /* the slots' buffers, one region (bufs_alloc) */
	unsigned depth, inflight, nslots, queued; /* queued: in WORK or DONE */
	unsigned nworkers;
	struct workpool *pool;
	struct work_item *ready; /* received, not yet pushed to the pool */
	uint64_t n, next, since, commit_bytes, last_progress;
	uint8_t *rejected, *zero_buf, *copy_buf;
	struct donor *donors; /* other slot's present chunks, sorted by hash */
	size_t ndonors;
	int session_err, io_err;
	unsigned delay_ms; /* GOLDAGENT_TEST_CHUNK_DELAY_MS */
	int no_pair; /* GOLDAGENT_HYDRATE_PAIR=0 (benchmarks): hash one chunk at a time */
	uint64_t paired; /* chunks verified two at once (atomic: pool threads) */
};

/* The slots' buffers as one region, on transparent huge pages where the
 * kernel gives them on request (THP "madvise" mode): the first touch of 16
 * MiB of fresh 4 KiB pages cost ~4% of a 1 GiB hydration in page faults on
 * the build VM (perf: exc_page_fault, clear_page); 2 MiB pages take 8
 * faults, and the receive, the hash and O_DIRECT's page pinning walk fewer
 * pages. A hint: without THP these are ordinary pages. */
static uint8_t *bufs_alloc(size_t len)
{
	const size_t huge = 2u << 20;
	void *p = NULL;

	len = (len + huge - 1) / huge * huge;
	if (posix_memalign(&p, huge, len) != 0)
		die(1, "out of memory (%zu bytes of chunk buffers)", len);
	(void)madvise(p, len, MADV_HUGEPAGE);
	return p;
}

/* On a pool thread: verify (a batch of two hashed together:
 * chunk_hashes_verify2, about half the CPU of two), then write the data of
 * each chunk that matches. */
static void work(void *ctx, struct work_item *items)
{
	struct hyd *h = ctx;
	unsigned paired = chunk_checks_verify(h->hs, items);

	if (paired)
		__atomic_fetch_add(&h->paired, paired, __ATOMIC_RELAXED);
	for (struct work_item *it = items; it; it = it->next) {
		struct hslot *s = (struct hslot *)it;

		if (s->ck.verdict == 0)
			s->ck.verdict = cache_chunk_io_write(&s->io, s->ck.buf);
	}
}

static void chunk_done(void *arg, uint64_t idx, int err)
{
	struct hslot *s = arg;
	struct hyd *h = s->h;

	(void)idx;
	h->inflight--;
	if (s->gen != h->gen || err) {
		s->busy = S_FREE;
		if (s->gen == h->gen && !h->session_err)
			h->session_err = err;
		return;
	}
	s->busy = S_WORK;
	h->queued++;
	/* handed to the pool only after the next request is out (flush_ready):
	 * waking a worker first would delay the wire behind it */
	s->ck.wi.next = h->ready;
	h->ready = &s->ck.wi;
}

/* Hands the chunks received since the last call to the pool. */
static void flush_ready(struct hyd *h)
{
	while (h->ready) {
		struct work_item *it = h->ready;

		h->ready = it->next;
		workpool_push(h->pool, it);
	}
}

/* Takes the verdicts back: stores good chunks, remembers bad ones. */
static void collect(struct hyd *h)
{
	struct work_item *it, *next;

	for (it = workpool_take(h->pool); it; it = next) {
		struct hslot *s = (struct hslot *)it;

		next = it->next;
		h->queued--;
		s->busy = S_FREE;
		if (s->ck.verdict == -EBADMSG || s->ck.verdict == -ERANGE) {
			log_error("chunk %llu from %s does not match the manifest: not stored",
				  (unsigned long long)s->ck.idx,
				  h->src ? h->src->desc : "the source");
			h->rejected[s->ck.idx >> 3] |= (uint8_t)(1u << (s->ck.idx & 7));
			h->st->h.rejected++;
			continue;
		}
		if (s->ck.verdict < 0) { /* the write failed (logged) */
			if (!h->io_err)
				h->io_err = s->ck.verdict;
			continue;
		}
		cache_chunk_written(h->c, &s->io);
		h->st->h.fetched++;
		h->st->h.bytes += s->io.len;
		h->since += s->io.len;
		h->last_progress = now_ms();
		if (h->delay_ms) /* tests: widen the window for kills and link cuts */
			sleep_ms(h->delay_ms);
	}
}

/* Waits until every chunk handed to the workers is back and collected. */
static void collect_all(struct hyd *h)
{
	flush_ready(h);
	workpool_hold(h->pool, 0); /* a lone chunk gets no partner now */
	while (h->queued) {
		struct pollfd p = {.fd = workpool_fd(h->pool), .events = POLLIN};

		poll(&p, 1, 100);
		collect(h);
	}
}

/* Next chunk to fetch from h->next on (zero chunks are stored on the way);
 * 0 and *idx, or 1 when the scan is at the end. */
static int next_chunk(struct hyd *h, uint64_t *idx)
{
	while (h->next < h->n && !h->io_err) {
		uint64_t i = h->next++;
		size_t len;
		int r;

		if (cache_chunk_present(h->c, h->slot, i) ||
		    cache_chunk_pending(h->c, h->slot, i) ||
		    (h->rejected[i >> 3] & (1u << (i & 7))))
			continue;
		len = cache_chunk_len(h->c, h->slot, i);
		if (!h->hs->zero[i] && h->ndonors) {
			struct donor key = {.h = h->hs->h[i]}, *d;

			d = bsearch(&key, h->donors, h->ndonors, sizeof(key), donor_cmp);
			if (d && cache_chunk_len(h->c, 1 - h->slot, d->idx) == len &&
			    cache_chunk_read_raw(h->c, 1 - h->slot, d->idx, h->copy_buf, len) ==
				    0 &&
			    chunk_hashes_verify(h->hs, i, h->copy_buf, len) == 0) {
				r = cache_chunk_write(h->c, h->slot, i, h->copy_buf, len);
				if (r < 0 && r != -EEXIST)
					h->io_err = r;
				h->st->h.copied++;
				h->since += len;
				continue;
			}
		}
		if (!h->hs->zero[i]) {
			*idx = i;
			return 0;
		}
		r = cache_chunk_write(h->c, h->slot, i, h->zero_buf, len);
		if (r < 0 && r != -EEXIST)
			h->io_err = r;
		h->st->h.zero++;
		h->since += len;
	}
	return 1;
}

static int commit_if_due(struct hyd *h, int force)
{
	int r;

	if (!force && h->since < h->commit_bytes)
		return 0;
	r = cache_commit(h->c);
	if (r < 0 && !h->io_err)
		h->io_err = r;
	h->since = 0;
	return r;
}

static void drop_source(struct hyd *h)
{
	collect_all(h); /* their data arrived whole: keep it, and never ask twice */
	h->gen++; /* completions of the old source are ignored from here on */
	chunk_source_free(h->src);
	h->src = NULL;
	/* a source that did not call back for every cancelled request: its
	 * buffers are ours again anyway (the source is gone) */
	for (unsigned i = 0; i < h->nslots; i++)
		if (h->slots[i].busy == S_WIRE)
			h->slots[i].busy = S_FREE;
	h->inflight = 0;
	h->session_err = 0;
	h->next = 0;
}

int hydrate_pipelined(struct cache *c, int slot, const struct chunk_hashes *hs,
		      const struct hydr_opts *o, struct hydr_stats *st)
{
	const struct cache_header *hdr = cache_header(c);
	unsigned bmin = o->backoff_min_ms ? o->backoff_min_ms : 500;
	unsigned bmax = o->backoff_max_ms ? o->backoff_max_ms : 10000, backoff = bmin;
	uint64_t give_up = o->give_up_ms ? o->give_up_ms : 300000, t0 = now_ms();
	struct hyd h = {.c = c, .slot = slot, .hs = hs, .o = o, .st = st};
	int r = 0, open_err = 0;
	size_t stride;

	memset(st, 0, sizeof(*st));
	h.n = cache_slot_chunks(c, slot);
	if (!hs || hs->n != h.n || h.n == 0) {
		log_error("slot %c: the manifest has %llu chunks, the slot %llu", 'A' + slot,
			  hs ? (unsigned long long)hs->n : 0ull, (unsigned long long)h.n);
		return -EINVAL;
	}
	h.depth = o->depth ? o->depth : 8;
	if (getenv("GOLDAGENT_TEST_CHUNK_DELAY_MS"))
		parse_int(getenv("GOLDAGENT_TEST_CHUNK_DELAY_MS"), 0, 10000, (int *)&h.delay_ms);
	h.commit_bytes = o->commit_bytes ? o->commit_bytes : 64ull << 20;
	h.nworkers = o->workers;
	if (getenv("GOLDAGENT_HYDRATE_WORKERS")) /* benchmarks: compare worker counts */
		parse_int(getenv("GOLDAGENT_HYDRATE_WORKERS"), 1, 8, (int *)&h.nworkers);
	h.no_pair =
		getenv("GOLDAGENT_HYDRATE_PAIR") && !strcmp(getenv("GOLDAGENT_HYDRATE_PAIR"), "0");
	r = workpool_new(h.nworkers, h.no_pair ? 1 : 2, work, &h, &h.pool);
	if (r < 0)
		return r;
	h.nworkers = workpool_threads(h.pool);
	/* buffers: depth on the wire plus two per worker and one coming back,
	 * never fewer than 2 x depth (memory: chunk size x slots, 16 MiB for
	 * 1 MiB chunks at depth 8) */
	h.nslots = MAX(2 * h.depth, h.depth + 2 * h.nworkers + 1);
	h.slots = xcalloc(h.nslots, sizeof(*h.slots));
	stride = ((size_t)hdr->geo.chunk_size + CACHE_DIO_ALIGN - 1) / CACHE_DIO_ALIGN *
		 CACHE_DIO_ALIGN;
	h.bufs = bufs_alloc(stride * h.nslots);
	for (unsigned i = 0; i < h.nslots; i++) {
		h.slots[i].h = &h;
		h.slots[i].ck.buf = h.bufs + (size_t)i * stride;
	}
	h.rejected = xcalloc((size_t)(h.n + 7) / 8, 1);
	h.zero_buf = cache_dio_buf(hdr->geo.chunk_size);
	memset(h.zero_buf, 0, hdr->geo.chunk_size);
	h.copy_buf = cache_dio_buf(hdr->geo.chunk_size);
	if (o->other && o->other->n == cache_slot_chunks(c, 1 - slot)) {
		h.donors = xmalloc((o->other->n ? o->other->n : 1) * sizeof(*h.donors));
		for (uint64_t i = 0; i < o->other->n; i++)
			if (!o->other->zero[i] && cache_chunk_present(c, 1 - slot, i))
				h.donors[h.ndonors++] =
					(struct donor){.h = o->other->h[i], .idx = i};
		qsort(h.donors, h.ndonors, sizeof(*h.donors), donor_cmp);
		log_info("slot %c: %zu chunks of slot %c can be copied by hash", 'A' + slot,
			 h.ndonors, 'A' + (1 - slot));
	}
	for (uint64_t i = 0; i < h.n; i++)
		if (cache_chunk_present(c, slot, i))
			st->h.skipped++;
	h.last_progress = now_ms();
	for (;;) {
		uint64_t idx;
		int more = 1;

		if (h.io_err)
			break;
		if (!h.src) {
			/* is anything left to fetch at all? (zero chunks need no source) */
			uint64_t save = h.next;

			collect_all(&h);
			if (next_chunk(&h, &idx) != 0 && h.inflight == 0) {
				commit_if_due(&h, 1);
				break;
			}
			h.next = save;
			open_err = o->open(o->open_arg, &h.src);
			if (open_err < 0) {
				h.src = NULL;
				/* refused (CHAP, ACL): no retry makes it work */
				if (open_err == -EACCES || now_ms() - h.last_progress >= give_up)
					break;
				log_warn("cannot open the chunk source (%s): retrying in %u ms",
					 strerror(-open_err), backoff);
				sleep_ms(backoff);
				backoff = MIN(backoff * 2, bmax);
				continue;
			}
			open_err = 0;
		}
		while (!h.session_err && !h.io_err && h.inflight < h.depth) {
			struct hslot *s = NULL;

			if (next_chunk(&h, &idx) != 0) {
				more = 0;
				break;
			}
			for (unsigned i = 0; i < h.nslots && !s; i++)
				if (h.slots[i].busy == S_FREE)
					s = &h.slots[i];
			if (!s) { /* every buffer waits for its hash */
				h.next = idx;
				break;
			}
			r = cache_chunk_prepare(c, slot, idx, cache_chunk_len(c, slot, idx),
						&s->io);
			if (r < 0) {
				h.io_err = r;
				break;
			}
			s->busy = S_WIRE;
			s->ck.idx = idx;
			s->ck.len = s->io.len;
			s->gen = h.gen;
			h.inflight++;
			r = h.src->ops->start(h.src, idx, idx * hdr->geo.chunk_size, s->ck.buf,
					      s->io.len, chunk_done, s);
			if (r < 0) {
				if (s->busy == S_WIRE && s->gen == h.gen) {
					s->busy = S_FREE;
					h.inflight--;
				}
				h.next = idx; /* ask again on the next source */
				if (!h.session_err)
					h.session_err = r;
			}
		}
		/* the new requests leave now rather than after another poll
		 * (libiscsi writes queued PDUs when serviced with POLLOUT; a full
		 * socket just keeps them), then the received chunks go to the
		 * workers: at depth 1 the next request is on the wire before any
		 * worker wakes up */
		if (h.inflight && !h.session_err && h.src->ops->fd) {
			int e = h.src->ops->service(h.src, POLLOUT);

			if (e < 0)
				h.session_err = e;
		}
		/* a worker holding one chunk waits for a partner while another
		 * is on the wire: no wire time lost (the buffers allow it) */
		workpool_hold(h.pool, h.inflight > 0 && !h.session_err && !h.no_pair);
		flush_ready(&h);
		commit_if_due(&h, 0);
		if (h.session_err) {
			log_warn("chunk source %s failed (%s): reconnecting in %u ms", h.src->desc,
				 strerror(-h.session_err), backoff);
			commit_if_due(&h, 1);
			drop_source(&h);
			st->reconnects++;
			if (now_ms() - h.last_progress >= give_up) {
				open_err = -ETIMEDOUT;
				break;
			}
			sleep_ms(backoff);
			backoff = MIN(backoff * 2, bmax);
			continue;
		}
		if (!more && h.inflight == 0 && h.queued == 0) {
			commit_if_due(&h, 1);
			break;
		}
		if (now_ms() - h.last_progress < 1000)
			backoff = bmin; /* the link works again */
		{
			int sfd = h.src->ops->fd ? h.src->ops->fd(h.src) : -1, n, e;
			struct pollfd p[2] = {{.fd = workpool_fd(h.pool), .events = POLLIN},
					      {.fd = sfd >= 0 && h.inflight > 0 ? sfd : -1}};

			if (p[1].fd >= 0)
				p[1].events = (short)h.src->ops->events(h.src);
			n = poll(p, 2, 100);
			if (n > 0 && (p[0].revents & POLLIN))
				collect(&h);
			if (p[1].fd >= 0) {
				e = h.src->ops->service(h.src, n > 0 ? p[1].revents : 0);
				if (e < 0 && !h.session_err)
					h.session_err = e;
			}
			collect(&h);
		}
	}
	if (h.src) {
		if (h.inflight)
			h.gen++;
		chunk_source_free(h.src);
	}
	collect_all(&h);
	workpool_free(h.pool);
	if (h.since)
		commit_if_due(&h, 1);
	st->elapsed_ms = now_ms() - t0;

	st->paired = h.paired;
	free(h.bufs);
	free(h.slots);
	free(h.rejected);
	free(h.zero_buf);
	free(h.copy_buf);
	free(h.donors);
	if (h.io_err)
		return h.io_err;
	if (open_err)
		return open_err == -ETIMEDOUT || open_err == 0 ? -ETIMEDOUT : open_err;
	if (st->h.rejected)
		return -EBADMSG;
	return cache_slot_present_count(c, slot) == h.n ? 0 : -ENODATA;
}
