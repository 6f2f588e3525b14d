/* YAML to struct config: a schema-driven recursive descent over libyaml's
 * event stream.
 *
 * Why events and not libyaml's document API: the document loader resolves
 * aliases into shared nodes, so a walker can be made to visit an exponential
 * number of nodes (billion laughs); with events we see every anchor and alias
 * and refuse them. We also never build a tree: each scalar goes straight
 * into its struct field, so memory is the config itself plus libyaml's
 * buffers.
 *
 * Invariants: every mapping is described by a struct schema (its keys, their
 * types and where they land); unknown and duplicate keys are errors; a value
 * of the wrong shape is reported and skipped, so one run reports as many
 * errors as possible (up to CONFIG_MAX_ERRORS kept). Syntax errors from
 * libyaml and limit violations (depth, size) are fatal: parsing stops there.
 * The parse functions take the value's first event as the current one and
 * leave the value's last event current; the caller advances. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/internal.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

enum ftype {
	F_STR, /* any string without control characters */
	F_PATH, /* absolute path */
	F_NAME, /* name_is_valid() */
	F_PORT, /* 1..65535 into uint16_t */
	F_UINT, /* unsigned in [min, max] */
	F_DURATION, /* "15m" into uint64_t seconds in [min, max] */
	F_SIZE, /* "20G" into uint64_t bytes in [min, max], a multiple of 1 MiB */
	F_BOOL, /* true | false */
	F_ENUM, /* one of enums[] into an int-sized enum */
	F_MAC, /* into struct config_machine's mac + mac_str */
	F_ADDR, /* IPv4 "A.B.C.D[/N]" into struct config_appliance */
	F_PATTERN, /* MAC fnmatch pattern, normalised */
	F_MAP, /* nested mapping: sub schema at off */
	F_SEQ, /* list of mappings: array pointer at off, count at off2 */
};

struct schema;

struct field {
	const char *key;
	enum ftype type;
	size_t off;
	size_t off2; /* F_SEQ: count */
	int pos_off; /* where to store the value's struct config_pos, or -1 */
	bool required;
	uint64_t min, max;
	const char *const *enums;
	const struct schema *sub;
};

struct schema {
	const char *what; /* "a machine" */
	const struct field *fields;
	size_t n_fields;
	size_t size; /* item size for F_SEQ */
	int pos_off; /* where to store the mapping's position, or -1 */
	void (*init)(void *obj);
};

struct parser {
	yaml_parser_t yp;
	yaml_event_t ev;
	bool have_ev;
	bool fatal;
	int depth;
	const char *file;
	struct config_diag *diag;
	char path[512];
	size_t plen;
};

#define NOPOS (-1)
#define POS(type, member) ((int)offsetof(type, member))

static const char *const dhcp_modes[] = {"full", "proxy", "off", NULL};
static const char *const boot_modes[] = {"cache", "stream", "sanboot", NULL};
static const char *const policies[] = {"refuse", "profile", NULL};

static void init_appliance(void *obj);
static void init_profile(void *obj);
static void init_image(void *obj);

static const struct field dhcp_fields[] = {
	{"mode", F_ENUM, offsetof(struct config_dhcp, mode), 0, NOPOS, false, 0, 0, dhcp_modes,
	 NULL},
	{"range", F_STR, offsetof(struct config_dhcp, range), 0, POS(struct config_dhcp, range_pos),
	 false, 0, 0, NULL, NULL},
	{"lease_time", F_DURATION, offsetof(struct config_dhcp, lease_time_s), 0, NOPOS, false, 120,
	 365ull * 86400, NULL, NULL},
};
static const struct schema dhcp_schema = {"the dhcp section",		dhcp_fields,
					  ARRAY_SIZE(dhcp_fields),	0,
					  POS(struct config_dhcp, pos), NULL};

static const struct field iscsi_fields[] = {
	{"portal", F_STR, offsetof(struct config_iscsi, portal), 0,
	 POS(struct config_iscsi, portal_pos), false, 0, 0, NULL, NULL},
	{"iqn_prefix", F_STR, offsetof(struct config_iscsi, iqn_prefix), 0,
	 POS(struct config_iscsi, iqn_pos), false, 0, 0, NULL, NULL},
};
static const struct schema iscsi_schema = {
	"the iscsi section", iscsi_fields, ARRAY_SIZE(iscsi_fields), 0, NOPOS, NULL};

