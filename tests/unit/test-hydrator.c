/* Unit tests for agent/hydrator.c: hydrate_pipelined against an image file
 * whose chunks complete from the source's service() (as the iSCSI source's
 * do), several at a time, so the workers verify them in pairs. Tampered
 * chunks next to good ones in a pair are rejected and never present, the good
 * ones are stored; a rerun after a crash skips what is present; the data
 * read back through the cache (page cache filled before the direct writes)
 * equals the image; pairing off and buffered writes give the same result. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "agent/cache.h"
#include "agent/hydrator.h"
#include "lib/hash.h"
#include "lib/io.h"
#include "lib/util.h"
#include "tests/tap.h"

#define CHUNK 65536u
#define NCHUNK 40u
#define IMG_SIZE (NCHUNK * CHUNK - 3000) /* the last chunk short: buffered */
#define ZERO_CHUNK 7u

static const unsigned tampered[] = {5, 6, 13, 30}; /* 5 and 6: a bad pair */
static char dir[4096], path[4200], img_path[4200];
static uint8_t *img;

/* ---- an image-file source completing from service(), many at once ---- */

struct pend {
	uint64_t idx, off;
	void *buf;
	size_t len;
	chunk_fetch_cb cb;
	void *arg;
};

struct dsrc {
	int img_fd, efd;
	struct pend q[64];
	unsigned n;
};

