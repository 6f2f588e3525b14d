/* goldagent: the machine-side agent's command line. Parses argv, calls the
 * cache, source and NBD modules, prints. Subcommands available now:
 *
 *   goldagent cache init (--manifest F | --image NAME --version V --chunk-size S
 *                        --size BYTES) --volume-size BYTES [--dirty-block S]
 *                        [--capacity BYTES] [--force] FILE
 *   goldagent cache check [--repair] [--manifest F | --hashes F] [--source-file F] FILE
 *   goldagent cache dirty FILE        (dirty volume ranges: "OFFSET LENGTH")
 *   goldagent status [--json] --cache FILE
 *   goldagent cache assign --slot A|B --manifest F FILE   (gold update: the other slot)
 *   goldagent cache activate --slot A|B [--force] FILE    (switch, or roll back)
 *   goldagent hydrate --cache FILE [--source-file F] [--manifest F [--other-manifest F]
 *                     | --hashes F]   (--other-manifest: copy equal chunks from the other slot)
 *   goldagent bootdisk probe|prepare|update|check ...  (agent/bootdisk.c)
 *   goldagent serve --cache FILE [--gold-socket PATH] [--volume-socket PATH]
 *                   [--source-file F [--hydrate]] [--manifest F | --hashes F]
 *
 * --manifest (lib/manifest.h, e.g. from `goldctl image manifest`) or --hashes
 * (one SHA-256 or "zero" per line) name each chunk's expected content: a
 * chunk is stored and marked present only if it matches.
 *
 * Exit codes: 0 success; 1 the operation failed (cache check: problems
 * found and not repaired; hydrate: chunks missing or rejected); 2 usage. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agent/attach.h"
#include "agent/bootdisk.h"
#include "agent/cache.h"
#include "agent/nbd.h"
#include "agent/source.h"
#include "lib/log.h"
#include "lib/manifest.h"
#include "lib/util.h"

enum {
	OPT_IMAGE = 256,
	OPT_VERSION,
	OPT_CHUNK,
	OPT_SIZE,
	OPT_VOLSIZE,
	OPT_DIRTYBLK,
	OPT_CAPACITY,
	OPT_FORCE,
	OPT_REPAIR,
	OPT_HASHES,
	OPT_SOURCE,
	OPT_CACHE,
	OPT_JSON,
	OPT_GOLDSOCK,
	OPT_VOLSOCK,
	OPT_SLOT,
	OPT_VERBOSE,
	OPT_MANIFEST,
	OPT_COMMIT,
	OPT_HYDRATE,
	OPT_OTHER,
};

static const struct option long_opts[] = {
	{"image", required_argument, NULL, OPT_IMAGE},
	{"version", required_argument, NULL, OPT_VERSION},
	{"chunk-size", required_argument, NULL, OPT_CHUNK},
	{"size", required_argument, NULL, OPT_SIZE},
	{"volume-size", required_argument, NULL, OPT_VOLSIZE},
	{"dirty-block", required_argument, NULL, OPT_DIRTYBLK},
	{"capacity", required_argument, NULL, OPT_CAPACITY},
	{"force", no_argument, NULL, OPT_FORCE},
	{"repair", no_argument, NULL, OPT_REPAIR},
	{"hashes", required_argument, NULL, OPT_HASHES},
	{"source-file", required_argument, NULL, OPT_SOURCE},
	{"cache", required_argument, NULL, OPT_CACHE},
	{"json", no_argument, NULL, OPT_JSON},
	{"gold-socket", required_argument, NULL, OPT_GOLDSOCK},
	{"volume-socket", required_argument, NULL, OPT_VOLSOCK},
	{"slot", required_argument, NULL, OPT_SLOT},
	{"verbose", no_argument, NULL, OPT_VERBOSE},
	{"manifest", required_argument, NULL, OPT_MANIFEST},
	{"commit-every", required_argument, NULL, OPT_COMMIT},
	{"hydrate", no_argument, NULL, OPT_HYDRATE},
	{"other-manifest", required_argument, NULL, OPT_OTHER},
	{NULL, 0, NULL, 0},
};

struct args {
	const char *image, *version, *hashes, *manifest, *other, *source, *cache, *gold_sock,
		*vol_sock, *file;
	uint64_t chunk, size, volsize, dirtyblk, capacity, commit;
	int force, repair, json, slot, hydrate;
};

static void usage(void)
{
	fputs("usage:\n"
	      "  goldagent cache init (--manifest F | --image NAME --version V --chunk-size S\n"
	      "                       --size BYTES) --volume-size BYTES [--dirty-block S]\n"
	      "                       [--capacity BYTES] [--force] FILE\n"
	      "  goldagent cache check [--repair] [--manifest F | --hashes F] [--source-file F]\n"
	      "                        [--slot A|B] FILE\n"
	      "  goldagent cache dirty FILE\n"
	      "  goldagent cache assign --slot A|B --manifest F FILE\n"
	      "  goldagent cache activate --slot A|B [--force] FILE\n"
	      "  goldagent status [--json] --cache FILE\n"
	      "  goldagent hydrate --cache FILE [--source-file F] [--manifest F [--other-manifest "
	      "F]\n"
	      "                    | --hashes F]\n"
	      "                    [--slot A|B] [--commit-every BYTES]\n"
	      "  goldagent serve --cache FILE [--gold-socket PATH] [--volume-socket PATH]\n"
	      "                  [--source-file F [--hydrate]] [--manifest F | --hashes F]\n"
	      "                  [--slot A|B]\n"
	      "  goldagent bootdisk probe|prepare|update|check ...  (goldagent bootdisk: its "
	      "usage)\n"
	      "sizes take K, M, G, T suffixes (binary); -v / --verbose logs more\n",
	      stderr);
	exit(2);
}

static uint64_t size_arg(const char *opt, const char *s)
{
	uint64_t v;

	if (parse_size(s, &v) < 0)
		die(2, "--%s: '%s' is not a size (e.g. 4096, 1M, 2G)", opt, s);
	return v;
}

/* Parses options from argv[first..]; at most one positional (FILE). */
static void parse_args(int argc, char **argv, struct args *a)
{
	int c;

	memset(a, 0, sizeof(*a));
	a->slot = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "v", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_IMAGE:
			a->image = optarg;
			break;
		case OPT_VERSION:
			a->version = optarg;
			break;
		case OPT_CHUNK:
			a->chunk = size_arg("chunk-size", optarg);
			break;
		case OPT_SIZE:
			a->size = size_arg("size", optarg);
			break;
		case OPT_VOLSIZE:
			a->volsize = size_arg("volume-size", optarg);
			break;
		case OPT_DIRTYBLK:
			a->dirtyblk = size_arg("dirty-block", optarg);
			break;
		case OPT_CAPACITY:
			a->capacity = size_arg("capacity", optarg);
			break;
		case OPT_FORCE:
			a->force = 1;
			break;
		case OPT_REPAIR:
			a->repair = 1;
			break;
		case OPT_HASHES:
			a->hashes = optarg;
			break;
		case OPT_MANIFEST:
			a->manifest = optarg;
			break;
		case OPT_OTHER:
			a->other = optarg;
			break;
		case OPT_HYDRATE:
			a->hydrate = 1;
			break;
		case OPT_COMMIT:
			a->commit = size_arg("commit-every", optarg);
			break;
		case OPT_SOURCE:
			a->source = optarg;
			break;
		case OPT_CACHE:
			a->cache = optarg;
			break;
		case OPT_JSON:
			a->json = 1;
			break;
		case OPT_GOLDSOCK:
			a->gold_sock = optarg;
			break;
		case OPT_VOLSOCK:
			a->vol_sock = optarg;
			break;
		case OPT_SLOT:
			if (strcmp(optarg, "A") != 0 && strcmp(optarg, "B") != 0)
				die(2, "--slot: A or B, not '%s'", optarg);
			a->slot = optarg[0] - 'A';
			break;
		case 'v':
		case OPT_VERBOSE:
			log_set_level(LOG_DEBUG);
			break;
		default:
			usage();
		}
	}
	if (optind < argc)
		a->file = argv[optind++];
	if (optind < argc)
		die(2, "unexpected argument '%s'", argv[optind]);
}

