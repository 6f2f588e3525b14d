/* Unit tests for appliance/sync and the sync routes of appliance/api, in
 * process with a real store, registry and event loop (commits run in forked
 * workers): the commit body parser's refusals, upload files, who may commit
 * (the machine's own token only, a machine with a volume), 202 + polling to
 * done, 409 while running, a mismatch reported with its chunk, snapshots and
 * their manifests (and who may read them), restore/reset/hydrated orders, the
 * body limit hook, and sync_kill during a commit. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/api.h"
#include "appliance/image.h"
#include "appliance/loop.h"
#include "appliance/registry.h"
#include "appliance/snapshot.h"
#include "appliance/store.h"
#include "appliance/sync.h"
#include "config/config.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"
#include "tests/tap.h"

#define ADMIN "admin-token-0123456789"
#define CS 65536u
#define VOL (4u << 20)

static struct api *api;
static struct loop *loop;
static struct sync *sy;
static struct http_response R;
static char *body;
static char *uploads;

static int req(const char *method, const char *path, const char *token, const char *json)
{
	char auth[256];
	struct http_request q = {.method = method,
				 .path = path,
				 .query = "",
				 .peer = "127.0.0.1:1",
				 .body = json ? json : "",
				 .body_len = json ? strlen(json) : 0};

	free(R.body);
	free(body);
	R = (struct http_response){.fd = -1};
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

static int gone_calls;

static void gone_cb(void *arg)
{
	(void)arg;
	gone_calls++;
}

static char *token(const char *machine)
{
	char *p = xasprintf("/api/v1/machines/%s/token", machine), *t = NULL;
	json_t *j;

	if (req("POST", p, ADMIN, NULL) == 200) {
		j = json_loads(body, 0, NULL);
		t = xstrdup(json_string_value(json_object_get(j, "token")));
		json_decref(j);
	}
	free(p);
	return t;
}

/* Runs the loop until pc1's commit is no longer running; returns its state. */
static const char *wait_commit(const char *tok)
{
	static char state[16];

	for (int i = 0; i < 3000; i++) {
		json_t *j;

		req("GET", "/api/v1/machines/pc1/commit", tok, NULL);
		j = json_loads(body, 0, NULL);
		snprintf(state, sizeof(state), "%s",
			 json_string_value(json_object_get(j, "state")));
		json_decref(j);
		if (strcmp(state, "running") != 0)
			return state;
		loop_run_once(loop, 10);
	}
	return "timeout";
}

/* Writes chunk i of pattern seed into pc1's upload file; appends its claim. */
static void put(char *claims, size_t size, unsigned i, unsigned seed, int tamper)
{
	uint8_t *b = xmalloc(CS);
	char *p = xasprintf("%s/pc1.img", uploads), hex[HASH_HEX_LEN + 1];
	struct hash h;
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	size_t n = strlen(claims);

	memset(b, (int)seed, CS);
	b[0] = (uint8_t)i;
	hash_buf(b, CS, &h);
	if (tamper)
		b[100] ^= 1;
	(void)!io_pwrite_all(fd, b, CS, (off_t)i * CS);
	close(fd);
	snprintf(claims + n, size - n, "%s{\"index\":%u,\"sha256\":\"%s\"}", n ? "," : "", i,
		 hash_to_hex(&h, hex));
	free(b);
	free(p);
}

static int parse(const char *text, struct sync_commit **c, char *err, size_t errsize)
{
	return sync_commit_parse(text, strlen(text), c, err, errsize);
}

