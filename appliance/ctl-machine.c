/* goldctl machine list|show|assign|unassign|token: the machine commands talk to
 * a running goldcached's JSON API (docs/api.md) with the admin token; they only
 * parse argv, make one request (lib/httpc) and print.
 *
 * Where goldcached is: --url URL, else $GOLDCACHE_URL, else
 * http://127.0.0.1:8080. The admin token: --token-file FILE, else
 * $GOLDCACHE_TOKEN (the token itself), else $GOLDCACHE_TOKEN_FILE, else
 * /var/lib/goldcache/state/admin.token (goldcached generates it there when the
 * config names no admin_token_file).
 * Exit codes as ctl.h: 1 also for an unreachable daemon or a refused token,
 * 3 for an unknown machine or profile. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "appliance/ctl.h"
#include "config/config.h"
#include "lib/httpc.h"
#include "lib/log.h"
#include "lib/util.h"

#define DEFAULT_URL "http://127.0.0.1:8080"
#define DEFAULT_TOKEN_FILE "/var/lib/goldcache/state/admin.token"

struct conn {
	const char *url;
	char *token;
};

/* Takes --url and --token-file out of argv; returns the new argc or -1. */
static int conn_open(struct ctl *c, int argc, char **argv, struct conn *k)
{
	const char *url = NULL, *tf = NULL, *env;
	int rc;

	memset(k, 0, sizeof(*k));
	if ((argc = ctl_take_opt(argc, argv, "--url", 1, &url)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--token-file", 1, &tf)) < 0 ||
	    (argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return -1;
	env = getenv("GOLDCACHE_URL");
	k->url = url ? url : env && *env ? env : DEFAULT_URL;
	env = getenv("GOLDCACHE_TOKEN");
	if (!tf && env && *env) {
		k->token = xstrdup(env);
		return argc;
	}
	if (!tf) {
		env = getenv("GOLDCACHE_TOKEN_FILE");
		tf = env && *env ? env : DEFAULT_TOKEN_FILE;
	}
	rc = config_secret_read(tf, &k->token);
	if (rc < 0) {
		fprintf(stderr,
			"goldctl: cannot read the admin token '%s': %s (give --token-file FILE or "
			"set GOLDCACHE_TOKEN)\n",
			tf, strerror(-rc));
		return -1;
	}
	return argc;
}

static void conn_close(struct conn *k)
{
	if (k->token) {
		explicit_bzero(k->token, strlen(k->token));
		free(k->token);
	}
}

/* Percent-encodes a machine name or MAC for a path segment. */
static char *seg(const char *s)
{
	char *out = xmalloc(strlen(s) * 3 + 1), *o = out;

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-')
			*o++ = (char)ch;
		else
			o += snprintf(o, 4, "%%%02X", ch);
	}
	*o = '\0';
	return out;
}

/* One request; on success *out is the parsed JSON body. Prints errors and
 * returns an exit code. */
static int call(struct conn *k, const char *method, const char *path, const char *body,
		json_t **out)
{
	struct httpc_request q = {.method = method,
				  .path = path,
				  .bearer = k->token,
				  .body = body,
				  .body_len = body ? strlen(body) : 0};
	struct httpc_response r;
	json_t *j;
	int rc = httpc_request(k->url, &q, &r);

	*out = NULL;
	if (rc < 0) {
		fprintf(stderr,
			"goldctl: cannot reach goldcached at '%s': %s (--url or GOLDCACHE_URL)\n",
			k->url, strerror(-rc));
		return CTL_FAILED;
	}
	j = json_loadb(r.body, r.len, 0, NULL);
	if (r.status != 200) {
		const char *msg =
			json_string_value(json_object_get(json_object_get(j, "error"), "message"));

		fprintf(stderr, "goldctl: %s (HTTP %d)\n", msg ? msg : "request failed", r.status);
		json_decref(j);
		httpc_response_release(&r);
		return r.status == 404 || (r.status == 400 && msg && strstr(msg, "no profile"))
			       ? CTL_NOT_FOUND
		       : r.status == 400 ? CTL_USAGE
					 : CTL_FAILED;
	}
	httpc_response_release(&r);
	if (!j) {
		fprintf(stderr, "goldctl: goldcached sent a response that is not JSON\n");
		return CTL_FAILED;
	}
	*out = j;
	return CTL_OK;
}

static const char *when(json_t *v, char *buf, size_t size)
{
	time_t t;
	struct tm tm;

	if (!json_is_integer(v))
		return "-";
	t = (time_t)json_integer_value(v);
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%d %H:%M:%SZ", &tm);
	return buf;
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "-";
}

static void hydrated(json_t *m, char *buf, size_t size)
{
	json_t *h = json_object_get(json_object_get(m, "state"), "hydrated_pct");

	if (json_is_number(h))
		snprintf(buf, size, "%.0f%%", json_number_value(h));
	else
		snprintf(buf, size, "-");
}

static int cmd_list(struct ctl *c, int argc, char **argv)
{
	struct conn k;
	json_t *j, *arr, *m;
	size_t i;
	int rc;

	argc = conn_open(c, argc, argv, &k);
	if (argc != 0) {
		conn_close(&k);
		return argc < 0 ? CTL_USAGE : ctl_usage(c);
	}
	rc = call(&k, "GET", "/api/v1/machines", NULL, &j);
	conn_close(&k);
	if (rc)
		return rc;
	arr = json_object_get(j, "machines");
	if (c->json) {
		ctl_json_print(json_incref(arr));
		json_decref(j);
		return CTL_OK;
	}
	printf("%-20s %-17s %-12s %-8s %-8s %-21s %s\n", "NAME", "MAC", "PROFILE", "MODE", "SOURCE",
	       "LAST BOOT", "HYDRATED");
	json_array_foreach(arr, i, m)
	{
		char t[32], h[16];

		hydrated(m, h, sizeof(h));
		printf("%-20s %-17s %-12s %-8s %-8s %-21s %s\n", str(m, "name"), str(m, "mac"),
		       str(m, "profile"), str(m, "mode"), str(m, "source"),
		       when(json_object_get(m, "last_boot"), t, sizeof(t)), h);
	}
	json_decref(j);
	return CTL_OK;
}

/* The pending restore/reset order (docs/restore.md): what the next attach
 * carries out, and where the appliance serves its snapshot. */
static void print_order(json_t *h)
{
	const char *from = json_string_value(json_object_get(h, "from"));
	const char *ls = json_string_value(json_object_get(h, "lun_state"));

	if (!json_is_object(h)) {
		printf("pending order:    -\n");
		return;
	}
	if (from) {
		char lun[24] = "-";

		if (json_is_integer(json_object_get(h, "lun")))
			snprintf(lun, sizeof(lun), "%lld",
				 (long long)json_integer_value(json_object_get(h, "lun")));
		printf("pending order:    %s from %s@%lld (order %lld), LUN %s%s%s\n",
		       str(h, "kind"), from,
		       (long long)json_integer_value(json_object_get(h, "snapshot")),
		       (long long)json_integer_value(json_object_get(h, "id")), lun, ls ? ": " : "",
		       ls ? ls : "");
	} else {
		printf("pending order:    %s to a fresh volume (order %lld)\n", str(h, "kind"),
		       (long long)json_integer_value(json_object_get(h, "id")));
	}
}

static void print_machine(json_t *m)
{
	char t[32], h[16];
	json_t *st = json_object_get(m, "state");

	hydrated(m, h, sizeof(h));
	printf("name:             %s\n", str(m, "name"));
	printf("mac:              %s\n", str(m, "mac"));
	printf("source:           %s\n", str(m, "source"));
	printf("profile:          %s\n", str(m, "profile"));
	printf("config profile:   %s\n", str(m, "config_profile"));
	printf("assigned profile: %s\n", str(m, "assigned_profile"));
	printf("mode:             %s\n", str(m, "mode"));
	printf("image:            %s\n", str(m, "image"));
	printf("first seen:       %s\n", when(json_object_get(m, "first_seen"), t, sizeof(t)));
	printf("last boot:        %s\n", when(json_object_get(m, "last_boot"), t, sizeof(t)));
	printf("last sync:        %s\n", when(json_object_get(m, "last_sync"), t, sizeof(t)));
	printf("state reported:   %s\n", when(json_object_get(m, "state_at"), t, sizeof(t)));
	printf("hydrated:         %s\n", h);
	printf("enrolled:         %s\n",
	       json_is_true(json_object_get(m, "enrolled")) ? "yes" : "no");
	print_order(json_object_get(m, "hydrate"));
	if (json_is_object(st)) {
		char *s = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);

		printf("state:            %s\n", s ? s : "-");
		free(s);
	}
}

/* show NAME, assign NAME PROFILE, unassign NAME, token NAME */
static int machine_op(struct ctl *c, int argc, char **argv, int nargs, const char *method,
		      const char *suffix, int want_token)
{
	struct conn k;
	json_t *j = NULL, *b = NULL;
	char *name, *path, *body = NULL;
	int rc;

	argc = conn_open(c, argc, argv, &k);
	if (argc != nargs) {
		conn_close(&k);
		return argc < 0 ? CTL_USAGE : ctl_usage(c);
	}
	name = seg(argv[0]);
	path = xasprintf("/api/v1/machines/%s%s", name, suffix);
	if (strcmp(suffix, "/assign") == 0) {
		b = json_pack("{s:o}", "profile", nargs == 2 ? json_string(argv[1]) : json_null());
		body = json_dumps(b, JSON_COMPACT);
		json_decref(b);
	}
	rc = call(&k, method, path, body, &j);
	conn_close(&k);
	free(body);
	free(path);
	free(name);
	if (rc)
		return rc;
	if (c->json)
		ctl_json_print(json_incref(j));
	else if (want_token)
		printf("%s\n", str(j, "token"));
	else
		print_machine(j);
	json_decref(j);
	return CTL_OK;
}

static int cmd_show(struct ctl *c, int argc, char **argv)
{
	return machine_op(c, argc, argv, 1, "GET", "", 0);
}

static int cmd_assign(struct ctl *c, int argc, char **argv)
{
	return machine_op(c, argc, argv, 2, "POST", "/assign", 0);
}

static int cmd_unassign(struct ctl *c, int argc, char **argv)
{
	return machine_op(c, argc, argv, 1, "POST", "/assign", 0);
}

static int cmd_token(struct ctl *c, int argc, char **argv)
{
	return machine_op(c, argc, argv, 1, "POST", "/token", 1);
}

#define CONN_ARGS "[--url URL] [--token-file FILE]"

const struct ctl_command ctl_machine_commands[] = {
	{"machine", "list", CONN_ARGS,
	 "machines known to goldcached (config and seen), their state", cmd_list},
	{"machine", "show", "NAME|MAC " CONN_ARGS, "one machine in detail", cmd_show},
	{"machine", "assign", "NAME|MAC PROFILE " CONN_ARGS,
	 "boot PROFILE from the machine's next boot on (no restart)", cmd_assign},
	{"machine", "unassign", "NAME|MAC " CONN_ARGS,
	 "drop the assignment: the config's profile applies again at the next boot", cmd_unassign},
	{"machine", "token", "NAME|MAC " CONN_ARGS,
	 "issue a new agent token for the machine (printed once; the old one stops working)",
	 cmd_token},
	{NULL, NULL, NULL, NULL, NULL},
};

int ctl_machine_post(struct ctl *c, int argc, char **argv, const char *suffix, json_t *body)
{
	struct conn k;
	json_t *j = NULL;
	char *name, *path, *text;
	int rc;

	argc = conn_open(c, argc, argv, &k);
	if (argc != 1) {
		conn_close(&k);
		json_decref(body);
		return argc < 0 ? CTL_USAGE : ctl_usage(c);
	}
	name = seg(argv[0]);
	path = xasprintf("/api/v1/machines/%s%s", name, suffix);
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	rc = call(&k, "POST", path, text, &j);
	conn_close(&k);
	free(text);
	free(path);
	free(name);
	if (rc)
		return rc;
	if (c->json)
		ctl_json_print(json_incref(j));
	else
		print_machine(j);
	json_decref(j);
	return CTL_OK;
}
