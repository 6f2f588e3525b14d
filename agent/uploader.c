/* The sync uploader (see uploader.h, docs/sync.md, docs/agent.md "Sync").
 *
 * Units: the cache tracks writes in dirty blocks (64 KiB by default); the
 * commit is in store chunks (the gold chunk size, 1 MiB), so a snapshot is
 * base + changed 1 MiB chunks and deduplicates with images. A chunk of which
 * only some blocks are dirty is uploaded in part: its dirty parts (a part is
 * the dirty block, or chunk / 64 when blocks are smaller) go to the LUN, the
 * claim names them ("parts") and carries the SHA-256 of those parts'
 * bytes; the appliance checks that hash on what it reads back, then lays the
 * parts over the base's chunk (verified by the store). So bytes sent / dirty
 * bytes stays 1.0, the agent reads and hashes only what it sends (a short
 * final pass), and hashes, chunk files and claims are per 1 MiB. Adjacent
 * parts go in one WRITE16.
 *
 * Consistency (a live sync, while the NBD loop serves the volume): pass 1
 * uploads the dirty blocks with writes flowing (cache_dirty_track records
 * what is written meanwhile); each further pass uploads the blocks written
 * during the previous one, until that set is small (final_bytes) or
 * max_passes were made; then the loop pauses the volume's writes
 * (nbd_server_pause_writes: reads go on), resets the tracking, and the final
 * pass uploads the last set; writes resume as soon as it is on the LUN. Each
 * pass reads a touched chunk's uploaded and new parts, hashes them and writes
 * the new ones from that same buffer; a block written after that read is in
 * the next pass's set. So after the final pass every claim's hash and every
 * uploaded part describe the volume at the pause point, whatever was written
 * after it.
 * The commit then runs with writes flowing: it reads only the LUN, which the
 * agent does not write until the commit ends.
 *
 * Dirty bits: cleared only after the commit is acknowledged (done), and only
 * for blocks not written since the pause (the tracking reset at the pause);
 * the state file gets the new snapshot id first (a crash in between uploads
 * still-dirty blocks against the new base, which is right).
 *
 * Threads: the uploading and the commit run on one thread; every cache
 * metadata access (dirty map, tracking, header) stays on the loop, which
 * hands the thread one command at a time (a pass's block list, or the
 * commit) under a mutex and is woken through notify_fd when it is done. The
 * thread reads the volume through its own descriptor of the cache file.
 * `goldagent sync` (no writers) runs the same commands inline, one pass.
 *
 * Full commits: with no recorded base while the cache has synced before (the
 * state file was lost), with DIRTY_ALL, or when the appliance answers
 * base_missing / base_geometry: every block is a candidate, zero parts are
 * not uploaded and base_snapshot is null (zero is inherited from no base).
 *
 * Failures: a lost iSCSI session redoes the pass after a backoff (0.5 s
 * doubling to 10 s, attempts times); a final pass that fails resumes writes
 * first and goes back to a live pass. The commit is posted (in batches of
 * UPL_BATCH claims when large) and polled by its id; an unreachable
 * appliance is retried with backoff, a goldcached restart answers from its
 * durable record (done, or failed "interrupted": posted again, the LUN still
 * holds the data), a mismatch re-uploads the claimed chunks whole. With
 * give_up_ms (`goldagent sync`), a link failure (no login, session lost
 * mid-pass, commit post unreachable) does not use up an attempt until the
 * link has been down that long: a cable out for a minute costs a retry, not
 * the sync (docs/agent.md "Link loss"). */
#include "agent/uploader.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/apiclient.h"
#include "agent/cache.h"
#include "agent/fetch.h"
#include "lib/hash.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

#define UPL_BATCH 32768u /* claims per commit request (about 3.6 MB of JSON) */
#define UPL_MAX_PARTS 64u /* the appliance's SNAPSHOT_MAX_PARTS */
#define UPL_MAX_COMMITS 3u /* commit rounds (mismatch, base unusable) per sync */
#define UPL_MAX_FINALS 3u /* final passes (each failure resumes writes first) */

enum cmd { CMD_NONE, CMD_PASS, CMD_COMMIT, CMD_QUIT };
enum phase { PH_LIVE, PH_FINAL, PH_COMMIT, PH_DONE };

/* One claimed chunk (only the thread touches items while a command runs). */
struct item {
	uint64_t chunk;
	struct hash id; /* the whole chunk, as last read */
	uint64_t parts; /* on the LUN (bit p: part p) */
};

