/* Unit tests for appliance/store (chunk put/get/has/verify, compression,
 * damage detection, fault injection), appliance/chunkset, and the chunking of
 * appliance/image (zero chunks, short last chunk, holes, ids = SHA-256). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/chunkset.h"
#include "appliance/image.h"
#include "appliance/store.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/spawn.h"
#include "lib/util.h"
#include "tests/tap.h"

static char *root;

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

static off_t file_size(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 ? st.st_size : -1;
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Runs argv; its exit code, or -1. */
static int run(const char *const argv[])
{
	struct spawn_opts o = SPAWN_OPTS_INIT;
	int code = -1;

	o.timeout_ms = 60000;
	return spawn_run(argv, &o, &code) < 0 ? -1 : code;
}

static void test_put_get(struct store *s)
{
	uint8_t *a = xmalloc(1 << 20), *b = xmalloc(1 << 20), *text = xmalloc(1 << 20);
	struct hash ha, ht, hz;
	char p[4096], tmpdir[4096];
	size_t len = 0;
	int was_new = -1, fd;

	fill_random(a, 1 << 20, 1);
	for (size_t i = 0; i < (1 << 20); i++)
		text[i] = (uint8_t)("goldcache store "[i % 16]);
	hash_buf(a, 1 << 20, &ha);
	hash_buf(text, 1 << 20, &ht);
	is_int(store_chunk_has(s, &ha), 0, "absent chunk: has = 0");
	is_int(store_chunk_put(s, &ha, a, 1 << 20, &was_new), 0, "put random chunk");
	is_int(was_new, 1, "first put writes");
	is_int(store_chunk_has(s, &ha), 0, "not visible before store_sync (pending)");
	is_int(store_chunk_put(s, &ha, a, 1 << 20, &was_new), 0, "put again while pending");
	is_int(was_new, 0, "pending chunk deduplicates");
	is_int(store_sync(s), 0, "store_sync publishes");
	is_int(store_chunk_has(s, &ha), 1, "has = 1 after store_sync");
	is_int(store_chunk_put(s, &ha, a, 1 << 20, &was_new), 0, "put again");
	is_int(was_new, 0, "second put deduplicates");
	is_int(store_chunk_get(s, &ha, b, 1 << 20, &len), 0, "get");
	ok(len == (1 << 20) && memcmp(a, b, len) == 0, "get returns the bytes");
	store_chunk_path(s, &ha, p, sizeof(p));
	is_int(file_size(p), (1 << 20) + STORE_CHUNK_HDR, "random chunk stored raw (+16 header)");
	is_int(store_chunk_get(s, &ha, b, 4096, &len), -ENOBUFS, "small buffer: -ENOBUFS");

	is_int(store_chunk_put(s, &ht, text, 1 << 20, NULL), 0, "put compressible chunk");
	store_sync(s);
	store_chunk_path(s, &ht, p, sizeof(p));
	ok(file_size(p) < (1 << 17), "compressible chunk stored compressed (%lld bytes)",
	   (long long)file_size(p));
	memset(b, 0, 1 << 20);
	is_int(store_chunk_get(s, &ht, b, 1 << 20, &len), 0, "get compressed chunk");
	ok(len == (1 << 20) && memcmp(text, b, len) == 0, "decompressed bytes equal");

	/* a short chunk, as the last chunk of an image */
	hash_buf(a, 512, &hz);
	is_int(store_chunk_put(s, &hz, a, 512, NULL), 0, "put 512-byte chunk");
	store_sync(s);
	is_int(store_chunk_get(s, &hz, b, 1 << 20, &len), 0, "get 512-byte chunk");
	is_int(len, 512, "length kept");

	/* damage: a flipped byte in the raw chunk */
	store_chunk_path(s, &ha, p, sizeof(p));
	chmod(p, 0644);
	fd = open(p, O_RDWR);
	{
		uint8_t c;

		if (pread(fd, &c, 1, 5000) == 1) {
			c ^= 0x40;
			if (pwrite(fd, &c, 1, 5000) != 1)
				abort();
		}
	}
	close(fd);
	is_int(store_chunk_get(s, &ha, b, 1 << 20, &len), -EBADMSG, "flipped byte: -EBADMSG");
	is_int(store_chunk_verify(s, &ha, NULL), -EBADMSG, "verify reports it too");
	/* damage: flipped byte inside a compressed payload, and a truncated file */
	store_chunk_path(s, &ht, p, sizeof(p));
	chmod(p, 0644);
	if (truncate(p, file_size(p) - 3) < 0)
		abort();
	is_int(store_chunk_get(s, &ht, b, 1 << 20, &len), -EBADMSG, "truncated chunk: -EBADMSG");
	/* damage: bad header */
	store_chunk_path(s, &hz, p, sizeof(p));
	chmod(p, 0644);
	fd = open(p, O_WRONLY);
	if (pwrite(fd, "XXXX", 4, 0) != 4)
		abort();
	close(fd);
	is_int(store_chunk_get(s, &hz, b, 1 << 20, &len), -EBADMSG, "bad magic: -EBADMSG");
	is_int(store_chunk_remove(s, &hz), 0, "remove");
	is_int(store_chunk_get(s, &hz, b, 1 << 20, &len), -ENOENT, "missing chunk: -ENOENT");
	is_int(store_chunk_remove(s, &hz), 0, "remove twice is fine");

	/* fault injection: write fails, fsync fails; nothing is left behind */
	{
		struct hash h2;

		fill_random(a, 65536, 99);
		hash_buf(a, 65536, &h2);
		snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", root);
		setenv("GOLDCACHE_FAULT", "write:1:EIO", 1);
		io_fault_reset();
		is_int(store_chunk_put(s, &h2, a, 65536, NULL), -EIO, "injected EIO on write");
		setenv("GOLDCACHE_FAULT", "fsync:1:ENOSPC", 1);
		io_fault_reset();
		is_int(store_chunk_put(s, &h2, a, 65536, NULL), 0, "put (its fsync is deferred)");
		is_int(store_sync(s), -ENOSPC, "injected ENOSPC on the deferred fsync");
		unsetenv("GOLDCACHE_FAULT");
		io_fault_reset();
		is_int(store_chunk_has(s, &h2), 0, "failed puts publish no chunk");
		is_int(count_files(tmpdir), 0, "and leave no temp file");
	}
	is_int(store_sync(s), 0, "store_sync");
	free(a);
	free(b);
	free(text);
}