#define APP(m) offsetof(struct config_appliance, m)
static const struct field appliance_fields[] = {
	{"interface", F_STR, APP(interface), 0, POS(struct config_appliance, interface_pos), true,
	 0, 0, NULL, NULL},
	{"listen", F_ADDR, 0, 0, POS(struct config_appliance, listen_pos), true, 0, 0, NULL, NULL},
	{"http_port", F_PORT, APP(http_port), 0, NOPOS, false, 1, 65535, NULL, NULL},
	{"dhcp", F_MAP, APP(dhcp), 0, NOPOS, false, 0, 0, NULL, &dhcp_schema},
	{"tftp_root", F_PATH, APP(tftp_root), 0, NOPOS, false, 0, 0, NULL, NULL},
	{"iscsi", F_MAP, APP(iscsi), 0, NOPOS, false, 0, 0, NULL, &iscsi_schema},
	{"store_dir", F_PATH, APP(store_dir), 0, NOPOS, false, 0, 0, NULL, NULL},
	{"state_dir", F_PATH, APP(state_dir), 0, NOPOS, false, 0, 0, NULL, NULL},
	{"admin_token_file", F_PATH, APP(admin_token_file), 0,
	 POS(struct config_appliance, admin_token_pos), false, 0, 0, NULL, NULL},
};
#undef APP
static const struct schema appliance_schema = {
	"the appliance section", appliance_fields, ARRAY_SIZE(appliance_fields), 0, NOPOS,
	init_appliance};

#define IMG(m) offsetof(struct config_image, m)
static const struct field image_fields[] = {
	{"name", F_NAME, IMG(name), 0, NOPOS, true, 0, 0, NULL, NULL},
	{"version", F_NAME, IMG(version), 0, POS(struct config_image, version_pos), false, 0, 0,
	 NULL, NULL},
	{"kernel", F_PATH, IMG(kernel), 0, NOPOS, false, 0, 0, NULL, NULL},
	{"initrd", F_PATH, IMG(initrd), 0, NOPOS, false, 0, 0, NULL, NULL},
	{"cmdline", F_STR, IMG(cmdline), 0, NOPOS, false, 0, 1024, NULL, NULL},
};
#undef IMG
static const struct schema image_schema = {"an image",
					   image_fields,
					   ARRAY_SIZE(image_fields),
					   sizeof(struct config_image),
					   POS(struct config_image, pos),
					   init_image};

#define PRO(m) offsetof(struct config_profile, m)
static const struct field profile_fields[] = {
	{"name", F_NAME, PRO(name), 0, NOPOS, true, 0, 0, NULL, NULL},
	{"image", F_NAME, PRO(image), 0, POS(struct config_profile, image_pos), true, 0, 0, NULL,
	 NULL},
	{"mode", F_ENUM, PRO(mode), 0, NOPOS, false, 0, 0, boot_modes, NULL},
	{"sync_interval", F_DURATION, PRO(sync_interval_s), 0, NOPOS, false, 10, 30ull * 86400,
	 NULL, NULL},
	{"retention", F_UINT, PRO(retention), 0, NOPOS, false, 1, 100000, NULL, NULL},
	{"volume_size", F_SIZE, PRO(volume_size), 0, NOPOS, false, 1ull << 20, 16ull << 40, NULL,
	 NULL},
	{"persist", F_BOOL, PRO(persist), 0, NOPOS, false, 0, 0, NULL, NULL},
};
#undef PRO
static const struct schema profile_schema = {"a profile",
					     profile_fields,
					     ARRAY_SIZE(profile_fields),
					     sizeof(struct config_profile),
					     POS(struct config_profile, pos),
					     init_profile};

#define MAC(m) offsetof(struct config_machine, m)
static const struct field machine_fields[] = {
	{"mac", F_MAC, 0, 0, POS(struct config_machine, mac_pos), true, 0, 0, NULL, NULL},
	{"name", F_NAME, MAC(name), 0, NOPOS, false, 0, 0, NULL, NULL},
	{"profile", F_NAME, MAC(profile), 0, POS(struct config_machine, profile_pos), true, 0, 0,
	 NULL, NULL},
	{"chap_secret_file", F_PATH, MAC(chap_secret_file), 0,
	 POS(struct config_machine, secret_pos), false, 0, 0, NULL, NULL},
};
#undef MAC
static const struct schema machine_schema = {"a machine",
					     machine_fields,
					     ARRAY_SIZE(machine_fields),
					     sizeof(struct config_machine),
					     POS(struct config_machine, pos),
					     NULL};

