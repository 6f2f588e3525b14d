/* Restore and reset orders, agent side (see restore.h, docs/restore.md).
 *
 * The appliance serves the snapshot an order names as LUN 3 of the machine's
 * own target (read-only, appliance/restore.c); the machine state says when
 * ("hydrate": {"lun": 3, "size": N, "lun_state": "ready"}). The snapshot's
 * manifest comes from the API (GET .../machines/FROM/snapshots/SNAP/manifest,
 * which the order makes readable to this machine's token), so every chunk
 * read from the LUN is checked against the hash the store recorded: a
 * tampered LUN file, a wrong LUN, a bit flipped on the wire are refused.
 *
 * Crash safety (cache.h "restore"): the header's CACHE_F_RESTORING flag and
 * the order id are durable before the first volume byte changes; restored
 * chunks are written without dirty bits (the volume becomes the new sync base,
 * not a change); at the end: data fdatasync, the sync base recorded in the
 * uploader's state file, dirty map cleared and fdatasynced, then the header
 * (flag off, restore_done = order). A kill at any instant before that last
 * write leaves the flag set: the next online attach restarts the restore from
 * the first chunk (restoring is idempotent), an offline start refuses. Only
 * then POST .../hydrated: a crash before it finds restore_done == the pending
 * order at the next attach and only acknowledges. 409 means a newer order
 * replaced this one meanwhile: it is carried out in turn.
 *
 * Zero chunks of the manifest and the volume beyond the snapshot's size are
 * zeroed (holes where the file system can), never read from the LUN.
 *
 * Speed: as in the hydrator, the loop only keeps `depth` reads on the wire;
 * each chunk that arrives is verified and written into the volume by the
 * agent's workpool threads (SHA-256 and the write cost about 0.85 ms per
 * MiB, which on the loop left the wire idle), two at a time when two are
 * queued (chunk_hashes_verify2: two-lane SHA-NI, about half the CPU), a lone
 * one waiting for its partner while more reads are out (workpool_hold); the
 * loop takes the verdicts back. A slot is FREE -> WIRE (read out) -> WORK
 * (in the pool) -> FREE; there are depth + 2 x threads + 1 slots (at least
 * 2 x depth) so the wire stays full while the threads work. */
#include "agent/restore.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/apiclient.h"
#include "agent/cache.h"
#include "agent/fetch.h"
#include "agent/source.h"
#include "agent/uploader.h"
#include "agent/workpool.h"
#include "lib/log.h"
#include "lib/manifest.h"
#include "lib/util.h"

#define RESTORE_POLL_MS 500
#define RESTORE_MAX_INFLIGHT_BYTES (64u << 20)
#define RESTORE_ROUNDS 8 /* orders replaced while we work before we give up */

struct rs;
enum { RS_FREE, RS_WIRE, RS_WORK };
struct rs_slot {
	/* first: the pool hands it back; verdict, set by the pool thread: 0
	 * written, -EBADMSG no match, or the write's error */
	struct chunk_check ck;
	struct rs *x;
	uint64_t off;
	int state; /* RS_*, the loop's */
};

struct rs {
	struct cache *c;
	struct fetch *f;
	const struct manifest *m;
	struct chunk_hashes hs;
	uint8_t *done; /* bit per chunk: written (this run) */
	uint64_t next, ndone;
	struct workpool *pool;
	unsigned wire, queued; /* slots in RS_WIRE, RS_WORK */
	int err;
	int fatal; /* a local failure or a bad chunk: another session would not help */
	int delay_ms; /* GOLDAGENT_TEST_CHUNK_DELAY_MS: widens the window for kill tests */
	struct restore_stats *st;
};

/* On a pool thread: verify the chunk, then write it into the volume (the
 * restore marker is set and the header does not change while chunks are
 * copied, so cache_restore_write only reads it). */
static void rs_work(void *ctx, struct work_item *items)
{
	struct rs *x = ctx;

	(void)chunk_checks_verify(&x->hs, items); /* a pair: hashed together */
	for (struct work_item *it = items; it; it = it->next) {
		struct rs_slot *s = (struct rs_slot *)it;

		if (s->ck.verdict == 0)
			s->ck.verdict = cache_restore_write(x->c, s->ck.buf, s->off, s->ck.len);
	}
}

