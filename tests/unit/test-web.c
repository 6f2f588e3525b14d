/* Unit tests for appliance/web: the HTTP server and API on the daemon's real
 * event loop (appliance/loop.h), a client in a thread: health, a boot script,
 * the generated admin token (0600 in the state dir) working on an admin route,
 * the access log, and a reload that moves the port. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <unistd.h>

#include "appliance/registry.h"
#include "appliance/web.h"
#include "lib/httpc.h"
#include "lib/io.h"
#include "lib/util.h"
#include "tests/tap.h"

static atomic_int done;
static char url[64], token[128];
static int st_health, st_boot, st_list, st_noauth;
static char *boot_body;

static void *client(void *arg)
{
	struct httpc_response r;
	struct httpc_request q = {.path = "/api/v1/health"};

	(void)arg;
	if (httpc_request(url, &q, &r) == 0) {
		st_health = r.status;
		httpc_response_release(&r);
	}
	q.path = "/boot.ipxe?mac=52:54:00:00:00:01";
	if (httpc_request(url, &q, &r) == 0) {
		st_boot = r.status;
		free(boot_body);
		boot_body = xstrdup(r.body);
		httpc_response_release(&r);
	}
	q.path = "/api/v1/machines";
	if (httpc_request(url, &q, &r) == 0) {
		st_noauth = r.status;
		httpc_response_release(&r);
	}
	q.bearer = token;
	if (httpc_request(url, &q, &r) == 0) {
		st_list = r.status;
		httpc_response_release(&r);
	}
	atomic_store(&done, 1);
	return NULL;
}

static void serve_until_done(struct loop *l)
{
	pthread_t th;

	atomic_store(&done, 0);
	pthread_create(&th, NULL, client, NULL);
	while (!atomic_load(&done))
		loop_run_once(l, 50);
	pthread_join(th, NULL);
}

static uint16_t free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		abort();
	close(fd);
	return ntohs(a.sin_port);
}

static struct config *load(const char *dir, uint16_t port)
{
	struct config_diag d;
	struct config *cfg = NULL;
	char *y =
		xasprintf("appliance:\n"
			  "  interface: lo\n"
			  "  listen: 127.0.0.1\n"
			  "  http_port: %u\n"
			  "  dhcp: {mode: off}\n"
			  "  tftp_root: %s\n"
			  "  iscsi: {portal: 127.0.0.1:3260, iqn_prefix: iqn.2026-11.org.example}\n"
			  "  store_dir: %s\n"
			  "  state_dir: %s\n"
			  "images:\n"
			  "  - {name: deb, version: \"1\", kernel: /k, initrd: /i}\n"
			  "profiles:\n"
			  "  - {name: desk, image: deb, mode: cache}\n"
			  "machines:\n"
			  "  - {mac: 52:54:00:00:00:01, name: pc1, profile: desk}\n",
			  (unsigned)port, dir, dir, dir);

	config_diag_init(&d);
	if (config_load_buffer("web.yaml", y, strlen(y), &cfg, &d) < 0) {
		config_diag_print(&d, stdout);
		abort();
	}
	config_diag_release(&d);
	free(y);
	return cfg;
}

int main(void)
{
	char *dir = tap_tmpdir(), *p, *tok = NULL, *log = NULL;
	struct config *cfg, *cfg2;
	struct registry *reg = NULL;
	struct loop *l = NULL;
	struct web *w = NULL;
	struct stat st;
	size_t n = 0;
	int lines = 0;
	uint16_t port = free_port(), port2;

	cfg = load(dir, port);
	p = xasprintf("%s/registry.db", dir);
	is_int(registry_open(p, &reg), 0, "registry");
	free(p);
	is_int(loop_new(&l), 0, "loop");
	{
		struct web_opts o = {.loop = l, .cfg = cfg, .reg = reg, .state_dir = dir};

		is_int(web_start(&o, &w), 0, "web starts");
	}
	is_int(web_port(w), port, "listens on the config's port");
	p = xasprintf("%s/admin.token", dir);
	ok(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600, "admin token generated, mode 0600");
	is_int(io_read_file(p, 4096, &tok, &n), 0, "read admin token");
	snprintf(token, sizeof(token), "%.*s", (int)(n && tok[n - 1] == '\n' ? n - 1 : n), tok);
	free(tok);
	free(p);

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", port);
	serve_until_done(l);
	is_int(st_health, 200, "health");
	is_int(st_boot, 200, "boot script");
	ok(boot_body && strstr(boot_body, "goldcache.machine=pc1 "), "pc1's script");
	is_int(st_noauth, 401, "admin route without token");
	is_int(st_list, 200, "admin route with the generated token");

	port2 = free_port();
	cfg2 = load(dir, port2);
	is_int(web_reload(w, cfg2), 0, "reload to a new port");
	config_free(cfg);
	is_int(web_port(w), port2, "moved");
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", port2);
	st_health = 0;
	serve_until_done(l);
	is_int(st_health, 200, "health on the new port");

	web_stop(w);
	p = xasprintf("%s/access.log", dir);
	is_int(io_read_file(p, 1 << 20, &log, &n), 0, "access log");
	for (size_t i = 0; i < n; i++)
		lines += log[i] == '\n';
	is_int(lines, 8, "one line per request");
	free(log);
	free(p);
	free(boot_body);
	loop_free(l);
	registry_free(reg);
	config_free(cfg2);
	tap_rmtree(dir);
	return done_testing();
}