struct upl_live;
struct up_slot {
	struct upl_live *u;
	uint8_t *buf;
	unsigned busy; /* writes in flight from buf */
};

struct upl_live {
	struct cache *c; /* the loop's */
	struct upl_opts o;
	struct fetch_target tgt;
	struct apic api;
	int vfd; /* the thread's descriptor of the cache file */
	uint64_t volume_off, vsize, nblocks, nchunks;
	uint32_t bs, cs, part, bpc, ppc;
	uint32_t base; /* 0: none */
	char from[72]; /* the base's machine when not this one (a restore), "" */
	int full, dirty_all, whole;
	char gold[160]; /* "IMAGE@VERSION" the volume runs over, "" unknown */
	/* chunks */
	uint32_t *slot_of; /* per chunk: item index + 1, 0 none */
	struct item *items;
	size_t nitems, cap;
	/* the blocks of the commit (any pass), on the loop */
	uint8_t *inset;
	/* the command's input: ascending blocks */
	uint64_t *work;
	size_t nwork, workcap;
	/* thread */
	pthread_t th;
	int threaded;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum cmd cmd;
	int cmd_final;
	int result; /* of the last command */
	atomic_int stop;
	/* the loop's state machine */
	enum phase phase;
	unsigned passes, finals, commits;
	uint64_t t_start, t_pause;
	int paused;
	/* pass i/o */
	struct fetch *f;
	int err;
	int delay_ms; /* GOLDAGENT_TEST_CHUNK_DELAY_MS: widens windows for kill tests */
	int batch; /* claims per commit request (GOLDAGENT_TEST_COMMIT_BATCH: tests) */
	struct upl_stats st;
};

/* Sleeps up to ms in slices, returning early (1) when asked to stop. */
static int nap(struct upl_live *u, unsigned ms)
{
	while (ms) {
		unsigned d = MIN(ms, 100u);

		if (atomic_load(&u->stop))
			return 1;
		sleep_ms(d);
		ms -= d;
	}
	return atomic_load(&u->stop) != 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t z[64];

	if (n < 64)
		return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
	return memcmp(p, z, 64) == 0 && memcmp(p, p + 64, n - 64) == 0;
}

static uint64_t full_mask(const struct upl_live *u, uint64_t chunk)
{
	uint64_t len = MIN((uint64_t)u->cs, u->vsize - chunk * u->cs);
	uint32_t n = (uint32_t)((len + u->part - 1) / u->part);

	return n >= 64 ? ~0ull : (1ull << n) - 1;
}

static struct item *item_get(struct upl_live *u, uint64_t chunk)
{
	struct item *it;

	if (u->slot_of[chunk])
		return &u->items[u->slot_of[chunk] - 1];
	xgrow((void **)&u->items, &u->cap, u->nitems + 1, sizeof(*u->items));
	it = &u->items[u->nitems++];
	memset(it, 0, sizeof(*it));
	it->chunk = chunk;
	u->slot_of[chunk] = (uint32_t)u->nitems;
	return it;
}

/* ---- a pass (thread) ---- */

static void write_done(void *arg, int err, uint64_t off, size_t len)
{
	struct up_slot *s = arg;
	struct upl_live *u = s->u;

	(void)off;
	s->busy--;
	if (err && !u->err)
		u->err = err;
	if (!err) {
		u->st.sent_bytes += len;
		u->st.sent_blocks += (len + u->bs - 1) / u->bs;
	}
}

/* SHA-256 of the chunk's parts in mask (ascending, each clipped to len) as
 * they lie in buf: the claim's hash (the whole chunk when mask is full). */
static void parts_hash(const struct upl_live *u, const uint8_t *buf, uint64_t len, uint64_t mask,
		       struct hash *out)
{
	struct hash_ctx *h = hash_ctx_new();

	for (uint32_t p = 0; p < u->ppc; p++) {
		uint64_t poff = (uint64_t)p * u->part;

		if ((mask >> p & 1) && poff < len)
			hash_ctx_update(h, buf + poff, (size_t)MIN((uint64_t)u->part, len - poff));
	}
	hash_ctx_final(h, out);
}

/* Chunk `chunk` with the work blocks [*wi, ...) that fall in it: its parts
 * on the LUN (earlier passes') and the new ones are read into s->buf at their
 * offsets, the new ones written (adjacent ones in one WRITE16), and the claim
 * hash taken over all of them, from that same buffer. Parts neither dirty
 * nor uploaded are not read: a 4 KiB write costs one part, not the chunk. */