static void read_done(void *arg, int err, uint64_t off, size_t len)
{
	struct rs_slot *s = arg;
	struct rs *x = s->x;

	(void)off;
	(void)len;
	x->wire--;
	s->state = RS_FREE;
	if (x->err)
		return;
	if (err) {
		x->err = err;
		return;
	}
	s->state = RS_WORK;
	x->queued++;
	workpool_push(x->pool, &s->ck.wi);
}

/* Takes the pool's verdicts back: written chunks are done, a mismatch or a
 * failed write ends the restore (another session would not help). */
static void collect(struct rs *x)
{
	char hex[HASH_HEX_LEN + 1];
	struct work_item *it, *next;

	for (it = workpool_take(x->pool); it; it = next) {
		struct rs_slot *s = (struct rs_slot *)it;

		next = it->next;
		x->queued--;
		s->state = RS_FREE;
		if (s->ck.verdict == -EBADMSG || s->ck.verdict == -ERANGE) {
			log_error(
				"restore: chunk %llu at offset %llu of %s@%u read from the restore "
				"LUN does not match the snapshot's hash %s: refused (the volume "
				"stays half-restored; the appliance's restore file is damaged)",
				(unsigned long long)s->ck.idx, (unsigned long long)s->off,
				x->m->name, x->m->version,
				hash_to_hex(&x->m->chunks[s->ck.idx].id, hex));
			x->err = -EBADMSG;
			x->fatal = 1;
			continue;
		}
		if (s->ck.verdict < 0) { /* the write failed (logged) */
			if (!x->fatal)
				x->err = s->ck.verdict;
			x->fatal = 1;
			continue;
		}
		x->done[s->ck.idx >> 3] |= (uint8_t)(1u << (s->ck.idx & 7));
		x->ndone++;
		x->st->chunks++;
		x->st->bytes += s->ck.len;
	}
}

/* Issues the next chunk not yet written into slot s (zero chunks are zeroed
 * on the way); 1 when none is left. */
static int issue(struct rs *x, struct rs_slot *s)
{
	while (x->next < x->m->nchunks) {
		uint64_t i = x->next++, off = i * x->m->chunk_size;
		uint32_t len = manifest_chunk_len(x->m, i);
		int r;

		if (x->done[i >> 3] & (1u << (i & 7)))
			continue;
		if (x->m->chunks[i].zero) {
			r = cache_restore_zero(x->c, off, len);
			if (r < 0) {
				x->err = r;
				x->fatal = 1;
				return 1;
			}
			x->done[i >> 3] |= (uint8_t)(1u << (i & 7));
			x->ndone++;
			x->st->zero_chunks++;
			continue;
		}
		if (x->delay_ms)
			sleep_ms((unsigned)x->delay_ms);
		s->ck.idx = i;
		s->off = off;
		s->ck.len = len;
		s->state = RS_WIRE;
		x->wire++;
		r = fetch_read(x->f, off, s->ck.buf, len, read_done, s);
		if (r < 0) {
			s->state = RS_FREE;
			x->wire--;
			x->err = r;
			return 1;
		}
		return 0;
	}
	return 1;
}

/* Waits until every chunk handed to the pool is back and collected. */
static void collect_all(struct rs *x)
{
	workpool_hold(x->pool, 0); /* a lone chunk gets no partner now */
	while (x->queued) {
		struct pollfd p = {.fd = workpool_fd(x->pool), .events = POLLIN};

		poll(&p, 1, 100);
		collect(x);
	}
}

