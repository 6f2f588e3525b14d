/* DHCP/TFTP for the boot network: renders dnsmasq's configuration.
 *
 * Design notes
 * - Every value that reaches a dnsmasq file is checked first against a strict
 *   alphabet (dhcp_config_check): dnsmasq's config syntax has no escaping for
 *   newlines, treats ',' as a field separator, '#' after a blank as a comment and
 *   reads bare words in dhcp-host as keywords ("ignore") or lease times ("45m").
 *   So hostile input is rejected, never quoted into the file.
 * - On disk (state_dir):
 *     dnsmasq.conf          main config; a change needs a dnsmasq restart
 *     hosts.d/aa-bb-..-ff   one file per known machine, "aa:bb:..:ff[,name]\n"
 *                           (dhcp-hostsdir: dnsmasq reads new files by inotify)
 *     dnsmasq.leases        dnsmasq's lease database (full mode)
 *   Files are published by temp + fsync + rename + fsync(dir). Host temp files
 *   start with '.', which dnsmasq's inotify handler and directory scan skip, so
 *   it never reads a half-written host file.
 * - dnsmasq only adds host records from hosts.d on its own; a removed or
 *   rewritten file needs a SIGHUP (reported as DHCP_CHANGED_HOSTS_DEL).
 * - Proxy mode follows iPXE's ProxyDHCP appnote: pxe-service entries (one per
 *   client architecture) for PXE ROMs, never for iPXE (a menu would make iPXE
 *   load undionly.kpxe again, a loop); iPXE gets dhcp-boot with the HTTP URL and
 *   a non-zero next-server, which iPXE requires to accept a ProxyDHCP offer. */
#include "appliance/dhcp.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

#define BOOT_PATH "/boot.ipxe?mac=${net0/mac:hexhyp}"
#define DHCP_FILE_FIELD 128 /* BOOTP 'file' field, NUL included */
#define CONF_MAX (1u << 20)
#define HOST_MAX 256
#define BOOT_FILE_MAX (16u << 20)

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int dhcp_mac_parse(const char *s, uint8_t mac[6])
{
	char sep;
	size_t i;

	if (!s || strlen(s) != 17)
		return -EINVAL;
	sep = s[2];
	if (sep != ':' && sep != '-')
		return -EINVAL;
	for (i = 0; i < 6; i++) {
		int hi = hexval(s[i * 3]), lo = hexval(s[i * 3 + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		if (i < 5 && s[i * 3 + 2] != sep)
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void dhcp_mac_format(const uint8_t mac[6], char sep, char out[18])
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < 6; i++) {
		out[i * 3] = hex[mac[i] >> 4];
		out[i * 3 + 1] = hex[mac[i] & 15];
		out[i * 3 + 2] = i < 5 ? sep : '\0';
	}
}

int dhcp_hostname_is_valid(const char *s)
{
	static const char *const reserved[] = {"ignore", "infinite", "deprecated"};
	size_t i, n;

	if (!s)
		return 0;
	n = strlen(s);
	/* a leading letter rules out lease times ("45m", "3600") and addresses */
	if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return 0;
	if (s[n - 1] == '-')
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return 0;
	}
	for (i = 0; i < ARRAY_SIZE(reserved); i++)
		if (strcasecmp(s, reserved[i]) == 0)
			return 0;
	return 1;
}

int dhcp_mode_parse(const char *s, enum dhcp_mode *out)
{
	if (s && strcmp(s, "full") == 0)
		*out = DHCP_MODE_FULL;
	else if (s && strcmp(s, "proxy") == 0)
		*out = DHCP_MODE_PROXY;
	else
		return -EINVAL;
	return 0;
}

const char *dhcp_mode_name(enum dhcp_mode m)
{
	return m == DHCP_MODE_PROXY ? "proxy" : "full";
}

/* A value safe to put on a dnsmasq config line: printable ASCII without blanks,
 * quotes, backslash, comma (field separator) or '#' (comment). */
static int value_is_safe(const char *s)
{
	if (!s || !*s)
		return 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= ' ' || c >= 127 || c == '"' || c == '\'' || c == '\\' || c == ',' ||
		    c == '#')
			return 0;
	}
	return 1;
}

