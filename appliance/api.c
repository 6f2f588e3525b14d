/* goldcached's routes (see api.h and docs/api.md).
 *
 * A route is (method, pattern, who may call it, handler). Patterns are literal
 * segments and '*' captures; the decoded path is matched segment by segment,
 * captures are bounded and never "." or "..". Unknown path: 404; known path,
 * other method: 405. Every error body is {"error": {"status", "message"}}.
 *
 * Who: NONE (iPXE and health: nothing to present), ADMIN (the admin token),
 * ANY (admin or any enrolled agent), SELF (admin, or the agent of the machine
 * named in the path: another machine's token gets 403). Tokens are compared by
 * their SHA-256: the admin token with a constant-time compare, agent tokens by
 * an index lookup of the hash (256-bit random tokens: the hash is the secret's
 * stand-in, and a lookup's timing says nothing about the token).
 *
 * Boot scripts: MAC -> config (machines, then groups, then the unknown policy)
 * -> the registry records first_seen/last_boot -> an assignment in the registry
 * overrides the config's profile -> the profile's mode picks the template. So
 * `goldctl machine assign` takes effect at the next boot, with no restart.
 *
 * Agent tokens are issued, never stored in clear: by enrollment (the first
 * claim within API_ENROLL_WINDOW_S of the machine's boot script, trust on first
 * use; a diskless stream machine may claim once per boot script, its earlier
 * token being lost with its RAM, from its own MAC as far as the neighbour table
 * tells) or by an admin (POST .../token, printed once). A boot script never
 * holds a token: it is served without authentication to anyone who names the
 * MAC. A sanboot script must carry the CHAP secret (iPXE's limit), so it is
 * refused to a boot-network neighbour whose MAC (kernel neighbour table) is not
 * the machine's. */
#include "appliance/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/delta.h"
#include "appliance/image.h"
#include "appliance/registry.h"
#include "appliance/snapshot.h"
#include "appliance/store.h"
#include "appliance/sync.h"
#include "bootscripts/bootscript.h"
#include "lib/delta.h"
#include "lib/hash.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"
#include "targets/iqn.h"

#define MAX_CAPS 3
#define SEG_MAX 128

struct api {
	const struct config *cfg;
	struct registry *reg;
	struct store *store;
	struct hash admin_hash;
	int (*chap_secret)(void *arg, const struct config_machine *m, const char *name, char **out);
	void (*health)(void *arg, json_t *obj);
	struct sync *sync;
	int (*restore_lun)(void *arg, const char *machine, const char *from, uint32_t snap,
			   uint64_t *size);
	void *cb_arg;
	int64_t (*clock)(void);
	int64_t started;
	char *neigh_path;
	struct delta_gen *delta; /* NULL: no store */
	/* counters for GET /metrics */
	uint64_t by_status[6]; /* 1xx..5xx by first digit; [0]: other */
	uint64_t scripts[BOOT_MODE_N];
	uint64_t sanboot_refused;
	/* SHA-256 of the boot files served, keyed by what stat says of them (a
	 * replaced or rewritten file misses, ctime included): GET /boot/images/IMAGE/sums hashes a
	 * file once, not at every machine's boot */
	struct bootsum {
		dev_t dev;
		ino_t ino;
		off_t size;
		struct timespec mtime, ctime;
		struct hash h;
	} bootsums[8];
	unsigned bootsums_next;
};

enum who { WHO_NONE, WHO_ADMIN, WHO_ANY, WHO_SELF };

struct caller {
	int admin;
	char mac[18]; /* the agent's machine when not admin */
};

struct ctx {
	struct api *a;
	const struct http_request *req;
	struct http_response *resp;
	char caps[MAX_CAPS][SEG_MAX + 1];
	int ncaps;
	struct caller caller;
};

/* A machine named in a path: its canonical MAC and name. */
struct mref {
	uint8_t mac[6];
	char mac_str[CONFIG_MAC_STRLEN];
	char name[65];
	struct config_match match;
	int matched; /* config_machine_by_mac returned a profile */
};

static int64_t api_now(const struct api *a)
{
	return a->clock ? a->clock() : now_unix();
}

/* ---- routing ---- */

int api_route_match(const char *pattern, const char *path, char caps[][129], int maxcaps)
{
	const char *p = pattern, *s = path;
	int n = 0;

	if (*p != '/' || *s != '/')
		return -1;
	while (*p == '/' && *s == '/') {
		const char *pe, *se;
		size_t pl, sl;

		p++, s++;
		pe = strchr(p, '/');
		se = strchr(s, '/');
		pl = pe ? (size_t)(pe - p) : strlen(p);
		sl = se ? (size_t)(se - s) : strlen(s);
		if (pl == 1 && *p == '*') {
			if (sl == 0 || sl > SEG_MAX || n >= maxcaps || (sl == 1 && s[0] == '.') ||
			    (sl == 2 && s[0] == '.' && s[1] == '.'))
				return -1;
			memcpy(caps[n], s, sl);
			caps[n][sl] = '\0';
			n++;
		} else if (pl != sl || memcmp(p, s, pl) != 0) {
			return -1;
		}
		p += pl;
		s += sl;
	}
	return *p == '\0' && *s == '\0' ? n : -1;
}

/* ---- responses ---- */

static void send_json(struct ctx *c, int status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

	json_decref(j);
	if (!s) {
		http_error(c->resp, 500, "cannot encode the response");
		return;
	}
	c->resp->status = status;
	c->resp->content_type = "application/json";
	c->resp->body = xasprintf("%s\n", s);
	c->resp->len = strlen(c->resp->body);
	free(s);
}

static void send_text(struct ctx *c, int status, char *text, size_t len)
{
	c->resp->status = status;
	c->resp->content_type = "text/plain; charset=utf-8";
	c->resp->body = text;
	c->resp->len = len;
}