static const char *state_name(uint32_t s)
{
	return s == CACHE_SLOT_FILLING	  ? "filling"
	       : s == CACHE_SLOT_COMPLETE ? "complete"
					  : "empty";
}

static int cmd_init(struct args *a)
{
	struct cache_params p = {0};
	struct manifest *m = NULL;
	struct hash mh;
	char ver[16];
	int rc = 1;

	if (a->manifest) {
		if (manifest_load_file(a->manifest, &m, &mh) < 0)
			return 1;
		snprintf(ver, sizeof(ver), "%u", m->version);
		if ((a->image && strcmp(a->image, m->name) != 0) ||
		    (a->version && strcmp(a->version, ver) != 0) ||
		    (a->size && a->size != m->size) || (a->chunk && a->chunk != m->chunk_size))
			die(2,
			    "--image/--version/--size/--chunk-size disagree with manifest '%s' "
			    "(%s@%s, %llu bytes, chunks of %u); leave them out",
			    a->manifest, m->name, ver, (unsigned long long)m->size, m->chunk_size);
		a->image = m->name;
		a->version = ver;
		a->size = m->size;
		a->chunk = m->chunk_size;
		p.manifest = &mh;
	}
	if (!a->file || !a->image || !a->version || !a->chunk || !a->size || !a->volsize)
		die(2,
		    "cache init needs --manifest F (or --image, --version, --chunk-size, --size), "
		    "--volume-size and FILE");
	if (a->chunk > UINT32_MAX || a->dirtyblk > UINT32_MAX)
		die(2, "--chunk-size / --dirty-block too large");
	p.image = a->image;
	p.version = a->version;
	p.image_size = a->size;
	p.gold_capacity = a->capacity;
	p.chunk_size = (uint32_t)a->chunk;
	p.dirty_block_size = (uint32_t)a->dirtyblk;
	p.volume_size = a->volsize;
	p.force = a->force;
	if (cache_create(a->file, &p) == 0) {
		printf("cache '%s': image %s@%s, %llu bytes in chunks of %llu, volume %llu bytes\n",
		       a->file, a->image, a->version, (unsigned long long)a->size,
		       (unsigned long long)a->chunk, (unsigned long long)a->volsize);
		rc = 0;
	}
	manifest_free(m);
	return rc;
}

