/* The HTTP server and API on the daemon's loop (see web.h).
 *
 * libmicrohttpd runs in external-epoll mode: its epoll fd is watched level-
 * triggered for EPOLLIN; each wake-up runs MHD_run (non-blocking) and re-arms
 * one timer to MHD's own timeout (0 when it has buffered work left, else the
 * nearest connection timeout), so idle connections are reaped without a busy
 * loop. Nothing here blocks: route handlers do short SQLite transactions and
 * open files; bodies are sent by MHD from the fd. */
#include "appliance/web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "lib/log.h"
#include "lib/util.h"

struct web {
	struct loop *loop;
	struct api *api;
	struct http_server *http;
	struct loop_timer *timer;
	char *access_log;
	char listen[INET_ADDRSTRLEN];
	uint16_t port;
};

static void pump(struct web *w);

static void timer_cb(struct loop *l, void *arg)
{
	struct web *w = arg;

	(void)l;
	w->timer = NULL;
	pump(w);
}

static void readable(struct loop *l, int fd, uint32_t events, void *arg)
{
	(void)l;
	(void)fd;
	(void)events;
	pump(arg);
}

static void pump(struct web *w)
{
	int t;

	if (!w->http)
		return;
	if (http_run(w->http) < 0)
		log_warn("HTTP server run failed");
	if (w->timer) {
		loop_timer_cancel(w->loop, w->timer);
		w->timer = NULL;
	}
	t = http_timeout_ms(w->http);
	if (t >= 0)
		w->timer = loop_timer_add(w->loop, (uint64_t)t, timer_cb, w);
}

static void server_close(struct web *w)
{
	if (!w->http)
		return;
	loop_fd_del(w->loop, http_epoll_fd(w->http));
	if (w->timer) {
		loop_timer_cancel(w->loop, w->timer);
		w->timer = NULL;
	}
	http_free(w->http);
	w->http = NULL;
}

static int server_open(struct web *w, const struct config *cfg, struct http_server **out)
{
	struct http_opts ho = {
		.port = cfg->appliance.http_port,
		.max_body = API_MAX_BODY,
		.max_conns = 2000,
		.timeout_s = 30,
		.access_log = w->access_log,
		.body_limit = api_body_limit,
	};
	char addr[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &cfg->appliance.listen_addr, addr, sizeof(addr));
	ho.addr = addr;
	return http_new(&ho, api_handle, w->api, out);
}

static int server_attach(struct web *w, struct http_server *h, const struct config *cfg)
{
	int rc = loop_fd_add(w->loop, http_epoll_fd(h), EPOLLIN, readable, w);

	if (rc < 0) {
		log_error("cannot watch the HTTP server: %s", strerror(-rc));
		return rc;
	}
	w->http = h;
	inet_ntop(AF_INET, &cfg->appliance.listen_addr, w->listen, sizeof(w->listen));
	w->port = http_port(h);
	pump(w);
	log_info("serving boot scripts and the API on http://%s:%u", w->listen, (unsigned)w->port);
	return 0;
}

int web_start(const struct web_opts *o, struct web **out)
{
	struct web *w = xcalloc(1, sizeof(*w));
	struct api_opts ao = {.cfg = o->cfg,
			      .reg = o->reg,
			      .store = o->store,
			      .chap_secret = o->chap_secret,
			      .health = o->health,
			      .sync = o->sync,
			      .restore_lun = o->restore_lun,
			      .cb_arg = o->cb_arg};
	struct http_server *h = NULL;
	char *token = NULL, *deltas = xasprintf("%s/deltas", o->state_dir);
	int rc;

	*out = NULL;
	ao.delta_dir = deltas;
	w->loop = o->loop;
	w->access_log = xasprintf("%s/access.log", o->state_dir);
	rc = api_admin_token_load(o->cfg, o->state_dir, &token);
	if (rc < 0)
		goto fail;
	ao.admin_token = token;
	rc = api_new(&ao, &w->api);
	free(deltas);
	deltas = NULL;
	explicit_bzero(token, strlen(token));
	free(token);
	if (rc < 0)
		goto fail;
	rc = server_open(w, o->cfg, &h);
	if (rc < 0)
		goto fail;
	rc = server_attach(w, h, o->cfg);
	if (rc < 0) {
		http_free(h);
		goto fail;
	}
	*out = w;
	return 0;
fail:
	free(deltas);
	web_stop(w);
	return rc;
}

int web_reload(struct web *w, const struct config *cfg)
{
	char addr[INET_ADDRSTRLEN];
	struct http_server *h = NULL;
	int rc;

	api_set_config(w->api, cfg);
	inet_ntop(AF_INET, &cfg->appliance.listen_addr, addr, sizeof(addr));
	if (strcmp(addr, w->listen) == 0 && cfg->appliance.http_port == w->port)
		return w->http ? http_reopen_log(w->http) : 0;
	/* a new address: close first (the same port may be re-bound), reopen, and
	 * on failure try to get the old one back */
	{
		char old[INET_ADDRSTRLEN];
		uint16_t oldport = w->port;
		struct config tmp;

		snprintf(old, sizeof(old), "%s", w->listen);
		server_close(w);
		rc = server_open(w, cfg, &h);
		if (rc == 0)
			return server_attach(w, h, cfg);
		log_error("cannot move HTTP to %s:%u; staying on %s:%u", addr,
			  (unsigned)cfg->appliance.http_port, old, (unsigned)oldport);
		memset(&tmp, 0, sizeof(tmp));
		inet_pton(AF_INET, old, &tmp.appliance.listen_addr);
		tmp.appliance.http_port = oldport;
		if (server_open(w, &tmp, &h) == 0 && server_attach(w, h, &tmp) < 0)
			http_free(h);
		return rc;
	}
}

void web_stop(struct web *w)
{
	if (!w)
		return;
	server_close(w);
	api_free(w->api);
	free(w->access_log);
	free(w);
}

uint16_t web_port(const struct web *w)
{
	return w->port;
}
