/* goldctl image ... and goldctl store ...: argument parsing and output only;
 * the operations are image.h and gc.h calls (the daemon and the tests call
 * the same functions). Text output is for people; --json output is one
 * document per command with stable keys (docs/cli.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "appliance/ctl.h"
#include "appliance/gc.h"
#include "appliance/image.h"
#include "lib/util.h"

static int bad_ref(const struct ctl *c, const char *ref)
{
	fprintf(stderr,
		"goldctl: invalid image reference '%s': want NAME or NAME@VERSION, NAME being 1-64 "
		"of A-Z a-z 0-9 . _ - (no slashes or spaces), VERSION a number from 1\n",
		ref);
	(void)c;
	return CTL_USAGE;
}

static int not_found(const char *name, uint32_t version)
{
	if (version)
		fprintf(stderr,
			"goldctl: no version %u of image '%s' (goldctl image versions %s)\n",
			version, name, name);
	else
		fprintf(stderr,
			"goldctl: no image '%s', or it has no current version (goldctl image "
			"list)\n",
			name);
	return CTL_NOT_FOUND;
}

static int take(struct ctl *c, int *argc, char **argv, const char *name, int has_value,
		const char **value)
{
	int n = ctl_take_opt(*argc, argv, name, has_value, value);

	if (n < 0)
		return ctl_usage(c);
	*argc = n;
	return 0;
}

static int cmd_import(struct ctl *c, int argc, char **argv)
{
	struct import_opts o = {.progress = ctl_progress, .progress_arg = c};
	struct import_result res;
	const char *kind = NULL, *cs = NULL, *promote = NULL;
	struct store *s;
	uint64_t csv;
	int r, fd;

	if (take(c, &argc, argv, "--kind", 1, &kind) ||
	    take(c, &argc, argv, "--chunk-size", 1, &cs) ||
	    take(c, &argc, argv, "--format", 1, &o.format) ||
	    take(c, &argc, argv, "--promote", 0, &promote))
		return CTL_USAGE;
	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 2)
		return ctl_usage(c);
	if (!name_is_valid(argv[0]))
		return bad_ref(c, argv[0]);
	if (kind && manifest_kind_parse(kind, &o.kind) < 0) {
		fprintf(stderr, "goldctl: --kind must be 'fs' or 'disk'\n");
		return CTL_USAGE;
	}
	if (cs) {
		if (parse_size(cs, &csv) < 0 || csv > UINT32_MAX ||
		    manifest_geometry_ok(0, (uint32_t)csv) < 0) {
			fprintf(stderr,
				"goldctl: --chunk-size must be a power of two from 4K to 64M\n");
			return CTL_USAGE;
		}
		o.chunk_size = (uint32_t)csv;
	}
	o.promote = promote != NULL;
	/* the input first: a bad file must not even create an empty store */
	fd = open(argv[1], O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		fprintf(stderr, "goldctl: cannot open '%s': %s\n", argv[1], strerror(errno));
		return CTL_FAILED;
	}
	close(fd);
	if ((r = ctl_open_store(c, 1, &s)) != 0)
		return r;
	r = image_import(s, argv[0], argv[1], &o, &res);
	ctl_progress_end(c);
	store_free(s);
	if (r < 0)
		return r == -ENOENT ? CTL_NOT_FOUND : CTL_FAILED;
	if (c->json)
		ctl_json_print(json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "name", argv[0],
					 "version", (json_int_t)res.version, "size",
					 (json_int_t)res.size, "chunks", (json_int_t)res.chunks,
					 "zero_chunks", (json_int_t)res.zero_chunks, "new_chunks",
					 (json_int_t)res.new_chunks, "new_bytes",
					 (json_int_t)res.new_bytes));
	else
		printf("%s@%u\n", argv[0], res.version);
	return CTL_OK;
}