struct verify_ctx {
	int slot; /* the slot the manifest, hashes or source describe */
	struct chunk_hashes *hs;
	struct chunk_source *src;
	uint8_t *buf;
	uint32_t chunk_size;
};

static int verify_chunk(void *arg, int slot, uint64_t idx, const void *data, size_t len)
{
	struct verify_ctx *v = arg;
	int r;

	if (slot != v->slot)
		return 0; /* nothing to check the other slot against */
	if (v->hs)
		return chunk_hashes_verify(v->hs, idx, data, len) == 0 ? 0 : -EBADMSG;
	r = chunk_source_fetch(v->src, idx, idx * v->chunk_size, v->buf, len);
	if (r < 0)
		return r;
	return memcmp(v->buf, data, len) == 0 ? 0 : -EBADMSG;
}

static int gold_slot(const struct args *a, const struct cache *c)
{
	const struct cache_header *h = cache_header(c);

	if (a->slot >= 0)
		return a->slot;
	return h->active_slot == CACHE_NO_SLOT ? 0 : (int)h->active_slot;
}

/* Loads manifest path as the hashes of slot's image: it must describe that
 * image (name, version, size, chunk size) and be the very file recorded in
 * the slot, when one was. */
static int slot_manifest_load(const char *path, const struct cache *c, int slot,
			      struct chunk_hashes *hs)
{
	const struct cache_header *h = cache_header(c);
	const struct cache_slot_info *si = &h->slot[slot];
	struct manifest *m;
	struct hash mh, zero = {{0}};
	char ver[16];
	int bad;

	if (manifest_load_file(path, &m, &mh) < 0)
		return -1;
	snprintf(ver, sizeof(ver), "%u", m->version);
	bad = strcmp(m->name, si->name) != 0 || strcmp(ver, si->version) != 0 ||
	      m->size != si->image_size || m->chunk_size != h->geo.chunk_size ||
	      (!hash_equal(&si->manifest, &zero) && !hash_equal(&si->manifest, &mh));
	if (bad) {
		log_error("manifest '%s' (%s@%s, %llu bytes, chunks of %u) is not the one of "
			  "slot %c (%s@%s, %llu bytes, chunks of %u)",
			  path, m->name, ver, (unsigned long long)m->size, m->chunk_size,
			  'A' + slot, si->name, si->version, (unsigned long long)si->image_size,
			  h->geo.chunk_size);
		manifest_free(m);
		return -1;
	}
	chunk_hashes_from_manifest(m, hs);
	manifest_free(m);
	return 0;
}