static const struct field group_fields[] = {
	{"match", F_PATTERN, offsetof(struct config_group, match), 0, NOPOS, true, 0, 0, NULL,
	 NULL},
	{"profile", F_NAME, offsetof(struct config_group, profile), 0,
	 POS(struct config_group, profile_pos), true, 0, 0, NULL, NULL},
};
static const struct schema group_schema = {"a group",
					   group_fields,
					   ARRAY_SIZE(group_fields),
					   sizeof(struct config_group),
					   POS(struct config_group, pos),
					   NULL};

static const struct field unknown_fields[] = {
	{"policy", F_ENUM, offsetof(struct config_unknown, policy), 0, NOPOS, false, 0, 0, policies,
	 NULL},
	{"profile", F_NAME, offsetof(struct config_unknown, profile), 0,
	 POS(struct config_unknown, profile_pos), false, 0, 0, NULL, NULL},
};
static const struct schema unknown_schema = {"the unknown_machines section",  unknown_fields,
					     ARRAY_SIZE(unknown_fields),      0,
					     POS(struct config_unknown, pos), NULL};

#define CFG(m) offsetof(struct config, m)
static const struct field root_fields[] = {
	{"appliance", F_MAP, CFG(appliance), 0, NOPOS, true, 0, 0, NULL, &appliance_schema},
	{"images", F_SEQ, CFG(images), CFG(n_images), NOPOS, false, 0, CONFIG_MAX_IMAGES, NULL,
	 &image_schema},
	{"profiles", F_SEQ, CFG(profiles), CFG(n_profiles), NOPOS, false, 0, CONFIG_MAX_PROFILES,
	 NULL, &profile_schema},
	{"machines", F_SEQ, CFG(machines), CFG(n_machines), NOPOS, false, 0, CONFIG_MAX_MACHINES,
	 NULL, &machine_schema},
	{"groups", F_SEQ, CFG(groups), CFG(n_groups), NOPOS, false, 0, CONFIG_MAX_GROUPS, NULL,
	 &group_schema},
	{"unknown_machines", F_MAP, CFG(unknown), 0, NOPOS, false, 0, 0, NULL, &unknown_schema},
};
#undef CFG
static const struct schema root_schema = {"the config", root_fields, ARRAY_SIZE(root_fields), 0,
					  NOPOS,	NULL};

static void init_appliance(void *obj)
{
	struct config_appliance *a = obj;

	a->http_port = 8080;
	a->dhcp.mode = CONFIG_DHCP_FULL;
	a->dhcp.lease_time_s = 3600;
}

static void init_image(void *obj)
{
	(void)obj;
}

static void init_profile(void *obj)
{
	struct config_profile *pr = obj;

	pr->mode = CONFIG_MODE_CACHE;
	pr->sync_interval_s = 15ull * 60;
	pr->retention = 14;
	pr->volume_size = CONFIG_DEFAULT_VOLUME_SIZE;
	pr->persist = true;
}

/* ---- errors and paths ---- */

static struct config_pos ev_pos(const struct parser *p)
{
	struct config_pos pos = {(unsigned)p->ev.start_mark.line + 1,
				 (unsigned)p->ev.start_mark.column + 1};
	return pos;
}

__attribute__((format(printf, 3, 4))) static void
perr(struct parser *p, const struct config_pos *pos, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	config_diag_add(p->diag, p->file, pos, p->path, "%s", msg ? msg : "out of memory");
	free(msg);
}

static size_t path_push(struct parser *p, const char *fmt, const char *key, size_t idx)
{
	size_t old = p->plen;
	int n;

	if (key)
		n = snprintf(p->path + p->plen, sizeof(p->path) - p->plen, fmt, key);
	else
		n = snprintf(p->path + p->plen, sizeof(p->path) - p->plen, fmt, idx);
	if (n > 0)
		p->plen = MIN(p->plen + (size_t)n, sizeof(p->path) - 1);
	return old;
}

