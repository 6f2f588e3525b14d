/* Sync back on the appliance (see sync.h and docs/sync.md).
 *
 * One commit per machine at a time; commits of different machines run side
 * by side, each in a forked child (appliance/worker.h: killable, dies with
 * goldcached). The child opens its own store handle, runs snapshot_commit and
 * leaves its result (snapshot id, counts, error text) in a shared anonymous
 * page mapped before the fork; the loop reads it in the done callback and
 * records the outcome in the machine's slot for GET .../commit. A shutdown
 * kills running commits (sync_kill): like a crash, that leaves no snapshot.
 *
 * Durable state: a snapshot exists once snapshot_commit has published its
 * manifest, which happens before the job reports "done". Each machine's last
 * commit is also recorded in STATE/uploads/NAME.commit (running when it
 * starts, with the highest snapshot id used then; done/failed when it ends),
 * so GET .../commit tells the truth after a goldcached restart: a record
 * still "running" belongs to a job that died with the old daemon, and the
 * store settles it (a snapshot id above the recorded one: done, that
 * snapshot; none: failed, reason "interrupted", commit again). Killed
 * mid-commit, goldcached leaves no snapshot (only unreferenced chunks for
 * gc), or a whole one.
 *
 * Large commits come in batches (sync.h): staged claims go to
 * STATE/uploads/NAME.claims, raw records read back by the job's child, so
 * neither the request bodies nor the loop's memory grow with the volume. */
#include "appliance/sync.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "appliance/worker.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

enum slot_state { SLOT_NONE, SLOT_RUNNING, SLOT_DONE, SLOT_FAILED, SLOT_STAGING };

/* The last commit of one machine. */
struct slot {
	char name[65];
	enum slot_state state;
	struct job *job; /* while running */
	uint64_t id; /* the commit's id (agents match it when polling) */
	uint32_t max_before; /* highest snapshot id used when it started */
	int64_t started, finished;
	int err;
	struct snapshot_commit_result res;
	/* an open transaction (SLOT_STAGING) */
	struct sync_commit hdr; /* its geometry and base (no claims) */
	uint32_t next_batch;
	uint64_t nstaged, last_index;
};

struct job {
	struct sync *s;
	size_t slot;
	char name[65];
	char upload[4096];
	char staged_path[4096];
	uint64_t nstaged; /* claims staged in staged_path before c's */
	unsigned retention;
	struct sync_commit *c;
	struct snapshot_commit_result *res; /* MAP_SHARED: the child writes it */
	struct worker_child *child;
};

struct sync {
	struct loop *loop;
	void (*gone)(void *arg); /* after sync_kill: called as each killed job ends */
	void *gone_arg;
	char *store_root, *uploads_dir;
	struct slot *slots;
	size_t n_slots, cap;
};

int sync_upload_path(const char *uploads_dir, const char *name, char *buf, size_t size)
{
	if (!name_is_valid(name))
		return -EINVAL;
	return fmt_buf(buf, size, "%s/%s.img", uploads_dir, name);
}

int sync_upload_ensure(const char *uploads_dir, const char *name, uint64_t size)
{
	char p[4096];
	struct stat st;
	int fd, r;

	if ((r = sync_upload_path(uploads_dir, name, p, sizeof(p))) < 0)
		return r;
	if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size >= size)
		return 0;
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	/* sparse: only what agents write takes space; a size change grows it */
	if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
		r = -errno;
		close(fd);
		goto fail;
	}
	close(fd);
	return io_fsync_dir(uploads_dir);
fail:
	log_error("cannot create the upload file '%s' (%llu bytes): %s", p,
		  (unsigned long long)size, strerror(-r));
	return r;
}

int sync_new(struct loop *l, const char *store_root, const char *uploads_dir, struct sync **out)
{
	struct sync *s;
	int r;

	*out = NULL;
	if ((r = io_mkdir_p(uploads_dir, 0700)) < 0) {
		log_error("cannot create '%s': %s", uploads_dir, strerror(-r));
		return r;
	}
	s = xcalloc(1, sizeof(*s));
	s->loop = l;
	s->store_root = xstrdup(store_root);
	s->uploads_dir = xstrdup(uploads_dir);
	*out = s;
	return 0;
}

static void job_free(struct job *j);

