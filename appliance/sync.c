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
 * Nothing here is durable on its own: a snapshot exists once snapshot_commit
 * has published its manifest, which happens before the job reports "done".
 * A goldcached killed mid-commit leaves no snapshot (only unreferenced chunks
 * for gc) and forgets the job; the agent, polling, sees "none" and commits
 * again. */
#include "appliance/sync.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/worker.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

enum slot_state { SLOT_NONE, SLOT_RUNNING, SLOT_DONE, SLOT_FAILED };

/* The last commit of one machine. */
struct slot {
	char name[65];
	enum slot_state state;
	struct job *job; /* while running */
	int64_t started, finished;
	int err;
	struct snapshot_commit_result res;
};

struct job {
	struct sync *s;
	size_t slot;
	char name[65];
	char upload[4096];
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
		    strcmp(k, "gold") != 0) {
			snprintf(err, errsize,
				 "unknown key \"%.64s\" (known: volume_size, chunk_size, "
				 "base_snapshot, chunks, gold)",
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
		const char *hex = json_string_value(h);

		if (!json_is_object(e) || json_object_size(e) != 2 || !json_is_integer(idx) ||
		    json_integer_value(idx) < 0 || !hex || strlen(hex) != HASH_HEX_LEN ||
		    hash_from_hex(hex, &c->claims[i].id) < 0) {
			snprintf(
				err, errsize,
				"chunks[%zu] must be {\"index\": N, \"sha256\": \"64 hex digits\"}",
				i);
			goto out;
		}
		c->claims[i].index = (uint64_t)json_integer_value(idx);
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

/* In the forked child. */
static int job_run(void *arg)
{
	struct job *j = arg;
	struct snapshot_commit_req rq = {
		.machine = j->name,
		.upload_path = j->upload,
		.volume_size = j->c->volume_size,
		.chunk_size = j->c->chunk_size,
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
	struct store *st = NULL;
	int r = store_open(j->s->store_root, 1, &st);

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
	if (result == -EINTR || result == -ECHILD) {
		sl->res.bad_chunk = -1;
		snprintf(sl->res.error, sizeof(sl->res.error), "the commit job %s; commit again",
			 result == -EINTR ? "was killed" : "died");
	}
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

int sync_commit_start(struct sync *s, const char *name, unsigned retention, struct sync_commit *c)
{
	struct slot *sl;
	struct job *j;
	size_t idx = 0;
	int r;

	sl = slot_get(s, name, &idx);
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
	j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->slot = idx;
	j->c = c;
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
	if ((r = sync_upload_path(s->uploads_dir, name, j->upload, sizeof(j->upload))) < 0 ||
	    (r = worker_fork(s->loop, job_run, job_done, j, &j->child)) < 0) {
		job_free(j);
		return r;
	}
	sl->job = j;
	memset(&sl->res, 0, sizeof(sl->res));
	sl->state = SLOT_RUNNING;
	sl->started = now_unix();
	sl->finished = 0;
	sl->err = 0;
	return 0;
}

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
	default:
		return "io";
	}
}

json_t *sync_commit_status(struct sync *s, const char *name)
{
	static const char *const states[] = {"none", "running", "done", "failed"};
	struct slot *sl = slot_get(s, name, NULL);
	json_t *j = json_object();

	json_object_set_new(j, "state", json_string(states[sl ? sl->state : SLOT_NONE]));
	if (!sl)
		return j;
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
