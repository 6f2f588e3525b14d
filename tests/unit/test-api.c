/* Unit tests for appliance/api, driven in-process (api_handle is a pure
 * function of request, config, registry and store): boot scripts for each mode
 * and MAC form, the unknown-machine policy, assignment taking effect at the next
 * boot, tokens (admin, enrollment window, rotation, another machine's token),
 * agent state validation, images and manifests from a real store, boot files,
 * health, 404/405 and a config swap (SIGHUP). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appliance/api.h"
#include "appliance/image.h"
#include "appliance/registry.h"
#include "appliance/store.h"
#include "config/config.h"
#include "lib/io.h"
#include "lib/util.h"
#include "tests/tap.h"

#define ADMIN "admin-token-0123456789"

static int64_t fake_now = 1000000;
static int64_t clock_fn(void)
{
	return fake_now;
}

static struct api *api;
static struct registry *reg;
static struct http_response R;
static char *body; /* R's body, or the file it sends */
static const char *peer = "127.0.0.1:1";

static int chap(void *arg, const struct config_machine *m, const char *name, char **out)
{
	(void)arg;
	if (!m)
		return -ENOENT;
	*out = xasprintf("chap-secret-of-%s", name);
	return 0;
}

/* Runs one request; R and body hold the answer until the next call. */
static int req(const char *method, const char *target, const char *token, const char *json)
{
	char path[HTTP_MAX_PATH + 1], auth[256];
	const char *query = "";
	struct http_request q = {.method = method,
				 .path = path,
				 .peer = peer,
				 .body = json ? json : "",
				 .body_len = json ? strlen(json) : 0};

	free(R.body);
	free(body);
	body = NULL;
	R = (struct http_response){.fd = -1};
	if (http_split_uri(target, path, sizeof(path), &query) < 0)
		return -1;
	q.query = query;
	if (token) {
		snprintf(auth, sizeof(auth), "Bearer %s", token);
		q.authorization = auth;
	}
	api_handle(api, &q, &R);
	if (R.fd >= 0) {
		body = xmalloc(R.fd_size + 1);
		if (io_pread_full(R.fd, body, R.fd_size, 0) != (ssize_t)R.fd_size)
			R.status = -1;
		body[R.fd_size] = '\0';
		close(R.fd);
		R.fd = -1;
	} else {
		body = xstrndup(R.body ? R.body : "", R.len);
	}
	return R.status;
}

static int has(const char *needle)
{
	int r = body && strstr(body, needle) != NULL;

	if (!r)
		printf("# body: %s\n# want: %s\n", body ? body : "(null)", needle);
	return r;
}

static void write_file(const char *path, const char *s, size_t n)
{
	if (io_write_file_atomic(path, s, n, 0644) < 0)
		abort();
}

/* A token from a {"token": ...} body. */
static char *token_of(void)
{
	json_t *j = json_loads(body, 0, NULL);
	const char *t = json_string_value(json_object_get(j, "token"));
	char *r = t ? xstrdup(t) : NULL;

	json_decref(j);
	return r;
}

static char *yaml(const char *dir, const char *policy)
{
	return xasprintf("appliance:\n"
			 "  interface: lo\n"
			 "  listen: 10.77.0.1/24\n"
			 "  http_port: 8080\n"
			 "  dhcp: {mode: full, range: 10.77.0.100-10.77.0.200}\n"
			 "  tftp_root: %s/tftp\n"
			 "  iscsi: {portal: 10.77.0.1:3260, iqn_prefix: iqn.2026-11.org.example}\n"
			 "  store_dir: %s/store\n"
			 "  state_dir: %s/state\n"
			 "images:\n"
			 "  - {name: deb, version: current, kernel: %s/vmlinuz, initrd: %s/initrd,"
			 " cmdline: \"console=ttyS0 quiet\"}\n"
			 "  - {name: win, version: current}\n"
			 "profiles:\n"
			 "  - {name: desk, image: deb, mode: cache}\n"
			 "  - {name: hpc, image: deb, mode: stream}\n"
			 "  - {name: exam, image: win, mode: sanboot}\n"
			 "machines:\n"
			 "  - {mac: 52:54:00:00:00:01, name: pc1, profile: desk}\n"
			 "  - {mac: 52:54:00:00:00:02, name: pc2, profile: exam}\n"
			 "  - {mac: 52:54:00:00:00:03, name: pc3, profile: desk}\n"
			 "groups:\n"
			 "  - {match: \"52:54:00:aa:*\", profile: hpc}\n"
			 "unknown_machines: %s\n",
			 dir, dir, dir, dir, dir, policy);
}