void sync_free(struct sync *s)
{
	if (!s)
		return;
	/* jobs still running (no sync_kill, or the loop stopped first) are
	 * killed; their done callbacks will not run: free them here */
	for (size_t i = 0; i < s->n_slots; i++) {
		struct job *j = s->slots[i].job;

		if (!j)
			continue;
		worker_child_kill(j->child);
		job_free(j);
	}
	free(s->slots);
	free(s->store_root);
	free(s->uploads_dir);
	free(s);
}

void sync_commit_free(struct sync_commit *c)
{
	if (!c)
		return;
	free(c->claims);
	free(c->pinned);
	free(c);
}

static int get_u64(json_t *o, const char *k, uint64_t max, uint64_t *out, char *err, size_t errsize)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max) {
		snprintf(err, errsize, "\"%s\" must be a whole number from 0 to %llu", k,
			 (unsigned long long)max);
		return -EINVAL;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* "parts": hex digits of the mask (bit j: part j uploaded). */
static int parse_parts(const char *hex, const struct sync_commit *c, uint64_t *out)
{
	uint32_t n = c->chunk_size / c->part_size;
	uint64_t v = 0;
	size_t len = hex ? strlen(hex) : 0;

	if (len == 0 || len > 16)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		int d = hex[i] >= '0' && hex[i] <= '9'	 ? hex[i] - '0'
			: hex[i] >= 'a' && hex[i] <= 'f' ? hex[i] - 'a' + 10
							 : -1;

		if (d < 0)
			return -EINVAL;
		v = v << 4 | (uint64_t)d;
	}
	if (v == 0 || (n < 64 && (v >> n) != 0))
		return -EINVAL;
	*out = v;
	return 0;
}