static int pass_chunk(struct upl_live *u, struct up_slot *s, uint64_t chunk, size_t *wi)
{
	uint64_t off0 = chunk * u->cs, len = MIN((uint64_t)u->cs, u->vsize - off0), pm = 0, want;
	struct item *it = item_get(u, chunk);

	while (*wi < u->nwork && u->work[*wi] / u->bpc == chunk) {
		uint64_t b = u->work[(*wi)++];

		pm |= 1ull << ((b * u->bs - off0) / u->part);
	}
	if (u->whole)
		pm = full_mask(u, chunk);
	pm &= full_mask(u, chunk);
	want = pm | it->parts;
	for (uint32_t p = 0; p < u->ppc; p++) {
		uint64_t poff = (uint64_t)p * u->part, n;
		uint32_t run = 1;
		ssize_t got;

		if (!(want >> p & 1))
			continue;
		while (p + run < u->ppc && (want >> (p + run) & 1))
			run++;
		n = MIN((uint64_t)run * u->part, len - poff);
		got = io_pread_full(u->vfd, s->buf + poff, (size_t)n,
				    (off_t)(u->volume_off + off0 + poff));
		if (got < 0 || (uint64_t)got != n) {
			log_error("sync: cannot read the volume at %llu: %s",
				  (unsigned long long)(off0 + poff),
				  got < 0 ? strerror((int)-got) : "short read");
			return got < 0 ? (int)got : -EIO;
		}
		p += run - 1;
	}
	for (uint32_t p = 0; p < u->ppc; p++) {
		uint64_t poff = (uint64_t)p * u->part;

		if (!(pm >> p & 1))
			continue;
		/* no base: a zero part is inherited as zero, not sent */
		if (!u->base &&
		    all_zero(s->buf + poff, (size_t)MIN((uint64_t)u->part, len - poff))) {
			pm &= ~(1ull << p);
			it->parts &= ~(1ull << p);
			continue;
		}
		it->parts |= 1ull << p;
	}
	parts_hash(u, s->buf, len, it->parts, &it->id);
	if (u->delay_ms && pm)
		sleep_ms((unsigned)u->delay_ms);
	for (uint32_t p = 0; p < u->ppc; p++) {
		uint64_t poff = (uint64_t)p * u->part, n;
		uint32_t run = 1;
		int r;

		if (!(pm >> p & 1))
			continue;
		while (p + run < u->ppc && (pm >> (p + run) & 1))
			run++;
		n = MIN((uint64_t)run * u->part, len - poff);
		/* the LUN takes whole 512-byte sectors: a short tail goes padded */
		if (n % 512) {
			memset(s->buf + poff + n, 0, 512 - n % 512);
			n += 512 - n % 512;
		}
		s->busy++;
		r = fetch_write(u->f, off0 + poff, s->buf + poff, (size_t)n, write_done, s);
		if (r < 0) {
			s->busy--;
			return r;
		}
		p += run - 1;
	}
	return 0;
}

