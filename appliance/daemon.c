/* goldcached's core: one event loop (appliance/loop.h) that glues the pieces
 * together and owns every child it starts.
 *
 * Start order: everything that can be checked without writing a file is checked
 * first (so a bad config starts nothing and writes nothing); then the state dir
 * and the pid-file lock; the store and the registry; then the children under
 * supervision (appliance/supervise.h): tgtd on a private control socket, and
 * dnsmasq (unless dhcp mode is off) on the files appliance/dhcp.c writes.
 *
 * Desired state and reconciling
 * - Each machine gets a target (targets/iqn.h names) bound to its initiator name
 *   and CHAP account: the config's machines, and machines the registry has seen
 *   (their boot script was served) that a group, the unknown-machines policy or
 *   an assignment gives a profile. LUN 1 is the export file of its image
 *   version, STATE/exports/IMAGE@VERSION.img, read-only, shared by every machine
 *   on that version. LUN 2 (cache-mode machines whose profile persists) is the
 *   machine's upload file STATE/uploads/NAME.img, read-write, sparse at the
 *   profile's volume_size: the agent writes its changed chunks there and
 *   commits them as a snapshot through the API (appliance/sync.h). LUN 3
 *   (cache-mode machines with a pending restore/reset order naming a
 *   snapshot) is that snapshot's restore file STATE/restore/FROM@SNAP.img,
 *   read-only, exported by appliance/restore.h; the API reports it to the
 *   agent only once tgtd holds it (web_restore_lun reads the synced set). A
 *   machine's profile is the one `goldctl machine assign` put
 *   in the registry, else the config's; the version is the image's pinned one,
 *   else the store's current one. Serving a sanboot script (the API asks for the
 *   machine's CHAP secret) reconciles at once, so the target is there when iPXE
 *   logs in right after.
 * - Export files are materialised from the store by forked workers
 *   (appliance/worker.h), EXPORT_JOBS at a time, never on the loop; a machine
 *   whose export is not ready yet gets its target without a LUN until then. A
 *   shutdown kills running jobs (the export publishes by rename: a killed job
 *   leaves at most a temp file, removed at the next start).
 * - The desired set is recomputed (no tgtadm: config, registry, store pointers)
 *   every DESIRED_POLL_MS and reconciled when it differs, when tgtd (re)starts,
 *   after SIGHUP, when an export completes, and every RECONCILE_MS against drift.
 *   tgt_reconcile applies only differences, so untouched targets keep their tid
 *   and sessions; an assignment or a promotion reaches tgtd without a restart.
 * - Reconciles run in a forked worker, one at a time (about 4 ms per tgtadm run:
 *   seconds for a few hundred new targets, which HTTP must not wait for);
 *   desired_gen/synced_gen tell whether tgtd holds the latest set. The one
 *   exception runs in the loop: serving a sanboot script (below).
 *
 * Files (STATE is appliance.state_dir, or --state-dir)
 *   STATE/goldcached.pid   our pid, flock()ed for our lifetime: a second goldcached
 *                          on the same STATE refuses to start
 *   STATE/run/             tgtd's control socket and lock, dnsmasq's pid file
 *                          (runtime: removed)
 *   STATE/dhcp/            dnsmasq.conf and hosts.d/ (runtime: removed),
 *                          dnsmasq.leases (kept)
 *   STATE/exports/         gold LUN files (a cache: kept; unused ones removed)
 *   STATE/secrets/         generated CHAP secrets, NAME.chap, 0600 (kept)
 *   STATE/uploads/         upload LUN files, NAME.img, sparse, 0600 (kept)
 *   STATE/restore/         restore LUN files, FROM@SNAP.img (removed when no
 *                          order names them)
 *   STATE/deltas/          gold-update deltas, OLD-NEW.zd (a cache, bounded,
 *                          least recently used removed; appliance/delta.c)
 *   STATE/registry.db      the machine registry (kept)
 *   STATE/tgt-accounts.json  fingerprints of the CHAP secrets set in tgtd (kept)
 *
 * Reload (SIGHUP): the config is loaded and checked as at start; any error keeps
 * the running config (the error is logged). Otherwise only the difference is
 * applied: dnsmasq's files are rewritten where they changed (a new host file is
 * picked up by dnsmasq itself, a removed or changed one needs SIGHUP, a changed
 * main file a restart); tgtd is reconciled (restarted only when the iSCSI portal
 * or IQN prefix changed); HTTP rebinds when its address or port changed. A new
 * store_dir or state_dir is refused (restart goldcached to move them).
 *
 * Shutdown (SIGTERM, SIGINT): kill export jobs, delete the targets and stop tgtd
 * (targets/tgtd.h's sequence: tgtd ignores SIGTERM while targets exist), stop
 * dnsmasq (SIGTERM, SIGKILL after a grace period), remove the runtime files,
 * exit 0. docs/operations.md is the operator's view of all this. */
#include "appliance/daemon.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "appliance/dhcp.h"
#include "appliance/image.h"
#include "appliance/loop.h"
#include "appliance/registry.h"
#include "appliance/restore.h"
#include "appliance/store.h"
#include "appliance/supervise.h"
#include "appliance/sync.h"
#include "appliance/web.h"
#include "appliance/worker.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"
#include "targets/iqn.h"
#include "targets/reconcile.h"
#include "targets/tgtadm.h"
#include "targets/tgtd.h"

#define EXPORT_JOBS 2
#define EXPORT_RETRY_MS 30000
#define DESIRED_POLL_MS 2000
#define RECONCILE_MS 60000
#define RECONCILE_RETRY_MS 2000
#define TGTD_READY_TIMEOUT_MS 10000
#define TGTD_SHUTDOWN_MS 10000
#define SECRET_LEN 24
#define DIRTY(d) ((d)->desired_gen != (d)->synced_gen)
/* A sanboot script reconciles in the loop only for this many changed targets:
 * a few tgtadm runs (ms). Larger changes (a tgtd restart) go to the worker. */
#define INLINE_MAX_TARGETS 4

enum export_state { EXPORT_QUEUED, EXPORT_RUNNING, EXPORT_READY, EXPORT_FAILED };

/* One image version materialised as a LUN file. */
struct export
{
	struct daemon *d;
	char *image;
	uint32_t version;
	char *path;
	enum export_state state;
	struct worker_child *job;
	uint64_t retry_at;
	int wanted; /* used by the current desired set */
};

/* One machine's target as last computed (strings owned here). */
struct want {
	char iqn[IQN_MAX + 1];
	char initiator[IQN_MAX + 1];
	char *user;
	char *secret;
	char *lun_path; /* NULL: no LUN yet (no version in the store, or export not ready) */
	char *upload_path; /* LUN 2, NULL: none (not a persistent cache-mode machine) */
	char *restore_path; /* LUN 3, read-only: the snapshot a pending order names
			     * (appliance/restore.h), NULL: none or not exported yet */
	struct export *exp;
	struct restore_file *rst; /* the order's file, ready or not */
};

struct daemon {
	struct loop *loop;
	const struct config *cfg; /* current: the caller's, or owned_cfg after a reload */
	struct config *owned_cfg;
	char *config_path;
	char *state_dir, *dhcp_dir, *run_dir, *exports_dir, *secrets_dir, *uploads_dir;
	char *restore_dir;
	struct restores *restores;
	char *pid_path, *log_path, *tgt_sock, *tgt_memo;
	int lock_fd, log_fd;
	struct store *store;
	struct registry *reg;
	struct web *web;
	struct sync *sync;
	struct supervisor *tgtd, *dnsmasq;
	struct tgt_ctl ctl;
	char *portal;
	struct export **exports;
	size_t n_exports, exports_cap;
	unsigned jobs_running;
	struct want *wants;
	size_t n_wants;
	uint64_t desired_gen; /* bumped whenever the wants change (or tgtd lost them) */
	uint64_t synced_gen; /* desired_gen of the last complete reconcile */
	struct worker_child *rec_job; /* the reconcile running in a worker, if any */
	struct tgt_target_spec *rec_specs; /* what it applies (read by the child) */
	size_t rec_n;
	uint64_t rec_gen;
	int rec_again; /* run another one when it ends */
	struct want *rec_wants; /* the set the worker applies */
	size_t n_rec_wants;
	struct want *synced; /* the set tgtd is known to hold (NULL: unknown/empty) */
	size_t n_synced;
	struct loop_timer *reconcile_timer, *poll_timer, *drift_timer;
	int shutting_down;
	int children_left;
};

