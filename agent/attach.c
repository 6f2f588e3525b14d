/* goldagent's commands that talk to the appliance:
 *
 *   goldagent hydrate --cache FILE --appliance URL --machine NAME [...]
 *   goldagent serve   --cache FILE --appliance URL --machine NAME [...]
 *   goldagent sync    --cache FILE --appliance URL --machine NAME [...]
 *   goldagent attach  [--appliance URL] [--machine NAME] [--cache FILE] [...]
 *
 * The flow (docs/agent.md "Attach"): the machine token (token file, or
 * enrollment), the iSCSI login and image version (GET .../iscsi), the
 * machine's state (volume size), the manifest (strictly decoded, kept next to
 * the cache for offline starts), then the cache: created when missing, the
 * other slot assigned when the appliance serves another version (activated
 * once complete). Gold chunks come over iSCSI from LUN 1 of the machine's
 * target (its initiator name + CHAP), verified before they count.
 *
 * Offline: when the appliance cannot be reached (connection refused, time-out,
 * no route), a cache whose active slot is complete is served with the
 * manifest kept from the last online start; an incomplete one is refused with
 * a message saying how much is missing, exit 1. Any other API failure (token
 * refused, unknown machine) is an error, not "offline". */
#include "agent/attach.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/apiclient.h"
#include "agent/cache.h"
#include "agent/delta.h"
#include "agent/fetch.h"
#include "agent/hydrator.h"
#include "agent/nbd.h"
#include "agent/restore.h"
#include "agent/source-iscsi.h"
#include "agent/source-retry.h"
#include "agent/source.h"
#include "agent/uploader.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/manifest.h"
#include "lib/util.h"

struct aargs {
	const char *cmd;
	const char *cache, *url, *machine, *token_file, *state_dir, *mode, *run_dir;
	const char *gold_sock, *vol_sock;
	uint64_t volume_size, commit, give_up_ms;
	unsigned depth, sync_interval, delta_batch;
	int timeout_s, no_hydrate, interval_given, no_delta;
	char token_buf[512], manifest_path[520], sync_path[512], dir_buf[512];
	char gsock_buf[512], vsock_buf[512];
	char abs_buf[4][512]; /* relative paths made absolute before the chdir */
};

enum {
	O_CACHE = 256,
	O_URL,
	O_MACHINE,
	O_TOKEN,
	O_STATE,
	O_MODE,
	O_RUN,
	O_GSOCK,
	O_VSOCK,
	O_VOLSIZE,
	O_COMMIT,
	O_GIVEUP,
	O_DEPTH,
	O_INTERVAL,
	O_TIMEOUT,
	O_NOHYD,
	O_NODELTA,
	O_DELTABATCH,
	O_HELP,
};

static const struct option opts[] = {
	{"cache", required_argument, NULL, O_CACHE},
	{"appliance", required_argument, NULL, O_URL},
	{"url", required_argument, NULL, O_URL},
	{"machine", required_argument, NULL, O_MACHINE},
	{"token-file", required_argument, NULL, O_TOKEN},
	{"state-dir", required_argument, NULL, O_STATE},
	{"mode", required_argument, NULL, O_MODE},
	{"run-dir", required_argument, NULL, O_RUN},
	{"gold-socket", required_argument, NULL, O_GSOCK},
	{"volume-socket", required_argument, NULL, O_VSOCK},
	{"volume-size", required_argument, NULL, O_VOLSIZE},
	{"commit-every", required_argument, NULL, O_COMMIT},
	{"give-up", required_argument, NULL, O_GIVEUP},
	{"depth", required_argument, NULL, O_DEPTH},
	{"sync-interval", required_argument, NULL, O_INTERVAL},
	{"timeout", required_argument, NULL, O_TIMEOUT},
	{"no-hydrate", no_argument, NULL, O_NOHYD},
	{"no-delta", no_argument, NULL, O_NODELTA},
	{"delta-batch", required_argument, NULL, O_DELTABATCH},
	{"help", no_argument, NULL, O_HELP},
	{NULL, 0, NULL, 0},
};

static void usage(FILE *o)
{
	fprintf(o,
		"usage: goldagent hydrate|serve|sync --cache FILE --appliance URL --machine NAME\n"
		"           [--token-file F] [--state-dir DIR] [--depth N] [--give-up SECONDS]\n"
		"           [--volume-size BYTES] [--commit-every BYTES] [--timeout SECONDS]\n"
		"           [--gold-socket P] [--volume-socket P] [--no-hydrate]   (serve)\n"
		"           [--no-delta] [--delta-batch N]   (gold update: deltas over HTTP)\n"
		"       goldagent attach [--appliance URL] [--machine NAME] [--mode cache|stream]\n"
		"           [--cache FILE] [--run-dir DIR] [--sync-interval SECONDS] [...]\n"
		"attach reads goldcache.url, goldcache.machine, goldcache.mode and\n"
		"goldcache.cache from /proc/cmdline for what the flags do not give.\n");
}

int attach_wants(int argc, char **argv)
{
	if (argc < 2)
		return 0;
	if (strcmp(argv[1], "attach") == 0 || strcmp(argv[1], "sync") == 0)
		return 1;
	if (strcmp(argv[1], "hydrate") != 0 && strcmp(argv[1], "serve") != 0)
		return 0;
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--appliance") == 0 ||
		    strncmp(argv[i], "--appliance=", 12) == 0)
			return 1;
	return 0;
}

