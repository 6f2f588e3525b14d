/* Unit tests for appliance/registry: first sight and boots, renames, lookups,
 * assignment, agent state, tokens (only the hash at rest), schema versioning and
 * reopening (the data is durable across a close). */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appliance/registry.h"
#include "lib/util.h"
#include "tests/tap.h"

static int count_cb(const struct registry_machine *m, void *arg)
{
	(void)m;
	(*(int *)arg)++;
	return 0;
}

static int first_name_cb(const struct registry_machine *m, void *arg)
{
	snprintf(arg, 65, "%s", m->name);
	return 1;
}

/* A registry written by schema version 1 (before hydrate orders) opens,
 * migrates to 2 and keeps its rows. */
static void test_migrate_v1(const char *dir)
{
	char *path = xasprintf("%s/v1.db", dir);
	struct registry *r = NULL;
	struct registry_machine m;
	sqlite3 *db = NULL;

	sqlite3_open(path, &db);
	sqlite3_exec(db,
		     "CREATE TABLE machines(mac TEXT PRIMARY KEY NOT NULL, name TEXT UNIQUE,"
		     " first_seen INTEGER NOT NULL, last_boot INTEGER, last_sync INTEGER,"
		     " state_at INTEGER, assigned_profile TEXT, state TEXT,"
		     " token_hash TEXT UNIQUE, token_at INTEGER) WITHOUT ROWID;"
		     "INSERT INTO machines(mac, name, first_seen, assigned_profile)"
		     " VALUES ('52:54:00:00:00:07', 'old', 42, 'desk');"
		     "PRAGMA user_version = 1;",
		     NULL, NULL, NULL);
	sqlite3_close(db);
	is_int(registry_open(path, &r), 0, "a version 1 registry opens (migrated)");
	is_int(registry_get_by_mac(r, "52:54:00:00:00:07", &m), 0, "its row is kept");
	ok(!strcmp(m.name, "old") && m.first_seen == 42 && !strcmp(m.assigned_profile, "desk") &&
		   m.hydrate == NULL,
	   "with its values, and no hydrate order");
	registry_machine_release(&m);
	is_int(registry_set_hydrate(r, "52:54:00:00:00:07", "{\"id\":2}"), 0,
	       "the new column is writable");
	registry_free(r);
	free(path);
}