static char *path_join(const char *dir, const char *name)
{
	return xasprintf("%s/%s", dir, name);
}

/* Is prog runnable (a path, or a name found in PATH)? */
static int program_found(const char *prog)
{
	const char *path = getenv("PATH");
	int found = 0;

	if (strchr(prog, '/'))
		return access(prog, X_OK) == 0;
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
	while (*path && !found) {
		size_t n = strcspn(path, ":");
		char *p = xasprintf("%.*s/%s", (int)n, path, prog);

		found = access(p, X_OK) == 0;
		free(p);
		path += n + (path[n] == ':');
	}
	return found;
}

/* ---- CHAP secrets ---- */

/* A random secret of SECRET_LEN characters from [A-Za-z0-9]: valid for tgt
 * (12-64 printable, no comma) and for the config's secret files. */
static int secret_generate(char out[SECRET_LEN + 1])
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char raw[SECRET_LEN];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -EIO;
	for (size_t i = 0; i < SECRET_LEN; i++)
		out[i] = alphabet[raw[i] % (sizeof(alphabet) - 1)];
	out[SECRET_LEN] = '\0';
	explicit_bzero(raw, sizeof(raw));
	return 0;
}

/* The CHAP secret of the machine called name: secret_file when the config names
 * one, else STATE/secrets/NAME.chap, generated on first use when create is set.
 * 0 and *out (heap; caller wipes and frees), -ENOENT (none yet, !create) or -errno
 * (logged). */
static int machine_secret(struct daemon *d, const char *name, const char *secret_file, int create,
			  char **out)
{
	char *path, buf[SECRET_LEN + 2];
	int r;

	*out = NULL;
	if (secret_file) {
		r = config_secret_read(secret_file, out);
		if (r < 0)
			log_error("cannot read CHAP secret file \"%s\" of machine \"%s\": %s",
				  secret_file, name, strerror(-r));
		return r;
	}
	path = xasprintf("%s/%s.chap", d->secrets_dir, name);
	r = config_secret_read(path, out);
	if (r == -ENOENT && create) {
		r = secret_generate(buf);
		if (r == 0) {
			buf[SECRET_LEN] = '\n';
			r = io_write_file_atomic(path, buf, SECRET_LEN + 1, 0600);
			buf[SECRET_LEN] = '\0';
		}
		if (r == 0) {
			*out = xstrdup(buf);
			log_info("generated the CHAP secret of machine \"%s\" into \"%s\"", name,
				 path);
		} else {
			log_error("cannot write CHAP secret \"%s\": %s", path, strerror(-r));
		}
		explicit_bzero(buf, sizeof(buf));
	} else if (r < 0 && r != -ENOENT) {
		log_error("cannot read CHAP secret \"%s\": %s", path, strerror(-r));
	}
	free(path);
	return r;
}