static int path_is_safe(const char *s)
{
	return value_is_safe(s) && s[0] == '/' && strlen(s) < 1024;
}

static int ifname_is_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	size_t i;

	if (n == 0 || n > 15) /* IFNAMSIZ - 1 */
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

static int ipv4_parse(const char *s, uint32_t *host_order)
{
	struct in_addr a;

	if (!s || inet_pton(AF_INET, s, &a) != 1)
		return -EINVAL;
	if (host_order)
		*host_order = ntohl(a.s_addr);
	return 0;
}

static int user_is_valid(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 32 || s[0] == '-')
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* "http://" then a value_is_safe string without '$' (ours is the only
 * expansion), trailing '/' allowed (dropped when the URL is built). */
static int http_base_is_valid(const char *s)
{
	size_t n;

	if (!s || strncmp(s, "http://", 7) != 0 || !value_is_safe(s) || strchr(s, '$'))
		return 0;
	n = strlen(s);
	while (n > 7 && s[n - 1] == '/')
		n--;
	if (n <= 7)
		return 0;
	return n + strlen(BOOT_PATH) < DHCP_FILE_FIELD;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_hosts(const struct dhcp_config *c)
{
	char **macs = NULL, **names = NULL;
	size_t i, n_names = 0;
	int r = -EINVAL;

	if (c->n_hosts && !c->hosts) {
		log_error("hosts: %zu hosts but no list", c->n_hosts);
		return -EINVAL;
	}
	macs = xcalloc(c->n_hosts + 1, sizeof(*macs));
	names = xcalloc(c->n_hosts + 1, sizeof(*names));
	for (i = 0; i < c->n_hosts; i++) {
		const struct dhcp_host *h = &c->hosts[i];
		uint8_t mac[6];

		if (dhcp_mac_parse(h->mac, mac) < 0) {
			log_error("host %zu: bad MAC address (want aa:bb:cc:dd:ee:ff)", i + 1);
			goto out;
		}
		macs[i] = xmalloc(18);
		dhcp_mac_format(mac, ':', macs[i]);
		if (h->name) {
			if (!dhcp_hostname_is_valid(h->name)) {
				log_error("host '%s': bad name (want a DNS label: a letter, then "
					  "letters, digits or '-', at most 63)",
					  macs[i]);
				goto out;
			}
			names[n_names++] = (char *)h->name;
		}
	}
	qsort(macs, c->n_hosts, sizeof(*macs), cmp_str);
	for (i = 1; i < c->n_hosts; i++)
		if (strcmp(macs[i - 1], macs[i]) == 0) {
			log_error("host '%s': listed twice", macs[i]);
			goto out;
		}
	qsort(names, n_names, sizeof(*names), cmp_str);
	for (i = 1; i < n_names; i++)
		if (strcasecmp(names[i - 1], names[i]) == 0) {
			log_error("host name '%s': used by two machines", names[i]);
			goto out;
		}
	r = 0;
out:
	for (i = 0; i < c->n_hosts; i++)
		free(macs[i]);
	free(macs);
	free(names);
	return r;
}

int dhcp_config_check(const struct dhcp_config *c)
{
	uint32_t lo, hi;

	if (!ifname_is_valid(c->interface)) {
		log_error("interface: bad or missing interface name");
		return -EINVAL;
	}
	if (ipv4_parse(c->listen_addr, NULL) < 0) {
		log_error("listen address: want an IPv4 address");
		return -EINVAL;
	}
	if (c->mode == DHCP_MODE_FULL) {
		if (ipv4_parse(c->range_start, &lo) < 0 || ipv4_parse(c->range_end, &hi) < 0) {
			log_error("range: want two IPv4 addresses (first, last)");
			return -EINVAL;
		}
		if (lo > hi) {
			log_error("range: '%s' comes after '%s'", c->range_start, c->range_end);
			return -EINVAL;
		}
		if (c->netmask && ipv4_parse(c->netmask, NULL) < 0) {
			log_error("netmask: want an IPv4 netmask");
			return -EINVAL;
		}
		if (c->lease_secs && c->lease_secs < 120) {
			log_error("lease time: %u s is below dnsmasq's minimum of 120 s",
				  c->lease_secs);
			return -EINVAL;
		}
	} else if (c->mode == DHCP_MODE_PROXY) {
		if (ipv4_parse(c->proxy_subnet, NULL) < 0) {
			log_error("proxy subnet: want the network's IPv4 address");
			return -EINVAL;
		}
		if (c->proxy_netmask && ipv4_parse(c->proxy_netmask, NULL) < 0) {
			log_error("proxy netmask: want an IPv4 netmask");
			return -EINVAL;
		}
	} else {
		log_error("mode: want full or proxy");
		return -EINVAL;
	}
	if (!path_is_safe(c->tftp_root)) {
		log_error("tftp root: want an absolute path without blanks, quotes, ',' or '#'");
		return -EINVAL;
	}
	if (!path_is_safe(c->state_dir)) {
		log_error("state dir: want an absolute path without blanks, quotes, ',' or '#'");
		return -EINVAL;
	}
	if (!http_base_is_valid(c->http_base)) {
		log_error("http base: want http://ADDR:PORT (no blanks, quotes, ',', '#', '$'; "
			  "short enough for the 128-byte DHCP file field)");
		return -EINVAL;
	}
	if (c->user && !user_is_valid(c->user)) {
		log_error("user: bad user name");
		return -EINVAL;
	}
	return check_hosts(c);
}

char *dhcp_boot_url(const struct dhcp_config *c)
{
	size_t n = strlen(c->http_base);

	while (n > 7 && c->http_base[n - 1] == '/')
		n--;
	return xasprintf("%.*s%s", (int)n, c->http_base, BOOT_PATH);
}

static void render_full(FILE *f, const struct dhcp_config *c)
{
	fprintf(f, "\n# Full DHCP: this is the only DHCP server on the boot network.\n");
	fprintf(f, "dhcp-authoritative\n");
	fprintf(f, "no-ping\n");
	fprintf(f, "dhcp-range=%s,%s%s%s,%u\n", c->range_start, c->range_end, c->netmask ? "," : "",
		c->netmask ? c->netmask : "", c->lease_secs ? c->lease_secs : 3600);
	if (c->ipv6_ra) {
		fprintf(f, "# iPXE waits about 16 s for an IPv6 router advert unless one comes\n");
		fprintf(f, "enable-ra\n");
		fprintf(f, "dhcp-range=::,constructor:%s,ra-only\n", c->interface);
	}
}

static void render_proxy(FILE *f, const struct dhcp_config *c)
{
	static const char *const csa[] = {"x86PC", "BC_EFI", "x86-64_EFI"};
	static const char *const file[] = {DHCP_BIOS_FILE, DHCP_UEFI_FILE, DHCP_UEFI_FILE};
	size_t i;

	fprintf(f, "\n# Proxy DHCP: the site's server hands out addresses, we add boot info.\n");
	fprintf(f, "dhcp-range=%s,proxy%s%s\n", c->proxy_subnet, c->proxy_netmask ? "," : "",
		c->proxy_netmask ? c->proxy_netmask : "");
	fprintf(f, "# PXE ROMs: one service per architecture, booted without a menu.\n");
	fprintf(f, "# Never offered to iPXE: it would load iPXE again (a loop).\n");
	for (i = 0; i < ARRAY_SIZE(csa); i++)
		fprintf(f, "pxe-service=tag:!ipxe,%s,\"goldcache network boot\",%s,%s\n", csa[i],
			file[i], c->listen_addr);
}

int dhcp_render_conf(const struct dhcp_config *c, char **out)
{
	char *buf = NULL, *url;
	size_t len = 0;
	FILE *f;
	int r;

	*out = NULL;
	r = dhcp_config_check(c);
	if (r < 0)
		return r;
	f = open_memstream(&buf, &len);
	if (!f)
		die(1, "out of memory");
	url = dhcp_boot_url(c);

	fprintf(f, "# dnsmasq configuration for the goldcache boot network (%s mode).\n",
		dhcp_mode_name(c->mode));
	fprintf(f, "# Written by goldcached from its own config: edits here are lost.\n");
	fprintf(f, "port=0\n");
	fprintf(f, "interface=%s\n", c->interface);
	fprintf(f, "bind-interfaces\n");
	if (c->user)
		fprintf(f, "user=%s\n", c->user);
	fprintf(f, "log-dhcp\n");
	fprintf(f, "log-facility=-\n");
	fprintf(f, "dhcp-leasefile=%s/%s\n", c->state_dir, DHCP_LEASES_NAME);
	fprintf(f, "dhcp-hostsdir=%s/%s\n", c->state_dir, DHCP_HOSTS_DIR);
	if (c->known_only)
		fprintf(f, "# only machines listed in the hosts dir get an answer\n"
			   "dhcp-ignore=tag:!known\n");

	if (c->mode == DHCP_MODE_FULL)
		render_full(f, c);
	else
		render_proxy(f, c);

	fprintf(f, "\n# TFTP for the PXE ROMs (iPXE then talks HTTP).\n");
	fprintf(f, "enable-tftp\n");
	fprintf(f, "tftp-root=%s\n", c->tftp_root);

	fprintf(f, "\n# Who is asking.\n");
	fprintf(f, "dhcp-match=set:efi64,option:client-arch,7\n");
	fprintf(f, "dhcp-match=set:efi64,option:client-arch,9\n");
	fprintf(f, "dhcp-match=set:ipxe,175\n");
	fprintf(f, "dhcp-userclass=set:ipxe,iPXE\n");

	fprintf(f, "\n# What each gets: PXE ROMs chainload iPXE, iPXE fetches its script.\n");
	if (c->mode == DHCP_MODE_FULL) {
		fprintf(f, "dhcp-boot=tag:!ipxe,tag:!efi64,%s,,%s\n", DHCP_BIOS_FILE,
			c->listen_addr);
		fprintf(f, "dhcp-boot=tag:!ipxe,tag:efi64,%s,,%s\n", DHCP_UEFI_FILE,
			c->listen_addr);
	}
	fprintf(f, "dhcp-boot=tag:ipxe,%s,,%s\n", url, c->listen_addr);
	if (c->mode == DHCP_MODE_FULL)
		fprintf(f, "# no ProxyDHCP on this network: iPXE need not wait for one\n"
			   "dhcp-option=tag:ipxe,encap:175,176,1b\n");
	free(url);
	if (fclose(f) != 0 || !buf)
		die(1, "out of memory");
	*out = buf;
	return 0;
}

int dhcp_render_host(const struct dhcp_host *h, char fname[18], char **out)
{
	uint8_t mac[6];
	char colon[18];

	*out = NULL;
	if (dhcp_mac_parse(h->mac, mac) < 0) {
		log_error("bad MAC address (want aa:bb:cc:dd:ee:ff)");
		return -EINVAL;
	}
	dhcp_mac_format(mac, ':', colon);
	if (h->name && !dhcp_hostname_is_valid(h->name)) {
		log_error("host '%s': bad name (want a DNS label)", colon);
		return -EINVAL;
	}
	dhcp_mac_format(mac, '-', fname);
	*out = h->name ? xasprintf("%s,%s\n", colon, h->name) : xasprintf("%s\n", colon);
	return 0;
}

/* Is path's content exactly data? 1, 0 (differs or missing) or -errno. */
static int same_content(const char *path, const char *data, size_t len, size_t max)
{
	char *old = NULL;
	size_t old_len = 0;
	int r;

	r = io_read_file(path, max, &old, &old_len);
	if (r == -ENOENT || r == -EFBIG)
		return 0;
	if (r < 0)
		return r;
	r = old_len == len && memcmp(old, data, len) == 0;
	free(old);
	return r;
}

/* Writes dir/name through a temp file dir/.name.tmp.XXXXXX (a dotfile: dnsmasq
 * skips those). Renames without the directory fsync: the caller does it once. */
static int write_hidden_tmp(const char *dir, const char *name, const char *data, size_t len)
{
	char hidden[PATH_MAX], tmp[PATH_MAX], final[PATH_MAX];
	int fd, r;

	if (fmt_buf(hidden, sizeof(hidden), "%s/.%s", dir, name) < 0 ||
	    fmt_buf(final, sizeof(final), "%s/%s", dir, name) < 0)
		return -ENAMETOOLONG;
	fd = io_open_tmp_for(hidden, tmp, sizeof(tmp), 0644);
	if (fd < 0)
		return fd;
	r = io_write_all(fd, data, len);
	if (r == 0)
		r = io_fsync(fd);
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0)
		r = io_rename(tmp, final);
	if (r < 0)
		unlink(tmp);
	return r;
}

