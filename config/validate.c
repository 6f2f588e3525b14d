/* Semantic validation of a parsed config, and the host checks.
 *
 * config_validate() runs after config/parse.c has mapped every key it could:
 * it fills defaults that depend on other keys, interprets dhcp.range (its
 * meaning depends on dhcp.mode) and iscsi.portal, resolves the names that
 * profiles, machines, groups and the unknown policy refer to, and reports
 * duplicates. Duplicate and reference checks sort name indices, so a config
 * with 100k machines validates in O(n log n).
 *
 * The host checks (config_check_interface, config_check_files) look at the
 * machine goldcached runs on and are kept apart so unit tests can skip them;
 * `goldcached --check` and the daemon run them. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/internal.h"
#include "lib/io.h"
#include "lib/util.h"
#include "targets/iqn.h"

#define DEFAULT_TFTP_ROOT "/var/lib/goldcache/tftp"
#define DEFAULT_STORE_DIR "/var/lib/goldcache/store"
#define DEFAULT_STATE_DIR "/var/lib/goldcache/state"
#define DEFAULT_IQN_PREFIX "iqn.2026-11.local.goldcache"
#define DEFAULT_ISCSI_PORT 3260

struct keyidx {
	const char *key;
	size_t idx;
};

static int keyidx_cmp(const void *a, const void *b)
{
	const struct keyidx *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int keyidx_find_cmp(const void *k, const void *e)
{
	return strcmp(k, ((const struct keyidx *)e)->key);
}

/* Sorted (name, index) pairs of the items whose name is set. */
static struct keyidx *index_names(const void *arr, size_t n, size_t size, size_t name_off,
				  size_t *out_n)
{
	struct keyidx *k = xcalloc(n ? n : 1, sizeof(*k));
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		const char *name = *(char *const *)((const char *)arr + i * size + name_off);

		if (name)
			k[m++] = (struct keyidx){name, i};
	}
	qsort(k, m, sizeof(*k), keyidx_cmp);
	*out_n = m;
	return k;
}

static void report_dups(struct config_diag *d, const char *file, const struct keyidx *k, size_t n,
			const void *arr, size_t size, size_t pos_off, const char *section,
			const char *what)
{
	/* j: the first of the current run of equal keys (linear, even when
	 * every item has the same name) */
	for (size_t i = 1, j = 0; i < n; i++) {
		const struct config_pos *pos, *first;
		char path[64];

		if (strcmp(k[i].key, k[j].key) != 0) {
			j = i;
			continue;
		}
		pos = (const void *)((const char *)arr + k[i].idx * size + pos_off);
		first = (const void *)((const char *)arr + k[j].idx * size + pos_off);
		snprintf(path, sizeof(path), "%s[%zu]", section, k[i].idx);
		config_diag_add(d, file, pos, path,
				"duplicate %s \"%s\" (already used by %s[%zu] at line %u; "
				"each %s must be unique)",
				what, k[i].key, section, k[j].idx, first->line, what);
	}
}

static const struct keyidx *lookup(const struct keyidx *k, size_t n, const char *name)
{
	return bsearch(name, k, n, sizeof(*k), keyidx_find_cmp);
}

/* "defined profiles: a, b, c" or "no profiles are defined" */
static void known_list(char *buf, size_t size, const struct keyidx *k, size_t n, const char *plural)
{
	size_t o;

	if (!n) {
		snprintf(buf, size, "no %s are defined", plural);
		return;
	}
	o = (size_t)snprintf(buf, size, "defined %s: ", plural);
	for (size_t i = 0; i < n && o < size; i++) {
		int r;

		if (i == 8) {
			snprintf(buf + o, size - o, ", ...");
			return;
		}
		r = snprintf(buf + o, size - o, "%s%s", i ? ", " : "", k[i].key);
		if (r < 0)
			return;
		o += (size_t)r;
	}
}

static const void *resolve(struct config_diag *d, const char *file, const char *name,
			   const struct config_pos *pos, const char *path, const struct keyidx *k,
			   size_t n, const void *arr, size_t size, const char *what,
			   const char *plural)
{
	const struct keyidx *hit;
	char known[600];

	if (!name)
		return NULL;
	hit = lookup(k, n, name);
	if (hit)
		return (const char *)arr + hit->idx * size;
	known_list(known, sizeof(known), k, n, plural);
	config_diag_add(d, file, pos, path, "unknown %s \"%s\" (%s)", what, name, known);
	return NULL;
}