static uint64_t num(const char *opt, const char *s)
{
	uint64_t v;

	if (parse_size(s, &v) < 0)
		die(2, "%s: '%s' is not a number or size", opt, s);
	return v;
}

/* goldcache.KEY=VALUE from the kernel command line (static storage). */
static const char *cmdline_get(const char *key)
{
	static char *line;
	static size_t len;
	char want[64];
	size_t wl;

	if (!line && io_read_file("/proc/cmdline", 8192, &line, &len) < 0)
		return NULL;
	wl = (size_t)snprintf(want, sizeof(want), "goldcache.%s=", key);
	for (char *p = line; p && *p;) {
		char *end = p + strcspn(p, " \n");

		if ((size_t)(end - p) > wl && strncmp(p, want, wl) == 0) {
			size_t n = (size_t)(end - p) - wl;
			char *v = xmalloc(n + 1);

			memcpy(v, p + wl, n);
			v[n] = '\0';
			return v;
		}
		p = end + strspn(end, " \n");
	}
	return NULL;
}

static void parse(int argc, char **argv, struct aargs *a)
{
	int c;

	a->cmd = argv[1];
	a->timeout_s = 10;
	a->give_up_ms = 300000;
	a->sync_interval = ~0u; /* attach: 300 s; serve: none */
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_CACHE:
			a->cache = optarg;
			break;
		case O_URL:
			a->url = optarg;
			break;
		case O_MACHINE:
			a->machine = optarg;
			break;
		case O_TOKEN:
			a->token_file = optarg;
			break;
		case O_STATE:
			a->state_dir = optarg;
			break;
		case O_MODE:
			a->mode = optarg;
			break;
		case O_RUN:
			a->run_dir = optarg;
			break;
		case O_GSOCK:
			a->gold_sock = optarg;
			break;
		case O_VSOCK:
			a->vol_sock = optarg;
			break;
		case O_VOLSIZE:
			a->volume_size = num("--volume-size", optarg);
			break;
		case O_COMMIT:
			a->commit = num("--commit-every", optarg);
			break;
		case O_GIVEUP:
			a->give_up_ms = num("--give-up", optarg) * 1000;
			break;
		case O_DEPTH:
			a->depth = (unsigned)num("--depth", optarg);
			break;
		case O_INTERVAL:
			a->sync_interval = (unsigned)num("--sync-interval", optarg);
			a->interval_given = 1;
			break;
		case O_TIMEOUT:
			a->timeout_s = (int)num("--timeout", optarg);
			break;
		case O_NOHYD:
			a->no_hydrate = 1;
			break;
		case O_NODELTA:
			a->no_delta = 1;
			break;
		case O_DELTABATCH:
			a->delta_batch = (unsigned)num("--delta-batch", optarg);
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		die(2, "unexpected argument '%s'", argv[optind]);
	if (a->sync_interval == ~0u)
		a->sync_interval = strcmp(a->cmd, "attach") == 0 ? 300 : 0;
	if (strcmp(a->cmd, "attach") == 0) {
		if (!a->url)
			a->url = cmdline_get("url");
		if (!a->machine)
			a->machine = cmdline_get("machine");
		if (!a->mode)
			a->mode = cmdline_get("mode");
		if (!a->cache)
			a->cache = cmdline_get("cache");
		if (!a->run_dir)
			a->run_dir = "/run/goldcache/agent";
		if (!a->cache)
			a->cache = "/var/lib/goldagent/cache.img";
		fmt_buf(a->gsock_buf, sizeof(a->gsock_buf), "%s/gold.sock", a->run_dir);
		fmt_buf(a->vsock_buf, sizeof(a->vsock_buf), "%s/volume.sock", a->run_dir);
		if (!a->gold_sock)
			a->gold_sock = a->gsock_buf;
		if (!a->vol_sock && (!a->mode || strcmp(a->mode, "stream") != 0))
			a->vol_sock = a->vsock_buf;
	}
	if (!a->cache || !a->url || !a->machine) {
		usage(stderr);
		die(2, "%s needs --cache, --appliance URL and --machine NAME", a->cmd);
	}
	if (!name_is_valid(a->machine))
		die(2, "machine name '%s' is not valid", a->machine);
	if (!a->state_dir) {
		struct stat st;
		char tmp[512];

		if (stat(a->cache, &st) == 0 && S_ISBLK(st.st_mode)) {
			a->state_dir = "/var/lib/goldagent";
		} else {
			fmt_buf(tmp, sizeof(tmp), "%s", a->cache);
			fmt_buf(a->dir_buf, sizeof(a->dir_buf), "%s", dirname(tmp));
			a->state_dir = a->dir_buf;
		}
	}
	if (!a->token_file) {
		fmt_buf(a->token_buf, sizeof(a->token_buf), "%s/%s.token", a->state_dir,
			a->machine);
		a->token_file = a->token_buf;
	}
	fmt_buf(a->manifest_path, sizeof(a->manifest_path), "%s/%s.%%c.manifest", a->state_dir,
		a->machine);
	fmt_buf(a->sync_path, sizeof(a->sync_path), "%s/%s.sync", a->state_dir, a->machine);
}