static json_t *opt_str(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

static json_t *opt_time(int64_t t)
{
	return t ? json_integer(t) : json_null();
}

/* ---- auth ---- */

static int authenticate(struct ctx *c, enum who who)
{
	const char *h = c->req->authorization;
	char tok[256];
	struct hash th;
	size_t n;

	if (who == WHO_NONE)
		return 0;
	if (!h) {
		http_error(c->resp, 401, "this route needs \"Authorization: Bearer TOKEN\"");
		return -EACCES;
	}
	if (strncasecmp(h, "Bearer ", 7) != 0) {
		http_error(c->resp, 401, "Authorization must use the Bearer scheme");
		return -EACCES;
	}
	h += 7;
	while (*h == ' ')
		h++;
	n = strlen(h);
	while (n && h[n - 1] == ' ')
		n--;
	if (n == 0 || n >= sizeof(tok)) {
		http_error(c->resp, 401, "malformed bearer token");
		return -EACCES;
	}
	memcpy(tok, h, n);
	tok[n] = '\0';
	hash_buf(tok, n, &th);
	if (CRYPTO_memcmp(th.b, c->a->admin_hash.b, HASH_LEN) == 0) {
		c->caller.admin = 1;
	} else if (registry_token_lookup(c->a->reg, tok, c->caller.mac) == 0) {
		c->caller.admin = 0;
	} else {
		explicit_bzero(tok, sizeof(tok));
		http_error(c->resp, 401, "invalid token");
		return -EACCES;
	}
	explicit_bzero(tok, sizeof(tok));
	if (who == WHO_ADMIN && !c->caller.admin) {
		http_error(c->resp, 403, "this route needs the admin token");
		return -EPERM;
	}
	return 0;
}

/* SELF routes: the admin, or the agent of the machine the path names. */
static int check_self(struct ctx *c, const struct mref *m)
{
	if (c->caller.admin || strcmp(c->caller.mac, m->mac_str) == 0)
		return 0;
	http_error(c->resp, 403, "this token belongs to another machine");
	return -EPERM;
}

/* ---- machines ---- */

static void mac_hyphen(const uint8_t mac[6], char out[CONFIG_MAC_STRLEN])
{
	snprintf(out, CONFIG_MAC_STRLEN, "%02x-%02x-%02x-%02x-%02x-%02x", mac[0], mac[1], mac[2],
		 mac[3], mac[4], mac[5]);
}

/* Fills m from a MAC: the config's view and the machine's name (config name,
 * else the registry's, else the MAC in hyphen form like config's default). */
static void mref_from_mac(struct api *a, const uint8_t mac[6], const char *reg_name, struct mref *m)
{
	memset(m, 0, sizeof(*m));
	memcpy(m->mac, mac, 6);
	config_mac_format(mac, m->mac_str);
	m->matched = config_machine_by_mac(a->cfg, mac, &m->match) == 0;
	if (m->match.kind == CONFIG_MATCH_MACHINE && m->match.machine)
		snprintf(m->name, sizeof(m->name), "%s", m->match.machine->name);
	else if (reg_name && *reg_name)
		snprintf(m->name, sizeof(m->name), "%s", reg_name);
	else
		mac_hyphen(mac, m->name);
}

/* Resolves NAME from a path: a MAC (any form), a config name or a registry
 * name. 0 or -ENOENT. */
static int mref_resolve(struct api *a, const char *ref, struct mref *m)
{
	const struct config_machine *cm;
	struct registry_machine rm;
	uint8_t mac[6];

	if (config_mac_parse(ref, mac) == 0) {
		char s[CONFIG_MAC_STRLEN];
		int have;

		config_mac_format(mac, s);
		have = registry_get_by_mac(a->reg, s, &rm) == 0;
		mref_from_mac(a, mac, have ? rm.name : NULL, m);
		if (have)
			registry_machine_release(&rm);
		return 0;
	}
	cm = config_machine_by_name(a->cfg, ref);
	if (cm) {
		mref_from_mac(a, cm->mac, NULL, m);
		return 0;
	}
	if (registry_get_by_name(a->reg, ref, &rm) == 0) {
		int rc = config_mac_parse(rm.mac, mac);

		if (rc == 0)
			mref_from_mac(a, mac, rm.name, m);
		registry_machine_release(&rm);
		return rc == 0 ? 0 : -ENOENT;
	}
	return -ENOENT;
}

static const char *source_name(const struct mref *m)
{
	switch (m->match.kind) {
	case CONFIG_MATCH_MACHINE:
		return "machine";
	case CONFIG_MATCH_GROUP:
		return "group";
	case CONFIG_MATCH_UNKNOWN:
		return "unknown";
	default:
		return "refused";
	}
}

/* The profile a machine boots: its assignment when that profile exists in the
 * config, else the config's match (NULL: refused). */
static const struct config_profile *effective_profile(struct api *a, const struct mref *m,
						      const char *assigned)
{
	if (assigned && *assigned) {
		const struct config_profile *p = config_profile_by_name(a->cfg, assigned);

		if (p)
			return p;
		log_warn("machine '%s': assigned profile '%s' is not in the config; using the "
			 "config's",
			 m->name, assigned);
	}
	return m->matched ? m->match.profile : NULL;
}

/* Where the agent reads the snapshot its order names (docs/restore.md): "lun"
 * (RESTORE_LUN on its own target once tgtd serves it, else null), "size" (the
 * LUN's bytes, null until then) and "lun_state": "ready", "preparing" (being
 * exported or added to the target), "failed" (the export failed: retried), or
 * "none" (a fresh reset needs no LUN). */
static void hydrate_lun_json(struct api *a, const struct mref *m, json_t *h)
{
	const char *from = json_string_value(json_object_get(h, "from"));
	json_int_t snap = json_integer_value(json_object_get(h, "snapshot"));
	uint64_t size = 0;
	int lun = 0;

	if (!from || snap <= 0 || snap > UINT32_MAX) {
		json_object_set_new(h, "lun", json_null());
		json_object_set_new(h, "size", json_null());
		json_object_set_new(h, "lun_state", json_string("none"));
		return;
	}
	if (a->restore_lun)
		lun = a->restore_lun(a->cb_arg, m->name, from, (uint32_t)snap, &size);
	json_object_set_new(h, "lun", lun > 0 ? json_integer(lun) : json_null());
	json_object_set_new(h, "size", lun > 0 ? json_integer((json_int_t)size) : json_null());
	json_object_set_new(h, "lun_state",
			    json_string(lun > 0	  ? "ready"
					: lun < 0 ? "failed"
						  : "preparing"));
}

/* Sync fields of a machine (docs/sync.md): its volume, newest snapshot and the
 * pending hydrate order its next attach must carry out. */
static void machine_json_sync(struct api *a, const struct mref *m,
			      const struct registry_machine *rm, const struct config_profile *p,
			      json_t *j)
{
	json_t *h = rm && rm->hydrate ? json_loads(rm->hydrate, 0, NULL) : NULL;
	uint32_t latest = 0;
	int cache = p && p->mode == CONFIG_MODE_CACHE, syncs = cache && p->persist;

	if (a->store && snapshot_latest(a->store, m->name, &latest) < 0)
		latest = 0;
	/* persist: false keeps a local volume too (reset at every boot): its size */
	json_object_set_new(j, "volume_size",
			    cache ? json_integer((json_int_t)p->volume_size) : json_null());
	json_object_set_new(j, "latest_snapshot", latest ? json_integer(latest) : json_null());
	json_object_set_new(j, "sync_interval",
			    syncs ? json_integer((json_int_t)p->sync_interval_s) : json_null());
	json_object_set_new(j, "persist", json_boolean(!p || p->persist));
	if (h)
		hydrate_lun_json(a, m, h);
	json_object_set_new(j, "hydrate", h ? h : json_null());
}

static json_t *machine_json(struct api *a, const struct mref *m, const struct registry_machine *rm)
{
	const struct config_profile *p = effective_profile(a, m, rm ? rm->assigned_profile : NULL);
	json_t *j = json_object(), *state = NULL;

	if (rm && rm->state)
		state = json_loads(rm->state, 0, NULL);
	json_object_set_new(j, "name", json_string(m->name));
	json_object_set_new(j, "mac", json_string(m->mac_str));
	json_object_set_new(j, "source", json_string(source_name(m)));
	json_object_set_new(j, "config_profile",
			    opt_str(m->matched ? m->match.profile->name : NULL));
	json_object_set_new(j, "assigned_profile", opt_str(rm ? rm->assigned_profile : NULL));
	json_object_set_new(j, "profile", opt_str(p ? p->name : NULL));
	json_object_set_new(j, "mode", opt_str(p ? config_mode_name(p->mode) : NULL));
	json_object_set_new(j, "image", opt_str(p && p->image_ref ? p->image_ref->name : NULL));
	json_object_set_new(j, "first_seen", opt_time(rm ? rm->first_seen : 0));
	json_object_set_new(j, "last_boot", opt_time(rm ? rm->last_boot : 0));
	json_object_set_new(j, "last_sync", opt_time(rm ? rm->last_sync : 0));
	json_object_set_new(j, "state_at", opt_time(rm ? rm->state_at : 0));
	json_object_set_new(j, "state", state ? state : json_null());
	json_object_set_new(j, "enrolled", json_boolean(rm && rm->has_token));
	machine_json_sync(a, m, rm, p, j);
	return j;
}

struct list_ctx {
	struct api *a;
	json_t *arr, *seen;
};

static int list_row(const struct registry_machine *rm, void *arg)
{
	struct list_ctx *l = arg;
	struct mref m;
	uint8_t mac[6];

	if (config_mac_parse(rm->mac, mac) < 0)
		return 0;
	mref_from_mac(l->a, mac, rm->name, &m);
	json_array_append_new(l->arr, machine_json(l->a, &m, rm));
	json_object_set_new(l->seen, m.mac_str, json_true());
	return 0;
}

static void h_machines(struct ctx *c)
{
	struct list_ctx l = {.a = c->a, .arr = json_array(), .seen = json_object()};
	int rc = registry_each(c->a->reg, list_row, &l);

	if (rc < 0) {
		json_decref(l.arr);
		json_decref(l.seen);
		http_error(c->resp, 500, "cannot read the machine registry");
		return;
	}
	for (size_t i = 0; i < c->a->cfg->n_machines; i++) {
		const struct config_machine *cm = &c->a->cfg->machines[i];
		struct mref m;

		if (json_object_get(l.seen, cm->mac_str))
			continue;
		mref_from_mac(c->a, cm->mac, NULL, &m);
		json_array_append_new(l.arr, machine_json(c->a, &m, NULL));
	}
	json_decref(l.seen);
	send_json(c, 200, json_pack("{s:o}", "machines", l.arr));
}

/* Resolves caps[0] to a machine, answering 404 itself. */
static int path_machine(struct ctx *c, struct mref *m)
{
	if (mref_resolve(c->a, c->caps[0], m) == 0)
		return 0;
	http_error(c->resp, 404, "no machine '%s' (give its name or MAC)", c->caps[0]);
	return -ENOENT;
}

static void reply_machine(struct ctx *c, const struct mref *m, int status)
{
	struct registry_machine rm;
	int have = registry_get_by_mac(c->a->reg, m->mac_str, &rm) == 0;

	send_json(c, status, machine_json(c->a, m, have ? &rm : NULL));
	if (have)
		registry_machine_release(&rm);
}

static void h_machine(struct ctx *c)
{
	struct mref m;

	if (path_machine(c, &m) < 0 || check_self(c, &m) < 0)
		return;
	reply_machine(c, &m, 200);
}

static json_t *parse_body(struct ctx *c)
{
	json_error_t err;
	json_t *j;

	if (c->req->body_len == 0) {
		http_error(c->resp, 400, "this route needs a JSON object body");
		return NULL;
	}
	j = json_loadb(c->req->body, c->req->body_len, JSON_REJECT_DUPLICATES, &err);
	if (!j) {
		http_error(c->resp, 400, "body is not valid JSON: %s at line %d column %d",
			   err.text, err.line, err.column);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		http_error(c->resp, 400, "body must be a JSON object");
		return NULL;
	}
	return j;
}

/* The agent's state report: known keys with checked types only. */
static int state_validate(struct ctx *c, json_t *j, int64_t *last_sync)
{
	const char *k;
	json_t *v;

	*last_sync = 0;
	json_object_foreach(j, k, v)
	{
		int good;

		if (!strcmp(k, "hydrated_pct"))
			good = json_is_number(v) && json_number_value(v) >= 0 &&
			       json_number_value(v) <= 100;
		else if (!strcmp(k, "dirty_bytes") || !strcmp(k, "cache_bytes") ||
			 !strcmp(k, "last_sync") || !strcmp(k, "version"))
			good = json_is_integer(v) && json_integer_value(v) >= 0;
		else if (!strcmp(k, "image") || !strcmp(k, "mode") || !strcmp(k, "agent"))
			good = json_is_string(v) && strlen(json_string_value(v)) <= 128;
		else if (!strcmp(k, "cache_complete") || !strcmp(k, "online"))
			good = json_is_boolean(v);
		else {
			http_error(c->resp, 400,
				   "unknown state key '%.64s' (known: hydrated_pct, dirty_bytes, "
				   "cache_bytes, version, image, mode, last_sync, cache_complete, "
				   "online, agent)",
				   k);
			return -EINVAL;
		}
		if (!good) {
			http_error(c->resp, 400, "state key '%s' has the wrong type or range", k);
			return -EINVAL;
		}
		if (!strcmp(k, "last_sync"))
			*last_sync = json_integer_value(v);
	}
	return 0;
}

static void h_state(struct ctx *c)
{
	struct mref m;
	json_t *j;
	char *text = NULL;
	int64_t last_sync;
	int rc;

	if (path_machine(c, &m) < 0 || check_self(c, &m) < 0)
		return;
	j = parse_body(c);
	if (!j)
		return;
	if (state_validate(c, j, &last_sync) < 0)
		goto out;
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text || strlen(text) > REGISTRY_STATE_MAX) {
		http_error(c->resp, 413, "state report larger than %d bytes", REGISTRY_STATE_MAX);
		goto out;
	}
	rc = registry_ensure(c->a->reg, m.mac_str, m.name, api_now(c->a));
	if (rc == 0)
		rc = registry_set_state(c->a->reg, m.mac_str, text, last_sync, api_now(c->a));
	if (rc < 0) {
		http_error(c->resp, 500, "cannot store the state of '%s'", m.name);
		goto out;
	}
	reply_machine(c, &m, 200);
out:
	free(text);
	json_decref(j);
}

