/* goldctl's command table and the helpers its command files share. Each
 * command file (ctl-image.c, later ctl-machine.c ...) exports a table of
 * struct ctl_command ended by an entry with group == NULL; goldctl.c lists the
 * tables. Commands only parse argv and print; the work is in library calls. */
#ifndef GC_APPLIANCE_CTL_H
#define GC_APPLIANCE_CTL_H

#include <jansson.h>

#include "appliance/store.h"

/* Exit codes (docs/cli.md). */
enum {
	CTL_OK = 0,
	CTL_FAILED = 1, /* the operation failed (I/O, bad input file, ...) */
	CTL_USAGE = 2, /* bad arguments: unknown command or option, invalid name */
	CTL_NOT_FOUND = 3, /* unknown image, version or store */
	CTL_DAMAGED = 4, /* verify (or an export) found damaged or missing data */
};

struct ctl {
	const char *store_dir; /* --store, GOLDCACHE_STORE, or STORE_DEFAULT_DIR */
	int json; /* --json: one JSON document on stdout */
	int progress; /* stderr is a terminal and not --quiet */
	const struct ctl_command *cmd;
};

struct ctl_command {
	const char *group, *verb, *args, *help;
	int (*run)(struct ctl *c, int argc, char **argv); /* argv[0] is the first argument */
};

extern const struct ctl_command ctl_image_commands[];
extern const struct ctl_command ctl_machine_commands[]; /* ctl-machine.c */
extern const struct ctl_command ctl_snapshot_commands[]; /* ctl-snapshot.c */
extern const struct ctl_command ctl_vm_commands[]; /* ctl-vm.c */

/* For command files that change a machine through goldcached (ctl-snapshot.c):
 * takes --url/--token-file out of argv, which must then hold NAME only, POSTs
 * body (taken over) to /api/v1/machines/NAME/SUFFIX with the admin token and
 * prints the machine it answers with. Returns the exit code. */
int ctl_machine_post(struct ctl *c, int argc, char **argv, const char *suffix, json_t *body);

/* Opens the store (create: make it when missing). On failure prints why and
 * returns the exit code (> 0); 0 on success. */
int ctl_open_store(struct ctl *c, int create, struct store **out);
/* Maps a negative errno from a library call to an exit code. */
int ctl_exit_code(int err);
/* Prints "goldctl: usage: goldctl GROUP VERB ARGS" to stderr; returns CTL_USAGE. */
int ctl_usage(const struct ctl *c);
/* Prints a JSON value on stdout (and frees it). */
void ctl_json_print(json_t *v);
/* Pulls "--name" or "--name VALUE" / "--name=VALUE" options out of argv
 * (from index 0 up to argc), shifting the rest down. has_value: the option
 * takes a value (stored in *value); otherwise *value is set to "1" when present.
 * Returns the new argc, or -1 (after printing) when the value is missing. */
int ctl_take_opt(int argc, char **argv, const char *name, int has_value, const char **value);
/* After the command's own options are taken: fails (prints usage, returns -1)
 * if an unknown option is left; drops a "--" separator. Returns the new argc. */
int ctl_no_more_opts(const struct ctl *c, int argc, char **argv);

/* A progress line on stderr, redrawn at most every 100 ms (only when c->progress). */
void ctl_progress(uint64_t done, uint64_t total, void *arg);
void ctl_progress_end(struct ctl *c);

#endif