/* Every work block to the LUN once, `depth` chunks in flight. */
static int pass_run(struct upl_live *u)
{
	unsigned depth = u->o.depth ? u->o.depth : 8;
	struct up_slot *slots = xcalloc(depth, sizeof(*slots));
	size_t wi = 0;

	u->err = 0;
	for (unsigned i = 0; i < depth; i++) {
		slots[i].u = u;
		slots[i].buf = xmalloc((size_t)u->cs + 512);
	}
	for (;;) {
		unsigned busy = 0;

		for (unsigned i = 0; i < depth && wi < u->nwork && !u->err; i++) {
			if (slots[i].busy)
				continue;
			u->err = pass_chunk(u, &slots[i], u->work[wi] / u->bpc, &wi);
		}
		for (unsigned i = 0; i < depth; i++)
			busy += slots[i].busy;
		if (atomic_load(&u->stop) && !u->err)
			u->err = -ECANCELED;
		if (u->err || (wi >= u->nwork && busy == 0))
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

/* A failure of the link rather than of the target or the data: a login
 * that reached nothing, a session whose commands timed out or were cancelled
 * by a socket error (agent/fetch.c). Retried beyond the attempts while the
 * link has been down for less than give_up_ms since link_ok. */
static int link_retry(const struct upl_live *u, int r, int opening, uint64_t link_ok)
{
	int link = opening ? r == -ECONNREFUSED || r == -ETIMEDOUT || r == -EIO
			   : r == -ETIMEDOUT || r == -ECANCELED;

	return link && u->o.give_up_ms && now_ms() - link_ok < u->o.give_up_ms;
}

/* A pass with retries: a lost session is reopened after a backoff and the
 * pass done again (writing a block twice is harmless). The final pass (writes
 * paused) gets one try: the loop resumes writes before anything slow. */
static int cmd_pass(struct upl_live *u, int final)
{
	unsigned tries = final ? 1 : (u->o.attempts ? u->o.attempts : 5), backoff = 500, used = 0;
	uint64_t t0 = now_ms(), sent0 = u->st.sent_bytes, blk0 = u->st.sent_blocks;
	uint64_t link_ok = t0;
	int r = -EIO;

	for (unsigned t = 0; used < tries; t++, used++) {
		if (t) {
			log_warn("sync: pass %u: attempt %u in %u ms", u->passes + 1, t + 1,
				 backoff);
			if (nap(u, backoff))
				return -ECANCELED;
			backoff = MIN(backoff * 2, 10000u);
		}
		u->st.sent_bytes = sent0;
		u->st.sent_blocks = blk0;
		if (!u->f &&
		    (r = fetch_open(&u->tgt, u->o.timeout_s ? u->o.timeout_s : 10, &u->f)) < 0) {
			if (!final && link_retry(u, r, 1, link_ok))
				used--; /* the link's fault: not an attempt */
			continue;
		}
		link_ok = now_ms();
		r = pass_run(u);
		if (r == 0)
			break;
		log_warn("sync: upload to %s failed: %s", u->tgt.iqn, strerror(-r));
		fetch_free(u->f);
		u->f = NULL;
		if (atomic_load(&u->stop))
			break;
		if (!final && link_retry(u, r, 0, link_ok))
			used--;
	}
	u->st.upload_ms += now_ms() - t0;
	return r;
}

/* ---- the commit (thread) ---- */

/* Claims [from, from + n) of the listed items, as one request body. */
static char *commit_body(struct upl_live *u, const uint32_t *list, size_t from, size_t n,
			 size_t total, uint32_t batch, size_t *len)
{
	size_t cap = 512 + n * 128, k = 0;
	char *b = xmalloc(cap), hex[HASH_HEX_LEN + 1];

	k += (size_t)snprintf(b + k, cap - k,
			      "{\"volume_size\": %" PRIu64
			      ", \"chunk_size\": %u, \"part_size\": %u, ",
			      u->vsize, u->cs, u->part);
	if (u->base && u->from[0])
		k += (size_t)snprintf(b + k, cap - k, "\"base_snapshot\": \"%s@%u\", ", u->from,
				      u->base);
	else if (u->base)
		k += (size_t)snprintf(b + k, cap - k, "\"base_snapshot\": %u, ", u->base);
	else
		k += (size_t)snprintf(b + k, cap - k, "\"base_snapshot\": null, ");
	if (u->gold[0])
		k += (size_t)snprintf(b + k, cap - k, "\"gold\": \"%s\", ", u->gold);
	if (total > (size_t)u->batch)
		k += (size_t)snprintf(b + k, cap - k, "\"batch\": %u, \"more\": %s, ", batch,
				      from + n < total ? "true" : "false");
	k += (size_t)snprintf(b + k, cap - k, "\"chunks\": [");
	for (size_t i = from; i < from + n; i++) {
		const struct item *it = &u->items[list[i]];

		hash_to_hex(&it->id, hex);
		k += (size_t)snprintf(b + k, cap - k,
				      "%s{\"index\": %" PRIu64 ", \"sha256\": \"%s\"",
				      i > from ? ", " : "", it->chunk, hex);
		if (it->parts != full_mask(u, it->chunk))
			k += (size_t)snprintf(b + k, cap - k, ", \"parts\": \"%" PRIx64 "\"",
					      it->parts);
		k += (size_t)snprintf(b + k, cap - k, "}");
	}
	k += (size_t)snprintf(b + k, cap - k, "]}");
	*len = k;
	return b;
}

/* Posts the whole commit (in batches when large): 0 and its id. */
static int commit_post(struct upl_live *u, const uint32_t *list, size_t total, uint64_t *id)
{
	struct apic_commit_status cs;
	size_t from = 0;
	uint32_t batch = 0;

	do {
		size_t n = MIN((size_t)u->batch, total - from), blen;
		char *body = commit_body(u, list, from, n, total, batch, &blen);
		int r = apic_commit_post(&u->api, body, blen, &cs);

		free(body);
		u->st.requests++;
		if (r < 0)
			return r;
		from += n;
		batch++;
	} while (from < total);
	*id = cs.id;
	return 0;
}

static int cmd_commit(struct upl_live *u)
{
	unsigned tries = u->o.attempts ? u->o.attempts : 5, backoff = 500, t = 0;
	uint64_t t0 = now_ms(), deadline = t0 + 600000, id = 0, api_ok = t0;
	uint32_t *list = xmalloc((u->nitems ? u->nitems : 1) * sizeof(*list));
	size_t total = 0;
	int r = -EIO, posted = 0;

	/* chunks ascending (batches must ascend); chunks with nothing on the
	 * LUN (all zero without a base) are inherited, not listed */
	for (uint64_t k = 0; k < u->nchunks; k++)
		if (u->slot_of[k] && u->items[u->slot_of[k] - 1].parts)
			list[total++] = u->slot_of[k] - 1;
	u->st.chunks = total;
	u->st.partial = 0;
	for (size_t i = 0; i < total; i++)
		u->st.partial += u->items[list[i]].parts != full_mask(u, u->items[list[i]].chunk);
	while (now_ms() < deadline) {
		struct apic_commit_status cs;

		if (atomic_load(&u->stop)) {
			r = -ECANCELED;
			break;
		}
		if (!posted) {
			if (t++ >= tries) {
				r = -EIO;
				break;
			}
			u->st.attempts++;
			r = commit_post(u, list, total, &id);
			if (r == 0) {
				posted = 1;
				api_ok = now_ms();
				continue;
			}
			if (r != -EEXIST && !apic_unreachable(r) && r != -EIO)
				break; /* refused (400, 403): no retry helps */
			if (apic_unreachable(r) && u->o.give_up_ms &&
			    now_ms() - api_ok < u->o.give_up_ms)
				t--; /* the link's fault: not an attempt */
			/* 409: a commit of ours still runs, or the transaction was
			 * lost (restart): wait, then post again */
			log_warn("sync: commit not accepted (%s): again in %u ms", strerror(-r),
				 backoff);
			if (nap(u, backoff)) {
				r = -ECANCELED;
				break;
			}
			backoff = MIN(backoff * 2, 10000u);
			continue;
		}
		r = apic_commit_get(&u->api, &cs);
		if (r == 0)
			api_ok = now_ms();
		if (r < 0) {
			/* the appliance went away: its record answers when it is back */
			log_warn("sync: commit %llu: cannot poll (%s): again in %u ms",
				 (unsigned long long)id, strerror(-r), backoff);
			if (nap(u, backoff)) {
				r = -ECANCELED;
				break;
			}
			backoff = MIN(backoff * 2, 10000u);
			continue;
		}
		backoff = 500;
		if (cs.id != id) {
			log_warn("sync: the appliance knows no commit %llu (state %s): posting "
				 "again",
				 (unsigned long long)id, cs.state);
			posted = 0;
			continue;
		}
		if (strcmp(cs.state, "running") == 0 || strcmp(cs.state, "staging") == 0) {
			nap(u, 20);
			continue;
		}
		if (strcmp(cs.state, "done") == 0) {
			u->st.snapshot = cs.snapshot;
			r = 0;
			break;
		}
		log_warn("sync: commit %llu %s (%s): %s", (unsigned long long)id, cs.state,
			 cs.reason, cs.error);
		if (strcmp(cs.reason, "mismatch") == 0) {
			r = -EBADMSG;
			break;
		}
		if (strcmp(cs.reason, "base_missing") == 0 ||
		    strcmp(cs.reason, "base_geometry") == 0) {
			r = -ESTALE;
			break;
		}
		if (strcmp(cs.reason, "invalid") == 0) {
			r = -EINVAL;
			break;
		}
		posted = 0; /* interrupted, io: the data is still on the LUN */
	}
	if (r == -EEXIST || (r < 0 && apic_unreachable(r)))
		r = -ETIMEDOUT;
	free(list);
	u->st.commit_ms += now_ms() - t0;
	return r;
}

/* ---- the thread ---- */

static int run_cmd(struct upl_live *u, enum cmd cmd, int final)
{
	return cmd == CMD_PASS ? cmd_pass(u, final) : cmd_commit(u);
}

static void *thread_main(void *arg)
{
	struct upl_live *u = arg;

	pthread_mutex_lock(&u->mu);
	for (;;) {
		enum cmd cmd;
		int final, r;
		uint64_t one = 1;

		while (u->cmd == CMD_NONE)
			pthread_cond_wait(&u->cv, &u->mu);
		if (u->cmd == CMD_QUIT)
			break;
		cmd = u->cmd;
		final = u->cmd_final;
		pthread_mutex_unlock(&u->mu);
		r = run_cmd(u, cmd, final);
		pthread_mutex_lock(&u->mu);
		u->result = r;
		if (u->cmd != CMD_QUIT)
			u->cmd = CMD_NONE;
		if (write(u->o.notify_fd, &one, sizeof(one)) < 0)
			log_warn("sync: cannot wake the loop: %s", strerror(errno));
	}
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

/* Hands the thread its next command (inline without a thread). */
static void issue(struct upl_live *u, enum cmd cmd, int final)
{
	if (!u->threaded) {
		u->result = run_cmd(u, cmd, final);
		return;
	}
	pthread_mutex_lock(&u->mu);
	u->cmd = cmd;
	u->cmd_final = final;
	pthread_cond_signal(&u->cv);
	pthread_mutex_unlock(&u->mu);
}

/* ---- the loop's side ---- */

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

static void work_add(struct upl_live *u, uint64_t b)
{
	xgrow((void **)&u->work, &u->workcap, u->nwork + 1, sizeof(*u->work));
	u->work[u->nwork++] = b;
	u->inset[b >> 3] |= (uint8_t)(1u << (b & 7));
}

/* The blocks written since the tracking was last reset, as the next work;
 * their bytes. Resets the tracking. */
static uint64_t work_from_seen(struct upl_live *u)
{
	uint64_t bytes = 0;

	u->nwork = 0;
	for (uint64_t b = 0; b < u->nblocks; b++) {
		if (!cache_dirty_seen(u->c, b))
			continue;
		work_add(u, b);
		bytes += MIN((uint64_t)u->bs, u->vsize - b * u->bs);
	}
	cache_dirty_track(u->c, 1);
	return bytes;
}

/* Every block of the commit so far (after a mismatch: whole chunks again;
 * after a refused base: every block). */
static void work_all(struct upl_live *u, int every)
{
	u->nwork = 0;
	for (uint64_t b = 0; b < u->nblocks; b++)
		if (every || (u->inset[b >> 3] >> (b & 7) & 1))
			work_add(u, b);
}

static void set_pause(struct upl_live *u, int on)
{
	if (u->paused == on || !u->o.pause)
		return;
	u->paused = on;
	u->o.pause(u->o.pause_arg, on);
	if (on) {
		u->t_pause = now_ms();
	} else {
		u->st.pause_ms += now_ms() - u->t_pause;
	}
}

static int finish(struct upl_live *u)
{
	uint64_t *blocks;
	size_t n = 0;
	int r;

	r = upload_base_set(u->o.state_path, NULL, u->st.snapshot);
	if (r < 0) {
		log_error("sync: snapshot %u not recorded: dirty bits kept", u->st.snapshot);
		return r;
	}
	blocks = xmalloc((u->nblocks ? u->nblocks : 1) * sizeof(*blocks));
	for (uint64_t b = 0; b < u->nblocks; b++)
		if (u->inset[b >> 3] >> (b & 7) & 1)
			blocks[n++] = b;
	/* blocks written since the pause point keep their bits (tracking) */
	r = cache_sync_done_figures(
		u->c, blocks, n, u->dirty_all || u->full, now_unix(),
		&(struct cache_sync_figures){.snapshot = u->st.snapshot,
					     .bytes = u->st.sent_bytes,
					     .pause_ms = (uint32_t)MIN(u->st.pause_ms, UINT32_MAX)},
		&u->st.cleared);
	free(blocks);
	if (r == 0)
		log_info(
			"sync: snapshot %u committed: %llu chunks (%llu in part), %llu bytes sent "
			"for %llu dirty bytes in %u passes, writes paused %llu ms, %llu dirty bits "
			"cleared",
			u->st.snapshot, (unsigned long long)u->st.chunks,
			(unsigned long long)u->st.partial, (unsigned long long)u->st.sent_bytes,
			(unsigned long long)u->st.dirty_bytes, u->st.passes,
			(unsigned long long)u->st.pause_ms, (unsigned long long)u->st.cleared);
	return r;
}

/* A new round after a refused commit: whole chunks (mismatch) or a full
 * commit without a base (the base is gone or of another geometry). */
static int restart(struct upl_live *u, int r)
{
	if (++u->commits >= UPL_MAX_COMMITS)
		return r;
	if (r == -ESTALE) {
		log_warn("sync: base snapshot %u unusable: committing in full", u->base);
		u->base = 0;
		u->from[0] = '\0';
		u->full = 1;
		work_all(u, 1);
	} else {
		log_warn("sync: uploading the claimed chunks whole again");
		u->whole = 1;
		work_all(u, 0);
	}
	u->phase = PH_LIVE;
	issue(u, CMD_PASS, 0);
	return 1;
}

int upl_live_step(struct upl_live *l)
{
	struct upl_live *u = l;
	int r = u->result;
	uint64_t bytes;

	if (u->threaded) {
		uint64_t v;

		if (read(u->o.notify_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			log_warn("sync: notify: %s", strerror(errno));
		pthread_mutex_lock(&u->mu);
		if (u->cmd != CMD_NONE) { /* still at work */
			pthread_mutex_unlock(&u->mu);
			return 1;
		}
		r = u->result;
		pthread_mutex_unlock(&u->mu);
	}
	switch (u->phase) {
	case PH_LIVE:
		if (r < 0)
			return r;
		u->st.passes++;
		u->passes++;
		bytes = work_from_seen(u);
		if (bytes > (u->o.final_bytes ? u->o.final_bytes : 1u << 20) &&
		    u->passes < (u->o.max_passes ? u->o.max_passes : 8)) {
			issue(u, CMD_PASS, 0);
			return 1;
		}
		if (u->nwork == 0) {
			/* nothing written since the last pass: now is the pause point,
			 * no pause needed (this loop serves no request meanwhile) */
			u->phase = PH_COMMIT;
			issue(u, CMD_COMMIT, 0);
			return 1;
		}
		set_pause(u, 1);
		cache_dirty_track(u->c, 1); /* from the pause point on */
		u->phase = PH_FINAL;
		u->finals++;
		issue(u, CMD_PASS, 1);
		return 1;
	case PH_FINAL:
		set_pause(u, 0);
		u->st.passes++;
		if (r < 0) {
			if (atomic_load(&u->stop) || u->finals >= UPL_MAX_FINALS)
				return r;
			/* again with writes flowing: the same set and what comes */
			log_warn("sync: the final pass failed (%s): writes resumed, retrying",
				 strerror(-r));
			u->phase = PH_LIVE;
			issue(u, CMD_PASS, 0);
			return 1;
		}
		u->phase = PH_COMMIT;
		issue(u, CMD_COMMIT, 0);
		return 1;
	case PH_COMMIT:
		if (r == -EBADMSG || r == -ESTALE)
			return restart(u, r);
		if (r < 0)
			return r;
		u->phase = PH_DONE;
		return finish(u);
	case PH_DONE:
		return 0;
	}
	return -EINVAL;
}

static void live_free(struct upl_live *u)
{
	if (!u)
		return;
	if (u->threaded) {
		atomic_store(&u->stop, 1);
		pthread_mutex_lock(&u->mu);
		u->cmd = CMD_QUIT;
		pthread_cond_signal(&u->cv);
		pthread_mutex_unlock(&u->mu);
		pthread_join(u->th, NULL);
		pthread_mutex_destroy(&u->mu);
		pthread_cond_destroy(&u->cv);
	}
	set_pause(u, 0);
	cache_dirty_track(u->c, 0);
	fetch_free(u->f);
	if (u->vfd >= 0)
		close(u->vfd);
	free(u->slot_of);
	free(u->items);
	free(u->inset);
	free(u->work);
	free(u);
}

void upl_live_free(struct upl_live *l)
{
	live_free(l);
}

const struct upl_stats *upl_live_stats(const struct upl_live *l)
{
	return &l->st;
}

static int live_new(struct cache *c, const struct upl_opts *o, int threaded, struct upl_live **out)
{
	const struct cache_header *h = cache_header(c);
	struct upl_live *u = xcalloc(1, sizeof(*u));
	uint64_t ndirty = 0;
	int slot, fresh;

	*out = NULL;
	u->c = c;
	u->o = *o;
	u->tgt = *o->target;
	u->api = *o->api;
	u->vfd = -1;
	u->bs = h->geo.dirty_block_size;
	u->cs = MAX(h->geo.chunk_size, u->bs);
	u->bpc = u->cs / u->bs;
	u->part = MAX(u->bs, u->cs / UPL_MAX_PARTS);
	u->ppc = u->cs / u->part;
	u->vsize = h->geo.volume_size;
	u->nblocks = h->geo.nblocks;
	u->nchunks = (u->vsize + u->cs - 1) / u->cs;
	u->volume_off = h->geo.volume_off;
	u->dirty_all = (h->flags & CACHE_F_DIRTY_ALL) != 0;
	if (getenv("GOLDAGENT_TEST_CHUNK_DELAY_MS"))
		parse_int(getenv("GOLDAGENT_TEST_CHUNK_DELAY_MS"), 0, 10000, &u->delay_ms);
	u->batch = UPL_BATCH;
	if (getenv("GOLDAGENT_TEST_COMMIT_BATCH"))
		parse_int(getenv("GOLDAGENT_TEST_COMMIT_BATCH"), 1, UPL_BATCH, &u->batch);
	if (h->flags & CACHE_F_RESTORING) {
		/* its dirty bits describe the volume before the restore began */
		log_error("sync: the machine volume in '%s' is half-restored (order %lld): nothing "
			  "synced until an online goldagent attach completes the restore",
			  cache_path(c), (long long)h->restore_order);
		free(u);
		return -EBUSY;
	}
	if (read_base(o->state_path, &u->base, u->from, sizeof(u->from), &fresh) < 0)
		u->base = 0, fresh = 0;
	u->full = u->base == 0 && h->last_sync != 0 && !fresh;
	slot = h->active_slot == CACHE_NO_SLOT ? -1 : (int)h->active_slot;
	if (slot >= 0 && name_is_valid(h->slot[slot].name) &&
	    parse_u32(h->slot[slot].version, &(uint32_t){0}) == 0)
		fmt_buf(u->gold, sizeof(u->gold), "%s@%s", h->slot[slot].name,
			h->slot[slot].version);
	u->slot_of = xcalloc(u->nchunks ? u->nchunks : 1, sizeof(*u->slot_of));
	u->inset = xcalloc((size_t)(u->nblocks + 7) / 8 + 1, 1);
	for (uint64_t b = 0; b < u->nblocks; b++) {
		int d = cache_block_dirty(c, b);

		if (!d && !u->full)
			continue;
		work_add(u, b);
		if (d) {
			ndirty++;
			u->st.dirty_bytes += MIN((uint64_t)u->bs, u->vsize - b * u->bs);
		}
	}
	u->st.dirty_blocks = ndirty;
	if (u->nwork == 0) {
		free(u->slot_of);
		free(u->inset);
		free(u->work);
		free(u);
		log_info("sync: no dirty block, nothing to commit");
		return 1;
	}
	/* a descriptor of its own for the upload thread, from the open cache: after
	 * switch_root the cache's path no longer leads to it */
	u->vfd = fcntl(cache_fd(c), F_DUPFD_CLOEXEC, 0);
	if (u->vfd < 0) {
		int r = -errno;

		log_error("sync: cannot duplicate the descriptor of '%s': %s", cache_path(c),
			  strerror(-r));
		live_free(u);
		return r;
	}
	u->t_start = now_ms();
	cache_dirty_track(c, 1);
	if (threaded) {
		int r;

		pthread_mutex_init(&u->mu, NULL);
		pthread_cond_init(&u->cv, NULL);
		r = pthread_create(&u->th, NULL, thread_main, u);
		if (r) {
			pthread_mutex_destroy(&u->mu);
			pthread_cond_destroy(&u->cv);
			log_error("sync: cannot start the upload thread: %s", strerror(r));
			live_free(u);
			return -r;
		}
		u->threaded = 1;
	}
	log_info("sync: %llu dirty blocks (%llu bytes)%s, base snapshot %u, %u-byte chunks in "
		 "%u-byte parts",
		 (unsigned long long)ndirty, (unsigned long long)u->st.dirty_bytes,
		 u->full ? ", full commit" : "", u->base, u->cs, u->part);
	u->phase = PH_LIVE;
	*out = u;
	return 0;
}

int upl_live_start(struct cache *c, const struct upl_opts *o, struct upl_live **out)
{
	struct upl_live *u;
	int r = live_new(c, o, 1, &u);

	if (r != 0)
		return r;
	issue(u, CMD_PASS, 0);
	*out = u;
	return 0;
}

int upload_sync(struct cache *c, const struct upl_opts *o, struct upl_stats *stp)
{
	struct upl_stats st0;
	struct upl_live *u;
	int r = live_new(c, o, 0, &u);

	if (!stp)
		stp = &st0;
	memset(stp, 0, sizeof(*stp));
	if (r == 1)
		return 0;
	if (r < 0)
		return r;
	/* no writer: each command runs inline, the step decides the next */
	issue(u, CMD_PASS, 0);
	while ((r = upl_live_step(u)) == 1)
		;
	*stp = u->st;
	if (r < 0)
		log_error("sync failed after %u commit attempts: %s (dirty blocks stay dirty)",
			  u->st.attempts, strerror(-r));
	live_free(u);
	return r;
}