/* Loads what chunks are checked against (--manifest or --hashes) and the
 * source file (--source-file). */
static int load_verifiers(struct args *a, const struct cache *c, int slot, struct chunk_hashes *hs,
			  struct chunk_source **src)
{
	if (a->manifest && a->hashes)
		die(2, "--manifest and --hashes: give one");
	if (a->manifest && slot_manifest_load(a->manifest, c, slot, hs) < 0)
		return -1;
	if (a->hashes && chunk_hashes_load(a->hashes, hs) < 0)
		return -1;
	if (a->source && chunk_source_file_new(a->source, src) < 0)
		return -1;
	return 0;
}

/* goldagent cache assign --slot S --manifest F FILE: the slot now follows
 * that image version (its present map cleared; the active slot refused). */
static int cmd_assign(struct args *a)
{
	struct manifest *m;
	struct hash mh;
	struct cache *c;
	char ver[16];
	int r;

	if (!a->file || !a->manifest || a->slot < 0)
		die(2, "cache assign needs --slot A|B, --manifest F and FILE");
	if (manifest_load_file(a->manifest, &m, &mh) < 0)
		return 1;
	if (cache_open(a->file, 0, &c) < 0) {
		manifest_free(m);
		return 1;
	}
	snprintf(ver, sizeof(ver), "%u", m->version);
	if (m->chunk_size != cache_header(c)->geo.chunk_size) {
		log_error("manifest '%s': chunks of %u, the cache's are %u", a->manifest,
			  m->chunk_size, cache_header(c)->geo.chunk_size);
		r = -EINVAL;
	} else {
		r = cache_slot_assign(c, a->slot, m->name, ver, m->size, &mh);
		if (r == -EBUSY)
			log_error("slot %c is the active slot: assign the other one",
				  'A' + a->slot);
		else if (r == -EINVAL)
			log_error("image '%s@%s' (%llu bytes) does not fit a slot of %llu bytes",
				  m->name, ver, (unsigned long long)m->size,
				  (unsigned long long)cache_header(c)->geo.gold_capacity);
	}
	if (r == 0)
		printf("slot %c: %s@%s assigned, empty\n", 'A' + a->slot, m->name, ver);
	manifest_free(m);
	return (cache_close(c) < 0 || r < 0) ? 1 : 0;
}

/* goldagent cache activate --slot S [--force] FILE: serve that slot from the
 * next start on; an incomplete slot only with --force (it needs the
 * appliance for what is missing). */
static int cmd_activate(struct args *a)
{
	struct cache *c;
	int r;

	if (!a->file || a->slot < 0)
		die(2, "cache activate needs --slot A|B and FILE");
	if (cache_open(a->file, 0, &c) < 0)
		return 1;
	if (cache_header(c)->slot[a->slot].state != CACHE_SLOT_COMPLETE && !a->force) {
		log_error("slot %c is not complete: hydrate it first (or --force, and the missing "
			  "chunks are fetched when read)",
			  'A' + a->slot);
		cache_free(c);
		return 1;
	}
	r = cache_slot_set_active(c, a->slot);
	if (r == 0)
		printf("slot %c active\n", 'A' + a->slot);
	return (cache_close(c) < 0 || r < 0) ? 1 : 0;
}

static int cmd_check(struct args *a)
{
	struct cache_check_report rep;
	struct chunk_hashes hs = {0};
	struct chunk_source *src = NULL;
	struct verify_ctx v = {0};
	struct cache *c;
	int r, rc = 1;

	if (!a->file)
		die(2, "cache check needs FILE");
	if (cache_open(a->file, a->repair ? 0 : CACHE_OPEN_RDONLY, &c) < 0)
		return 1;
	if (load_verifiers(a, c, gold_slot(a, c), &hs, &src) < 0)
		goto out;
	v.slot = gold_slot(a, c);
	v.hs = a->hashes || a->manifest ? &hs : NULL;
	v.src = src;
	v.chunk_size = cache_header(c)->geo.chunk_size;
	v.buf = xmalloc(v.chunk_size);
	r = cache_check(c, a->repair, (v.hs || v.src) ? verify_chunk : NULL, &v, &rep);
	if (r == 0) {
		fputs(rep.text, stdout);
		printf("cache '%s': %u problem(s)%s\n", a->file, rep.problems,
		       a->repair && rep.problems ? ", repaired" : "");
		rc = rep.problems && !a->repair ? 1 : 0;
	}
	free(rep.text);
	free(v.buf);
out:
	chunk_hashes_release(&hs);
	chunk_source_free(src);
	if (a->repair)
		rc |= cache_close(c) < 0;
	else
		cache_free(c);
	return rc;
}