static void h_assign(struct ctx *c)
{
	struct mref m;
	json_t *j, *p;
	const char *profile = NULL;
	int rc;

	if (path_machine(c, &m) < 0)
		return;
	j = parse_body(c);
	if (!j)
		return;
	p = json_object_get(j, "profile");
	if (!p || json_object_size(j) != 1 || !(json_is_string(p) || json_is_null(p))) {
		http_error(c->resp, 400,
			   "body must be {\"profile\": NAME} (or {\"profile\": null} to go back to "
			   "the config's profile)");
		goto out;
	}
	if (json_is_string(p)) {
		profile = json_string_value(p);
		if (!config_profile_by_name(c->a->cfg, profile)) {
			http_error(c->resp, 400, "no profile '%.64s' in the config", profile);
			goto out;
		}
	}
	rc = registry_ensure(c->a->reg, m.mac_str, m.name, api_now(c->a));
	if (rc == 0)
		rc = registry_assign(c->a->reg, m.mac_str, profile);
	if (rc < 0) {
		http_error(c->resp, 500, "cannot store the assignment of '%s'", m.name);
		goto out;
	}
	log_info("machine '%s' (%s) assigned profile '%s': takes effect at its next boot", m.name,
		 m.mac_str, profile ? profile : "(config's)");
	reply_machine(c, &m, 200);
out:
	json_decref(j);
}

static void reply_token(struct ctx *c, const struct mref *m, const char *tok)
{
	send_json(c, 200,
		  json_pack("{s:s,s:s,s:s}", "machine", m->name, "mac", m->mac_str, "token", tok));
}

static void h_token(struct ctx *c)
{
	char tok[REGISTRY_TOKEN_HASH_HEX + 1];
	struct mref m;
	int rc;

	if (path_machine(c, &m) < 0)
		return;
	rc = registry_ensure(c->a->reg, m.mac_str, m.name, api_now(c->a));
	if (rc == 0)
		rc = registry_token_issue(c->a->reg, m.mac_str, tok, api_now(c->a));
	if (rc < 0) {
		http_error(c->resp, 500, "cannot issue a token for '%s'", m.name);
		return;
	}
	log_info("issued a new agent token for machine '%s' (admin)", m.name);
	reply_token(c, &m, tok);
	explicit_bzero(tok, sizeof(tok));
}

static int peer_mac(const char *table, const char *peer, char mac[CONFIG_MAC_STRLEN]);

static void h_enroll(struct ctx *c)
{
	char tok[REGISTRY_TOKEN_HASH_HEX + 1];
	const struct config_profile *prof;
	struct registry_machine rm;
	struct mref m;
	int64_t now = api_now(c->a);
	int rc, rebooted;

	if (path_machine(c, &m) < 0)
		return;
	if (registry_get_by_mac(c->a->reg, m.mac_str, &rm) < 0) {
		http_error(c->resp, 403, "machine '%s' has not booted from this appliance yet",
			   m.name);
		return;
	}
	prof = effective_profile(c->a, &m, rm.assigned_profile);
	/* A stream machine is diskless: its agent token is gone at every reboot. Each
	 * boot script served to it opens one enrollment, which replaces the token of
	 * an earlier boot (trust on first use, per boot); a second claim for the same
	 * boot is still refused. */
	rebooted = rm.has_token && prof && prof->mode == CONFIG_MODE_STREAM &&
		   rm.token_at < rm.last_boot;
	rc = rm.has_token && !rebooted ? -EEXIST
	     : (!rm.last_boot || now - rm.last_boot > API_ENROLL_WINDOW_S || now < rm.last_boot)
		     ? -ETIME
		     : 0;
	registry_machine_release(&rm);
	if (rc == -EEXIST) {
		http_error(c->resp, 409,
			   "machine '%s' is already enrolled; an admin can issue a new token with "
			   "'goldctl machine token %s'",
			   m.name, m.name);
		return;
	}
	if (rc == -ETIME) {
		http_error(c->resp, 403,
			   "enrollment of '%s' is open only for %d s after its boot script was "
			   "served",
			   m.name, API_ENROLL_WINDOW_S);
		return;
	}
	if (rebooted) {
		char seen[CONFIG_MAC_STRLEN];

		/* anyone may fetch a boot script: a claim that would kill the running
		 * machine's token must come from the machine, as far as we can tell */
		if (peer_mac(c->a->neigh_path, c->req->peer, seen) == 0 &&
		    strcmp(seen, m.mac_str) != 0) {
			log_warn("new token of stream machine '%s' (%s) refused to %s, whose MAC "
				 "is %s",
				 m.name, m.mac_str, c->req->peer, seen);
			http_error(c->resp, 403,
				   "a stream machine's new token is issued only to the machine "
				   "itself");
			return;
		}
	}
	rc = registry_token_issue(c->a->reg, m.mac_str, tok, now);
	if (rc < 0) {
		http_error(c->resp, 500, "cannot issue a token for '%s'", m.name);
		return;
	}
	log_info("machine '%s' (%s) enrolled from %s%s", m.name, m.mac_str, c->req->peer,
		 rebooted ? " (stream mode: a new token for this boot)" : "");
	reply_token(c, &m, tok);
	explicit_bzero(tok, sizeof(tok));
}

/* ---- images ---- */

static int need_store(struct ctx *c)
{
	if (c->a->store)
		return 0;
	http_error(c->resp, 503, "the image store is not open");
	return -ENODEV;
}