/* One pass over the chunks not yet written, on one session. */
static int copy_pass(struct rs *x, unsigned depth)
{
	/* never more than twice the in-flight byte cap in buffers */
	unsigned nslots = MIN(MAX(2 * depth, depth + 2 * workpool_threads(x->pool) + 1),
			      MAX(depth + 1, 2 * RESTORE_MAX_INFLIGHT_BYTES / x->m->chunk_size));
	struct rs_slot *slots = xcalloc(nslots, sizeof(*slots));
	int more = 1;

	for (unsigned i = 0; i < nslots; i++) {
		slots[i].x = x;
		slots[i].ck.buf = xmalloc(x->m->chunk_size);
	}
	x->next = 0;
	x->err = 0;
	x->wire = 0;
	for (;;) {
		collect(x);
		for (unsigned i = 0; i < nslots && more && !x->err && x->wire < depth; i++)
			if (slots[i].state == RS_FREE && issue(x, &slots[i]))
				more = 0;
		/* a lone verified chunk waits for a partner only while one is coming */
		workpool_hold(x->pool, x->wire > 0 && !x->err);
		if ((x->err || !more) && x->wire == 0 && x->queued == 0)
			break;
		{
			struct pollfd p[2] = {
				{.fd = fetch_fd(x->f), .events = (short)fetch_events(x->f)},
				{.fd = workpool_fd(x->pool), .events = POLLIN}};
			int n = poll(p, 2, 100), e = fetch_service(x->f, n > 0 ? p[0].revents : 0);

			if (e < 0) {
				if (!x->err)
					x->err = e;
				break; /* the session is gone: nothing more completes */
			}
		}
	}
	/* what the pool holds arrived whole: keep it (written, or refused) */
	collect_all(x);
	/* buffers of requests still queued: fetch_free cancels them before we free */
	fetch_free(x->f);
	x->f = NULL;
	for (unsigned i = 0; i < nslots; i++)
		free(slots[i].ck.buf);
	free(slots);
	return x->err;
}

/* Polls the machine state until the order's LUN is served. 0 (m->hydrate_lun
 * set), -EAGAIN (another order replaced it: m holds the new one), or -errno. */
static int wait_lun(const struct restore_opts *o, struct apic_machine *m, uint64_t need)
{
	int64_t id = m->hydrate_id;
	uint64_t t0 = now_ms(), give_up = o->give_up_ms ? o->give_up_ms : 300000;
	int logged = 0, r;

	for (;;) {
		if (m->hydrate_id != id)
			return -EAGAIN;
		if (m->hydrate_lun > 0) {
			if (m->hydrate_size < need) {
				log_error("restore: the restore LUN %d holds %llu bytes, the "
					  "snapshot "
					  "%llu: refused",
					  m->hydrate_lun, (unsigned long long)m->hydrate_size,
					  (unsigned long long)need);
				return -EBADMSG;
			}
			return 0;
		}
		if (!m->hydrate_lun_state[0]) {
			log_error("restore: the appliance does not serve the order's snapshot as a "
				  "LUN (goldcached too old for restores): upgrade it");
			return -EPROTONOSUPPORT;
		}
		if (now_ms() - t0 > give_up) {
			log_error("restore: the appliance did not serve %s@%u within %llu s (LUN "
				  "state '%s'): try again later",
				  m->hydrate_from, m->hydrate_snapshot,
				  (unsigned long long)(give_up / 1000), m->hydrate_lun_state);
			return -ETIMEDOUT;
		}
		if (!logged++)
			log_info("restore: waiting for the appliance to serve %s@%u (%s)",
				 m->hydrate_from, m->hydrate_snapshot, m->hydrate_lun_state);
		sleep_ms(RESTORE_POLL_MS);
		r = apic_machine_get(o->api, m);
		if (r < 0)
			return r;
	}
}

/* Copies the snapshot from the LUN into the (marked) volume, retrying lost
 * sessions with backoff; chunks already written in this run are not read again. */
