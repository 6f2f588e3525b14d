/* Unit tests for appliance/restore (restore LUN files), in process with a
 * real store holding a machine snapshot and a real event loop (exports run in
 * forked workers): leftovers swept at start, only wanted files exported, the
 * export equals the snapshot, a missing snapshot fails (and is retried later),
 * unwanted files pruned, a published file found ready after a restart, a
 * running export killed at shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/loop.h"
#include "appliance/restore.h"
#include "appliance/snapshot.h"
#include "appliance/store.h"
#include "lib/hash.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"
#include "tests/tap.h"

#define CS 65536u
#define VOL (1u << 20)

static struct loop *loop;
static int ready_calls, gone_calls;

static void on_ready(void *arg)
{
	(void)arg;
	ready_calls++;
}

static void on_gone(void *arg)
{
	(void)arg;
	gone_calls++;
}

/* Runs the loop until f leaves QUEUED/RUNNING (bounded). */
static enum restore_file_state settle(struct restore_file *f)
{
	for (int i = 0; i < 3000; i++) {
		enum restore_file_state s = restore_file_state(f);

		if (s != RESTORE_QUEUED && s != RESTORE_RUNNING)
			return s;
		loop_run_once(loop, 10);
	}
	return restore_file_state(f);
}

static int file_exists(const char *p)
{
	return access(p, F_OK) == 0;
}

/* Commits pc1@1: chunks 0, 3 and 15 of a 1 MiB volume hold data. */
static int make_snapshot(struct store *st, const char *dir)
{
	char *up = xasprintf("%s/pc1.upload", dir);
	struct snapshot_claim cl[3] = {0};
	unsigned idx[3] = {0, 3, 15};
	uint8_t *b = xmalloc(CS);
	struct snapshot_commit_req rq = {.machine = "pc1",
					 .upload_path = up,
					 .volume_size = VOL,
					 .chunk_size = CS,
					 .claims = cl,
					 .nclaims = 3};
	struct snapshot_commit_result res = {0};
	int fd = open(up, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), r = 0;

	if (fd < 0 || ftruncate(fd, VOL) < 0)
		r = -errno;
	for (int i = 0; i < 3 && r == 0; i++) {
		memset(b, 0x40 + i, CS);
		b[7] = (uint8_t)idx[i];
		cl[i].index = idx[i];
		hash_buf(b, CS, &cl[i].id);
		r = io_pwrite_all(fd, b, CS, (off_t)idx[i] * CS);
	}
	if (fd >= 0)
		close(fd);
	if (r == 0)
		r = snapshot_commit(st, &rq, &res);
	if (r < 0)
		printf("# commit: %s\n", res.error);
	free(b);
	free(up);
	return r;
}

