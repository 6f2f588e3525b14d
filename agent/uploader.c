/* The sync uploader (see uploader.h, docs/sync.md, docs/agent.md "Sync").
 *
 * Unit: the cache's dirty block (64 KiB by default) is also the commit's
 * chunk_size, so exactly the dirty bytes travel (bytes sent / dirty bytes =
 * 1.0, the goal is 1.05); a 1 MiB commit chunk would send up to 16x the bytes
 * a scattered 4 KiB write dirtied. Block i goes to byte i * block of LUN 2.
 *
 * Steps: the dirty blocks (all of them when the map is not proven complete:
 * DIRTY_ALL) are read from the volume, hashed from the very buffer that is
 * written, and written with `depth` WRITE16s in flight. Writes to the volume
 * from this moment on are tracked (cache_dirty_track). Then POST commit with
 * base_snapshot = the last acknowledged snapshot (kept in state_path), poll
 * until done. Only then: state_path gets the new snapshot id (atomically,
 * first: a crash right after it re-uploads still-dirty blocks against the new
 * base, which is right; the other order would commit later changes against a
 * base missing these), and the dirty bits of the committed blocks that were
 * not written again meanwhile are cleared (cache_sync_done), last_sync set.
 *
 * Full commits: with no recorded base while the cache has synced before (the
 * state file was lost), or when the appliance answers base_missing /
 * base_geometry, every non-zero block is listed with base_snapshot null (zero
 * blocks are inherited as zero from "no base").
 *
 * Failures: a lost session or a failed commit (mismatch, io, none after an
 * appliance restart) repeats upload + commit up to `attempts` times with a
 * backoff of 0.5 s doubling; the dirty bits are never touched before a done. */
#include "agent/uploader.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/apiclient.h"
#include "agent/cache.h"
#include "agent/fetch.h"
#include "lib/hash.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

struct up_item {
	uint64_t block;
	struct hash id;
};

struct up;
struct up_slot {
	struct up *u;
	uint8_t *buf;
	int busy;
};