static int d_start(struct chunk_source *s, uint64_t idx, uint64_t off, void *buf, size_t len,
		   chunk_fetch_cb cb, void *arg)
{
	struct dsrc *d = s->priv;
	uint64_t one = 1;

	if (d->n == 64)
		return -EAGAIN;
	d->q[d->n++] = (struct pend){idx, off, buf, len, cb, arg};
	return write(d->efd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

static int d_fd(struct chunk_source *s)
{
	return ((struct dsrc *)s->priv)->efd;
}

static int d_events(struct chunk_source *s)
{
	(void)s;
	return POLLIN;
}

static int d_service(struct chunk_source *s, int revents)
{
	struct dsrc *d = s->priv;
	uint64_t cnt;
	unsigned n = d->n;

	if (!(revents & POLLIN))
		return 0;
	if (read(d->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		return -errno;
	d->n = 0;
	for (unsigned i = 0; i < n; i++) {
		struct pend p = d->q[i];
		ssize_t got = io_pread_full(d->img_fd, p.buf, p.len, (off_t)p.off);

		p.cb(p.arg, p.idx, got == (ssize_t)p.len ? 0 : -EIO);
	}
	return 0;
}

static void d_free(struct chunk_source *s)
{
	struct dsrc *d = s->priv;

	close(d->img_fd);
	close(d->efd);
	free(d);
}

static const struct chunk_source_ops d_ops = {.kind = "test",
					      .start = d_start,
					      .fd = d_fd,
					      .events = d_events,
					      .service = d_service,
					      .free = d_free};

static int d_open(void *arg, struct chunk_source **out)
{
	struct dsrc *d = xcalloc(1, sizeof(*d));
	struct chunk_source *s = xcalloc(1, sizeof(*s));

	(void)arg;
	d->img_fd = open(img_path, O_RDONLY | O_CLOEXEC);
	d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->img_fd < 0 || d->efd < 0)
		return -errno;
	*s = (struct chunk_source){
		.ops = &d_ops, .priv = d, .desc = xstrdup("test image"), .size = IMG_SIZE};
	*out = s;
	return 0;
}

/* ---- fixture ---- */

static void write_image(int tamper)
{
	int fd = open(img_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ok(fd >= 0 && io_write_all(fd, img, IMG_SIZE) == 0, "image file (%s)",
	   tamper ? "4 chunks tampered" : "intact");
	for (size_t i = 0; tamper && i < sizeof(tampered) / sizeof(*tampered); i++)
		if (pwrite(fd, "X", 1, (off_t)tampered[i] * CHUNK + 99) != 1)
			ok(0, "tamper chunk %u", tampered[i]);
	close(fd);
}

static struct cache *mk(void)
{
	struct cache_params p = {.image = "deb",
				 .version = "7",
				 .image_size = IMG_SIZE,
				 .chunk_size = CHUNK,
				 .volume_size = 1u << 20,
				 .force = 1};
	struct cache *c = NULL;

	if (cache_create(path, &p) < 0 || cache_open(path, 0, &c) < 0)
		return NULL;
	return c;
}

static int is_tampered(uint64_t i)
{
	for (size_t k = 0; k < sizeof(tampered) / sizeof(*tampered); k++)
		if (tampered[k] == i)
			return 1;
	return 0;
}

/* Every present chunk reads back as the image; which chunks are present. */
static int data_ok(struct cache *c, int want_tampered_absent)
{
	uint8_t *buf = xmalloc(CHUNK);
	int good = 1;

	for (uint64_t i = 0; i < NCHUNK; i++) {
		size_t len = cache_chunk_len(c, 0, i);

		if (want_tampered_absent && is_tampered(i) == cache_chunk_present(c, 0, i))
			good = 0;
		if (!cache_chunk_present(c, 0, i))
			continue;
		if (cache_gold_read(c, 0, buf, i * CHUNK, len, NULL) < 0 ||
		    memcmp(buf, img + i * CHUNK, len) != 0)
			good = 0;
	}
	free(buf);
	return good;
}

static void run(const char *what)
{
	struct chunk_hashes hs = {.n = NCHUNK};
	struct hydr_opts o = {.depth = 4,
			      .workers = 2,
			      .commit_bytes = 4 * CHUNK,
			      .backoff_min_ms = 10,
			      .give_up_ms = 5000,
			      .open = d_open};
	struct hydr_stats st;
	struct cache *c = mk();
	uint8_t *page = xmalloc(CHUNK);
	int pairing = !getenv("GOLDAGENT_HYDRATE_PAIR");

	diag("%s", what);
	hs.h = xcalloc(NCHUNK, sizeof(*hs.h));
	hs.zero = xcalloc(NCHUNK, 1);
	for (uint64_t i = 0; i < NCHUNK; i++) {
		hs.zero[i] = i == ZERO_CHUNK;
		hash_buf(img + i * CHUNK, i == NCHUNK - 1 ? IMG_SIZE - i * CHUNK : CHUNK, &hs.h[i]);
	}
	if (!c) {
		ok(0, "cache");
		return;
	}
	/* the slot's pages in the page cache before the (direct) writes */
	ok(pread(cache_fd(c), page, CHUNK, (off_t)cache_header(c)->geo.slot_off[0] + CHUNK) ==
		   CHUNK,
	   "  slot read before hydration (page cache filled)");
	write_image(1);
	is_int(hydrate_pipelined(c, 0, &hs, &o, &st), -EBADMSG, "  tampered source: -EBADMSG");
	is_int(st.h.rejected, 4, "  4 chunks rejected (one pair both bad)");
	is_int(st.h.fetched, NCHUNK - 5, "  the 35 others fetched and stored");
	is_int(st.h.zero, 1, "  the zero chunk written locally");
	if (pairing)
		ok(st.paired > 0, "  chunks verified in pairs (%llu)",
		   (unsigned long long)st.paired);
	else
		is_int(st.paired, 0, "  pairing off: none verified in pairs");
	ok(data_ok(c, 1), "  present chunks read back as the image, tampered ones absent");
	cache_free(c); /* no clean stop: as a crash */
	c = NULL;
	is_int(cache_open(path, 0, &c), 0, "  reopened");
	is_int(hydrate_pipelined(c, 0, &hs, &o, &st), -EBADMSG, "  rerun: still rejected");
	is_int(st.h.skipped, NCHUNK - 4, "  rerun skips the 36 present chunks");
	is_int(st.h.fetched, 0, "  rerun fetches nothing stored already");
	write_image(0);
	is_int(hydrate_pipelined(c, 0, &hs, &o, &st), 0, "  repaired source: complete");
	is_int(st.h.fetched, 4, "  only the 4 missing chunks fetched");
	ok(data_ok(c, 0) && cache_slot_present_count(c, 0) == NCHUNK,
	   "  the whole slot reads back as the image");
	is_int(cache_header(c)->slot[0].state, CACHE_SLOT_COMPLETE, "  slot complete");
	cache_close(c);
	chunk_hashes_release(&hs);
	free(page);
}

int main(void)
{
	uint64_t x = 88172645463325252ull;

	snprintf(dir, sizeof(dir), "%s", tap_tmpdir());
	snprintf(path, sizeof(path), "%s/cache", dir);
	snprintf(img_path, sizeof(img_path), "%s/img", dir);
	img = xmalloc(IMG_SIZE);
	for (size_t i = 0; i < IMG_SIZE; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		img[i] = (uint8_t)x;
	}
	memset(img + ZERO_CHUNK * CHUNK, 0, CHUNK);
	run("pairs, direct writes where aligned");
	setenv("GOLDAGENT_CACHE_DIRECT", "0", 1);
	run("pairs, buffered writes");
	unsetenv("GOLDAGENT_CACHE_DIRECT");
	setenv("GOLDAGENT_HYDRATE_PAIR", "0", 1);
	run("one chunk at a time");
	unsetenv("GOLDAGENT_HYDRATE_PAIR");
	unlink(path);
	unlink(img_path);
	rmdir(dir);
	free(img);
	return done_testing();
}
