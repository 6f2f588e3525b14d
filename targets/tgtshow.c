/* Parser of tgtadm's `--op show` prose (see tgtshow.h).
 *
 * tgtd (usr/target.c, tgt_target_show_all) prints a fixed outline indented by
 * four spaces per level:
 *
 *   Target TID: IQN                       depth 0
 *       System information:               depth 4: a section header
 *           Driver: iscsi / State: ready  depth 8: section entries
 *       I_T nexus information:
 *           I_T nexus: N                  depth 8, details deeper (ignored)
 *       LUN information:
 *           LUN: N                        depth 8
 *               Key: value                depth 12: properties of that LUN
 *       Account information:
 *           user / user (outgoing)        depth 8
 *       ACL information:
 *           address or initiator name     depth 8
 *
 * The parser walks lines with a small state machine: the current target, the
 * current section, the current LUN. Unknown section headers and unknown keys
 * are skipped (newer tgt versions add nop settings), but a line that does not
 * fit the outline (text before the first target, an entry outside a section, a
 * LUN property with no LUN) fails the whole parse: a reconciler must not act on
 * a state it only half understood. Every list has a bound (tgtshow.h). */
#include "targets/tgtshow.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

enum section { SEC_NONE, SEC_SYSTEM, SEC_NEXUS, SEC_LUN, SEC_ACCOUNT, SEC_ACL, SEC_OTHER };

struct parser {
	struct tgt_state *st;
	size_t cap_targets;
	size_t cap_luns, cap_accounts, cap_acls; /* of the current target */
	enum section sec;
	struct tgt_lun *lun; /* current LUN in SEC_LUN, or NULL */
};

static void lun_release(struct tgt_lun *l)
{
	free(l->type);
	free(l->path);
	free(l->bstype);
}

void tgtshow_free_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static void target_release(struct tgt_target *t)
{
	free(t->iqn);
	free(t->state);
	for (size_t i = 0; i < t->n_luns; i++)
		lun_release(&t->luns[i]);
	free(t->luns);
	tgtshow_free_list(t->accounts, t->n_accounts);
	free(t->out_account);
	tgtshow_free_list(t->acls, t->n_acls);
}

void tgt_state_release(struct tgt_state *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->n; i++)
		target_release(&st->targets[i]);
	free(st->targets);
	st->targets = NULL;
	st->n = 0;
}

const struct tgt_target *tgt_state_find_iqn(const struct tgt_state *st, const char *iqn)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->targets[i].iqn && strcmp(st->targets[i].iqn, iqn) == 0)
			return &st->targets[i];
	return NULL;
}

const struct tgt_target *tgt_state_find_tid(const struct tgt_state *st, int tid)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->targets[i].tid == tid)
			return &st->targets[i];
	return NULL;
}

const struct tgt_lun *tgt_target_find_lun(const struct tgt_target *t, uint64_t lun)
{
	for (size_t i = 0; i < t->n_luns; i++)
		if (t->luns[i].lun == lun)
			return &t->luns[i];
	return NULL;
}

int tgtshow_acl_is_name(const char *e)
{
	/* iSCSI names (RFC 3720 3.2.6.3): iqn., eui. or naa. types. Addresses are
	 * "ALL", IPv4/IPv6 with an optional /mask. */
	return strncmp(e, "iqn.", 4) == 0 || strncmp(e, "eui.", 4) == 0 ||
	       strncmp(e, "naa.", 4) == 0;
}

/* Splits "Key: value" (or "Key:" with an empty value) at the first ':'.
 * Returns 0 and points *val into line (after ": "), or -EINVAL. */
static int split_kv(char *line, char **val)
{
	char *c = strchr(line, ':');

	if (!c)
		return -EINVAL;
	*c++ = '\0';
	if (*c == ' ')
		c++;
	*val = c;
	return 0;
}

static struct tgt_target *cur_target(struct parser *p)
{
	return p->st->n ? &p->st->targets[p->st->n - 1] : NULL;
}

static int list_add(char ***list, size_t *n, size_t *cap, const char *s)
{
	if (*n >= TGTSHOW_MAX_LIST)
		return -E2BIG;
	xgrow((void **)list, cap, *n + 1, sizeof(**list));
	(*list)[(*n)++] = xstrdup(s);
	return 0;
}

