/* Machine registry in SQLite (see registry.h).
 *
 * Schema (PRAGMA user_version = 2):
 *   machines(mac TEXT PRIMARY KEY, name TEXT UNIQUE, first_seen, last_boot,
 *            last_sync, state_at INTEGER, assigned_profile TEXT, state TEXT,
 *            token_hash TEXT UNIQUE, token_at INTEGER,
 *            hydrate TEXT)   -- 2: a pending restore/reset order (JSON), sync.md
 * Migrations run in one transaction each, from the file's user_version up; a
 * file newer than this code is refused rather than guessed at.
 *
 * Durability: WAL with synchronous=NORMAL, so a boot record (a write per boot
 * request) costs no fsync; a crash may lose the last few boot timestamps, which
 * is harmless. Assignments and tokens are decisions an admin or agent relies on:
 * those writes switch to synchronous=FULL (the WAL is synced at commit).
 *
 * Tokens: 32 random bytes from getrandom, hex; stored as hex SHA-256. The token
 * carries 256 bits of entropy, so an unsalted hash is enough and lookup by hash
 * (an index probe) leaks nothing useful about the token. */
#include "appliance/registry.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/hash.h"
#include "lib/log.h"
#include "lib/util.h"

#define SCHEMA_VERSION 2

enum stmt_id {
	ST_INSERT,
	ST_BOOT,
	ST_UNNAME,
	ST_SETNAME,
	ST_BY_MAC,
	ST_BY_NAME,
	ST_EACH,
	ST_ASSIGN,
	ST_STATE,
	ST_TOKEN_SET,
	ST_TOKEN_FIND,
	ST_HYDRATE,
	ST_N
};

#define COLS                                                                               \
	"mac, ifnull(name,''), first_seen, ifnull(last_boot,0), ifnull(last_sync,0), "     \
	"ifnull(state_at,0), ifnull(assigned_profile,''), state, token_hash IS NOT NULL, " \
	"ifnull(token_at,0), hydrate"

static const char *const stmt_sql[ST_N] = {
	[ST_INSERT] = "INSERT OR IGNORE INTO machines(mac, first_seen) VALUES (?1, ?2)",
	[ST_BOOT] = "UPDATE machines SET last_boot = ?2 WHERE mac = ?1",
	[ST_UNNAME] = "UPDATE machines SET name = NULL WHERE name = ?2 AND mac <> ?1",
	[ST_SETNAME] = "UPDATE machines SET name = ?2 WHERE mac = ?1 AND name IS NOT ?2",
	[ST_BY_MAC] = "SELECT " COLS " FROM machines WHERE mac = ?1",
	[ST_BY_NAME] = "SELECT " COLS " FROM machines WHERE name = ?1",
	[ST_EACH] = "SELECT " COLS " FROM machines ORDER BY name IS NULL, name, mac",
	[ST_ASSIGN] = "UPDATE machines SET assigned_profile = ?2 WHERE mac = ?1",
	[ST_STATE] = "UPDATE machines SET state = ?2, state_at = ?4, "
		     "last_sync = CASE WHEN ?3 > 0 THEN ?3 ELSE last_sync END WHERE mac = ?1",
	[ST_TOKEN_SET] = "UPDATE machines SET token_hash = ?2, token_at = ?3 WHERE mac = ?1",
	[ST_TOKEN_FIND] = "SELECT mac FROM machines WHERE token_hash = ?1",
	[ST_HYDRATE] = "UPDATE machines SET hydrate = ?2 WHERE mac = ?1",
};

static const char *const migrations[SCHEMA_VERSION] = {
	/* 0 -> 1 */
	"CREATE TABLE machines("
	" mac TEXT PRIMARY KEY NOT NULL,"
	" name TEXT UNIQUE,"
	" first_seen INTEGER NOT NULL,"
	" last_boot INTEGER,"
	" last_sync INTEGER,"
	" state_at INTEGER,"
	" assigned_profile TEXT,"
	" state TEXT,"
	" token_hash TEXT UNIQUE,"
	" token_at INTEGER"
	") WITHOUT ROWID;",
	/* 1 -> 2 */
	"ALTER TABLE machines ADD COLUMN hydrate TEXT;",
};

struct registry {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *st[ST_N];
};

static int db_err(struct registry *r, const char *what)
{
	int code = sqlite3_errcode(r->db);

	log_error("registry '%s': %s: %s", r->path, what, sqlite3_errmsg(r->db));
	if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		return -EBUSY;
	if (code == SQLITE_FULL)
		return -ENOSPC;
	if (code == SQLITE_CONSTRAINT)
		return -EEXIST;
	return -EIO;
}