static int cmd_export(struct ctl *c, int argc, char **argv)
{
	struct export_opts o = {.progress = ctl_progress, .progress_arg = c};
	const char *force = NULL, *nosync = NULL;
	char name[65];
	uint32_t version;
	struct manifest *m;
	struct stat st;
	struct store *s;
	int r;

	if (take(c, &argc, argv, "--force", 0, &force) ||
	    take(c, &argc, argv, "--no-sync", 0, &nosync))
		return CTL_USAGE;
	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 2)
		return ctl_usage(c);
	if (image_ref_parse(argv[0], name, &version) < 0)
		return bad_ref(c, argv[0]);
	if (!force && stat(argv[1], &st) == 0 && !S_ISBLK(st.st_mode)) {
		fprintf(stderr, "goldctl: '%s' exists (use --force to replace it)\n", argv[1]);
		return CTL_FAILED;
	}
	o.no_sync = nosync != NULL;
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	r = image_manifest_load(s, name, version, &m);
	if (r < 0) {
		store_free(s);
		return r == -ENOENT ? not_found(name, version) : ctl_exit_code(r);
	}
	version = m->version;
	manifest_free(m);
	r = image_export_to_file(s, name, version, argv[1], &o);
	ctl_progress_end(c);
	store_free(s);
	/* the version exists: ENOENT now is about OUT (its folder), logged as such */
	if (r < 0)
		return r == -EBADMSG ? CTL_DAMAGED : CTL_FAILED;
	if (c->json)
		ctl_json_print(json_pack("{s:s, s:I, s:s}", "name", name, "version",
					 (json_int_t)version, "path", argv[1]));
	return CTL_OK;
}

static int cmd_list(struct ctl *c, int argc, char **argv)
{
	struct image_info *v = NULL;
	struct store *s;
	size_t n = 0;
	char sz[32];
	json_t *arr;
	int r;

	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 0)
		return ctl_usage(c);
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	r = image_list(s, &v, &n);
	store_free(s);
	if (r < 0)
		return CTL_FAILED;
	if (c->json) {
		arr = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:I, s:I}", "name",
							     v[i].name, "current",
							     (json_int_t)v[i].current, "versions",
							     (json_int_t)v[i].nversions, "latest",
							     (json_int_t)v[i].latest, "size",
							     (json_int_t)v[i].size));
		ctl_json_print(arr);
	} else {
		printf("%-24s %8s %8s %8s %10s\n", "NAME", "CURRENT", "LATEST", "VERSIONS", "SIZE");
		for (size_t i = 0; i < n; i++) {
			char cur[16];

			snprintf(cur, sizeof(cur), "%u", v[i].current);
			printf("%-24s %8s %8u %8u %10s\n", v[i].name, v[i].current ? cur : "-",
			       v[i].latest, v[i].nversions, fmt_size(sz, sizeof(sz), v[i].size));
		}
	}
	free(v);
	return CTL_OK;
}

static int cmd_versions(struct ctl *c, int argc, char **argv)
{
	struct version_info *v = NULL;
	struct store *s;
	size_t n = 0;
	char sz[32], when[32];
	json_t *arr;
	int r;

	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 1)
		return ctl_usage(c);
	if (!name_is_valid(argv[0]))
		return bad_ref(c, argv[0]);
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	r = image_versions(s, argv[0], &v, &n);
	store_free(s);
	if (r == -ENOENT)
		return not_found(argv[0], 0);
	if (r < 0)
		return ctl_exit_code(r);
	if (c->json) {
		arr = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(
				arr, json_pack("{s:I, s:b, s:I, s:s, s:I, s:I, s:I, s:I, s:I}",
					       "version", (json_int_t)v[i].version, "current",
					       v[i].current, "created", (json_int_t)v[i].created,
					       "kind", manifest_kind_str(v[i].kind), "size",
					       (json_int_t)v[i].size, "chunk_size",
					       (json_int_t)v[i].chunk_size, "chunks",
					       (json_int_t)v[i].nchunks, "zero_chunks",
					       (json_int_t)v[i].zero_chunks, "parent",
					       (json_int_t)v[i].parent));
		ctl_json_print(arr);
	} else {
		printf("%-8s %-3s %-20s %-4s %10s %8s %8s %6s\n", "VERSION", "CUR", "CREATED (UTC)",
		       "KIND", "SIZE", "CHUNKS", "ZERO", "PARENT");
		for (size_t i = 0; i < n; i++) {
			time_t t = (time_t)v[i].created;
			struct tm tm;

			gmtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
			printf("%-8u %-3s %-20s %-4s %10s %8llu %8llu %6u\n", v[i].version,
			       v[i].current ? "*" : "", when, manifest_kind_str(v[i].kind),
			       fmt_size(sz, sizeof(sz), v[i].size),
			       (unsigned long long)v[i].nchunks,
			       (unsigned long long)v[i].zero_chunks, v[i].parent);
		}
	}
	free(v);
	return CTL_OK;
}