static uint32_t mask_of(unsigned prefix)
{
	return prefix ? 0xffffffffu << (32 - prefix) : 0;
}

static bool same_subnet(struct in_addr a, struct in_addr b, uint32_t mask)
{
	return (ntohl(a.s_addr) & mask) == (ntohl(b.s_addr) & mask);
}

/* Checks the DHCP range against a subnet (mask from a prefix or a netmask). */
static void check_range_subnet(const struct config *cfg, struct config_diag *d, uint32_t mask,
			       const char *why)
{
	const struct config_appliance *a = &cfg->appliance;
	char net[INET_ADDRSTRLEN], m[INET_ADDRSTRLEN];
	struct in_addr n = {htonl(ntohl(a->listen_addr.s_addr) & mask)}, mk = {htonl(mask)};

	if (a->dhcp.mode == CONFIG_DHCP_OFF || !a->dhcp.range || !a->listen)
		return;
	inet_ntop(AF_INET, &n, net, sizeof(net));
	inet_ntop(AF_INET, &mk, m, sizeof(m));
	if (a->dhcp.mode == CONFIG_DHCP_FULL) {
		if (!same_subnet(a->dhcp.range_start, a->listen_addr, mask) ||
		    !same_subnet(a->dhcp.range_end, a->listen_addr, mask))
			config_diag_add(d, cfg->path, &a->dhcp.range_pos, "appliance.dhcp.range",
					"\"%s\" is not inside %s's subnet %s netmask %s (%s; "
					"expected addresses in that subnet)",
					a->dhcp.range, a->listen, net, m, why);
	} else if ((ntohl(a->dhcp.range_start.s_addr)) != (ntohl(a->listen_addr.s_addr) & mask)) {
		config_diag_add(d, cfg->path, &a->dhcp.range_pos, "appliance.dhcp.range",
				"\"%s\" is not the network address of %s's subnet (%s; "
				"expected %s for proxy mode)",
				a->dhcp.range, a->listen, why, net);
	}
}

static void validate_dhcp(struct config *cfg, struct config_diag *d)
{
	struct config_appliance *a = &cfg->appliance;
	struct config_dhcp *h = &a->dhcp;
	const char *path = "appliance.dhcp.range";
	unsigned pfx = 0;

	if (h->mode == CONFIG_DHCP_OFF) {
		if (h->range)
			config_diag_add(d, cfg->path, &h->range_pos, path,
					"a range is only used with mode full or proxy "
					"(remove it, or set the mode)");
		return;
	}
	if (!h->range) {
		config_diag_add(
			d, cfg->path, &h->pos, path, "missing: mode %s needs a range (%s)",
			config_dhcp_mode_name(h->mode),
			h->mode == CONFIG_DHCP_FULL
				? "the first and last address to lease, like "
				  "10.77.0.100-10.77.0.200"
				: "the network address of the existing subnet, like 10.77.0.0");
		return;
	}
	if (h->mode == CONFIG_DHCP_FULL) {
		const char *dash = strchr(h->range, '-');
		char first[32];
		unsigned p1 = 0, p2 = 0;
		size_t n = dash ? (size_t)(dash - h->range) : 0;

		if (!dash || n >= sizeof(first)) {
			config_diag_add(d, cfg->path, &h->range_pos, path,
					"\"%s\" is not an address range (expected FIRST-LAST, like "
					"10.77.0.100-10.77.0.200)",
					h->range);
			return;
		}
		memcpy(first, h->range, n);
		first[n] = '\0';
		if (config_ipv4_parse(first, &h->range_start, &p1) < 0 || p1 ||
		    config_ipv4_parse(dash + 1, &h->range_end, &p2) < 0 || p2) {
			config_diag_add(d, cfg->path, &h->range_pos, path,
					"\"%s\" is not an address range (expected FIRST-LAST, like "
					"10.77.0.100-10.77.0.200)",
					h->range);
			return;
		}
		if (ntohl(h->range_start.s_addr) > ntohl(h->range_end.s_addr)) {
			config_diag_add(d, cfg->path, &h->range_pos, path,
					"\"%s\" starts after it ends (expected FIRST-LAST with "
					"FIRST <= LAST)",
					h->range);
			return;
		}
		if (a->listen && ntohl(a->listen_addr.s_addr) >= ntohl(h->range_start.s_addr) &&
		    ntohl(a->listen_addr.s_addr) <= ntohl(h->range_end.s_addr))
			config_diag_add(d, cfg->path, &h->range_pos, path,
					"\"%s\" contains the appliance's own address %s "
					"(expected a range that leaves it out)",
					h->range, a->listen);
	} else {
		if (config_ipv4_parse(h->range, &h->range_start, &pfx) < 0 || pfx) {
			config_diag_add(d, cfg->path, &h->range_pos, path,
					"\"%s\" is not a network address (expected the existing "
					"subnet's network address, like 10.77.0.0)",
					h->range);
			return;
		}
		h->range_end = h->range_start;
	}
	if (a->listen_prefix)
		check_range_subnet(cfg, d, mask_of(a->listen_prefix), "from listen's prefix");
	if (h->mode == CONFIG_DHCP_FULL && a->listen_prefix && a->listen_prefix <= 30) {
		uint32_t m = mask_of(a->listen_prefix);

		if ((ntohl(h->range_start.s_addr) & ~m) == 0 ||
		    (ntohl(h->range_end.s_addr) & ~m) == ~m)
			config_diag_add(d, cfg->path, &h->range_pos, path,
					"\"%s\" includes the subnet's network or broadcast address "
					"(expected host addresses only)",
					h->range);
	}
}