/* What an online start learned, or what an offline one has. */
struct session {
	struct apic api;
	struct apic_iscsi login;
	struct apic_machine mach;
	struct fetch_target tgt;
	struct chunk_hashes hs;
	struct chunk_hashes other; /* gold update: the active slot's hashes (n 0: none) */
	struct cache *c;
	int slot; /* the slot being filled / served */
	int online;
	int timeout_s;
};

static int open_iscsi(void *arg, struct chunk_source **out)
{
	struct session *s = arg;

	return chunk_source_iscsi_new(&s->tgt, s->timeout_s, out);
}

/* STATE/NAME.A.manifest, STATE/NAME.B.manifest: the manifest each slot follows. */
static const char *slot_manifest(const struct aargs *a, int slot, char *buf, size_t size)
{
	const char *pct = a->manifest_path, *q;
	int pre;

	while ((q = strstr(pct + 1, "%c")))
		pct = q; /* the last one: the state dir may hold a '%' */
	pre = (int)(pct - a->manifest_path);

	fmt_buf(buf, size, "%.*s%c%s", pre, a->manifest_path, 'A' + slot, pct + 2);
	return buf;
}

static int load_saved_manifest(const char *path, const struct cache *c, int slot,
			       struct chunk_hashes *hs)
{
	const struct cache_slot_info *si = &cache_header(c)->slot[slot];
	struct manifest *m;
	struct hash fh;

	if (manifest_load_file(path, &m, &fh) < 0)
		return -ENOENT;
	if (!hash_equal(&fh, &si->manifest)) {
		log_error("manifest '%s' is not the one of the cache's slot %c (%s@%s)", path,
			  'A' + slot, si->name, si->version);
		manifest_free(m);
		return -EBADMSG;
	}
	chunk_hashes_from_manifest(m, hs);
	manifest_free(m);
	return 0;
}

/* The appliance could not be reached: serve what the cache holds, if whole. */
static int go_offline(struct aargs *a, struct session *s)
{
	const struct cache_header *h;
	char mpath[600];
	uint64_t have, want;
	int r = cache_open(a->cache, 0, &s->c), slot;

	if (r < 0) {
		log_error("appliance %s unreachable and no usable cache at '%s': cannot start "
			  "offline (connect to the boot network and retry)",
			  a->url, a->cache);
		return -ENODATA;
	}
	h = cache_header(s->c);
	slot = h->active_slot == CACHE_NO_SLOT ? 0 : (int)h->active_slot;
	have = cache_slot_present_count(s->c, slot);
	want = cache_slot_chunks(s->c, slot);
	if (h->slot[slot].state != CACHE_SLOT_COMPLETE) {
		log_error("appliance %s unreachable and the cache holds %llu of %llu chunks of "
			  "%s@%s (%.1f%%): cannot start offline; connect to the boot network "
			  "and retry",
			  a->url, (unsigned long long)have, (unsigned long long)want,
			  h->slot[slot].name, h->slot[slot].version,
			  want ? 100.0 * (double)have / (double)want : 0.0);
		fprintf(stderr,
			"goldagent: offline and the cache is incomplete (%llu/%llu chunks)\n",
			(unsigned long long)have, (unsigned long long)want);
		return -ENODATA;
	}
	s->slot = slot;
	if (load_saved_manifest(slot_manifest(a, slot, mpath, sizeof(mpath)), s->c, slot, &s->hs) <
	    0)
		log_warn("no manifest kept for slot %c: serving without re-verification",
			 'A' + slot);
	log_info("appliance %s unreachable: cache complete (%s@%s), serving offline", a->url,
		 h->slot[slot].name, h->slot[slot].version);
	s->online = 0;
	return 0;
}

/* Whether slot holds name@version; a slot with a kept manifest hash must also
 * match fh (a store rebuilt under the same name@version is another image). */
static int slot_holds(const struct cache_header *h, int slot, const char *name, const char *ver,
		      const struct hash *fh, int need_hash)
{
	const struct cache_slot_info *si = &h->slot[slot];
	struct hash zero = {{0}};

	if (si->state == CACHE_SLOT_EMPTY || strcmp(si->name, name) != 0 ||
	    strcmp(si->version, ver) != 0)
		return 0;
	if (hash_equal(&si->manifest, fh))
		return 1;
	return !need_hash && hash_equal(&si->manifest, &zero);
}

/* Slot selection (OS swap, gold update, rollback): which slot serves m
 * (name@ver, manifest file hash fh). The active slot when it holds it; else
 * the other slot, kept as it is when it already holds that image@version (a
 * swap back to the previous image or a rollback: nothing to fetch, or only
 * what an interrupted fill left), re-assigned otherwise (a new version or
 * another image: the active slot's chunks are copied by hash, the rest
 * fetched). The active slot is never overwritten, so the image the machine
 * ran last stays whole until the new one is complete. Sets s->slot and, when
 * switching, s->other (the active slot's hashes, for copying). */