int main(void)
{
	char dir[4096], *storedir, *rdir, *p, *want;
	struct restores_opts o = {0};
	struct restores *r = NULL;
	struct restore_file *f, *g, *h;
	struct store *st = NULL;
	struct stat sb;

	log_set_level(LOG_ERROR);
	snprintf(dir, sizeof(dir), "%s", tap_tmpdir());
	storedir = xasprintf("%s/store", dir);
	rdir = xasprintf("%s/state/restore", dir);
	if (store_open(storedir, 1, &st) < 0 || loop_new(&loop) < 0)
		return 2;
	is_int(make_snapshot(st, dir), 0, "pc1@1 committed");
	want = xasprintf("%s/want.img", dir);
	is_int(snapshot_export_to_file(st, "pc1", 1, want, NULL), 0, "reference export");

	/* leftovers of an earlier run */
	is_int(io_mkdir_p(rdir, 0755), 0, "restore dir");
	p = xasprintf("%s/pc1@1.img.tmp.AbC123", rdir);
	is_int(io_write_file_atomic(p, "x", 1, 0644), 0, "a killed job's temp file");
	free(p);
	p = xasprintf("%s/gone@4.img", rdir);
	is_int(io_write_file_atomic(p, "y", 1, 0644), 0, "a file no order names");
	free(p);
	o = (struct restores_opts){
		.loop = loop, .store_dir = storedir, .dir = rdir, .ready = on_ready};
	is_int(restores_new(&o, &r), 0, "restores_new");
	if (!r) {
		tap_rmtree(dir);
		return done_testing();
	}
	p = xasprintf("%s/pc1@1.img.tmp.AbC123", rdir);
	ok(!file_exists(p), "temp file swept at start");
	free(p);

	/* only wanted files are exported */
	f = restores_get(r, "pc1", 1);
	ok(f == restores_get(r, "pc1", 1) && f == restores_find(r, "pc1", 1),
	   "one entry per snapshot");
	ok(restores_find(r, "pc1", 2) == NULL, "find does not create");
	is_int(restore_file_state(f), RESTORE_QUEUED, "queued");
	restores_pump(r);
	is_int(restore_file_state(f), RESTORE_QUEUED, "not exported while no target wants it");
	restore_file_mark(f);
	restores_pump(r);
	is_int(settle(f), RESTORE_READY, "exported once wanted");
	is_int(ready_calls, 1, "the ready callback ran");
	ok(restore_file_path(f) && strstr(restore_file_path(f), "/pc1@1.img"), "its path");
	is_int(restore_file_size(f), VOL, "its size is the volume's");
	{
		char *a = NULL, *b = NULL;
		size_t la = 0, lb = 0;

		ok(io_read_file(restore_file_path(f), VOL, &a, &la) == 0 &&
			   io_read_file(want, VOL, &b, &lb) == 0 && la == lb &&
			   memcmp(a, b, la) == 0,
		   "the file equals the snapshot's export");
		free(a);
		free(b);
	}
	ok(stat(restore_file_path(f), &sb) == 0 && sb.st_blocks * 512 < VOL,
	   "sparse where the snapshot is zero");

	/* a snapshot that does not exist: the job fails, the file stays absent */
	g = restores_get(r, "pc1", 9);
	restore_file_mark(g);
	restores_pump(r);
	is_int(settle(g), RESTORE_FAILED, "a missing snapshot fails");
	ok(restore_file_path(g) == NULL, "no path for it");
	restores_pump(r);
	is_int(restore_file_state(g), RESTORE_FAILED, "not retried at once");

	/* prune: unwanted files go, with all also strays */
	restores_unmark(r);
	restore_file_mark(f);
	restores_prune(r, 1);
	ok(restores_find(r, "pc1", 9) == NULL, "the unwanted entry is dropped");
	p = xasprintf("%s/gone@4.img", rdir);
	ok(!file_exists(p), "a stray file is removed by the first prune");
	free(p);
	ok(file_exists(restore_file_path(f)), "the wanted file stays");
	restores_free(r);
	r = NULL;

	/* restart: a published file is ready at once */
	is_int(restores_new(&o, &r), 0, "restores_new again");
	if (!r) {
		tap_rmtree(dir);
		return done_testing();
	}
	f = restores_get(r, "pc1", 1);
	is_int(restore_file_state(f), RESTORE_READY, "after a restart the file is ready");
	is_int(restore_file_size(f), VOL, "with its size");
	p = xasprintf("%s", restore_file_path(f));
	restores_unmark(r);
	restores_prune(r, 0);
	ok(!file_exists(p), "no order names it: removed");
	free(p);

	/* shutdown: a running export is killed and reported gone */
	h = restores_get(r, "pc1", 1);
	restore_file_mark(h);
	restores_pump(r);
	is_int(restore_file_state(h), RESTORE_RUNNING, "an export runs");
	is_int(restores_kill(r, on_gone, NULL), 1, "kill: one job");
	for (int i = 0; i < 3000 && !gone_calls; i++)
		loop_run_once(loop, 10);
	is_int(gone_calls, 1, "the killed job is reaped");
	restores_free(r);

	loop_free(loop);
	store_free(st);
	free(want);
	free(storedir);
	free(rdir);
	tap_rmtree(dir);
	return done_testing();
}