static void h_images(struct ctx *c)
{
	struct image_info *im = NULL;
	size_t n = 0;
	json_t *arr;

	if (need_store(c) < 0)
		return;
	if (image_list(c->a->store, &im, &n) < 0) {
		http_error(c->resp, 500, "cannot list the images in the store");
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(
			arr, json_pack("{s:s,s:o,s:I,s:I,s:I}", "name", im[i].name, "current",
				       im[i].current ? json_integer(im[i].current) : json_null(),
				       "versions", (json_int_t)im[i].nversions, "latest",
				       (json_int_t)im[i].latest, "size", (json_int_t)im[i].size));
	free(im);
	send_json(c, 200, json_pack("{s:o}", "images", arr));
}

static void h_image(struct ctx *c)
{
	struct version_info *v = NULL;
	size_t n = 0;
	json_t *arr;
	int rc;

	if (need_store(c) < 0)
		return;
	if (!name_is_valid(c->caps[0])) {
		http_error(c->resp, 400, "'%.64s' is not a valid image name", c->caps[0]);
		return;
	}
	rc = image_versions(c->a->store, c->caps[0], &v, &n);
	if (rc == -ENOENT) {
		http_error(c->resp, 404, "no image '%s' in the store", c->caps[0]);
		return;
	}
	if (rc < 0) {
		http_error(c->resp, 500, "cannot read the versions of '%s'", c->caps[0]);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(
			arr,
			json_pack("{s:I,s:o,s:I,s:s,s:I,s:I,s:I,s:I,s:b}", "version",
				  (json_int_t)v[i].version, "parent",
				  v[i].parent ? json_integer(v[i].parent) : json_null(), "created",
				  (json_int_t)v[i].created, "kind", manifest_kind_str(v[i].kind),
				  "size", (json_int_t)v[i].size, "chunks", (json_int_t)v[i].nchunks,
				  "zero_chunks", (json_int_t)v[i].zero_chunks, "chunk_size",
				  (json_int_t)v[i].chunk_size, "current", v[i].current));
	free(v);
	send_json(c, 200, json_pack("{s:s,s:o}", "name", c->caps[0], "versions", arr));
}

/* Opens the manifest file of name@version in the store: manifests are
 * immutable and published by rename, so an open fd reads one whole version even
 * if it is removed meanwhile. Layout: images/NAME/versions/N.manifest
 * (appliance/image.c). */
static int manifest_open(struct store *s, const char *name, uint32_t version, int *fd,
			 uint64_t *size)
{
	char path[4096];
	struct stat st;
	int f;

	if (store_path(s, path, sizeof(path), "images/%s/versions/%" PRIu32 ".manifest", name,
		       version) < 0)
		return -ENAMETOOLONG;
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -errno;
	if (fstat(f, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(f);
		return -EIO;
	}
	*fd = f;
	*size = (uint64_t)st.st_size;
	return 0;
}

static void h_manifest(struct ctx *c)
{
	uint32_t version = 0;
	uint64_t size = 0;
	int fd = -1, rc;

	if (need_store(c) < 0)
		return;
	if (!name_is_valid(c->caps[0])) {
		http_error(c->resp, 400, "'%.64s' is not a valid image name", c->caps[0]);
		return;
	}
	if (strcmp(c->caps[1], "current") == 0)
		rc = image_current(c->a->store, c->caps[0], &version);
	else
		rc = parse_u32(c->caps[1], &version) < 0 || version == 0 ? -EINVAL : 0;
	if (rc == -EINVAL) {
		http_error(c->resp, 400, "version must be a number or 'current'");
		return;
	}
	if (rc == 0)
		rc = manifest_open(c->a->store, c->caps[0], version, &fd, &size);
	if (rc == -ENOENT) {
		http_error(c->resp, 404, "no version %s of image '%s'", c->caps[1], c->caps[0]);
		return;
	}
	if (rc < 0) {
		log_error("cannot open the manifest of '%s@%s': %s", c->caps[0], c->caps[1],
			  strerror(-rc));
		http_error(c->resp, 500, "cannot read the manifest of '%s@%s'", c->caps[0],
			   c->caps[1]);
		return;
	}
	c->resp->status = 200;
	c->resp->content_type = "text/plain; charset=utf-8";
	c->resp->fd = fd;
	c->resp->fd_size = size;
}

/* ---- boot ---- */

static void refuse(struct ctx *c, const struct mref *m)
{
	struct bootscript_params p = {.mode = BOOT_REFUSE, .mac = m->mac_str};
	char *out = NULL;
	size_t len = 0;

	if (bootscript_render(&p, &out, &len) < 0) {
		http_error(c->resp, 500, "cannot render the refusal script");
		return;
	}
	send_text(c, 200, out, len);
	c->a->scripts[BOOT_REFUSE]++;
}

/* The version machines boot: pinned in the config, else the store's current. */
static int image_version(struct api *a, const struct config_image *img, uint32_t *v)
{
	if (strcmp(img->version, "current") != 0)
		return parse_u32(img->version, v);
	if (!a->store)
		return -ENODEV;
	return image_current(a->store, img->name, v);
}

/* The MAC the kernel's neighbour table (/proc/net/arp format) holds for the
 * IPv4 address of peer ("ADDR:PORT"). 0 and mac (lower-case colon form),
 * -ENOENT when the peer is not a resolved neighbour (loopback, routed, IPv6). */
static int peer_mac(const char *table, const char *peer, char mac[CONFIG_MAC_STRLEN])
{
	char ip[INET_ADDRSTRLEN], line[256];
	const char *colon = strrchr(peer, ':');
	struct in_addr tmp;
	int rc = -ENOENT, lines = 0;
	FILE *f;

	if (!colon || (size_t)(colon - peer) >= sizeof(ip))
		return -ENOENT;
	memcpy(ip, peer, (size_t)(colon - peer));
	ip[colon - peer] = '\0';
	/* procfs files have no size: read line by line (io_read_file trusts st_size) */
	if (inet_pton(AF_INET, ip, &tmp) != 1 || !(f = fopen(table, "re")))
		return -ENOENT;
	while (rc != 0 && lines++ < 100000 && fgets(line, sizeof(line), f)) {
		char *field[4], *save = NULL, *end = NULL;
		unsigned long flags;
		uint8_t b[6];
		int nf = 0;

		/* IP address, HW type, Flags (hex), HW address, Mask, Device */
		for (char *t = strtok_r(line, " \t\n", &save); t && nf < 4;
		     t = strtok_r(NULL, " \t\n", &save))
			field[nf++] = t;
		if (nf < 4 || strcmp(field[0], ip) != 0)
			continue;
		errno = 0;
		flags = strtoul(field[2], &end, 16);
		if (errno || *end || !(flags & 0x2) || config_mac_parse(field[3], b) < 0)
			continue; /* 0x2 (ATF_COM): a resolved entry */
		config_mac_format(b, mac);
		rc = 0;
	}
	fclose(f);
	return rc;
}

/* The machine's CHAP secret: the daemon's callback, else the config's
 * chap_secret_file. Only machines listed in the config have one. */
static int chap_secret(struct api *a, const struct mref *m, char **out)
{
	const struct config_machine *cm =
		m->match.kind == CONFIG_MATCH_MACHINE ? m->match.machine : NULL;

	if (a->chap_secret)
		return a->chap_secret(a->cb_arg, cm, m->name, out);
	if (cm && cm->chap_secret_file)
		return config_secret_read(cm->chap_secret_file, out);
	return -ENOENT;
}

static void h_boot(struct ctx *c)
{
	struct api *a = c->a;
	const struct config_appliance *ap = &a->cfg->appliance;
	const struct config_profile *prof;
	const struct config_image *img;
	struct registry_machine rm;
	struct bootscript_params p = {0};
	struct mref m;
	char macq[64], base[128], kurl[256], iurl[256], ver[16], addr[INET_ADDRSTRLEN];
	char port[8], tiqn[IQN_MAX + 1], iiqn[IQN_MAX + 1], *secret = NULL, *out = NULL;
	uint8_t mac[6];
	uint32_t version;
	size_t len = 0;
	int have, rc;

	if (http_query_get(c->req->query, "mac", macq, sizeof(macq)) < 0 ||
	    config_mac_parse(macq, mac) < 0) {
		http_error(c->resp, 400,
			   "want /boot.ipxe?mac=XX-XX-XX-XX-XX-XX (':' or '-', any case)");
		return;
	}
	mref_from_mac(a, mac, NULL, &m);
	/* a registry failure must not stop a boot: log it and go on */
	registry_record_boot(a->reg, m.mac_str,
			     m.match.kind == CONFIG_MATCH_MACHINE ? m.name : NULL, api_now(a));
	have = registry_get_by_mac(a->reg, m.mac_str, &rm) == 0;
	if (have && rm.name[0] && m.match.kind != CONFIG_MATCH_MACHINE)
		snprintf(m.name, sizeof(m.name), "%s", rm.name);
	prof = effective_profile(a, &m, have ? rm.assigned_profile : NULL);
	if (have)
		registry_machine_release(&rm);
	if (!prof) {
		log_info("boot script for unknown machine %s from %s: refused by policy", m.mac_str,
			 c->req->peer);
		refuse(c, &m);
		return;
	}
	img = prof->image_ref;
	rc = img ? image_version(a, img, &version) : -EINVAL;
	if (rc < 0) {
		log_error("machine '%s': image '%s' of profile '%s' has no usable version: %s",
			  m.name, img ? img->name : "?", prof->name, strerror(-rc));
		http_error(c->resp, 503, "image '%s' has no usable version", img ? img->name : "?");
		return;
	}
	snprintf(ver, sizeof(ver), "%" PRIu32, version);
	inet_ntop(AF_INET, &ap->listen_addr, addr, sizeof(addr));
	snprintf(base, sizeof(base), "http://%s:%u", addr, (unsigned)ap->http_port);
	p.mac = m.mac_str;
	p.machine = m.name;
	p.image = img->name;
	p.version = ver;
	p.base_url = base;
	switch (prof->mode) {
	case CONFIG_MODE_CACHE:
	case CONFIG_MODE_STREAM:
		p.mode = prof->mode == CONFIG_MODE_CACHE ? BOOT_CACHE : BOOT_STREAM;
		if (!img->kernel || !img->initrd) {
			http_error(c->resp, 503, "image '%s' has no kernel/initrd in the config",
				   img->name);
			return;
		}
		snprintf(kurl, sizeof(kurl), "%s/boot/images/%s/kernel", base, img->name);
		snprintf(iurl, sizeof(iurl), "%s/boot/images/%s/initrd", base, img->name);
		p.kernel_url = kurl;
		p.initrd_url = iurl;
		p.cmdline = img->cmdline;
		break;
	case CONFIG_MODE_SANBOOT: {
		char seen[CONFIG_MAC_STRLEN];

		/* the script carries the CHAP secret: not for a neighbour with another MAC */
		if (peer_mac(a->neigh_path, c->req->peer, seen) == 0 &&
		    strcmp(seen, m.mac_str) != 0) {
			a->sanboot_refused++;
			log_warn("sanboot script of '%s' (%s) refused to %s, whose MAC is %s",
				 m.name, m.mac_str, c->req->peer, seen);
			http_error(c->resp, 403,
				   "a sanboot script is served only to the machine it belongs to");
			return;
		}
		p.mode = BOOT_SANBOOT;
		rc = iqn_machine_target(ap->iscsi.iqn_prefix, m.name, tiqn, sizeof(tiqn));
		if (rc == 0)
			rc = iqn_machine_initiator(ap->iscsi.iqn_prefix, m.name, iiqn,
						   sizeof(iiqn));
		if (rc == 0)
			rc = chap_secret(a, &m, &secret);
		if (rc < 0) {
			log_error("machine '%s': no iSCSI target or CHAP secret for sanboot: %s "
				  "(only machines listed in the config get a target)",
				  m.name, strerror(-rc));
			http_error(c->resp, 503, "machine '%s' has no iSCSI target", m.name);
			return;
		}
		inet_ntop(AF_INET, &ap->iscsi.portal_addr, addr, sizeof(addr));
		snprintf(port, sizeof(port), "%u", (unsigned)ap->iscsi.portal_port);
		p.target_iqn = tiqn;
		p.initiator_iqn = iiqn;
		p.portal_addr = addr;
		p.portal_port = port;
		p.chap_user = m.name;
		p.chap_secret = secret;
		break;
	}
	}
	rc = bootscript_render(&p, &out, &len);
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	if (rc < 0) {
		http_error(c->resp, 500, "cannot render the boot script of '%s'", m.name);
		return;
	}
	log_debug("boot script for '%s' (%s): profile '%s', mode %s, %s@%s", m.name, m.mac_str,
		  prof->name, config_mode_name(prof->mode), img->name, ver);
	send_text(c, 200, out, len);
	a->scripts[p.mode]++;
}

static void h_bootfile(struct ctx *c, int kernel)
{
	const struct config_image *img = config_image_by_name(c->a->cfg, c->caps[0]);
	const char *path = img ? (kernel ? img->kernel : img->initrd) : NULL;
	struct stat st;
	int fd;

	if (!path) {
		http_error(c->resp, 404, "no %s for image '%s' in the config",
			   kernel ? "kernel" : "initrd", c->caps[0]);
		return;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("cannot serve '%s' for image '%s': %s", path, img->name,
			  fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		http_error(c->resp, 503, "the %s of image '%s' is not readable on the appliance",
			   kernel ? "kernel" : "initrd", img->name);
		return;
	}
	c->resp->status = 200;
	c->resp->content_type = "application/octet-stream";
	c->resp->fd = fd;
	c->resp->fd_size = (uint64_t)st.st_size;
}

/* The SHA-256 of the open boot file fd (st its fstat), from the cache or read. */
static int bootsum(struct api *a, int fd, const struct stat *st, struct hash *out)
{
	struct bootsum *e;
	struct hash_ctx *hc;
	char *buf;
	ssize_t n;

	for (size_t i = 0; i < sizeof(a->bootsums) / sizeof(a->bootsums[0]); i++) {
		e = &a->bootsums[i];
		if (e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
		    e->mtime.tv_sec == st->st_mtim.tv_sec &&
		    e->mtime.tv_nsec == st->st_mtim.tv_nsec &&
		    e->ctime.tv_sec == st->st_ctim.tv_sec &&
		    e->ctime.tv_nsec == st->st_ctim.tv_nsec && e->ino != 0) {
			*out = e->h;
			return 0;
		}
	}
	buf = xmalloc(1u << 20);
	hc = hash_ctx_new();
	while ((n = io_read_full(fd, buf, 1u << 20)) > 0)
		hash_ctx_update(hc, buf, (size_t)n);
	hash_ctx_final(hc, out);
	free(buf);
	if (n < 0)
		return (int)n;
	e = &a->bootsums[a->bootsums_next++ % (sizeof(a->bootsums) / sizeof(a->bootsums[0]))];
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->size = st->st_size;
	e->mtime = st->st_mtim;
	e->ctime = st->st_ctim; /* a write that restores the mtime still changes this */
	e->h = *out;
	return 0;
}

/* GET /boot/images/IMAGE/sums: size and SHA-256 of the kernel and initrd this
 * route's siblings serve, so that goldagent can check the copies it writes to
 * the machine's own disk (agent/bootdisk.c). */
static void h_bootsums(struct ctx *c)
{
	const struct config_image *img = config_image_by_name(c->a->cfg, c->caps[0]);
	json_t *j;

	if (!img || !img->kernel || !img->initrd) {
		http_error(c->resp, 404, "no kernel and initrd for image '%s' in the config",
			   c->caps[0]);
		return;
	}
	j = json_pack("{s:s}", "image", img->name);
	for (int k = 1; k >= 0; k--) {
		const char *path = k ? img->kernel : img->initrd, *what = k ? "kernel" : "initrd";
		char hex[HASH_HEX_LEN + 1], url[SEG_MAX + 32];
		struct hash h;
		struct stat st;
		int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -errno;

		if (fd >= 0)
			rc = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EINVAL;
		if (rc == 0)
			rc = bootsum(c->a, fd, &st, &h);
		if (fd >= 0)
			close(fd);
		if (rc < 0) {
			log_error("cannot hash '%s' for image '%s': %s", path, img->name,
				  strerror(-rc));
			http_error(c->resp, 503,
				   "the %s of image '%s' is not readable on the appliance", what,
				   img->name);
			json_decref(j);
			return;
		}
		snprintf(url, sizeof(url), "/boot/images/%s/%s", img->name, what);
		json_object_set_new(j, what,
				    json_pack("{s:s,s:I,s:s}", "path", url, "size",
					      (json_int_t)st.st_size, "sha256",
					      hash_to_hex(&h, hex)));
	}
	send_json(c, 200, j);
}

static void h_kernel(struct ctx *c)
{
	h_bootfile(c, 1);
}

static void h_initrd(struct ctx *c)
{
	h_bootfile(c, 0);
}

static void h_health(struct ctx *c)
{
	json_t *j = json_pack("{s:s,s:I,s:I,s:I,s:b}", "status", "ok", "time",
			      (json_int_t)api_now(c->a), "uptime_s",
			      (json_int_t)(api_now(c->a) - c->a->started), "machines",
			      (json_int_t)c->a->cfg->n_machines, "store", c->a->store != NULL);

	if (c->a->health)
		c->a->health(c->a->cb_arg, j);
	send_json(c, 200, j);
}

/* ---- sync back, snapshots, restore (docs/sync.md) ---- */

size_t api_body_limit(void *arg, const char *method, const char *path, const char *authorization)
{
	struct http_response resp = {.fd = -1};
	struct http_request req = {.method = method, .path = path, .authorization = authorization};
	struct ctx c = {.a = arg, .req = &req, .resp = &resp};
	struct mref m;
	size_t lim = 0;

	if (strcmp(method, "POST") == 0 &&
	    api_route_match("/api/v1/machines/*/commit", path, c.caps, MAX_CAPS) == 1 &&
	    authenticate(&c, WHO_SELF) == 0 && !c.caller.admin &&
	    mref_resolve(c.a, c.caps[0], &m) == 0 && strcmp(c.caller.mac, m.mac_str) == 0)
		lim = SYNC_MAX_BODY;
	free(resp.body); /* authenticate's error, if any: the route answers itself */
	return lim;
}

/* The profile machine m boots, from its registry row; NULL: refused. */
static const struct config_profile *machine_profile_now(struct api *a, const struct mref *m)
{
	struct registry_machine rm;
	const struct config_profile *p;
	int have = registry_get_by_mac(a->reg, m->mac_str, &rm) == 0;

	p = effective_profile(a, m, have ? rm.assigned_profile : NULL);
	if (have)
		registry_machine_release(&rm);
	return p;
}

static int need_sync(struct ctx *c)
{
	if (c->a->sync && c->a->store)
		return 0;
	http_error(c->resp, 503, "sync is not available (no store or no upload area)");
	return -ENODEV;
}

struct pin_ctx {
	const char *name;
	struct sync_commit *sc;
};

static int pin_row(const struct registry_machine *rm, void *arg)
{
	struct pin_ctx *p = arg;
	json_t *h = rm->hydrate ? json_loads(rm->hydrate, 0, NULL) : NULL;
	const char *from = json_string_value(json_object_get(h, "from"));
	json_int_t id = json_integer_value(json_object_get(h, "snapshot"));

	if (from && strcmp(from, p->name) == 0 && id > 0 && id <= MANIFEST_MAX_VERSION) {
		p->sc->pinned = xrealloc(p->sc->pinned, (p->sc->npinned + 1) * sizeof(uint32_t));
		p->sc->pinned[p->sc->npinned++] = (uint32_t)id;
	}
	json_decref(h);
	return 0;
}

static void h_commit(struct ctx *c)
{
	const struct config_profile *p;
	struct sync_commit *sc = NULL;
	struct mref m;
	char err[256];
	json_t *st;
	int rc;

	if (path_machine(c, &m) < 0)
		return;
	if (c->caller.admin) {
		http_error(c->resp, 403, "a commit needs the machine's own agent token");
		return;
	}
	if (check_self(c, &m) < 0 || need_sync(c) < 0)
		return;
	p = machine_profile_now(c->a, &m);
	if (!p || p->mode != CONFIG_MODE_CACHE || !p->persist) {
		http_error(c->resp, 409,
			   "machine '%s' has no machine volume to commit (profile %s: needs mode "
			   "cache and persist true)",
			   m.name, p ? p->name : "none");
		return;
	}
	if (sync_commit_parse(c->req->body, c->req->body_len, &sc, err, sizeof(err)) < 0) {
		http_error(c->resp, 400, "%s", err);
		return;
	}
	if (sc->volume_size > p->volume_size) {
		http_error(c->resp, 400,
			   "volume_size %llu is larger than profile '%s' volume_size %llu",
			   (unsigned long long)sc->volume_size, p->name,
			   (unsigned long long)p->volume_size);
		sync_commit_free(sc);
		return;
	}
	/* the agent names the gold version it ran; else record what this machine
	 * is assigned now (it may still run an older one until its next attach) */
	if (!sc->gold_image[0] && p->image_ref &&
	    image_version(c->a, p->image_ref, &sc->gold_version) == 0)
		snprintf(sc->gold_image, sizeof(sc->gold_image), "%s", p->image_ref->name);
	/* snapshots of this machine that pending orders name survive retention */
	registry_each(c->a->reg, pin_row, &(struct pin_ctx){m.name, sc});
	rc = sync_commit_start(c->a->sync, m.name, p->retention, sc);
	if (rc == -EBUSY) {
		http_error(c->resp, 409, "a commit of '%s' is running: poll GET %s", m.name,
			   c->req->path);
		return;
	}
	if (rc == -ESRCH) {
		http_error(c->resp, 409,
			   "no open commit transaction of '%s' takes this batch: start again "
			   "with batch 0",
			   m.name);
		return;
	}
	if (rc == -EINVAL) {
		http_error(c->resp, 400,
			   "chunk indexes of a commit in batches must ascend across batches");
		return;
	}
	if (rc < 0) {
		http_error(c->resp, 500, "cannot start the commit of '%s'", m.name);
		return;
	}
	st = sync_commit_status(c->a->sync, m.name);
	json_object_set_new(st, "poll", json_string(c->req->path));
	send_json(c, 202, st);
}

static void h_commit_status(struct ctx *c)
{
	struct mref m;

	if (path_machine(c, &m) < 0 || check_self(c, &m) < 0 || need_sync(c) < 0)
		return;
	send_json(c, 200, sync_commit_status(c->a->sync, m.name));
}

static void h_snapshots(struct ctx *c)
{
	struct snapshot_info *v = NULL;
	struct mref m;
	size_t n = 0;
	json_t *arr;
	int rc;

	if (path_machine(c, &m) < 0 || check_self(c, &m) < 0 || need_store(c) < 0)
		return;
	rc = snapshot_list(c->a->store, m.name, &v, &n);
	if (rc < 0 && rc != -ENOENT) {
		http_error(c->resp, 500, "cannot read the snapshots of '%s'", m.name);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(
			arr,
			json_pack("{s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:I}", "snapshot",
				  (json_int_t)v[i].id, "parent",
				  v[i].parent ? json_integer(v[i].parent) : json_null(), "created",
				  (json_int_t)v[i].created, "size", (json_int_t)v[i].size,
				  "chunk_size", (json_int_t)v[i].chunk_size, "chunks",
				  (json_int_t)v[i].nchunks, "zero_chunks",
				  (json_int_t)v[i].zero_chunks, "changed_chunks",
				  (json_int_t)v[i].changed));
	free(v);
	send_json(c, 200, json_pack("{s:s,s:o}", "name", m.name, "snapshots", arr));
}

/* May the caller read m's snapshot id? The admin, m's own agent, or an agent
 * whose pending hydrate order names exactly m@id (a restore). */
static int snapshot_readable(struct ctx *c, const struct mref *m, uint32_t id)
{
	struct registry_machine rm;
	json_t *h;
	int yes = 0;

	if (c->caller.admin || strcmp(c->caller.mac, m->mac_str) == 0)
		return 1;
	if (registry_get_by_mac(c->a->reg, c->caller.mac, &rm) < 0)
		return 0;
	h = rm.hydrate ? json_loads(rm.hydrate, 0, NULL) : NULL;
	yes = h && json_is_string(json_object_get(h, "from")) &&
	      strcmp(json_string_value(json_object_get(h, "from")), m->name) == 0 &&
	      json_integer_value(json_object_get(h, "snapshot")) == (json_int_t)id;
	json_decref(h);
	registry_machine_release(&rm);
	return yes;
}

static void h_snapshot_manifest(struct ctx *c)
{
	char path[4096];
	struct stat st = {0};
	struct mref m;
	uint32_t id = 0;
	int fd = -1, rc;

	if (need_store(c) < 0)
		return;
	/* a restored machine reads another machine's snapshot: that machine may be
	 * gone from the config and registry, its snapshots are still in the store */
	if (mref_resolve(c->a, c->caps[0], &m) < 0) {
		size_t l = strlen(c->caps[0]);

		if (!name_is_valid(c->caps[0]) || l >= sizeof(m.name)) {
			http_error(c->resp, 404, "no machine '%.64s'", c->caps[0]);
			return;
		}
		memset(&m, 0, sizeof(m));
		memcpy(m.name, c->caps[0], l + 1);
		snprintf(m.mac_str, sizeof(m.mac_str), "-");
	}
	if (strcmp(c->caps[1], "latest") == 0)
		rc = snapshot_latest(c->a->store, m.name, &id);
	else
		rc = parse_u32(c->caps[1], &id) < 0 || id == 0 ? -EINVAL : 0;
	if (rc == -EINVAL) {
		http_error(c->resp, 400, "snapshot must be a number or 'latest'");
		return;
	}
	if (rc == 0 && !snapshot_readable(c, &m, id)) {
		http_error(c->resp, 403, "this token may not read snapshots of '%s'", m.name);
		return;
	}
	if (rc == 0)
		rc = snapshot_manifest_path(c->a->store, m.name, id, path, sizeof(path));
	if (rc == 0) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			rc = -errno;
		else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
			rc = -EIO;
	}
	if (rc != 0) {
		if (fd >= 0)
			close(fd);
		if (rc == -ENOENT)
			http_error(c->resp, 404, "no snapshot %s of '%s'", c->caps[1], m.name);
		else
			http_error(c->resp, 500, "cannot read snapshot %s of '%s'", c->caps[1],
				   m.name);
		return;
	}
	c->resp->status = 200;
	c->resp->content_type = "text/plain; charset=utf-8";
	c->resp->fd = fd;
	c->resp->fd_size = (uint64_t)st.st_size;
}

/* Records a hydrate order for m (admin: restore or reset) and answers with the
 * machine. from NULL: a fresh, empty volume. */
static void hydrate_order(struct ctx *c, const struct mref *m, const char *kind, const char *from,
			  uint32_t id)
{
	json_t *o = json_pack("{s:I,s:s,s:o,s:o,s:I}", "id", (json_int_t)now_ms(), "kind", kind,
			      "from", from ? json_string(from) : json_null(), "snapshot",
			      id ? json_integer(id) : json_null(), "at", (json_int_t)api_now(c->a));
	char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	int rc;

	json_decref(o);
	rc = registry_ensure(c->a->reg, m->mac_str, m->name, api_now(c->a));
	if (rc == 0)
		rc = registry_set_hydrate(c->a->reg, m->mac_str, text);
	free(text);
	if (rc < 0) {
		http_error(c->resp, 500, "cannot record the %s of '%s'", kind, m->name);
		return;
	}
	if (from)
		log_info("machine '%s': next attach hydrates %s@%u (%s)", m->name, from, id, kind);
	else
		log_info("machine '%s': next attach starts a fresh volume (%s)", m->name, kind);
	reply_machine(c, m, 200);
}

/* The snapshot named by body key "snapshot" (null/absent: the newest, or 0 when
 * fresh_ok and there is none asked for) of machine name; answers errors itself. */
static int body_snapshot(struct ctx *c, json_t *j, const char *name, int latest_if_null,
			 uint32_t *id)
{
	json_t *v = json_object_get(j, "snapshot");
	struct manifest *mf = NULL;
	int rc;

	*id = 0;
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
		    json_integer_value(v) > MANIFEST_MAX_VERSION) {
			http_error(c->resp, 400, "\"snapshot\" must be a snapshot id or null");
			return -EINVAL;
		}
		*id = (uint32_t)json_integer_value(v);
	} else if (!latest_if_null) {
		return 0;
	}
	rc = snapshot_manifest_load(c->a->store, name, *id, &mf);
	if (rc == 0)
		*id = mf->version; /* pinned: later commits of name do not move it */
	manifest_free(mf);
	if (rc == -ENOENT) {
		http_error(c->resp, 404, "machine '%s' has no snapshot%s", name,
			   v && !json_is_null(v) ? " with that id" : "");
		return rc;
	}
	if (rc < 0) {
		http_error(c->resp, 500, "cannot read the snapshots of '%s'", name);
		return rc;
	}
	return 0;
}

static int body_keys(struct ctx *c, json_t *j, const char *const *keys, const char *usage)
{
	const char *k;
	json_t *v;

	json_object_foreach(j, k, v)
	{
		size_t i;

		for (i = 0; keys[i] && strcmp(keys[i], k) != 0; i++)
			;
		if (!keys[i]) {
			http_error(c->resp, 400, "unknown key \"%.64s\": body must be %s", k,
				   usage);
			return -EINVAL;
		}
	}
	return 0;
}

static void h_restore(struct ctx *c)
{
	static const char *const keys[] = {"from", "snapshot", NULL};
	const char *usage = "{\"from\": MACHINE, \"snapshot\": ID or null (newest)}";
	const char *from;
	struct mref m;
	uint32_t id;
	json_t *j;

	if (path_machine(c, &m) < 0 || need_store(c) < 0 || !(j = parse_body(c)))
		return;
	from = json_string_value(json_object_get(j, "from"));
	if (body_keys(c, j, keys, usage) < 0)
		goto out;
	if (!from || !name_is_valid(from)) {
		http_error(c->resp, 400, "body must be %s", usage);
		goto out;
	}
	if (body_snapshot(c, j, from, 1, &id) == 0)
		hydrate_order(c, &m, "restore", from, id);
out:
	json_decref(j);
}

static void h_reset(struct ctx *c)
{
	static const char *const keys[] = {"snapshot", NULL};
	struct mref m;
	uint32_t id;
	json_t *j;

	if (path_machine(c, &m) < 0 || need_store(c) < 0 || !(j = parse_body(c)))
		return;
	if (body_keys(c, j, keys, "{\"snapshot\": ID or null (a fresh volume)}") == 0 &&
	    body_snapshot(c, j, m.name, 0, &id) == 0)
		hydrate_order(c, &m, "reset", id ? m.name : NULL, id);
	json_decref(j);
}

/* The agent says it carried out order {"id": N}: it is cleared unless a newer
 * one replaced it meanwhile (409). */
static void h_hydrated(struct ctx *c)
{
	struct registry_machine rm;
	struct mref m;
	json_t *j, *h = NULL;
	int rc;

	if (path_machine(c, &m) < 0 || check_self(c, &m) < 0 || !(j = parse_body(c)))
		return;
	if (!json_is_integer(json_object_get(j, "id")) || json_object_size(j) != 1) {
		http_error(c->resp, 400, "body must be {\"id\": the order's id}");
		goto out;
	}
	if (registry_get_by_mac(c->a->reg, m.mac_str, &rm) < 0) {
		http_error(c->resp, 409, "machine '%s' has no pending order", m.name);
		goto out;
	}
	h = rm.hydrate ? json_loads(rm.hydrate, 0, NULL) : NULL;
	registry_machine_release(&rm);
	if (!h || !json_equal(json_object_get(h, "id"), json_object_get(j, "id"))) {
		http_error(c->resp, 409, "order %lld is not the pending order of '%s'",
			   (long long)json_integer_value(json_object_get(j, "id")), m.name);
		goto out;
	}
	rc = registry_set_hydrate(c->a->reg, m.mac_str, NULL);
	if (rc < 0) {
		http_error(c->resp, 500, "cannot clear the order of '%s'", m.name);
		goto out;
	}
	if (json_is_string(json_object_get(h, "from")))
		log_info("machine '%s': order %lld carried out (%s from %s@%lld)", m.name,
			 (long long)json_integer_value(json_object_get(h, "id")),
			 json_string_value(json_object_get(h, "kind")),
			 json_string_value(json_object_get(h, "from")),
			 (long long)json_integer_value(json_object_get(h, "snapshot")));
	else
		log_info("machine '%s': order %lld carried out (%s to a fresh volume)", m.name,
			 (long long)json_integer_value(json_object_get(h, "id")),
			 json_string_value(json_object_get(h, "kind")));
	reply_machine(c, &m, 200);
out:
	json_decref(h);
	json_decref(j);
}

/* Prometheus text format: what an operator graphs for a boot storm. */
/* The machine's own iSCSI login (docs/api.md): portal, target and initiator
 * names, CHAP user and secret, and the image version its LUN 1 serves. Only
 * for the machine's own agent token (not the admin's: an operator reads the
 * secret file on the appliance). goldagent calls it at every attach, so the
 * secret never travels through a boot script or the kernel command line. */
static void h_iscsi(struct ctx *c)
{
	const struct config_appliance *ap = &c->a->cfg->appliance;
	const struct config_profile *p;
	char tiqn[IQN_MAX + 1], iiqn[IQN_MAX + 1], addr[INET_ADDRSTRLEN], portal[64];
	char *secret = NULL;
	uint32_t version = 0;
	struct mref m;
	json_t *j;
	int rc;

	if (path_machine(c, &m) < 0)
		return;
	if (c->caller.admin) {
		http_error(c->resp, 403,
			   "the iSCSI login is given to the machine's own agent token only");
		return;
	}
	if (check_self(c, &m) < 0)
		return;
	p = machine_profile_now(c->a, &m);
	if (!p || !p->image_ref || image_version(c->a, p->image_ref, &version) < 0) {
		http_error(c->resp, 503, "machine '%s' has no profile with a usable image version",
			   m.name);
		return;
	}
	rc = iqn_machine_target(ap->iscsi.iqn_prefix, m.name, tiqn, sizeof(tiqn));
	if (rc == 0)
		rc = iqn_machine_initiator(ap->iscsi.iqn_prefix, m.name, iiqn, sizeof(iiqn));
	if (rc == 0)
		rc = chap_secret(c->a, &m, &secret);
	if (rc == 0 && !secret)
		rc = -ENOENT;
	if (rc < 0) {
		http_error(c->resp, 503, "machine '%s' has no iSCSI target or CHAP secret", m.name);
		return;
	}
	inet_ntop(AF_INET, &ap->iscsi.portal_addr, addr, sizeof(addr));
	snprintf(portal, sizeof(portal), "%s:%u", addr, (unsigned)ap->iscsi.portal_port);
	j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:I, s:o}", "portal", portal, "target",
		      tiqn, "initiator", iiqn, "user", m.name, "secret", secret, "gold_lun", 1,
		      "image", p->image_ref->name, "version", (json_int_t)version, "upload_lun",
		      p->mode == CONFIG_MODE_CACHE && p->persist ? json_integer(2) : json_null());
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	if (!j) {
		http_error(c->resp, 500, "cannot encode the iSCSI login of '%s'", m.name);
		return;
	}
	log_info("machine '%s': iSCSI login handed to its agent (%s)", m.name, c->req->peer);
	send_json(c, 200, j);
}