/* The naming scheme (targets/iqn.h) decides what a prefix may be; on top, the
 * month must be a month, and PREFIX:m.NAME must fit 223 bytes for any machine
 * name (64 characters). */
static bool iqn_prefix_ok(const char *s)
{
	if (!iqn_prefix_is_valid(s) || strlen(s) > CONFIG_IQN_PREFIX_MAX)
		return false;
	return (s[9] == '0' && s[10] >= '1') || (s[9] == '1' && s[10] <= '2');
}

static void validate_appliance(struct config *cfg, struct config_diag *d)
{
	struct config_appliance *a = &cfg->appliance;
	struct config_iscsi *is = &a->iscsi;

	if (!a->tftp_root)
		a->tftp_root = xstrdup(DEFAULT_TFTP_ROOT);
	if (!a->store_dir)
		a->store_dir = xstrdup(DEFAULT_STORE_DIR);
	if (!a->state_dir)
		a->state_dir = xstrdup(DEFAULT_STATE_DIR);
	if (a->interface && (strlen(a->interface) >= IFNAMSIZ || strchr(a->interface, '/') ||
			     strchr(a->interface, ' ') || strchr(a->interface, ':')))
		config_diag_add(d, cfg->path, &a->interface_pos, "appliance.interface",
				"\"%s\" is not an interface name (expected at most %d characters "
				"without '/', ':' or spaces, like gcbr0)",
				a->interface, IFNAMSIZ - 1);
	if (a->listen) {
		uint32_t ip = ntohl(a->listen_addr.s_addr), m = mask_of(a->listen_prefix);

		if (ip == 0 || ip == 0xffffffffu || (ip >> 28) == 0xe)
			config_diag_add(d, cfg->path, &a->listen_pos, "appliance.listen",
					"%s is not a unicast address (expected the appliance's own "
					"address on the boot network, like 10.77.0.1)",
					a->listen);
		else if (a->listen_prefix && a->listen_prefix <= 30 &&
			 ((ip & ~m) == 0 || (ip & ~m) == ~m))
			config_diag_add(d, cfg->path, &a->listen_pos, "appliance.listen",
					"%s is the network or broadcast address of /%u (expected "
					"a host address)",
					a->listen, a->listen_prefix);
	}
	validate_dhcp(cfg, d);

	if (!is->iqn_prefix)
		is->iqn_prefix = xstrdup(DEFAULT_IQN_PREFIX);
	else if (!iqn_prefix_ok(is->iqn_prefix))
		config_diag_add(d, cfg->path, &is->iqn_pos, "appliance.iscsi.iqn_prefix",
				"\"%s\" is not a valid iSCSI qualified name (expected "
				"iqn.YYYY-MM.reversed.domain in lower case without ':', at most %d "
				"characters, "
				"like iqn.2026-11.org.example.goldcache)",
				is->iqn_prefix, CONFIG_IQN_PREFIX_MAX);

	if (!is->portal && a->listen) {
		is->portal_addr = a->listen_addr;
		is->portal_port = DEFAULT_ISCSI_PORT;
		is->portal = xasprintf("%s:%d", a->listen, DEFAULT_ISCSI_PORT);
	} else if (is->portal) {
		const char *colon = strrchr(is->portal, ':');
		char host[32];
		unsigned pfx = 0;
		int port = DEFAULT_ISCSI_PORT;
		size_t n = colon ? (size_t)(colon - is->portal) : strlen(is->portal);

		if (n >= sizeof(host) || (colon && parse_int(colon + 1, 1, 65535, &port) < 0)) {
			n = 0;
		} else {
			memcpy(host, is->portal, n);
			host[n] = '\0';
		}
		if (!n || config_ipv4_parse(host, &is->portal_addr, &pfx) < 0 || pfx) {
			config_diag_add(d, cfg->path, &is->portal_pos, "appliance.iscsi.portal",
					"\"%s\" is not an iSCSI portal (expected ADDRESS:PORT, "
					"like 10.77.0.1:3260)",
					is->portal);
		} else {
			is->portal_port = (uint16_t)port;
			if (!colon) {
				char *full = xasprintf("%s:%d", host, port);

				free(is->portal);
				is->portal = full;
			}
		}
	}
}

