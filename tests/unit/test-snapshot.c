/* Unit tests for appliance/snapshot: commit from an upload file (good commit,
 * tampered chunk refused with nothing visible, inherited chunks, zero chunks,
 * bad requests), listing, export, retention pruning with tombstones, gc after
 * pruning freeing exactly the chunks no other snapshot or image uses, and a
 * crash injected at every read, write, fsync and rename of a commit. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "appliance/gc.h"
#include "appliance/image.h"
#include "appliance/snapshot.h"
#include "appliance/store.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"
#include "tests/tap.h"

#define CS (64u << 10)
#define NCH 16u
#define VOL ((uint64_t)CS * NCH)

static char *root;
static char *upload, *expected, *out;

static void fill_random(uint8_t *p, size_t n, unsigned seed)
{
	uint64_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

/* Writes chunk i of the volume with pattern seed (0: zeros) to the upload file
 * and to the "expected volume" file; the claim gets its hash. */
static void put_chunk(uint64_t i, unsigned seed, struct snapshot_claim *c)
{
	uint8_t *b = xcalloc(1, CS);
	int fd;

	if (seed)
		fill_random(b, CS, seed);
	fd = open(upload, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	(void)!io_pwrite_all(fd, b, CS, (off_t)(i * CS));
	close(fd);
	fd = open(expected, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	(void)!io_pwrite_all(fd, b, CS, (off_t)(i * CS));
	close(fd);
	if (c) {
		c->index = i;
		c->parts = 0;
		hash_buf(b, CS, &c->id);
	}
	free(b);
}

/* Overwrites chunk i in the upload file only (the agent's data changed after
 * it hashed, or an attacker). */
static void tamper(uint64_t i)
{
	uint8_t b[512];
	int fd = open(upload, O_WRONLY | O_CLOEXEC);

	memset(b, 0xee, sizeof(b));
	(void)!io_pwrite_all(fd, b, sizeof(b), (off_t)(i * CS + 100));
	close(fd);
}

static int files_equal(const char *a, const char *b)
{
	char *x = NULL, *y = NULL;
	size_t nx = 0, ny = 0;
	int eq;

	if (io_read_file(a, 1 << 26, &x, &nx) < 0 || io_read_file(b, 1 << 26, &y, &ny) < 0) {
		free(x);
		return 0;
	}
	eq = nx == ny && memcmp(x, y, nx) == 0;
	free(x);
	free(y);
	return eq;
}

static int commit(struct store *s, uint32_t base, const struct snapshot_claim *c, size_t n,
		  unsigned retention, struct snapshot_commit_result *res)
{
	struct snapshot_commit_req rq = {
		.machine = "pc1",
		.upload_path = upload,
		.volume_size = VOL,
		.chunk_size = CS,
		.base = base,
		.claims = c,
		.nclaims = n,
		.retention = retention,
	};

	return snapshot_commit(s, &rq, res);
}

static size_t nsnaps(struct store *s)
{
	struct snapshot_info *v = NULL;
	size_t n = 0;

	if (snapshot_list(s, "pc1", &v, &n) < 0)
		return 0;
	free(v);
	return n;
}

/* Chunks uploaded in part (4 KiB parts of the 64 KiB chunks): the commit
 * checks the claimed hash of the uploaded parts, lays them over the base's
 * chunk (zero without a base) and reads nothing else of the upload file. */
static void test_parts(struct store *s)
{
	struct snapshot_claim c[2];
	struct snapshot_commit_result res;
	struct snapshot_commit_req rq = {.machine = "pc8",
					 .upload_path = upload,
					 .volume_size = VOL,
					 .chunk_size = CS,
					 .part_size = 4096,
					 .claims = c,
					 .nclaims = 1};
	uint8_t *chunk = xmalloc(CS), *garbage = xmalloc(CS);
	int fd;

	/* pc8@1: chunk 3 whole */
	put_chunk(3, 903, &c[0]);
	c[0].parts = 0;
	is_int(snapshot_commit(s, &rq, &res), 0, "pc8: first snapshot, chunk 3 whole");
	fill_random(chunk, CS, 903);
	/* parts 1 and 2 of chunk 3 change; the rest of chunk 3 in the upload
	 * file is garbage the commit must not read */
	fill_random(chunk + 4096, 8192, 904);
	fill_random(garbage, CS, 905);
	memcpy(garbage + 4096, chunk + 4096, 8192);
	fd = open(upload, O_WRONLY | O_CLOEXEC);
	(void)!io_pwrite_all(fd, garbage, CS, (off_t)(3 * CS));
	close(fd);
	fd = open(expected, O_WRONLY | O_CLOEXEC);
	(void)!io_pwrite_all(fd, chunk, CS, (off_t)(3 * CS));
	close(fd);
	c[0].index = 3;
	c[0].parts = 0x6;
	hash_buf(chunk + 4096, 8192, &c[0].id); /* the claim covers the parts sent */
	rq.base = res.snapshot;
	is_int(snapshot_commit(s, &rq, &res), 0, "parts 1-2 of chunk 3 over base pc8@1");
	is_int(res.partial, 1, "one chunk completed from its base");
	is_int(snapshot_export_to_file(s, "pc8", res.snapshot, out, NULL), 0, "export pc8@2");
	{
		uint8_t *got = xmalloc(CS);

		fd = open(out, O_RDONLY | O_CLOEXEC);
		ok(fd >= 0 && io_pread_full(fd, got, CS, (off_t)(3 * CS)) == (ssize_t)CS &&
			   memcmp(got, chunk, CS) == 0,
		   "chunk 3 = the base's with the two new parts");
		if (fd >= 0)
			close(fd);
		free(got);
	}
	c[0].parts = 0x2; /* part 2 left out: the hash cannot match */
	rq.base = res.snapshot - 1;
	is_int(snapshot_commit(s, &rq, &res), -EBADMSG, "a part left out: mismatch");
	ok(res.bad_chunk == 3, "names chunk 3");
	/* without a base the rest of the chunk is zero */
	hash_buf(garbage + 4096, 8192, &c[0].id);
	c[0].parts = 0x6;
	rq.base = 0;
	is_int(snapshot_commit(s, &rq, &res), 0, "parts without a base: zero around them");
	memset(chunk, 0, CS);
	memcpy(chunk + 4096, garbage + 4096, 8192);
	is_int(snapshot_export_to_file(s, "pc8", res.snapshot, out, NULL), 0, "export it");
	{
		uint8_t *got = xmalloc(CS);

		fd = open(out, O_RDONLY | O_CLOEXEC);
		ok(fd >= 0 && io_pread_full(fd, got, CS, (off_t)(3 * CS)) == (ssize_t)CS &&
			   memcmp(got, chunk, CS) == 0,
		   "chunk 3 = zeros with the two parts");
		if (fd >= 0)
			close(fd);
		free(got);
	}
	c[0].parts = 1ull << 16;
	is_int(snapshot_commit(s, &rq, &res), -EINVAL, "a part past the chunk refused");
	rq.part_size = 1024;
	c[0].parts = 1;
	is_int(snapshot_commit(s, &rq, &res), -EINVAL, "a part size under 4 KiB refused");
	free(chunk);
	free(garbage);
}

/* A crash (the process _exits as kill -9 or a power cut would leave it) at
 * every write, fsync, rename and read of a commit: afterwards the commit is
 * either invisible or whole, ids only grow, and the store stays sound. */
static void test_crashes(struct store *s, const char *storedir)
{
	static const char *const ops[] = {"read", "write", "fsync", "rename"};
	struct snapshot_claim c[NCH];
	unsigned crashes = 0, bad = 0, visible = 0;
	uint32_t last = 0;

	for (size_t o = 0; o < ARRAY_SIZE(ops); o++) {
		/* new data for each op, so its crashes hit chunk writes too */
		for (unsigned i = 0; i < NCH; i++)
			put_chunk(i, (unsigned)(1000 * (o + 1) + i), &c[i]);
		for (unsigned n = 1; n < 200; n++) {
			char spec[32];
			int st = 0;
			pid_t pid;
			uint32_t id = 0;

			snprintf(spec, sizeof(spec), "%s:%u:crash", ops[o], n);
			pid = fork();
			if (pid == 0) {
				struct store *cs = NULL;
				struct snapshot_commit_req rq = {.machine = "pc9",
								 .upload_path = upload,
								 .volume_size = VOL,
								 .chunk_size = CS,
								 .claims = c,
								 .nclaims = NCH,
								 .retention = 3};
				struct snapshot_commit_result res;

				setenv("GOLDCACHE_FAULT", spec, 1);
				io_fault_reset();
				if (store_open(storedir, 0, &cs) < 0)
					_exit(2);
				_exit(snapshot_commit(cs, &rq, &res) == 0 ? 0 : 3);
			}
			waitpid(pid, &st, 0);
			if (!WIFEXITED(st) || (WEXITSTATUS(st) != 137 && WEXITSTATUS(st) != 0)) {
				bad++;
				diag("%s: child ended with status %d", spec, st);
				break;
			}
			if (snapshot_latest(s, "pc9", &id) == 0 && id != last) {
				/* a new snapshot is visible: it must be whole */
				visible++;
				if (id < last ||
				    snapshot_export_to_file(s, "pc9", id, out, NULL) < 0 ||
				    !files_equal(out, upload)) {
					bad++;
					diag("%s: snapshot pc9@%u is not whole", spec, id);
				}
				last = id;
			}
			if (WEXITSTATUS(st) == 0)
				break; /* the n-th op is past the commit's end */
			crashes++;
		}
	}
	ok(crashes > 4 * NCH, "%u crashes injected into commits", crashes);
	is_int(bad, 0, "every visible snapshot is whole after each crash (%u visible)", visible);
	{
		struct gc_result g;
		struct verify_result vr;

		is_int(image_verify(s, NULL, 0, &vr), 0, "verify after the crashes");
		ok(vr.nbad == 0 && vr.nbad_manifests == 0, "no damaged chunk or manifest");
		image_verify_result_release(&vr);
		is_int(gc_collect(s, &g), 0, "gc after the crashes (no damaged manifest stops it)");
	}
}

int main(void)
{
	struct store *s = NULL;
	struct snapshot_commit_result res;
	struct snapshot_claim c[NCH];
	struct snapshot_info *v = NULL;
	struct gc_result g;
	size_t n = 0;
	uint32_t id = 0;
	int fd;

	log_init("test-snapshot", getenv("GC_UNIT_VERBOSE") ? LOG_DEBUG : LOG_ERROR);
	root = tap_tmpdir();
	upload = xasprintf("%s/upload.img", root);
	expected = xasprintf("%s/expected.img", root);
	out = xasprintf("%s/out.img", root);
	{
		char *st = xasprintf("%s/store", root);
		int r = store_open(st, 1, &s);

		free(st);
		if (r < 0)
			return 2;
	}
	fd = open(upload, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	(void)!ftruncate(fd, (off_t)VOL);
	close(fd);
	fd = open(expected, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	(void)!ftruncate(fd, (off_t)VOL);
	close(fd);

	is_int(snapshot_latest(s, "pc1", &id), -ENOENT, "no snapshot yet");

	/* 1: first snapshot, chunks 0..7 data, 8 claimed but zero, rest never written */
	for (unsigned i = 0; i < 8; i++)
		put_chunk(i, 100 + i, &c[i]);
	put_chunk(8, 0, &c[8]);
	is_int(commit(s, 0, c, 9, 0, &res), 0, "first commit");
	is_int(res.snapshot, 1, "first snapshot is 1");
	is_int(res.changed, 9, "9 changed chunks");
	is_int(res.new_chunks, 8, "8 new chunks stored");
	is_int(res.zero_chunks, 1, "a zero claim is a zero chunk");
	is_int(res.inherited, 0, "nothing inherited without a base");
	is_int(snapshot_export_to_file(s, "pc1", 0, out, NULL), 0, "export newest");
	ok(files_equal(out, expected), "export equals the volume");

	/* 2: chunks 2, 3 changed, base 1: the rest inherited */
	put_chunk(2, 202, &c[0]);
	put_chunk(3, 203, &c[1]);
	is_int(commit(s, 1, c, 2, 0, &res), 0, "incremental commit");
	is_int(res.snapshot, 2, "second snapshot is 2");
	is_int(res.inherited, NCH - 2, "unclaimed chunks inherited from the base");
	is_int(snapshot_export_to_file(s, "pc1", 2, out, NULL), 0, "export @2");
	ok(files_equal(out, expected), "export @2 equals the volume");

	/* tampered: claim chunk 5's new hash but the upload holds other bytes */
	put_chunk(9, 309, &c[0]);
	put_chunk(5, 305, &c[1]);
	tamper(5);
	is_int(commit(s, 2, c, 2, 0, &res), -EBADMSG, "tampered chunk refuses the commit");
	ok(strstr(res.error, "chunk 5 ") != NULL, "the error names the chunk: %s", res.error);
	is_int(nsnaps(s), 2, "no snapshot appears");
	is_int(snapshot_latest(s, "pc1", &id), 0, "latest still readable");
	is_int(id, 2, "latest is still 2");
	put_chunk(5, 305, &c[1]); /* repair: the agent re-uploads */

	/* bad requests */
	c[2] = c[0];
	is_int(commit(s, 2, c, 3, 0, &res), -EINVAL, "duplicate index refused");
	c[2].index = NCH;
	is_int(commit(s, 2, c, 3, 0, &res), -EINVAL, "index past the volume refused");
	is_int(commit(s, 7, c, 2, 0, &res), -ENOENT, "unknown base refused");
	{
		struct snapshot_commit_req rq = {.machine = "pc1",
						 .upload_path = upload,
						 .volume_size = VOL / 2,
						 .chunk_size = CS,
						 .base = 2,
						 .claims = &c[1],
						 .nclaims = 1};

		is_int(snapshot_commit(s, &rq, &res), -ESTALE, "base of another size refused");
		rq.volume_size = VOL * 2;
		rq.base = 0;
		is_int(snapshot_commit(s, &rq, &res), -EINVAL,
		       "volume past the upload file refused");
		rq.volume_size = 1000;
		is_int(snapshot_commit(s, &rq, &res), -EINVAL,
		       "size not a multiple of 512 refused");
	}
	is_int(nsnaps(s), 2, "still 2 snapshots after the refusals");

	/* 3: the repaired commit goes through */
	is_int(commit(s, 2, c, 2, 0, &res), 0, "re-commit after re-upload");
	is_int(res.snapshot, 3, "third snapshot is 3");

	/* listing */
	is_int(snapshot_list(s, "pc1", &v, &n), 0, "list");
	is_int(n, 3, "3 snapshots");
	if (n == 3) {
		is_int(v[0].parent, 0, "1 has no parent");
		is_int(v[0].changed, 8, "1: changed = its 8 data chunks");
		is_int(v[1].parent, 1, "2's parent is 1");
		is_int(v[1].changed, 2, "2: 2 changed chunks");
		is_int(v[2].changed, 2, "3: 2 changed chunks");
		is_int(v[2].size, VOL, "size");
		ok(v[2].created > 0, "created set");
	}
	free(v);

	/* an image sharing chunk 2 of snapshot 1 (pattern 102), which no later
	 * snapshot holds */
	{
		char img[4096];
		uint8_t *b = xmalloc(CS);
		struct import_result ir;
		struct import_opts io = {.chunk_size = CS};

		if (fmt_buf(img, sizeof(img), "%s/img.raw", root) < 0)
			return 2;
		fill_random(b, CS, 102);
		is_int(io_write_file_atomic(img, b, CS, 0644), 0, "image file");
		is_int(image_import(s, "shared", img, &io, &ir), 0,
		       "import an image sharing a chunk");
		free(b);
	}

	/* 4: change chunk 4 with retention 2: 1 and 2 pruned (3, 4 kept) */
	put_chunk(4, 404, &c[0]);
	is_int(commit(s, 3, c, 1, 2, &res), 0, "commit with retention 2");
	is_int(res.snapshot, 4, "fourth snapshot is 4");
	is_int(res.pruned, 2, "2 old snapshots pruned");
	is_int(nsnaps(s), 2, "2 snapshots left");
	is_int(snapshot_export_to_file(s, "pc1", 1, out, NULL), -ENOENT, "pruned 1 is gone");
	/* gc: of the chunks only pruned 1 and 2 held (patterns 102, 103, 105:
	 * overwritten by 2 and 3), 102 is kept by the image; 103 and 105 go.
	 * The refused commits stored nothing (chunk 5 failed before 9 was read). */
	is_int(gc_collect(s, &g), 0, "gc");
	is_int(g.chunks_removed, 2, "gc frees exactly the 2 chunks only pruned snapshots used");
	is_int(snapshot_export_to_file(s, "pc1", 0, out, NULL), 0, "export newest after gc");
	ok(files_equal(out, expected), "newest intact after gc");
	is_int(snapshot_export_to_file(s, "pc1", 3, out, NULL), 0, "export @3 after gc");

	/* ids are never reused after pruning */
	is_int(commit(s, 4, c, 1, 1, &res), 0, "commit with retention 1");
	is_int(res.snapshot, 5, "fifth snapshot is 5");
	is_int(nsnaps(s), 1, "1 snapshot left");
	{
		uint32_t pin = 5;
		struct snapshot_commit_req rq = {.machine = "pc1",
						 .upload_path = upload,
						 .volume_size = VOL,
						 .chunk_size = CS,
						 .base = 5,
						 .claims = c,
						 .nclaims = 1,
						 .retention = 1,
						 .pinned = &pin,
						 .npinned = 1};

		is_int(snapshot_commit(s, &rq, &res), 0, "commit with retention 1, 5 pinned");
		is_int(nsnaps(s), 2, "the pinned snapshot 5 survives retention");
		rq.base = 6;
		rq.npinned = 0;
		is_int(snapshot_commit(s, &rq, &res), 0, "commit with nothing pinned");
		is_int(res.pruned, 2, "5 and 6 pruned now");
		is_int(nsnaps(s), 1, "1 snapshot left");
	}

	/* the gold image@version a commit names is recorded beside the snapshot,
	 * listed, and goes with it when retention prunes it */
	{
		struct snapshot_commit_req rq = {.machine = "pc1",
						 .upload_path = upload,
						 .volume_size = VOL,
						 .chunk_size = CS,
						 .base = 7,
						 .claims = c,
						 .nclaims = 1,
						 .retention = 2,
						 .gold_image = "deb12",
						 .gold_version = 4};
		struct snapshot_info *si = NULL;
		char img[65] = "";
		uint32_t ver = 0, id8;
		size_t ns = 0;

		is_int(snapshot_gold(s, "pc1", 7, img, &ver), -ENOENT, "7: no gold recorded");
		is_int(snapshot_commit(s, &rq, &res), 0, "commit naming gold deb12@4");
		id8 = res.snapshot;
		is_int(snapshot_gold(s, "pc1", id8, img, &ver), 0, "gold record read back");
		ok(strcmp(img, "deb12") == 0 && ver == 4, "it is deb12@4");
		is_int(snapshot_list(s, "pc1", &si, &ns), 0, "list");
		ok(ns == 2 && si[1].gold_version == 4 && strcmp(si[1].gold_image, "deb12") == 0 &&
			   si[0].gold_version == 0 && si[0].gold_image[0] == '\0',
		   "the list shows it (and none for 7)");
		free(si);
		rq.base = id8;
		rq.retention = 1;
		rq.gold_image = NULL;
		is_int(snapshot_commit(s, &rq, &res), 0, "commit without gold, retention 1");
		is_int(snapshot_gold(s, "pc1", id8, img, &ver), -ENOENT,
		       "the pruned snapshot's gold record is gone");
	}

	test_parts(s);
	{
		char *st = xasprintf("%s/store", root);

		test_crashes(s, st);
		free(st);
	}
	store_free(s);
	tap_rmtree(root);
	free(upload);
	free(expected);
	free(out);
	return done_testing();
}
