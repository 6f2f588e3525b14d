/* goldcached's main loop: the entry point goldcached.c calls once the config
 * has loaded and passed its host checks. */
#ifndef GC_APPLIANCE_DAEMON_H
#define GC_APPLIANCE_DAEMON_H

#include "config/config.h"

struct daemon_opts {
	const char *config_path; /* re-read on SIGHUP */
};

/* Runs until told to stop; returns 0 after a clean shutdown, or a negative
 * errno. cfg stays owned by the caller. */
int daemon_run(const struct config *cfg, const struct daemon_opts *o);

#endif