int sync_commit_parse(const char *body, size_t len, struct sync_commit **out, char *err,
		      size_t errsize)
{
	struct sync_commit *c = xcalloc(1, sizeof(*c));
	json_error_t je;
	json_t *j, *v, *arr, *e;
	const char *k;
	uint64_t u;
	size_t i;
	int r = -EINVAL;

	*out = NULL;
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!j || !json_is_object(j)) {
		snprintf(err, errsize, "body must be a JSON object (%s)",
			 j ? "not an object" : je.text);
		goto out;
	}
	json_object_foreach(j, k, v)
	{
		if (strcmp(k, "volume_size") != 0 && strcmp(k, "chunk_size") != 0 &&
		    strcmp(k, "base_snapshot") != 0 && strcmp(k, "chunks") != 0 &&
		    strcmp(k, "gold") != 0 && strcmp(k, "part_size") != 0 &&
		    strcmp(k, "batch") != 0 && strcmp(k, "more") != 0) {
			snprintf(err, errsize,
				 "unknown key \"%.64s\" (known: volume_size, chunk_size, "
				 "part_size, base_snapshot, gold, batch, more, chunks)",
				 k);
			goto out;
		}
	}
	if (get_u64(j, "volume_size", SNAPSHOT_MAX_VOLUME, &c->volume_size, err, errsize) < 0 ||
	    get_u64(j, "chunk_size", MANIFEST_MAX_CHUNK, &u, err, errsize) < 0)
		goto out;
	c->chunk_size = (uint32_t)u;
	if (manifest_geometry_ok(c->volume_size, c->chunk_size) < 0 || c->volume_size == 0) {
		snprintf(err, errsize,
			 "bad geometry: volume_size must be a non-zero multiple of 512, chunk_size "
			 "a power of two from 4096 to 67108864, and at most %u chunks",
			 MANIFEST_MAX_CHUNKS);
		goto out;
	}
	if (json_object_get(j, "part_size")) {
		if (get_u64(j, "part_size", c->chunk_size, &u, err, errsize) < 0)
			goto out;
		c->part_size = (uint32_t)u;
		if (u < 4096 || (u & (u - 1)) || c->chunk_size / u > SNAPSHOT_MAX_PARTS) {
			snprintf(err, errsize,
				 "\"part_size\" must be a power of two from 4096 to chunk_size "
				 "cutting a chunk into at most %u parts",
				 SNAPSHOT_MAX_PARTS);
			goto out;
		}
	}
	if (json_object_get(j, "batch")) {
		if (get_u64(j, "batch", MANIFEST_MAX_CHUNKS, &u, err, errsize) < 0)
			goto out;
		c->has_batch = 1;
		c->batch = (uint32_t)u;
	}
	v = json_object_get(j, "more");
	if (v && !json_is_boolean(v)) {
		snprintf(err, errsize, "\"more\" must be true or false");
		goto out;
	}
	c->more = json_is_true(v);
	if (c->more && !c->has_batch) {
		snprintf(err, errsize, "\"more\": true needs \"batch\"");
		goto out;
	}
	v = json_object_get(j, "base_snapshot");
	if (!v || json_is_null(v)) {
		c->base = 0;
	} else if (json_is_integer(v) && json_integer_value(v) > 0 &&
		   json_integer_value(v) <= MANIFEST_MAX_VERSION) {
		c->base = (uint32_t)json_integer_value(v);
	} else if (json_is_string(v) &&
		   image_ref_parse(json_string_value(v), c->base_machine, &c->base) == 0 &&
		   c->base) {
		/* "OTHER@N": a restored machine's first commit */
	} else {
		snprintf(err, errsize,
			 "\"base_snapshot\" must be null, a snapshot id or \"MACHINE@ID\"");
		goto out;
	}
	/* optional: the gold image@version the agent ran the volume over */
	v = json_object_get(j, "gold");
	if (v && !json_is_null(v) &&
	    (!json_is_string(v) ||
	     image_ref_parse(json_string_value(v), c->gold_image, &c->gold_version) < 0 ||
	     c->gold_version == 0)) {
		snprintf(err, errsize, "\"gold\" must be null or \"IMAGE@VERSION\"");
		goto out;
	}
	arr = json_object_get(j, "chunks");
	if (!json_is_array(arr)) {
		snprintf(err, errsize, "\"chunks\" must be an array of {\"index\", \"sha256\"}");
		goto out;
	}
	if (json_array_size(arr) > MANIFEST_MAX_CHUNKS) {
		snprintf(err, errsize, "\"chunks\" has more than %u entries", MANIFEST_MAX_CHUNKS);
		goto out;
	}
	c->nclaims = json_array_size(arr);
	c->claims = xcalloc(c->nclaims ? c->nclaims : 1, sizeof(*c->claims));
	json_array_foreach(arr, i, e)
	{
		json_t *idx = json_object_get(e, "index"), *h = json_object_get(e, "sha256");
		json_t *pt = json_object_get(e, "parts");
		const char *hex = json_string_value(h);

		if (!json_is_object(e) || json_object_size(e) != 2u + (pt != NULL) ||
		    !json_is_integer(idx) || json_integer_value(idx) < 0 || !hex ||
		    strlen(hex) != HASH_HEX_LEN || hash_from_hex(hex, &c->claims[i].id) < 0) {
			snprintf(err, errsize,
				 "chunks[%zu] must be {\"index\": N, \"sha256\": \"64 hex "
				 "digits\"} (and \"parts\": \"hex mask\" with part_size)",
				 i);
			goto out;
		}
		c->claims[i].index = (uint64_t)json_integer_value(idx);
		if (pt && (!c->part_size ||
			   parse_parts(json_string_value(pt), c, &c->claims[i].parts) < 0)) {
			snprintf(err, errsize,
				 "chunks[%zu].parts must be 1 to 16 hex digits, non-zero, no bit "
				 "past chunk_size / part_size (and part_size must be given)",
				 i);
			goto out;
		}
	}
	*out = c;
	c = NULL;
	r = 0;
out:
	json_decref(j);
	sync_commit_free(c);
	return r;
}

static struct slot *slot_get(struct sync *s, const char *name, size_t *idx)
{
	for (size_t i = 0; i < s->n_slots; i++) {
		if (strcmp(s->slots[i].name, name) == 0) {
			if (idx)
				*idx = i;
			return &s->slots[i];
		}
	}
	return NULL;
}

static void job_free(struct job *j)
{
	if (j->res)
		munmap(j->res, sizeof(*j->res));
	sync_commit_free(j->c);
	free(j);
}

/* After a commit, the uploaded chunks live in the store: their ranges of the
 * upload file are freed (holes), so an appliance with many machines does not
 * keep a second copy of every volume. Best effort: a failure costs only
 * space. The agent never writes to the LUN while its commit runs (that data
 * would fail verification), so no newer data is punched away. */