static int pick_slot(struct aargs *a, struct session *s, const struct manifest *m, const char *ver,
		     const struct hash *fh)
{
	const struct cache_header *h = cache_header(s->c);
	char mpath[600];
	int act = h->active_slot == CACHE_NO_SLOT ? 0 : (int)h->active_slot, other = 1 - act, r;

	s->slot = act;
	if (slot_holds(h, act, m->name, ver, fh, 0))
		return 0;
	if (h->geo.chunk_size != m->chunk_size || m->size > h->geo.gold_capacity) {
		log_error("the cache's geometry (chunks of %u, %llu bytes per slot) cannot hold "
			  "%s@%s; re-create it (goldagent cache init --force)",
			  h->geo.chunk_size, (unsigned long long)h->geo.gold_capacity, m->name,
			  ver);
		return -EINVAL;
	}
	if (h->slot[act].state != CACHE_SLOT_EMPTY &&
	    load_saved_manifest(slot_manifest(a, act, mpath, sizeof(mpath)), s->c, act, &s->other) <
		    0)
		log_warn("no manifest kept for slot %c: every chunk of %s@%s is fetched", 'A' + act,
			 m->name, ver);
	if (slot_holds(h, other, m->name, ver, fh, 1)) {
		log_info("slot %c still holds %s@%s (%s): switching back to it", 'A' + other,
			 m->name, ver,
			 h->slot[other].state == CACHE_SLOT_COMPLETE ? "complete" : "filling");
	} else {
		log_info("slot %c gets %s@%s (slot %c keeps %s@%s)", 'A' + other, m->name, ver,
			 'A' + act, h->slot[act].name, h->slot[act].version);
		r = cache_slot_assign(s->c, other, m->name, ver, m->size, fh);
		if (r < 0)
			return r;
	}
	s->slot = other;
	return 0;
}

/* Online: token, login, manifest, cache (created or slot assigned).
 * 0 online, 1 offline (cache complete), <0 error. */
static int session_start(struct aargs *a, struct session *s)
{
	char ver[16], *text = NULL, mpath[600];
	size_t tlen = 0;
	struct manifest *m = NULL;
	struct hash fh;
	int r;

	memset(s, 0, sizeof(*s));
	s->timeout_s = a->timeout_s;
	s->api = (struct apic){
		.url = a->url, .machine = a->machine, .timeout_ms = a->timeout_s * 1000};
	if (io_mkdir_p(a->state_dir, 0700) < 0)
		log_warn("cannot create state dir '%s'", a->state_dir);
	r = apic_token(&s->api, a->token_file);
	if (r == 0)
		r = apic_iscsi_get(&s->api, &s->login);
	if (r == 0)
		r = apic_machine_get(&s->api, &s->mach);
	if (r == 0)
		r = apic_manifest_get(&s->api, s->login.image, s->login.version, &text, &tlen, &m,
				      &fh);
	if (r < 0 && apic_unreachable(r))
		return go_offline(a, s) < 0 ? -ENODATA : 1;
	if (r < 0)
		return r;
	if (!m)
		return -EBADMSG;
	s->online = 1;
	s->tgt = (struct fetch_target){.portal = s->login.portal,
				       .iqn = s->login.target,
				       .initiator = s->login.initiator,
				       .user = s->login.user,
				       .secret = s->login.secret,
				       .lun = s->login.gold_lun};
	chunk_hashes_from_manifest(m, &s->hs);
	snprintf(ver, sizeof(ver), "%u", m->version);
	r = cache_open(a->cache, 0, &s->c);
	if (r == -ENOENT || r == -EBADMSG) {
		/* room for gold updates that grow the image by up to a quarter */
		uint64_t cap =
			(m->size + m->size / 4 + m->chunk_size - 1) / m->chunk_size * m->chunk_size;
		struct cache_params p = {.image = m->name,
					 .version = ver,
					 .image_size = m->size,
					 .gold_capacity = cap,
					 .chunk_size = m->chunk_size,
					 .manifest = &fh,
					 .volume_size = s->mach.volume_size ? s->mach.volume_size
							: a->volume_size    ? a->volume_size
									    : 64ull << 20};
		log_info("creating cache '%s' for %s@%s (volume %llu bytes)", a->cache, m->name,
			 ver, (unsigned long long)p.volume_size);
		r = cache_create(a->cache, &p);
		if (r == 0)
			r = cache_open(a->cache, 0, &s->c);
	}
	if (r < 0)
		goto out;
	r = pick_slot(a, s, m, ver, &fh);
	if (r < 0)
		goto out;
	slot_manifest(a, s->slot, mpath, sizeof(mpath));
	r = io_write_file_atomic(mpath, text, tlen, 0644);
	if (r < 0)
		log_error("cannot keep the manifest in '%s': %s", mpath, strerror(-r));
out:
	free(text);
	manifest_free(m);
	return r;
}

static void session_end(struct session *s)
{
	chunk_hashes_release(&s->hs);
	chunk_hashes_release(&s->other);
	apic_release(&s->api);
	explicit_bzero(s->login.secret, sizeof(s->login.secret));
}

/* Best effort: PUT .../state (docs/api.md STATE) so `goldctl machine show`
 * says how far this machine is. A failure is only logged by the client. */