/* Dirty ranges of the volume, one "OFFSET LENGTH" line (bytes) per run of
 * dirty blocks: what a sync would upload. */
static int cmd_dirty(struct args *a)
{
	const struct cache_header *h;
	struct cache *c;
	uint64_t nb, run = 0, start = 0;

	if (!a->file)
		die(2, "cache dirty needs FILE");
	if (cache_open(a->file, CACHE_OPEN_RDONLY, &c) < 0)
		return 1;
	h = cache_header(c);
	nb = h->geo.nblocks;
	printf("# dirty block size %u, %llu of %llu blocks dirty%s\n", h->geo.dirty_block_size,
	       (unsigned long long)cache_dirty_count(c), (unsigned long long)nb,
	       (h->flags & CACHE_F_DIRTY_ALL) ? " (all: full compare pending)" : "");
	for (uint64_t b = 0; b <= nb; b++) {
		if (b < nb && cache_block_dirty(c, b)) {
			if (run++ == 0)
				start = b;
			continue;
		}
		if (run) {
			uint64_t off = start * h->geo.dirty_block_size;

			printf("%llu %llu\n", (unsigned long long)off,
			       (unsigned long long)MIN(run * h->geo.dirty_block_size,
						       h->geo.volume_size - off));
		}
		run = 0;
	}
	cache_free(c);
	return 0;
}

