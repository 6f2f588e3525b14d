/* Restore LUN files (see restore.h): snapshots exported for LUN 3.
 *
 * Invariants
 * - A file's path exists only whole: the worker writes NAME.img.tmp.XXXXXX and
 *   renames it (image_export_manifest), so a job killed at any instant leaves
 *   at most a temp file, removed at the next start (restores_new).
 * - A file is READY only when its path exists; a file that no order names
 *   keeps existing until restores_prune, which the daemon calls only after a
 *   complete reconcile (tgtd no longer serves it as a LUN).
 * - The loop never touches the store for this: exports run in forked workers
 *   (RESTORE_JOBS at a time) with their own store handle.
 * The names: FROM@SNAP.img. Machine names (name_is_valid) hold no '@' or '/',
 * so the name is unambiguous and stays inside the directory. */
#include "appliance/restore.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/snapshot.h"
#include "appliance/store.h"
#include "appliance/worker.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

#define RESTORE_JOBS 1
#define RESTORE_RETRY_MS 30000

struct restore_file {
	struct restores *r;
	char from[65];
	uint32_t snap;
	char *path;
	enum restore_file_state state;
	struct worker_child *job;
	uint64_t retry_at, size;
	int wanted;
};

struct restores {
	struct restores_opts o;
	char *store_dir, *dir;
	struct restore_file **f;
	size_t n, cap;
	unsigned running;
	int killing;
	void (*gone)(void *arg);
	void *gone_arg;
};

static char *join(const char *dir, const char *name)
{
	return xasprintf("%s/%s", dir, name);
}

/* Removes the files of dir that are temp files (tmp) or that no entry names. */
static void sweep(struct restores *r, int tmp)
{
	DIR *dir = opendir(r->dir);
	struct dirent *de;

	while (dir && (de = readdir(dir))) {
		int is_tmp = strstr(de->d_name, ".img.tmp.") != NULL;
		int keep = de->d_name[0] == '.' || (tmp ? !is_tmp : is_tmp);
		char *p;

		for (size_t i = 0; i < r->n && !keep; i++)
			keep = strcmp(strrchr(r->f[i]->path, '/') + 1, de->d_name) == 0;
		if (keep)
			continue;
		p = join(r->dir, de->d_name);
		if (unlink(p) == 0)
			log_info("removed leftover \"%s\"", p);
		free(p);
	}
	if (dir)
		closedir(dir);
}

int restores_new(const struct restores_opts *o, struct restores **out)
{
	struct restores *r;
	int rc = io_mkdir_p(o->dir, 0755);

	if (rc < 0) {
		log_error("cannot create \"%s\": %s", o->dir, strerror(-rc));
		return rc;
	}
	r = xcalloc(1, sizeof(*r));
	r->o = *o;
	r->store_dir = xstrdup(o->store_dir);
	r->dir = xstrdup(o->dir);
	r->o.store_dir = r->store_dir;
	r->o.dir = r->dir;
	sweep(r, 1);
	*out = r;
	return 0;
}

static void file_free(struct restore_file *f)
{
	free(f->path);
	free(f);
}

void restores_free(struct restores *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		file_free(r->f[i]);
	free(r->f);
	free(r->store_dir);
	free(r->dir);
	free(r);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
}

struct restore_file *restores_find(struct restores *r, const char *from, uint32_t snap)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->f[i]->snap == snap && strcmp(r->f[i]->from, from) == 0)
			return r->f[i];
	return NULL;
}

struct restore_file *restores_get(struct restores *r, const char *from, uint32_t snap)
{
	struct restore_file *f = restores_find(r, from, snap);
	char name[96];

	if (f)
		return f;
	f = xcalloc(1, sizeof(*f));
	f->r = r;
	snprintf(f->from, sizeof(f->from), "%s", from);
	f->snap = snap;
	snprintf(name, sizeof(name), "%s@%u.img", f->from, snap);
	f->path = join(r->dir, name);
	if (access(f->path, R_OK) == 0) {
		f->state = RESTORE_READY;
		f->size = file_size(f->path);
	} else {
		f->state = RESTORE_QUEUED;
	}
	xgrow((void **)&r->f, &r->cap, r->n + 1, sizeof(*r->f));
	r->f[r->n++] = f;
	return f;
}

