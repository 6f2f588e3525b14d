/* Placeholder for goldcached's event loop, so goldcached links and its
 * --check / --print-config front end can land first; the daemon module
 * replaces this file. */
#include <errno.h>

#include "appliance/daemon.h"
#include "lib/log.h"

int daemon_run(const struct config *cfg, const struct daemon_opts *o)
{
	(void)cfg;
	(void)o;
	log_error("daemon not built yet");
	return -ENOSYS;
}