static void secret_free(char *s)
{
	if (!s)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

/* ---- exports ---- */

static void schedule_reconcile(struct daemon *d, uint64_t delay_ms);
static void exports_pump(struct daemon *d);
static void child_gone(struct daemon *d);

/* In a forked worker: drops the fds it inherited from the loop (the pid-file
 * lock, listening sockets, pidfds) but the log, so that nothing the loop owned
 * looks alive through the worker. */
static void worker_fds_close(const struct daemon *d)
{
	int lfd = d->log_fd;

	if (lfd > 3)
		close_range(3, (unsigned)lfd - 1, 0);
	close_range(lfd >= 3 ? (unsigned)lfd + 1 : 3, ~0U, 0);
}

/* Runs in the forked worker: its own store handle (the parent's zstd contexts
 * and lock state stay the parent's), then the export. */
static int export_run(void *arg)
{
	struct export *e = arg;
	struct store *s = NULL;
	int r;

	worker_fds_close(e->d);
	r = store_open(e->d->cfg->appliance.store_dir, 0, &s);
	if (r < 0)
		return r;
	r = image_export_to_file(s, e->image, e->version, e->path, NULL);
	store_free(s);
	return r;
}

static void export_done(int result, void *arg)
{
	struct export *e = arg;
	struct daemon *d = e->d;

	e->job = NULL;
	d->jobs_running--;
	if (d->shutting_down) {
		e->state = result == 0 ? EXPORT_READY : EXPORT_FAILED;
		child_gone(d);
		return;
	}
	if (result == 0) {
		e->state = EXPORT_READY;
		log_info("export %s@%u ready: \"%s\"", e->image, e->version, e->path);
		schedule_reconcile(d, 0); /* its refresh sees the new LUN */
	} else {
		e->state = EXPORT_FAILED;
		e->retry_at = now_ms() + EXPORT_RETRY_MS;
		log_error("cannot export %s@%u to \"%s\": %s; retrying in %d s", e->image,
			  e->version, e->path, strerror(-result), EXPORT_RETRY_MS / 1000);
	}
	exports_pump(d);
}

/* Starts queued (and due failed) jobs up to the limit. */
static void exports_pump(struct daemon *d)
{
	uint64_t now = now_ms();

	for (size_t i = 0; i < d->n_exports && d->jobs_running < EXPORT_JOBS; i++) {
		struct export *e = d->exports[i];

		if (!e->wanted)
			continue;
		if (e->state == EXPORT_FAILED && now >= e->retry_at)
			e->state = EXPORT_QUEUED;
		if (e->state != EXPORT_QUEUED)
			continue;
		log_info("exporting %s@%u to \"%s\"", e->image, e->version, e->path);
		if (worker_fork(d->loop, export_run, export_done, e, &e->job) < 0) {
			e->state = EXPORT_FAILED;
			e->retry_at = now + EXPORT_RETRY_MS;
			continue;
		}
		e->state = EXPORT_RUNNING;
		d->jobs_running++;
	}
}

/* The export of image@version, created on first use: ready when its file exists
 * (exports are published whole, and versions are immutable), else queued. */
static struct export *export_get(struct daemon *d, const char *image, uint32_t version)
{
	struct export *e;
	char name[96];

	for (size_t i = 0; i < d->n_exports; i++)
		if (d->exports[i]->version == version && strcmp(d->exports[i]->image, image) == 0)
			return d->exports[i];
	e = xcalloc(1, sizeof(*e));
	e->d = d;
	e->image = xstrdup(image);
	e->version = version;
	snprintf(name, sizeof(name), "%s@%u.img", image, version);
	e->path = path_join(d->exports_dir, name);
	e->state = access(e->path, R_OK) == 0 ? EXPORT_READY : EXPORT_QUEUED;
	xgrow((void **)&d->exports, &d->exports_cap, d->n_exports + 1, sizeof(struct export *));
	d->exports[d->n_exports++] = e;
	return e;
}

static void export_free(struct export *e)
{
	free(e->image);
	free(e->path);
	free(e);
}

/* Removes the files in the exports dir that fit (0) or do not fit (1) a temp
 * file's name ("NAME@V.img.tmp.XXXXXX"), except those of known exports. */
static void exports_sweep(struct daemon *d, int tmp)
{
	DIR *dir = opendir(d->exports_dir);
	struct dirent *de;

	while (dir && (de = readdir(dir))) {
		int keep = de->d_name[0] == '.' || (strstr(de->d_name, ".img.tmp.") != NULL) != tmp;
		char *p;

		for (size_t i = 0; i < d->n_exports && !keep; i++)
			keep = strcmp(strrchr(d->exports[i]->path, '/') + 1, de->d_name) == 0;
		if (keep)
			continue;
		p = path_join(d->exports_dir, de->d_name);
		if (unlink(p) == 0)
			log_info("removed leftover \"%s\"", p);
		free(p);
	}
	if (dir)
		closedir(dir);
}

/* After a complete reconcile (no LUN uses them any more): drops the exports no
 * machine wants and removes their files. With all (once at start, after the
 * first desired set), also files no export of ours names. Temp files of jobs
 * are swept only before any job starts (exports_sweep(d, 1)). */
static void exports_prune(struct daemon *d, int all)
{
	size_t k = 0;

	for (size_t i = 0; i < d->n_exports; i++) {
		struct export *e = d->exports[i];

		if (e->wanted || e->state == EXPORT_RUNNING) {
			d->exports[k++] = e;
			continue;
		}
		if (unlink(e->path) == 0)
			log_info("removed unused export \"%s\"", e->path);
		export_free(e);
	}
	d->n_exports = k;
	if (all)
		exports_sweep(d, 0);
}

/* ---- desired state ---- */

static void want_release(struct want *w)
{
	free(w->user);
	secret_free(w->secret);
	free(w->lun_path);
	free(w->upload_path);
	free(w->restore_path);
	memset(w, 0, sizeof(*w));
}

static void wants_free(struct want *w, size_t n)
{
	if (!w)
		return;
	for (size_t i = 0; i < n; i++)
		want_release(&w[i]);
	free(w);
}

static char *str_dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* A deep copy of wants (without their export links). */
static struct want *wants_copy(const struct want *w, size_t n)
{
	struct want *c = xcalloc(n ? n : 1, sizeof(*c));

	for (size_t i = 0; i < n; i++) {
		memcpy(c[i].iqn, w[i].iqn, sizeof(c[i].iqn));
		memcpy(c[i].initiator, w[i].initiator, sizeof(c[i].initiator));
		c[i].user = xstrdup(w[i].user);
		c[i].secret = xstrdup(w[i].secret);
		c[i].lun_path = str_dup_or_null(w[i].lun_path);
		c[i].upload_path = str_dup_or_null(w[i].upload_path);
		c[i].restore_path = str_dup_or_null(w[i].restore_path);
	}
	return c;
}

/* The registry's rows, as far as targets care: sorted by MAC. */
struct reg_row {
	char mac[18];
	char name[65];
	char profile[65]; /* assigned profile, "" when none */
	char order_from[65]; /* pending order's snapshot: from@snap, "" and 0: none */
	uint32_t order_snap;
};

struct reg_rows {
	struct reg_row *a;
	size_t n, cap;
};

/* The snapshot a pending order (registry JSON, docs/sync.md) names: from and
 * *snap, or "" and 0 (no order, a fresh reset, or unreadable text). */
static void restore_order_parse(const char *text, char *from, size_t size, uint32_t *snap)
{
	json_t *h = text ? json_loads(text, 0, NULL) : NULL;
	const char *f = json_string_value(json_object_get(h, "from"));
	json_int_t id = json_integer_value(json_object_get(h, "snapshot"));

	if (f && name_is_valid(f) && strlen(f) < size && id > 0 && id <= UINT32_MAX) {
		snprintf(from, size, "%s", f);
		*snap = (uint32_t)id;
	}
	json_decref(h);
}

static int reg_row_cmp(const void *a, const void *b)
{
	return strcmp(((const struct reg_row *)a)->mac, ((const struct reg_row *)b)->mac);
}

static int reg_row_add(const struct registry_machine *m, void *arg)
{
	struct reg_rows *rows = arg;
	struct reg_row *r;

	xgrow((void **)&rows->a, &rows->cap, rows->n + 1, sizeof(*rows->a));
	r = &rows->a[rows->n++];
	snprintf(r->mac, sizeof(r->mac), "%s", m->mac);
	snprintf(r->name, sizeof(r->name), "%s", m->name);
	snprintf(r->profile, sizeof(r->profile), "%s", m->assigned_profile);
	r->order_from[0] = '\0';
	r->order_snap = 0;
	restore_order_parse(m->hydrate, r->order_from, sizeof(r->order_from), &r->order_snap);
	return 0;
}

static const struct reg_row *reg_row_find(const struct reg_rows *rows, const char *mac)
{
	struct reg_row key;

	snprintf(key.mac, sizeof(key.mac), "%s", mac);
	return rows->n ? bsearch(&key, rows->a, rows->n, sizeof(*rows->a), reg_row_cmp) : NULL;
}

/* The profile a machine boots (as the API renders it): its registry assignment
 * when that names a profile of cfg, else fallback (NULL: refused by policy). */
static const struct config_profile *machine_profile(const struct config *cfg,
						    const struct reg_row *row,
						    const struct config_profile *fallback,
						    const char *name)
{
	const struct config_profile *p;

	if (!row || !row->profile[0])
		return fallback;
	p = config_profile_by_name(cfg, row->profile);
	if (!p)
		log_debug("machine \"%s\": assigned profile \"%s\" is not in the config", name,
			  row->profile);
	return p ? p : fallback;
}

/* LUN 3 of a cache-mode machine whose pending order names a snapshot: the
 * snapshot's restore file, once exported (appliance/restore.h). */
static void want_restore(struct daemon *d, struct want *x, const struct config_profile *p,
			 const struct reg_row *row)
{
	const char *path;

	if (!d->restores || !row || !row->order_snap || p->mode != CONFIG_MODE_CACHE)
		return;
	x->rst = restores_get(d->restores, row->order_from, row->order_snap);
	path = restore_file_path(x->rst);
	if (path)
		x->restore_path = xstrdup(path);
}

/* Fills x for the machine called name booting profile p. Returns 0, or -EINVAL
 * (no valid iSCSI name, unreadable secret: logged). */
static int want_fill(struct daemon *d, const struct config *cfg, int live, struct want *x,
		     const char *name, const char *secret_file, const struct config_profile *p,
		     const struct reg_row *row)
{
	const char *prefix = cfg->appliance.iscsi.iqn_prefix;
	uint32_t version;
	int r;

	if (iqn_machine_target(prefix, name, x->iqn, sizeof(x->iqn)) < 0 ||
	    iqn_machine_initiator(prefix, name, x->initiator, sizeof(x->initiator)) < 0) {
		log_error("machine \"%s\": no valid iSCSI name under \"%s\" (at most %d "
			  "characters in all)",
			  name, prefix, IQN_MAX);
		return -EINVAL;
	}
	r = machine_secret(d, name, secret_file, live, &x->secret);
	if (r == -ENOENT && !live)
		x->secret = xstrdup("to-be-generated"); /* generated at start */
	else if (r < 0)
		return -EINVAL;
	x->user = xstrdup(name);
	if (!live)
		return 0;
	if (p->mode == CONFIG_MODE_CACHE && p->persist && d->uploads_dir &&
	    sync_upload_ensure(d->uploads_dir, name, p->volume_size) == 0) {
		char up[4096];

		if (sync_upload_path(d->uploads_dir, name, up, sizeof(up)) == 0)
			x->upload_path = xstrdup(up);
	}
	want_restore(d, x, p, row);
	if (strcmp(p->image_ref->version, "current") != 0) {
		if (parse_u32(p->image_ref->version, &version) < 0) {
			log_error("image \"%s\": version \"%s\" is not a version number",
				  p->image_ref->name, p->image_ref->version);
			return 0;
		}
	} else if (!d->store || image_current(d->store, p->image_ref->name, &version) < 0) {
		log_debug("machine \"%s\": image \"%s\" has no current version yet", name,
			  p->image_ref->name);
		return 0;
	}
	x->exp = export_get(d, p->image_ref->name, version);
	if (x->exp->state == EXPORT_READY)
		x->lun_path = xstrdup(x->exp->path);
	return 0;
}

/* Computes every machine's target: the config's machines, and (live) machines
 * the registry knows that a group, the unknown-machines policy or an assignment
 * gives a profile (named as the API names them: their registry name, else the
 * MAC in hyphen form). With live set, missing secrets are generated and LUNs
 * resolved to exports (created on demand); without, nothing is written (the
 * checks before start and reload). 0 and the wants, or -EINVAL when a config
 * machine cannot get a target (logged). */
static int wants_build(struct daemon *d, const struct config *cfg, int live, struct want **out,
		       size_t *n_out)
{
	struct reg_rows rows = {0};
	struct want *w;
	size_t n = 0;
	int r = 0;

	if (live && d->reg) {
		registry_each(d->reg, reg_row_add, &rows);
		if (rows.n)
			qsort(rows.a, rows.n, sizeof(*rows.a), reg_row_cmp);
	}
	w = xcalloc(cfg->n_machines + rows.n + 1, sizeof(*w));
	for (size_t i = 0; i < cfg->n_machines; i++) {
		const struct config_machine *m = &cfg->machines[i];
		const struct reg_row *row = reg_row_find(&rows, m->mac_str);
		const struct config_profile *p = machine_profile(cfg, row, m->profile_ref, m->name);

		if (want_fill(d, cfg, live, &w[n], m->name, m->chap_secret_file, p, row) < 0) {
			want_release(&w[n]);
			r = -EINVAL;
			continue;
		}
		n++;
	}
	for (size_t i = 0; i < rows.n && r == 0; i++) {
		const struct reg_row *row = &rows.a[i];
		const struct config_profile *p;
		struct config_match match;
		uint8_t mac[6];
		char name[65];

		if (config_mac_parse(row->mac, mac) < 0)
			continue;
		config_machine_by_mac(cfg, mac, &match);
		if (match.kind == CONFIG_MATCH_MACHINE)
			continue; /* done above */
		if (row->name[0])
			snprintf(name, sizeof(name), "%s", row->name);
		else
			snprintf(name, sizeof(name), "%02x-%02x-%02x-%02x-%02x-%02x", mac[0],
				 mac[1], mac[2], mac[3], mac[4], mac[5]);
		p = machine_profile(cfg, row, match.profile, name);
		if (!p || !name_is_valid(name) || config_machine_by_name(cfg, name))
			continue;
		if (want_fill(d, cfg, live, &w[n], name, NULL, p, row) == 0)
			n++;
		else
			want_release(&w[n]);
	}
	free(rows.a);
	if (r < 0) {
		wants_free(w, n);
		return r;
	}
	*out = w;
	*n_out = n;
	return 0;
}

/* The target specs of wants (borrowing their strings); caller frees. */
static struct tgt_target_spec *wants_specs(const struct want *w, size_t n)
{
	struct tgt_target_spec *t = xcalloc(n ? n : 1, sizeof(*t));

	for (size_t i = 0; i < n; i++) {
		t[i].iqn = w[i].iqn;
		t[i].initiator = w[i].initiator;
		t[i].chap_user = w[i].user;
		t[i].chap_secret = w[i].secret;
		if (w[i].lun_path) {
			t[i].luns[0] = (struct tgt_lun_spec){1, w[i].lun_path, 1};
			t[i].n_luns = 1;
		}
		if (w[i].upload_path)
			t[i].luns[t[i].n_luns++] = (struct tgt_lun_spec){2, w[i].upload_path, 0};
		if (w[i].restore_path)
			t[i].luns[t[i].n_luns++] =
				(struct tgt_lun_spec){RESTORE_LUN, w[i].restore_path, 1};
	}
	return t;
}

/* Checks the targets cfg asks for, as tgt_reconcile will, writing nothing. */
static int targets_check(struct daemon *d, const struct config *cfg)
{
	struct tgt_target_spec *t;
	struct tgt_desired des;
	struct want *w;
	size_t n;
	char err[512];
	int r;

	r = wants_build(d, cfg, 0, &w, &n);
	if (r < 0)
		return r;
	t = wants_specs(w, n);
	des = (struct tgt_desired){t, n};
	r = tgt_desired_check(&des, cfg->appliance.iscsi.iqn_prefix, err, sizeof(err));
	if (r < 0)
		log_error("%s: %s", cfg->path, err);
	free(t);
	wants_free(w, n);
	return r;
}

static int want_equal(const struct want *a, const struct want *b)
{
	return strcmp(a->iqn, b->iqn) == 0 && strcmp(a->initiator, b->initiator) == 0 &&
	       strcmp(a->user, b->user) == 0 && strcmp(a->secret, b->secret) == 0 &&
	       !a->lun_path == !b->lun_path &&
	       (!a->lun_path || strcmp(a->lun_path, b->lun_path) == 0) &&
	       !a->upload_path == !b->upload_path &&
	       (!a->upload_path || strcmp(a->upload_path, b->upload_path) == 0) &&
	       !a->restore_path == !b->restore_path &&
	       (!a->restore_path || strcmp(a->restore_path, b->restore_path) == 0);
}

/* Recomputes the wants; marks them dirty when they differ from the last set;
 * starts the export jobs they need. */
static void desired_refresh(struct daemon *d)
{
	struct want *w;
	size_t n;
	int changed;

	if (wants_build(d, d->cfg, 1, &w, &n) < 0)
		return; /* logged; the last good set stays */
	changed = n != d->n_wants;
	for (size_t i = 0; i < n && !changed; i++)
		changed = !want_equal(&w[i], &d->wants[i]);
	if (changed)
		d->desired_gen++;
	wants_free(d->wants, d->n_wants);
	d->wants = w;
	d->n_wants = n;
	for (size_t i = 0; i < d->n_exports; i++)
		d->exports[i]->wanted = 0;
	for (size_t i = 0; i < n; i++)
		if (w[i].exp)
			w[i].exp->wanted = 1;
	exports_pump(d);
	if (d->restores) {
		restores_unmark(d->restores);
		for (size_t i = 0; i < n; i++)
			if (w[i].rst)
				restore_file_mark(w[i].rst);
		restores_pump(d->restores);
	}
}

/* ---- reconciling tgtd ---- */

static void timer_drop(struct daemon *d, struct loop_timer **t)
{
	loop_timer_cancel(d->loop, *t);
	*t = NULL;
}

static void log_reconcile(const struct tgt_reconcile_stats *st)
{
	if (st->changes)
		log_info("tgt reconciled: %u changes (targets +%u -%u, LUNs +%u -%u ~%u, "
			 "accounts +%u -%u, %u errors)",
			 st->changes, st->targets_created, st->targets_deleted, st->luns_added,
			 st->luns_removed, st->luns_updated, st->accounts_created,
			 st->accounts_deleted, st->errors);
}

/* Runs in the forked worker: a reconcile costs a few ms per tgtadm run, so a
 * few seconds per hundred new targets, which the loop (HTTP) must not wait for.
 * The worker loads the CHAP secret memo from its file; the loop never caches it. */
static int reconcile_run(void *arg)
{
	struct daemon *d = arg;
	struct tgt_desired des = {d->rec_specs, d->rec_n};
	struct tgt_reconcile_stats st = {0};
	int r;

	worker_fds_close(d);
	r = tgt_reconcile(&d->ctl, &des, &st);
	log_reconcile(&st);
	return r;
}

static void reconcile_done(int result, void *arg)
{
	struct daemon *d = arg;

	d->rec_job = NULL;
	if (d->shutting_down) {
		child_gone(d);
		return;
	}
	wants_free(d->synced, d->n_synced);
	d->synced = NULL;
	d->n_synced = 0;
	if (result == 0) {
		d->synced = d->rec_wants;
		d->n_synced = d->n_rec_wants;
		d->rec_wants = NULL;
		d->n_rec_wants = 0;
	}
	wants_free(d->rec_wants, d->n_rec_wants); /* a failed run: tgtd's state unknown */
	d->rec_wants = NULL;
	d->n_rec_wants = 0;
	if (result == 0) {
		d->synced_gen = d->rec_gen;
		if (!DIRTY(d)) {
			exports_prune(d, 0); /* no LUN uses the unwanted ones any more */
			if (d->restores)
				restores_prune(d->restores, 0);
		}
	} else if (result != -EINTR) {
		log_warn("tgt reconcile incomplete (%s); retrying in %d ms", strerror(-result),
			 RECONCILE_RETRY_MS);
	}
	if (result < 0)
		schedule_reconcile(d, RECONCILE_RETRY_MS);
	else if (d->rec_again || DIRTY(d))
		schedule_reconcile(d, 0);
	d->rec_again = 0;
}

/* Starts a reconcile of the current wants in a worker (one at a time). */
static void reconcile_now(struct loop *l, void *arg)
{
	struct daemon *d = arg;
	int r;

	(void)l;
	d->reconcile_timer = NULL;
	if (d->shutting_down || supervise_state(d->tgtd) != SV_RUNNING)
		return; /* tgtd's on_ready schedules the next one */
	desired_refresh(d);
	if (d->rec_job) {
		d->rec_again = 1;
		return;
	}
	d->rec_specs = wants_specs(d->wants, d->n_wants);
	d->rec_n = d->n_wants;
	d->rec_gen = d->desired_gen;
	r = worker_fork(d->loop, reconcile_run, reconcile_done, d, &d->rec_job);
	free(d->rec_specs); /* the worker has its copy */
	d->rec_specs = NULL;
	if (r < 0) {
		schedule_reconcile(d, RECONCILE_RETRY_MS);
		return;
	}
	d->rec_wants = wants_copy(d->wants, d->n_wants);
	d->n_rec_wants = d->n_wants;
}

/* Reconciles in the loop, for the one case that cannot wait: a sanboot script
 * is being served and iPXE logs in right after it. Skipped while a worker
 * reconciles (two reconcilers must never race on one tgtd). */
static void reconcile_inline(struct daemon *d)
{
	struct tgt_reconcile_stats st = {0};
	struct tgt_target_spec *t;
	struct tgt_desired des;
	uint64_t gen = d->desired_gen;
	size_t changed = 0;
	int r;

	/* targets that differ from what tgtd holds, counted by position (an upper
	 * bound: a machine inserted in the middle counts every later one) */
	for (size_t i = 0; i < d->n_wants; i++)
		changed +=
			!d->synced || i >= d->n_synced || !want_equal(&d->wants[i], &d->synced[i]);
	if (d->n_synced > d->n_wants)
		changed += d->n_synced - d->n_wants;
	if (d->rec_job || supervise_state(d->tgtd) != SV_RUNNING || changed > INLINE_MAX_TARGETS) {
		schedule_reconcile(d, 0);
		return;
	}
	t = wants_specs(d->wants, d->n_wants);
	des = (struct tgt_desired){t, d->n_wants};
	r = tgt_reconcile(&d->ctl, &des, &st);
	tgt_ctl_release(&d->ctl); /* workers update the memo file: never cache it here */
	free(t);
	log_reconcile(&st);
	wants_free(d->synced, d->n_synced);
	d->synced = NULL;
	d->n_synced = 0;
	if (r == 0) {
		d->synced_gen = gen;
		d->synced = wants_copy(d->wants, d->n_wants);
		d->n_synced = d->n_wants;
	} else {
		schedule_reconcile(d, RECONCILE_RETRY_MS);
	}
}

static void schedule_reconcile(struct daemon *d, uint64_t delay_ms)
{
	if (d->shutting_down || d->reconcile_timer)
		return;
	d->reconcile_timer = loop_timer_add(d->loop, delay_ms, reconcile_now, d);
}

static void poll_desired(struct loop *l, void *arg)
{
	struct daemon *d = arg;

	d->poll_timer = loop_timer_add(l, DESIRED_POLL_MS, poll_desired, d);
	desired_refresh(d);
	if (DIRTY(d))
		schedule_reconcile(d, 0);
}

static void drift_check(struct loop *l, void *arg)
{
	struct daemon *d = arg;

	d->drift_timer = loop_timer_add(l, RECONCILE_MS, drift_check, d);
	schedule_reconcile(d, 0);
}

/* ---- tgtd ---- */

/* Ready when tgtd answers AND listens on exactly our portal: a tgtd that
 * cannot bind the portal does not exit but falls back to every interface
 * (0.0.0.0:3260), which must never serve, so it is killed at once (the exit
 * restarts it with backoff). */
static int tgtd_probe(struct supervisor *sv, void *arg)
{
	struct daemon *d = arg;
	int r = tgtd_ready_check(&d->ctl, d->portal);

	if (r == -EADDRINUSE) {
		log_error("tgtd[%d] could not bind the iSCSI portal \"%s\" (in use?) and "
			  "listens elsewhere: killing it",
			  (int)supervise_pid(sv), d->portal);
		supervise_signal(sv, SIGKILL);
	}
	return r;
}

static void tgtd_ready(struct supervisor *sv, void *arg)
{
	struct daemon *d = arg;

	(void)sv;
	/* a fresh tgtd is empty: reconcile now, whatever else was pending */
	d->desired_gen++;
	wants_free(d->synced, d->n_synced);
	d->synced = NULL;
	d->n_synced = 0;
	if (d->reconcile_timer) {
		loop_timer_cancel(d->loop, d->reconcile_timer);
		d->reconcile_timer = NULL;
	}
	schedule_reconcile(d, 0);
}

/* Creates tgtd's supervisor for the current portal (not started). */
static int tgtd_setup(struct daemon *d)
{
	const char *argv[TGTD_ARGV_MAX];
	char bufs[512], *env_sock;
	const char *env[2] = {NULL, NULL};
	struct supervise_opts o = {
		.name = "tgtd",
		.ready = tgtd_probe,
		.on_ready = tgtd_ready,
		.ready_interval_ms = 50,
		.ready_timeout_ms = TGTD_READY_TIMEOUT_MS,
		.death_signal = SIGKILL, /* tgtd ignores SIGTERM while targets exist */
		.arg = d,
	};
	int r;

	r = tgtd_argv(&d->ctl, d->portal, argv, bufs, sizeof(bufs));
	if (r < 0) {
		log_error("cannot build tgtd's command line for portal \"%s\"", d->portal);
		return r;
	}
	env_sock = xasprintf("TGT_IPC_SOCKET=%s", d->tgt_sock);
	env[0] = env_sock;
	o.argv = argv;
	o.env = env;
	d->tgtd = supervise_new(d->loop, &o);
	free(env_sock);
	return 0;
}

/* What tgtd needs, checked before anything is written. */
static int tgtd_check(const struct daemon *d)
{
	const char *tgtd = d->ctl.tgtd ? d->ctl.tgtd : "tgtd";
	const char *tgtadm = d->ctl.tgtadm ? d->ctl.tgtadm : "tgtadm";
	struct sockaddr_un sun;

	if (!program_found(tgtd) || !program_found(tgtadm)) {
		log_error("%s not found (install the tgt package)",
			  program_found(tgtd) ? tgtadm : tgtd);
		return -ENOENT;
	}
	/* tgtd appends ".0.lock" to its socket path, which must fit in sun_path */
	if (strlen(d->tgt_sock) + strlen(".0.lock") >= sizeof(sun.sun_path)) {
		log_error("state dir \"%s\" is too long for tgtd's control socket (at most %zu "
			  "characters in all); use a shorter state dir",
			  d->state_dir, sizeof(sun.sun_path) - 1 - strlen("/run/tgtd.sock.0.lock"));
		return -ENAMETOOLONG;
	}
	return 0;
}

/* ---- dnsmasq ---- */

/* Does ifname carry an IPv6 address? Then dnsmasq sends router adverts, without
 * which iPXE waits about 16 s for one. */
static int iface_has_ipv6(const char *ifname)
{
	struct ifaddrs *ifa, *i;
	int found = 0;

	if (getifaddrs(&ifa) < 0)
		return 0;
	for (i = ifa; i && !found; i = i->ifa_next)
		found = i->ifa_addr && i->ifa_addr->sa_family == AF_INET6 &&
			strcmp(i->ifa_name, ifname) == 0;
	freeifaddrs(ifa);
	return found;
}

/* Strings a struct dhcp_config borrows. */
struct dhcp_bufs {
	char range_start[INET_ADDRSTRLEN], range_end[INET_ADDRSTRLEN];
	char *http_base;
	struct dhcp_host *hosts;
};

static void dhcp_from_config(const struct daemon *d, const struct config *cfg,
			     struct dhcp_config *c, struct dhcp_bufs *b)
{
	const struct config_appliance *a = &cfg->appliance;

	memset(c, 0, sizeof(*c));
	inet_ntop(AF_INET, &a->dhcp.range_start, b->range_start, sizeof(b->range_start));
	inet_ntop(AF_INET, &a->dhcp.range_end, b->range_end, sizeof(b->range_end));
	b->http_base = xasprintf("http://%s:%u", a->listen, (unsigned)a->http_port);
	b->hosts = xcalloc(cfg->n_machines ? cfg->n_machines : 1, sizeof(*b->hosts));
	for (size_t i = 0; i < cfg->n_machines; i++) {
		b->hosts[i].mac = cfg->machines[i].mac_str;
		b->hosts[i].name = dhcp_hostname_is_valid(cfg->machines[i].name)
					   ? cfg->machines[i].name
					   : NULL;
	}
	c->interface = a->interface;
	c->listen_addr = a->listen;
	if (a->dhcp.mode == CONFIG_DHCP_PROXY) {
		c->mode = DHCP_MODE_PROXY;
		c->proxy_subnet = b->range_start;
	} else {
		c->mode = DHCP_MODE_FULL;
		c->range_start = b->range_start;
		c->range_end = b->range_end;
		c->lease_secs = (unsigned)MIN(a->dhcp.lease_time_s, (uint64_t)UINT32_MAX);
		c->ipv6_ra = iface_has_ipv6(a->interface);
	}
	c->tftp_root = a->tftp_root;
	c->http_base = b->http_base;
	c->state_dir = d->dhcp_dir;
	c->hosts = b->hosts;
	c->n_hosts = cfg->n_machines;
}

static void dhcp_bufs_release(struct dhcp_bufs *b)
{
	free(b->http_base);
	free(b->hosts);
}

/* Checks what dnsmasq would get from cfg, writing nothing. 0 or -EINVAL. */
static int dhcp_check(const struct daemon *d, const struct config *cfg)
{
	const char *prog = getenv("GOLDCACHE_DNSMASQ");
	struct dhcp_config c;
	struct dhcp_bufs b;
	int r;

	if (cfg->appliance.dhcp.mode == CONFIG_DHCP_OFF)
		return 0;
	if (!prog)
		prog = "dnsmasq";
	if (!program_found(prog)) {
		log_error("dnsmasq not found (install the dnsmasq package, or set dhcp mode "
			  "off)");
		return -ENOENT;
	}
	dhcp_from_config(d, cfg, &c, &b);
	r = dhcp_config_check(&c);
	dhcp_bufs_release(&b);
	return r;
}

/* dhcp_argv's, plus a pid file in STATE/run: dnsmasq drops root after start,
 * which clears its parent-death signal, so a goldcached killed with SIGKILL
 * leaves it running; the next goldcached finds it by this file (dnsmasq_orphan). */
static char **dnsmasq_argv(struct daemon *d, const struct dhcp_config *c)
{
	char **argv = dhcp_argv(c, getenv("GOLDCACHE_DNSMASQ"));
	size_t n = 0, at = 0;

	while (argv[n])
		n++;
	while (at < n && strcmp(argv[at], "--pid-file") != 0) /* "--pid-file": none */
		at++;
	if (at == n) {
		argv = xrealloc(argv, (n + 2) * sizeof(*argv));
		argv[n + 1] = NULL;
	} else {
		free(argv[at]);
	}
	argv[at] = xasprintf("--pid-file=%s/dnsmasq.pid", d->run_dir);
	return argv;
}

/* Stops a dnsmasq that a killed goldcached on this state dir left running: the
 * pid in STATE/run/dnsmasq.pid, if that process is a dnsmasq on our config file
 * (we hold the state dir's lock, so no live goldcached owns it). The only process
 * goldcached ever signals without having started it itself. */
static void dnsmasq_orphan(struct daemon *d)
{
	char *pidfile = path_join(d->run_dir, "dnsmasq.pid"), *conf = NULL, *buf = NULL;
	char cmd[4096], proc[64];
	size_t len = 0;
	ssize_t n = -1;
	int pid, pfd = -1, fd;

	if (io_read_file(pidfile, 64, &buf, &len) < 0)
		goto out;
	buf[strcspn(buf, "\n")] = '\0';
	if (parse_int(buf, 2, 1 << 30, &pid) < 0)
		goto out;
	pfd = pidfd_open(pid, 0); /* pins the process: no pid reuse from here on */
	snprintf(proc, sizeof(proc), "/proc/%d/cmdline", pid);
	fd = pfd < 0 ? -1 : open(proc, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = io_read_full(fd, cmd, sizeof(cmd) - 1); /* /proc files have no size */
		close(fd);
	}
	if (n <= 0)
		goto out;
	cmd[n] = '\0';
	conf = xasprintf("--conf-file=%s/%s", d->dhcp_dir, DHCP_CONF_NAME);
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(cmd + i) + 1) {
		if (strcmp(cmd + i, conf) != 0)
			continue;
		log_warn("a dnsmasq (pid %d) left behind by an earlier run serves \"%s\": stopping "
			 "it",
			 pid, d->dhcp_dir);
		pidfd_send_signal(pfd, SIGTERM, NULL, 0);
		/* a pidfd turns readable when the process exits */
		if (poll(&(struct pollfd){.fd = pfd, .events = POLLIN}, 1, 2000) != 1)
			pidfd_send_signal(pfd, SIGKILL, NULL, 0);
		break;
	}
out:
	if (pfd >= 0)
		close(pfd);
	unlink(pidfile);
	free(pidfile);
	free(conf);
	free(buf);
}