static void report_state(struct session *s, const char *mode)
{
	const struct cache_header *h;
	uint64_t have, want, dirty;
	uint32_t ver = 0;
	int slot;
	char body[512];

	if (!s->c || !s->api.token)
		return;
	if (!mode || !name_is_valid(mode))
		mode = "cache";
	h = cache_header(s->c);
	slot = h->active_slot == CACHE_NO_SLOT ? 0 : (int)h->active_slot;
	have = cache_slot_present_count(s->c, slot);
	want = cache_slot_chunks(s->c, slot);
	dirty = cache_dirty_count(s->c) * h->geo.dirty_block_size;
	if (parse_u32(h->slot[slot].version, &ver) < 0)
		ver = 0;
	fmt_buf(body, sizeof(body),
		"{\"hydrated_pct\": %.1f, \"dirty_bytes\": %llu, \"version\": %u, "
		"\"image\": \"%s\", \"mode\": \"%s\", \"agent\": \"goldagent\", "
		"\"cache_complete\": %s, \"online\": true, \"last_sync\": %lld}",
		want ? 100.0 * (double)have / (double)want : 0.0, (unsigned long long)dirty, ver,
		h->slot[slot].name, mode,
		h->slot[slot].state == CACHE_SLOT_COMPLETE ? "true" : "false",
		(long long)h->last_sync);
	apic_state_put(&s->api, body);
}

/* A login the target refused (-EACCES: not retried, see source-retry.c). */
static void log_refused(const struct session *s)
{
	log_error("the target %s refused the login of %s (user %s): check that the CHAP secret "
		  "the appliance hands out (GET .../iscsi) is the one its tgtd holds "
		  "(goldcached's log, `gc-targets show`)",
		  s->login.target, s->login.initiator, s->login.user);
}

/* A gold update (another version of the image in the active slot): the
 * chunks that changed come first as deltas against the active slot's chunks
 * (agent/delta.h); hydrate_pipelined then copies, zeroes and fetches over
 * iSCSI whatever is still absent, including every delta that failed. */
static void delta_before_hydrate(struct aargs *a, struct session *s)
{
	const struct cache_header *h = cache_header(s->c);
	struct delta_stats st;
	struct delta_opts o;
	uint32_t from = 0, to = 0;
	int act = (int)h->active_slot, r;

	if (a->no_delta || !s->online || !s->other.n || act == s->slot ||
	    h->active_slot == CACHE_NO_SLOT ||
	    strcmp(h->slot[act].name, h->slot[s->slot].name) != 0 ||
	    parse_u32(h->slot[act].version, &from) < 0 ||
	    parse_u32(h->slot[s->slot].version, &to) < 0 || from == to)
		return;
	o = (struct delta_opts){.api = &s->api,
				.image = h->slot[s->slot].name,
				.from = from,
				.to = to,
				.old_slot = act,
				.old = &s->other,
				.batch = a->delta_batch};
	r = delta_pass(s->c, s->slot, &s->hs, &o, &st);
	if (r == -ENOENT)
		log_info("no deltas from the appliance (an older one, or %s@%u is gone from its "
			 "store): the changed chunks come over iSCSI",
			 o.image, from);
	else if (r < 0)
		log_warn("delta pass stopped (%s): the rest comes over iSCSI", strerror(-r));
	if (!st.candidates)
		return;
	printf("slot %c: %llu chunks as deltas (%llu bytes on the wire for %llu bytes of chunks), "
	       "%llu left for iSCSI, %llu rejected, %u requests, %llu ms\n",
	       'A' + s->slot, (unsigned long long)st.applied, (unsigned long long)st.wire_bytes,
	       (unsigned long long)st.chunk_bytes, (unsigned long long)st.fallback,
	       (unsigned long long)st.rejected, st.requests, (unsigned long long)st.elapsed_ms);
	fflush(stdout);
}

static int do_hydrate(struct aargs *a, struct session *s)
{
	struct hydr_opts o = {.depth = a->depth,
			      .commit_bytes = a->commit,
			      .give_up_ms = a->give_up_ms,
			      .open = open_iscsi,
			      .open_arg = s,
			      .other = s->other.n ? &s->other : NULL};
	struct hydr_stats st;
	int r;

	delta_before_hydrate(a, s);
	r = hydrate_pipelined(s->c, s->slot, &s->hs, &o, &st);

	printf("slot %c: %llu chunks fetched (%llu bytes), %llu copied from slot %c, %llu zero, "
	       "%llu already present, %llu rejected, %u reconnects, %llu ms\n",
	       'A' + s->slot, (unsigned long long)st.h.fetched, (unsigned long long)st.h.bytes,
	       (unsigned long long)st.h.copied, 'A' + (1 - s->slot), (unsigned long long)st.h.zero,
	       (unsigned long long)st.h.skipped, (unsigned long long)st.h.rejected, st.reconnects,
	       (unsigned long long)st.elapsed_ms);
	fflush(stdout);
	if (r == 0 && cache_header(s->c)->active_slot != (uint32_t)s->slot) {
		r = cache_slot_set_active(s->c, s->slot);
		if (r == 0)
			log_info("slot %c is complete and now active", 'A' + s->slot);
	}
	if (r == -EACCES)
		log_refused(s);
	if (r < 0)
		log_error("hydration of slot %c incomplete: %s", 'A' + s->slot, strerror(-r));
	return r;
}

static int cmd_hydrate(struct aargs *a)
{
	struct session s;
	int r = session_start(a, &s), rc;

	if (r < 0) {
		session_end(&s);
		if (s.c)
			cache_close(s.c);
		return 1;
	}
	rc = r == 1 ? 0 : do_hydrate(a, &s) < 0;
	if (r == 0)
		report_state(&s, "cache");
	if (cache_close(s.c) < 0)
		rc = 1;
	session_end(&s);
	return rc;
}

