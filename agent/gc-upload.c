/* gc-upload: write a machine volume's changed chunks to its upload LUN over
 * iSCSI with goldagent's transfer engine (agent/fetch.c, pipelined WRITE16),
 * then print the commit request body for POST /api/v1/machines/NAME/commit
 * (docs/sync.md): the volume geometry, the base snapshot and each uploaded
 * chunk's index and SHA-256. The sync protocol's appliance half is tested and
 * benchmarked with it; goldagent's uploader does the same from its dirty map.
 *
 * Changed chunks: with --base FILE (the volume as of the base snapshot), every
 * chunk that differs from it; without, every chunk that is not all zero (a
 * first snapshot: unclaimed chunks are zero). Chunk i goes to LUN offset
 * i * chunk_size, the same offset as in the volume. The CHAP secret comes from
 * --secret-file or GOLDCACHE_CHAP_SECRET, never from argv.
 * Exit: 0 done, 1 transfer failed, 2 usage, 3 login refused. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/fetch.h"
#include "agent/tool.h"
#include "lib/hash.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

struct up_chunk {
	uint64_t index;
	struct hash id;
};

struct up_state {
	struct fetch *f;
	int fd;
	uint64_t size;
	uint32_t cs;
	struct up_chunk *list;
	size_t n, next;
	int err;
};

struct up_slot {
	struct up_state *s;
	uint8_t *buf;
};

static void usage(FILE *o)
{
	fprintf(o, "usage: gc-upload [-c CHUNK_SIZE] [-d DEPTH] [-i INITIATOR] [-u USER]\n"
		   "                 [--secret-file FILE] [-t TIMEOUT_S] [--base FILE]\n"
		   "                 [--base-snapshot ID|MACHINE@ID] [--stats]\n"
		   "                 PORTAL TARGET_IQN LUN VOLUME_FILE\n");
}

static uint32_t chunk_len(const struct up_state *s, uint64_t i)
{
	uint64_t off = i * s->cs;

	return (uint32_t)MIN((uint64_t)s->cs, s->size - off);
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Which chunks changed (against base_fd, or non-zero without), with hashes. */
static void scan(struct up_state *s, int base_fd)
{
	uint8_t *a = xmalloc(s->cs), *b = xmalloc(s->cs);
	size_t cap = 0;

	for (uint64_t i = 0; i * s->cs < s->size; i++) {
		uint32_t len = chunk_len(s, i);
		ssize_t n = io_pread_full(s->fd, a, len, (off_t)(i * s->cs));
		int changed;

		if (n != (ssize_t)len)
			die(1, "cannot read the volume at chunk %llu", (unsigned long long)i);
		if (base_fd >= 0) {
			n = io_pread_full(base_fd, b, len, (off_t)(i * s->cs));
			if (n < 0)
				die(1, "cannot read the base at chunk %llu", (unsigned long long)i);
			if ((size_t)n < len)
				memset(b + n, 0, len - (size_t)n);
			changed = memcmp(a, b, len) != 0;
		} else {
			changed = !all_zero(a, len);
		}
		if (!changed)
			continue;
		xgrow((void **)&s->list, &cap, s->n + 1, sizeof(*s->list));
		s->list[s->n].index = i;
		hash_buf(a, len, &s->list[s->n].id);
		s->n++;
	}
	free(a);
	free(b);
}

static void up_done(void *arg, int err, uint64_t off, size_t len);

static int up_issue(struct up_slot *slot)
{
	struct up_state *s = slot->s;
	uint64_t i;
	uint32_t len;
	ssize_t n;

	if (s->err || s->next >= s->n)
		return 0;
	i = s->list[s->next++].index;
	len = chunk_len(s, i);
	n = io_pread_full(s->fd, slot->buf, len, (off_t)(i * s->cs));
	if (n != (ssize_t)len)
		return n < 0 ? (int)n : -EIO;
	/* whole blocks: the volume is a multiple of 512 */
	return fetch_write(s->f, i * s->cs, slot->buf, len, up_done, slot);
}