static int count_cb(const struct hash *id, uint64_t stored, void *arg)
{
	(void)id;
	(void)stored;
	(*(int *)arg)++;
	return 0;
}

static void test_chunkset(void)
{
	struct chunkset cs;
	struct hash h;
	int dup = 0, miss = 0, n = 0;

	chunkset_init(&cs);
	for (uint32_t i = 0; i < 5000; i++) {
		hash_buf(&i, sizeof(i), &h);
		dup += !chunkset_add(&cs, &h);
	}
	for (uint32_t i = 0; i < 5000; i++) {
		hash_buf(&i, sizeof(i), &h);
		miss += !chunkset_has(&cs, &h);
		dup += chunkset_add(&cs, &h);
	}
	is_int(dup, 0, "chunkset: adds new, refuses duplicates");
	is_int(miss, 0, "chunkset: finds every id after growing");
	for (size_t i = 0; chunkset_next(&cs, &i, &h);)
		n++;
	is_int(n, 5000, "chunkset: iteration visits each id once");
	{
		uint32_t x = 777777;

		hash_buf(&x, sizeof(x), &h);
		ok(!chunkset_has(&cs, &h), "chunkset: absent id");
	}
	chunkset_release(&cs);
}

/* Chunking through image_import: 64K chunks over a file made of a random
 * chunk, a zero chunk (written), a hole, a repeat of chunk 0, a short tail. */