/* Writes dnsmasq's files for cfg and tells a running dnsmasq what it needs to
 * know; starts or stops it when dhcp was turned on or off. 0 or -errno. */
static int dhcp_apply(struct daemon *d, const struct config *cfg)
{
	struct dhcp_config c;
	struct dhcp_bufs b;
	unsigned changes = 0;
	char **argv;
	int r;

	if (cfg->appliance.dhcp.mode == CONFIG_DHCP_OFF) {
		if (d->dnsmasq && supervise_state(d->dnsmasq) != SV_STOPPED) {
			log_info("dhcp mode is off: stopping dnsmasq");
			supervise_stop(d->dnsmasq, NULL, NULL);
		}
		return 0;
	}
	dhcp_from_config(d, cfg, &c, &b);
	r = dhcp_install_boot_files(c.tftp_root, NULL, NULL);
	if (r == 0)
		r = dhcp_write(&c, &changes);
	if (r < 0)
		goto out;
	argv = dnsmasq_argv(d, &c);
	if (!d->dnsmasq) {
		struct supervise_opts o = {.name = "dnsmasq",
					   .argv = (const char *const *)argv,
					   .death_signal = SIGTERM};

		d->dnsmasq = supervise_new(d->loop, &o);
	} else {
		supervise_set_argv(d->dnsmasq, (const char *const *)argv, NULL);
	}
	dhcp_argv_free(argv);
	switch (supervise_state(d->dnsmasq)) {
	case SV_STOPPED:
		supervise_start(d->dnsmasq);
		break;
	case SV_STARTING:
	case SV_RUNNING:
		if (changes & DHCP_CHANGED_CONF) {
			log_info("dnsmasq's main config changed: restarting dnsmasq");
			supervise_restart(d->dnsmasq);
		} else if (changes & DHCP_CHANGED_HOSTS_DEL) {
			log_info("machines removed or changed: dnsmasq re-reads its hosts "
				 "(SIGHUP)");
			supervise_signal(d->dnsmasq, SIGHUP);
		} else if (changes & DHCP_CHANGED_HOSTS_ADD) {
			log_info("machines added: dnsmasq picks up the new host files itself");
		}
		break;
	case SV_BACKOFF:
	case SV_STOPPING:
		break; /* its next start reads the new files */
	}
out:
	dhcp_bufs_release(&b);
	return r;
}

