/* Unit tests for agent/cache (format, header A/B, present and dirty maps,
 * ordering under injected faults, check and repair) and agent/source (hash
 * lists, hydration rejecting tampered chunks). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/cache.h"
#include "agent/source.h"
#include "lib/hash.h"
#include "lib/io.h"
#include "lib/util.h"
#include "tests/tap.h"

#define CHUNK ((size_t)16384)
#define IMG_SIZE (10 * CHUNK + 1000) /* 11 chunks, the last one short */
#define VOL_SIZE (1u << 20)

static char dir[4096], path[4200], img_path[4200];
static uint8_t img[IMG_SIZE];

static void fault(const char *spec)
{
	if (spec)
		setenv("GOLDCACHE_FAULT", spec, 1);
	else
		unsetenv("GOLDCACHE_FAULT");
	io_fault_reset();
}

static struct cache *mk(void)
{
	struct cache_params p = {.image = "deb",
				 .version = "7",
				 .image_size = IMG_SIZE,
				 .chunk_size = CHUNK,
				 .dirty_block_size = 4096,
				 .volume_size = VOL_SIZE,
				 .force = 1};
	struct cache *c = NULL;

	if (cache_create(path, &p) < 0 || cache_open(path, 0, &c) < 0)
		return NULL;
	return c;
}

static struct cache *reopen(struct cache *c)
{
	struct cache *n = NULL;

	cache_free(c); /* no clean stop: as a crash leaves it */
	if (cache_open(path, 0, &n) < 0)
		return NULL;
	return n;
}

static void test_geometry(void)
{
	struct cache_geometry g = {.chunk_size = 1 << 20,
				   .dirty_block_size = 65536,
				   .gold_capacity = 10ull << 30,
				   .volume_size = 20ull << 30};

	is_int(cache_geometry_layout(&g), 0, "geometry: 10 GiB gold, 20 GiB volume");
	is_int(g.nchunks, 10240, "geometry: chunk count");
	is_int(g.pmap_off[0], 8192, "geometry: present map A after the two headers");
	ok(g.slot_off[0] % CACHE_DATA_ALIGN == 0 && g.volume_off % CACHE_DATA_ALIGN == 0,
	   "geometry: data areas 1 MiB aligned");
	ok(g.slot_off[1] - g.slot_off[0] >= g.gold_capacity, "geometry: slots do not overlap");
	is_int(g.total_size, g.volume_off + g.volume_size, "geometry: total size");
	g.chunk_size = 3000;
	is_int(cache_geometry_layout(&g), -EINVAL, "geometry: chunk not a power of two");
	g.chunk_size = 4096;
	g.dirty_block_size = 8192;
	is_int(cache_geometry_layout(&g), -EINVAL, "geometry: dirty block larger than chunk");
	g.dirty_block_size = 4096;
	g.volume_size = 4097;
	is_int(cache_geometry_layout(&g), -EINVAL, "geometry: volume not 4 KiB multiple");
	g.volume_size = 1ull << 45;
	is_int(cache_geometry_layout(&g), -EINVAL, "geometry: volume beyond 16 TiB");
}

static void test_header(void)
{
	struct cache_header h = {0}, d;
	uint8_t b[CACHE_HDR_LEN];

	h.generation = 42;
	h.geo = (struct cache_geometry){.chunk_size = 65536,
					.dirty_block_size = 65536,
					.gold_capacity = 1 << 30,
					.volume_size = 1 << 30};
	cache_geometry_layout(&h.geo);
	h.active_slot = 1;
	h.dirty_protocol = CACHE_DIRTY_WRITE_AHEAD;
	h.slot[1].state = CACHE_SLOT_COMPLETE;
	h.slot[1].image_size = 12345;
	memcpy(h.slot[1].name, "debian", 7);
	memcpy(h.slot[1].version, "3", 2);
	cache_header_encode(&h, b);
	is_int(cache_header_decode(b, sizeof(b), &d), 0, "header: round trip decodes");
	is_int(d.generation, 42, "header: generation");
	is_str(d.slot[1].name, "debian", "header: slot name");
	is_int(d.slot[1].image_size, 12345, "header: slot size");
	is_int(cache_header_decode(b, sizeof(b) - 1, &d), -EBADMSG, "header: short buffer");
	b[300] ^= 1;
	is_int(cache_header_decode(b, sizeof(b), &d), -EBADMSG,
	       "header: flipped bit fails checksum");
	b[300] ^= 1;
	h.geo.slot_off[1] += 4096; /* offsets disagree with the geometry */
	cache_header_encode(&h, b);
	is_int(cache_header_decode(b, sizeof(b), &d), -EUCLEAN, "header: inconsistent offsets");
	cache_geometry_layout(&h.geo);
	h.active_slot = 0; /* active slot empty */
	cache_header_encode(&h, b);
	is_int(cache_header_decode(b, sizeof(b), &d), -EUCLEAN, "header: active slot empty");
	h.active_slot = 1;
	h.slot[1].image_size = (1ull << 30) + 1;
	cache_header_encode(&h, b);
	is_int(cache_header_decode(b, sizeof(b), &d), -EUCLEAN, "header: image beyond capacity");
}

