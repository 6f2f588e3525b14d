/* goldcached's web front: the HTTP server (appliance/http.h) with the routes of
 * appliance/api.h, on the daemon's event loop. One call for the daemon:
 *
 *     struct web_opts wo = {.loop = l, .cfg = cfg, .reg = reg, .store = store,
 *                           .state_dir = state_dir, .chap_secret = fn, .cb_arg = d};
 *     web_start(&wo, &web);          after the registry and store are open
 *     web_reload(web, new_cfg);      SIGHUP, once the new config is accepted
 *     web_stop(web);                 shutdown: stops accepting and frees
 *
 * It listens on appliance.listen:http_port, loads (or generates) the admin token
 * (api_admin_token_load), writes STATE_DIR/access.log, watches the server's
 * epoll fd and keeps a timer for libmicrohttpd's timeouts. */
#ifndef GC_APPLIANCE_WEB_H
#define GC_APPLIANCE_WEB_H

#include "appliance/api.h"
#include "appliance/loop.h"

struct web_opts {
	struct loop *loop;
	const struct config *cfg;
	struct registry *reg;
	struct store *store; /* may be NULL */
	const char *state_dir;
	int (*chap_secret)(void *arg, const struct config_machine *m, const char *name, char **out);
	void (*health)(void *arg, json_t *obj);
	struct sync *sync; /* may be NULL: commit routes answer 503 */
	int (*restore_lun)(void *arg, const char *machine, const char *from, uint32_t snap,
			   uint64_t *size); /* api_opts.restore_lun */
	void *cb_arg;
};

struct web;

/* 0 and *out, or -errno (logged: address in use, no admin token, ...). */
int web_start(const struct web_opts *o, struct web **out);
/* Points the routes at cfg; rebinds when listen or http_port changed (a failed
 * rebind keeps the old socket and returns -errno). Reopens the access log. */
int web_reload(struct web *w, const struct config *cfg);
/* Stops accepting, closes every connection, frees w. NULL is fine. */
void web_stop(struct web *w);
/* The bound port (tests). */
uint16_t web_port(const struct web *w);

#endif
