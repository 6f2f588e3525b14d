/* The machine registry: what goldcached has learned about each machine at run
 * time (first seen, last boot, last sync, the profile an admin assigned, the
 * state its agent reports, the hash of its agent token), in SQLite. The YAML
 * config says what machines should be; the registry says what they did.
 * Rows are keyed by MAC (canonical "aa:bb:cc:dd:ee:ff"); the name is unique
 * when set. Single-threaded use (the daemon's loop); all calls are short
 * transactions on prepared statements. */
#ifndef GC_APPLIANCE_REGISTRY_H
#define GC_APPLIANCE_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

struct registry;

#define REGISTRY_STATE_MAX 4096
#define REGISTRY_TOKEN_HASH_HEX 64

struct registry_machine {
	char mac[18];
	char name[65]; /* "" when unnamed */
	int64_t first_seen; /* unix seconds */
	int64_t last_boot; /* 0: never */
	int64_t last_sync; /* 0: never */
	int64_t state_at; /* when the agent last reported, 0: never */
	char assigned_profile[65]; /* "" when none: the config's profile applies */
	char *state; /* JSON object text reported by the agent, or NULL */
	int has_token;
	int64_t token_at; /* when the agent token was issued */
	char *hydrate; /* JSON object: what the next attach must hydrate (restore or
			* reset, docs/sync.md), or NULL */
};

/* Opens (creating) the registry at path: WAL, busy timeout, schema migrated to
 * the current user_version. 0 and *out, or -errno (logged). */
int registry_open(const char *path, struct registry **out);
void registry_free(struct registry *r);

/* Records a boot script request for mac (creating the row on first sight,
 * first_seen = last_boot = now). name (may be NULL) becomes the row's name;
 * a different row holding that name loses it. 0 or -errno. */
int registry_record_boot(struct registry *r, const char *mac, const char *name, int64_t now);
/* Creates the row for mac with name if missing (without recording a boot). */
int registry_ensure(struct registry *r, const char *mac, const char *name, int64_t now);

/* Looks a machine up by MAC or name. 0 and *out (release with
 * registry_machine_release), -ENOENT, or -errno. */
int registry_get_by_mac(struct registry *r, const char *mac, struct registry_machine *out);
int registry_get_by_name(struct registry *r, const char *name, struct registry_machine *out);
void registry_machine_release(struct registry_machine *m);

/* Calls cb for every row, ordered by name then MAC; stops when cb returns non-zero
 * (that value is returned). */
typedef int (*registry_each_cb)(const struct registry_machine *m, void *arg);
int registry_each(struct registry *r, registry_each_cb cb, void *arg);

/* Sets (profile non-NULL) or clears (NULL) the assigned profile; durable on return. */
int registry_assign(struct registry *r, const char *mac, const char *profile);
/* Stores the agent's state report (validated JSON text, at most REGISTRY_STATE_MAX
 * bytes); last_sync is updated when > 0. -ENOENT when the row does not exist. */
int registry_set_state(struct registry *r, const char *mac, const char *json, int64_t last_sync,
		       int64_t now);

/* Sets (json: a JSON object text, at most REGISTRY_STATE_MAX bytes) or clears
 * (NULL) the machine's pending hydrate order; durable on return. -ENOENT when
 * the row does not exist. */
int registry_set_hydrate(struct registry *r, const char *mac, const char *json);

/* Agent tokens: a new random token (64 hex chars) is written to token_out
 * (REGISTRY_TOKEN_HASH_HEX + 1 bytes); only its SHA-256 is stored. Replaces any
 * previous token. Durable on return. */
int registry_token_issue(struct registry *r, const char *mac, char *token_out, int64_t now);
/* Finds the machine whose token is token. 0 and mac_out (18 bytes), or -ENOENT. */
int registry_token_lookup(struct registry *r, const char *token, char *mac_out);

#endif
