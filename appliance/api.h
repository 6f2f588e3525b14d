/* goldcached's HTTP routes: iPXE boot scripts, boot files and the JSON API v1
 * (docs/api.md). api_handle() is an http_handler: a pure function of the
 * request, the current config, the registry and the store, so the daemon
 * embeds it in appliance/http.h's server and tests call it directly.
 *
 * Embedding (goldcached):
 *     struct api_opts ao = {.cfg = cfg, .reg = reg, .store = store,
 *                           .admin_token = tok, .chap_secret = fn, .cb_arg = d};
 *     api_new(&ao, &api);
 *     http_new(&(struct http_opts){...}, api_handle, api, &http);
 *     ... on SIGHUP, after the new config is accepted: api_set_config(api, new);
 *
 * Auth: "Authorization: Bearer TOKEN", the admin token (goldctl) or a machine's
 * agent token (registry, hashed at rest). Boot scripts, boot files, health and
 * enrollment need none (iPXE has no way to present one). */
#ifndef GC_APPLIANCE_API_H
#define GC_APPLIANCE_API_H

#include <jansson.h>
#include <stdint.h>

#include "appliance/http.h"
#include "config/config.h"

struct registry;
struct store;
struct sync;

/* Enrollment window: an agent may claim its first token this long after its
 * machine's boot script was served. */
#define API_ENROLL_WINDOW_S 600
#define API_MAX_BODY ((size_t)64 * 1024)

struct api_opts {
	const struct config *cfg; /* borrowed; replace with api_set_config() */
	struct registry *reg; /* borrowed, required */
	struct store *store; /* borrowed; NULL: image routes answer 503 */
	const char *admin_token; /* required; only its hash is kept */
	/* The CHAP secret of a machine for its sanboot script: m is its config entry
	 * (NULL for machines matched by a group or the unknown policy). 0 and *out
	 * (heap, wiped and freed by the API) or -errno (-ENOENT: none). NULL: the
	 * config's chap_secret_file is read (generated secrets need the callback). */
	int (*chap_secret)(void *arg, const struct config_machine *m, const char *name, char **out);
	/* Adds fields to GET /api/v1/health's object (component states). Optional. */
	void (*health)(void *arg, json_t *obj);
	struct sync *sync; /* borrowed; NULL: commit routes answer 503 (appliance/sync.h) */
	/* Where machine's pending order's snapshot from@snap is served (restore
	 * LUN, appliance/restore.h): the LUN number once the machine's target
	 * holds it (*size: its bytes), 0 while it is being prepared, -EIO when its
	 * export failed (retried). Optional: NULL reports no LUN. */
	int (*restore_lun)(void *arg, const char *machine, const char *from, uint32_t snap,
			   uint64_t *size);
	void *cb_arg;
	/* The kernel's IPv4 neighbour table; NULL: /proc/net/arp (tests give a file). */
	const char *neigh_path;
	/* Where gold-update deltas are cached (STATE/deltas); NULL: not kept. */
	const char *delta_dir;
	/* Wall clock in unix seconds; NULL: the real one (tests pin it). */
	int64_t (*clock)(void);
};

struct api;

int api_new(const struct api_opts *o, struct api **out);
void api_free(struct api *a);
/* Points the API at a new config (SIGHUP); the old one may be freed after. */
void api_set_config(struct api *a, const struct config *cfg);

/* http_opts.body_limit: SYNC_MAX_BODY for POST /api/v1/machines/NAME/commit
 * carrying NAME's own agent token (checked before the body is read, so
 * strangers cannot make goldcached buffer large bodies); 0 otherwise. */
size_t api_body_limit(void *arg, const char *method, const char *path, const char *authorization);

/* The http_handler: arg is the struct api. */
void api_handle(void *arg, const struct http_request *req, struct http_response *resp);

/* The admin token: the config's admin_token_file, else STATE_DIR/admin.token,
 * generated (64 hex chars, 0600) when missing. *out is heap (caller wipes and
 * frees). 0 or -errno (logged). */
int api_admin_token_load(const struct config *cfg, const char *state_dir, char **out);

/* Matches path against a route pattern whose '*' segments capture one path
 * segment each (non-empty, not "." or "..", at most 128 bytes) into caps.
 * Returns the number of captures, or -1 when it does not match. For fuzzing. */
int api_route_match(const char *pattern, const char *path, char caps[][129], int maxcaps);

#endif
