/* goldagent's delta pass (see delta.h; the format is lib/delta.h).
 *
 * Candidates: chunks of the new version absent in the slot being filled,
 * not zero (written locally by the hydrator), whose hash is not anywhere in
 * the old version (the hydrator copies those from the active slot), and
 * whose old chunk at the same index is present in the active slot, or is a
 * zero chunk or beyond the old image's end (then the frame has no prefix:
 * the chunk plainly compressed). They are asked for in batches
 * (POST /api/v1/images/IMAGE/delta), at most DELTA_MAX_CHUNKS and about 32 MiB
 * of chunks per request, so an answer is bounded before it is read.
 *
 * Applying a record: the frame must answer the chunk asked in that position;
 * it is decompressed into a buffer of exactly the chunk's length with the
 * active slot's chunk as prefix (lib/delta.c bounds the window and the output
 * size), verified against the new manifest's hash, written into the slot, and
 * made present by the batch's cache_commit (data fdatasync, then the present
 * map): the hydrator's ordering. A record that fails any step leaves its
 * chunk absent, and hydrate_pipelined fetches it over iSCSI afterwards.
 * A request the appliance does not answer (unreachable, cut) is tried three
 * times (1 s, then 2 s apart); then the pass stops and the rest goes to the
 * hydrator, which has its own reconnects and give-up time. */
#include "agent/delta.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/apiclient.h"
#include "agent/cache.h"
#include "agent/source.h"
#include "lib/delta.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/util.h"

#define BATCH_BYTES ((uint64_t)32 << 20)

struct applier {
	struct cache *c;
	int slot, old_slot;
	const struct chunk_hashes *hs, *old;
	const uint64_t *asked;
	size_t n, next;
	ZSTD_DCtx *dc;
	uint8_t *oldb, *newb;
	struct delta_stats *st;
	int io_err;
};

/* The prefix for chunk idx: 1 and *p, *plen (0: none) when usable. */
static int prefix_of(struct applier *a, uint64_t idx, const uint8_t **p, size_t *plen)
{
	size_t len;

	*p = NULL;
	*plen = 0;
	if (idx >= a->old->n || a->old->zero[idx] || idx >= cache_slot_chunks(a->c, a->old_slot))
		return 1;
	if (!cache_chunk_present(a->c, a->old_slot, idx))
		return 0;
	len = cache_chunk_len(a->c, a->old_slot, idx);
	if (cache_chunk_read_raw(a->c, a->old_slot, idx, a->oldb, len) < 0)
		return 0;
	*p = a->oldb;
	*plen = len;
	return 1;
}

static int on_record(void *arg, const struct delta_rec *r)
{
	struct applier *a = arg;
	const uint8_t *p;
	size_t plen, len;
	int rc;

	if (a->next >= a->n || r->idx != a->asked[a->next]) {
		log_warn("delta answer: record %zu is for chunk %llu, chunk %llu was asked",
			 a->next + 1, (unsigned long long)r->idx,
			 a->next < a->n ? (unsigned long long)a->asked[a->next] : 0ull);
		return -EBADMSG;
	}
	a->next++;
	if (r->status != DELTA_OK) {
		a->st->fallback++;
		return 0;
	}
	len = cache_chunk_len(a->c, a->slot, r->idx);
	if (!prefix_of(a, r->idx, &p, &plen)) {
		a->st->fallback++;
		return 0;
	}
	rc = delta_decompress(a->dc, p, plen, r->frame, r->len, a->newb, len);
	if (rc == 0)
		rc = chunk_hashes_verify(a->hs, r->idx, a->newb, len);
	if (rc < 0) {
		log_warn("delta for chunk %llu rejected (%s): it is fetched over iSCSI",
			 (unsigned long long)r->idx,
			 rc == -EBADMSG ? "does not decode to the new manifest's chunk"
					: strerror(-rc));
		a->st->rejected++;
		return 0;
	}
	rc = cache_chunk_write(a->c, a->slot, r->idx, a->newb, len);
	if (rc == -EEXIST)
		return 0;
	if (rc < 0) {
		a->io_err = rc;
		return rc;
	}
	a->st->applied++;
	a->st->chunk_bytes += len;
	return 0;
}