static void h_metrics(struct ctx *c)
{
	struct api *a = c->a;
	char *out;

	out = xasprintf(
		"# HELP goldcache_http_responses_total HTTP responses by status class.\n"
		"# TYPE goldcache_http_responses_total counter\n"
		"goldcache_http_responses_total{class=\"2xx\"} %" PRIu64 "\n"
		"goldcache_http_responses_total{class=\"3xx\"} %" PRIu64 "\n"
		"goldcache_http_responses_total{class=\"4xx\"} %" PRIu64 "\n"
		"goldcache_http_responses_total{class=\"5xx\"} %" PRIu64 "\n"
		"# HELP goldcache_boot_scripts_total iPXE scripts served by mode.\n"
		"# TYPE goldcache_boot_scripts_total counter\n"
		"goldcache_boot_scripts_total{mode=\"cache\"} %" PRIu64 "\n"
		"goldcache_boot_scripts_total{mode=\"stream\"} %" PRIu64 "\n"
		"goldcache_boot_scripts_total{mode=\"sanboot\"} %" PRIu64 "\n"
		"goldcache_boot_scripts_total{mode=\"refuse\"} %" PRIu64 "\n"
		"# HELP goldcache_sanboot_refused_total sanboot scripts refused to a neighbour "
		"with another MAC.\n"
		"# TYPE goldcache_sanboot_refused_total counter\n"
		"goldcache_sanboot_refused_total %" PRIu64 "\n"
		"# HELP goldcache_config_machines Machines listed in the config.\n"
		"# TYPE goldcache_config_machines gauge\n"
		"goldcache_config_machines %zu\n"
		"# HELP goldcache_uptime_seconds Seconds since the API started.\n"
		"# TYPE goldcache_uptime_seconds gauge\n"
		"goldcache_uptime_seconds %" PRId64 "\n",
		a->by_status[2], a->by_status[3], a->by_status[4], a->by_status[5],
		a->scripts[BOOT_CACHE], a->scripts[BOOT_STREAM], a->scripts[BOOT_SANBOOT],
		a->scripts[BOOT_REFUSE], a->sanboot_refused, a->cfg->n_machines,
		api_now(a) - a->started);
	if (a->delta) {
		const struct delta_gen_stats *ds = delta_gen_stats(a->delta);
		char *all = xasprintf(
			"%s"
			"# HELP goldcache_deltas_total Gold-update deltas answered, by how.\n"
			"# TYPE goldcache_deltas_total counter\n"
			"goldcache_deltas_total{how=\"made\"} %" PRIu64 "\n"
			"goldcache_deltas_total{how=\"cached\"} %" PRIu64 "\n"
			"goldcache_deltas_total{how=\"none\"} %" PRIu64 "\n"
			"goldcache_deltas_total{how=\"failed\"} %" PRIu64 "\n"
			"# HELP goldcache_delta_cache_damaged_total Delta cache files found "
			"damaged "
			"(removed, made again).\n"
			"# TYPE goldcache_delta_cache_damaged_total counter\n"
			"goldcache_delta_cache_damaged_total %" PRIu64 "\n"
			"# HELP goldcache_delta_bytes_total Bytes of delta records sent.\n"
			"# TYPE goldcache_delta_bytes_total counter\n"
			"goldcache_delta_bytes_total %" PRIu64 "\n",
			out, ds->made, ds->cache_hits, ds->none, ds->failed, ds->cache_bad,
			ds->bytes);

		free(out);
		out = all;
	}
	c->resp->status = 200;
	c->resp->content_type = "text/plain; version=0.0.4";
	c->resp->body = out;
	c->resp->len = strlen(out);
}