/* ---- HTTP (appliance/web.h) ---- */

/* CHAP secrets for the API's sanboot scripts: the machine's (config machines and
 * machines matched by a group or the unknown policy alike). */
static int web_chap_secret(void *arg, const struct config_machine *m, const char *name, char **out)
{
	struct daemon *d = arg;
	int r;

	r = machine_secret(d, m ? m->name : name, m ? m->chap_secret_file : NULL, 1, out);
	if (r < 0 || d->shutting_down)
		return r;
	/* iPXE logs in right after this script: make sure the machine's target is
	 * there (a machine seen for the first time, a fresh assignment) */
	desired_refresh(d);
	if (DIRTY(d))
		reconcile_inline(d);
	return 0;
}

/* GET /api/v1/health: the state of what the loop supervises. */
static void web_health(void *arg, json_t *obj)
{
	struct daemon *d = arg;
	unsigned ready = 0, pending = 0, failed = 0;

	for (size_t i = 0; i < d->n_exports; i++) {
		enum export_state st = d->exports[i]->state;

		ready += st == EXPORT_READY;
		pending += st == EXPORT_QUEUED || st == EXPORT_RUNNING;
		failed += st == EXPORT_FAILED;
	}
	json_object_set_new(
		obj, "tgtd",
		json_string(d->tgtd ? supervise_state_name(supervise_state(d->tgtd)) : "none"));
	json_object_set_new(obj, "dnsmasq",
			    json_string(d->dnsmasq
						? supervise_state_name(supervise_state(d->dnsmasq))
						: "off"));
	json_object_set_new(obj, "targets_in_sync", json_boolean(!DIRTY(d) && !d->rec_job));
	json_object_set_new(obj, "exports",
			    json_pack("{s:I, s:I, s:I}", "ready", (json_int_t)ready, "pending",
				      (json_int_t)pending, "failed", (json_int_t)failed));
}