static int cmd_manifest(struct ctl *c, int argc, char **argv)
{
	char name[65], *text = NULL;
	uint32_t version;
	struct manifest *m;
	struct store *s;
	size_t len;
	int r;

	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 1)
		return ctl_usage(c);
	if (image_ref_parse(argv[0], name, &version) < 0)
		return bad_ref(c, argv[0]);
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	r = image_manifest_load(s, name, version, &m);
	store_free(s);
	if (r == -ENOENT)
		return not_found(name, version);
	if (r < 0)
		return ctl_exit_code(r);
	r = manifest_encode(m, &text, &len);
	if (r == 0 && c->json) {
		json_t *chunks = json_array();
		char hex[HASH_HEX_LEN + 1];

		for (uint64_t i = 0; i < m->nchunks; i++)
			json_array_append_new(
				chunks, m->chunks[i].zero
						? json_null()
						: json_string(hash_to_hex(&m->chunks[i].id, hex)));
		ctl_json_print(json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:o}", "name",
					 m->name, "version", (json_int_t)m->version, "created",
					 (json_int_t)m->created, "kind", manifest_kind_str(m->kind),
					 "size", (json_int_t)m->size, "chunk_size",
					 (json_int_t)m->chunk_size, "parent", (json_int_t)m->parent,
					 "chunks", chunks));
	} else if (r == 0) {
		fwrite(text, 1, len, stdout);
	}
	free(text);
	manifest_free(m);
	return r < 0 ? CTL_FAILED : CTL_OK;
}

static int cmd_verify(struct ctl *c, int argc, char **argv)
{
	struct verify_result res;
	char name[65], hex[HASH_HEX_LEN + 1];
	uint32_t version = 0;
	struct store *s;
	int r, sound;

	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc > 1)
		return ctl_usage(c);
	if (argc == 1 && image_ref_parse(argv[0], name, &version) < 0)
		return bad_ref(c, argv[0]);
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	r = image_verify(s, argc ? name : NULL, version, &res);
	store_free(s);
	if (r == -ENOENT)
		return not_found(name, version);
	if (r < 0) {
		fprintf(stderr, "goldctl: verify could not run: %s\n", strerror(-r));
		return CTL_FAILED;
	}
	sound = res.nbad == 0 && res.nbad_manifests == 0;
	if (c->json) {
		json_t *bad = json_array(), *bm = json_array();

		for (size_t i = 0; i < res.nbad; i++)
			json_array_append_new(
				bad,
				json_pack("{s:s, s:s, s:s}", "chunk",
					  hash_to_hex(&res.bad[i].id, hex), "problem",
					  res.bad[i].err == -ENOENT ? "missing" : "damaged",
					  "used_by", res.bad[i].users ? res.bad[i].users : ""));
		for (size_t i = 0; i < res.nbad_manifests; i++)
			json_array_append_new(bm, json_string(res.bad_manifests[i]));
		ctl_json_print(json_pack("{s:b, s:I, s:I, s:o, s:o}", "sound", sound, "manifests",
					 (json_int_t)res.manifests, "chunks_checked",
					 (json_int_t)res.chunks_checked, "bad_chunks", bad,
					 "bad_manifests", bm));
	} else {
		for (size_t i = 0; i < res.nbad_manifests; i++)
			printf("damaged manifest: %s\n", res.bad_manifests[i]);
		for (size_t i = 0; i < res.nbad; i++)
			printf("%s chunk %s used by %s\n",
			       res.bad[i].err == -ENOENT ? "missing" : "damaged",
			       hash_to_hex(&res.bad[i].id, hex),
			       res.bad[i].users ? res.bad[i].users : "(none)");
		printf("%s: %llu manifests, %llu chunks checked, %zu bad chunks, %zu bad "
		       "manifests\n",
		       sound ? "sound" : "DAMAGED", (unsigned long long)res.manifests,
		       (unsigned long long)res.chunks_checked, res.nbad, res.nbad_manifests);
	}
	image_verify_result_release(&res);
	return sound ? CTL_OK : CTL_DAMAGED;
}