int delta_apply(struct cache *c, int slot, const struct chunk_hashes *hs, int old_slot,
		const struct chunk_hashes *old, const uint64_t *asked, size_t n, const uint8_t *buf,
		size_t len, struct delta_stats *st)
{
	size_t cs = cache_header(c)->geo.chunk_size;
	struct applier a = {.c = c,
			    .slot = slot,
			    .old_slot = old_slot,
			    .hs = hs,
			    .old = old,
			    .asked = asked,
			    .n = n,
			    .st = st};
	char err[256];
	int rc;

	a.dc = ZSTD_createDCtx();
	if (!a.dc)
		return -ENOMEM;
	a.oldb = xmalloc(cs);
	a.newb = xmalloc(cs);
	rc = delta_parse(buf, len, (uint32_t)cs, (uint32_t)n, on_record, &a, err, sizeof(err));
	if (rc < 0 && !a.io_err)
		log_warn("delta answer (%zu bytes) for %zu chunks: %s: %zu chunks left for iSCSI",
			 len, n, rc == -EBADMSG && !err[0] ? "record out of order" : err,
			 n - a.next);
	st->fallback += n - a.next;
	ZSTD_freeDCtx(a.dc);
	free(a.oldb);
	free(a.newb);
	if (a.io_err)
		return a.io_err;
	return cache_commit(c);
}

static int cmp_hash(const void *x, const void *y)
{
	return memcmp(x, y, HASH_LEN);
}

/* The sorted non-zero hashes of old, for "is this chunk copyable". */
static struct hash *old_set(const struct chunk_hashes *old, size_t *n)
{
	struct hash *v = xmalloc((old->n ? old->n : 1) * sizeof(*v));

	*n = 0;
	for (uint64_t i = 0; i < old->n; i++)
		if (!old->zero[i])
			v[(*n)++] = old->h[i];
	qsort(v, *n, sizeof(*v), cmp_hash);
	return v;
}

int delta_pass(struct cache *c, int slot, const struct chunk_hashes *hs, const struct delta_opts *o,
	       struct delta_stats *st)
{
	uint64_t start = now_ms(), nch = MIN(hs->n, cache_slot_chunks(c, slot));
	size_t cs = cache_header(c)->geo.chunk_size, nold, batch, n = 0;
	struct hash *set = old_set(o->old, &nold);
	uint64_t *idx;
	int rc = 0;

	memset(st, 0, sizeof(*st));
	if (cs > DELTA_MAX_CHUNK_SIZE) { /* the appliance offers none */
		free(set);
		return 0;
	}
	batch = o->batch ? o->batch : (size_t)MIN(DELTA_MAX_CHUNKS, MAX(1, BATCH_BYTES / cs));
	batch = MIN(batch, DELTA_MAX_CHUNKS);
	idx = xmalloc(batch * sizeof(*idx));
	for (uint64_t i = 0; i <= nch && rc == 0; i++) {
		if (i < nch) {
			if (hs->zero[i] || cache_chunk_present(c, slot, i) ||
			    cache_chunk_pending(c, slot, i) ||
			    bsearch(&hs->h[i], set, nold, sizeof(*set), cmp_hash))
				continue;
			if (i < o->old->n && !o->old->zero[i] &&
			    (i >= cache_slot_chunks(c, o->old_slot) ||
			     !cache_chunk_present(c, o->old_slot, i)))
				continue; /* no old chunk to patch: iSCSI */
			idx[n++] = i;
			st->candidates++;
		}
		if (n == batch || (i == nch && n)) {
			char *body = NULL;
			size_t len = 0;

			/* a link that drops for a moment costs a retry, not every
			 * remaining chunk whole over iSCSI */
			for (unsigned attempt = 0;; attempt++) {
				rc = apic_delta_post(o->api, o->image, o->from, o->to, idx, n,
						     DELTA_HDR_LEN + n * (DELTA_REC_LEN + cs),
						     &body, &len);
				st->requests++;
				if (rc == 0 || !apic_unreachable(rc) || attempt == 2)
					break;
				sleep(1u << attempt);
			}
			if (rc == 0) {
				st->wire_bytes += len;
				rc = delta_apply(c, slot, hs, o->old_slot, o->old, idx, n,
						 (const uint8_t *)body, len, st);
			} else {
				st->fallback += n;
			}
			free(body);
			n = 0;
		}
	}
	if (rc < 0) /* the chunks not asked yet are left for the hydrator too */
		st->fallback = st->candidates - st->applied - st->rejected;
	free(idx);
	free(set);
	st->elapsed_ms = now_ms() - start;
	return rc;
}
