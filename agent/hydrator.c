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
 * backoff_max. give_up_ms bounds the time without a stored chunk. */
#include "agent/hydrator.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/cache.h"
#include "lib/log.h"
#include "lib/util.h"

struct hyd;

struct hslot {
	struct hyd *h;
	uint8_t *buf;
	uint64_t idx;
	unsigned gen; /* source generation it was started on */
	int busy;
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
	unsigned depth, inflight;
	uint64_t n, next, since, commit_bytes, last_progress;
	uint8_t *rejected, *zero_buf;
	int session_err, io_err;
	unsigned delay_ms; /* GOLDAGENT_TEST_CHUNK_DELAY_MS */
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void chunk_done(void *arg, uint64_t idx, int err)
{
	struct hslot *s = arg;
	struct hyd *h = s->h;
	size_t len = cache_chunk_len(h->c, h->slot, idx);
	int r;

	s->busy = 0;
	h->inflight--;
	if (s->gen != h->gen)
		return; /* cancelled with an abandoned source */
	if (err) {
		if (!h->session_err)
			h->session_err = err;
		return;
	}
	if (chunk_hashes_verify(h->hs, idx, s->buf, len) < 0) {
		log_error("chunk %llu from %s does not match the manifest: not stored",
			  (unsigned long long)idx, h->src ? h->src->desc : "the source");
		h->rejected[idx >> 3] |= (uint8_t)(1u << (idx & 7));
		h->st->h.rejected++;
		return;
	}
	r = cache_chunk_write(h->c, h->slot, idx, s->buf, len);
	if (r < 0 && r != -EEXIST) {
		if (!h->io_err)
			h->io_err = r;
		return;
	}
	h->st->h.fetched++;
	h->st->h.bytes += len;
	h->since += len;
	h->last_progress = now_ms();
	if (h->delay_ms) /* tests: widen the window for kills and link cuts */
		sleep_ms(h->delay_ms);
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
		if (!h->hs->zero[i]) {
			*idx = i;
			return 0;
		}
		len = cache_chunk_len(h->c, h->slot, i);
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
	h->gen++; /* completions of the old source are ignored from here on */
	chunk_source_free(h->src);
	h->src = NULL;
	/* a source that did not call back for every cancelled request: its
	 * buffers are ours again anyway (the source is gone) */
	for (unsigned i = 0; i < h->depth; i++)
		h->slots[i].busy = 0;
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
	h.slots = xcalloc(h.depth, sizeof(*h.slots));
	for (unsigned i = 0; i < h.depth; i++) {
		h.slots[i].h = &h;
		h.slots[i].buf = xmalloc(hdr->geo.chunk_size);
	}
	h.rejected = xcalloc((size_t)(h.n + 7) / 8, 1);
	h.zero_buf = xcalloc(1, hdr->geo.chunk_size);
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

			if (next_chunk(&h, &idx) != 0 && h.inflight == 0) {
				commit_if_due(&h, 1);
				break;
			}
			h.next = save;
			open_err = o->open(o->open_arg, &h.src);
			if (open_err < 0) {
				h.src = NULL;
				if (now_ms() - h.last_progress >= give_up)
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
			for (unsigned i = 0; i < h.depth && !s; i++)
				if (!h.slots[i].busy)
					s = &h.slots[i];
			s->busy = 1;
			s->idx = idx;
			s->gen = h.gen;
			h.inflight++;
			r = h.src->ops->start(h.src, idx, idx * hdr->geo.chunk_size, s->buf,
					      cache_chunk_len(c, slot, idx), chunk_done, s);
			if (r < 0) {
				if (s->busy) {
					s->busy = 0;
					h.inflight--;
				}
				h.next = idx; /* ask again on the next source */
				if (!h.session_err)
					h.session_err = r;
			}
		}
		commit_if_due(&h, 0);
		if (h.session_err) {
			log_warn("chunk source %s failed (%s): reconnecting in %u ms",
				 h.src->desc, strerror(-h.session_err), backoff);
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
		if (!more && h.inflight == 0) {
			commit_if_due(&h, 1);
			break;
		}
		if (now_ms() - h.last_progress < 1000)
			backoff = bmin; /* the link works again */
		if (h.src->ops->fd && h.src->ops->fd(h.src) >= 0 && h.inflight > 0) {
			struct pollfd p = {.fd = h.src->ops->fd(h.src),
					   .events = (short)h.src->ops->events(h.src)};
			int n = poll(&p, 1, 100), e;

			e = h.src->ops->service(h.src, n > 0 ? p.revents : 0);
			if (e < 0 && !h.session_err)
				h.session_err = e;
		}
	}
	if (h.src) {
		if (h.inflight)
			h.gen++;
		chunk_source_free(h.src);
	}
	if (h.since)
		commit_if_due(&h, 1);
	st->elapsed_ms = now_ms() - t0;
	for (unsigned i = 0; i < h.depth; i++)
		free(h.slots[i].buf);
	free(h.slots);
	free(h.rejected);
	free(h.zero_buf);
	if (h.io_err)
		return h.io_err;
	if (open_err)
		return open_err == -ETIMEDOUT || open_err == 0 ? -ETIMEDOUT : open_err;
	if (st->h.rejected)
		return -EBADMSG;
	return cache_slot_present_count(c, slot) == h.n ? 0 : -ENODATA;
}