static int ref_with_version(struct ctl *c, const char *ref, char name[65], uint32_t *version)
{
	if (image_ref_parse(ref, name, version) < 0)
		return bad_ref(c, ref);
	if (*version == 0) {
		fprintf(stderr, "goldctl: name the version: %s@VERSION\n", ref);
		return CTL_USAGE;
	}
	return 0;
}

static int cmd_promote(struct ctl *c, int argc, char **argv)
{
	char name[65];
	uint32_t version;
	struct store *s;
	int r;

	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 1)
		return ctl_usage(c);
	if ((r = ref_with_version(c, argv[0], name, &version)) != 0)
		return r;
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	r = image_promote(s, name, version);
	store_free(s);
	if (r == -ENOENT)
		return not_found(name, version);
	if (r < 0)
		return ctl_exit_code(r);
	if (c->json)
		ctl_json_print(
			json_pack("{s:s, s:I}", "name", name, "current", (json_int_t)version));
	return CTL_OK;
}

static int cmd_rm(struct ctl *c, int argc, char **argv)
{
	const char *force = NULL;
	char name[65];
	uint32_t version;
	struct store *s;
	int r;

	if (take(c, &argc, argv, "--force", 0, &force))
		return CTL_USAGE;
	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 1)
		return ctl_usage(c);
	if ((r = ref_with_version(c, argv[0], name, &version)) != 0)
		return r;
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	r = image_rm(s, name, version, force != NULL);
	store_free(s);
	if (r == -ENOENT)
		return not_found(name, version);
	if (r < 0)
		return ctl_exit_code(r);
	if (c->json)
		ctl_json_print(
			json_pack("{s:s, s:I}", "name", name, "removed", (json_int_t)version));
	return CTL_OK;
}

static int cmd_store_init(struct ctl *c, int argc, char **argv)
{
	struct store *s;
	int r;

	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 0)
		return ctl_usage(c);
	if ((r = ctl_open_store(c, 1, &s)) != 0)
		return r;
	store_free(s);
	if (c->json)
		ctl_json_print(json_pack("{s:s}", "store", c->store_dir));
	return CTL_OK;
}

static int cmd_gc(struct ctl *c, int argc, char **argv)
{
	struct gc_result res;
	struct store *s;
	char sz[32];
	int r;

	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 0)
		return ctl_usage(c);
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	r = gc_collect(s, &res);
	store_free(s);
	if (r < 0)
		return r == -EBADMSG ? CTL_DAMAGED : CTL_FAILED;
	if (c->json)
		ctl_json_print(json_pack(
			"{s:I, s:I, s:I, s:I, s:I}", "manifests", (json_int_t)res.manifests,
			"chunks_kept", (json_int_t)res.chunks_kept, "chunks_removed",
			(json_int_t)res.chunks_removed, "bytes_removed",
			(json_int_t)res.bytes_removed, "tmp_removed", (json_int_t)res.tmp_removed));
	else
		printf("removed %llu chunks (%s), kept %llu chunks of %llu manifests, removed %llu "
		       "temp files\n",
		       (unsigned long long)res.chunks_removed,
		       fmt_size(sz, sizeof(sz), res.bytes_removed),
		       (unsigned long long)res.chunks_kept, (unsigned long long)res.manifests,
		       (unsigned long long)res.tmp_removed);
	return CTL_OK;
}