static int write_all_chunks(struct cache *c, int slot)
{
	for (uint64_t i = 0; i < cache_slot_chunks(c, slot); i++) {
		size_t len = cache_chunk_len(c, slot, i);
		int r = cache_chunk_write(c, slot, i, img + i * CHUNK, len);

		if (r < 0)
			return r;
	}
	return 0;
}

static void test_present(void)
{
	struct cache *c = mk();
	uint8_t buf[IMG_SIZE];
	uint64_t missing = 0;

	ok(c != NULL, "create and open");
	if (!c)
		return;
	is_int(cache_slot_chunks(c, 0), 11, "11 chunks, last one short");
	is_int(cache_chunk_len(c, 0, 10), 1000, "last chunk length");
	is_int(cache_header(c)->slot[0].state, CACHE_SLOT_FILLING, "slot A filling");
	is_int(cache_gold_read(c, 0, buf, 0, 10, &missing), -ENODATA, "absent chunk: ENODATA");
	is_int(cache_chunk_write(c, 0, 2, img + 2 * CHUNK, CHUNK), 0, "write chunk 2");
	ok(!cache_chunk_present(c, 0, 2), "written chunk not present before commit");
	c = reopen(c);
	ok(c && !cache_chunk_present(c, 0, 2), "uncommitted chunk forgotten after a crash");
	if (!c)
		return;
	is_int(cache_chunk_write(c, 0, 2, img + 2 * CHUNK, CHUNK), 0, "write chunk 2 again");
	is_int(cache_commit(c), 0, "commit");
	ok(cache_chunk_present(c, 0, 2), "present after commit");
	is_int(cache_chunk_write(c, 0, 2, img, CHUNK), -EEXIST, "present chunk never rewritten");
	c = reopen(c);
	ok(c && cache_chunk_present(c, 0, 2), "present bit survives a crash after commit");
	if (!c)
		return;
	is_int(cache_gold_read(c, 0, buf, 2 * CHUNK + 5, 100, &missing), 0, "read inside chunk 2");
	ok(memcmp(buf, img + 2 * CHUNK + 5, 100) == 0, "data of chunk 2");
	is_int(cache_gold_read(c, 0, buf, 2 * CHUNK + 5, CHUNK, &missing), -ENODATA,
	       "read crossing into absent chunk 3");
	is_int(missing, 3, "missing chunk named");

	/* a failed data fdatasync forgets the pending chunks */
	is_int(cache_chunk_write(c, 0, 4, img + 4 * CHUNK, CHUNK), 0, "write chunk 4");
	fault("fsync:1:EIO");
	ok(cache_commit(c) < 0, "commit fails on fdatasync EIO");
	fault(NULL);
	ok(!cache_chunk_present(c, 0, 4), "chunk 4 not present after failed flush");
	is_int(cache_commit(c), 0, "next commit has nothing pending");
	ok(!cache_chunk_present(c, 0, 4), "chunk 4 still absent");

	/* fill everything: COMPLETE */
	for (uint64_t i = 0; i < 11; i++)
		if (!cache_chunk_present(c, 0, i))
			cache_chunk_write(c, 0, i, img + i * CHUNK, cache_chunk_len(c, 0, i));
	is_int(cache_commit(c), 0, "commit all");
	is_int(cache_header(c)->slot[0].state, CACHE_SLOT_COMPLETE, "slot complete");
	is_int(cache_gold_read(c, 0, buf, 0, IMG_SIZE, NULL), 0, "read whole image");
	ok(memcmp(buf, img, IMG_SIZE) == 0, "whole image identical");
	is_int(cache_gold_read(c, 0, buf, IMG_SIZE - 10, 11, NULL), -EINVAL, "read beyond end");
	is_int(cache_close(c), 0, "clean close");

	/* crash after the last map fdatasync, before the header says complete */
	c = mk();
	if (!c)
		return;
	write_all_chunks(c, 0);
	fault("write:2:EIO"); /* write 1: the map page, 2: the header */
	ok(cache_commit(c) < 0, "commit: header write fails");
	fault(NULL);
	c = reopen(c);
	ok(c && cache_slot_present_count(c, 0) == 11, "every bit on disk");
	ok(c && cache_header(c)->slot[0].state == CACHE_SLOT_FILLING, "header still filling");
	ok(c && cache_commit(c) == 0 && cache_header(c)->slot[0].state == CACHE_SLOT_COMPLETE,
	   "a commit with nothing pending finishes it: complete");
	cache_free(c);
}

/* cache_chunk_prepare / io_write / written: the hydrator's workers write the
 * data on their own threads; only the owner's cache_chunk_written makes a
 * chunk pending, and only a commit after that makes it present. */
struct writer_arg {
	struct cache_chunk_io io;
	const uint8_t *data;
	int r;
};

static void *writer(void *arg)
{
	struct writer_arg *w = arg;

	w->r = cache_chunk_io_write(&w->io, w->data);
	return NULL;
}