/* The API's view of a pending order's LUN 3 (api_opts.restore_lun): served
 * only once the set tgtd is known to hold gives machine that file. */
static int web_restore_lun(void *arg, const char *machine, const char *from, uint32_t snap,
			   uint64_t *size)
{
	struct daemon *d = arg;
	struct restore_file *f = d->restores ? restores_find(d->restores, from, snap) : NULL;
	const char *path = f ? restore_file_path(f) : NULL;

	if (f && restore_file_state(f) == RESTORE_FAILED)
		return -EIO;
	if (!path)
		return 0;
	for (size_t i = 0; i < d->n_synced; i++)
		if (d->synced[i].restore_path && strcmp(d->synced[i].user, machine) == 0 &&
		    strcmp(d->synced[i].restore_path, path) == 0) {
			*size = restore_file_size(f);
			return RESTORE_LUN;
		}
	return 0;
}

static int web_setup(struct daemon *d)
{
	struct web_opts wo = {
		.loop = d->loop,
		.cfg = d->cfg,
		.reg = d->reg,
		.store = d->store,
		.state_dir = d->state_dir,
		.chap_secret = web_chap_secret,
		.health = web_health,
		.sync = d->sync,
		.restore_lun = web_restore_lun,
		.cb_arg = d,
	};

	return web_start(&wo, &d->web);
}