static void punch_claims(const struct job *j)
{
	int fd = open(j->upload, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	for (size_t i = 0; i < j->c->nclaims; i++) {
		uint64_t off = j->c->claims[i].index * j->c->chunk_size;
		uint64_t len = MIN((uint64_t)j->c->chunk_size, j->c->volume_size - off);

		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)len) < 0) {
			log_debug("cannot free '%s' at %llu: %s", j->upload,
				  (unsigned long long)off, strerror(errno));
			break;
		}
	}
	close(fd);
}

/* STATE/uploads/NAME.SUFFIX */
static int side_path(const struct sync *s, const char *name, const char *suffix, char *buf,
		     size_t size)
{
	if (!name_is_valid(name))
		return -EINVAL;
	return fmt_buf(buf, size, "%s/%s.%s", s->uploads_dir, name, suffix);
}

/* The staged claims (raw struct snapshot_claim records, written by this
 * daemon for its own child) followed by the final request's: one list. */
static int load_staged(struct job *j, char *err, size_t errsize)
{
	size_t want = (size_t)j->nstaged * sizeof(struct snapshot_claim), total;
	struct snapshot_claim *all;
	int fd = open(j->staged_path, O_RDONLY | O_CLOEXEC);
	ssize_t got;

	if (fd < 0) {
		snprintf(err, errsize, "cannot open the staged claims: %s", strerror(errno));
		return -errno;
	}
	total = (size_t)j->nstaged + j->c->nclaims;
	all = xmalloc((total ? total : 1) * sizeof(*all));
	got = io_pread_full(fd, all, want, 0);
	close(fd);
	if (got < 0 || (size_t)got != want) {
		snprintf(err, errsize, "cannot read the staged claims: %s",
			 got < 0 ? strerror((int)-got) : "short file");
		free(all);
		return got < 0 ? (int)got : -EIO;
	}
	if (j->c->nclaims)
		memcpy(all + j->nstaged, j->c->claims, j->c->nclaims * sizeof(*all));
	free(j->c->claims);
	j->c->claims = all;
	j->c->nclaims = total;
	return 0;
}

/* In the forked child. */
static int job_run(void *arg)
{
	struct job *j = arg;
	struct snapshot_commit_req rq;
	struct store *st = NULL;
	int r;

	if (j->nstaged && (r = load_staged(j, j->res->error, sizeof(j->res->error))) < 0) {
		j->res->bad_chunk = -1;
		return r;
	}
	rq = (struct snapshot_commit_req){
		.machine = j->name,
		.upload_path = j->upload,
		.volume_size = j->c->volume_size,
		.chunk_size = j->c->chunk_size,
		.part_size = j->c->part_size,
		.base_machine = j->c->base_machine[0] ? j->c->base_machine : NULL,
		.base = j->c->base,
		.claims = j->c->claims,
		.nclaims = j->c->nclaims,
		.retention = j->retention,
		.pinned = j->c->pinned,
		.npinned = j->c->npinned,
		.gold_image = j->c->gold_image[0] ? j->c->gold_image : NULL,
		.gold_version = j->c->gold_version,
	};
	r = store_open(j->s->store_root, 1, &st);
	if (r < 0) {
		snprintf(j->res->error, sizeof(j->res->error), "cannot open the store: %s",
			 strerror(-r));
		j->res->bad_chunk = -1;
		return r;
	}
	r = snapshot_commit(st, &rq, j->res);
	store_free(st);
	if (r == 0)
		punch_claims(j);
	return r;
}

static const char *const state_names[] = {"none", "running", "done", "failed", "staging"};

static const char *reason(int err)
{
	switch (err) {
	case -EBADMSG:
		return "mismatch";
	case -EINVAL:
		return "invalid";
	case -ENOENT:
		return "base_missing";
	case -ESTALE:
		return "base_geometry";
	case -EINTR:
	case -ECHILD:
		return "interrupted";
	default:
		return "io";
	}
}