static void validate_profiles(struct config *cfg, struct config_diag *d, const struct keyidx *ik,
			      size_t nik)
{
	for (size_t i = 0; i < cfg->n_profiles; i++) {
		struct config_profile *p = &cfg->profiles[i];
		const struct config_image *im;
		char path[64];

		snprintf(path, sizeof(path), "profiles[%zu].image", i);
		im = resolve(d, cfg->path, p->image, &p->image_pos, path, ik, nik, cfg->images,
			     sizeof(*cfg->images), "image", "images");
		p->image_ref = im;
		if (im && p->mode != CONFIG_MODE_SANBOOT && (!im->kernel || !im->initrd))
			config_diag_add(d, cfg->path, &p->image_pos, path,
					"mode %s boots a kernel, but image \"%s\" (line %u) has no "
					"%s (add kernel and initrd to the image, or use mode "
					"sanboot)",
					config_mode_name(p->mode), im->name, im->pos.line,
					!im->kernel && !im->initrd ? "kernel and initrd"
					: !im->kernel		   ? "kernel"
								   : "initrd");
	}
}

static int mac_idx_cmp(const void *a, const void *b, void *arg)
{
	const struct config_machine *m = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = memcmp(m[x].mac, m[y].mac, 6);

	if (c)
		return c;
	return x < y ? -1 : x > y;
}

static void validate_machines(struct config *cfg, struct config_diag *d, const struct keyidx *pk,
			      size_t npk)
{
	size_t n = 0, nk;
	size_t *by = xcalloc(cfg->n_machines ? cfg->n_machines : 1, sizeof(*by));
	struct keyidx *names;

	for (size_t i = 0; i < cfg->n_machines; i++) {
		struct config_machine *m = &cfg->machines[i];
		char path[64];

		if (m->mac_str[0])
			by[n++] = i;
		snprintf(path, sizeof(path), "machines[%zu].profile", i);
		m->profile_ref =
			resolve(d, cfg->path, m->profile, &m->profile_pos, path, pk, npk,
				cfg->profiles, sizeof(*cfg->profiles), "profile", "profiles");
	}
	qsort_r(by, n, sizeof(*by), mac_idx_cmp, cfg->machines);
	for (size_t i = 1, j = 0; i < n; i++) {
		const struct config_machine *m = &cfg->machines[by[i]], *f;
		char path[64];

		if (memcmp(m->mac, cfg->machines[by[j]].mac, 6) != 0) {
			j = i;
			continue;
		}
		f = &cfg->machines[by[j]];
		snprintf(path, sizeof(path), "machines[%zu].mac", by[i]);
		config_diag_add(d, cfg->path, &m->mac_pos, path,
				"duplicate MAC %s (already used by machines[%zu] at line %u; each "
				"machine must be listed once)",
				m->mac_str, by[j], f->mac_pos.line);
	}
	/* with duplicates the load fails, so the index is only ever used unique */
	cfg->by_mac_ = by;
	/* explicit names first: a duplicate MAC is reported once, as such */
	names = index_names(cfg->machines, cfg->n_machines, sizeof(*cfg->machines),
			    offsetof(struct config_machine, name), &nk);
	report_dups(d, cfg->path, names, nk, cfg->machines, sizeof(*cfg->machines),
		    offsetof(struct config_machine, pos), "machines", "machine name");
	for (size_t i = 0; i < cfg->n_machines; i++) {
		struct config_machine *m = &cfg->machines[i];
		const struct keyidx *hit;
		char path[64];

		if (m->name || !m->mac_str[0])
			continue;
		m->name = xstrdup(m->mac_str);
		for (char *c = m->name; *c; c++)
			if (*c == ':')
				*c = '-';
		hit = lookup(names, nk, m->name);
		if (!hit)
			continue;
		snprintf(path, sizeof(path), "machines[%zu]", i);
		config_diag_add(d, cfg->path, &m->pos, path,
				"its default name \"%s\" is the name of machines[%zu] (give this "
				"machine a name)",
				m->name, hit->idx);
	}
	free(names);
}

