/* goldctl: the admin command line. This file holds main, the common options
 * and the dispatch over the command tables of the ctl-*.c files; commands
 * parse their arguments, call the library (image.h, gc.h, ...) and print.
 *
 * Common options, accepted anywhere before a "--":
 *     --store DIR   the store (else $GOLDCACHE_STORE, else /var/lib/goldcache/store,
 *                   goldcached's default)
 *     --json        machine-readable output: one JSON document on stdout
 *     -q, --quiet   no progress bar;  -v, --verbose  debug logs;  -h, --help
 * Exit codes: see ctl.h and docs/cli.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appliance/ctl.h"
#include "lib/log.h"
#include "lib/util.h"

static const struct ctl_command *const tables[] = {ctl_image_commands, ctl_machine_commands,
						   ctl_snapshot_commands, ctl_vm_commands};

static void help(FILE *f)
{
	fprintf(f, "usage: goldctl [--store DIR] [--json] [-q] [-v] GROUP COMMAND [ARGS]\n\n");
	for (size_t t = 0; t < ARRAY_SIZE(tables); t++)
		for (const struct ctl_command *c = tables[t]; c->group; c++)
			fprintf(f, "  %s %s %s\n      %s\n", c->group, c->verb, c->args, c->help);
	fprintf(f,
		"\nstore: --store DIR, else $GOLDCACHE_STORE, else %s\n"
		"exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 damaged data found\n",
		STORE_DEFAULT_DIR);
}

int ctl_usage(const struct ctl *c)
{
	if (c->cmd)
		fprintf(stderr, "goldctl: usage: goldctl %s %s %s\n", c->cmd->group, c->cmd->verb,
			c->cmd->args);
	else
		help(stderr);
	return CTL_USAGE;
}

int ctl_exit_code(int err)
{
	switch (err) {
	case 0:
		return CTL_OK;
	case -ENOENT:
		return CTL_NOT_FOUND;
	case -EBADMSG:
		return CTL_DAMAGED;
	default:
		return CTL_FAILED;
	}
}

int ctl_open_store(struct ctl *c, int create, struct store **out)
{
	int r = store_open(c->store_dir, create, out);

	if (r == -ENOENT) {
		fprintf(stderr,
			"goldctl: no store at '%s' (import an image to create one, or name it with "
			"--store DIR or GOLDCACHE_STORE)\n",
			c->store_dir);
		return CTL_NOT_FOUND;
	}
	return r < 0 ? CTL_FAILED : 0;
}

void ctl_json_print(json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(v);
}

int ctl_take_opt(int argc, char **argv, const char *name, int has_value, const char **value)
{
	size_t nl = strlen(name);

	for (int i = 0; i < argc; i++) {
		int drop = 1;

		if (strcmp(argv[i], "--") == 0)
			break;
		if (strncmp(argv[i], name, nl) != 0)
			continue;
		if (argv[i][nl] == '\0') {
			if (has_value) {
				if (i + 1 >= argc) {
					fprintf(stderr, "goldctl: option %s needs a value\n", name);
					return -1;
				}
				*value = argv[i + 1];
				drop = 2;
			} else {
				*value = "1";
			}
		} else if (has_value && argv[i][nl] == '=') {
			*value = argv[i] + nl + 1;
		} else {
			continue;
		}
		memmove(&argv[i], &argv[i + drop], (size_t)(argc - i - drop + 1) * sizeof(char *));
		argc -= drop;
		i--;
	}
	return argc;
}

int ctl_no_more_opts(const struct ctl *c, int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof(char *));
			return argc - 1;
		}
		if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "goldctl: unknown option '%s'\n", argv[i]);
			ctl_usage(c);
			return -1;
		}
	}
	return argc;
}

static uint64_t progress_last_ms;
static int progress_drawn;

void ctl_progress(uint64_t done, uint64_t total, void *arg)
{
	struct ctl *c = arg;
	uint64_t now = now_ms();
	char a[32], b[32];
	int pct;

	if (!c->progress || (now - progress_last_ms < 100 && done < total))
		return;
	progress_last_ms = now;
	pct = total ? (int)(done * 100 / total) : 100;
	fprintf(stderr, "\r[%-40.*s] %3d%% %s / %s", pct * 40 / 100,
		"########################################", pct, fmt_size(a, sizeof(a), done),
		fmt_size(b, sizeof(b), total));
	progress_drawn = 1;
}

void ctl_progress_end(struct ctl *c)
{
	if (c->progress && progress_drawn)
		fputs("\r\033[K", stderr);
	progress_drawn = 0;
}

int main(int argc, char **argv)
{
	struct ctl c = {0};
	const char *v = NULL;
	int quiet = 0, verbose = 0, n;
	char **args = argv + 1;

	log_init("goldctl", LOG_INFO);
	c.store_dir = getenv("GOLDCACHE_STORE");
	if (!c.store_dir || !*c.store_dir)
		c.store_dir = STORE_DEFAULT_DIR;
	n = argc - 1;
	if ((n = ctl_take_opt(n, args, "--store", 1, &c.store_dir)) < 0)
		return CTL_USAGE;
	v = NULL;
	if ((n = ctl_take_opt(n, args, "--json", 0, &v)) < 0)
		return CTL_USAGE;
	c.json = v != NULL;
	v = NULL;
	n = ctl_take_opt(n, args, "--quiet", 0, &v);
	n = ctl_take_opt(n, args, "-q", 0, &v);
	quiet = v != NULL;
	v = NULL;
	n = ctl_take_opt(n, args, "--verbose", 0, &v);
	n = ctl_take_opt(n, args, "-v", 0, &v);
	verbose = v != NULL;
	v = NULL;
	n = ctl_take_opt(n, args, "--help", 0, &v);
	n = ctl_take_opt(n, args, "-h", 0, &v);
	if (v || (n >= 1 && strcmp(args[0], "help") == 0)) {
		help(stdout);
		return CTL_OK;
	}
	if (!*c.store_dir) {
		fprintf(stderr, "goldctl: --store needs a directory\n");
		return CTL_USAGE;
	}
	if (verbose)
		log_set_level(LOG_DEBUG);
	c.progress = !quiet && isatty(STDERR_FILENO);
	if (n < 2) {
		help(stderr);
		return CTL_USAGE;
	}
	for (size_t t = 0; t < ARRAY_SIZE(tables); t++) {
		for (const struct ctl_command *cmd = tables[t]; cmd->group; cmd++) {
			if (strcmp(cmd->group, args[0]) != 0 || strcmp(cmd->verb, args[1]) != 0)
				continue;
			c.cmd = cmd;
			return cmd->run(&c, n - 2, args + 2);
		}
	}
	fprintf(stderr, "goldctl: unknown command '%s %s' (goldctl --help lists them)\n", args[0],
		args[1]);
	return CTL_USAGE;
}