static json_t *slot_json(const struct slot *sl)
{
	json_t *j = json_object();

	json_object_set_new(j, "state", json_string(state_names[sl->state]));
	json_object_set_new(j, "id", json_integer((json_int_t)sl->id));
	if (sl->state == SLOT_STAGING) {
		json_object_set_new(j, "batch", json_integer((json_int_t)sl->next_batch));
		json_object_set_new(j, "staged", json_integer((json_int_t)sl->nstaged));
		return j;
	}
	json_object_set_new(j, "started", json_integer(sl->started));
	json_object_set_new(j, "finished", sl->finished ? json_integer(sl->finished) : json_null());
	if (sl->state == SLOT_RUNNING)
		return j;
	json_object_set_new(j, "snapshot",
			    sl->state == SLOT_DONE ? json_integer(sl->res.snapshot) : json_null());
	json_object_set_new(j, "changed", json_integer((json_int_t)sl->res.changed));
	json_object_set_new(j, "new_chunks", json_integer((json_int_t)sl->res.new_chunks));
	json_object_set_new(j, "new_bytes", json_integer((json_int_t)sl->res.new_bytes));
	json_object_set_new(j, "zero_chunks", json_integer((json_int_t)sl->res.zero_chunks));
	json_object_set_new(j, "partial", json_integer((json_int_t)sl->res.partial));
	json_object_set_new(j, "inherited", json_integer((json_int_t)sl->res.inherited));
	json_object_set_new(j, "pruned", json_integer((json_int_t)sl->res.pruned));
	json_object_set_new(j, "elapsed_ms", json_integer((json_int_t)sl->res.elapsed_ms));
	if (sl->state == SLOT_FAILED) {
		json_object_set_new(j, "reason", json_string(reason(sl->err)));
		json_object_set_new(
			j, "error",
			json_string(sl->res.error[0] ? sl->res.error : strerror(-sl->err)));
		if (sl->res.bad_chunk >= 0)
			json_object_set_new(j, "chunk", json_integer(sl->res.bad_chunk));
	}
	return j;
}

/* The durable record of a slot's commit (STATE/uploads/NAME.commit, written
 * atomically): what GET .../commit answers after a restart. Written when a
 * commit starts (running, with max_before) and when it ends. A failure is
 * logged: the answer after a restart is then older, never wrong (see
 * slot_recover). */
static int slot_save(const struct sync *s, const struct slot *sl)
{
	char p[4096], *text;
	json_t *j = slot_json(sl);
	int r;

	json_object_set_new(j, "max_before", json_integer((json_int_t)sl->max_before));
	json_object_set_new(j, "err", json_integer(sl->err));
	text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!text)
		return -ENOMEM;
	r = side_path(s, sl->name, "commit", p, sizeof(p));
	if (r == 0)
		r = io_write_file_atomic(p, text, strlen(text), 0600);
	free(text);
	if (r < 0)
		log_error("commit of '%s': cannot record its state in '%s': %s", sl->name, p,
			  strerror(-r));
	return r;
}

static uint64_t jget(json_t *j, const char *k)
{
	json_int_t v = json_integer_value(json_object_get(j, k));

	return v > 0 ? (uint64_t)v : 0;
}

/* A commit that was running when its job died (goldcached killed, or the job
 * killed at shutdown): it published its snapshot or it did not, and the store
 * says which. Only commits create snapshots and one commit per machine runs
 * at a time, so a snapshot id above max_before is this commit's. */
static void slot_settle(struct sync *s, struct slot *sl, int err)
{
	uint32_t max_used = 0, first = 0;

	if (snapshot_max_used(s->store_root, sl->name, sl->max_before, &max_used, &first) == 0 &&
	    max_used > sl->max_before) {
		sl->state = SLOT_DONE;
		sl->err = 0;
		sl->res.snapshot = first ? first : max_used;
		sl->res.bad_chunk = -1;
		sl->res.error[0] = '\0';
		log_info("commit %llu of '%s': its job ended early, snapshot %u was published",
			 (unsigned long long)sl->id, sl->name, sl->res.snapshot);
		return;
	}
	sl->state = SLOT_FAILED;
	sl->err = err;
	sl->res.bad_chunk = -1;
	snprintf(sl->res.error, sizeof(sl->res.error),
		 "the commit job %s before publishing a snapshot; commit again",
		 err == -EINTR ? "was killed" : "died");
}

/* Loads name's durable record into a new slot (goldcached restarted since
 * its last commit). A record still saying running is settled against the
 * store (no job of this daemon runs it). NULL when there is none. */
static struct slot *slot_recover(struct sync *s, const char *name, size_t *idx)
{
	char p[4096], *text = NULL;
	const char *st;
	struct slot *sl;
	json_t *j;
	size_t len;
	int i;