static void path_pop(struct parser *p, size_t old)
{
	p->plen = old;
	p->path[old] = '\0';
}

/* ---- the event stream ---- */

static int next(struct parser *p)
{
	if (p->fatal)
		return -1;
	if (p->have_ev)
		yaml_event_delete(&p->ev);
	p->have_ev = false;
	if (!yaml_parser_parse(&p->yp, &p->ev)) {
		struct config_pos pos = {(unsigned)p->yp.problem_mark.line + 1,
					 (unsigned)p->yp.problem_mark.column + 1};
		char ctx[200] = "";

		if (p->yp.context)
			snprintf(ctx, sizeof(ctx), " (%s at line %zu)", p->yp.context,
				 p->yp.context_mark.line + 1);
		p->path[0] = '\0';
		p->plen = 0;
		perr(p, &pos, "YAML syntax error: %s%s",
		     p->yp.problem ? p->yp.problem : "malformed input", ctx);
		p->fatal = true;
		return -1;
	}
	p->have_ev = true;
	switch (p->ev.type) {
	case YAML_ALIAS_EVENT: {
		struct config_pos pos = ev_pos(p);

		perr(p, &pos, "YAML aliases (*%s) are not supported (write the value out)",
		     (const char *)p->ev.data.alias.anchor);
		p->fatal = true;
		return -1;
	}
	case YAML_SCALAR_EVENT:
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		const yaml_char_t *anchor =
			p->ev.type == YAML_SCALAR_EVENT		  ? p->ev.data.scalar.anchor
			: p->ev.type == YAML_SEQUENCE_START_EVENT ? p->ev.data.sequence_start.anchor
								  : p->ev.data.mapping_start.anchor;
		const yaml_char_t *tag = p->ev.type == YAML_SCALAR_EVENT ? p->ev.data.scalar.tag
					 : p->ev.type == YAML_SEQUENCE_START_EVENT
						 ? p->ev.data.sequence_start.tag
						 : p->ev.data.mapping_start.tag;
		struct config_pos pos = ev_pos(p);

		if (anchor)
			perr(p, &pos, "YAML anchors (&%s) are not supported (write the value out)",
			     (const char *)anchor);
		if (tag)
			perr(p, &pos, "YAML tags (%s) are not supported (remove the tag)",
			     (const char *)tag);
		if (p->ev.type != YAML_SCALAR_EVENT && ++p->depth > CONFIG_MAX_DEPTH) {
			perr(p, &pos, "nested too deeply (at most %d levels)", CONFIG_MAX_DEPTH);
			p->fatal = true;
			return -1;
		}
		break;
	}
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		p->depth--;
		break;
	default:
		break;
	}
	return 0;
}

/* Consumes the rest of the value whose first event is current. */
static void skip_value(struct parser *p)
{
	int level = 0;

	do {
		if (p->ev.type == YAML_SEQUENCE_START_EVENT ||
		    p->ev.type == YAML_MAPPING_START_EVENT)
			level++;
		else if (p->ev.type == YAML_SEQUENCE_END_EVENT ||
			 p->ev.type == YAML_MAPPING_END_EVENT)
			level--;
		if (level <= 0)
			return;
	} while (next(p) == 0);
}

static const char *shape_name(yaml_event_type_t t)
{
	switch (t) {
	case YAML_SCALAR_EVENT:
		return "a single value";
	case YAML_SEQUENCE_START_EVENT:
		return "a list";
	case YAML_MAPPING_START_EVENT:
		return "a mapping";
	default:
		return "something else";
	}
}

/* ---- scalars ---- */

