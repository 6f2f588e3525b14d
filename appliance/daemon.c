/* goldcached's core: one event loop (appliance/loop.h) that glues the pieces
 * together and owns every child it starts.
 *
 * Start order: everything that can be checked without writing a file is checked
 * first (so a bad config starts nothing and writes nothing); then the state dir
 * and the pid-file lock; then the children under supervision (appliance/
 * supervise.h): dnsmasq, unless dhcp mode is off, on the files appliance/dhcp.c
 * writes.
 *
 * Files (STATE is appliance.state_dir, or --state-dir)
 *   STATE/goldcached.pid   our pid, flock()ed for our lifetime: a second goldcached
 *                          on the same STATE refuses to start
 *   STATE/dhcp/            dnsmasq.conf and hosts.d/ (runtime: removed at
 *                          shutdown), dnsmasq.leases (kept)
 *   TFTP root              undionly.kpxe, ipxe.efi (kept)
 *
 * Reload (SIGHUP): the config is loaded and checked as at start; any error keeps
 * the running config (the error is logged). Otherwise only the difference is
 * applied: dnsmasq's files are rewritten where they changed; a new host file is
 * picked up by dnsmasq itself (inotify), a removed or changed one needs SIGHUP,
 * a changed main file a restart. Changing store_dir or state_dir needs a restart.
 *
 * Shutdown (SIGTERM, SIGINT): stop the children (SIGTERM, SIGKILL after a grace
 * period), remove the runtime files, exit 0. docs/operations.md is the
 * operator's view of all this. */
#include "appliance/daemon.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/dhcp.h"
#include "appliance/loop.h"
#include "appliance/supervise.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

struct daemon {
	struct loop *loop;
	const struct config *cfg; /* current: the caller's, or owned_cfg after a reload */
	struct config *owned_cfg;
	char *config_path;
	char *state_dir, *dhcp_dir, *pid_path, *log_path;
	int lock_fd, log_fd;
	struct supervisor *dnsmasq;
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
	argv = dhcp_argv(&c, getenv("GOLDCACHE_DNSMASQ"));
	if (!d->dnsmasq) {
		struct supervise_opts o = {.name = "dnsmasq", .argv = (const char *const *)argv};

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
	unlink(d->pid_path);
}

static void child_stopped(struct supervisor *sv, void *arg)
{
	struct daemon *d = arg;

	(void)sv;
	if (--d->children_left == 0)
		loop_stop(d->loop);
}

static void shutdown_begin(struct daemon *d, const char *why)
{
	if (d->shutting_down) {
		log_info("%s: already shutting down", why);
		return;
	}
	log_info("%s: shutting down", why);
	d->shutting_down = 1;
	d->children_left = 1; /* this function's own hold, dropped below */
	if (d->dnsmasq) {
		d->children_left++;
		supervise_stop(d->dnsmasq, child_stopped, d);
	}
	child_stopped(NULL, d);
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
		log_error("\"%s\": store_dir and state_dir cannot change while goldcached runs; "
			  "restart it to move them",
			  n->path);
		return -EINVAL;
	}
	return dhcp_check(d, n);
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

static void reload(struct daemon *d)
{
	struct config_diag diag;
	struct config *n = NULL, *old;
	struct config_diff diff;
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
		log_info("config unchanged");
		config_diff_release(&diff);
		config_free(n);
		return;
	}
	log_info("config changed: machines +%zu -%zu ~%zu, profiles +%zu -%zu ~%zu, "
		 "images +%zu -%zu ~%zu",
		 diff.machines.n_added, diff.machines.n_removed, diff.machines.n_changed,
		 diff.profiles.n_added, diff.profiles.n_removed, diff.profiles.n_changed,
		 diff.images.n_added, diff.images.n_removed, diff.images.n_changed);
	config_diff_release(&diff);
	old = d->owned_cfg;
	d->cfg = d->owned_cfg = n;
	config_free(old);
	if (dhcp_apply(d, d->cfg) < 0)
		log_error("dnsmasq's files could not be updated; it keeps the previous ones");
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

static void daemon_release(struct daemon *d)
{
	supervise_free(d->dnsmasq);
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
	free(d->pid_path);
	free(d->log_path);
}

int daemon_run(const struct config *cfg, const struct daemon_opts *o)
{
	struct daemon d = {.lock_fd = -1, .log_fd = -1};
	int r;

	d.cfg = cfg;
	d.config_path = xstrdup(o->config_path);
	d.state_dir = xstrdup(o->state_dir ? o->state_dir : cfg->appliance.state_dir);
	d.dhcp_dir = path_join(d.state_dir, "dhcp");
	d.pid_path = path_join(d.state_dir, "goldcached.pid");
	d.log_path = o->log_path ? xstrdup(o->log_path) : NULL;

	/* 1. what can be checked without writing anything */
	r = dhcp_check(&d, cfg);
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
	if (r < 0)
		goto out_files;
	r = loop_new(&d.loop);
	if (r < 0)
		goto out_files;
	/* before any child or thread exists: they must not inherit a mask we change later */
	if ((r = loop_signal(d.loop, SIGHUP, on_signal, &d)) < 0 ||
	    (r = loop_signal(d.loop, SIGTERM, on_signal, &d)) < 0 ||
	    (r = loop_signal(d.loop, SIGINT, on_signal, &d)) < 0)
		goto out_files;
	signal(SIGPIPE, SIG_IGN);
	/* 3. children */
	r = dhcp_apply(&d, cfg);
	if (r < 0) {
		shutdown_begin(&d, "start failed");
		loop_run(d.loop);
		goto out_files;
	}
	log_info("goldcached running (pid %d): state dir \"%s\", dhcp %s, %zu machines",
		 (int)getpid(), d.state_dir, config_dhcp_mode_name(cfg->appliance.dhcp.mode),
		 cfg->n_machines);
	r = loop_run(d.loop);
	if (r == 0)
		log_info("goldcached stopped");
out_files:
	remove_runtime_files(&d);
out:
	daemon_release(&d);
	return r;
}