int config_validate(struct config *cfg, struct config_diag *d)
{
	size_t before = d->total, nik, npk;
	struct keyidx *ik, *pk;

	validate_appliance(cfg, d);
	for (size_t i = 0; i < cfg->n_images; i++) {
		struct config_image *im = &cfg->images[i];
		uint32_t v = 0;
		char path[64];

		if (!im->version) {
			im->version = xstrdup("current");
		} else if (strcmp(im->version, "current") != 0) {
			snprintf(path, sizeof(path), "images[%zu].version", i);
			if (parse_u32(im->version, &v) < 0 || v == 0) {
				config_diag_add(d, cfg->path, &im->version_pos, path,
						"\"%s\" is not a version (expected current, or a "
						"version number from `goldctl image versions`)",
						im->version);
			} else {
				im->version_id = v;
				free(im->version);
				im->version = xasprintf("%" PRIu32, v);
			}
		}
	}

	ik = index_names(cfg->images, cfg->n_images, sizeof(*cfg->images),
			 offsetof(struct config_image, name), &nik);
	report_dups(d, cfg->path, ik, nik, cfg->images, sizeof(*cfg->images),
		    offsetof(struct config_image, pos), "images", "image name");
	pk = index_names(cfg->profiles, cfg->n_profiles, sizeof(*cfg->profiles),
			 offsetof(struct config_profile, name), &npk);
	report_dups(d, cfg->path, pk, npk, cfg->profiles, sizeof(*cfg->profiles),
		    offsetof(struct config_profile, pos), "profiles", "profile name");

	validate_profiles(cfg, d, ik, nik);
	validate_machines(cfg, d, pk, npk);

	for (size_t i = 0; i < cfg->n_groups; i++) {
		struct config_group *g = &cfg->groups[i];
		char path[64];

		snprintf(path, sizeof(path), "groups[%zu].profile", i);
		g->profile_ref =
			resolve(d, cfg->path, g->profile, &g->profile_pos, path, pk, npk,
				cfg->profiles, sizeof(*cfg->profiles), "profile", "profiles");
	}

	if (cfg->unknown.policy == CONFIG_UNKNOWN_PROFILE) {
		if (!cfg->unknown.profile)
			config_diag_add(
				d, cfg->path, &cfg->unknown.pos, "unknown_machines.profile",
				"missing: policy profile needs the profile unknown machines "
				"boot");
		else
			cfg->unknown.profile_ref = resolve(
				d, cfg->path, cfg->unknown.profile, &cfg->unknown.profile_pos,
				"unknown_machines.profile", pk, npk, cfg->profiles,
				sizeof(*cfg->profiles), "profile", "profiles");
	} else if (cfg->unknown.profile) {
		config_diag_add(d, cfg->path, &cfg->unknown.profile_pos, "unknown_machines.profile",
				"only used with policy: profile (remove it, or set the policy)");
	}
	free(ik);
	free(pk);
	return d->total == before ? 0 : -EINVAL;
}

/* ---- host checks ---- */

