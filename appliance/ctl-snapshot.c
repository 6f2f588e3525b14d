/* goldctl machine snapshots|export: machine snapshots straight from the store
 * (like goldctl image ...; no daemon needed). goldctl machine restore|reset:
 * orders for a machine's next attach, recorded by goldcached in its registry
 * (through the API, like assign: ctl_machine_post). The table joins goldctl.c's
 * dispatch next to ctl-machine.c's API commands: a (group, verb) pair is
 * looked up across all tables, so "machine list" still reaches ctl-machine.c.
 * Commands only parse argv and print; the work is in appliance/snapshot.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "appliance/ctl.h"
#include "appliance/snapshot.h"
#include "lib/util.h"

static int bad_ref(struct ctl *c, const char *ref)
{
	fprintf(stderr,
		"goldctl: invalid machine reference '%s': use NAME or NAME@SNAPSHOT (names: 1-64 "
		"of A-Z a-z 0-9 . _ -)\n",
		ref);
	return ctl_usage(c);
}

static int not_found(const char *name, uint32_t id)
{
	if (id)
		fprintf(stderr,
			"goldctl: machine '%s' has no snapshot %u (goldctl machine snapshots %s)\n",
			name, id, name);
	else
		fprintf(stderr, "goldctl: machine '%s' has no snapshot in this store\n", name);
	return CTL_NOT_FOUND;
}

static int cmd_snapshots(struct ctl *c, int argc, char **argv)
{
	struct snapshot_info *v = NULL;
	struct store *s;
	size_t n = 0;
	char sz[32], when[32];
	int r;

	if ((argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 1)
		return ctl_usage(c);
	if (!name_is_valid(argv[0]))
		return bad_ref(c, argv[0]);
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	r = snapshot_list(s, argv[0], &v, &n);
	store_free(s);
	if (r == -ENOENT)
		return not_found(argv[0], 0);
	if (r < 0)
		return ctl_exit_code(r);
	if (c->json) {
		json_t *arr = json_array();

		for (size_t i = 0; i < n; i++) {
			json_t *o = json_pack(
				"{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "snapshot",
				(json_int_t)v[i].id, "created", (json_int_t)v[i].created, "size",
				(json_int_t)v[i].size, "chunk_size", (json_int_t)v[i].chunk_size,
				"chunks", (json_int_t)v[i].nchunks, "zero_chunks",
				(json_int_t)v[i].zero_chunks, "changed_chunks",
				(json_int_t)v[i].changed, "parent", (json_int_t)v[i].parent);

			json_object_set_new(
				o, "gold",
				v[i].gold_version
					? json_sprintf("%s@%u", v[i].gold_image, v[i].gold_version)
					: json_null());
			json_array_append_new(arr, o);
		}
		ctl_json_print(arr);
	} else {
		printf("%-8s %-20s %10s %8s %8s %6s  %s\n", "SNAPSHOT", "CREATED (UTC)", "SIZE",
		       "CHUNKS", "CHANGED", "PARENT", "GOLD");
		for (size_t i = 0; i < n; i++) {
			time_t t = (time_t)v[i].created;
			struct tm tm;
			char par[16], gold[80];

			gmtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
			snprintf(par, sizeof(par), "%u", v[i].parent);
			if (v[i].gold_version)
				snprintf(gold, sizeof(gold), "%s@%u", v[i].gold_image,
					 v[i].gold_version);
			else
				snprintf(gold, sizeof(gold), "-");
			printf("%-8u %-20s %10s %8llu %8llu %6s  %s\n", v[i].id, when,
			       fmt_size(sz, sizeof(sz), v[i].size),
			       (unsigned long long)v[i].nchunks, (unsigned long long)v[i].changed,
			       v[i].parent ? par : "-", gold);
		}
	}
	free(v);
	return CTL_OK;
}

static int cmd_export(struct ctl *c, int argc, char **argv)
{
	struct export_opts o = {.progress = ctl_progress, .progress_arg = c};
	const char *force = NULL, *nosync = NULL;
	char name[65];
	uint32_t id;
	struct stat st;
	struct store *s;
	int r;

	if ((argc = ctl_take_opt(argc, argv, "--force", 0, &force)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--no-sync", 0, &nosync)) < 0 ||
	    (argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 2)
		return ctl_usage(c);
	if (image_ref_parse(argv[0], name, &id) < 0)
		return bad_ref(c, argv[0]);
	if (!force && stat(argv[1], &st) == 0 && !S_ISBLK(st.st_mode)) {
		fprintf(stderr, "goldctl: '%s' exists (use --force to replace it)\n", argv[1]);
		return CTL_FAILED;
	}
	o.no_sync = nosync != NULL;
	if ((r = ctl_open_store(c, 0, &s)) != 0)
		return r;
	if (id == 0 && (r = snapshot_latest(s, name, &id)) < 0) {
		store_free(s);
		return r == -ENOENT ? not_found(name, 0) : ctl_exit_code(r);
	}
	r = snapshot_export_to_file(s, name, id, argv[1], &o);
	ctl_progress_end(c);
	store_free(s);
	if (r == -ENOENT)
		return not_found(name, id);
	if (r < 0)
		return ctl_exit_code(r);
	if (c->json)
		ctl_json_print(json_pack("{s:s, s:I, s:s}", "machine", name, "snapshot",
					 (json_int_t)id, "path", argv[1]));
	return CTL_OK;
}

static int cmd_restore(struct ctl *c, int argc, char **argv)
{
	const char *from = NULL;
	char other[65];
	uint32_t id;

	if ((argc = ctl_take_opt(argc, argv, "--from", 1, &from)) < 0)
		return CTL_USAGE;
	if (!from)
		return ctl_usage(c);
	if (image_ref_parse(from, other, &id) < 0)
		return bad_ref(c, from);
	return ctl_machine_post(c, argc, argv, "/restore",
				json_pack("{s:s,s:o}", "from", other, "snapshot",
					  id ? json_integer(id) : json_null()));
}

static int cmd_reset(struct ctl *c, int argc, char **argv)
{
	const char *to = NULL;
	uint32_t id = 0;

	if ((argc = ctl_take_opt(argc, argv, "--to", 1, &to)) < 0)
		return CTL_USAGE;
	if (to && (parse_u32(to, &id) < 0 || id == 0)) {
		fprintf(stderr, "goldctl: --to '%s' is not a snapshot id\n", to);
		return ctl_usage(c);
	}
	return ctl_machine_post(
		c, argc, argv, "/reset",
		json_pack("{s:o}", "snapshot", id ? json_integer(id) : json_null()));
}

#define CONN_ARGS "[--url URL] [--token-file FILE]"

const struct ctl_command ctl_snapshot_commands[] = {
	{"machine", "snapshots", "NAME",
	 "a machine's snapshots (id, created, size, changed chunks, parent)", cmd_snapshots},
	{"machine", "export", "[--force] [--no-sync] NAME[@SNAPSHOT] OUT",
	 "write a snapshot (default: newest) of the machine volume to OUT as a sparse raw image",
	 cmd_export},
	{"machine", "restore", "NAME|MAC --from OTHER[@SNAPSHOT] " CONN_ARGS,
	 "NAME's next attach hydrates OTHER's snapshot (default: its newest) as its volume",
	 cmd_restore},
	{"machine", "reset", "NAME|MAC [--to SNAPSHOT] " CONN_ARGS,
	 "NAME's next attach starts a fresh volume (or hydrates its own SNAPSHOT)", cmd_reset},
	{NULL, NULL, NULL, NULL, NULL},
};