static void test_parse(void)
{
	struct sync_commit *c = NULL;
	char err[256];

	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":65536,\"chunks\":[]}", &c, err,
		     sizeof(err)),
	       0, "minimal body parses");
	ok(c && c->base == 0 && c->nclaims == 0, "no base, no claims");
	sync_commit_free(c);
	c = NULL;
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":65536,"
		     "\"base_snapshot\":\"pc7@3\",\"chunks\":[]}",
		     &c, err, sizeof(err)),
	       0, "MACHINE@ID base parses");
	ok(c && c->base == 3 && !strcmp(c->base_machine, "pc7"), "base pc7@3");
	sync_commit_free(c);
	c = NULL;
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":65536,\"gold\":\"deb12@4\","
		     "\"chunks\":[]}",
		     &c, err, sizeof(err)),
	       0, "gold IMAGE@VERSION parses");
	ok(c && c->gold_version == 4 && !strcmp(c->gold_image, "deb12"), "gold deb12@4");
	sync_commit_free(c);
	c = NULL;
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":65536,\"gold\":null,\"chunks\":[]}",
		     &c, err, sizeof(err)),
	       0, "gold null parses");
	ok(c && c->gold_version == 0 && !c->gold_image[0], "no gold");
	sync_commit_free(c);
	c = NULL;
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":65536,\"gold\":\"deb12\","
		     "\"chunks\":[]}",
		     &c, err, sizeof(err)),
	       -EINVAL, "gold without a version refused");
	ok(strstr(err, "gold") != NULL, "says why: %s", err);
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":3,\"chunks\":[]}", &c, err,
		     sizeof(err)),
	       -EINVAL, "bad chunk size refused");
	ok(strstr(err, "geometry") != NULL, "says why: %s", err);
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":65536,\"chunks\":[{\"index\":"
		     "1,\"sha256\":\"zz\"}]}",
		     &c, err, sizeof(err)),
	       -EINVAL, "bad hash refused");
	ok(strstr(err, "chunks[0]") != NULL, "names the entry: %s", err);
	ok(c == NULL, "nothing returned on refusal");
#define H64 "\"0000000000000000000000000000000000000000000000000000000000000000\""
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":1048576,\"part_size\":65536,"
		     "\"batch\":2,\"more\":true,\"chunks\":[{\"index\":1,\"sha256\":" H64
		     ",\"parts\":\"8001\"},{\"index\":2,\"sha256\":" H64 "}]}",
		     &c, err, sizeof(err)),
	       0, "parts, part_size, batch and more parse");
	ok(c && c->part_size == 65536 && c->has_batch && c->batch == 2 && c->more &&
		   c->nclaims == 2 && c->claims[0].parts == 0x8001 && c->claims[1].parts == 0,
	   "parts 0x8001 on chunk 1, whole chunk 2, batch 2, more");
	sync_commit_free(c);
	c = NULL;
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":1048576,\"part_size\":65536,"
		     "\"chunks\":[{\"index\":1,\"sha256\":" H64 ",\"parts\":\"10000\"}]}",
		     &c, err, sizeof(err)),
	       -EINVAL, "a part past chunk_size / part_size refused");
	ok(strstr(err, "chunks[0].parts") != NULL, "names the entry: %s", err);
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":1048576,"
		     "\"chunks\":[{\"index\":1,\"sha256\":" H64 ",\"parts\":\"1\"}]}",
		     &c, err, sizeof(err)),
	       -EINVAL, "parts without part_size refused");
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":1048576,\"part_size\":4096,"
		     "\"chunks\":[]}",
		     &c, err, sizeof(err)),
	       -EINVAL, "more than 64 parts per chunk refused");
	ok(strstr(err, "part_size") != NULL, "says why: %s", err);
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":1048576,\"more\":true,"
		     "\"chunks\":[]}",
		     &c, err, sizeof(err)),
	       -EINVAL, "more without batch refused");
	is_int(parse("{\"volume_size\":4194304,\"chunk_size\":1048576,\"part_size\":65536,"
		     "\"chunks\":[{\"index\":1,\"sha256\":" H64 ",\"parts\":\"0\"}]}",
		     &c, err, sizeof(err)),
	       -EINVAL, "an empty parts mask refused");
#undef H64
}