static struct config *load(const char *dir, const char *policy)
{
	struct config_diag d;
	struct config *cfg = NULL;
	char *y = yaml(dir, policy);

	config_diag_init(&d);
	if (config_load_buffer("test.yaml", y, strlen(y), &cfg, &d) < 0) {
		config_diag_print(&d, stdout);
		abort();
	}
	config_diag_release(&d);
	free(y);
	return cfg;
}

static void test_boot(void)
{
	struct registry_machine rm;

	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-01", NULL, NULL), 200, "boot script pc1");
	ok(!strncmp(body, "#!ipxe\n", 7), "starts with #!ipxe");
	is_str(R.content_type, "text/plain; charset=utf-8", "text/plain");
	ok(has("\nkernel http://10.77.0.1:8080/boot/images/deb/kernel "), "kernel URL");
	ok(has(" goldcache.url=http://10.77.0.1:8080 goldcache.machine=pc1 goldcache.mode=cache "
	       "goldcache.image=deb goldcache.version=1 console=ttyS0 quiet || goto failed"),
	   "cmdline: appliance, machine, mode, image, version, extra args");
	ok(has("\ninitrd --name initrd.img http://10.77.0.1:8080/boot/images/deb/initrd "),
	   "initrd line");
	ok(has("\nboot || goto failed\n"), "boot line");
	ok(!strstr(body, "goldcache.token") && !strstr(body, "password"),
	   "no token or secret in the script");
	is_int(registry_get_by_mac(reg, "52:54:00:00:00:01", &rm), 0, "boot recorded");
	ok(rm.first_seen == fake_now && rm.last_boot == fake_now && !strcmp(rm.name, "pc1"),
	   "first_seen, last_boot, name");
	registry_machine_release(&rm);

	is_int(req("GET", "/boot.ipxe?mac=52:54:00:00:00:01", NULL, NULL), 200, "colon form");
	ok(has("goldcache.machine=pc1 "), "same machine");
	is_int(req("GET", "/boot.ipxe?mac=52%3A54%3A00%3A00%3A00%3A01&x=y", NULL, NULL), 200,
	       "percent-encoded colons, extra parameter");
	ok(has("goldcache.machine=pc1 "), "same machine");
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-AA-00-07", NULL, NULL), 200, "group member");
	ok(has("goldcache.mode=stream ") && has("goldcache.machine=52-54-00-aa-00-07 "),
	   "group profile (stream), named by its MAC");
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-02", NULL, NULL), 200, "sanboot pc2");
	ok(has("\nset initiator-iqn iqn.2026-11.org.example:i.pc2\n"), "initiator IQN");
	ok(has("\nset username pc2\nset password chap-secret-of-pc2\n"), "CHAP credentials");
	ok(has("\nsanboot iscsi:10.77.0.1::3260:1:iqn.2026-11.org.example:m.pc2 || goto failed"),
	   "sanboot URI");

	peer = "10.77.0.150:1000";
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-02", NULL, NULL), 200,
	       "sanboot to the neighbour with pc2's MAC");
	peer = "10.77.0.151:1000";
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-02", NULL, NULL), 403,
	       "sanboot script refused to a neighbour with another MAC");
	ok(!strstr(body, "chap-secret"), "no secret in the refusal");
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-01", NULL, NULL), 200,
	       "cache script (no secret) served to any neighbour");
	peer = "10.77.0.152:1000";
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-02", NULL, NULL), 200,
	       "unresolved neighbour entry: not a mismatch");
	peer = "127.0.0.1:1";

	is_int(req("GET", "/boot.ipxe?mac=52-54-00-99-99-99", NULL, NULL), 200, "unknown: refuse");
	ok(!strncmp(body, "#!ipxe\n", 7) && has("52:54:00:99:99:99 is not known") &&
		   !strstr(body, "kernel"),
	   "refusal script");
	is_int(registry_get_by_mac(reg, "52:54:00:99:99:99", &rm), 0, "refused boot recorded too");
	registry_machine_release(&rm);

	is_int(req("GET", "/boot.ipxe", NULL, NULL), 400, "no mac: 400");
	ok(has("\"status\":400"), "JSON error");
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00", NULL, NULL), 400, "short mac: 400");
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-0g", NULL, NULL), 400, "bad hex: 400");
	is_int(req("GET", "/boot.ipxe?mac=%0a", NULL, NULL), 400, "control byte: 400");
	is_int(req("POST", "/boot.ipxe?mac=52-54-00-00-00-01", NULL, NULL), 405, "POST: 405");
}