struct ticker {
	struct aargs *a;
	struct session *s;
	unsigned syncs, failures;
	uint64_t reported_present; /* gold chunks present at the last state report */
	struct nbd_server *srv;
	struct upl_live *live; /* the sync in progress, NULL: none */
	struct fetch_target tgt; /* its upload LUN */
	int efd; /* its thread wakes the loop through this eventfd */
};

static void pause_writes(void *arg, int on)
{
	struct ticker *t = arg;

	nbd_server_pause_writes(t->srv, on);
}

/* The sync's thread finished a step: the next one runs here, on the loop. */
static void sync_notify(void *arg)
{
	struct ticker *t = arg;
	const struct upl_stats *st;
	int r;

	if (!t->live)
		return;
	r = upl_live_step(t->live);
	if (r == 1)
		return;
	st = upl_live_stats(t->live);
	if (r < 0) {
		t->failures++;
		log_error("sync failed: %s (dirty blocks stay dirty; the next tick tries again)",
			  strerror(-r));
	} else {
		t->syncs++;
		report_state(t->s, t->a->mode ? t->a->mode : "cache");
		log_info("sync: snapshot %u (%llu bytes sent for %llu dirty bytes) in %llu ms, "
			 "%u passes, writes paused %llu ms",
			 st->snapshot, (unsigned long long)st->sent_bytes,
			 (unsigned long long)st->dirty_bytes,
			 (unsigned long long)(st->upload_ms + st->commit_ms), st->passes,
			 (unsigned long long)st->pause_ms);
	}
	upl_live_free(t->live);
	t->live = NULL;
}

/* Periodic sync, started on the serve loop and run by the uploader's thread
 * while clients keep working (writes pause only for its final pass). Offline
 * or failing: the dirty bits stay and the next tick tries again, so the first
 * tick after the appliance is back is the sync "on reconnect". */
static void sync_tick(void *arg)
{
	struct ticker *t = arg;
	struct session *s = t->s;
	struct upl_opts o;
	int r = 0;

	if (t->live)
		return; /* one sync at a time */
	if (cache_dirty_count(s->c) == 0) {
		/* nothing to sync: still tell the appliance how far hydration got
		 * (the first attach report says 0%, the cache fills after it) */
		const struct cache_header *h = cache_header(s->c);
		int slot = h->active_slot == CACHE_NO_SLOT ? 0 : (int)h->active_slot;
		uint64_t have = cache_slot_present_count(s->c, slot);

		if (have != t->reported_present) {
			t->reported_present = have;
			report_state(s, t->a->mode ? t->a->mode : "cache");
		}
		return;
	}
	if (!s->api.token)
		r = apic_token(&s->api, t->a->token_file);
	if (r == 0 && !s->login.upload_lun)
		r = apic_iscsi_get(&s->api, &s->login);
	if (r < 0 || !s->login.upload_lun) {
		if (r == 0)
			log_info("sync: the profile keeps no machine volume at the appliance");
		t->failures++;
		return;
	}
	t->tgt = (struct fetch_target){.portal = s->login.portal,
				       .iqn = s->login.target,
				       .initiator = s->login.initiator,
				       .user = s->login.user,
				       .secret = s->login.secret,
				       .lun = s->login.upload_lun};
	o = (struct upl_opts){.api = &s->api,
			      .target = &t->tgt,
			      .depth = t->a->depth,
			      .timeout_s = t->a->timeout_s,
			      .state_path = t->a->sync_path,
			      .attempts = 5,
			      .notify_fd = t->efd,
			      .pause = pause_writes,
			      .pause_arg = t};
	r = upl_live_start(s->c, &o, &t->live);
	if (r < 0)
		t->failures++;
}

/* persist: false (reimaging labs): the machine starts every boot from an empty
 * volume. Nothing is ever synced for such a machine, so the blocks its last
 * boot wrote are exactly the dirty ones: zeroing those gives back the all-zero
 * volume at the cost of the last boot's writes, and the gold cache is kept.
 * The bits are cleared only after every zero is durable, so a crash midway
 * leaves them set and the next attach zeroes again. */
static int volume_reset(struct cache *c)
{
	const struct cache_header *h = cache_header(c);
	uint64_t bs = h->geo.dirty_block_size, n = cache_dirty_count(c), done = 0;
	int r = 0;

	if (n == 0)
		return 0;
	for (uint64_t b = 0; b < h->geo.nblocks && r == 0; b++) {
		uint64_t off = b * bs;

		if (!cache_block_dirty(c, b))
			continue;
		r = cache_vol_zero(c, off, (size_t)MIN(bs, h->geo.volume_size - off), 0);
		done++;
	}
	if (r == 0)
		r = cache_flush(c);
	if (r == 0)
		r = cache_sync_done(c, NULL, 0, 1, h->last_sync, NULL);
	if (r < 0) {
		log_error("cache '%s': cannot reset the machine volume: %s", cache_path(c),
			  strerror(-r));
		return r;
	}
	log_info("persist: false: machine volume reset (%llu blocks written last boot zeroed)",
		 (unsigned long long)done);
	return 0;
}

/* persist: false, online or not: an online start records the profile's flag in
 * the cache header (durable before the volume is served), so an offline start,
 * which cannot ask the appliance, resets the volume just the same. */