static int start_target(struct parser *p, char *line)
{
	struct tgt_target *t;
	char *val;
	int tid, r;

	/* "Target 1: iqn..." */
	if (strncmp(line, "Target ", 7) != 0)
		return -EINVAL;
	if (split_kv(line + 7, &val) < 0)
		return -EINVAL;
	r = parse_int(line + 7, 1, 0x7fffffff, &tid);
	if (r < 0 || !*val || strchr(val, ' '))
		return -EINVAL;
	if (tgt_state_find_tid(p->st, tid))
		return -EINVAL;
	if (p->st->n >= TGTSHOW_MAX_TARGETS)
		return -E2BIG;
	xgrow((void **)&p->st->targets, &p->cap_targets, p->st->n + 1, sizeof(*t));
	t = &p->st->targets[p->st->n++];
	memset(t, 0, sizeof(*t));
	t->tid = tid;
	t->iqn = xstrdup(val);
	p->cap_luns = p->cap_accounts = p->cap_acls = 0;
	p->sec = SEC_NONE;
	p->lun = NULL;
	return 0;
}

static int section_header(struct parser *p, const char *line)
{
	size_t n = strlen(line);

	if (n == 0 || line[n - 1] != ':')
		return -EINVAL;
	p->lun = NULL;
	if (strcmp(line, "System information:") == 0)
		p->sec = SEC_SYSTEM;
	else if (strcmp(line, "I_T nexus information:") == 0)
		p->sec = SEC_NEXUS;
	else if (strcmp(line, "LUN information:") == 0)
		p->sec = SEC_LUN;
	else if (strcmp(line, "Account information:") == 0)
		p->sec = SEC_ACCOUNT;
	else if (strcmp(line, "ACL information:") == 0)
		p->sec = SEC_ACL;
	else
		p->sec = SEC_OTHER;
	return 0;
}

static int lun_start(struct parser *p, struct tgt_target *t, char *line)
{
	char *val;
	uint64_t lun;

	if (split_kv(line, &val) < 0 || strcmp(line, "LUN") != 0)
		return -EINVAL;
	if (parse_u64(val, &lun) < 0)
		return -EINVAL;
	if (tgt_target_find_lun(t, lun))
		return -EINVAL;
	if (t->n_luns >= TGTSHOW_MAX_LUNS)
		return -E2BIG;
	xgrow((void **)&t->luns, &p->cap_luns, t->n_luns + 1, sizeof(*t->luns));
	p->lun = &t->luns[t->n_luns++];
	memset(p->lun, 0, sizeof(*p->lun));
	p->lun->lun = lun;
	return 0;
}

static void set_str(char **dst, const char *val)
{
	free(*dst);
	*dst = xstrdup(val);
}

static int lun_property(struct tgt_lun *l, char *line)
{
	char *val, *bs;
	uint32_t v;

	if (split_kv(line, &val) < 0)
		return -EINVAL;
	if (strcmp(line, "Type") == 0)
		set_str(&l->type, val);
	else if (strcmp(line, "Backing store path") == 0)
		set_str(&l->path, val);
	else if (strcmp(line, "Backing store type") == 0)
		set_str(&l->bstype, val);
	else if (strcmp(line, "Readonly") == 0)
		l->readonly = strcmp(val, "Yes") == 0;
	else if (strcmp(line, "Online") == 0)
		l->online = strcmp(val, "Yes") == 0;
	else if (strcmp(line, "Size") == 0) {
		/* "Size: 10 MB, Block size: 512": split_kv cut at the first ':' */
		bs = strstr(val, "Block size: ");
		if (bs && parse_u32(bs + 12, &v) == 0)
			l->block_size = v;
	}
	return 0;
}

static int target_line(struct parser *p, size_t depth, char *line)
{
	struct tgt_target *t = cur_target(p);
	char *val, *sfx;

	if (!t)
		return -EINVAL;
	if (depth == 4)
		return section_header(p, line);
	if (depth < 8 || p->sec == SEC_NONE)
		return -EINVAL;
	switch (p->sec) {
	case SEC_SYSTEM:
		if (depth == 8 && split_kv(line, &val) == 0 && strcmp(line, "State") == 0)
			set_str(&t->state, val);
		return 0;
	case SEC_NEXUS:
		if (depth == 8) {
			if (strncmp(line, "I_T nexus: ", 11) != 0)
				return -EINVAL;
			if (t->n_nexus >= TGTSHOW_MAX_LIST)
				return -E2BIG;
			t->n_nexus++;
		}
		return 0;
	case SEC_LUN:
		if (depth == 8)
			return lun_start(p, t, line);
		if (!p->lun)
			return -EINVAL;
		return depth == 12 ? lun_property(p->lun, line) : 0;
	case SEC_ACCOUNT:
		if (depth != 8 || !*line)
			return -EINVAL;
		sfx = strstr(line, " (outgoing)");
		if (sfx && sfx[11] == '\0') {
			*sfx = '\0';
			if (t->out_account)
				return -EINVAL;
			t->out_account = xstrdup(line);
			return 0;
		}
		return list_add(&t->accounts, &t->n_accounts, &p->cap_accounts, line);
	case SEC_ACL:
		if (depth != 8 || !*line)
			return -EINVAL;
		return list_add(&t->acls, &t->n_acls, &p->cap_acls, line);
	case SEC_OTHER:
		return 0;
	case SEC_NONE:
		break;
	}
	return -EINVAL;
}