/* ---- gold-update deltas (appliance/delta.h, docs/api.md "Deltas") ---- */

/* A version number from the body: 1..MANIFEST_MAX_VERSION. */
static int body_version(struct ctx *c, json_t *j, const char *key, uint32_t *out)
{
	json_t *v = json_object_get(j, key);
	json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;

	if (n < 1 || n > (json_int_t)MANIFEST_MAX_VERSION) {
		http_error(c->resp, 400, "\"%s\" must be a version number (1 to %u)", key,
			   MANIFEST_MAX_VERSION);
		return -EINVAL;
	}
	*out = (uint32_t)n;
	return 0;
}

/* An agent may ask only for the image its profile assigns, towards the
 * version its LUN 1 serves (any older version of it as the base). */
static int delta_allowed(struct ctx *c, const char *image, uint32_t to)
{
	const struct config_profile *p;
	uint32_t v = 0;
	struct mref m;

	if (c->caller.admin)
		return 0;
	if (mref_resolve(c->a, c->caller.mac, &m) < 0) {
		http_error(c->resp, 403, "this token's machine is not known any more");
		return -EPERM;
	}
	p = machine_profile_now(c->a, &m);
	if (!p || !p->image_ref || strcmp(p->image_ref->name, image) != 0) {
		http_error(c->resp, 403, "machine '%s' is not assigned image '%s'", m.name, image);
		return -EPERM;
	}
	if (image_version(c->a, p->image_ref, &v) < 0 || v != to) {
		http_error(c->resp, 403, "machine '%s' is assigned %s@%u, not %s@%u", m.name, image,
			   v, image, to);
		return -EPERM;
	}
	return 0;
}