static void test_routes(void)
{
	char claims[8192] = "", *json, *t1, *t2, *t3, path[256];
	struct stat st;

	is_int(sync_upload_ensure(uploads, "pc1", VOL), 0, "upload file for pc1");
	snprintf(path, sizeof(path), "%s/pc1.img", uploads);
	ok(stat(path, &st) == 0 && st.st_size == VOL && st.st_blocks == 0, "sized and sparse");
	is_int(sync_upload_ensure(uploads, "pc1", VOL / 2), 0, "a smaller size");
	ok(stat(path, &st) == 0 && st.st_size == VOL, "never shrinks");

	t1 = token("pc1");
	t2 = token("pc2");
	t3 = token("pc3");
	ok(t1 && t2 && t3, "agent tokens");
	{
		char a1[128], a3[128];

		snprintf(a1, sizeof(a1), "Bearer %s", t1);
		snprintf(a3, sizeof(a3), "Bearer %s", t3);
		is_int(api_body_limit(api, "POST", "/api/v1/machines/pc1/commit", a1),
		       (int)SYNC_MAX_BODY, "pc1's commit body gets the large limit");
		is_int(api_body_limit(api, "POST", "/api/v1/machines/pc1/commit", a3), 0,
		       "not with another machine's token");
		is_int(api_body_limit(api, "POST", "/api/v1/machines/pc1/commit", NULL), 0,
		       "nor without a token");
		is_int(api_body_limit(api, "POST", "/api/v1/machines/pc1/commit", "Bearer " ADMIN),
		       0, "nor with the admin token");
		is_int(api_body_limit(api, "POST", "/api/v1/machines/pc1/state", a1), 0,
		       "nor on other routes");
		is_int(api_body_limit(api, "GET", "/api/v1/machines/pc1/commit", a1), 0,
		       "nor for GETs");
	}
	put(claims, sizeof(claims), 0, 0x11, 0);
	put(claims, sizeof(claims), 5, 0x22, 0);
	json = xasprintf("{\"volume_size\":%u,\"chunk_size\":%u,\"base_snapshot\":null,"
			 "\"chunks\":[%s]}",
			 VOL, CS, claims);
	is_int(req("POST", "/api/v1/machines/pc1/commit", ADMIN, json), 403,
	       "the admin token cannot commit");
	is_int(req("POST", "/api/v1/machines/pc1/commit", t3, json), 403,
	       "another machine's token cannot");
	is_int(req("POST", "/api/v1/machines/pc2/commit", t2, json), 409,
	       "a sanboot machine has no volume to commit");
	is_int(req("POST", "/api/v1/machines/pc1/commit", t1, "{\"volume_size\":1}"), 400,
	       "a bad body is refused at once");
	is_int(req("POST", "/api/v1/machines/pc1/commit", t1, json), 202, "pc1 commits: 202");
	ok(has("\"state\":\"running\"") && has("\"poll\":\"/api/v1/machines/pc1/commit\""),
	   "running, with where to poll");
	is_int(req("POST", "/api/v1/machines/pc1/commit", t1, json), 409,
	       "a second commit while one runs: 409");
	is_str(wait_commit(t1), "done", "the commit is done");
	ok(has("\"snapshot\":1") && has("\"changed\":2") && has("\"new_chunks\":2"),
	   "snapshot 1, 2 changed chunks");
	free(json);

	/* a mismatch is reported with its chunk */
	claims[0] = '\0';
	put(claims, sizeof(claims), 7, 0x33, 1);
	json = xasprintf("{\"volume_size\":%u,\"chunk_size\":%u,\"base_snapshot\":1,"
			 "\"chunks\":[%s]}",
			 VOL, CS, claims);
	is_int(req("POST", "/api/v1/machines/pc1/commit", t1, json), 202,
	       "tampered commit accepted");
	is_str(wait_commit(t1), "failed", "and fails");
	ok(has("\"reason\":\"mismatch\"") && has("\"chunk\":7") && has("chunk 7 "),
	   "mismatch at chunk 7");
	free(json);

	is_int(req("GET", "/api/v1/machines/pc1/snapshots", t1, NULL), 200, "list snapshots");
	ok(has("\"snapshot\":1") && !strstr(body, "\"snapshot\":2"), "one snapshot: 1");
	is_int(req("GET", "/api/v1/machines/pc1/snapshots/latest/manifest", t1, NULL), 200,
	       "its manifest");
	ok(!strncmp(body, MANIFEST_MAGIC, strlen(MANIFEST_MAGIC)), "is a manifest");
	is_int(req("GET", "/api/v1/machines/pc1/snapshots/1/manifest", t3, NULL), 403,
	       "pc3 may not read pc1's snapshot");
	is_int(req("GET", "/api/v1/machines/pc1/snapshots/9/manifest", t1, NULL), 404,
	       "no snapshot 9");
	is_int(req("GET", "/api/v1/machines/pc1/snapshots/x/manifest", t1, NULL), 400, "a bad id");

	/* orders */
	is_int(req("POST", "/api/v1/machines/pc3/restore", t3, "{\"from\":\"pc1\"}"), 403,
	       "an agent cannot order a restore");
	is_int(req("POST", "/api/v1/machines/pc3/restore", ADMIN, "{\"from\":\"pc1\"}"), 200,
	       "restore pc3 from pc1 (newest)");
	ok(has("\"hydrate\":{") && has("\"kind\":\"restore\"") && has("\"from\":\"pc1\"") &&
		   has("\"snapshot\":1"),
	   "the order pins pc1@1");
	is_int(req("GET", "/api/v1/machines/pc1/snapshots/1/manifest", t3, NULL), 200,
	       "now pc3 may read pc1@1");
	is_int(req("POST", "/api/v1/machines/pc3/restore", ADMIN, "{\"from\":\"pc2\"}"), 404,
	       "restore from a machine without snapshots: 404");
	is_int(req("POST", "/api/v1/machines/pc3/restore", ADMIN,
		   "{\"from\":\"pc1\",\"snapshot\":5}"),
	       404, "restore from a missing snapshot: 404");
	is_int(req("POST", "/api/v1/machines/pc3/restore", ADMIN, "{\"from\":\"pc1\",\"x\":1}"),
	       400, "unknown key refused");
	is_int(req("GET", "/api/v1/machines/pc3", t3, NULL), 200, "pc3 reads its state");
	{
		json_t *j = json_loads(body, 0, NULL);
		json_int_t id =
			json_integer_value(json_object_get(json_object_get(j, "hydrate"), "id"));
		char *ack = xasprintf("{\"id\":%lld}", (long long)id), *bad;

		ok(id > 0, "the order has an id");
		bad = xasprintf("{\"id\":%lld}", (long long)id + 1);
		is_int(req("POST", "/api/v1/machines/pc3/hydrated", t3, bad), 409,
		       "acknowledging another order: 409");
		is_int(req("POST", "/api/v1/machines/pc3/hydrated", t1, ack), 403,
		       "pc1 cannot acknowledge for pc3");
		is_int(req("POST", "/api/v1/machines/pc3/hydrated", t3, ack), 200,
		       "pc3 acknowledges");
		ok(has("\"hydrate\":null"), "the order is cleared");
		is_int(req("GET", "/api/v1/machines/pc1/snapshots/1/manifest", t3, NULL), 403,
		       "and pc3 may no longer read pc1@1");
		free(ack);
		free(bad);
		json_decref(j);
	}
	/* a pending order pins its snapshot against the source's retention (2) */
	is_int(req("POST", "/api/v1/machines/pc3/restore", ADMIN, "{\"from\":\"pc1\"}"), 200,
	       "restore pc3 from pc1@1 again");
	for (unsigned k = 0; k < 3; k++) {
		char *cj;

		claims[0] = '\0';
		put(claims, sizeof(claims), 2, 0x50 + k, 0);
		cj = xasprintf("{\"volume_size\":%u,\"chunk_size\":%u,\"base_snapshot\":null,"
			       "\"chunks\":[%s]}",
			       VOL, CS, claims);
		is_int(req("POST", "/api/v1/machines/pc1/commit", t1, cj), 202, "commit %u of pc1",
		       k);
		is_str(wait_commit(t1), "done", "done");
		free(cj);
	}
	is_int(req("GET", "/api/v1/machines/pc1/snapshots/1/manifest", t3, NULL), 200,
	       "pc1@1 outlives retention 2 while pc3's order names it");
	is_int(req("GET", "/api/v1/machines/pc1/snapshots/2/manifest", ADMIN, NULL), 404,
	       "while pc1@2 (unpinned) was pruned");
	is_int(req("POST", "/api/v1/machines/pc1/reset", ADMIN, "{}"), 200, "reset pc1");
	ok(has("\"kind\":\"reset\"") && has("\"from\":null"), "to a fresh volume");
	is_int(req("POST", "/api/v1/machines/pc1/reset", ADMIN, "{\"snapshot\":1}"), 200,
	       "reset pc1 to its snapshot 1");
	ok(has("\"from\":\"pc1\"") && has("\"snapshot\":1"), "to pc1@1");
	is_int(req("POST", "/api/v1/machines/pc1/reset", ADMIN, "{\"snapshot\":0}"), 400,
	       "snapshot 0 refused");
	is_int(req("GET", "/api/v1/machines/pc1", t1, NULL), 200, "pc1's state");
	ok(has("\"latest_snapshot\":4") && has("\"volume_size\":4194304"),
	   "shows its newest snapshot and volume size");
	ok(has("\"sync_interval\":600"), "and its profile's sync interval in seconds");

	/* a commit killed by a shutdown: failed, and the gone callback runs */
	claims[0] = '\0';
	for (unsigned i = 10; i < 60; i++)
		put(claims, sizeof(claims), i, 0x40 + i, 0);
	json = xasprintf("{\"volume_size\":%u,\"chunk_size\":%u,\"base_snapshot\":1,"
			 "\"chunks\":[%s]}",
			 VOL, CS, claims);
	is_int(req("POST", "/api/v1/machines/pc1/commit", t1, json), 202, "a big commit");
	free(json);
	is_int((int)sync_kill(sy, gone_cb, NULL), 1, "sync_kill kills the running commit");
	{
		const char *s = wait_commit(t1);

		/* the child may have finished before the signal: then it is done */
		ok(!strcmp(s, "failed") ? has("was killed") : !strcmp(s, "done"), "it ends: %s", s);
	}
	is_int(gone_calls, 1, "the gone callback ran once");
	free(t1);
	free(t2);
	free(t3);
}