static int cmd_stats(struct ctl *c, int argc, char **argv)
{
	struct store_stats st;
	struct store *s;
	char a[32], b[32], z[32], u[32];
	int r;

	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 0)
		return ctl_usage(c);
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	r = gc_stats(s, &st);
	store_free(s);
	if (r < 0)
		return CTL_FAILED;
	if (c->json)
		ctl_json_print(json_pack(
			"{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "images",
			(json_int_t)st.images, "versions", (json_int_t)st.versions, "snapshots",
			(json_int_t)st.snapshots, "logical_bytes", (json_int_t)st.logical_bytes,
			"zero_bytes", (json_int_t)st.zero_bytes, "unique_bytes",
			(json_int_t)st.unique_bytes, "stored_bytes", (json_int_t)st.stored_bytes,
			"chunks", (json_int_t)st.chunks, "referenced_chunks",
			(json_int_t)st.referenced_chunks, "unreferenced_chunks",
			(json_int_t)st.unreferenced_chunks, "damaged_manifests",
			(json_int_t)st.damaged_manifests, "dedup_ratio", st.dedup_ratio));
	else
		printf("images:        %llu (%llu versions, %llu snapshots)\n"
		       "logical bytes: %s (%llu), of which zero: %s\n"
		       "unique bytes:  %s (distinct non-zero chunks, before compression)\n"
		       "stored bytes:  %s (%llu) in %llu chunks (%llu unreferenced: gc frees "
		       "them)\n"
		       "dedup ratio:   %.2f (logical / stored)\n",
		       (unsigned long long)st.images, (unsigned long long)st.versions,
		       (unsigned long long)st.snapshots, fmt_size(a, sizeof(a), st.logical_bytes),
		       (unsigned long long)st.logical_bytes, fmt_size(z, sizeof(z), st.zero_bytes),
		       fmt_size(u, sizeof(u), st.unique_bytes),
		       fmt_size(b, sizeof(b), st.stored_bytes), (unsigned long long)st.stored_bytes,
		       (unsigned long long)st.chunks, (unsigned long long)st.unreferenced_chunks,
		       st.dedup_ratio);
	return st.damaged_manifests ? CTL_DAMAGED : CTL_OK;
}

const struct ctl_command ctl_image_commands[] = {
	{"image", "import",
	 "[--kind fs|disk] [--chunk-size SIZE] [--format FMT] [--promote] NAME FILE",
	 "import a raw image (qcow2, vmdk, ... through qemu-img) as a new version; prints "
	 "NAME@VERSION",
	 cmd_import},
	{"image", "list", "", "list images: current and latest version, size", cmd_list},
	{"image", "versions", "NAME", "list the versions of an image", cmd_versions},
	{"image", "export", "[--force] [--no-sync] NAME[@VERSION] OUT",
	 "write a version (default: current) to OUT as a sparse raw image", cmd_export},
	{"image", "manifest", "NAME[@VERSION]", "print a version's manifest", cmd_manifest},
	{"image", "verify", "[NAME[@VERSION]]",
	 "check every chunk (of one image/version, or of the whole store); exit 4 when damaged",
	 cmd_verify},
	{"image", "promote", "NAME@VERSION", "make a version the current one (also rolls back)",
	 cmd_promote},
	{"image", "rm", "[--force] NAME@VERSION",
	 "remove a version (the current one only with --force); gc frees its chunks", cmd_rm},
	{"store", "init", "", "create an empty store", cmd_store_init},
	{"store", "gc", "", "remove chunks no version or snapshot uses, and stale temp files",
	 cmd_gc},
	{"store", "stats", "", "logical and stored bytes, dedup ratio, chunk count", cmd_stats},
	{NULL, NULL, NULL, NULL, NULL},
};
