/* struct config's lifecycle, value syntax (MACs, durations, IPv4), error
 * collection, lookups, the reload diff and the YAML printer.
 *
 * The printer goes through libyaml's emitter so quoting is always right:
 * whatever it writes, config/parse.c reads back to an equal config (the unit
 * tests check that round trip). Secrets are never read here; only the paths
 * of secret files appear in the output. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "config/internal.h"
#include "lib/util.h"

/* ---- diagnostics ---- */

void config_diag_init(struct config_diag *d)
{
	memset(d, 0, sizeof(*d));
}

void config_diag_release(struct config_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->msgs[i]);
	memset(d, 0, sizeof(*d));
}

void config_diag_add(struct config_diag *d, const char *file, const struct config_pos *pos,
		     const char *path, const char *fmt, ...)
{
	char where[64] = "", *msg;
	va_list ap;

	d->total++;
	if (d->n >= CONFIG_MAX_ERRORS)
		return;
	if (pos && pos->line)
		snprintf(where, sizeof(where), ":%u:%u", pos->line, pos->col);
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	d->msgs[d->n++] =
		xasprintf("%s%s: %s%s%s", file ? file : "config", where, path && *path ? path : "",
			  path && *path ? ": " : "", msg ? msg : "out of memory");
	free(msg);
}

void config_diag_print(const struct config_diag *d, FILE *f)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(f, "%s\n", d->msgs[i]);
	if (d->total > d->n)
		fprintf(f, "... and %zu more error%s\n", d->total - d->n,
			d->total - d->n == 1 ? "" : "s");
}