static int delta_load(struct ctx *c, const char *image, uint32_t v, struct manifest **out)
{
	int rc = image_manifest_load(c->a->store, image, v, out);

	if (rc == -ENOENT)
		http_error(c->resp, 404, "no version %u of image '%s'", v, image);
	else if (rc < 0)
		http_error(c->resp, 500, "cannot read the manifest of '%s@%u'", image, v);
	return rc;
}

/* POST /api/v1/images/IMAGE/delta {"from": V1, "to": V2, "chunks": [I, ...]}:
 * a binary stream of one record per chunk index, made on the loop one record
 * at a time as the connection drains (delta_stream_read). */
static void h_delta(struct ctx *c)
{
	static const char *const keys[] = {"from", "to", "chunks", NULL};
	static const char usage[] = "{\"from\": V1, \"to\": V2, \"chunks\": [INDEX, ...]}";
	const char *image = c->caps[0];
	struct manifest *mf = NULL, *mt = NULL;
	uint64_t *idx = NULL;
	uint32_t from, to;
	json_t *j, *arr, *v;
	size_t n, i;

	if (need_store(c) < 0)
		return;
	if (!c->a->delta) {
		http_error(c->resp, 503, "deltas are not available");
		return;
	}
	if (!name_is_valid(image)) {
		http_error(c->resp, 400, "'%.64s' is not a valid image name", image);
		return;
	}
	j = parse_body(c);
	if (!j)
		return;
	if (body_keys(c, j, keys, usage) < 0 || body_version(c, j, "from", &from) < 0 ||
	    body_version(c, j, "to", &to) < 0)
		goto out;
	arr = json_object_get(j, "chunks");
	n = json_array_size(arr);
	if (!json_is_array(arr) || n == 0 || n > DELTA_MAX_CHUNKS) {
		http_error(c->resp, 400, "\"chunks\" must be an array of 1 to %u chunk indexes",
			   DELTA_MAX_CHUNKS);
		goto out;
	}
	if (delta_allowed(c, image, to) < 0 || delta_load(c, image, from, &mf) < 0 ||
	    delta_load(c, image, to, &mt) < 0)
		goto out;
	if (mt->chunk_size > DELTA_MAX_CHUNK_SIZE) {
		http_error(c->resp, 409,
			   "%s@%u has chunks of %u bytes: deltas are made for chunks up to %u "
			   "bytes (fetch its chunks over iSCSI)",
			   image, to, mt->chunk_size, DELTA_MAX_CHUNK_SIZE);
		goto out;
	}
	if (mf->chunk_size != mt->chunk_size) {
		http_error(c->resp, 409,
			   "%s@%u has chunks of %u bytes and %s@%u of %u: no deltas between them",
			   image, from, mf->chunk_size, image, to, mt->chunk_size);
		goto out;
	}
	idx = xcalloc(n, sizeof(*idx));
	json_array_foreach(arr, i, v)
	{
		json_int_t k = json_is_integer(v) ? json_integer_value(v) : -1;

		if (k < 0 || (uint64_t)k >= mt->nchunks) {
			http_error(c->resp, 400,
				   "\"chunks\"[%zu] is not a chunk index of %s@%u (0 to %llu)", i,
				   image, to, (unsigned long long)(mt->nchunks - 1));
			goto out;
		}
		idx[i] = (uint64_t)k;
	}
	c->resp->status = 200;
	c->resp->content_type = "application/octet-stream";
	c->resp->reader = delta_stream_read;
	c->resp->reader_free = delta_stream_free;
	c->resp->reader_arg = delta_stream_new(c->a->delta, mf, mt, idx, (uint32_t)n);
	mf = mt = NULL;
	idx = NULL;
out:
	free(idx);
	manifest_free(mf);
	manifest_free(mt);
	json_decref(j);
}