static int copy_snapshot(struct cache *c, const struct manifest *mf, int lun,
			 const struct restore_opts *o, struct restore_stats *st)
{
	const struct apic_iscsi *l = o->login;
	struct fetch_target t = {.portal = l->portal,
				 .iqn = l->target,
				 .initiator = l->initiator,
				 .user = l->user,
				 .secret = l->secret,
				 .lun = lun};
	struct rs x = {.c = c, .m = mf, .st = st};
	unsigned depth = o->depth ? o->depth : 8, backoff = 500;
	uint64_t give_up = o->give_up_ms ? o->give_up_ms : 300000, last = now_ms();
	int r = 0;

	if (depth > RESTORE_MAX_INFLIGHT_BYTES / mf->chunk_size)
		depth = MAX(1u, RESTORE_MAX_INFLIGHT_BYTES / mf->chunk_size);
	if (getenv("GOLDAGENT_TEST_CHUNK_DELAY_MS"))
		parse_int(getenv("GOLDAGENT_TEST_CHUNK_DELAY_MS"), 0, 10000, &x.delay_ms);
	r = workpool_new(0, 2, rs_work, &x, &x.pool);
	if (r < 0)
		return r;
	chunk_hashes_from_manifest(mf, &x.hs);
	x.done = xcalloc((size_t)(mf->nchunks + 7) / 8, 1);
	for (;;) {
		uint64_t before = x.ndone;

		st->attempts++;
		r = fetch_open(&t, o->timeout_s ? o->timeout_s : 10, &x.f);
		if (r == 0 && fetch_size(x.f) < mf->size) {
			log_error("restore: LUN %d of %s holds %llu bytes, snapshot %s@%u %llu",
				  lun, l->target, (unsigned long long)fetch_size(x.f), mf->name,
				  mf->version, (unsigned long long)mf->size);
			fetch_free(x.f);
			x.f = NULL;
			r = -EBADMSG;
			break;
		}
		if (r == -ENOENT || r == -EACCES)
			break; /* no LUN 3 (any more), or refused: the caller checks the order */
		if (r == 0)
			r = copy_pass(&x, depth);
		if (x.ndone == mf->nchunks && !x.fatal)
			r = 0;
		if (r == 0 || x.fatal || r == -EBADMSG)
			break;
		if (x.ndone > before)
			last = now_ms();
		if (now_ms() - last > give_up) {
			log_error("restore: no progress reading LUN %d of %s for %llu s: %s", lun,
				  l->target, (unsigned long long)(give_up / 1000), strerror(-r));
			r = -ETIMEDOUT;
			break;
		}
		log_warn("restore: reading LUN %d of %s failed (%s): again in %u ms", lun,
			 l->target, strerror(-r), backoff);
		sleep_ms(backoff);
		backoff = MIN(backoff * 2, 10000u);
	}
	if (r == 0 && x.ndone != mf->nchunks)
		r = -EIO;
	workpool_free(x.pool);
	free(x.done);
	chunk_hashes_release(&x.hs);
	return r;
}

/* Carries out order m (not yet acknowledged). -EAGAIN: replaced meanwhile. */
static int carry_out(struct cache *c, struct apic_machine *m, const struct restore_opts *o,
		     struct restore_stats *st)
{
	const struct cache_header *h = cache_header(c);
	uint64_t vsize = h->geo.volume_size, t0 = now_ms();
	struct manifest *mf = NULL;
	int own = strcmp(m->hydrate_from, o->api->machine) == 0, r;

	*st = (struct restore_stats){.order = m->hydrate_id}; /* per order carried out */
	if (m->hydrate_snapshot) {
		r = apic_snapshot_manifest_get(o->api, m->hydrate_from, m->hydrate_snapshot, &mf);
		if (r < 0)
			return r;
		if (mf->size > vsize) {
			log_error(
				"restore: snapshot %s@%u holds a %llu-byte volume, larger than "
				"this "
				"machine's %llu-byte volume in '%s': not restored, the order stays "
				"pending (give '%s' a profile with a volume_size of at least %llu, "
				"or order another snapshot)",
				mf->name, mf->version, (unsigned long long)mf->size,
				(unsigned long long)vsize, cache_path(c), o->api->machine,
				(unsigned long long)mf->size);
			manifest_free(mf);
			return -EFBIG;
		}
		r = wait_lun(o, m, mf->size);
		if (r < 0) {
			manifest_free(mf);
			return r;
		}
	}
	/* the marker before the first byte of the volume changes */
	r = cache_restore_begin(c, m->hydrate_id);
	if (r == 0) {
		if (mf)
			log_info("restore: order %lld (%s): the machine volume becomes %s@%u (%llu "
				 "bytes)",
				 (long long)m->hydrate_id, m->hydrate_kind, m->hydrate_from,
				 m->hydrate_snapshot, (unsigned long long)mf->size);
		else
			log_info("restore: order %lld (%s): the machine volume becomes a fresh, "
				 "empty one",
				 (long long)m->hydrate_id, m->hydrate_kind);
	}
	if (r == 0 && mf) {
		int64_t id = m->hydrate_id;
		uint64_t tc = now_ms();

		r = copy_snapshot(c, mf, m->hydrate_lun, o, st);
		st->copy_ms = now_ms() - tc;
		/* an order replaced meanwhile takes LUN 3 away or swaps its file:
		 * what failed was the old order, the new one starts over */
		if (r < 0 && apic_machine_get(o->api, m) == 0 && m->hydrate_id != id) {
			log_info("restore: order %lld was replaced while it was read: carrying out "
				 "order %lld",
				 (long long)id, (long long)m->hydrate_id);
			manifest_free(mf);
			return -EAGAIN;
		}
	}
	if (r == 0)
		r = cache_restore_zero(c, mf ? mf->size : 0, (size_t)(vsize - (mf ? mf->size : 0)));
	/* the base the next commit names, before the marker goes */
	if (r == 0)
		r = upload_base_set(o->base_path, own || !mf ? NULL : m->hydrate_from,
				    mf ? m->hydrate_snapshot : 0);
	if (r == 0)
		r = cache_restore_finish(c);
	st->elapsed_ms = now_ms() - t0;
	if (r == 0)
		log_info("restore: order %lld done: %llu chunks (%llu bytes) read and verified, "
			 "%llu zero chunks, %u sessions, %llu ms (copy %llu ms)",
			 (long long)m->hydrate_id, (unsigned long long)st->chunks,
			 (unsigned long long)st->bytes, (unsigned long long)st->zero_chunks,
			 st->attempts, (unsigned long long)st->elapsed_ms,
			 (unsigned long long)st->copy_ms);
	else
		log_error("restore: order %lld incomplete (%s): the machine volume in '%s' is "
			  "half-restored; the next online attach starts it again",
			  (long long)m->hydrate_id, strerror(-r), cache_path(c));
	manifest_free(mf);
	return r;
}