static int is_host_fname(const char *s)
{
	uint8_t mac[6];

	return strlen(s) == 17 && s[2] == '-' && dhcp_mac_parse(s, mac) == 0;
}

static int write_hosts(const struct dhcp_config *c, const char *dir, unsigned *changes)
{
	char **want = xcalloc(c->n_hosts + 1, sizeof(*want));
	char path[PATH_MAX];
	int r = 0, dirty = 0;
	DIR *d = NULL;
	struct dirent *e;
	size_t i;

	for (i = 0; i < c->n_hosts; i++) {
		char *data = NULL;
		int same;

		want[i] = xmalloc(18);
		r = dhcp_render_host(&c->hosts[i], want[i], &data);
		if (r < 0)
			goto out;
		r = fmt_buf(path, sizeof(path), "%s/%s", dir, want[i]);
		same = r < 0 ? r : same_content(path, data, strlen(data), HOST_MAX);
		if (same == 0) {
			int existed = access(path, F_OK) == 0;

			r = write_hidden_tmp(dir, want[i], data, strlen(data));
			if (r == 0) {
				*changes |=
					existed ? DHCP_CHANGED_HOSTS_DEL : DHCP_CHANGED_HOSTS_ADD;
				dirty = 1;
			}
		} else {
			r = same < 0 ? same : 0;
		}
		free(data);
		if (r < 0) {
			log_error("cannot write host file '%s/%s': %s", dir, want[i], strerror(-r));
			goto out;
		}
	}
	qsort(want, c->n_hosts, sizeof(*want), cmp_str);

	d = opendir(dir);
	if (!d) {
		r = -errno;
		log_error("cannot read hosts dir '%s': %s", dir, strerror(-r));
		goto out;
	}
	while ((e = readdir(d))) {
		const char *key = e->d_name;
		int stale_tmp = e->d_name[0] == '.' && strstr(e->d_name, ".tmp.") != NULL;

		if (!stale_tmp && (!is_host_fname(key) ||
				   bsearch(&key, want, c->n_hosts, sizeof(*want), cmp_str)))
			continue;
		if (fmt_buf(path, sizeof(path), "%s/%s", dir, e->d_name) < 0)
			continue;
		if (unlink(path) < 0 && errno != ENOENT) {
			r = -errno;
			log_error("cannot remove '%s': %s", path, strerror(-r));
			goto out;
		}
		dirty = 1;
		if (!stale_tmp)
			*changes |= DHCP_CHANGED_HOSTS_DEL;
	}
	if (dirty) {
		r = io_fsync_dir(dir);
		if (r < 0)
			log_error("cannot fsync '%s': %s", dir, strerror(-r));
	}
out:
	if (d)
		closedir(d);
	for (i = 0; i < c->n_hosts; i++)
		free(want[i]);
	free(want);
	return r;
}