static int exec(struct registry *r, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(r->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_error("registry '%s': %s: %s", r->path, sql, msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static int user_version(struct registry *r, int *out)
{
	sqlite3_stmt *s = NULL;
	int rc = -EIO;

	if (sqlite3_prepare_v2(r->db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW) {
		*out = sqlite3_column_int(s, 0);
		rc = 0;
	} else {
		rc = db_err(r, "reading the schema version");
	}
	sqlite3_finalize(s);
	return rc;
}

static int migrate(struct registry *r)
{
	int v = 0, rc;

	rc = user_version(r, &v);
	if (rc < 0)
		return rc;
	if (v > SCHEMA_VERSION) {
		log_error("registry '%s' has schema version %d, newer than this goldcached (%d): "
			  "upgrade goldcached or restore an older registry",
			  r->path, v, SCHEMA_VERSION);
		return -EPROTO;
	}
	for (; v < SCHEMA_VERSION; v++) {
		char *sql = xasprintf("BEGIN IMMEDIATE; %s PRAGMA user_version = %d; COMMIT;",
				      migrations[v], v + 1);

		rc = exec(r, sql);
		free(sql);
		if (rc < 0) {
			sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
			return rc;
		}
		log_info("registry '%s' migrated to schema version %d", r->path, v + 1);
	}
	return 0;
}

int registry_open(const char *path, struct registry **out)
{
	struct registry *r = xcalloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	r->path = xstrdup(path);
	if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		rc = db_err(r, "opening");
		goto fail;
	}
	sqlite3_busy_timeout(r->db, 5000);
	sqlite3_extended_result_codes(r->db, 0);
	rc = exec(r, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; "
		     "PRAGMA foreign_keys = ON;");
	if (rc < 0)
		goto fail;
	rc = migrate(r);
	if (rc < 0)
		goto fail;
	for (int i = 0; i < ST_N; i++) {
		if (sqlite3_prepare_v3(r->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->st[i],
				       NULL) != SQLITE_OK) {
			rc = db_err(r, "preparing a statement");
			goto fail;
		}
	}
	*out = r;
	return 0;
fail:
	registry_free(r);
	return rc;
}

void registry_free(struct registry *r)
{
	if (!r)
		return;
	for (int i = 0; i < ST_N; i++)
		sqlite3_finalize(r->st[i]);
	sqlite3_close(r->db);
	free(r->path);
	free(r);
}

/* Binds ?1.. from a format: 's' text (NULL binds NULL), 'i' int64. */
static sqlite3_stmt *bind(struct registry *r, enum stmt_id id, const char *fmt, ...)
{
	sqlite3_stmt *s = r->st[id];
	va_list ap;
	int i = 1;

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	va_start(ap, fmt);
	for (const char *f = fmt; *f; f++, i++) {
		if (*f == 's') {
			const char *v = va_arg(ap, const char *);

			if (v)
				sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
			else
				sqlite3_bind_null(s, i);
		} else {
			sqlite3_bind_int64(s, i, va_arg(ap, int64_t));
		}
	}
	va_end(ap);
	return s;
}

static int step_done(struct registry *r, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_err(r, what);

	sqlite3_reset(s);
	return rc;
}

static int begin(struct registry *r, int durable)
{
	if (durable && exec(r, "PRAGMA synchronous = FULL") < 0)
		return -EIO;
	return exec(r, "BEGIN IMMEDIATE");
}

static int end(struct registry *r, int rc, int durable)
{
	if (rc == 0)
		rc = exec(r, "COMMIT");
	if (rc < 0)
		sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
	if (durable)
		exec(r, "PRAGMA synchronous = NORMAL");
	return rc;
}

static int ensure_locked(struct registry *r, const char *mac, const char *name, int64_t now)
{
	int rc = step_done(r, bind(r, ST_INSERT, "si", mac, now), "adding a machine");

	if (rc == 0 && name && *name) {
		rc = step_done(r, bind(r, ST_UNNAME, "ss", mac, name), "renaming");
		if (rc == 0)
			rc = step_done(r, bind(r, ST_SETNAME, "ss", mac, name), "naming");
	}
	return rc;
}

int registry_ensure(struct registry *r, const char *mac, const char *name, int64_t now)
{
	int rc = begin(r, 0);

	if (rc < 0)
		return rc;
	return end(r, ensure_locked(r, mac, name, now), 0);
}

int registry_record_boot(struct registry *r, const char *mac, const char *name, int64_t now)
{
	int rc = begin(r, 0);

	if (rc < 0)
		return rc;
	rc = ensure_locked(r, mac, name, now);
	if (rc == 0)
		rc = step_done(r, bind(r, ST_BOOT, "si", mac, now), "recording a boot");
	return end(r, rc, 0);
}

static void copy_col(char *dst, size_t size, sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	snprintf(dst, size, "%s", t ? (const char *)t : "");
}

static void row_to_machine(sqlite3_stmt *s, struct registry_machine *m)
{
	const unsigned char *state;

	memset(m, 0, sizeof(*m));
	copy_col(m->mac, sizeof(m->mac), s, 0);
	copy_col(m->name, sizeof(m->name), s, 1);
	m->first_seen = sqlite3_column_int64(s, 2);
	m->last_boot = sqlite3_column_int64(s, 3);
	m->last_sync = sqlite3_column_int64(s, 4);
	m->state_at = sqlite3_column_int64(s, 5);
	copy_col(m->assigned_profile, sizeof(m->assigned_profile), s, 6);
	state = sqlite3_column_text(s, 7);
	m->state = state ? xstrdup((const char *)state) : NULL;
	m->has_token = sqlite3_column_int(s, 8);
	m->token_at = sqlite3_column_int64(s, 9);
	state = sqlite3_column_text(s, 10);
	m->hydrate = state ? xstrdup((const char *)state) : NULL;
}

static int get_one(struct registry *r, sqlite3_stmt *s, struct registry_machine *out)
{
	int rc, st = sqlite3_step(s);

	if (st == SQLITE_ROW) {
		row_to_machine(s, out);
		rc = 0;
	} else if (st == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		rc = db_err(r, "looking up a machine");
	}
	sqlite3_reset(s);
	return rc;
}

int registry_get_by_mac(struct registry *r, const char *mac, struct registry_machine *out)
{
	return get_one(r, bind(r, ST_BY_MAC, "s", mac), out);
}

int registry_get_by_name(struct registry *r, const char *name, struct registry_machine *out)
{
	return get_one(r, bind(r, ST_BY_NAME, "s", name), out);
}

void registry_machine_release(struct registry_machine *m)
{
	if (!m)
		return;
	free(m->state);
	m->state = NULL;
	free(m->hydrate);
	m->hydrate = NULL;
}

int registry_each(struct registry *r, registry_each_cb cb, void *arg)
{
	sqlite3_stmt *s = bind(r, ST_EACH, "");
	int st, rc = 0;

	while ((st = sqlite3_step(s)) == SQLITE_ROW) {
		struct registry_machine m;

		row_to_machine(s, &m);
		rc = cb(&m, arg);
		registry_machine_release(&m);
		if (rc)
			break;
	}
	if (!rc && st != SQLITE_DONE)
		rc = db_err(r, "listing machines");
	sqlite3_reset(s);
	return rc;
}

/* Runs an UPDATE of one row by MAC: -ENOENT when no row matched. */
static int update_one(struct registry *r, sqlite3_stmt *s, const char *what)
{
	int rc = step_done(r, s, what);

	if (rc == 0 && sqlite3_changes(r->db) == 0)
		rc = -ENOENT;
	return rc;
}

int registry_assign(struct registry *r, const char *mac, const char *profile)
{
	int rc = begin(r, 1);

	if (rc < 0)
		return rc;
	rc = update_one(r, bind(r, ST_ASSIGN, "ss", mac, profile), "assigning a profile");
	return end(r, rc, 1);
}

int registry_set_state(struct registry *r, const char *mac, const char *json, int64_t last_sync,
		       int64_t now)
{
	int rc;

	if (!json || strlen(json) > REGISTRY_STATE_MAX)
		return -EFBIG;
	rc = begin(r, 0);
	if (rc < 0)
		return rc;
	rc = update_one(r, bind(r, ST_STATE, "ssii", mac, json, last_sync, now), "storing state");
	return end(r, rc, 0);
}

int registry_set_hydrate(struct registry *r, const char *mac, const char *json)
{
	int rc;

	if (json && strlen(json) > REGISTRY_STATE_MAX)
		return -EFBIG;
	rc = begin(r, 1);
	if (rc < 0)
		return rc;
	rc = update_one(r, bind(r, ST_HYDRATE, "ss", mac, json), "storing a hydrate order");
	return end(r, rc, 1);
}

static void token_hash_hex(const char *token, char *hex)
{
	struct hash h;

	hash_buf(token, strlen(token), &h);
	hash_to_hex(&h, hex);
}

int registry_token_issue(struct registry *r, const char *mac, char *token_out, int64_t now)
{
	uint8_t raw[32];
	char hex[HASH_HEX_LEN + 1];
	struct hash tmp;
	int rc;

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		rc = -errno;
		log_error("cannot get random bytes for a token: %s", strerror(errno));
		return rc;
	}
	memcpy(tmp.b, raw, sizeof(raw));
	hash_to_hex(&tmp, token_out); /* just hex encoding of the random bytes */
	token_hash_hex(token_out, hex);
	rc = begin(r, 1);
	if (rc < 0)
		return rc;
	rc = update_one(r, bind(r, ST_TOKEN_SET, "ssi", mac, hex, now), "storing a token");
	rc = end(r, rc, 1);
	if (rc < 0)
		memset(token_out, 0, REGISTRY_TOKEN_HASH_HEX + 1);
	return rc;
}

int registry_token_lookup(struct registry *r, const char *token, char *mac_out)
{
	char hex[HASH_HEX_LEN + 1];
	sqlite3_stmt *s;
	int st, rc;

	if (!token || strlen(token) != REGISTRY_TOKEN_HASH_HEX)
		return -ENOENT;
	token_hash_hex(token, hex);
	s = bind(r, ST_TOKEN_FIND, "s", hex);
	st = sqlite3_step(s);
	if (st == SQLITE_ROW) {
		copy_col(mac_out, 18, s, 0);
		rc = 0;
	} else {
		rc = st == SQLITE_DONE ? -ENOENT : db_err(r, "looking up a token");
	}
	sqlite3_reset(s);
	return rc;
}