static void test_chunk_io(void)
{
	struct cache *c = mk();
	struct writer_arg w[3];
	pthread_t t[3];
	struct cache_chunk_io io;
	uint8_t buf[CHUNK];

	ok(c != NULL, "create and open");
	if (!c)
		return;
	is_int(cache_chunk_prepare(c, 0, 11, CHUNK, &io), -EINVAL, "prepare: no chunk 11");
	is_int(cache_chunk_prepare(c, 0, 10, CHUNK, &io), -EINVAL,
	       "prepare: the short last chunk needs its own length");
	for (int i = 0; i < 3; i++) {
		is_int(cache_chunk_prepare(c, 0, (uint64_t)i + 1, CHUNK, &w[i].io), 0,
		       "prepare chunk %d", i + 1);
		w[i].data = img + (size_t)(i + 1) * CHUNK;
		ok(pthread_create(&t[i], NULL, writer, &w[i]) == 0, "writer thread %d", i + 1);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		is_int(w[i].r, 0, "chunk %d written on a thread", i + 1);
	}
	ok(!cache_chunk_pending(c, 0, 1), "a write alone is not pending");
	cache_chunk_written(c, &w[0].io);
	cache_chunk_written(c, &w[1].io); /* chunk 3: written, never marked */
	ok(cache_chunk_pending(c, 0, 1) && cache_chunk_pending(c, 0, 2), "marked: pending");
	ok(!cache_chunk_present(c, 0, 1), "pending is not present");
	is_int(cache_commit(c), 0, "commit");
	ok(cache_chunk_present(c, 0, 1) && cache_chunk_present(c, 0, 2), "present after commit");
	ok(!cache_chunk_present(c, 0, 3), "a chunk written but not marked stays absent");
	is_int(cache_gold_read(c, 0, buf, CHUNK, CHUNK, NULL), 0, "read chunk 1");
	ok(memcmp(buf, img + CHUNK, CHUNK) == 0, "its data");
	is_int(cache_chunk_prepare(c, 0, 1, CHUNK, &io), -EEXIST, "prepare: present chunk refused");

	is_int(cache_chunk_prepare(c, 0, 4, CHUNK, &io), 0, "prepare chunk 4");
	fault("write:1:EIO");
	is_int(cache_chunk_io_write(&io, img + 4 * CHUNK), -EIO, "a failed write says so");
	fault(NULL);
	is_int(cache_commit(c), 0, "commit with nothing marked");
	ok(!cache_chunk_present(c, 0, 4), "the failed chunk stays absent");
	c = reopen(c);
	ok(c && cache_chunk_present(c, 0, 2) && !cache_chunk_present(c, 0, 3),
	   "after a crash: the committed chunks, not the unmarked one");
	cache_free(c);
}

/* cache_commit_begin / _io / _end: the NBD loop runs the commit's I/O on a
 * thread. Bits readable from begin; the map on disk gets only the job's
 * copy, written after the data flush; one job at a time; failures as in
 * cache_commit; a crash at any step leaves no bit over unflushed data. */
static void *commit_io_thread(void *arg)
{
	(void)cache_commit_io(arg);
	return NULL;
}

static int wchunk(struct cache *c, uint64_t i)
{
	return cache_chunk_write(c, 0, i, img + i * CHUNK, cache_chunk_len(c, 0, i));
}

/* Chunk i written, a job begun, its I/O run with spec armed: the I/O's result
 * (*j is left for cache_commit_end). */
static int commit_io_faulty(struct cache *c, uint64_t i, const char *spec,
			    struct cache_commit_job **j)
{
	int r;

	wchunk(c, i);
	cache_commit_begin(c, j);
	fault(spec);
	r = cache_commit_io(*j);
	fault(NULL);
	return r;
}

/* In a child: chunks 6 and 7 written, a job begun, its I/O on a thread with
 * spec armed (a crash: _exit(137) inside lib/io). Returns the exit status. */