static void test_auth_and_assign(void)
{
	is_int(req("POST", "/api/v1/machines/pc1/assign", NULL, "{\"profile\":\"hpc\"}"), 401,
	       "assign without a token: 401");
	ok(R.status == 401 && has("Bearer"), "says what is needed");
	is_int(req("POST", "/api/v1/machines/pc1/assign", "nope", "{\"profile\":\"hpc\"}"), 401,
	       "wrong token: 401");
	is_int(req("POST", "/api/v1/machines/pc1/assign", ADMIN, "{\"profile\":\"nosuch\"}"), 400,
	       "unknown profile: 400");
	is_int(req("POST", "/api/v1/machines/pc1/assign", ADMIN, "{\"profile\":1}"), 400,
	       "profile not a string: 400");
	is_int(req("POST", "/api/v1/machines/pc1/assign", ADMIN, "{\"profile\""), 400,
	       "bad JSON: 400");
	is_int(req("POST", "/api/v1/machines/nosuch/assign", ADMIN, "{\"profile\":\"hpc\"}"), 404,
	       "unknown machine: 404");
	is_int(req("POST", "/api/v1/machines/pc1/assign", ADMIN, "{\"profile\":\"hpc\"}"), 200,
	       "assign pc1 to hpc");
	ok(has("\"assigned_profile\":\"hpc\"") && has("\"profile\":\"hpc\"") &&
		   has("\"config_profile\":\"desk\"") && has("\"mode\":\"stream\""),
	   "machine shows the assignment");
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-01", NULL, NULL), 200, "next boot");
	ok(has("goldcache.mode=stream "), "assignment takes effect at the next boot");
	is_int(req("POST", "/api/v1/machines/52-54-00-00-00-01/assign", ADMIN,
		   "{\"profile\":null}"),
	       200, "clear assignment (machine named by MAC)");
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-01", NULL, NULL), 200, "boot again");
	ok(has("goldcache.mode=cache "), "back to the config's profile");
	is_int(req("POST", "/api/v1/machines/52-54-00-99-99-99/assign", ADMIN,
		   "{\"profile\":\"desk\"}"),
	       200, "assign a refused machine");
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-99-99-99", NULL, NULL), 200, "its next boot");
	ok(has("goldcache.mode=cache ") && has("goldcache.machine=52-54-00-99-99-99 "),
	   "assignment overrides the refuse policy");
}