/* Calls fn(ctx, depth, line) for each line: line is a NUL-terminated copy with
 * the indentation and trailing spaces/CR removed. Empty lines are skipped. */
static int for_each_line(const char *buf, size_t len, size_t *errline,
			 int (*fn)(void *ctx, size_t depth, char *line), void *ctx)
{
	char line[TGTSHOW_MAX_LINE + 1];
	size_t off = 0, lineno = 0;
	int r;

	if (len > TGTSHOW_MAX_INPUT)
		return -E2BIG;
	if (memchr(buf, '\0', len))
		return -EINVAL;
	while (off < len) {
		const char *nl = memchr(buf + off, '\n', len - off);
		size_t n = nl ? (size_t)(nl - (buf + off)) : len - off;
		size_t depth = 0;

		lineno++;
		if (errline)
			*errline = lineno;
		if (n > TGTSHOW_MAX_LINE)
			return -E2BIG;
		memcpy(line, buf + off, n);
		line[n] = '\0';
		off += n + (nl ? 1 : 0);
		while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0)
			continue;
		while (line[depth] == ' ')
			depth++;
		if (line[depth] == '\t')
			return -EINVAL;
		r = fn(ctx, depth, line + depth);
		if (r < 0)
			return r;
	}
	if (errline)
		*errline = 0;
	return 0;
}

static int show_line(void *ctx, size_t depth, char *line)
{
	struct parser *p = ctx;

	if (depth % 4 != 0)
		return -EINVAL;
	if (depth == 0)
		return start_target(p, line);
	return target_line(p, depth, line);
}

int tgtshow_parse(const char *buf, size_t len, struct tgt_state *st, size_t *errline)
{
	struct parser p = {.st = st};
	int r;

	memset(st, 0, sizeof(*st));
	r = for_each_line(buf, len, errline, show_line, &p);
	if (r < 0)
		tgt_state_release(st);
	return r;
}

struct acct_parser {
	int header;
	char **users;
	size_t n, cap;
};

static int account_line(void *ctx, size_t depth, char *line)
{
	struct acct_parser *a = ctx;

	if (!a->header) {
		if (depth != 0 || strcmp(line, "Account list:") != 0)
			return -EINVAL;
		a->header = 1;
		return 0;
	}
	if (depth != 4)
		return -EINVAL;
	if (a->n >= TGTSHOW_MAX_ACCOUNTS)
		return -E2BIG;
	xgrow((void **)&a->users, &a->cap, a->n + 1, sizeof(*a->users));
	a->users[a->n++] = xstrdup(line);
	return 0;
}

int tgtshow_parse_accounts(const char *buf, size_t len, char ***users, size_t *n)
{
	struct acct_parser a = {0};
	int r;

	*users = NULL;
	*n = 0;
	r = for_each_line(buf, len, NULL, account_line, &a);
	if (r < 0) {
		tgtshow_free_list(a.users, a.n);
		return r;
	}
	/* empty output (no header at all) is also "no accounts" */
	*users = a.users;
	*n = a.n;
	return 0;
}

struct portal_parser {
	char **portals;
	size_t n, cap;
};

static int portal_line(void *ctx, size_t depth, char *line)
{
	struct portal_parser *pp = ctx;
	char *comma;

	if (depth != 0 || strncmp(line, "Portal: ", 8) != 0)
		return -EINVAL;
	line += 8;
	comma = strrchr(line, ',');
	if (!comma || comma == line || !comma[1] || strchr(line, ' '))
		return -EINVAL;
	for (const char *t = comma + 1; *t; t++)
		if (*t < '0' || *t > '9')
			return -EINVAL;
	*comma = '\0';
	if (pp->n >= TGTSHOW_MAX_LIST)
		return -E2BIG;
	xgrow((void **)&pp->portals, &pp->cap, pp->n + 1, sizeof(*pp->portals));
	pp->portals[pp->n++] = xstrdup(line);
	return 0;
}

int tgtshow_parse_portals(const char *buf, size_t len, char ***portals, size_t *n)
{
	struct portal_parser pp = {0};
	int r;

	*portals = NULL;
	*n = 0;
	r = for_each_line(buf, len, NULL, portal_line, &pp);
	if (r < 0) {
		tgtshow_free_list(pp.portals, pp.n);
		return r;
	}
	*portals = pp.portals;
	*n = pp.n;
	return 0;
}