static int commit_crash_child(const char *spec)
{
	pid_t pid = fork();
	int st = 0;

	if (pid == 0) {
		struct cache *c = NULL;
		struct cache_commit_job *j = NULL;
		pthread_t t;

		if (cache_open(path, 0, &c) < 0 || wchunk(c, 6) < 0 || wchunk(c, 7) < 0 ||
		    cache_commit_begin(c, &j) < 0 || !j)
			_exit(1);
		fault(spec);
		if (pthread_create(&t, NULL, commit_io_thread, j) != 0)
			_exit(1);
		pthread_join(t, NULL);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static void test_commit_split(void)
{
	struct cache *c = mk();
	struct cache_commit_job *j = NULL, *j2 = NULL;
	uint8_t buf[CHUNK];
	pthread_t t;

	ok(c != NULL, "create and open");
	if (!c)
		return;
	is_int(cache_commit_begin(c, &j), 0, "begin with nothing pending");
	ok(j == NULL, "no job");
	is_int(cache_commit_end(c, NULL), 0, "end of no job");

	is_int(wchunk(c, 0) | wchunk(c, 1), 0, "write chunks 0, 1");
	is_int(cache_commit_begin(c, &j), 0, "begin");
	ok(j && cache_commit_job_chunks(j) == 2, "a job of 2 chunks");
	ok(cache_commit_busy(c), "busy");
	ok(cache_chunk_present(c, 0, 0) && cache_chunk_present(c, 0, 1) &&
		   !cache_chunk_pending(c, 0, 0),
	   "its chunks present in memory from begin");
	is_int(cache_gold_read(c, 0, buf, CHUNK, CHUNK, NULL), 0, "chunk 1 readable");
	ok(memcmp(buf, img + CHUNK, CHUNK) == 0, "its data");
	is_int(cache_commit_begin(c, &j2), -EBUSY, "a second begin: one job at a time");
	is_int(cache_commit(c), -EBUSY, "cache_commit while a job is out refuses");
	is_int(cache_slot_assign(c, 1, "deb", "8", IMG_SIZE, NULL), -EBUSY,
	       "slot assign while a job is out refuses");
	is_int(wchunk(c, 1), -EEXIST, "a job's chunk is never rewritten");
	ok(pthread_create(&t, NULL, commit_io_thread, j) == 0, "its I/O on a thread");
	is_int(wchunk(c, 2), 0, "meanwhile chunk 2 (same map page) written");
	pthread_join(t, NULL);
	is_int(cache_commit_end(c, j), 0, "end");
	ok(!cache_commit_busy(c), "not busy");
	ok(cache_chunk_pending(c, 0, 2) && !cache_chunk_present(c, 0, 2),
	   "chunk 2 pending, not present");
	c = reopen(c);
	ok(c && cache_chunk_present(c, 0, 0) && cache_chunk_present(c, 0, 1) &&
		   !cache_chunk_present(c, 0, 2),
	   "after a crash: the job's bits on disk, not chunk 2's");
	if (!c)
		return;

	/* a crash between the steps */
	wchunk(c, 3);
	is_int(cache_commit_begin(c, &j), 0, "chunk 3: begin");
	c = reopen(c);
	ok(c && !cache_chunk_present(c, 0, 3), "crash after begin: chunk 3 absent on disk");
	if (!c)
		return;
	wchunk(c, 3);
	cache_commit_begin(c, &j);
	is_int(cache_commit_io(j), 0, "chunk 3: I/O");
	c = reopen(c);
	ok(c && cache_chunk_present(c, 0, 3), "crash after the I/O, before end: chunk 3 present");
	if (!c)
		return;

	/* a failed data flush takes the bits back */
	ok(commit_io_faulty(c, 4, "fsync:1:EIO", &j) < 0, "data fdatasync fails");
	ok(cache_commit_end(c, j) < 0, "end reports it");
	ok(!cache_chunk_present(c, 0, 4) && !cache_chunk_pending(c, 0, 4), "chunk 4 forgotten");
	is_int(cache_slot_present_count(c, 0), 3, "present count back to 3 (0, 1, 3)");
	is_int(wchunk(c, 4), 0, "chunk 4 written again");
	is_int(cache_commit(c), 0, "and committed");
	/* a failed map write: present in memory, absent after a crash */
	ok(commit_io_faulty(c, 5, "write:1:EIO", &j) < 0, "map page write fails");
	ok(cache_commit_end(c, j) < 0, "end reports it");
	ok(cache_chunk_present(c, 0, 5), "chunk 5 present in memory (its data is durable)");
	c = reopen(c);
	ok(c && cache_chunk_present(c, 0, 4) && !cache_chunk_present(c, 0, 5),
	   "after a crash: chunk 4 present, 5 to fetch again");
	cache_free(c);

	/* crashes while the job's I/O runs on a thread */
	is_int(commit_crash_child("fsync:1:crash"), 137, "crash at the data fdatasync");
	is_int(commit_crash_child("write:1:crash"), 137, "crash at the map page write");
	c = NULL;
	ok(cache_open(path, 0, &c) == 0 && !cache_chunk_present(c, 0, 6) &&
		   !cache_chunk_present(c, 0, 7) && cache_chunk_present(c, 0, 4),
	   "no bit of the job on disk, the earlier ones kept");
	cache_free(c);
	is_int(commit_crash_child("fsync:2:crash"), 137, "crash at the map fdatasync");
	c = NULL;
	ok(cache_open(path, 0, &c) == 0 &&
		   cache_chunk_present(c, 0, 6) == cache_chunk_present(c, 0, 7),
	   "the job's page: both bits or neither");
	if (!c)
		return;
	for (uint64_t i = 0; i < 11; i++)
		if (!cache_chunk_present(c, 0, i))
			wchunk(c, i);
	cache_commit_begin(c, &j);
	cache_commit_io(j);
	is_int(cache_commit_end(c, j), 0, "the rest through the three steps");
	is_int(cache_header(c)->slot[0].state, CACHE_SLOT_COMPLETE, "end promotes: complete");
	is_int(cache_gold_read(c, 0, buf, 6 * CHUNK, CHUNK, NULL), 0, "read chunk 6");
	ok(memcmp(buf, img + 6 * CHUNK, CHUNK) == 0, "its data");
	is_int(cache_close(c), 0, "clean close");
}

static void test_slots(void)
{
	struct cache *c = mk();

	if (!c)
		return;
	write_all_chunks(c, 0);
	cache_commit(c);
	is_int(cache_slot_assign(c, 0, "deb", "8", IMG_SIZE, NULL), -EBUSY, "active slot refused");
	is_int(cache_slot_assign(c, 1, "deb", "8", IMG_SIZE, NULL), 0, "assign slot B");
	is_int(cache_chunk_write(c, 1, 0, img, CHUNK), 0, "write slot B chunk 0");
	is_int(cache_commit(c), 0, "commit slot B");
	is_int(cache_slot_present_count(c, 1), 1, "slot B has 1 chunk");
	is_int(cache_slot_assign(c, 1, "deb", "9", IMG_SIZE, NULL), 0, "re-assign slot B");
	is_int(cache_slot_present_count(c, 1), 0, "re-assigned slot starts empty");
	c = reopen(c);
	ok(c && cache_slot_present_count(c, 1) == 0 && !cache_chunk_present(c, 1, 0),
	   "no bit of the old version survives re-assign");
	if (!c)
		return;
	is_str(cache_header(c)->slot[1].version, "9", "slot B version");
	is_int(cache_slot_set_active(c, 1), 0, "switch active slot to B");
	c = reopen(c);
	ok(c && cache_header(c)->active_slot == 1, "active slot persisted");
	cache_free(c);
}

static void test_header_ab(void)
{
	struct cache *c = mk();
	struct cache_check_report rep;
	uint8_t zero[64] = {0};
	int other_bad = 0, copy;
	int fd;

	if (!c)
		return;
	cache_slot_set_active(c, 0);
	cache_slot_assign(c, 1, "deb", "8", IMG_SIZE, NULL); /* generations 2, 3 */
	copy = cache_header_copy(c, NULL);
	cache_free(c);
	/* tear the newest copy */
	fd = open(path, O_RDWR);
	ok(pwrite(fd, zero, sizeof(zero), (off_t)copy * CACHE_HDR_COPY_SIZE + 100) == 64,
	   "tear newest header copy");
	close(fd);
	ok(cache_open(path, 0, &c) == 0, "open with one torn header copy");
	if (!c)
		return;
	is_int(cache_header_copy(c, &other_bad), 1 - copy, "older copy in use");
	ok(other_bad, "torn copy reported");
	is_int(cache_header(c)->slot[1].state, CACHE_SLOT_EMPTY,
	       "header as before the torn write (slot B was mid-assign: empty)");
	ok(cache_check(c, 0, NULL, NULL, &rep) == 0 && rep.problems == 1,
	   "check finds the torn copy");
	free(rep.text);
	ok(cache_check(c, 1, NULL, NULL, &rep) == 0 && rep.repaired == 1, "repair rewrites it");
	free(rep.text);
	c = reopen(c);
	ok(c && cache_header_copy(c, &other_bad) >= 0 && !other_bad, "both copies valid again");
	cache_free(c);
	/* both copies torn */
	fd = open(path, O_RDWR);
	ok(pwrite(fd, zero, sizeof(zero), 100) == 64 && pwrite(fd, zero, 64, 4096 + 100) == 64,
	   "tear both copies");
	close(fd);
	c = NULL;
	is_int(cache_open(path, 0, &c), -EBADMSG, "no valid header: refused");
	/* existing valid cache is not overwritten without force */
	{
		struct cache_params p = {.image = "deb",
					 .version = "7",
					 .image_size = IMG_SIZE,
					 .chunk_size = CHUNK,
					 .volume_size = VOL_SIZE};

		c = mk();
		cache_free(c);
		is_int(cache_create(path, &p), -EEXIST, "init refuses a valid cache without force");
	}
}

static void test_volume(void)
{
	struct cache *c = mk();
	uint8_t w[8192], r[8192];

	if (!c)
		return;
	memset(w, 0x5a, sizeof(w));
	is_int(cache_vol_open(c), 0, "volume opened");
	is_int(cache_dirty_count(c), 0, "clean volume");
	/* the map's fdatasync fails: the write is refused, nothing written */
	fault("fsync:1:EIO");
	ok(cache_vol_write(c, w, 8192, 100, 0) < 0, "write refused when dirty map not durable");
	fault(NULL);
	is_int(cache_dirty_count(c), 0, "bit taken back");
	is_int(cache_vol_read(c, r, 8192, 100), 0, "read back");
	ok(r[0] == 0, "data not written");
	is_int(cache_vol_write(c, w, 8192, 100, 0), 0, "write retried");
	ok(cache_block_dirty(c, 2), "block 2 dirty");
	is_int(cache_dirty_count(c), 1, "one dirty block");
	/* dirty bit durable before the data: crash at the data write */
	fault("write:2:EIO"); /* 1: the map page, 2: the data */
	ok(cache_vol_write(c, w, 3 * 4096 + 4000, 200, 0) < 0, "data write fails (after map)");
	fault(NULL);
	ok(cache_block_dirty(c, 3) && cache_block_dirty(c, 4), "both touched blocks dirty");
	is_int(cache_vol_write(c, w, VOL_SIZE - 100, 200, 0), -ENOSPC, "write beyond end");
	is_int(cache_vol_write(c, w, 0, 8192, 1), 0, "FUA write");
	c = reopen(c);
	if (!c)
		return;
	ok(cache_block_dirty(c, 0) && cache_block_dirty(c, 1) && cache_block_dirty(c, 2) &&
		   cache_block_dirty(c, 3) && cache_block_dirty(c, 4) && !cache_block_dirty(c, 5),
	   "dirty bits survive the crash");
	ok(cache_header(c)->flags & CACHE_F_VOL_OPEN, "volume-open flag left by the crash");
	is_int(cache_vol_open(c), 0, "reopen volume");
	is_int(cache_header(c)->unclean_stops, 1, "unclean stop counted");
	is_int(cache_vol_read(c, r, 0, 8192), 0, "read FUA data");
	ok(memcmp(r, w, 8192) == 0, "FUA data intact");
	is_int(cache_vol_zero(c, 0, 4096, 0), 0, "write zeroes");
	is_int(cache_vol_read(c, r, 0, 4096), 0, "read zeroes");
	ok(r[0] == 0 && r[4095] == 0, "zeroed");
	is_int(cache_close(c), 0, "clean close");
	c = NULL;
	ok(cache_open(path, 0, &c) == 0 && !(cache_header(c)->flags & CACHE_F_VOL_OPEN),
	   "clean close clears the volume-open flag");
	cache_free(c);
	/* unreadable dirty map: everything dirty */
	fault("read:3:EIO"); /* 1 headers, 2 present map A, 3 dirty map */
	c = NULL;
	is_int(cache_open(path, 0, &c), 0, "open with unreadable dirty map");
	fault(NULL);
	ok(c && (cache_header(c)->flags & CACHE_F_DIRTY_ALL), "DIRTY_ALL set");
	ok(c && cache_dirty_count(c) == VOL_SIZE / 4096, "every block dirty");
	c = reopen(c);
	ok(c && (cache_header(c)->flags & CACHE_F_DIRTY_ALL), "DIRTY_ALL persisted");
	cache_free(c);
}

/* Restore marker (agent/restore.c): set durably before the volume changes,
 * restored data carries no dirty bit, finish clears the map then the flag; a
 * crash anywhere before the last header write leaves the flag set. */
static void test_restore(void)
{
	struct cache_header h = {0}, d;
	uint8_t b[CACHE_HDR_LEN], w[8192], r[8192];
	struct cache *c;

	/* header: the flag and the order id go together */
	h.geo = (struct cache_geometry){.chunk_size = 65536,
					.dirty_block_size = 65536,
					.gold_capacity = 1 << 30,
					.volume_size = 1 << 30};
	cache_geometry_layout(&h.geo);
	h.active_slot = CACHE_NO_SLOT;
	h.flags = CACHE_F_RESTORING;
	h.restore_order = 1795000700123;
	h.restore_done = 17;
	cache_header_encode(&h, b);
	is_int(cache_header_decode(b, sizeof(b), &d), 0, "restore: marker round trip");
	ok(d.restore_order == 1795000700123 && d.restore_done == 17, "restore: order ids kept");
	h.restore_order = 0;
	cache_header_encode(&h, b);
	is_int(cache_header_decode(b, sizeof(b), &d), -EUCLEAN, "restore: flag without an order");
	h.flags = 0;
	h.restore_order = 5;
	cache_header_encode(&h, b);
	is_int(cache_header_decode(b, sizeof(b), &d), -EUCLEAN, "restore: order without the flag");

	c = mk();
	if (!c)
		return;
	memset(w, 0x6b, sizeof(w));
	is_int(cache_vol_write(c, w, 0, 4096, 0), 0, "a dirty block before the restore");
	is_int(cache_restore_write(c, w, 0, 4096), -EPERM, "restore write refused without marker");
	/* the marker's header write fails: nothing may be touched */
	fault("fsync:1:EIO");
	ok(cache_restore_begin(c, 99) < 0, "marker not durable: begin fails");
	fault(NULL);
	ok(!(cache_header(c)->flags & CACHE_F_RESTORING), "no marker after the failed begin");
	is_int(cache_restore_begin(c, 99), 0, "begin");
	is_int(cache_vol_open(c), -EBUSY, "a half-restored volume is never served");
	is_int(cache_restore_write(c, w, 65536, sizeof(w)), 0, "restored data written");
	is_int(cache_restore_zero(c, 0, 8192), 0, "restored zeros");
	is_int(cache_dirty_count(c), 1, "restored data sets no dirty bit");
	c = reopen(c); /* crash mid-restore */
	if (!c)
		return;
	ok(cache_header(c)->flags & CACHE_F_RESTORING, "crash: the marker survives");
	is_int(cache_header(c)->restore_order, 99, "crash: with its order");
	is_int(cache_restore_begin(c, 100), 0, "a new order restarts the restore");
	is_int(cache_restore_write(c, w, 65536, sizeof(w)), 0, "written again");
	fault("fsync:1:EIO"); /* the data's fdatasync */
	ok(cache_restore_finish(c) < 0, "finish fails when the data is not durable");
	fault(NULL);
	ok(cache_header(c)->flags & CACHE_F_RESTORING, "the marker stays");
	is_int(cache_restore_finish(c), 0, "finish");
	ok(!(cache_header(c)->flags & CACHE_F_RESTORING), "marker cleared");
	ok(cache_header(c)->restore_done == 100 && cache_header(c)->restore_order == 0,
	   "restore_done names the order");
	is_int(cache_dirty_count(c), 0, "dirty map cleared");
	c = reopen(c);
	if (!c)
		return;
	ok(!(cache_header(c)->flags & CACHE_F_RESTORING) && cache_dirty_count(c) == 0,
	   "after a crash: no marker, nothing dirty");
	is_int(cache_vol_read(c, r, 65536, sizeof(r)), 0, "read restored data");
	ok(memcmp(r, w, sizeof(r)) == 0, "restored data intact");
	is_int(cache_vol_read(c, r, 0, 4096), 0, "read the zeroed block");
	ok(r[0] == 0 && r[4095] == 0, "zeroed by the restore");
	cache_free(c);
}

/* The last sync's figures: recorded by the sync's own header write, durable,
 * kept by a sync_done that names none, zero in a cache that never synced. */
static void test_sync_figures(void)
{
	struct cache *c = mk();
	uint8_t w[4096];
	uint64_t blk = 0, cleared = 0;

	if (!c)
		return;
	ok(cache_header(c)->last_sync_snapshot == 0 && cache_header(c)->last_sync_bytes == 0,
	   "figures: none in a fresh cache");
	memset(w, 0x33, sizeof(w));
	is_int(cache_vol_open(c), 0, "figures: volume opened");
	is_int(cache_vol_write(c, w, 0, 4096, 0), 0, "figures: a dirty block");
	fault("fsync:1:EIO"); /* the dirty map's fdatasync */
	ok(cache_sync_done_figures(c, &blk, 1, 0, 1795000000,
				   &(struct cache_sync_figures){.snapshot = 7}, &cleared) < 0,
	   "figures: sync_done fails when the map is not durable");
	fault(NULL);
	is_int(cache_header(c)->last_sync_snapshot, 0, "figures: not recorded by the failed one");
	is_int(cache_vol_write(c, w, 4096, 4096, 0), 0, "figures: another dirty block");
	blk = 1;
	is_int(cache_sync_done_figures(c, &blk, 1, 0, 1795000000,
				       &(struct cache_sync_figures){
					       .snapshot = 7, .bytes = 5ull << 32, .pause_ms = 42},
				       &cleared),
	       0, "figures: sync_done with figures");
	is_int(cleared, 1, "figures: its bit cleared");
	c = reopen(c);
	if (!c)
		return;
	is_int(cache_header(c)->last_sync, 1795000000, "figures: last_sync durable");
	is_int(cache_header(c)->last_sync_snapshot, 7, "figures: snapshot durable");
	ok(cache_header(c)->last_sync_bytes == 5ull << 32, "figures: bytes durable (64 bits)");
	is_int(cache_header(c)->last_sync_pause_ms, 42, "figures: pause durable");
	is_int(cache_sync_done(c, NULL, 0, 1, 1795000001, NULL), 0, "sync_done without figures");
	c = reopen(c);
	if (!c)
		return;
	ok(cache_header(c)->last_sync == 1795000001 && cache_header(c)->last_sync_snapshot == 7 &&
		   cache_header(c)->last_sync_pause_ms == 42,
	   "figures: kept by a sync_done that names none");
	cache_free(c);
}

static int verify_img(void *arg, int slot, uint64_t idx, const void *data, size_t len)
{
	(void)arg, (void)slot;
	return memcmp(data, img + idx * CHUNK, len) ? -EBADMSG : 0;
}

static void test_check(void)
{
	struct cache *c = mk();
	struct cache_check_report rep;
	const struct cache_geometry *g;
	uint8_t junk[CHUNK];
	int fd;

	if (!c)
		return;
	g = &cache_header(c)->geo;
	write_all_chunks(c, 0);
	cache_commit(c);
	ok(cache_check(c, 0, verify_img, NULL, &rep) == 0 && rep.problems == 0,
	   "fresh: consistent");
	free(rep.text);
	/* corrupt chunk 5's data and set a bit beyond the end */
	fd = open(path, O_RDWR);
	memset(junk, 0xee, sizeof(junk));
	ok(pwrite(fd, junk, CHUNK, (off_t)(g->slot_off[0] + 5 * CHUNK)) == CHUNK,
	   "corrupt chunk 5");
	ok(pwrite(fd, "\xff", 1, (off_t)(g->pmap_off[0] + 2)) == 1, "stray present bits");
	close(fd);
	c = reopen(c);
	if (!c)
		return;
	ok(cache_check(c, 0, verify_img, NULL, &rep) == 0 && rep.problems == 3,
	   "check: stray bits, bad chunk, complete-but-missing");
	diag("%s", rep.text);
	free(rep.text);
	ok(cache_check(c, 1, verify_img, NULL, &rep) == 0 && rep.repaired == 3, "repair");
	free(rep.text);
	ok(!cache_chunk_present(c, 0, 5), "bad chunk lost its present bit");
	is_int(cache_header(c)->slot[0].state, CACHE_SLOT_FILLING, "slot back to filling");
	c = reopen(c);
	rep.text = NULL;
	ok(c && cache_check(c, 0, verify_img, NULL, &rep) == 0 && rep.problems == 0,
	   "consistent after repair");
	free(rep.text);
	cache_free(c);
}

static void test_hashes(void)
{
	struct chunk_hashes hs;
	struct chunk_source *src;
	struct hydrate_stats st;
	struct cache *c;
	char text[64 * 12 + 64], hex[HASH_HEX_LEN + 1];
	size_t off = 0;
	unsigned line = 0;
	uint8_t zero[CHUNK] = {0};
	int fd;

	for (int i = 0; i < 11; i++) {
		struct hash h;

		hash_buf(img + i * CHUNK, i == 10 ? 1000 : CHUNK, &h);
		off += (size_t)snprintf(text + off, sizeof(text) - off, "%s\n",
					hash_to_hex(&h, hex));
	}
	is_int(chunk_hashes_parse(text, off, &hs, &line), 0, "hash list parses");
	is_int(hs.n, 11, "11 hashes");
	is_int(chunk_hashes_verify(&hs, 3, img + 3 * CHUNK, CHUNK), 0, "chunk 3 verifies");
	is_int(chunk_hashes_verify(&hs, 3, img, CHUNK), -EBADMSG, "wrong data rejected");
	is_int(chunk_hashes_verify(&hs, 11, img, CHUNK), -ERANGE, "no such chunk");
	{
		struct chunk_hashes z;

		ok(chunk_hashes_parse("# c\nzero\n\n", 10, &z, &line) == 0 && z.n == 1 && z.zero[0],
		   "zero chunk entry");
		is_int(chunk_hashes_verify(&z, 0, zero, CHUNK), 0, "zero chunk verifies zeros");
		is_int(chunk_hashes_verify(&z, 0, img, CHUNK), -EBADMSG, "zero chunk rejects data");
		chunk_hashes_release(&z);
		is_int(chunk_hashes_parse("abc\n", 4, &z, &line), -EINVAL, "bad line rejected");
		is_int(line, 1, "bad line number");
	}
	/* tampered source: chunk 6 altered */
	fd = open(img_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ok(fd >= 0 && write(fd, img, IMG_SIZE) == IMG_SIZE, "source file");
	ok(pwrite(fd, "X", 1, 6 * CHUNK + 77) == 1, "tamper chunk 6");
	close(fd);
	c = mk();
	if (!c || chunk_source_file_new(img_path, &src) < 0) {
		ok(0, "source");
		return;
	}
	is_int(hydrate_slot(c, 0, src, &hs, NULL, 2 * CHUNK, &st), -EBADMSG,
	       "hydrate reports rejection");
	is_int(st.rejected, 1, "one chunk rejected");
	is_int(st.fetched, 10, "ten stored");
	ok(!cache_chunk_present(c, 0, 6), "tampered chunk never present");
	c = reopen(c);
	ok(c && !cache_chunk_present(c, 0, 6) && cache_slot_present_count(c, 0) == 10,
	   "after restart: 10 present, tampered one absent");
	is_int(hydrate_slot(c, 0, src, &hs, NULL, 0, &st), -EBADMSG, "resume: still rejected");
	is_int(st.skipped, 10, "resume skips present chunks");
	chunk_source_free(src);
	cache_free(c);
	chunk_hashes_release(&hs);
}

static void test_mem_loader(void)
{
	struct cache *c = mk();
	struct cache_header h;
	uint64_t present, dirty;
	char *buf;
	size_t len;

	if (!c)
		return;
	cache_chunk_write(c, 0, 1, img + CHUNK, CHUNK);
	cache_commit(c);
	cache_vol_open(c);
	cache_vol_write(c, img, 0, 5000, 0);
	cache_free(c);
	ok(io_read_file(path, 64 << 20, &buf, &len) == 0, "read cache image");
	is_int(cache_load_mem((uint8_t *)buf, len, &h, &present, &dirty), 0, "memory loader");
	is_int(present, 1, "one present bit");
	is_int(dirty, 2, "two dirty blocks");
	is_int(cache_load_mem((uint8_t *)buf, 9000, &h, &present, &dirty), -EFBIG,
	       "truncated image refused");
	free(buf);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "%s", tap_tmpdir());
	snprintf(path, sizeof(path), "%s/cache", dir);
	snprintf(img_path, sizeof(img_path), "%s/img", dir);
	for (size_t i = 0; i < sizeof(img); i++)
		img[i] = (uint8_t)(i * 2654435761u >> 13);
	test_geometry();
	test_header();
	test_present();
	test_chunk_io();
	test_commit_split();
	test_slots();
	test_header_ab();
	test_volume();
	test_restore();
	test_sync_figures();
	test_check();
	test_hashes();
	test_mem_loader();
	tap_rmtree(dir);
	return done_testing();
}