static void up_done(void *arg, int err, uint64_t off, size_t len)
{
	struct up_slot *slot = arg;
	struct up_state *s = slot->s;

	(void)off;
	(void)len;
	if (!err)
		err = up_issue(slot);
	if (err && !s->err)
		s->err = err;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"secret-file", required_argument, 0, 'S'},
					     {"base", required_argument, 0, 'B'},
					     {"base-snapshot", required_argument, 0, 'N'},
					     {"stats", no_argument, 0, 'j'},
					     {"help", no_argument, 0, 'h'},
					     {0, 0, 0, 0}};
	struct fetch_target t = {.initiator = "iqn.2026-11.org.goldcache:gc-upload"};
	struct up_state s = {0};
	struct up_slot *slots;
	unsigned depth = 8;
	uint64_t cs = 1u << 20, t0, t1, bytes = 0;
	int timeout = 30, stats = 0, c, r, base_fd = -1;
	const char *base = NULL, *base_snap = NULL;
	char *secret = NULL, hex[HASH_HEX_LEN + 1];
	struct stat st;

	log_init("gc-upload", LOG_WARN);
	while ((c = getopt_long(argc, argv, "c:d:i:u:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (parse_size(optarg, &cs) < 0 || cs < 4096 || cs > (64u << 20) ||
			    (cs & (cs - 1)))
				die(2, "-c: '%s' is not a power of two from 4K to 64M", optarg);
			break;
		case 'd':
			if (parse_int(optarg, 1, 256, (int *)&depth) < 0)
				die(2, "-d: '%s' is not a depth from 1 to 256", optarg);
			break;
		case 'i':
			t.initiator = optarg;
			break;
		case 'u':
			t.user = optarg;
			break;
		case 'S':
			secret = tool_read_secret(optarg);
			break;
		case 't':
			if (parse_int(optarg, 1, 3600, &timeout) < 0)
				die(2, "-t: '%s' is not a time-out in seconds", optarg);
			break;
		case 'B':
			base = optarg;
			break;
		case 'N':
			base_snap = optarg;
			if (strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					   "0123456789._-@") != strlen(optarg))
				die(2, "--base-snapshot: '%s' is not ID or MACHINE@ID", optarg);
			break;
		case 'j':
			stats = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 4) {
		usage(stderr);
		return 2;
	}
	tool_target_args(&t, argv + optind, &secret);
	s.cs = (uint32_t)cs;
	s.fd = open(argv[optind + 3], O_RDONLY | O_CLOEXEC);
	if (s.fd < 0 || fstat(s.fd, &st) < 0)
		die(1, "cannot open '%s': %s", argv[optind + 3], strerror(errno));
	s.size = (uint64_t)st.st_size;
	if (s.size == 0 || s.size % 512)
		die(2, "'%s': the volume size must be a non-zero multiple of 512",
		    argv[optind + 3]);
	if (base && (base_fd = open(base, O_RDONLY | O_CLOEXEC)) < 0)
		die(1, "cannot open '%s': %s", base, strerror(errno));
	scan(&s, base_fd);
	r = fetch_open(&t, timeout, &s.f);
	if (r < 0)
		die(r == -EACCES || r == -ENXIO ? 3 : 1, "cannot open '%s' LUN %d at %s: %s", t.iqn,
		    t.lun, t.portal, strerror(-r));
	if (fetch_size(s.f) < s.size)
		die(1, "LUN %d of '%s' holds %llu bytes, the volume %llu", t.lun, t.iqn,
		    (unsigned long long)fetch_size(s.f), (unsigned long long)s.size);
	slots = xcalloc(depth, sizeof(*slots));
	t0 = now_ns();
	r = 0;
	for (unsigned i = 0; i < depth; i++) {
		slots[i] = (struct up_slot){.s = &s, .buf = xmalloc(s.cs)};
		if (r == 0)
			r = up_issue(&slots[i]);
	}
	if (r == 0)
		r = fetch_drain(s.f, timeout * 1000);
	if (r == 0)
		r = s.err;
	t1 = now_ns();
	fetch_free(s.f); /* cancels what is still in flight before the buffers go */
	for (unsigned i = 0; i < depth; i++)
		free(slots[i].buf);
	free(slots);
	if (r < 0)
		die(1, "upload to '%s' failed: %s", t.iqn, strerror(-r));
	printf("{\"volume_size\": %llu, \"chunk_size\": %u, \"base_snapshot\": ",
	       (unsigned long long)s.size, s.cs);
	if (!base_snap)
		printf("null");
	else if (base_snap[0] >= '0' && base_snap[0] <= '9')
		printf("%s", base_snap);
	else
		printf("\"%s\"", base_snap);
	printf(", \"chunks\": [");
	for (size_t i = 0; i < s.n; i++) {
		printf("%s{\"index\": %llu, \"sha256\": \"%s\"}", i ? ", " : "",
		       (unsigned long long)s.list[i].index, hash_to_hex(&s.list[i].id, hex));
		bytes += chunk_len(&s, s.list[i].index);
	}
	printf("]}\n");
	if (stats)
		fprintf(stderr, "gc-upload: %zu chunks, %llu bytes in %.3f s\n", s.n,
			(unsigned long long)bytes, (double)(t1 - t0) / 1e9);
	free(s.list);
	free(secret);
	close(s.fd);
	if (base_fd >= 0)
		close(base_fd);
	return 0;
}