static void test_chunking(struct store *s)
{
	const uint32_t cs = 65536;
	char path[4096], out[4096];
	uint8_t *a = xmalloc(cs), *z = xcalloc(1, cs), *tail = xmalloc(1024);
	struct import_opts o = {.chunk_size = cs};
	struct import_result res;
	struct manifest *m = NULL;
	struct hash h;
	int fd;

	snprintf(path, sizeof(path), "%s/src.img", root);
	fill_random(a, cs, 5);
	fill_random(tail, 1024, 6);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || pwrite(fd, a, cs, 0) != cs || pwrite(fd, z, cs, (off_t)cs) != cs ||
	    pwrite(fd, a, cs, (off_t)3 * cs) != cs || pwrite(fd, tail, 1024, (off_t)4 * cs) != 1024)
		abort();
	close(fd);
	is_int(image_import(s, "chunky", path, &o, &res), 0, "import");
	is_int(res.version, 1, "first version is 1");
	is_int(res.chunks, 5, "5 chunks (last one short)");
	is_int(res.zero_chunks, 2, "written zeros and the hole are zero chunks");
	is_int(res.new_chunks, 2, "repeated chunk stored once");
	is_int(image_manifest_load(s, "chunky", 1, &m), 0, "manifest loads");
	if (m) {
		hash_buf(a, cs, &h);
		ok(hash_equal(&m->chunks[0].id, &h) && hash_equal(&m->chunks[3].id, &h),
		   "chunk id is the SHA-256 of the chunk");
		ok(m->chunks[1].zero && m->chunks[2].zero && !m->chunks[4].zero, "zero flags");
		hash_buf(tail, 1024, &h);
		ok(hash_equal(&m->chunks[4].id, &h), "short chunk hashed over its length");
		is_int(m->chunk_size, cs, "chunk size recorded");
		is_int(m->size, 4 * cs + 1024, "size recorded");
		manifest_free(m);
	}
	snprintf(out, sizeof(out), "%s/out.img", root);
	is_int(image_export_to_file(s, "chunky", 0, out, NULL), 0, "export current");
	{
		const char *argv[] = {"cmp", "-s", path, out, NULL};

		is_int(run(argv), 0, "export is bit-identical");
	}
	{
		struct stat st;

		stat(out, &st);
		ok((uint64_t)st.st_blocks * 512 <= 3 * cs + 8192, "export is sparse (%lld KiB)",
		   (long long)st.st_blocks / 2);
	}
	/* version ids: allocated in order, never reused after rm */
	is_int(image_import(s, "chunky", path, &o, &res), 0, "second import");
	is_int(res.version, 2, "version 2");
	is_int(image_rm(s, "chunky", 1, 0), -EBUSY, "rm current refused");
	is_int(image_rm(s, "chunky", 2, 0), 0, "rm version 2");
	is_int(image_manifest_load(s, "chunky", 2, &m), -ENOENT, "version 2 gone");
	is_int(image_import(s, "chunky", path, &o, &res), 0, "third import");
	is_int(res.version, 3, "removed id 2 is not reused");
	is_int(image_promote(s, "chunky", 3), 0, "promote 3");
	{
		uint32_t cur = 0;

		is_int(image_current(s, "chunky", &cur), 0, "current readable");
		is_int(cur, 3, "current is 3");
	}
	is_int(image_promote(s, "chunky", 2), -ENOENT, "promote removed version: -ENOENT");
	/* a new version without a chunk size keeps the current version's (machines'
	 * caches hold one chunk size); an explicit one still wins */
	{
		struct import_opts keep = {0}, other = {.chunk_size = 1u << 20};

		is_int(image_import(s, "chunky", path, &keep, &res), 0,
		       "import without a chunk size");
		is_int(image_manifest_load(s, "chunky", res.version, &m), 0,
		       "  its manifest loads");
		if (m) {
			is_int(m->chunk_size, cs, "  keeps the current version's 64K chunks");
			manifest_free(m);
		}
		is_int(image_import(s, "chunky", path, &other, &res), 0, "import with 1M chunks");
		is_int(image_manifest_load(s, "chunky", res.version, &m), 0,
		       "  its manifest loads");
		if (m) {
			is_int(m->chunk_size, 1u << 20, "  has 1M chunks");
			manifest_free(m);
		}
		is_int(image_import(s, "fresh", path, &keep, &res), 0, "first version of an image");
		is_int(image_manifest_load(s, "fresh", res.version, &m), 0, "  its manifest loads");
		if (m) {
			is_int(m->chunk_size, STORE_DEFAULT_CHUNK, "  has the default chunk size");
			manifest_free(m);
		}
	}
	is_int(image_import(s, "bad name", path, &o, &res), -EINVAL, "name with space refused");
	is_int(image_import(s, "a/b", path, &o, &res), -EINVAL, "name with slash refused");
	is_int(image_import(s, "x", root, &o, &res), -EISDIR, "directory refused");
	{
		char odd[4096];

		snprintf(odd, sizeof(odd), "%s/odd.img", root);
		fd = open(odd, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, a, 1000) != 1000)
			abort();
		close(fd);
		is_int(image_import(s, "x", odd, &o, &res), -EINVAL, "size not multiple of 512");
	}
	free(a);
	free(z);
	free(tail);
}

int main(void)
{
	struct store *s = NULL;
	int n = 0;

	log_init("test-store", LOG_ERROR);
	root = tap_tmpdir();
	is_int(store_open(root, 0, &s), -ENOENT, "open without create: -ENOENT");
	is_int(store_open(root, 1, &s), 0, "create store");
	if (!s) {
		tap_rmtree(root);
		return done_testing();
	}
	test_put_get(s);
	is_int(store_chunk_foreach(s, count_cb, &n), 0, "foreach");
	is_int(n, 2, "foreach sees the 2 chunks left");
	test_chunkset();
	test_chunking(s);
	store_free(s);
	tap_rmtree(root);
	return done_testing();
}