const char *restore_file_path(const struct restore_file *f)
{
	return f->state == RESTORE_READY ? f->path : NULL;
}

enum restore_file_state restore_file_state(const struct restore_file *f)
{
	return f->state;
}

uint64_t restore_file_size(const struct restore_file *f)
{
	return f->state == RESTORE_READY ? f->size : 0;
}

void restores_unmark(struct restores *r)
{
	for (size_t i = 0; i < r->n; i++)
		r->f[i]->wanted = 0;
}

void restore_file_mark(struct restore_file *f)
{
	f->wanted = 1;
}

/* In the forked worker: its own store handle, then the hash-checked export. */
static int job_run(void *arg)
{
	struct restore_file *f = arg;
	struct restores *r = f->r;
	struct store *s = NULL;
	int rc;

	if (r->o.child_setup)
		r->o.child_setup(r->o.arg);
	rc = store_open(r->store_dir, 0, &s);
	if (rc < 0)
		return rc;
	rc = snapshot_export_to_file(s, f->from, f->snap, f->path, NULL);
	store_free(s);
	return rc;
}

static void job_done(int result, void *arg)
{
	struct restore_file *f = arg;
	struct restores *r = f->r;

	f->job = NULL;
	r->running--;
	if (r->killing) {
		f->state = result == 0 ? RESTORE_READY : RESTORE_FAILED;
		if (r->gone)
			r->gone(r->gone_arg);
		return;
	}
	if (result == 0) {
		f->state = RESTORE_READY;
		f->size = file_size(f->path);
		log_info("restore LUN file %s@%u ready: \"%s\" (%llu bytes)", f->from, f->snap,
			 f->path, (unsigned long long)f->size);
		if (r->o.ready)
			r->o.ready(r->o.arg);
	} else {
		f->state = RESTORE_FAILED;
		f->retry_at = now_ms() + RESTORE_RETRY_MS;
		log_error("cannot export snapshot %s@%u to \"%s\": %s; retrying in %d s", f->from,
			  f->snap, f->path, strerror(-result), RESTORE_RETRY_MS / 1000);
	}
	restores_pump(r);
}

void restores_pump(struct restores *r)
{
	uint64_t now = now_ms();

	for (size_t i = 0; i < r->n && r->running < RESTORE_JOBS && !r->killing; i++) {
		struct restore_file *f = r->f[i];

		if (!f->wanted)
			continue;
		if (f->state == RESTORE_FAILED && now >= f->retry_at)
			f->state = RESTORE_QUEUED;
		if (f->state != RESTORE_QUEUED)
			continue;
		log_info("exporting snapshot %s@%u to \"%s\" (restore LUN)", f->from, f->snap,
			 f->path);
		if (worker_fork(r->o.loop, job_run, job_done, f, &f->job) < 0) {
			f->state = RESTORE_FAILED;
			f->retry_at = now + RESTORE_RETRY_MS;
			continue;
		}
		f->state = RESTORE_RUNNING;
		r->running++;
	}
}

void restores_prune(struct restores *r, int all)
{
	size_t k = 0;

	for (size_t i = 0; i < r->n; i++) {
		struct restore_file *f = r->f[i];

		if (f->wanted || f->state == RESTORE_RUNNING) {
			r->f[k++] = f;
			continue;
		}
		if (unlink(f->path) == 0)
			log_info("removed restore LUN file \"%s\" (no order names %s@%u)", f->path,
				 f->from, f->snap);
		file_free(f);
	}
	r->n = k;
	if (all)
		sweep(r, 0);
}

unsigned restores_kill(struct restores *r, void (*gone)(void *arg), void *arg)
{
	unsigned n = 0;

	r->killing = 1;
	r->gone = gone;
	r->gone_arg = arg;
	for (size_t i = 0; i < r->n; i++)
		if (r->f[i]->job) {
			worker_child_kill(r->f[i]->job);
			n++;
		}
	return n;
}