	if (side_path(s, name, "commit", p, sizeof(p)) < 0 ||
	    io_read_file(p, 16384, &text, &len) < 0)
		return NULL;
	j = json_loadb(text, len, 0, NULL);
	free(text);
	st = json_string_value(json_object_get(j, "state"));
	for (i = 1; st && i <= SLOT_FAILED; i++)
		if (strcmp(st, state_names[i]) == 0)
			break;
	if (!st || i > SLOT_FAILED) {
		log_warn("commit record '%s' is damaged: ignored", p);
		json_decref(j);
		return NULL;
	}
	xgrow((void **)&s->slots, &s->cap, s->n_slots + 1, sizeof(*s->slots));
	*idx = s->n_slots++;
	sl = &s->slots[*idx];
	memset(sl, 0, sizeof(*sl));
	snprintf(sl->name, sizeof(sl->name), "%s", name);
	sl->state = (enum slot_state)i;
	sl->id = jget(j, "id");
	sl->max_before = (uint32_t)jget(j, "max_before");
	sl->started = (int64_t)jget(j, "started");
	sl->finished = (int64_t)jget(j, "finished");
	sl->err = (int)json_integer_value(json_object_get(j, "err"));
	sl->res.snapshot = (uint32_t)jget(j, "snapshot");
	sl->res.changed = jget(j, "changed");
	sl->res.new_chunks = jget(j, "new_chunks");
	sl->res.new_bytes = jget(j, "new_bytes");
	sl->res.zero_chunks = jget(j, "zero_chunks");
	sl->res.partial = jget(j, "partial");
	sl->res.inherited = jget(j, "inherited");
	sl->res.pruned = jget(j, "pruned");
	sl->res.elapsed_ms = jget(j, "elapsed_ms");
	sl->res.bad_chunk =
		json_is_integer(json_object_get(j, "chunk")) ? (int64_t)jget(j, "chunk") : -1;
	snprintf(sl->res.error, sizeof(sl->res.error), "%s",
		 json_string_value(json_object_get(j, "error")) ?: "");
	json_decref(j);
	if (sl->state == SLOT_RUNNING) {
		slot_settle(s, sl, -ECHILD);
		sl->finished = now_unix();
		slot_save(s, sl);
	}
	return sl;
}

static void job_done(int result, void *arg)
{
	struct job *j = arg;
	struct sync *s = j->s;
	struct slot *sl = &s->slots[j->slot];

	sl->finished = now_unix();
	sl->res = *j->res;
	sl->err = result;
	sl->state = result == 0 ? SLOT_DONE : SLOT_FAILED;
	sl->job = NULL;
	if (result == -EINTR || result == -ECHILD)
		slot_settle(s, sl, result); /* killed after publishing? */
	slot_save(s, sl);
	job_free(j);
	if (s->gone)
		s->gone(s->gone_arg);
}

unsigned sync_kill(struct sync *s, void (*gone)(void *arg), void *arg)
{
	unsigned n = 0;

	s->gone = gone;
	s->gone_arg = arg;
	for (size_t i = 0; i < s->n_slots; i++) {
		if (!s->slots[i].job)
			continue;
		worker_child_kill(s->slots[i].job->child);
		n++;
	}
	return n;
}

/* Unique across restarts: wall-clock milliseconds, times 1000 (JSON-safe). */
static uint64_t next_id(void)
{
	static uint64_t last;
	struct timespec ts;
	uint64_t id;

	clock_gettime(CLOCK_REALTIME, &ts);
	id = ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) * 1000;

	last = id > last ? id : last + 1;
	return last;
}

static int same_txn(const struct sync_commit *a, const struct sync_commit *b)
{
	return a->volume_size == b->volume_size && a->chunk_size == b->chunk_size &&
	       a->part_size == b->part_size && a->base == b->base &&
	       strcmp(a->base_machine, b->base_machine) == 0 &&
	       strcmp(a->gold_image, b->gold_image) == 0 && a->gold_version == b->gold_version;
}

/* One batch of an open transaction: its claims appended to the staging file
 * (ascending, after the staged ones). Not durable: a restart loses the
 * transaction and the agent starts it again (the uploaded data stays). */