/* ---- the table ---- */

struct route {
	const char *method; /* NULL: GET and HEAD */
	const char *pattern;
	enum who who;
	void (*fn)(struct ctx *c);
};

static const struct route routes[] = {
	{NULL, "/boot.ipxe", WHO_NONE, h_boot},
	{NULL, "/boot/images/*/kernel", WHO_NONE, h_kernel},
	{NULL, "/boot/images/*/initrd", WHO_NONE, h_initrd},
	{NULL, "/boot/images/*/sums", WHO_NONE, h_bootsums},
	{NULL, "/api/v1/health", WHO_NONE, h_health},
	{NULL, "/metrics", WHO_NONE, h_metrics},
	{NULL, "/api/v1/machines", WHO_ADMIN, h_machines},
	{NULL, "/api/v1/machines/*", WHO_SELF, h_machine},
	{"PUT", "/api/v1/machines/*/state", WHO_SELF, h_state},
	{"POST", "/api/v1/machines/*/state", WHO_SELF, h_state},
	{"POST", "/api/v1/machines/*/assign", WHO_ADMIN, h_assign},
	{"POST", "/api/v1/machines/*/token", WHO_ADMIN, h_token},
	{"POST", "/api/v1/machines/*/enroll", WHO_NONE, h_enroll},
	{"POST", "/api/v1/machines/*/commit", WHO_SELF, h_commit},
	{NULL, "/api/v1/machines/*/commit", WHO_SELF, h_commit_status},
	{NULL, "/api/v1/machines/*/snapshots", WHO_SELF, h_snapshots},
	{NULL, "/api/v1/machines/*/snapshots/*/manifest", WHO_ANY, h_snapshot_manifest},
	{"POST", "/api/v1/machines/*/restore", WHO_ADMIN, h_restore},
	{"POST", "/api/v1/machines/*/reset", WHO_ADMIN, h_reset},
	{"POST", "/api/v1/machines/*/hydrated", WHO_SELF, h_hydrated},
	{NULL, "/api/v1/machines/*/iscsi", WHO_SELF, h_iscsi},
	{NULL, "/api/v1/images", WHO_ANY, h_images},
	{NULL, "/api/v1/images/*", WHO_ANY, h_image},
	{NULL, "/api/v1/images/*/*/manifest", WHO_ANY, h_manifest},
	{"POST", "/api/v1/images/*/delta", WHO_ANY, h_delta},
};

static void route(struct ctx *c);

void api_handle(void *arg, const struct http_request *req, struct http_response *resp)
{
	struct ctx c = {.a = arg, .req = req, .resp = resp};
	int st;

	route(&c);
	st = resp->status ? resp->status : 200;
	c.a->by_status[st >= 100 && st < 600 ? st / 100 : 0]++;
}

static void route(struct ctx *c)
{
	const struct http_request *req = c->req;
	int path_known = 0;

	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		const struct route *r = &routes[i];
		int n = api_route_match(r->pattern, req->path, c->caps, MAX_CAPS);

		if (n < 0)
			continue;
		path_known = 1;
		if (r->method ? strcmp(req->method, r->method) != 0
			      : strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
			continue;
		c->ncaps = n;
		if (authenticate(c, r->who) < 0)
			return;
		r->fn(c);
		return;
	}
	if (path_known)
		http_error(c->resp, 405, "method %s not allowed on %s", req->method, req->path);
	else
		http_error(c->resp, 404, "no route for %s", req->path);
}

/* ---- lifecycle ---- */

int api_new(const struct api_opts *o, struct api **out)
{
	struct api *a;

	*out = NULL;
	if (!o->cfg || !o->reg || !o->admin_token || !*o->admin_token) {
		log_error("the API needs a config, a registry and an admin token");
		return -EINVAL;
	}
	a = xcalloc(1, sizeof(*a));
	a->cfg = o->cfg;
	a->reg = o->reg;
	a->store = o->store;
	a->chap_secret = o->chap_secret;
	a->health = o->health;
	a->restore_lun = o->restore_lun;
	a->sync = o->sync;
	a->cb_arg = o->cb_arg;
	a->clock = o->clock;
	a->neigh_path = xstrdup(o->neigh_path ? o->neigh_path : "/proc/net/arp");
	hash_buf(o->admin_token, strlen(o->admin_token), &a->admin_hash);
	a->started = api_now(a);
	if (a->store && delta_gen_new(a->store, o->delta_dir, 0, &a->delta) < 0)
		log_warn("deltas are not available: out of memory");
	*out = a;
	return 0;
}

void api_free(struct api *a)
{
	if (!a)
		return;
	explicit_bzero(&a->admin_hash, sizeof(a->admin_hash));
	delta_gen_free(a->delta);
	free(a->neigh_path);
	free(a);
}

void api_set_config(struct api *a, const struct config *cfg)
{
	a->cfg = cfg;
}

int api_admin_token_load(const struct config *cfg, const char *state_dir, char **out)
{
	char *path, tok[REGISTRY_TOKEN_HASH_HEX + 2];
	struct hash raw;
	int rc;

	*out = NULL;
	if (cfg->appliance.admin_token_file) {
		rc = config_secret_read(cfg->appliance.admin_token_file, out);
		if (rc < 0)
			log_error("cannot read the admin token '%s': %s",
				  cfg->appliance.admin_token_file, strerror(-rc));
		return rc;
	}
	path = xasprintf("%s/admin.token", state_dir);
	rc = config_secret_read(path, out);
	if (rc == -ENOENT) {
		if (getrandom(raw.b, sizeof(raw.b), 0) != (ssize_t)sizeof(raw.b)) {
			rc = -errno;
			goto out;
		}
		hash_to_hex(&raw, tok);
		explicit_bzero(&raw, sizeof(raw));
		tok[REGISTRY_TOKEN_HASH_HEX] = '\n';
		rc = io_write_file_atomic(path, tok, REGISTRY_TOKEN_HASH_HEX + 1, 0600);
		tok[REGISTRY_TOKEN_HASH_HEX] = '\0';
		if (rc == 0) {
			*out = xstrdup(tok);
			log_info("generated the admin token in '%s' (goldctl --token-file)", path);
		}
		explicit_bzero(tok, sizeof(tok));
	}
out:
	if (rc < 0)
		log_error("cannot read or create the admin token '%s': %s", path, strerror(-rc));
	free(path);
	return rc;
}