static int cmd_status(struct args *a)
{
	const struct cache_header *h;
	struct cache *c;
	json_t *o, *slots;
	int other_bad, copy;
	uint64_t dirty;

	if (!a->cache)
		a->cache = a->file;
	if (!a->cache)
		die(2, "status needs --cache FILE");
	if (cache_open(a->cache, CACHE_OPEN_RDONLY, &c) < 0)
		return 1;
	h = cache_header(c);
	copy = cache_header_copy(c, &other_bad);
	dirty = cache_dirty_count(c);
	slots = json_array();
	for (int s = 0; s < CACHE_NSLOTS; s++) {
		const struct cache_slot_info *si = &h->slot[s];
		uint64_t n = cache_slot_chunks(c, s), p = cache_slot_present_count(c, s);
		char hex[HASH_HEX_LEN + 1];
		struct hash zero = {{0}};

		json_array_append_new(
			slots, json_pack("{s:s, s:s, s:s?, s:s?, s:I, s:I, s:I, s:f, s:s?}", "slot",
					 s ? "B" : "A", "state", state_name(si->state), "image",
					 si->state ? si->name : NULL, "version",
					 si->state ? si->version : NULL, "size",
					 (json_int_t)si->image_size, "chunks", (json_int_t)n,
					 "present", (json_int_t)p, "hydrated_pct",
					 n ? 100.0 * (double)p / (double)n : 0.0, "manifest",
					 hash_equal(&si->manifest, &zero)
						 ? NULL
						 : hash_to_hex(&si->manifest, hex)));
	}
	{
		int act = h->active_slot == CACHE_NO_SLOT ? -1 : (int)h->active_slot;
		int complete = act >= 0 && h->slot[act].state == CACHE_SLOT_COMPLETE;

		o = json_pack("{s:s, s:i, s:I, s:s, s:b, s:I, s:I, s:I, s:I, s:s?, s:o, s:I, s:I, "
			      "s:b, s:b, "
			      "s:i, s:I, s:s}",
			      "cache", a->cache, "format", (int)CACHE_FORMAT_VERSION, "generation",
			      (json_int_t)h->generation, "header_copy", copy ? "B" : "A",
			      "other_header_bad", other_bad, "chunk_size",
			      (json_int_t)h->geo.chunk_size, "dirty_block_size",
			      (json_int_t)h->geo.dirty_block_size, "gold_capacity",
			      (json_int_t)h->geo.gold_capacity, "volume_size",
			      (json_int_t)h->geo.volume_size, "active_slot",
			      act < 0 ? NULL
			      : act   ? "B"
				      : "A",
			      "slots", slots, "dirty_blocks", (json_int_t)dirty, "dirty_bytes",
			      (json_int_t)MIN(dirty * h->geo.dirty_block_size, h->geo.volume_size),
			      "dirty_all", !!(h->flags & CACHE_F_DIRTY_ALL), "volume_open",
			      !!(h->flags & CACHE_F_VOL_OPEN), "unclean_stops",
			      (int)h->unclean_stops, "last_sync", (json_int_t)h->last_sync, "mode",
			      complete ? "offline-ready" : "needs-appliance");
		/* the last sync's figures (null: not recorded) */
		json_object_set_new(o, "last_sync_snapshot",
				    h->last_sync_snapshot ? json_integer(h->last_sync_snapshot)
							  : json_null());
		json_object_set_new(o, "last_sync_bytes",
				    h->last_sync_snapshot
					    ? json_integer((json_int_t)h->last_sync_bytes)
					    : json_null());
		json_object_set_new(o, "last_sync_pause_ms",
				    h->last_sync_snapshot ? json_integer(h->last_sync_pause_ms)
							  : json_null());
		/* the profile's persist flag as the last online start recorded it */
		json_object_set_new(o, "persist", json_boolean(!(h->flags & CACHE_F_VOL_RESET)));
		/* a restore in progress: the volume is half-restored (agent/restore.c) */
		json_object_set_new(o, "restore_order",
				    h->restore_order ? json_integer(h->restore_order)
						     : json_null());
		json_object_set_new(o, "restore_done",
				    h->restore_done ? json_integer(h->restore_done) : json_null());
		json_object_set_new(o, "layout",
				    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "present_map_a",
					      (json_int_t)h->geo.pmap_off[0], "present_map_b",
					      (json_int_t)h->geo.pmap_off[1], "dirty_map",
					      (json_int_t)h->geo.dmap_off, "slot_a",
					      (json_int_t)h->geo.slot_off[0], "slot_b",
					      (json_int_t)h->geo.slot_off[1], "volume",
					      (json_int_t)h->geo.volume_off));
	}
	if (a->json) {
		char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		puts(s);
		free(s);
	} else {
		int act = h->active_slot == CACHE_NO_SLOT ? -1 : (int)h->active_slot;

		printf("cache %s (format %u, generation %llu)\n", a->cache, CACHE_FORMAT_VERSION,
		       (unsigned long long)h->generation);
		for (int s = 0; s < CACHE_NSLOTS; s++) {
			const struct cache_slot_info *si = &h->slot[s];
			uint64_t n = cache_slot_chunks(c, s);

			printf("slot %c%s: %s", 'A' + s, act == s ? " (active)" : "",
			       state_name(si->state));
			if (si->state)
				printf(" %s@%s, %llu/%llu chunks (%.1f%%)", si->name, si->version,
				       (unsigned long long)cache_slot_present_count(c, s),
				       (unsigned long long)n,
				       100.0 * (double)cache_slot_present_count(c, s) / (double)n);
			printf("\n");
		}
		printf("volume: %llu bytes, %llu dirty blocks of %u%s\n",
		       (unsigned long long)h->geo.volume_size, (unsigned long long)dirty,
		       h->geo.dirty_block_size,
		       (h->flags & CACHE_F_DIRTY_ALL) ? " (all: full compare pending)" : "");
		if (h->last_sync_snapshot)
			printf("last sync: snapshot %u at %lld, %llu bytes sent, writes paused "
			       "%u ms\n",
			       h->last_sync_snapshot, (long long)h->last_sync,
			       (unsigned long long)h->last_sync_bytes, h->last_sync_pause_ms);
		else if (h->last_sync)
			printf("last sync: at %lld\n", (long long)h->last_sync);
	}
	json_decref(o);
	cache_free(c);
	return 0;
}