/* dnsmasq drops root for "nobody" (or c->user) and reads the hosts dir and
 * the TFTP root after that: warn when a folder on the way is not searchable by
 * others, which makes dnsmasq log "bad dynamic directory" and ignore every host. */
static void warn_unreachable(const struct dhcp_config *c, const char *path)
{
	char p[PATH_MAX];
	struct stat st;
	char *slash;

	if (c->user && strcmp(c->user, "root") == 0)
		return;
	if (fmt_buf(p, sizeof(p), "%s", path) < 0)
		return;
	for (;;) {
		if (stat(p, &st) == 0 && S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH)) {
			log_warn("dnsmasq (running as '%s') cannot reach '%s' through '%s' "
				 "(mode %04o): make it searchable by others (chmod o+x) or move "
				 "the state dir / tftp root",
				 c->user ? c->user : "nobody", path, p,
				 (unsigned)(st.st_mode & 07777));
			return;
		}
		slash = strrchr(p, '/');
		if (!slash || slash == p)
			return;
		*slash = '\0';
	}
}

int dhcp_write(const struct dhcp_config *c, unsigned *changes)
{
	char path[PATH_MAX], dir[PATH_MAX];
	unsigned ch = 0;
	char *conf = NULL;
	int r, same;

	if (changes)
		*changes = 0;
	r = dhcp_render_conf(c, &conf);
	if (r < 0)
		return r;
	if (fmt_buf(path, sizeof(path), "%s/%s", c->state_dir, DHCP_CONF_NAME) < 0 ||
	    fmt_buf(dir, sizeof(dir), "%s/%s", c->state_dir, DHCP_HOSTS_DIR) < 0) {
		r = -ENAMETOOLONG;
		log_error("state dir '%s': path too long", c->state_dir);
		goto out;
	}
	r = io_mkdir_p(dir, 0755);
	if (r < 0) {
		log_error("cannot create '%s': %s", dir, strerror(-r));
		goto out;
	}
	/* hosts first: a restarted dnsmasq must find them */
	r = write_hosts(c, dir, &ch);
	if (r < 0)
		goto out;
	same = same_content(path, conf, strlen(conf), CONF_MAX);
	if (same == 0) {
		r = io_write_file_atomic(path, conf, strlen(conf), 0644);
		if (r < 0) {
			log_error("cannot write '%s': %s", path, strerror(-r));
			goto out;
		}
		ch |= DHCP_CHANGED_CONF;
	} else if (same < 0) {
		r = same;
		log_error("cannot read '%s': %s", path, strerror(-r));
		goto out;
	}
	if (changes)
		*changes = ch;
	if (ch & DHCP_CHANGED_CONF) {
		warn_unreachable(c, dir);
		warn_unreachable(c, c->tftp_root);
	}
out:
	free(conf);
	return r;
}

