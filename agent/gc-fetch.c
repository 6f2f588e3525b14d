/* gc-fetch: copy a whole iSCSI LUN to a file with goldagent's transfer engine
 * (agent/fetch.c): the same session set-up (initiator name, CHAP) and the same
 * pipelined READ16 pattern as hydration. Used by the integration tests to prove
 * the ACL/CHAP rules from the agent's side and by bench/hydrate.sh to compare
 * with iscsi-perf. The CHAP secret comes from a file or GOLDCACHE_CHAP_SECRET,
 * never from argv. Exit: 0 done, 1 transfer failed, 2 usage, 3 login refused. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/fetch.h"
#include "agent/tool.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

static void usage(FILE *o)
{
	fprintf(o, "usage: gc-fetch [-d DEPTH] [-s REQSIZE] [-i INITIATOR] [-u USER]\n"
		   "                [--secret-file FILE] [-t TIMEOUT_S] [--json]\n"
		   "                PORTAL TARGET_IQN LUN OUTFILE\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"secret-file", required_argument, 0, 'S'},
					     {"json", no_argument, 0, 'j'},
					     {"help", no_argument, 0, 'h'},
					     {0, 0, 0, 0}};
	struct fetch_target t = {.initiator = "iqn.2026-11.org.goldcache:gc-fetch"};
	unsigned depth = 8;
	uint64_t reqsize = 128 * 1024;
	int timeout = 30, json = 0, c, fd, r;
	char *secret = NULL;
	struct fetch *f;
	uint64_t t0, t1, size;
	double secs;

	log_init("gc-fetch", LOG_WARN);
	while ((c = getopt_long(argc, argv, "d:s:i:u:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (parse_int(optarg, 1, 256, (int *)&depth) < 0)
				die(2, "-d: '%s' is not a depth from 1 to 256", optarg);
			break;
		case 's':
			if (parse_size(optarg, &reqsize) < 0 || reqsize == 0 ||
			    reqsize > (64u << 20))
				die(2, "-s: '%s' is not a request size up to 64M", optarg);
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
		case 'j':
			json = 1;
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
	r = fetch_open(&t, timeout, &f);
	if (r < 0)
		die(r == -EACCES || r == -ENXIO ? 3 : 1, "cannot open '%s' LUN %d at %s: %s", t.iqn,
		    t.lun, t.portal, strerror(-r));
	fd = open(argv[optind + 3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die(1, "cannot create '%s': %s", argv[optind + 3], strerror(errno));
	if (reqsize % fetch_block_size(f))
		die(2, "-s must be a multiple of the LUN's block size %u", fetch_block_size(f));
	size = fetch_size(f);
	t0 = now_ns();
	r = fetch_copy_all(f, fd, (size_t)reqsize, depth);
	t1 = now_ns();
	if (r == 0 && close(fd) < 0)
		r = -errno;
	fetch_free(f);
	free(secret);
	if (r < 0)
		die(1, "transfer from '%s' failed: %s", t.iqn, strerror(-r));
	secs = (double)(t1 - t0) / 1e9;
	if (json)
		printf("{\"bytes\": %llu, \"seconds\": %.3f, \"mb_per_s\": %.1f}\n",
		       (unsigned long long)size, secs, secs > 0 ? (double)size / 1e6 / secs : 0.0);
	else
		fprintf(stderr, "gc-fetch: %llu bytes in %.3f s (%.1f MB/s)\n",
			(unsigned long long)size, secs, secs > 0 ? (double)size / 1e6 / secs : 0.0);
	return 0;
}