static const char *expect_text(const struct field *f, char *buf, size_t size)
{
	switch (f->type) {
	case F_STR:
		return "a string";
	case F_PATH:
		return "an absolute path";
	case F_NAME:
		return "a name of 1-64 letters, digits, '.', '_' or '-'";
	case F_PORT:
		return "a port number 1-65535";
	case F_UINT:
		snprintf(buf, size, "a whole number from %llu to %llu", (unsigned long long)f->min,
			 (unsigned long long)f->max);
		return buf;
	case F_DURATION: {
		char a[32], b[32];

		snprintf(buf, size, "a duration like 30s, 15m, 1h or 1d, from %s to %s",
			 config_duration_format(f->min, a, sizeof(a)),
			 config_duration_format(f->max, b, sizeof(b)));
		return buf;
	}
	case F_SIZE: {
		char a[32], b[32];

		snprintf(buf, size, "a size in whole MiB like 512M, 20G or 1T, from %s to %s",
			 fmt_size(a, sizeof(a), f->min), fmt_size(b, sizeof(b), f->max));
		return buf;
	}
	case F_BOOL:
		return "true or false";
	case F_ENUM: {
		size_t n = 0;

		buf[0] = '\0';
		for (size_t i = 0; f->enums[i]; i++) {
			int r = snprintf(buf + n, size - n, "%s%s",
					 i ? (f->enums[i + 1] ? ", " : " or ") : "one of ",
					 f->enums[i]);
			if (r < 0 || (size_t)r >= size - n)
				break;
			n += (size_t)r;
		}
		return buf;
	}
	case F_MAC:
		return "six hex pairs like 52:54:00:12:34:56";
	case F_ADDR:
		return "an IPv4 address like 10.77.0.1, optionally with /prefix";
	case F_PATTERN:
		return "a MAC pattern like 52:54:00:*";
	case F_MAP:
		return "a mapping";
	case F_SEQ:
		return "a list";
	}
	return "a value";
}

static bool scalar_is_null(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;

	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
	       !strcmp(v, "NULL");
}

static bool has_control(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

static int mac_pattern_normalise(const char *in, size_t n, char **out)
{
	char *s = xmalloc(n + 1);
	int bracket = 0;

	for (size_t i = 0; i < n; i++) {
		char c = (char)tolower((unsigned char)in[i]);

		if (c == '[')
			bracket = 1;
		else if (c == ']')
			bracket = 0;
		else if (c == '-' && !bracket)
			c = ':'; /* 52-54-00-* like a hyphenated MAC */
		else if (!(c &&
			   strchr(bracket ? "0123456789abcdef-!^" : "0123456789abcdef:*?", c))) {
			free(s);
			return -EINVAL;
		}
		s[i] = c;
	}
	s[n] = '\0';
	*out = s;
	return 0;
}

static void parse_scalar(struct parser *p, const struct field *f, void *obj)
{
	const char *v = (const char *)p->ev.data.scalar.value;
	size_t n = p->ev.data.scalar.length;
	struct config_pos pos = ev_pos(p);
	char q[CONFIG_QUOTE_BUF], exp[200];
	uint64_t u;

	if (f->pos_off >= 0)
		*(struct config_pos *)((char *)obj + f->pos_off) = pos;
	if (scalar_is_null(&p->ev)) {
		if (f->required)
			perr(p, &pos, "no value (expected %s)", expect_text(f, exp, sizeof(exp)));
		return;
	}
	if (n > CONFIG_MAX_STRING) {
		perr(p, &pos, "value is %zu bytes long (at most %u)", n, CONFIG_MAX_STRING);
		return;
	}
	if (memchr(v, '\0', n) || has_control(v, n)) {
		perr(p, &pos, "%s contains control characters (expected %s)",
		     config_quote(v, n, q, sizeof(q)), expect_text(f, exp, sizeof(exp)));
		return;
	}
	config_quote(v, n, q, sizeof(q));
	switch (f->type) {
	case F_STR:
		if (f->max && n > f->max) {
			perr(p, &pos, "value is %zu bytes long (at most %llu)", n,
			     (unsigned long long)f->max);
			return;
		}
		*(char **)((char *)obj + f->off) = xstrndup(v, n);
		return;
	case F_PATH:
		if (v[0] != '/' || n >= 4096) {
			perr(p, &pos,
			     "%s is not an absolute path (expected a path starting with /)", q);
			return;
		}
		*(char **)((char *)obj + f->off) = xstrndup(v, n);
		return;
	case F_NAME:
		if (!name_is_valid(v)) {
			perr(p, &pos, "%s is not a valid name (expected %s)", q,
			     expect_text(f, exp, sizeof(exp)));
			return;
		}
		*(char **)((char *)obj + f->off) = xstrndup(v, n);
		return;
	case F_PORT:
	case F_UINT:
		if (parse_u64(v, &u) < 0 || u < f->min || u > f->max) {
			perr(p, &pos, "%s is not %s", q, expect_text(f, exp, sizeof(exp)));
			return;
		}
		if (f->type == F_PORT)
			*(uint16_t *)((char *)obj + f->off) = (uint16_t)u;
		else
			*(unsigned *)((char *)obj + f->off) = (unsigned)u;
		return;
	case F_DURATION:
		if (config_duration_parse(v, &u) < 0 || u < f->min || u > f->max) {
			perr(p, &pos, "%s is not %s", q, expect_text(f, exp, sizeof(exp)));
			return;
		}
		*(uint64_t *)((char *)obj + f->off) = u;
		return;
	case F_SIZE:
		if (parse_size(v, &u) < 0 || u < f->min || u > f->max || u % (1u << 20) != 0) {
			perr(p, &pos, "%s is not %s", q, expect_text(f, exp, sizeof(exp)));
			return;
		}
		*(uint64_t *)((char *)obj + f->off) = u;
		return;
	case F_BOOL:
		if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
			perr(p, &pos, "%s is not a boolean (expected true or false)", q);
			return;
		}
		*(bool *)((char *)obj + f->off) = v[0] == 't';
		return;
	case F_ENUM:
		for (int i = 0; f->enums[i]; i++) {
			if (!strcmp(v, f->enums[i])) {
				*(int *)((char *)obj + f->off) = i;
				return;
			}
		}
		perr(p, &pos, "%s is not valid (expected %s)", q, expect_text(f, exp, sizeof(exp)));
		return;
	case F_MAC: {
		struct config_machine *m = obj;

		if (config_mac_parse(v, m->mac) < 0) {
			perr(p, &pos, "%s is not a MAC address (expected %s)", q,
			     expect_text(f, exp, sizeof(exp)));
			return;
		}
		config_mac_format(m->mac, m->mac_str);
		return;
	}
	case F_ADDR: {
		struct config_appliance *a = obj;
		const char *slash = memchr(v, '/', n);

		if (config_ipv4_parse(v, &a->listen_addr, &a->listen_prefix) < 0) {
			perr(p, &pos, "%s is not an IPv4 address (expected %s)", q,
			     expect_text(f, exp, sizeof(exp)));
			return;
		}
		a->listen = xstrndup(v, slash ? (size_t)(slash - v) : n);
		return;
	}
	case F_PATTERN: {
		char *pat;

		if (mac_pattern_normalise(v, n, &pat) < 0) {
			perr(p, &pos,
			     "%s is not a MAC pattern (expected hex digits, ':' and the "
			     "wildcards * ? [...], like 52:54:00:*)",
			     q);
			return;
		}
		*(char **)((char *)obj + f->off) = pat;
		return;
	}
	case F_MAP:
	case F_SEQ:
		break;
	}
}