/* ---- shutdown ---- */

static void remove_tree_files(const char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *de;

	while (dp && (de = readdir(dp))) {
		char *f;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		f = path_join(dir, de->d_name);
		unlink(f);
		free(f);
	}
	if (dp)
		closedir(dp);
	rmdir(dir);
}

/* Removes what only makes sense while we run; keeps caches and records. */
static void remove_runtime_files(struct daemon *d)
{
	char *p;

	p = path_join(d->dhcp_dir, DHCP_CONF_NAME);
	unlink(p);
	free(p);
	p = path_join(d->dhcp_dir, DHCP_HOSTS_DIR);
	remove_tree_files(p);
	free(p);
	rmdir(d->dhcp_dir); /* only when no lease file is left */
	remove_tree_files(d->run_dir);
	unlink(d->pid_path);
}

static void child_gone(struct daemon *d)
{
	if (--d->children_left == 0)
		loop_stop(d->loop);
}

static void child_stopped(struct supervisor *sv, void *arg)
{
	(void)sv;
	child_gone(arg);
}

static void sync_gone(void *arg)
{
	child_gone(arg);
}

static void shutdown_begin(struct daemon *d, const char *why)
{
	if (d->shutting_down) {
		log_info("%s: already shutting down", why);
		return;
	}
	log_info("%s: shutting down", why);
	d->shutting_down = 1;
	web_stop(d->web); /* no new requests from here on */
	d->web = NULL;
	timer_drop(d, &d->reconcile_timer);
	timer_drop(d, &d->poll_timer);
	timer_drop(d, &d->drift_timer);
	d->children_left = 1; /* this function's own hold, dropped at the end */
	if (d->rec_job) {
		d->children_left++;
		worker_child_kill(d->rec_job);
	}
	for (size_t i = 0; i < d->n_exports; i++)
		if (d->exports[i]->job) {
			d->children_left++;
			worker_child_kill(d->exports[i]->job);
		}
	if (d->restores) /* a killed export leaves a temp file, swept at the next start */
		d->children_left += (int)restores_kill(d->restores, sync_gone, d);
	if (d->sync) /* a killed commit leaves no snapshot; the agent commits again */
		d->children_left += sync_kill(d->sync, sync_gone, d);
	if (d->tgtd) {
		enum supervise_state st = supervise_state(d->tgtd);

		if (st == SV_RUNNING || st == SV_STARTING) {
			/* tgtd ignores SIGTERM while targets exist: delete them first */
			int r = tgtd_shutdown(&d->ctl, TGTD_SHUTDOWN_MS);

			if (r == 0)
				log_info("targets removed; tgtd told to exit");
			else if (r != -ECONNREFUSED)
				log_warn("tgtd did not shut down cleanly (%s)", strerror(-r));
		}
		d->children_left++;
		supervise_stop(d->tgtd, child_stopped, d);
	}
	if (d->dnsmasq) {
		d->children_left++;
		supervise_stop(d->dnsmasq, child_stopped, d);
	}
	child_gone(d);
}

/* ---- reload ---- */

static void log_diag(const struct config_diag *diag)
{
	for (size_t i = 0; i < diag->n; i++)
		log_error("%s", diag->msgs[i]);
	if (diag->total > diag->n)
		log_error("... and %zu more errors", diag->total - diag->n);
}

/* The checks a new config passes before it replaces the running one. */
static int reload_check(struct daemon *d, struct config *n)
{
	struct config_diag diag;
	int r;

	config_diag_init(&diag);
	r = config_check_host(n, &diag);
	if (r < 0)
		log_diag(&diag);
	config_diag_release(&diag);
	if (r < 0)
		return r;
	if (strcmp(n->appliance.state_dir, d->cfg->appliance.state_dir) != 0 ||
	    strcmp(n->appliance.store_dir, d->cfg->appliance.store_dir) != 0) {
		log_error("%s: appliance.store_dir and appliance.state_dir cannot change while "
			  "goldcached runs; restart goldcached to move them",
			  n->path);
		return -EINVAL;
	}
	r = dhcp_check(d, n);
	if (r == 0)
		r = targets_check(d, n);
	return r;
}

static void log_reopen(struct daemon *d)
{
	int fd;

	if (!d->log_path)
		return;
	fd = open(d->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		log_error("cannot reopen log \"%s\": %s", d->log_path, strerror(errno));
		return;
	}
	log_set_fd(fd);
	close(d->log_fd);
	d->log_fd = fd;
}

/* The iSCSI portal or IQN prefix changed: tgtd is restarted on the new portal
 * (its on_ready reconciles everything under the new names). */
static void tgtd_renew(struct daemon *d)
{
	struct supervisor *old = d->tgtd;

	log_info("iSCSI settings changed: restarting tgtd on portal \"%s\"",
		 d->cfg->appliance.iscsi.portal);
	if (supervise_state(old) == SV_RUNNING)
		tgtd_shutdown(&d->ctl, TGTD_SHUTDOWN_MS);
	supervise_free(old); /* kills it if the shutdown did not end it */
	d->tgtd = NULL;
	free(d->portal);
	d->portal = xstrdup(d->cfg->appliance.iscsi.portal);
	d->ctl.iqn_prefix = d->cfg->appliance.iscsi.iqn_prefix;
	if (tgtd_setup(d) == 0)
		supervise_start(d->tgtd);
}

static void reload(struct daemon *d)
{
	struct config_diag diag;
	struct config *n = NULL, *old;
	struct config_diff diff;
	unsigned changed;
	int r;

	log_reopen(d);
	log_info("SIGHUP: reloading \"%s\"", d->config_path);
	config_diag_init(&diag);
	r = config_load_file(d->config_path, &n, &diag);
	if (r < 0)
		log_diag(&diag);
	config_diag_release(&diag);
	if (r < 0 || reload_check(d, n) < 0) {
		config_free(n);
		log_error("reload failed: keeping the running config");
		return;
	}
	config_diff(d->cfg, n, &diff);
	if (config_diff_empty(&diff)) {
		log_info("config unchanged; checking the targets against tgtd");
		config_diff_release(&diff);
		config_free(n);
		schedule_reconcile(d, 0); /* a SIGHUP also repairs manual changes to tgtd */
		return;
	}
	log_info("config changed: machines +%zu -%zu ~%zu, profiles +%zu -%zu ~%zu, "
		 "images +%zu -%zu ~%zu",
		 diff.machines.n_added, diff.machines.n_removed, diff.machines.n_changed,
		 diff.profiles.n_added, diff.profiles.n_removed, diff.profiles.n_changed,
		 diff.images.n_added, diff.images.n_removed, diff.images.n_changed);
	changed = diff.appliance;
	config_diff_release(&diff);
	old = d->owned_cfg;
	d->cfg = d->owned_cfg = n;
	d->ctl.iqn_prefix = n->appliance.iscsi.iqn_prefix;
	if (d->web && web_reload(d->web, d->cfg) < 0)
		log_error("the HTTP server could not take the new config");
	config_free(old);
	if (dhcp_apply(d, d->cfg) < 0)
		log_error("dnsmasq's files could not be updated; it keeps the previous ones");
	if (changed & CONFIG_CHANGED_ISCSI)
		tgtd_renew(d);
	else
		schedule_reconcile(d, 0);
}

/* ---- signals ---- */