char **dhcp_argv(const struct dhcp_config *c, const char *dnsmasq_path)
{
	char **argv = xcalloc(5, sizeof(*argv));

	argv[0] = xstrdup(dnsmasq_path ? dnsmasq_path : "dnsmasq");
	argv[1] = xstrdup("--keep-in-foreground");
	argv[2] = xasprintf("--conf-file=%s/%s", c->state_dir, DHCP_CONF_NAME);
	argv[3] = xstrdup("--pid-file"); /* without a value: no pid file */
	return argv;
}

void dhcp_argv_free(char **argv)
{
	size_t i;

	if (!argv)
		return;
	for (i = 0; argv[i]; i++)
		free(argv[i]);
	free(argv);
}

int dhcp_install_boot_files(const char *tftp_root, const char *ipxe_dir, int *changed)
{
	static const char *const files[] = {DHCP_BIOS_FILE, DHCP_UEFI_FILE};
	char src[PATH_MAX], dst[PATH_MAX];
	int r, n = 0;
	size_t i;

	if (changed)
		*changed = 0;
	if (!ipxe_dir)
		ipxe_dir = DHCP_IPXE_DIR;
	r = io_mkdir_p(tftp_root, 0755);
	if (r < 0) {
		log_error("cannot create tftp root '%s': %s", tftp_root, strerror(-r));
		return r;
	}
	for (i = 0; i < ARRAY_SIZE(files); i++) {
		char *data = NULL;
		size_t len = 0;
		int same;

		if (fmt_buf(src, sizeof(src), "%s/%s", ipxe_dir, files[i]) < 0 ||
		    fmt_buf(dst, sizeof(dst), "%s/%s", tftp_root, files[i]) < 0)
			return -ENAMETOOLONG;
		r = io_read_file(src, BOOT_FILE_MAX, &data, &len);
		if (r < 0) {
			log_error("cannot read iPXE boot file '%s': %s (is the ipxe package "
				  "installed?)",
				  src, strerror(-r));
			return r;
		}
		same = same_content(dst, data, len, BOOT_FILE_MAX);
		if (same == 0) {
			r = io_write_file_atomic(dst, data, len, 0644);
			if (r == 0)
				n++;
			else
				log_error("cannot install '%s': %s", dst, strerror(-r));
		} else {
			r = same < 0 ? same : 0;
			if (r < 0)
				log_error("cannot read '%s': %s", dst, strerror(-r));
		}
		free(data);
		if (r < 0)
			return r;
	}
	if (changed)
		*changed = n;
	return 0;
}