static int stage(struct sync *s, struct slot *sl, const struct sync_commit *c)
{
	char p[4096];
	int fd, r, w;

	for (size_t i = 0; i < c->nclaims; i++) {
		uint64_t k = c->claims[i].index;

		if ((i == 0 && sl->nstaged && k <= sl->last_index) ||
		    (i && k <= c->claims[i - 1].index))
			return -EINVAL;
	}
	if (sl->nstaged + c->nclaims > MANIFEST_MAX_CHUNKS)
		return -EINVAL;
	if ((r = side_path(s, sl->name, "claims", p, sizeof(p))) < 0)
		return r;
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | (c->batch == 0 ? O_TRUNC : O_APPEND), 0600);
	if (fd < 0) {
		r = -errno;
		log_error("cannot stage claims of '%s' in '%s': %s", sl->name, p, strerror(-r));
		return r;
	}
	w = c->nclaims ? io_write_all(fd, c->claims, c->nclaims * sizeof(*c->claims)) : 0;
	close(fd);
	if (w < 0) {
		log_error("cannot stage claims of '%s' in '%s': %s", sl->name, p, strerror(-w));
		return w;
	}
	if (c->nclaims)
		sl->last_index = c->claims[c->nclaims - 1].index;
	sl->nstaged += c->nclaims;
	return 0;
}

int sync_commit_start(struct sync *s, const char *name, unsigned retention, struct sync_commit *c)
{
	struct slot *sl;
	struct job *j;
	size_t idx = 0;
	uint64_t nstaged = 0, id;
	int r;

	sl = slot_get(s, name, &idx);
	if (!sl)
		sl = slot_recover(s, name, &idx); /* keeps the record's answer on a refusal */
	if (sl && sl->state == SLOT_RUNNING) {
		sync_commit_free(c);
		return -EBUSY;
	}
	if (!sl) {
		xgrow((void **)&s->slots, &s->cap, s->n_slots + 1, sizeof(*s->slots));
		idx = s->n_slots++;
		sl = &s->slots[idx];
		memset(sl, 0, sizeof(*sl));
		snprintf(sl->name, sizeof(sl->name), "%s", name);
	}
	if (c->has_batch) {
		if (c->batch == 0) {
			sl->state = SLOT_STAGING;
			sl->id = next_id();
			sl->hdr = *c;
			sl->hdr.claims = NULL;
			sl->hdr.pinned = NULL;
			sl->next_batch = 0;
			sl->nstaged = 0;
		} else if (sl->state != SLOT_STAGING || sl->next_batch != c->batch ||
			   !same_txn(&sl->hdr, c)) {
			sync_commit_free(c);
			return -ESRCH;
		}
		if ((r = stage(s, sl, c)) < 0) {
			sl->state = SLOT_NONE; /* the transaction is void */
			sync_commit_free(c);
			return r;
		}
		sl->next_batch++;
		if (c->more) {
			sync_commit_free(c);
			return 0;
		}
		/* the last batch: its claims were staged too, the job reads them all */
		nstaged = sl->nstaged;
		free(c->claims);
		c->claims = NULL;
		c->nclaims = 0;
		id = sl->id;
	} else {
		id = next_id();
	}
	j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->slot = idx;
	j->c = c;
	j->nstaged = nstaged;
	j->retention = retention;
	snprintf(j->name, sizeof(j->name), "%s", name);
	j->res = mmap(NULL, sizeof(*j->res), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		      0);
	if (j->res == MAP_FAILED) {
		j->res = NULL;
		r = -errno;
		job_free(j);
		return r;
	}
	j->res->bad_chunk = -1;
	memset(&sl->res, 0, sizeof(sl->res));
	sl->id = id;
	sl->state = SLOT_RUNNING;
	sl->started = now_unix();
	sl->finished = 0;
	sl->err = 0;
	if ((r = snapshot_max_used(s->store_root, name, 0, &sl->max_before, NULL)) < 0 ||
	    (r = sync_upload_path(s->uploads_dir, name, j->upload, sizeof(j->upload))) < 0 ||
	    (r = side_path(s, name, "claims", j->staged_path, sizeof(j->staged_path))) < 0 ||
	    (r = slot_save(s, sl)) < 0 ||
	    (r = worker_fork(s->loop, job_run, job_done, j, &j->child)) < 0) {
		sl->state = SLOT_NONE;
		job_free(j);
		return r;
	}
	sl->job = j;
	return 0;
}

json_t *sync_commit_status(struct sync *s, const char *name)
{
	struct slot *sl = slot_get(s, name, NULL);
	size_t idx;

	if (!sl)
		sl = slot_recover(s, name, &idx);
	if (!sl) {
		json_t *j = json_object();

		json_object_set_new(j, "state", json_string("none"));
		return j;
	}
	return slot_json(sl);
}