/* ---- mappings and lists ---- */

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), d[33][33];

	if (la > 32 || lb > 32)
		return 99;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = tolower((unsigned char)a[i - 1]) !=
				      tolower((unsigned char)b[j - 1]);
			size_t v = MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);

			v = MIN(v, d[i - 1][j - 1] + cost);
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
				v = MIN(v, d[i - 2][j - 2] + 1);
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

static void unknown_key(struct parser *p, const struct schema *s, const char *key,
			const struct config_pos *pos)
{
	char q[CONFIG_QUOTE_BUF], list[512];
	size_t best = 99, bi = 0, n = 0;

	for (size_t i = 0; i < s->n_fields; i++) {
		size_t d = edit_distance(key, s->fields[i].key);

		if (d < best) {
			best = d;
			bi = i;
		}
	}
	/* "chap_secret" for "chap_secret_file": a long enough prefix is a hint too */
	for (size_t i = 0; best > 2 && i < s->n_fields; i++) {
		size_t kl = strlen(key), fl = strlen(s->fields[i].key);

		if (MIN(kl, fl) >= 4 && !strncmp(key, s->fields[i].key, MIN(kl, fl))) {
			best = 0;
			bi = i;
		}
	}
	config_quote(key, strlen(key), q, sizeof(q));
	if (best <= 2 && best < strlen(s->fields[bi].key)) {
		perr(p, pos, "unknown key %s (did you mean \"%s\"?)", q, s->fields[bi].key);
		return;
	}
	list[0] = '\0';
	for (size_t i = 0; i < s->n_fields; i++) {
		int r = snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "",
				 s->fields[i].key);
		if (r < 0 || (size_t)r >= sizeof(list) - n)
			break;
		n += (size_t)r;
	}
	perr(p, pos, "unknown key %s (expected one of: %s)", q, list);
}