static int volume_policy(struct session *s)
{
	int r;

	if (s->online) {
		r = cache_set_vol_reset(s->c, !s->mach.persist);
		if (r < 0) {
			log_error("cache '%s': cannot record the profile's persist flag: %s",
				  cache_path(s->c), strerror(-r));
			return r;
		}
	}
	if (!(cache_header(s->c)->flags & CACHE_F_VOL_RESET))
		return 0;
	if (!s->online)
		log_info("offline start: the profile said persist: false at the last online start");
	return volume_reset(s->c);
}

static int serve_loop(struct aargs *a, struct session *s)
{
	struct ticker tk = {.a = a, .s = s, .efd = -1};
	struct nbd_server_opts o = {0};
	struct chunk_source *src = NULL;
	struct iscsi_opener *op = NULL;
	struct nbd_server *srv;
	int gslot, r;

	if (s->online && cache_header(s->c)->active_slot != (uint32_t)s->slot) {
		/* a gold update: fill the new slot first, it is activated when whole */
		const struct cache_header *h = cache_header(s->c);
		int act = (int)h->active_slot;

		r = do_hydrate(a, s);
		if (r < 0 && h->active_slot != CACHE_NO_SLOT &&
		    h->slot[act].state == CACHE_SLOT_COMPLETE) {
			/* the machine still boots: the version it ran last is whole in
			 * the active slot (e.g. LUN 1 still served the previous version
			 * right after a promote, or the link broke); the next attach
			 * resumes the new slot, keeping what was verified */
			struct chunk_hashes t = s->hs;

			log_warn("gold update to %s@%s incomplete (%s): serving %s@%s from slot %c "
				 "this time",
				 h->slot[s->slot].name, h->slot[s->slot].version, strerror(-r),
				 h->slot[act].name, h->slot[act].version, 'A' + act);
			s->hs = s->other;
			s->other = t;
			s->slot = act;
			r = 0;
		}
		if (r < 0)
			return r;
	}
	if (a->vol_sock) {
		r = volume_policy(s);
		if (r < 0)
			return r;
	}
	gslot = (int)cache_header(s->c)->active_slot;
	if (s->online && cache_header(s->c)->slot[gslot].state != CACHE_SLOT_COMPLETE) {
		/* a lost session is reopened with backoff (on a thread: from a
		 * private copy of the target); waiting reads are re-issued */
		op = iscsi_opener_new(&s->tgt, s->timeout_s);
		r = chunk_source_retry_new(iscsi_opener_open, op, 500, 10000, a->give_up_ms, &src);
		if (r == -EACCES)
			log_refused(s);
		else if (r < 0)
			log_error("cannot log in to %s for on-demand chunks: %s (--give-up %llu s)",
				  s->login.target, strerror(-r),
				  (unsigned long long)(a->give_up_ms / 1000));
		if (r < 0) {
			iscsi_opener_free(op);
			return r;
		}
	}
	o.cache = s->c;
	o.gold_slot = gslot;
	o.source = src;
	o.hashes = s->hs.n ? &s->hs : NULL;
	o.gold_socket = a->gold_sock;
	o.volume_socket = a->vol_sock;
	o.hydrate_depth = src && !a->no_hydrate ? (a->depth ? a->depth : 4) : 0;
	/* the profile's sync_interval, unless --sync-interval overrides it */
	if (!a->interval_given && s->online && s->mach.sync_interval_s)
		a->sync_interval = s->mach.sync_interval_s;
	if (a->sync_interval && a->vol_sock) {
		tk.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (tk.efd < 0) {
			r = -errno;
			log_error("cannot create an eventfd for syncs: %s", strerror(-r));
			chunk_source_free(src);
			iscsi_opener_free(op);
			return r;
		}
		o.tick = sync_tick;
		o.tick_arg = &tk;
		o.tick_ms = a->sync_interval * 1000;
		o.notify_fd = tk.efd;
		o.notify = sync_notify;
	}
	if (s->online)
		report_state(s, a->mode ? a->mode : "cache");
	if (a->run_dir && io_mkdir_p(a->run_dir, 0700) < 0)
		log_warn("cannot create '%s'", a->run_dir);
	r = nbd_server_new(&o, &srv);
	if (r == 0) {
		tk.srv = srv;
		r = nbd_server_run(srv);
		/* a sync still running is abandoned: its dirty bits stay */
		upl_live_free(tk.live);
		tk.live = NULL;
		nbd_server_free(srv);
	}
	if (tk.efd >= 0)
		close(tk.efd);
	chunk_source_free(src);
	iscsi_opener_free(op);
	return r;
}

/* Restore and reset orders (agent/restore.h): online, the pending order is
 * carried out before anything serves the volume; offline, a half-restored
 * volume is refused. Machines without a volume (stream mode) skip it. */
static int attach_restore(struct aargs *a, struct session *s)
{
	struct restore_opts o;
	int r;

	if (!a->vol_sock || !s->c)
		return 0;
	if (!s->online)
		return restore_offline_check(s->c, a->url);
	o = (struct restore_opts){.api = &s->api,
				  .login = &s->login,
				  .base_path = a->sync_path,
				  .depth = a->depth,
				  .timeout_s = a->timeout_s,
				  .give_up_ms = a->give_up_ms};
	r = restore_pending(s->c, &s->mach, &o, NULL);
	if (r < 0)
		fprintf(stderr,
			"goldagent: the machine volume was not restored (%s): see the log\n",
			strerror(-r));
	return r;
}