int main(void)
{
	char *dir = tap_tmpdir(), *p, *y;
	struct config *cfg = NULL;
	struct config_diag d;
	struct store *st = NULL;
	struct registry *reg = NULL;

	log_init("test-sync", getenv("GC_UNIT_VERBOSE") ? LOG_DEBUG : LOG_ERROR);
	test_parse();
	y = xasprintf("appliance:\n"
		      "  interface: lo\n"
		      "  listen: 10.77.0.1/24\n"
		      "  dhcp: {mode: off}\n"
		      "  tftp_root: %s\n"
		      "  store_dir: %s/store\n"
		      "  state_dir: %s/state\n"
		      "images:\n"
		      "  - {name: deb, kernel: %s/k, initrd: %s/k}\n"
		      "  - {name: win}\n"
		      "profiles:\n"
		      "  - {name: desk, image: deb, mode: cache, volume_size: 4M, retention: 2,\n"
		      "     sync_interval: 10m}\n"
		      "  - {name: exam, image: win, mode: sanboot}\n"
		      "machines:\n"
		      "  - {mac: 52:54:00:00:00:01, name: pc1, profile: desk}\n"
		      "  - {mac: 52:54:00:00:00:02, name: pc2, profile: exam}\n"
		      "  - {mac: 52:54:00:00:00:03, name: pc3, profile: desk}\n",
		      dir, dir, dir, dir, dir);
	p = xasprintf("%s/k", dir);
	if (io_write_file_atomic(p, "K", 1, 0644) < 0)
		return 2;
	free(p);
	config_diag_init(&d);
	if (config_load_buffer("t.yaml", y, strlen(y), &cfg, &d) < 0) {
		config_diag_print(&d, stdout);
		return 2;
	}
	config_diag_release(&d);
	free(y);
	p = xasprintf("%s/store", dir);
	if (store_open(p, 1, &st) < 0)
		return 2;
	free(p);
	p = xasprintf("%s/registry.db", dir);
	if (registry_open(p, &reg) < 0)
		return 2;
	free(p);
	uploads = xasprintf("%s/state/uploads", dir);
	if (loop_new(&loop) < 0)
		return 2;
	is_int(sync_new(loop, cfg->appliance.store_dir, uploads, &sy), 0, "sync_new");
	{
		struct api_opts o = {
			.cfg = cfg, .reg = reg, .store = st, .admin_token = ADMIN, .sync = sy};

		is_int(api_new(&o, &api), 0, "api with sync");
	}
	if (api && sy)
		test_routes();
	free(R.body);
	free(body);
	api_free(api);
	sync_free(sy);
	loop_free(loop);
	registry_free(reg);
	store_free(st);
	config_free(cfg);
	free(uploads);
	tap_rmtree(dir);
	return done_testing();
}