static void test_tokens_and_state(void)
{
	char *t1, *t1b, *t3, *ts1, *ts2;

	is_int(req("POST", "/api/v1/machines/pc1/enroll", NULL, NULL), 200, "pc1 enrolls");
	t1 = token_of();
	ok(t1 && strlen(t1) == 64, "enrollment returns a token");
	is_int(req("POST", "/api/v1/machines/pc1/enroll", NULL, NULL), 409, "second enroll: 409");
	is_int(req("POST", "/api/v1/machines/pc3/enroll", NULL, NULL), 403,
	       "never-booted machine cannot enroll");
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-03", NULL, NULL), 200, "pc3 boots");
	fake_now += API_ENROLL_WINDOW_S + 1;
	is_int(req("POST", "/api/v1/machines/pc3/enroll", NULL, NULL), 403,
	       "enrollment window closed");
	is_int(req("POST", "/api/v1/machines/pc3/token", ADMIN, NULL), 200, "admin issues a token");
	t3 = token_of();
	ok(t3 && strlen(t3) == 64, "token for pc3");
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-00-00-03", NULL, NULL), 200, "pc3 boots again");
	is_int(req("POST", "/api/v1/machines/pc3/enroll", NULL, NULL), 409,
	       "a cache machine that holds a token cannot enroll at its next boot");

	/* a diskless stream machine loses its token with its RAM: one claim per boot */
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-aa-00-07", NULL, NULL), 200,
	       "stream node boots");
	is_int(req("POST", "/api/v1/machines/52-54-00-aa-00-07/enroll", NULL, NULL), 200,
	       "stream node enrolls");
	ts1 = token_of();
	is_int(req("POST", "/api/v1/machines/52-54-00-aa-00-07/enroll", NULL, NULL), 409,
	       "stream node: a second claim for the same boot is refused");
	fake_now += 30;
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-aa-00-07", NULL, NULL), 200,
	       "stream node reboots");
	peer = "10.77.0.151:1000";
	is_int(req("POST", "/api/v1/machines/52-54-00-aa-00-07/enroll", NULL, NULL), 403,
	       "its new token is refused to a neighbour with another MAC");
	is_int(req("GET", "/api/v1/machines/52-54-00-aa-00-07", ts1, NULL), 200,
	       "and the running machine's token still works");
	peer = "10.77.0.153:1000";
	is_int(req("POST", "/api/v1/machines/52-54-00-aa-00-07/enroll", NULL, NULL), 200,
	       "stream node enrolls again after its reboot (from its own MAC)");
	peer = "127.0.0.1:1";
	ts2 = token_of();
	ok(ts1 && ts2 && strcmp(ts1, ts2) != 0, "a new token");
	is_int(req("GET", "/api/v1/machines/52-54-00-aa-00-07", ts1, NULL), 401,
	       "the earlier boot's token is dead");
	is_int(req("GET", "/api/v1/machines/52-54-00-aa-00-07", ts2, NULL), 200,
	       "this boot's token works");
	is_int(req("POST", "/api/v1/machines/52-54-00-aa-00-07/enroll", NULL, NULL), 409,
	       "and it is the only claim of this boot");
	fake_now += API_ENROLL_WINDOW_S + 1;
	is_int(req("POST", "/api/v1/machines/52-54-00-aa-00-07/enroll", NULL, NULL), 409,
	       "stream node: no claim without a new boot script");
	free(ts1);
	free(ts2);

	is_int(req("GET", "/api/v1/machines/pc1", t1, NULL), 200, "pc1 reads itself");
	ok(has("\"enrolled\":true") && has("\"name\":\"pc1\""), "enrolled");
	is_int(req("GET", "/api/v1/machines/pc3", t1, NULL), 403, "pc1 cannot read pc3");
	is_int(req("GET", "/api/v1/machines", t1, NULL), 403, "an agent cannot list machines");
	is_int(req("PUT", "/api/v1/machines/pc1/state", t1,
		   "{\"hydrated_pct\":42.5,\"dirty_bytes\":4096,\"version\":1,"
		   "\"last_sync\":999,\"cache_complete\":false}"),
	       200, "pc1 reports its state");
	ok(has("\"hydrated_pct\":42.5") && has("\"last_sync\":999") && has("\"state_at\":") &&
		   has("\"dirty_bytes\":4096"),
	   "state stored and shown");
	is_int(req("PUT", "/api/v1/machines/pc3/state", t1, "{}"), 403,
	       "pc1 cannot report for pc3");
	is_int(req("PUT", "/api/v1/machines/pc1/state", t1, "{\"evil\":1}"), 400, "unknown key");
	ok(has("unknown state key 'evil'"), "names the key");
	is_int(req("PUT", "/api/v1/machines/pc1/state", t1, "{\"hydrated_pct\":101}"), 400,
	       "out of range");
	is_int(req("PUT", "/api/v1/machines/pc1/state", t1, "[1]"), 400, "not an object");
	is_int(req("PUT", "/api/v1/machines/pc1/state", t1, "{\"a\":1,\"a\":2}"), 400,
	       "duplicate keys");
	is_int(req("POST", "/api/v1/machines/pc1/state", ADMIN, "{\"online\":true}"), 200,
	       "admin may post state too");
	is_int(req("POST", "/api/v1/machines/pc1/token", ADMIN, NULL), 200, "rotate pc1's token");
	t1b = token_of();
	is_int(req("GET", "/api/v1/machines/pc1", t1, NULL), 401, "old token dead");
	is_int(req("GET", "/api/v1/machines/pc1", t1b, NULL), 200, "new token works");
	is_int(req("POST", "/api/v1/machines/pc1/token", t1b, NULL), 403,
	       "an agent cannot issue tokens");

	is_int(req("GET", "/api/v1/machines", ADMIN, NULL), 200, "admin lists machines");
	ok(has("\"name\":\"pc1\"") && has("\"name\":\"pc2\"") && has("\"name\":\"pc3\"") &&
		   has("\"name\":\"52-54-00-aa-00-07\"") && has("\"source\":\"group\""),
	   "config machines and seen machines");
	{
		json_t *j = json_loads(body, 0, NULL);

		is_int(json_array_size(json_object_get(j, "machines")), 5,
		       "five machines, no dups");
		json_decref(j);
	}

	is_int(req("GET", "/api/v1/images", t3, NULL), 200, "agent lists images");
	ok(has("\"name\":\"deb\"") && has("\"current\":1"), "image deb, current 1");
	is_int(req("GET", "/api/v1/images/deb", t3, NULL), 200, "versions of deb");
	ok(has("\"version\":1") && has("\"kind\":\"fs\""), "version 1");
	is_int(req("GET", "/api/v1/images/nosuch", t3, NULL), 404, "unknown image");
	is_int(req("GET", "/api/v1/images/deb/current/manifest", t3, NULL), 200, "manifest");
	ok(!strncmp(body, "goldcache-manifest 1", 20), "the manifest file");
	is_int(req("GET", "/api/v1/images/deb/1/manifest", t3, NULL), 200, "manifest by version");
	is_int(req("GET", "/api/v1/images/deb/7/manifest", t3, NULL), 404, "unknown version");
	is_int(req("GET", "/api/v1/images/deb/x/manifest", t3, NULL), 400, "bad version");
	is_int(req("GET", "/api/v1/images/deb/current/manifest", NULL, NULL), 401,
	       "manifest needs a token");
	free(t1);
	free(t1b);
	free(t3);
}