struct up {
	struct cache *c;
	struct fetch *f;
	uint32_t bs;
	uint64_t vsize;
	uint64_t *cand; /* candidate blocks */
	size_t ncand, next;
	int skip_zero;
	struct up_item *items;
	size_t nitems;
	int err;
	uint64_t sent;
	int delay_ms; /* GOLDAGENT_TEST_CHUNK_DELAY_MS */
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void write_done(void *arg, int err, uint64_t off, size_t len)
{
	struct up_slot *s = arg;

	(void)off;
	s->busy = 0;
	if (err && !s->u->err)
		s->u->err = err;
	if (!err)
		s->u->sent += len;
}

/* Issues the next candidate into slot s; 1 when none is left. */
static int issue(struct up *u, struct up_slot *s)
{
	while (u->next < u->ncand) {
		uint64_t b = u->cand[u->next++], off = b * u->bs;
		size_t len = (size_t)MIN((uint64_t)u->bs, u->vsize - off);
		int r = cache_vol_read(u->c, s->buf, off, len);

		if (r < 0) {
			u->err = r;
			return 1;
		}
		if (u->skip_zero && all_zero(s->buf, len))
			continue;
		/* the LUN takes whole 512-byte sectors; a short tail is padded with zeros */
		if (len % 512) {
			memset(s->buf + len, 0, 512 - len % 512);
			len += 512 - len % 512;
		}
		u->items[u->nitems].block = b;
		hash_buf(s->buf, (size_t)MIN((uint64_t)u->bs, u->vsize - off),
			 &u->items[u->nitems].id);
		u->nitems++;
		if (u->delay_ms) /* tests: widen the window for kills */
			sleep_ms((unsigned)u->delay_ms);
		s->busy = 1;
		r = fetch_write(u->f, off, s->buf, len, write_done, s);
		if (r < 0) {
			s->busy = 0;
			u->err = r;
			return 1;
		}
		return 0;
	}
	return 1;
}

static int upload_all(struct up *u, unsigned depth)
{
	struct up_slot *slots = xcalloc(depth, sizeof(*slots));
	int more = 1;

	for (unsigned i = 0; i < depth; i++) {
		slots[i].u = u;
		slots[i].buf = xmalloc(u->bs + 512);
	}
	for (;;) {
		unsigned busy = 0;

		for (unsigned i = 0; i < depth && more && !u->err; i++)
			if (!slots[i].busy && issue(u, &slots[i]))
				more = 0;
		for (unsigned i = 0; i < depth; i++)
			busy += (unsigned)slots[i].busy;
		if (u->err || (!more && busy == 0))
			break;
		{
			struct pollfd p = {.fd = fetch_fd(u->f),
					   .events = (short)fetch_events(u->f)};
			int n = poll(&p, 1, 100), e = fetch_service(u->f, n > 0 ? p.revents : 0);

			if (e < 0 && !u->err)
				u->err = e;
		}
	}
	if (!u->err)
		u->err = fetch_drain(u->f, 60000);
	for (unsigned i = 0; i < depth; i++)
		free(slots[i].buf);
	free(slots);
	return u->err;
}

/* The base the next commit names, from state_path: "snapshot N" (this
 * machine's N: its last acknowledged commit, or a reset to N), "snapshot
 * FROM@N" (restored from FROM's snapshot N: agent/restore.c), "snapshot none"
 * (a fresh reset: no base, and the volume is known all-zero but for its dirty
 * blocks, so no full commit). from gets "" or FROM. */
static int read_base(const char *path, uint32_t *snap, char *from, size_t fsize, int *fresh)
{
	char *s = NULL, *at;
	size_t n = 0;
	int r = io_read_file(path, 256, &s, &n);

	*snap = 0;
	*fresh = 0;
	from[0] = '\0';
	if (r < 0)
		return r;
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
	if (strncmp(s, "snapshot ", 9) != 0) {
		r = -EBADMSG;
	} else if (strcmp(s + 9, "none") == 0) {
		*fresh = 1;
		r = 0;
	} else if ((at = strchr(s + 9, '@'))) {
		*at = '\0';
		r = name_is_valid(s + 9) && fmt_buf(from, fsize, "%s", s + 9) == 0
			    ? parse_u32(at + 1, snap)
			    : -EBADMSG;
		if (r < 0)
			from[0] = '\0';
	} else {
		r = parse_u32(s + 9, snap);
	}
	free(s);
	return r;
}

int upload_base_set(const char *state_path, const char *from, uint32_t snap)
{
	char line[128];
	int r;

	if (!snap)
		fmt_buf(line, sizeof(line), "snapshot none\n");
	else if (from)
		fmt_buf(line, sizeof(line), "snapshot %s@%u\n", from, snap);
	else
		fmt_buf(line, sizeof(line), "snapshot %u\n", snap);
	r = io_write_file_atomic(state_path, line, strlen(line), 0644);
	if (r < 0)
		log_error("cannot record the sync base in '%s': %s", state_path, strerror(-r));
	return r;
}

static char *commit_body(const struct up *u, uint32_t base, const char *from, size_t *len)
{
	size_t cap = 256 + u->nitems * 96, n = 0;
	char *b = xmalloc(cap), hex[HASH_HEX_LEN + 1];

	n += (size_t)snprintf(b + n, cap - n, "{\"volume_size\": %" PRIu64 ", \"chunk_size\": %u, ",
			      u->vsize, u->bs);
	if (base && from[0])
		n += (size_t)snprintf(b + n, cap - n, "\"base_snapshot\": \"%s@%u\", ", from, base);
	else if (base)
		n += (size_t)snprintf(b + n, cap - n, "\"base_snapshot\": %u, ", base);
	else
		n += (size_t)snprintf(b + n, cap - n, "\"base_snapshot\": null, ");
	n += (size_t)snprintf(b + n, cap - n, "\"chunks\": [");
	for (size_t i = 0; i < u->nitems; i++) {
		hash_to_hex(&u->items[i].id, hex);
		n += (size_t)snprintf(b + n, cap - n,
				      "%s{\"index\": %" PRIu64 ", \"sha256\": \"%s\"}",
				      i ? ", " : "", u->items[i].block, hex);
	}
	n += (size_t)snprintf(b + n, cap - n, "]}");
	*len = n;
	return b;
}

int upload_sync(struct cache *c, const struct upl_opts *o, struct upl_stats *stp)
{
	const struct cache_header *h = cache_header(c);
	struct upl_stats st0 = {0}, *st = stp ? stp : &st0;
	struct up u = {.c = c, .bs = h->geo.dirty_block_size, .vsize = h->geo.volume_size};
	unsigned attempts = o->attempts ? o->attempts : 5, backoff = 500;
	uint32_t base = 0;
	char from[72];
	int dirty_all = (h->flags & CACHE_F_DIRTY_ALL) != 0, full, fresh, r = -EIO;
	uint64_t *blocks = NULL;
	size_t nblocks = 0;

	memset(st, 0, sizeof(*st));
	if (h->flags & CACHE_F_RESTORING) {
		/* its dirty bits describe the volume before the restore began */
		log_error("sync: the machine volume in '%s' is half-restored (order %lld): nothing "
			  "synced until an online goldagent attach completes the restore",
			  cache_path(c), (long long)h->restore_order);
		return -EBUSY;
	}
	if (getenv("GOLDAGENT_TEST_CHUNK_DELAY_MS"))
		parse_int(getenv("GOLDAGENT_TEST_CHUNK_DELAY_MS"), 0, 10000, &u.delay_ms);
	if (read_base(o->state_path, &base, from, sizeof(from), &fresh) < 0)
		base = 0, fresh = 0;
	full = base == 0 && h->last_sync != 0 && !fresh;
	for (uint64_t b = 0; b < h->geo.nblocks; b++)
		if (dirty_all || full || cache_block_dirty(c, b))
			nblocks++;
	blocks = xmalloc((nblocks ? nblocks : 1) * sizeof(*blocks));
	nblocks = 0;
	for (uint64_t b = 0; b < h->geo.nblocks; b++)
		if (dirty_all || full || cache_block_dirty(c, b))
			blocks[nblocks++] = b;
	st->dirty_blocks = dirty_all || full ? cache_dirty_count(c) : nblocks;
	st->dirty_bytes = 0;
	for (size_t i = 0; i < nblocks; i++)
		if (dirty_all || cache_block_dirty(c, blocks[i]))
			st->dirty_bytes += MIN((uint64_t)u.bs, u.vsize - blocks[i] * u.bs);
	if (nblocks == 0) {
		log_info("sync: no dirty block, nothing to commit");
		free(blocks);
		return 0;
	}
	u.cand = blocks;
	u.ncand = nblocks;
	u.items = xmalloc(nblocks * sizeof(*u.items));
	cache_dirty_track(c, 1);
	while (st->attempts < attempts) {
		struct apic_commit_status cs;
		uint64_t t0 = now_ms();
		char *body, line[64];
		size_t blen;

		st->attempts++;
		if (st->attempts > 1) {
			log_warn("sync: attempt %u in %u ms", st->attempts, backoff);
			sleep_ms(backoff);
			backoff = MIN(backoff * 2, 10000u);
		}
		u.next = 0;
		u.nitems = 0;
		u.err = 0;
		u.sent = 0;
		u.skip_zero = base == 0 && !dirty_all && full;
		r = fetch_open(o->target, o->timeout_s ? o->timeout_s : 10, &u.f);
		if (r < 0)
			continue;
		r = upload_all(&u, o->depth ? o->depth : 8);
		fetch_free(u.f);
		u.f = NULL;
		st->upload_ms = now_ms() - t0;
		if (r < 0) {
			log_warn("sync: upload to %s failed: %s", o->target->iqn, strerror(-r));
			continue;
		}
		st->sent_blocks = u.nitems;
		st->sent_bytes = u.sent;
		t0 = now_ms();
		body = commit_body(&u, base, from, &blen);
		r = apic_commit(o->api, body, blen, 20, 600000, &cs);
		free(body);
		st->commit_ms = now_ms() - t0;
		if (r < 0) {
			if (apic_unreachable(r))
				continue;
			break;
		}
		if (strcmp(cs.state, "done") != 0) {
			log_warn("sync: commit %s (%s): %s", cs.state, cs.reason, cs.error);
			if (strcmp(cs.reason, "base_missing") == 0 ||
			    strcmp(cs.reason, "base_geometry") == 0) {
				log_warn("sync: base snapshot %u unusable: committing in full",
					 base);
				base = 0;
				from[0] = '\0';
				full = 1;
				free(blocks);
				nblocks = (size_t)h->geo.nblocks;
				blocks = xmalloc(nblocks * sizeof(*blocks));
				for (size_t i = 0; i < nblocks; i++)
					blocks[i] = i;
				u.cand = blocks;
				u.ncand = nblocks;
				free(u.items);
				u.items = xmalloc(nblocks * sizeof(*u.items));
			}
			r = -EIO;
			continue;
		}
		st->snapshot = cs.snapshot;
		fmt_buf(line, sizeof(line), "snapshot %u\n", cs.snapshot);
		r = io_write_file_atomic(o->state_path, line, strlen(line), 0644);
		if (r < 0) {
			log_error("sync: cannot record snapshot %u in '%s': %s (dirty bits kept)",
				  cs.snapshot, o->state_path, strerror(-r));
			break;
		}
		r = cache_sync_done(c, blocks, nblocks, dirty_all || full, now_unix(),
				    &st->cleared);
		if (r == 0)
			log_info("sync: snapshot %u committed: %llu blocks, %llu bytes sent for "
				 "%llu dirty bytes, %llu dirty bits cleared",
				 cs.snapshot, (unsigned long long)st->sent_blocks,
				 (unsigned long long)st->sent_bytes,
				 (unsigned long long)st->dirty_bytes,
				 (unsigned long long)st->cleared);
		break;
	}
	cache_dirty_track(c, 0);
	free(u.items);
	free(blocks);
	if (r < 0)
		log_error("sync failed after %u attempts: %s (dirty blocks stay dirty)",
			  st->attempts, strerror(-r));
	return r;
}