static void parse_value(struct parser *p, const struct field *f, void *obj);

static void parse_map(struct parser *p, const struct schema *s, void *obj)
{
	struct config_pos mpos = ev_pos(p), first[64];
	uint64_t seen = 0;

	if (p->ev.type != YAML_MAPPING_START_EVENT) {
		perr(p, &mpos, "expected %s as a mapping of keys to values, found %s", s->what,
		     shape_name(p->ev.type));
		skip_value(p);
		return;
	}
	if (s->pos_off >= 0)
		*(struct config_pos *)((char *)obj + s->pos_off) = mpos;
	if (s->init)
		s->init(obj);
	while (next(p) == 0 && p->ev.type != YAML_MAPPING_END_EVENT) {
		struct config_pos kpos = ev_pos(p);
		const struct field *f = NULL;
		char key[80], q[CONFIG_QUOTE_BUF];
		size_t i, old;

		if (p->ev.type != YAML_SCALAR_EVENT) {
			perr(p, &kpos, "a key must be a plain word, found %s",
			     shape_name(p->ev.type));
			skip_value(p);
			if (next(p) == 0)
				skip_value(p);
			continue;
		}
		if (p->ev.data.scalar.length >= sizeof(key)) {
			perr(p, &kpos, "unknown key %s (too long)",
			     config_quote((const char *)p->ev.data.scalar.value,
					  p->ev.data.scalar.length, q, sizeof(q)));
			if (next(p) == 0)
				skip_value(p);
			continue;
		}
		memcpy(key, p->ev.data.scalar.value, p->ev.data.scalar.length);
		key[p->ev.data.scalar.length] = '\0';
		for (i = 0; i < s->n_fields; i++) {
			if (strlen(s->fields[i].key) == p->ev.data.scalar.length &&
			    !strcmp(s->fields[i].key, key)) {
				f = &s->fields[i];
				break;
			}
		}
		old = path_push(p, p->plen ? ".%s" : "%s", key, 0);
		if (!f) {
			unknown_key(p, s, key, &kpos);
			if (next(p) == 0)
				skip_value(p);
		} else if (seen & (1ull << i)) {
			perr(p, &kpos, "duplicate key (first given at line %u)", first[i].line);
			if (next(p) == 0)
				skip_value(p);
		} else {
			seen |= 1ull << i;
			first[i] = kpos;
			if (next(p) == 0)
				parse_value(p, f, obj);
		}
		path_pop(p, old);
	}
	if (p->fatal)
		return;
	for (size_t i = 0; i < s->n_fields; i++)
		if (s->fields[i].required && !(seen & (1ull << i)))
			perr(p, &mpos, "missing required key \"%s\" in %s", s->fields[i].key,
			     s->what);
}

static void parse_seq(struct parser *p, const struct field *f, void *obj)
{
	const struct schema *s = f->sub;
	void **arr = (void **)((char *)obj + f->off);
	size_t *count = (size_t *)((char *)obj + f->off2), cap = 0, idx = 0;
	struct config_pos pos = ev_pos(p);

	if (p->ev.type == YAML_SCALAR_EVENT && scalar_is_null(&p->ev))
		return; /* "machines:" with nothing under it: an empty list */
	if (p->ev.type != YAML_SEQUENCE_START_EVENT) {
		perr(p, &pos, "expected a list of %ss (lines starting with \"- \"), found %s",
		     s->what + (s->what[1] == 'n' ? 3 : 2), shape_name(p->ev.type));
		skip_value(p);
		return;
	}
	while (next(p) == 0 && p->ev.type != YAML_SEQUENCE_END_EVENT) {
		size_t old;

		if (*count >= f->max) {
			if (*count == f->max && idx == *count) {
				struct config_pos ipos = ev_pos(p);
				size_t o = path_push(p, "[%zu]", NULL, idx);

				perr(p, &ipos, "too many entries (at most %llu)",
				     (unsigned long long)f->max);
				path_pop(p, o);
			}
			skip_value(p);
			idx++;
			continue;
		}
		xgrow(arr, &cap, *count + 1, s->size);
		memset((char *)*arr + *count * s->size, 0, s->size);
		old = path_push(p, "[%zu]", NULL, idx++);
		parse_map(p, s, (char *)*arr + *count * s->size);
		path_pop(p, old);
		(*count)++;
	}
}