static void test_misc(const char *dir, struct config **cfg)
{
	struct config *old = *cfg;

	is_int(req("GET", "/boot/images/deb/kernel", NULL, NULL), 200, "kernel file");
	is_str(body, "KERNEL", "kernel bytes");
	is_int(req("GET", "/boot/images/deb/initrd", NULL, NULL), 200, "initrd file");
	is_int(req("GET", "/boot/images/win/kernel", NULL, NULL), 404, "no kernel for win");
	is_int(req("GET", "/api/v1/health", NULL, NULL), 200, "health without auth");
	ok(has("\"status\":\"ok\""), "ok");
	is_int(req("GET", "/metrics", NULL, NULL), 200, "metrics without auth");
	ok(has("goldcache_boot_scripts_total{mode=\"cache\"} ") &&
		   has("goldcache_boot_scripts_total{mode=\"refuse\"} 1\n") &&
		   has("goldcache_sanboot_refused_total 1\n") &&
		   has("goldcache_http_responses_total{class=\"4xx\"} "),
	   "counters by mode, refusals, status class");
	is_int(req("GET", "/nope", NULL, NULL), 404, "unknown route");
	is_int(req("DELETE", "/api/v1/machines", ADMIN, NULL), 405, "wrong method");
	is_int(req("GET", "/api/v1/machines/", ADMIN, NULL), 404, "trailing slash");
	is_int(req("GET", "/api/v1/machines/..", ADMIN, NULL), 404, "dot-dot segment");

	*cfg = load(dir, "{policy: profile, profile: hpc}");
	api_set_config(api, *cfg);
	config_free(old);
	is_int(req("GET", "/boot.ipxe?mac=52-54-00-77-77-77", NULL, NULL), 200, "after reload");
	ok(has("goldcache.mode=stream "), "unknown machines now get the default profile");
}

