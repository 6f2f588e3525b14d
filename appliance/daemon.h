/* goldcached's main loop: the entry point goldcached.c calls once the config
 * has loaded and passed its host checks. */
#ifndef GC_APPLIANCE_DAEMON_H
#define GC_APPLIANCE_DAEMON_H

#include "config/config.h"

struct daemon_opts {
	const char *config_path; /* re-read on SIGHUP */
	const char *state_dir; /* overrides appliance.state_dir (NULL: the config's) */
	const char *log_path; /* log lines go to this file (appended; reopened on
			       * SIGHUP for rotation) instead of stderr (NULL) */
};

/* Runs in the foreground until SIGTERM or SIGINT; returns 0 after a clean
 * shutdown, or a negative errno (logged): -EBUSY when another goldcached holds
 * the state dir, -EINVAL when the config cannot be served (nothing was started
 * or written then). cfg stays owned by the caller; SIGHUP reloads config_path.
 * docs/operations.md describes the files, signals and logs. */
int daemon_run(const struct config *cfg, const struct daemon_opts *o);

#endif