static void parse_value(struct parser *p, const struct field *f, void *obj)
{
	struct config_pos pos = ev_pos(p);
	char exp[200];

	switch (f->type) {
	case F_MAP:
		if (p->ev.type == YAML_SCALAR_EVENT && scalar_is_null(&p->ev) && !f->required) {
			/* "dhcp:" with nothing under it: all defaults */
			if (f->sub->init)
				f->sub->init((char *)obj + f->off);
			return;
		}
		parse_map(p, f->sub, (char *)obj + f->off);
		return;
	case F_SEQ:
		parse_seq(p, f, obj);
		return;
	default:
		break;
	}
	if (p->ev.type != YAML_SCALAR_EVENT) {
		perr(p, &pos, "expected %s, found %s", expect_text(f, exp, sizeof(exp)),
		     shape_name(p->ev.type));
		skip_value(p);
		return;
	}
	parse_scalar(p, f, obj);
}

/* ---- entry points ---- */

static int parse_document(struct parser *p, struct config *cfg)
{
	struct config_pos pos;

	if (next(p) || p->ev.type != YAML_STREAM_START_EVENT)
		return -EINVAL;
	if (next(p))
		return -EINVAL;
	if (p->ev.type == YAML_STREAM_END_EVENT) {
		pos = ev_pos(p);
		perr(p, &pos, "the config is empty (expected a mapping with an appliance section)");
		return -EINVAL;
	}
	if (next(p)) /* past DOCUMENT_START */
		return -EINVAL;
	if (p->ev.type == YAML_SCALAR_EVENT && scalar_is_null(&p->ev)) {
		pos = ev_pos(p);
		perr(p, &pos, "the config is empty (expected a mapping with an appliance section)");
		return -EINVAL;
	}
	init_appliance(&cfg->appliance);
	parse_map(p, &root_schema, cfg);
	if (next(p)) /* DOCUMENT_END */
		return -EINVAL;
	if (next(p))
		return -EINVAL;
	if (p->ev.type != YAML_STREAM_END_EVENT) {
		pos = ev_pos(p);
		perr(p, &pos, "a second YAML document (expected exactly one)");
		return -EINVAL;
	}
	return 0;
}

int config_load_buffer(const char *name, const void *buf, size_t len, struct config **out,
		       struct config_diag *diag)
{
	struct parser p;
	struct config *cfg;
	size_t errors_before = diag->total;
	int r;

	*out = NULL;
	if (len > CONFIG_MAX_FILE_SIZE) {
		config_diag_add(diag, name, NULL, NULL, "the file is %zu bytes (at most %u)", len,
				CONFIG_MAX_FILE_SIZE);
		return -EFBIG;
	}
	memset(&p, 0, sizeof(p));
	p.file = name;
	p.diag = diag;
	cfg = xcalloc(1, sizeof(*cfg));
	cfg->path = xstrdup(name ? name : "config");
	if (!yaml_parser_initialize(&p.yp))
		die(1, "out of memory");
	yaml_parser_set_input_string(&p.yp, buf, len);
	r = parse_document(&p, cfg);
	if (p.have_ev)
		yaml_event_delete(&p.ev);
	yaml_parser_delete(&p.yp);
	if (!p.fatal && r == 0)
		config_validate(cfg, diag);
	if (p.fatal || r < 0 || diag->total != errors_before) {
		config_free(cfg);
		return -EINVAL;
	}
	*out = cfg;
	return 0;
}

int config_load_file(const char *path, struct config **out, struct config_diag *diag)
{
	char *buf = NULL;
	size_t len = 0;
	int r;

	*out = NULL;
	r = io_read_file(path, CONFIG_MAX_FILE_SIZE, &buf, &len);
	if (r == -EFBIG) {
		config_diag_add(diag, path, NULL, NULL,
				"the file is larger than %u bytes (is it the right file?)",
				CONFIG_MAX_FILE_SIZE);
		return r;
	}
	if (r < 0) {
		config_diag_add(diag, path, NULL, NULL, "cannot read the config: %s", strerror(-r));
		return r;
	}
	r = config_load_buffer(path, buf, len, out, diag);
	free(buf);
	return r;
}