static void test_route_match(void)
{
	char caps[3][129];

	is_int(api_route_match("/a/*/c", "/a/b/c", caps, 3), 1, "one capture");
	is_str(caps[0], "b", "captured");
	is_int(api_route_match("/a/*", "/a/", caps, 3), -1, "empty capture");
	is_int(api_route_match("/a/*", "/a/b/c", caps, 3), -1, "longer path");
	is_int(api_route_match("/a/*/c", "/a/b", caps, 3), -1, "shorter path");
	is_int(api_route_match("/a/*", "/a/.", caps, 3), -1, "dot");
	is_int(api_route_match("/a", "/a", caps, 3), 0, "literal");
	is_int(api_route_match("/*/*", "/x/y", caps, 1), -1, "too many captures");
}

int main(void)
{
	char *dir = tap_tmpdir(), *p, *arp;
	struct config *cfg;
	struct store *st = NULL;
	struct import_result res;
	struct import_opts io = {0};
	char img[1 << 16];

	p = xasprintf("%s/vmlinuz", dir);
	write_file(p, "KERNEL", 6);
	free(p);
	p = xasprintf("%s/initrd", dir);
	write_file(p, "INITRD", 6);
	free(p);
	cfg = load(dir, "{policy: refuse}");
	p = xasprintf("%s/store", dir);
	if (store_open(p, 1, &st) < 0)
		abort();
	free(p);
	memset(img, 0x5a, sizeof(img));
	p = xasprintf("%s/img.raw", dir);
	write_file(p, img, sizeof(img));
	io.chunk_size = 4096;
	is_int(image_import(st, "deb", p, &io, &res), 0, "import deb");
	io.kind = MANIFEST_DISK;
	is_int(image_import(st, "win", p, &io, &res), 0, "import win");
	free(p);
	p = xasprintf("%s/registry.db", dir);
	is_int(registry_open(p, &reg), 0, "registry");
	free(p);
	arp = xasprintf("%s/arp", dir);
	{
		static const char t[] =
			"IP address       HW type     Flags       HW address            Mask     "
			"Device\n"
			"10.77.0.150      0x1         0x2         52:54:00:00:00:02     *        "
			"gcbr0\n"
			"10.77.0.151      0x1         0x2         52:54:00:00:00:99     *        "
			"gcbr0\n"
			"10.77.0.152      0x1         0x0         00:00:00:00:00:00     *        "
			"gcbr0\n"
			"10.77.0.153      0x1         0x2         52:54:00:aa:00:07     *        "
			"gcbr0\n";

		write_file(arp, t, sizeof(t) - 1);
	}
	{
		struct api_opts o = {.cfg = cfg,
				     .reg = reg,
				     .store = st,
				     .admin_token = ADMIN,
				     .chap_secret = chap,
				     .clock = clock_fn,
				     .neigh_path = arp};

		is_int(api_new(&o, &api), 0, "api");
	}
	test_route_match();
	test_boot();
	test_auth_and_assign();
	test_tokens_and_state();
	test_misc(dir, &cfg);

	free(R.body);
	free(body);
	api_free(api);
	registry_free(reg);
	store_free(st);
	config_free(cfg);
	free(arp);
	tap_rmtree(dir);
	return done_testing();
}