int restore_pending(struct cache *c, struct apic_machine *m, const struct restore_opts *o,
		    struct restore_stats *stp)
{
	struct restore_stats st0, *st = stp ? stp : &st0;
	int r;

	memset(st, 0, sizeof(*st));
	for (unsigned round = 0; round < RESTORE_ROUNDS; round++) {
		const struct cache_header *h = cache_header(c);

		if (!m->hydrate_id) {
			if (!(h->flags & CACHE_F_RESTORING))
				return 0;
			log_error(
				"cache '%s': the machine volume is half-restored (order %lld) and "
				"the appliance has no pending order for it: not served; order a "
				"restore or reset of '%s' (goldctl machine restore|reset)",
				cache_path(c), (long long)h->restore_order, o->api->machine);
			return -EUCLEAN;
		}
		st->order = m->hydrate_id;
		if ((h->flags & CACHE_F_RESTORING) || h->restore_done != m->hydrate_id) {
			r = carry_out(c, m, o, st);
			if (r == -EAGAIN)
				continue;
			if (r < 0)
				return r;
		} else {
			log_info("restore: order %lld was carried out before: acknowledging it",
				 (long long)m->hydrate_id);
		}
		r = apic_hydrated(o->api, m->hydrate_id);
		if (r == 0) {
			log_info("restore: order %lld acknowledged", (long long)m->hydrate_id);
			m->hydrate_id = 0;
			return 0;
		}
		if (apic_unreachable(r)) {
			log_warn("restore: order %lld is carried out but the appliance is "
				 "unreachable: "
				 "it is acknowledged at the next online attach",
				 (long long)m->hydrate_id);
			return 0;
		}
		if (r != -EEXIST)
			return r;
		log_info("restore: order %lld was replaced meanwhile: carrying out the new one",
			 (long long)m->hydrate_id);
		r = apic_machine_get(o->api, m);
		if (r < 0)
			return r;
	}
	log_error("restore: the order of '%s' kept changing while it was carried out: try again",
		  o->api->machine);
	return -EAGAIN;
}

int restore_offline_check(const struct cache *c, const char *url)
{
	const struct cache_header *h = cache_header(c);

	if (!(h->flags & CACHE_F_RESTORING))
		return 0;
	log_error("appliance %s unreachable and the machine volume in '%s' is half-restored "
		  "(order %lld was interrupted): cannot start offline; connect to the boot network "
		  "so the restore completes",
		  url, cache_path(c), (long long)h->restore_order);
	fprintf(stderr, "goldagent: offline and the machine volume is half-restored (order %lld)\n",
		(long long)h->restore_order);
	return -EUCLEAN;
}
