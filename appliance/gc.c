/* Garbage collection and stats (see gc.h).
 *
 * Why gc never removes a chunk an operation in flight needs: import, export
 * and verify hold STORE/lock shared (flock) from before their first chunk
 * access to after their manifest is published (or their last read); gc holds
 * it exclusively from before marking to after sweeping. So while gc runs, no
 * import is between "chunk written or found present" and "manifest
 * published", and the mark set (every published manifest) covers every chunk
 * any finished import relies on. A crashed import leaves chunks no manifest
 * names; those are garbage and gc removes them, with its temp files.
 *
 * A manifest that does not decode stops gc before the sweep: its chunks are
 * unknown, and removing them could destroy the only copy of a version whose
 * manifest is repairable. */
#include "appliance/gc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "appliance/chunkset.h"
#include "appliance/image.h"
#include "lib/log.h"
#include "lib/util.h"

struct mark_ctx {
	struct chunkset live;
	uint64_t manifests, damaged;
	struct store_stats *st;
};

static int mark_walk(const char *label, const char *path, const struct manifest *m, int err,
		     const char *errmsg, void *arg)
{
	struct mark_ctx *c = arg;

	if (err < 0) {
		log_error("manifest of %s ('%s') is damaged: %s", label, path, errmsg);
		c->damaged++;
		return 0;
	}
	c->manifests++;
	if (c->st) {
		if (strncmp(label, "machines/", 9) == 0)
			c->st->snapshots++;
		else
			c->st->versions++;
		c->st->logical_bytes += m->size;
	}
	for (uint64_t i = 0; i < m->nchunks; i++) {
		if (m->chunks[i].zero) {
			if (c->st)
				c->st->zero_bytes += manifest_chunk_len(m, i);
			continue;
		}
		if (chunkset_add(&c->live, &m->chunks[i].id) && c->st)
			c->st->unique_bytes += manifest_chunk_len(m, i);
	}
	return 0;
}

struct sweep_ctx {
	struct store *s;
	struct mark_ctx *mark;
	struct gc_result *res;
	int err;
};

static int sweep_one(const struct hash *id, uint64_t stored, void *arg)
{
	struct sweep_ctx *c = arg;
	int r;

	if (chunkset_has(&c->mark->live, id)) {
		c->res->chunks_kept++;
		return 0;
	}
	r = store_chunk_remove(c->s, id);
	if (r < 0) {
		c->err = r;
		return 0; /* keep going: one stuck file should not stop the rest */
	}
	c->res->chunks_removed++;
	c->res->bytes_removed += stored;
	return 0;
}

/* Removes every file in dir whose name matches (prefix NULL: all files). */
static uint64_t remove_files(const char *dir, const char *infix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || (infix && !strstr(e->d_name, infix)))
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static uint64_t clean_tmp(struct store *s)
{
	char p[4096];
	DIR *d;
	struct dirent *e;
	uint64_t n = 0;

	if (store_path(s, p, sizeof(p), "tmp") == 0)
		n += remove_files(p, NULL);
	if (store_path(s, p, sizeof(p), "images") < 0 || !(d = opendir(p)))
		return n;
	while ((e = readdir(d))) {
		char sub[4096];

		if (!name_is_valid(e->d_name))
			continue;
		if (store_path(s, sub, sizeof(sub), "images/%s/versions", e->d_name) == 0)
			n += remove_files(sub, ".tmp.");
		if (store_path(s, sub, sizeof(sub), "images/%s", e->d_name) == 0)
			n += remove_files(sub, ".tmp.");
	}
	closedir(d);
	return n;
}

int gc_collect(struct store *s, struct gc_result *res)
{
	struct mark_ctx mark = {0};
	struct sweep_ctx sw = {.s = s, .mark = &mark, .res = res};
	int r;

	memset(res, 0, sizeof(*res));
	chunkset_init(&mark.live);
	r = store_lock(s, LOCK_EX);
	if (r < 0)
		goto out;
	r = image_walk_manifests(s, NULL, 0, mark_walk, &mark);
	if (r < 0) {
		log_error("cannot read the manifests of store '%s': %s", s->root, strerror(-r));
		goto out;
	}
	if (mark.damaged) {
		log_error("gc refused: %llu damaged manifest(s); repair or remove them first",
			  (unsigned long long)mark.damaged);
		r = -EBADMSG;
		goto out;
	}
	res->manifests = mark.manifests;
	r = store_chunk_foreach(s, sweep_one, &sw);
	if (r == 0)
		r = sw.err;
	res->tmp_removed = clean_tmp(s);
out:
	store_unlock(s);
	chunkset_release(&mark.live);
	return r;
}

struct count_ctx {
	struct mark_ctx *mark;
	struct store_stats *st;
};

static int count_one(const struct hash *id, uint64_t stored, void *arg)
{
	struct count_ctx *c = arg;

	c->st->chunks++;
	c->st->stored_bytes += stored;
	if (chunkset_has(&c->mark->live, id))
		c->st->referenced_chunks++;
	else
		c->st->unreferenced_chunks++;
	return 0;
}

int gc_stats(struct store *s, struct store_stats *st)
{
	struct mark_ctx mark = {.st = st};
	struct count_ctx cc = {.mark = &mark, .st = st};
	struct image_info *imgs = NULL;
	size_t n = 0;
	int r;

	memset(st, 0, sizeof(*st));
	chunkset_init(&mark.live);
	r = image_list(s, &imgs, &n);
	if (r < 0)
		goto out;
	st->images = n;
	r = image_walk_manifests(s, NULL, 0, mark_walk, &mark);
	if (r < 0)
		goto out;
	st->damaged_manifests = mark.damaged;
	r = store_chunk_foreach(s, count_one, &cc);
	if (r < 0)
		goto out;
	st->dedup_ratio =
		st->stored_bytes ? (double)st->logical_bytes / (double)st->stored_bytes : 0;
out:
	free(imgs);
	chunkset_release(&mark.live);
	return r;
}