const char *config_quote(const char *s, size_t n, char *buf, size_t size)
{
	size_t o = 0;

	if (size < 16) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i >= 48 || o + 8 >= size) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
			if (c == '"' || c == '\\') {
				buf[o++] = '\\';
				buf[o++] = (char)c;
			} else {
				snprintf(buf + o, size - o, "\\x%02x", c);
				o += 4;
			}
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* ---- value syntax ---- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int config_mac_parse(const char *s, uint8_t mac[6])
{
	char sep;

	if (!s || strlen(s) != 17)
		return -EINVAL;
	sep = s[2];
	if (sep != ':' && sep != '-')
		return -EINVAL;
	for (size_t i = 0; i < 6; i++) {
		int hi = hexval((unsigned char)s[i * 3]), lo = hexval((unsigned char)s[i * 3 + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		if (i < 5 && s[i * 3 + 2] != sep)
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void config_mac_format(const uint8_t mac[6], char buf[CONFIG_MAC_STRLEN])
{
	snprintf(buf, CONFIG_MAC_STRLEN, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2],
		 mac[3], mac[4], mac[5]);
}

static const struct {
	char unit;
	uint64_t secs;
} units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};

int config_duration_parse(const char *s, uint64_t *secs)
{
	uint64_t v = 0;
	size_t i = 0;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	for (; isdigit((unsigned char)s[i]); i++) {
		if (v > (UINT64_MAX - 9) / 10 || i >= 12)
			return -ERANGE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (!s[i] || s[i + 1])
		return -EINVAL;
	for (size_t u = 0; u < ARRAY_SIZE(units); u++) {
		if (s[i] == units[u].unit) {
			*secs = v * units[u].secs;
			return 0;
		}
	}
	return -EINVAL;
}

const char *config_duration_format(uint64_t secs, char *buf, size_t size)
{
	for (size_t u = 0; u < ARRAY_SIZE(units); u++) {
		if (secs && secs % units[u].secs == 0) {
			snprintf(buf, size, "%llu%c", (unsigned long long)(secs / units[u].secs),
				 units[u].unit);
			return buf;
		}
	}
	snprintf(buf, size, "0s");
	return buf;
}

int config_ipv4_parse(const char *s, struct in_addr *addr, unsigned *prefix)
{
	char tmp[32];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	int pl = 0;

	if (n == 0 || n >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET, tmp, addr) != 1)
		return -EINVAL;
	if (slash && parse_int(slash + 1, 1, 32, &pl) < 0)
		return -EINVAL;
	*prefix = (unsigned)pl;
	return 0;
}

const char *config_mode_name(enum config_boot_mode m)
{
	static const char *const n[] = {"cache", "stream", "sanboot"};

	return (unsigned)m < ARRAY_SIZE(n) ? n[m] : "?";
}

const char *config_dhcp_mode_name(enum config_dhcp_mode m)
{
	static const char *const n[] = {"full", "proxy", "off"};

	return (unsigned)m < ARRAY_SIZE(n) ? n[m] : "?";
}

const char *config_unknown_policy_name(enum config_unknown_policy p)
{
	static const char *const n[] = {"refuse", "profile"};

	return (unsigned)p < ARRAY_SIZE(n) ? n[p] : "?";
}

/* ---- lifecycle ---- */

void config_free(struct config *cfg)
{
	struct config_appliance *a;

	if (!cfg)
		return;
	a = &cfg->appliance;
	free(a->interface);
	free(a->listen);
	free(a->dhcp.range);
	free(a->tftp_root);
	free(a->iscsi.portal);
	free(a->iscsi.iqn_prefix);
	free(a->store_dir);
	free(a->state_dir);
	free(a->admin_token_file);
	for (size_t i = 0; i < cfg->n_images; i++) {
		free(cfg->images[i].name);
		free(cfg->images[i].version);
		free(cfg->images[i].kernel);
		free(cfg->images[i].initrd);
		free(cfg->images[i].cmdline);
	}
	free(cfg->images);
	for (size_t i = 0; i < cfg->n_profiles; i++) {
		free(cfg->profiles[i].name);
		free(cfg->profiles[i].image);
	}
	free(cfg->profiles);
	for (size_t i = 0; i < cfg->n_machines; i++) {
		free(cfg->machines[i].name);
		free(cfg->machines[i].profile);
		free(cfg->machines[i].chap_secret_file);
	}
	free(cfg->machines);
	for (size_t i = 0; i < cfg->n_groups; i++) {
		free(cfg->groups[i].match);
		free(cfg->groups[i].profile);
	}
	free(cfg->groups);
	free(cfg->unknown.profile);
	free(cfg->by_mac_);
	free(cfg->path);
	free(cfg);
}

/* ---- lookups ---- */

const struct config_profile *config_profile_by_name(const struct config *cfg, const char *name)
{
	for (size_t i = 0; name && i < cfg->n_profiles; i++)
		if (!strcmp(cfg->profiles[i].name, name))
			return &cfg->profiles[i];
	return NULL;
}

const struct config_image *config_image_by_name(const struct config *cfg, const char *name)
{
	for (size_t i = 0; name && i < cfg->n_images; i++)
		if (!strcmp(cfg->images[i].name, name))
			return &cfg->images[i];
	return NULL;
}

const struct config_machine *config_machine_by_name(const struct config *cfg, const char *name)
{
	for (size_t i = 0; name && i < cfg->n_machines; i++)
		if (cfg->machines[i].name && !strcmp(cfg->machines[i].name, name))
			return &cfg->machines[i];
	return NULL;
}

static const struct config_machine *machine_exact(const struct config *cfg, const uint8_t mac[6])
{
	size_t lo = 0, hi = cfg->n_machines;

	if (!cfg->by_mac_) {
		for (size_t i = 0; i < cfg->n_machines; i++)
			if (!memcmp(cfg->machines[i].mac, mac, 6))
				return &cfg->machines[i];
		return NULL;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct config_machine *m = &cfg->machines[cfg->by_mac_[mid]];
		int c = memcmp(m->mac, mac, 6);

		if (c == 0)
			return m;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int config_machine_by_mac(const struct config *cfg, const uint8_t mac[6], struct config_match *out)
{
	char s[CONFIG_MAC_STRLEN];

	memset(out, 0, sizeof(*out));
	out->machine = machine_exact(cfg, mac);
	if (out->machine) {
		out->kind = CONFIG_MATCH_MACHINE;
		out->profile = out->machine->profile_ref;
		return 0;
	}
	config_mac_format(mac, s);
	for (size_t i = 0; i < cfg->n_groups; i++) {
		if (fnmatch(cfg->groups[i].match, s, 0) == 0) {
			out->kind = CONFIG_MATCH_GROUP;
			out->group = &cfg->groups[i];
			out->profile = out->group->profile_ref;
			return 0;
		}
	}
	if (cfg->unknown.policy == CONFIG_UNKNOWN_PROFILE && cfg->unknown.profile_ref) {
		out->kind = CONFIG_MATCH_UNKNOWN;
		out->profile = cfg->unknown.profile_ref;
		return 0;
	}
	out->kind = CONFIG_MATCH_REFUSED;
	return -ENOENT;
}

/* ---- equality and diff ---- */

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

bool config_image_equal(const struct config_image *a, const struct config_image *b)
{
	return str_eq(a->name, b->name) && str_eq(a->version, b->version) &&
	       str_eq(a->kernel, b->kernel) && str_eq(a->initrd, b->initrd) &&
	       str_eq(a->cmdline, b->cmdline);
}

bool config_profile_equal(const struct config_profile *a, const struct config_profile *b)
{
	if (!str_eq(a->name, b->name) || !str_eq(a->image, b->image) || a->mode != b->mode ||
	    a->sync_interval_s != b->sync_interval_s || a->retention != b->retention ||
	    a->persist != b->persist || a->volume_size != b->volume_size)
		return false;
	if (!a->image_ref || !b->image_ref)
		return a->image_ref == b->image_ref;
	return config_image_equal(a->image_ref, b->image_ref);
}

bool config_machine_equal(const struct config_machine *a, const struct config_machine *b)
{
	if (memcmp(a->mac, b->mac, 6) != 0 || !str_eq(a->name, b->name) ||
	    !str_eq(a->profile, b->profile) || !str_eq(a->chap_secret_file, b->chap_secret_file))
		return false;
	if (!a->profile_ref || !b->profile_ref)
		return a->profile_ref == b->profile_ref;
	return config_profile_equal(a->profile_ref, b->profile_ref);
}

static void list_add(const char ***arr, size_t *n, const char *s)
{
	*arr = xrealloc(*arr, (*n + 1) * sizeof(**arr));
	(*arr)[(*n)++] = s;
}

/* Generic keyed diff over two arrays: key() names an item, find() looks one
 * up by key in the other config, eq() compares two items. */
#define DIFF_SECTION(list, OLDARR, OLDN, NEWARR, NEWN, KEY, FIND, EQ)                    \
	do {                                                                             \
		for (size_t i_ = 0; i_ < (NEWN); i_++) {                                 \
			const __typeof__((NEWARR)[0]) *n_ = &(NEWARR)[i_];               \
			const __typeof__((OLDARR)[0]) *o_ = FIND(old, n_);               \
			if (!o_)                                                         \
				list_add(&(list)->added, &(list)->n_added, KEY(n_));     \
			else if (!EQ(o_, n_))                                            \
				list_add(&(list)->changed, &(list)->n_changed, KEY(n_)); \
		}                                                                        \
		for (size_t i_ = 0; i_ < (OLDN); i_++) {                                 \
			const __typeof__((OLDARR)[0]) *o_ = &(OLDARR)[i_];               \
			if (!FIND(new, o_))                                              \
				list_add(&(list)->removed, &(list)->n_removed, KEY(o_)); \
		}                                                                        \
	} while (0)

#define IMG_KEY(x) ((x)->name)
#define IMG_FIND(c, x) config_image_by_name((c), (x)->name)
#define PRO_FIND(c, x) config_profile_by_name((c), (x)->name)
#define MAC_KEY(x) ((x)->mac_str)
#define MAC_FIND(c, x) machine_exact((c), (x)->mac)

void config_diff(const struct config *old, const struct config *new, struct config_diff *d)
{
	const struct config_appliance *a = &old->appliance, *b = &new->appliance;

	memset(d, 0, sizeof(*d));
	if (!str_eq(a->interface, b->interface) || !str_eq(a->listen, b->listen) ||
	    a->listen_prefix != b->listen_prefix || a->http_port != b->http_port)
		d->appliance |= CONFIG_CHANGED_NETWORK;
	if (a->dhcp.mode != b->dhcp.mode || !str_eq(a->dhcp.range, b->dhcp.range) ||
	    a->dhcp.lease_time_s != b->dhcp.lease_time_s)
		d->appliance |= CONFIG_CHANGED_DHCP;
	if (!str_eq(a->tftp_root, b->tftp_root))
		d->appliance |= CONFIG_CHANGED_TFTP;
	if (!str_eq(a->iscsi.portal, b->iscsi.portal) ||
	    !str_eq(a->iscsi.iqn_prefix, b->iscsi.iqn_prefix))
		d->appliance |= CONFIG_CHANGED_ISCSI;
	if (!str_eq(a->store_dir, b->store_dir) || !str_eq(a->state_dir, b->state_dir))
		d->appliance |= CONFIG_CHANGED_DIRS;
	if (!str_eq(a->admin_token_file, b->admin_token_file))
		d->appliance |= CONFIG_CHANGED_TOKEN;

	DIFF_SECTION(&d->images, old->images, old->n_images, new->images, new->n_images, IMG_KEY,
		     IMG_FIND, config_image_equal);
	DIFF_SECTION(&d->profiles, old->profiles, old->n_profiles, new->profiles, new->n_profiles,
		     IMG_KEY, PRO_FIND, config_profile_equal);
	DIFF_SECTION(&d->machines, old->machines, old->n_machines, new->machines, new->n_machines,
		     MAC_KEY, MAC_FIND, config_machine_equal);

	d->groups = old->n_groups != new->n_groups;
	for (size_t i = 0; !d->groups && i < new->n_groups; i++) {
		const struct config_group *g = &old->groups[i], *h = &new->groups[i];

		d->groups =
			!str_eq(g->match, h->match) || !str_eq(g->profile, h->profile) ||
			!g->profile_ref != !h->profile_ref ||
			(g->profile_ref && !config_profile_equal(g->profile_ref, h->profile_ref));
	}
	d->unknown = old->unknown.policy != new->unknown.policy ||
		     !str_eq(old->unknown.profile, new->unknown.profile) ||
		     (old->unknown.profile_ref && new->unknown.profile_ref &&
		      !config_profile_equal(old->unknown.profile_ref, new->unknown.profile_ref));
}

static void list_release(struct config_diff_list *l)
{
	free(l->added);
	free(l->removed);
	free(l->changed);
	memset(l, 0, sizeof(*l));
}

void config_diff_release(struct config_diff *d)
{
	list_release(&d->images);
	list_release(&d->profiles);
	list_release(&d->machines);
}

static bool list_empty(const struct config_diff_list *l)
{
	return !l->n_added && !l->n_removed && !l->n_changed;
}

bool config_diff_empty(const struct config_diff *d)
{
	return !d->appliance && list_empty(&d->images) && list_empty(&d->profiles) &&
	       list_empty(&d->machines) && !d->groups && !d->unknown;
}

/* ---- printing ---- */

struct emit {
	yaml_emitter_t em;
	yaml_event_t ev;
	int failed;
};

static void emit_ev(struct emit *e)
{
	if (!e->failed && !yaml_emitter_emit(&e->em, &e->ev))
		e->failed = 1;
}

static void emit_scalar(struct emit *e, const char *s)
{
	/* strings that a plain scalar would turn into null are quoted */
	bool nullish = !*s || !strcmp(s, "~") || !strcasecmp(s, "null");

	if (e->failed)
		return;
	yaml_scalar_event_initialize(&e->ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1,
				     nullish ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
					     : YAML_ANY_SCALAR_STYLE);
	emit_ev(e);
}

static void emit_map_start(struct emit *e)
{
	if (e->failed)
		return;
	yaml_mapping_start_event_initialize(&e->ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
	emit_ev(e);
}

static void emit_map_end(struct emit *e)
{
	if (e->failed)
		return;
	yaml_mapping_end_event_initialize(&e->ev);
	emit_ev(e);
}

static void emit_seq_start(struct emit *e)
{
	if (e->failed)
		return;
	yaml_sequence_start_event_initialize(&e->ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
	emit_ev(e);
}

static void emit_seq_end(struct emit *e)
{
	if (e->failed)
		return;
	yaml_sequence_end_event_initialize(&e->ev);
	emit_ev(e);
}

static void emit_kv(struct emit *e, const char *k, const char *v)
{
	if (!v)
		return;
	emit_scalar(e, k);
	emit_scalar(e, v);
}

static void emit_ku(struct emit *e, const char *k, unsigned long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", v);
	emit_kv(e, k, buf);
}

static void emit_kd(struct emit *e, const char *k, uint64_t secs)
{
	char buf[32];

	emit_kv(e, k, config_duration_format(secs, buf, sizeof(buf)));
}

static int write_file(void *data, unsigned char *buf, size_t size)
{
	return fwrite(buf, 1, size, data) == size;
}

int config_print(const struct config *cfg, FILE *f)
{
	const struct config_appliance *a = &cfg->appliance;
	struct emit e = {0};
	char listen[64];

	if (!yaml_emitter_initialize(&e.em))
		return -ENOMEM;
	yaml_emitter_set_output(&e.em, write_file, f);
	yaml_emitter_set_unicode(&e.em, 1);
	yaml_emitter_set_width(&e.em, -1);
	yaml_stream_start_event_initialize(&e.ev, YAML_UTF8_ENCODING);
	emit_ev(&e);
	yaml_document_start_event_initialize(&e.ev, NULL, NULL, NULL, 1);
	emit_ev(&e);
	emit_map_start(&e);

	emit_scalar(&e, "appliance");
	emit_map_start(&e);
	emit_kv(&e, "interface", a->interface);
	if (a->listen_prefix)
		snprintf(listen, sizeof(listen), "%s/%u", a->listen, a->listen_prefix);
	else
		snprintf(listen, sizeof(listen), "%s", a->listen ? a->listen : "");
	emit_kv(&e, "listen", listen);
	emit_ku(&e, "http_port", a->http_port);
	emit_scalar(&e, "dhcp");
	emit_map_start(&e);
	emit_kv(&e, "mode", config_dhcp_mode_name(a->dhcp.mode));
	emit_kv(&e, "range", a->dhcp.range);
	emit_kd(&e, "lease_time", a->dhcp.lease_time_s);
	emit_map_end(&e);
	emit_kv(&e, "tftp_root", a->tftp_root);
	emit_scalar(&e, "iscsi");
	emit_map_start(&e);
	emit_kv(&e, "portal", a->iscsi.portal);
	emit_kv(&e, "iqn_prefix", a->iscsi.iqn_prefix);
	emit_map_end(&e);
	emit_kv(&e, "store_dir", a->store_dir);
	emit_kv(&e, "state_dir", a->state_dir);
	emit_kv(&e, "admin_token_file", a->admin_token_file);
	emit_map_end(&e);

	emit_scalar(&e, "images");
	emit_seq_start(&e);
	for (size_t i = 0; i < cfg->n_images; i++) {
		const struct config_image *im = &cfg->images[i];

		emit_map_start(&e);
		emit_kv(&e, "name", im->name);
		emit_kv(&e, "version", im->version);
		emit_kv(&e, "kernel", im->kernel);
		emit_kv(&e, "initrd", im->initrd);
		emit_kv(&e, "cmdline", im->cmdline);
		emit_map_end(&e);
	}
	emit_seq_end(&e);

	emit_scalar(&e, "profiles");
	emit_seq_start(&e);
	for (size_t i = 0; i < cfg->n_profiles; i++) {
		const struct config_profile *p = &cfg->profiles[i];

		emit_map_start(&e);
		emit_kv(&e, "name", p->name);
		emit_kv(&e, "image", p->image);
		emit_kv(&e, "mode", config_mode_name(p->mode));
		emit_kd(&e, "sync_interval", p->sync_interval_s);
		emit_ku(&e, "retention", p->retention);
		emit_ku(&e, "volume_size", p->volume_size);
		emit_kv(&e, "persist", p->persist ? "true" : "false");
		emit_map_end(&e);
	}
	emit_seq_end(&e);

	emit_scalar(&e, "machines");
	emit_seq_start(&e);
	for (size_t i = 0; i < cfg->n_machines; i++) {
		const struct config_machine *m = &cfg->machines[i];

		emit_map_start(&e);
		emit_kv(&e, "mac", m->mac_str);
		emit_kv(&e, "name", m->name);
		emit_kv(&e, "profile", m->profile);
		emit_kv(&e, "chap_secret_file", m->chap_secret_file);
		emit_map_end(&e);
	}
	emit_seq_end(&e);

	emit_scalar(&e, "groups");
	emit_seq_start(&e);
	for (size_t i = 0; i < cfg->n_groups; i++) {
		emit_map_start(&e);
		emit_kv(&e, "match", cfg->groups[i].match);
		emit_kv(&e, "profile", cfg->groups[i].profile);
		emit_map_end(&e);
	}
	emit_seq_end(&e);

	emit_scalar(&e, "unknown_machines");
	emit_map_start(&e);
	emit_kv(&e, "policy", config_unknown_policy_name(cfg->unknown.policy));
	emit_kv(&e, "profile", cfg->unknown.profile);
	emit_map_end(&e);

	emit_map_end(&e);
	yaml_document_end_event_initialize(&e.ev, 1);
	emit_ev(&e);
	yaml_stream_end_event_initialize(&e.ev);
	emit_ev(&e);
	yaml_emitter_delete(&e.em);
	if (e.failed || fflush(f) != 0 || ferror(f))
		return -EIO;
	return 0;
}