int config_check_interface(const struct config *cfg, struct config_diag *d)
{
	const struct config_appliance *a = &cfg->appliance;
	struct ifaddrs *ifs = NULL;
	char addrs[512] = "";
	size_t o = 0, before = d->total;
	bool found = false, exists = false;
	uint32_t mask = 0;

	if (!a->interface || !a->listen)
		return -EINVAL;
	if (getifaddrs(&ifs) < 0) {
		config_diag_add(d, cfg->path, &a->listen_pos, "appliance.listen",
				"cannot list the host's addresses: %s", strerror(errno));
		return -EINVAL;
	}
	for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
		const struct sockaddr_in *sin = (const void *)i->ifa_addr;
		const struct sockaddr_in *nm = (const void *)i->ifa_netmask;
		char s[INET_ADDRSTRLEN];

		if (!i->ifa_name || strcmp(i->ifa_name, a->interface) != 0)
			continue;
		exists = true;
		if (!sin || sin->sin_family != AF_INET)
			continue;
		if (sin->sin_addr.s_addr == a->listen_addr.s_addr) {
			found = true;
			mask = nm ? ntohl(nm->sin_addr.s_addr) : 0xffffffffu;
		}
		inet_ntop(AF_INET, &sin->sin_addr, s, sizeof(s));
		if (o < sizeof(addrs)) {
			int r = snprintf(addrs + o, sizeof(addrs) - o, "%s%s", o ? ", " : "", s);

			if (r > 0)
				o += (size_t)r;
		}
	}
	freeifaddrs(ifs);
	if (!exists && !if_nametoindex(a->interface))
		config_diag_add(d, cfg->path, &a->interface_pos, "appliance.interface",
				"no interface \"%s\" on this host (expected the boot network's "
				"interface; see `ip link`)",
				a->interface);
	else if (!found)
		config_diag_add(d, cfg->path, &a->listen_pos, "appliance.listen",
				"%s is not an address of interface \"%s\" (%s%s; expected one "
				"of its IPv4 addresses)",
				a->listen, a->interface, o ? "it has " : "it has no IPv4 address",
				addrs);
	else
		check_range_subnet(cfg, d, mask, "from the interface's netmask");
	return d->total == before ? 0 : -EINVAL;
}

int config_secret_read(const char *path, char **out)
{
	char *buf = NULL;
	size_t len = 0;
	int r;

	*out = NULL;
	r = io_read_file(path, 4096, &buf, &len);
	if (r < 0)
		return r;
	if (len && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (len < 12 || len > 255)
		r = -EINVAL;
	for (size_t i = 0; r == 0 && i < len; i++)
		if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f)
			r = -EINVAL;
	if (r < 0) {
		explicit_bzero(buf, len);
		free(buf);
		return r;
	}
	*out = buf;
	return 0;
}

static void check_secret(const struct config *cfg, struct config_diag *d, const char *file,
			 const struct config_pos *pos, const char *path, bool chap)
{
	char *s = NULL;
	int r = config_secret_read(file, &s);

	if (r == 0) {
		/* tgtadm's limits (targets/iqn.h) are narrower than a token's */
		if (chap && !chap_secret_is_valid(s))
			r = -EINVAL;
		explicit_bzero(s, strlen(s));
		free(s);
		if (r == 0)
			return;
	}
	if (r == -EINVAL)
		config_diag_add(d, cfg->path, pos, path,
				"\"%s\" does not hold a valid %s (expected one line of %s "
				"printable characters without spaces%s)",
				file, chap ? "CHAP secret" : "secret", chap ? "12-64" : "12-255",
				chap ? " or commas" : "");
	else if (r == -EISDIR)
		config_diag_add(d, cfg->path, pos, path,
				"\"%s\" is a directory (expected a readable file holding the "
				"secret)",
				file);
	else
		config_diag_add(d, cfg->path, pos, path,
				"cannot read \"%s\": %s (expected a readable file holding the "
				"secret)",
				file, strerror(-r));
}

int config_check_files(const struct config *cfg, struct config_diag *d)
{
	size_t before = d->total;

	if (cfg->appliance.admin_token_file)
		check_secret(cfg, d, cfg->appliance.admin_token_file,
			     &cfg->appliance.admin_token_pos, "appliance.admin_token_file", false);
	for (size_t i = 0; i < cfg->n_machines; i++) {
		char path[64];

		if (!cfg->machines[i].chap_secret_file)
			continue;
		snprintf(path, sizeof(path), "machines[%zu].chap_secret_file", i);
		check_secret(cfg, d, cfg->machines[i].chap_secret_file,
			     &cfg->machines[i].secret_pos, path, true);
	}
	return d->total == before ? 0 : -EINVAL;
}

int config_check_host(const struct config *cfg, struct config_diag *d)
{
	int r1 = config_check_interface(cfg, d);
	int r2 = config_check_files(cfg, d);

	return r1 < 0 ? r1 : r2;
}