int main(void)
{
	char *dir = tap_tmpdir();
	char *path = xasprintf("%s/registry.db", dir);
	struct registry *r = NULL;
	struct registry_machine m;
	char token[REGISTRY_TOKEN_HASH_HEX + 1], mac[18], first[65];
	int n = 0;

	test_migrate_v1(dir);
	is_int(registry_open(path, &r), 0, "open creates the registry");
	is_int(registry_get_by_mac(r, "52:54:00:00:00:01", &m), -ENOENT, "unknown MAC");
	is_int(registry_record_boot(r, "52:54:00:00:00:01", "pc1", 1000), 0, "first boot");
	is_int(registry_get_by_mac(r, "52:54:00:00:00:01", &m), 0, "found by MAC");
	is_str(m.name, "pc1", "name recorded");
	is_int(m.first_seen, 1000, "first_seen");
	is_int(m.last_boot, 1000, "last_boot");
	is_int(m.last_sync, 0, "never synced");
	ok(m.state == NULL && !m.has_token && m.assigned_profile[0] == '\0',
	   "no state, token, profile");
	registry_machine_release(&m);

	is_int(registry_record_boot(r, "52:54:00:00:00:01", "pc1", 2000), 0, "second boot");
	is_int(registry_get_by_name(r, "pc1", &m), 0, "found by name");
	is_int(m.first_seen, 1000, "first_seen kept");
	is_int(m.last_boot, 2000, "last_boot updated");
	registry_machine_release(&m);

	/* the config moves the name pc1 to another MAC */
	is_int(registry_record_boot(r, "52:54:00:00:00:02", "pc1", 3000), 0, "name moves");
	is_int(registry_get_by_name(r, "pc1", &m), 0, "name lookup");
	is_str(m.mac, "52:54:00:00:00:02", "name now on the new MAC");
	registry_machine_release(&m);
	is_int(registry_get_by_mac(r, "52:54:00:00:00:01", &m), 0, "old row kept");
	is_str(m.name, "", "old row lost the name");
	registry_machine_release(&m);
	is_int(registry_ensure(r, "52:54:00:00:00:03", NULL, 4000), 0, "ensure without a boot");
	is_int(registry_get_by_mac(r, "52:54:00:00:00:03", &m), 0, "ensured row");
	is_int(m.last_boot, 0, "ensure records no boot");
	registry_machine_release(&m);
	is_int(registry_each(r, count_cb, &n), 0, "each");
	is_int(n, 3, "three machines");
	is_int(registry_each(r, first_name_cb, first), 1, "each stops on non-zero");
	is_str(first, "pc1", "named machines first");

	is_int(registry_assign(r, "52:54:00:00:00:02", "hpc"), 0, "assign");
	is_int(registry_assign(r, "52:54:00:00:00:99", "hpc"), -ENOENT, "assign unknown MAC");
	is_int(registry_set_state(r, "52:54:00:00:00:02", "{\"hydrated_pct\":50}", 5000, 5001), 0,
	       "state");
	is_int(registry_set_state(r, "52:54:00:00:00:99", "{}", 0, 1), -ENOENT, "state unknown");
	is_int(registry_get_by_mac(r, "52:54:00:00:00:02", &m), 0, "read back");
	is_str(m.assigned_profile, "hpc", "assigned profile");
	is_str(m.state, "{\"hydrated_pct\":50}", "state text");
	is_int(m.last_sync, 5000, "last_sync");
	is_int(m.state_at, 5001, "state_at");
	registry_machine_release(&m);
	is_int(registry_set_state(r, "52:54:00:00:00:02", "{}", 0, 6000), 0, "state without sync");
	is_int(registry_get_by_mac(r, "52:54:00:00:00:02", &m), 0, "read back");
	is_int(m.last_sync, 5000, "last_sync kept when not reported");
	registry_machine_release(&m);
	is_int(registry_assign(r, "52:54:00:00:00:02", NULL), 0, "clear assignment");

	is_int(registry_token_issue(r, "52:54:00:00:00:02", token, 7000), 0, "token issued");
	is_int(strlen(token), 64, "token is 64 hex chars");
	is_int(registry_token_lookup(r, token, mac), 0, "token lookup");
	is_str(mac, "52:54:00:00:00:02", "token names its machine");
	token[0] = token[0] == 'a' ? 'b' : 'a';
	is_int(registry_token_lookup(r, token, mac), -ENOENT, "wrong token");
	is_int(registry_token_lookup(r, "short", mac), -ENOENT, "malformed token");
	is_int(registry_token_issue(r, "52:54:00:00:00:99", token, 7000), -ENOENT,
	       "no token for unknown MAC");
	registry_free(r);

	/* reopen: data durable, token only as a hash at rest */
	r = NULL;
	is_int(registry_open(path, &r), 0, "reopen");
	is_int(registry_get_by_mac(r, "52:54:00:00:00:02", &m), 0, "row after reopen");
	ok(m.has_token && m.token_at == 7000, "token remembered");
	is_str(m.assigned_profile, "", "assignment cleared");
	ok(m.hydrate == NULL, "no hydrate order by default");
	registry_machine_release(&m);
	is_int(registry_set_hydrate(r, "52:54:00:00:00:02", "{\"id\":1,\"kind\":\"reset\"}"), 0,
	       "set a hydrate order");
	is_int(registry_set_hydrate(r, "52:54:00:00:00:99", "{}"), -ENOENT,
	       "hydrate order for an unknown MAC");
	registry_free(r);
	r = NULL;
	is_int(registry_open(path, &r), 0, "reopen again");
	is_int(registry_get_by_mac(r, "52:54:00:00:00:02", &m), 0, "row");
	is_str(m.hydrate ? m.hydrate : "", "{\"id\":1,\"kind\":\"reset\"}", "hydrate order kept");
	registry_machine_release(&m);
	is_int(registry_set_hydrate(r, "52:54:00:00:00:02", NULL), 0, "clear the order");
	is_int(registry_get_by_mac(r, "52:54:00:00:00:02", &m), 0, "row");
	ok(m.hydrate == NULL, "order cleared");
	registry_machine_release(&m);
	registry_free(r);
	{
		sqlite3 *db;
		sqlite3_stmt *s;
		int ver = -1;

		sqlite3_open(path, &db);
		sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);
		if (sqlite3_step(s) == SQLITE_ROW)
			ver = sqlite3_column_int(s, 0);
		sqlite3_finalize(s);
		is_int(ver, 2, "schema version recorded in user_version");
		sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
		sqlite3_close(db);
	}
	r = NULL;
	is_int(registry_open(path, &r), -EPROTO, "a newer schema is refused");
	ok(r == NULL, "no handle on failure");
	tap_rmtree(dir);
	free(path);
	return done_testing();
}