/* p, or cwd/p when p is relative, in buf. */
static const char *abs_path(const char *p, char *buf, size_t size)
{
	char cwd[256];

	if (!p || p[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return p;
	fmt_buf(buf, size, "%s/%s", cwd, p);
	return buf;
}

/* path without the "state_dir/" prefix (in place), when it has it. */
static void strip_state_dir(const char *dir, char *path)
{
	size_t n = strlen(dir);

	if (strncmp(path, dir, n) == 0 && path[n] == '/')
		memmove(path, path + n + 1, strlen(path + n + 1) + 1);
}

/* A long-lived agent started from the initramfs outlives switch_root: the
 * initramfs's files are deleted and /run, where the state partition is
 * mounted, moves under the new root, out of the agent's reach by path (its
 * root stays the old one). So it makes its state folder its working directory,
 * which stays on that mount wherever the mount moves, and names its state files
 * (token, manifests, sync base) relative to it. Other relative paths are made
 * absolute first; the sockets and the cache are opened before the move. */
static void pin_state_dir(struct aargs *a)
{
	a->cache = abs_path(a->cache, a->abs_buf[0], sizeof(a->abs_buf[0]));
	a->gold_sock = abs_path(a->gold_sock, a->abs_buf[1], sizeof(a->abs_buf[1]));
	a->vol_sock = abs_path(a->vol_sock, a->abs_buf[2], sizeof(a->abs_buf[2]));
	if (a->token_file != a->token_buf)
		a->token_file = abs_path(a->token_file, a->abs_buf[3], sizeof(a->abs_buf[3]));
	if (io_mkdir_p(a->state_dir, 0700) < 0 || chdir(a->state_dir) < 0) {
		log_warn("state dir '%s': %s: after a switch_root its files are out of reach",
			 a->state_dir, strerror(errno));
		return;
	}
	if (a->token_file == a->token_buf)
		strip_state_dir(a->state_dir, a->token_buf);
	strip_state_dir(a->state_dir, a->manifest_path);
	strip_state_dir(a->state_dir, a->sync_path);
}

static int cmd_serve(struct aargs *a)
{
	struct session s;
	int r, rc;

	if (!a->gold_sock && !a->vol_sock)
		die(2, "serve needs --gold-socket and/or --volume-socket");
	log_set_timestamps(1);
	pin_state_dir(a);
	r = session_start(a, &s);
	if (r < 0) {
		session_end(&s);
		if (s.c)
			cache_close(s.c);
		return 1;
	}
	rc = attach_restore(a, &s) < 0 || serve_loop(a, &s) < 0;
	if (cache_close(s.c) < 0)
		rc = 1;
	session_end(&s);
	return rc;
}

static int cmd_sync(struct aargs *a)
{
	struct session s;
	struct upl_opts o;
	struct upl_stats st;
	int r, rc = 1;

	memset(&s, 0, sizeof(s));
	s.api = (struct apic){
		.url = a->url, .machine = a->machine, .timeout_ms = a->timeout_s * 1000};
	r = apic_token(&s.api, a->token_file);
	if (r == 0)
		r = apic_iscsi_get(&s.api, &s.login);
	if (r < 0) {
		if (apic_unreachable(r))
			log_error("appliance %s unreachable: nothing synced (the dirty blocks stay "
				  "dirty)",
				  a->url);
		goto out;
	}
	if (!s.login.upload_lun) {
		log_error("machine '%s' keeps no machine volume at the appliance (profile "
			  "without persist): nothing to sync",
			  a->machine);
		goto out;
	}
	if (cache_open(a->cache, 0, &s.c) < 0)
		goto out;
	s.tgt = (struct fetch_target){.portal = s.login.portal,
				      .iqn = s.login.target,
				      .initiator = s.login.initiator,
				      .user = s.login.user,
				      .secret = s.login.secret,
				      .lun = s.login.upload_lun};
	o = (struct upl_opts){.api = &s.api,
			      .target = &s.tgt,
			      .depth = a->depth,
			      .timeout_s = a->timeout_s,
			      .state_path = a->sync_path,
			      .give_up_ms = a->give_up_ms};
	rc = upload_sync(s.c, &o, &st) < 0;
	printf("sync: snapshot %u, %llu dirty bytes, %llu bytes sent (%.3f), %llu blocks, "
	       "%llu bits cleared, upload %llu ms, commit %llu ms, %u attempts, %llu chunks "
	       "(%llu in part), %u requests\n",
	       st.snapshot, (unsigned long long)st.dirty_bytes, (unsigned long long)st.sent_bytes,
	       st.dirty_bytes ? (double)st.sent_bytes / (double)st.dirty_bytes : 0.0,
	       (unsigned long long)st.sent_blocks, (unsigned long long)st.cleared,
	       (unsigned long long)st.upload_ms, (unsigned long long)st.commit_ms, st.attempts,
	       (unsigned long long)st.chunks, (unsigned long long)st.partial, st.requests);
	if (cache_close(s.c) < 0)
		rc = 1;
out:
	session_end(&s);
	return rc;
}

int attach_main(int argc, char **argv)
{
	struct aargs a = {0};

	parse(argc, argv, &a);
	if (strcmp(a.cmd, "hydrate") == 0)
		return cmd_hydrate(&a);
	if (strcmp(a.cmd, "sync") == 0)
		return cmd_sync(&a);
	/* serve and attach: attach is serve with defaults from /proc/cmdline */
	return cmd_serve(&a);
}