static void on_signal(struct loop *l, int signo, void *arg)
{
	struct daemon *d = arg;

	(void)l;
	if (signo == SIGHUP) {
		if (!d->shutting_down)
			reload(d);
		return;
	}
	shutdown_begin(d, signo == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- start ---- */

/* Creates and locks the pid file: 0, or -EBUSY when another goldcached holds it. */
static int pidfile_lock(struct daemon *d)
{
	char buf[32];
	int fd, n, r;

	fd = open(d->pid_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		log_error("cannot open pid file \"%s\": %s", d->pid_path, strerror(-r));
		return r;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t k = read(fd, buf, sizeof(buf) - 1);

		buf[k > 0 ? k : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		log_error("another goldcached (pid %s) is running with state dir \"%s\"; stop it "
			  "first, or give this one another state dir",
			  buf[0] ? buf : "?", d->state_dir);
		close(fd);
		return -EBUSY;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || io_write_all(fd, buf, (size_t)n) < 0) {
		r = -errno;
		log_error("cannot write pid file \"%s\": %s", d->pid_path, strerror(-r));
		close(fd);
		return r;
	}
	d->lock_fd = fd;
	return 0;
}

static int log_open(struct daemon *d)
{
	if (!d->log_path)
		return 0;
	d->log_fd = open(d->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (d->log_fd < 0) {
		int r = -errno;

		log_error("cannot open log file \"%s\": %s", d->log_path, strerror(-r));
		return r;
	}
	log_set_fd(d->log_fd);
	log_set_timestamps(1);
	return 0;
}

static int dirs_setup(struct daemon *d)
{
	const char *dirs[] = {d->run_dir, d->dhcp_dir, d->exports_dir, d->secrets_dir};

	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		int r = io_mkdir_p(dirs[i], dirs[i] == d->secrets_dir ? 0700 : 0755);

		if (r < 0) {
			log_error("cannot create \"%s\": %s", dirs[i], strerror(-r));
			return r;
		}
	}
	return 0;
}

static void restore_child_setup(void *arg)
{
	worker_fds_close(arg);
}

static void restore_ready(void *arg)
{
	schedule_reconcile(arg, 0); /* its refresh gives the machines their LUN 3 */
}

static int restores_setup(struct daemon *d)
{
	struct restores_opts ro = {.loop = d->loop,
				   .store_dir = d->cfg->appliance.store_dir,
				   .dir = d->restore_dir,
				   .child_setup = restore_child_setup,
				   .ready = restore_ready,
				   .arg = d};

	return restores_new(&ro, &d->restores);
}

/* Store, registry and the stale-tgtd check: what must work before children start. */
static int resources_open(struct daemon *d)
{
	char *p;
	int r;

	r = store_open(d->cfg->appliance.store_dir, 1, &d->store);
	if (r < 0) {
		log_error("cannot open the store \"%s\": %s", d->cfg->appliance.store_dir,
			  strerror(-r));
		return r;
	}
	p = path_join(d->state_dir, "registry.db");
	r = registry_open(p, &d->reg);
	free(p);
	if (r < 0)
		return r;
	r = sync_new(d->loop, d->cfg->appliance.store_dir, d->uploads_dir, &d->sync);
	if (r < 0)
		return r;
	r = restores_setup(d);
	if (r < 0)
		return r;
	if (tgtadm_ping(&d->ctl) == 0) {
		/* our socket, in our locked state dir: a tgtd an earlier goldcached left
		 * behind when it was killed. It is stopped through its control socket. */
		log_warn("a tgtd left behind by an earlier run answers on \"%s.0\": shutting it "
			 "down",
			 d->tgt_sock);
		tgtd_shutdown(&d->ctl, TGTD_SHUTDOWN_MS);
	}
	dnsmasq_orphan(d);
	return 0;
}

static void daemon_release(struct daemon *d)
{
	web_stop(d->web);
	sync_free(d->sync); /* waits for a commit in flight */
	restores_free(d->restores);
	supervise_free(d->tgtd);
	supervise_free(d->dnsmasq);
	for (size_t i = 0; i < d->n_exports; i++)
		export_free(d->exports[i]);
	free(d->exports);
	wants_free(d->wants, d->n_wants);
	wants_free(d->synced, d->n_synced);
	wants_free(d->rec_wants, d->n_rec_wants);
	tgt_ctl_release(&d->ctl);
	registry_free(d->reg);
	store_free(d->store);
	loop_free(d->loop);
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	if (d->log_fd >= 0) {
		log_set_fd(2);
		close(d->log_fd);
	}
	config_free(d->owned_cfg);
	free(d->config_path);
	free(d->state_dir);
	free(d->dhcp_dir);
	free(d->run_dir);
	free(d->exports_dir);
	free(d->secrets_dir);
	free(d->uploads_dir);
	free(d->restore_dir);
	free(d->pid_path);
	free(d->log_path);
	free(d->tgt_sock);
	free(d->tgt_memo);
	free(d->portal);
}

int daemon_run(const struct config *cfg, const struct daemon_opts *o)
{
	struct daemon d = {.lock_fd = -1, .log_fd = -1};
	int r;

	d.cfg = cfg;
	d.config_path = xstrdup(o->config_path);
	d.state_dir = xstrdup(o->state_dir ? o->state_dir : cfg->appliance.state_dir);
	d.dhcp_dir = path_join(d.state_dir, "dhcp");
	d.run_dir = path_join(d.state_dir, "run");
	d.exports_dir = path_join(d.state_dir, "exports");
	d.secrets_dir = path_join(d.state_dir, "secrets");
	d.uploads_dir = path_join(d.state_dir, "uploads");
	d.restore_dir = path_join(d.state_dir, "restore");
	d.pid_path = path_join(d.state_dir, "goldcached.pid");
	d.log_path = o->log_path ? xstrdup(o->log_path) : NULL;
	d.tgt_sock = path_join(d.run_dir, "tgtd.sock");
	d.tgt_memo = path_join(d.state_dir, "tgt-accounts.json");
	d.portal = xstrdup(cfg->appliance.iscsi.portal);
	tgt_ctl_init(&d.ctl);
	d.ctl.ipc_socket = d.tgt_sock;
	d.ctl.iqn_prefix = cfg->appliance.iscsi.iqn_prefix;
	d.ctl.state_path = d.tgt_memo;

	/* 1. what can be checked without writing anything */
	r = dhcp_check(&d, cfg);
	if (r == 0)
		r = tgtd_check(&d);
	if (r == 0)
		r = targets_check(&d, cfg);
	if (r < 0)
		goto out;
	/* 2. the state dir, its lock, our log */
	r = io_mkdir_p(d.state_dir, 0755);
	if (r < 0) {
		log_error("cannot create state dir \"%s\": %s", d.state_dir, strerror(-r));
		goto out;
	}
	r = pidfile_lock(&d);
	if (r < 0)
		goto out;
	r = log_open(&d);
	if (r == 0)
		r = dirs_setup(&d);
	if (r == 0)
		r = loop_new(&d.loop);
	if (r < 0)
		goto out_files;
	/* before any child or thread exists: they must not inherit a mask we change later */
	if ((r = loop_signal(d.loop, SIGHUP, on_signal, &d)) < 0 ||
	    (r = loop_signal(d.loop, SIGTERM, on_signal, &d)) < 0 ||
	    (r = loop_signal(d.loop, SIGINT, on_signal, &d)) < 0)
		goto out_files;
	signal(SIGPIPE, SIG_IGN);
	/* 3. store, registry, HTTP (a port in use ends the start here) */
	r = resources_open(&d);
	if (r == 0)
		r = web_setup(&d);
	if (r < 0)
		goto out_files;
	/* 4. children: failures from here on are retried under supervision */
	r = tgtd_setup(&d);
	if (r == 0) {
		supervise_start(d.tgtd);
		r = dhcp_apply(&d, cfg);
	}
	if (r < 0) {
		shutdown_begin(&d, "start failed");
		loop_run(d.loop);
		goto out_files;
	}
	exports_sweep(&d, 1); /* temp files of jobs killed with an earlier goldcached */
	desired_refresh(&d);
	exports_prune(&d, 1);
	if (d.restores)
		restores_prune(d.restores, 1);
	d.poll_timer = loop_timer_add(d.loop, DESIRED_POLL_MS, poll_desired, &d);
	d.drift_timer = loop_timer_add(d.loop, RECONCILE_MS, drift_check, &d);
	log_info("goldcached running (pid %d): state dir \"%s\", HTTP %s:%u, iSCSI portal %s, "
		 "dhcp %s, %zu machines",
		 (int)getpid(), d.state_dir, cfg->appliance.listen,
		 (unsigned)cfg->appliance.http_port, d.portal,
		 config_dhcp_mode_name(cfg->appliance.dhcp.mode), cfg->n_machines);
	r = loop_run(d.loop);
	if (r == 0)
		log_info("goldcached stopped");
out_files:
	remove_runtime_files(&d);
out:
	daemon_release(&d);
	return r;
}