static int cmd_hydrate(struct args *a)
{
	struct chunk_hashes hs = {0}, other = {0};
	struct chunk_source *src = NULL;
	struct hydrate_stats st;
	struct cache *c;
	int r, rc = 1, slot;

	if (!a->cache || (!a->source && !a->other))
		die(2, "hydrate needs --cache FILE and --source-file IMAGE (or --other-manifest)");
	if (a->other && !a->manifest)
		die(2, "--other-manifest needs --manifest (chunks are matched by hash)");
	if (cache_open(a->cache, 0, &c) < 0)
		return 1;
	slot = gold_slot(a, c);
	if (load_verifiers(a, c, slot, &hs, &src) < 0)
		goto out;
	if (a->other && slot_manifest_load(a->other, c, 1 - slot, &other) < 0)
		goto out;
	r = hydrate_slot(c, slot, src, a->hashes || a->manifest ? &hs : NULL,
			 a->other ? &other : NULL, a->commit, &st);
	printf("slot %c: %llu chunks fetched (%llu bytes), %llu copied from slot %c, %llu zero, "
	       "%llu already present, %llu rejected\n",
	       'A' + slot, (unsigned long long)st.fetched, (unsigned long long)st.bytes,
	       (unsigned long long)st.copied, 'A' + (1 - slot), (unsigned long long)st.zero,
	       (unsigned long long)st.skipped, (unsigned long long)st.rejected);
	rc = r < 0;
out:
	chunk_hashes_release(&hs);
	chunk_hashes_release(&other);
	chunk_source_free(src);
	rc |= cache_close(c) < 0;
	return rc;
}

static int cmd_serve(struct args *a)
{
	struct nbd_server_opts o = {0};
	struct chunk_hashes hs = {0};
	struct chunk_source *src = NULL;
	struct nbd_server *srv;
	struct cache *c;
	int rc = 1;

	if (!a->cache || (!a->gold_sock && !a->vol_sock))
		die(2, "serve needs --cache FILE and --gold-socket and/or --volume-socket");
	log_set_timestamps(1);
	if (cache_open(a->cache, 0, &c) < 0)
		return 1;
	if (load_verifiers(a, c, gold_slot(a, c), &hs, &src) < 0)
		goto out;
	o.cache = c;
	o.gold_slot = gold_slot(a, c);
	o.source = src;
	o.hashes = a->hashes || a->manifest ? &hs : NULL;
	o.gold_socket = a->gold_sock;
	o.volume_socket = a->vol_sock;
	if (a->hydrate && !src)
		die(2, "--hydrate needs a source (--source-file)");
	o.hydrate_depth = a->hydrate ? 4 : 0;
	if (o.hashes && o.hashes->n != cache_slot_chunks(c, o.gold_slot)) {
		log_error("hash list '%s' has %llu chunks, the gold image %llu", a->hashes,
			  (unsigned long long)o.hashes->n,
			  (unsigned long long)cache_slot_chunks(c, o.gold_slot));
		goto out;
	}
	if (nbd_server_new(&o, &srv) < 0)
		goto out;
	rc = nbd_server_run(srv) < 0;
	nbd_server_free(srv);
out:
	chunk_hashes_release(&hs);
	chunk_source_free(src);
	if (cache_close(c) < 0)
		rc = 1;
	else
		log_info("cache '%s' closed cleanly", a->cache);
	return rc;
}

int main(int argc, char **argv)
{
	const char *cmd;

	log_init("goldagent", LOG_INFO);
	if (argc < 2)
		usage();
	cmd = argv[1];
	if (attach_wants(argc, argv)) /* attach, sync, hydrate/serve --appliance */
		return attach_main(argc, argv);
	if (strcmp(cmd, "bootdisk") == 0) /* the machine's own disk: agent/bootdisk.c */
		return bootdisk_main(argc, argv);
	if (strcmp(cmd, "cache") == 0) {
		struct args a;

		if (argc < 3)
			usage();
		parse_args(argc - 2, argv + 2, &a);
		if (strcmp(argv[2], "init") == 0)
			return cmd_init(&a);
		if (strcmp(argv[2], "check") == 0)
			return cmd_check(&a);
		if (strcmp(argv[2], "dirty") == 0)
			return cmd_dirty(&a);
		if (strcmp(argv[2], "assign") == 0)
			return cmd_assign(&a);
		if (strcmp(argv[2], "activate") == 0)
			return cmd_activate(&a);
		usage();
	}
	if (strcmp(cmd, "status") == 0 || strcmp(cmd, "hydrate") == 0 ||
	    strcmp(cmd, "serve") == 0) {
		struct args a;

		parse_args(argc - 1, argv + 1, &a);
		if (cmd[0] == 's' && cmd[1] == 't')
			return cmd_status(&a);
		if (cmd[0] == 'h')
			return cmd_hydrate(&a);
		return cmd_serve(&a);
	}
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0)
		usage();
	die(2, "unknown command '%s' (try 'goldagent --help')", cmd);
}
