/* Reconciler: desired targets vs tgtd's parsed state -> operations -> tgtadm.
 *
 * Invariants kept while operations run, so that no intermediate state opens a
 * door (DESIGN.md security rules):
 * - A new target gets its LUNs (read-only ones switched to readonly), then its
 *   CHAP account, and only then its initiator ACL: before the ACL is bound
 *   nobody can log in (tgt admits a login when an address OR a name matches,
 *   and an empty ACL matches nothing).
 * - On an existing target, any LUN or account change runs between `state
 *   offline` and `state ready`: while offline, tgtd refuses logins and answers
 *   BUSY to commands, so no session sees a gold LUN that is briefly writable
 *   (tgt creates LUNs read-write; readonly=1 only on --op update) nor the gap
 *   between deleting and re-creating an account (no account = no CHAP).
 * - ACL extras are unbound before the wanted name is bound (tighten first).
 * - A failed operation skips the rest of that target's operations; a target
 *   left offline or without ACL is closed, and the next reconcile repairs it.
 *
 * tgtd never shows CHAP secrets, so "is the account's secret current" comes
 * from a memo of salted SHA-256 fingerprints of the secrets this process (or,
 * with ctl->state_path, an earlier one) set; an account whose secret is not
 * known to be current is deleted and re-created. The memo file is JSON
 * {"salt": HEX, "accounts": {USER: HEX}}, mode 0600, written atomically. */
#include "targets/reconcile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "lib/hash.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"
#include "targets/iqn.h"

#define TGT_MAX_TID 65535
#define MEMO_MAX_FILE (4u << 20)

/* ---- secret memo ---- */

struct memo_entry {
	char *user;
	char fp[HASH_HEX_LEN + 1];
};

struct tgt_memo {
	uint8_t salt[16];
	struct memo_entry *e;
	size_t n, cap;
	int dirty;
};

static void memo_free(struct tgt_memo *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		free(m->e[i].user);
	free(m->e);
	free(m);
}

void tgt_ctl_release(struct tgt_ctl *ctl)
{
	memo_free(ctl->memo);
	ctl->memo = NULL;
}

static void memo_fp(const struct tgt_memo *m, const char *user, const char *secret,
		    char out[HASH_HEX_LEN + 1])
{
	size_t ul = strlen(user), sl = strlen(secret);
	size_t n = sizeof(m->salt) + ul + 1 + sl;
	uint8_t *buf = xmalloc(n);
	struct hash h;

	memcpy(buf, m->salt, sizeof(m->salt));
	memcpy(buf + sizeof(m->salt), user, ul);
	buf[sizeof(m->salt) + ul] = 0; /* separator: ("ab","c") != ("a","bc") */
	memcpy(buf + sizeof(m->salt) + ul + 1, secret, sl);
	hash_buf(buf, n, &h);
	explicit_bzero(buf, n);
	free(buf);
	hash_to_hex(&h, out);
}

static struct memo_entry *memo_find(struct tgt_memo *m, const char *user)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->e[i].user, user) == 0)
			return &m->e[i];
	return NULL;
}

static void memo_set(struct tgt_memo *m, const char *user, const char *fp)
{
	struct memo_entry *e = memo_find(m, user);

	if (!e) {
		xgrow((void **)&m->e, &m->cap, m->n + 1, sizeof(*m->e));
		e = &m->e[m->n++];
		e->user = xstrdup(user);
	}
	memcpy(e->fp, fp, sizeof(e->fp));
	m->dirty = 1;
}

static void memo_del(struct tgt_memo *m, const char *user)
{
	struct memo_entry *e = memo_find(m, user);

	if (!e)
		return;
	free(e->user);
	*e = m->e[--m->n];
	m->dirty = 1;
}

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

static int memo_load(const char *path, struct tgt_memo *m)
{
	json_t *root = NULL, *accts, *v;
	json_error_t jerr;
	const char *salt, *user;
	char *buf = NULL;
	size_t len;
	struct hash h;
	int r;

	r = io_read_file(path, MEMO_MAX_FILE, &buf, &len);
	if (r < 0)
		return r;
	r = -EINVAL;
	root = json_loadb(buf, len, 0, &jerr);
	if (!root) {
		log_warn("ignoring '%s': line %d: %s", path, jerr.line, jerr.text);
		goto out;
	}
	salt = json_string_value(json_object_get(root, "salt"));
	accts = json_object_get(root, "accounts");
	if (!salt || strlen(salt) != 2 * sizeof(m->salt) || !json_is_object(accts)) {
		log_warn("ignoring '%s': not a secret memo", path);
		goto out;
	}
	for (size_t i = 0; i < sizeof(m->salt); i++) {
		int hi = hexval(salt[2 * i]), lo = hexval(salt[2 * i + 1]);

		if (hi < 0 || lo < 0)
			goto out;
		m->salt[i] = (uint8_t)(hi << 4 | lo);
	}
	json_object_foreach(accts, user, v)
	{
		const char *fp = json_string_value(v);

		if (!fp || hash_from_hex(fp, &h) < 0 || !chap_user_is_valid(user))
			continue;
		memo_set(m, user, fp);
	}
	m->dirty = 0;
	r = 0;
out:
	json_decref(root);
	free(buf);
	return r;
}

static struct tgt_memo *memo_get(struct tgt_ctl *ctl)
{
	struct tgt_memo *m = ctl->memo;

	if (m)
		return m;
	m = xcalloc(1, sizeof(*m));
	if (!ctl->state_path || memo_load(ctl->state_path, m) < 0) {
		for (size_t i = 0; i < m->n; i++)
			free(m->e[i].user);
		m->n = 0;
		if (getrandom(m->salt, sizeof(m->salt), 0) != (ssize_t)sizeof(m->salt))
			die(1, "getrandom failed");
		m->dirty = 1;
	}
	ctl->memo = m;
	return m;
}

static int memo_save(struct tgt_ctl *ctl)
{
	struct tgt_memo *m = ctl->memo;
	json_t *root, *accts;
	char salt[2 * sizeof(m->salt) + 1];
	char *text;
	int r;

	if (!m || !m->dirty || !ctl->state_path)
		return 0;
	for (size_t i = 0; i < sizeof(m->salt); i++)
		snprintf(salt + 2 * i, 3, "%02x", m->salt[i]);
	accts = json_object();
	for (size_t i = 0; i < m->n; i++)
		json_object_set_new(accts, m->e[i].user, json_string(m->e[i].fp));
	root = json_pack("{s:s, s:o}", "salt", salt, "accounts", accts);
	text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
	json_decref(root);
	if (!text)
		return -ENOMEM;
	r = io_write_file_atomic(ctl->state_path, text, strlen(text), 0600);
	free(text);
	if (r < 0) {
		log_error("cannot write '%s': %s", ctl->state_path, strerror(-r));
		return r;
	}
	m->dirty = 0;
	return 0;
}

static int memo_known(void *ctx, const char *user, const char *secret)
{
	struct tgt_memo *m = ctx;
	struct memo_entry *e = memo_find(m, user);
	char fp[HASH_HEX_LEN + 1];

	if (!e)
		return 0;
	memo_fp(m, user, secret, fp);
	return strcmp(fp, e->fp) == 0;
}

/* ---- checking the desired set ---- */

static int path_ok(const char *p)
{
	size_t n = p ? strlen(p) : 0;

	/* tgtd prints the path back at the end of a line, where the show parser
	 * trims spaces: a trailing space would never compare equal */
	if (!p || p[0] != '/' || n > 4000 || p[n - 1] == ' ')
		return 0;
	for (; *p; p++)
		if ((unsigned char)*p < ' ' || *p == ',' || *p == 0x7f)
			return 0;
	return 1;
}

static int under_prefix(const char *iqn, const char *prefix)
{
	size_t n;

	if (!prefix)
		return 1;
	n = strlen(prefix);
	return strncmp(iqn, prefix, n) == 0 && iqn[n] == ':';
}

int tgt_desired_check(const struct tgt_desired *d, const char *prefix, char *err, size_t size)
{
	err[0] = '\0';
	for (size_t i = 0; i < d->n; i++) {
		const struct tgt_target_spec *t = &d->targets[i];
		const char *iqn = t->iqn ? t->iqn : "(null)";

		if (!t->iqn || !t->initiator || !t->chap_user || !t->chap_secret) {
			snprintf(err, size,
				 "target %zu ('%.240s'): iqn, initiator, CHAP user and secret are "
				 "required",
				 i, iqn);
			return -EINVAL;
		}
		if (!iqn_is_valid(t->iqn)) {
			snprintf(err, size, "target %zu: '%.240s' is not a valid iqn name", i, iqn);
			return -EINVAL;
		}
		if (!under_prefix(t->iqn, prefix)) {
			snprintf(err, size, "target '%s': not under the managed prefix '%s:'", iqn,
				 prefix);
			return -EINVAL;
		}
		if (!iqn_is_valid(t->initiator)) {
			snprintf(err, size,
				 "target '%s': initiator '%.240s' is not a valid iqn name", iqn,
				 t->initiator ? t->initiator : "(null)");
			return -EINVAL;
		}
		if (!chap_user_is_valid(t->chap_user)) {
			snprintf(err, size, "target '%s': bad CHAP user (1-%d of [A-Za-z0-9._@:-])",
				 iqn, CHAP_USER_MAX);
			return -EINVAL;
		}
		if (!chap_secret_is_valid(t->chap_secret)) {
			snprintf(err, size,
				 "target '%s': CHAP secret of '%s' must be %d-%d printable "
				 "characters without spaces",
				 iqn, t->chap_user, CHAP_SECRET_MIN, CHAP_SECRET_MAX);
			return -EINVAL;
		}
		if (t->n_luns > TGT_SPEC_MAX_LUNS) {
			snprintf(err, size, "target '%s': more than %d LUNs", iqn,
				 TGT_SPEC_MAX_LUNS);
			return -EINVAL;
		}
		for (size_t l = 0; l < t->n_luns; l++) {
			const struct tgt_lun_spec *ls = &t->luns[l];

			if (ls->lun < 1 || ls->lun > 255) {
				snprintf(err, size, "target '%s': LUN %u out of range 1-255", iqn,
					 ls->lun);
				return -EINVAL;
			}
			if (!path_ok(ls->path)) {
				snprintf(
					err, size,
					"target '%s' LUN %u: backing file must be an absolute path "
					"without commas, control characters or a trailing space",
					iqn, ls->lun);
				return -EINVAL;
			}
			for (size_t k = 0; k < l; k++)
				if (t->luns[k].lun == ls->lun) {
					snprintf(err, size, "target '%s': LUN %u listed twice", iqn,
						 ls->lun);
					return -EINVAL;
				}
		}
		for (size_t j = 0; j < i; j++) {
			const struct tgt_target_spec *o = &d->targets[j];

			if (strcmp(o->iqn, t->iqn) == 0) {
				snprintf(err, size, "target '%s' listed twice", iqn);
				return -EINVAL;
			}
			if (strcmp(o->initiator, t->initiator) == 0) {
				snprintf(err, size, "targets '%s' and '%s' share initiator '%s'",
					 o->iqn, iqn, t->initiator);
				return -EINVAL;
			}
			if (strcmp(o->chap_user, t->chap_user) == 0) {
				snprintf(err, size, "targets '%s' and '%s' share CHAP user '%s'",
					 o->iqn, iqn, t->chap_user);
				return -EINVAL;
			}
		}
	}
	return 0;
}

int tgt_machine_target_init(struct tgt_machine_target *m, const char *prefix, const char *name,
			    const char *secret, const char *gold_path, const char *upload_path)
{
	_Static_assert(sizeof(m->iqn) == IQN_MAX + 1, "IQN buffer size");
	memset(m, 0, sizeof(*m));
	if (iqn_machine_target(prefix, name, m->iqn, sizeof(m->iqn)) < 0 ||
	    iqn_machine_initiator(prefix, name, m->initiator, sizeof(m->initiator)) < 0)
		return -EINVAL;
	m->spec.iqn = m->iqn;
	m->spec.initiator = m->initiator;
	m->spec.chap_user = name;
	m->spec.chap_secret = secret;
	m->spec.luns[m->spec.n_luns++] = (struct tgt_lun_spec){1, gold_path, 1};
	if (upload_path)
		m->spec.luns[m->spec.n_luns++] = (struct tgt_lun_spec){2, upload_path, 0};
	return 0;
}

/* ---- planning ---- */

static struct tgt_op *emit(struct tgt_plan *p, enum tgt_op_kind kind, int tid, size_t target)
{
	struct tgt_op *op;

	xgrow((void **)&p->ops, &p->cap, p->n + 1, sizeof(*p->ops));
	op = &p->ops[p->n++];
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->tid = tid;
	op->target = target;
	return op;
}

void tgt_plan_release(struct tgt_plan *plan)
{
	free(plan->ops);
	memset(plan, 0, sizeof(*plan));
}

static int in_list(char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return 1;
	return 0;
}

static const struct tgt_target_spec *desired_find(const struct tgt_desired *d, const char *iqn)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->targets[i].iqn, iqn) == 0)
			return &d->targets[i];
	return NULL;
}

static int desired_has_user(const struct tgt_desired *d, const char *user)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->targets[i].chap_user, user) == 0)
			return 1;
	return 0;
}

static void emit_new_lun(struct tgt_plan *p, int tid, const struct tgt_lun_spec *ls, size_t ti)
{
	struct tgt_op *op = emit(p, TGT_OP_NEW_LUN, tid, ti);

	op->lun = ls->lun;
	op->str = ls->path;
	if (ls->readonly) {
		op = emit(p, TGT_OP_LUN_READONLY, tid, ti);
		op->lun = ls->lun;
		op->flag = 1;
	}
}

/* LUN changes of an existing target into p (which the caller wraps). */
static void plan_luns(struct tgt_plan *p, const struct tgt_target_spec *t,
		      const struct tgt_target *a, size_t ti)
{
	struct tgt_op *op;

	for (size_t i = 0; i < a->n_luns; i++) {
		int wanted = 0;

		if (a->luns[i].lun == 0)
			continue;
		for (size_t l = 0; l < t->n_luns; l++)
			wanted |= t->luns[l].lun == a->luns[i].lun;
		if (!wanted) {
			op = emit(p, TGT_OP_DELETE_LUN, a->tid, ti);
			op->lun = a->luns[i].lun;
		}
	}
	for (size_t l = 0; l < t->n_luns; l++) {
		const struct tgt_lun_spec *ls = &t->luns[l];
		const struct tgt_lun *al = tgt_target_find_lun(a, ls->lun);

		if (!al) {
			emit_new_lun(p, a->tid, ls, ti);
		} else if (!al->path || strcmp(al->path, ls->path) != 0 || !al->type ||
			   strcmp(al->type, "disk") != 0) {
			op = emit(p, TGT_OP_DELETE_LUN, a->tid, ti);
			op->lun = ls->lun;
			emit_new_lun(p, a->tid, ls, ti);
		} else if (!al->readonly != !ls->readonly) {
			op = emit(p, TGT_OP_LUN_READONLY, a->tid, ti);
			op->lun = ls->lun;
			op->flag = !!ls->readonly;
		}
	}
}

/* Will this plan delete account user (as a stray in step 2, or to reset the
 * secret of a desired target's account)? */
static int account_goes(const struct tgt_desired *d, const struct tgt_plan *plan,
			char *const *accounts, size_t n_accounts, tgt_secret_known_fn known,
			void *ctx, const char *user)
{
	for (size_t i = 0; i < plan->n; i++)
		if (plan->ops[i].kind == TGT_OP_DELETE_ACCOUNT && plan->ops[i].target == SIZE_MAX &&
		    strcmp(plan->ops[i].str, user) == 0)
			return 1;
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->targets[i].chap_user, user) == 0)
			return in_list(accounts, n_accounts, user) &&
			       !(known && known(ctx, user, d->targets[i].chap_secret));
	return 0;
}

static int alloc_tid(const struct tgt_state *actual, const uint8_t *deleted, const int *planned,
		     size_t n_planned)
{
	for (int tid = 1; tid <= TGT_MAX_TID; tid++) {
		const struct tgt_target *a = tgt_state_find_tid(actual, tid);
		int used = a && !deleted[a - actual->targets];

		for (size_t i = 0; !used && i < n_planned; i++)
			used = planned[i] == tid;
		if (!used)
			return tid;
	}
	return -E2BIG;
}

int tgt_plan_build(const struct tgt_desired *d, const struct tgt_state *actual,
		   char *const *accounts, size_t n_accounts, const char *prefix,
		   tgt_secret_known_fn known, void *ctx, struct tgt_plan *plan)
{
	uint8_t *deleted = xcalloc(actual->n + 1, 1);
	int *planned = xcalloc(d->n + 1, sizeof(int));
	size_t n_planned = 0;
	struct tgt_plan sub = {0};
	struct tgt_op *op;
	int r = 0;

	memset(plan, 0, sizeof(*plan));
	/* 1. managed targets nobody wants */
	for (size_t i = 0; i < actual->n; i++) {
		const struct tgt_target *a = &actual->targets[i];

		if (!under_prefix(a->iqn, prefix) || desired_find(d, a->iqn))
			continue;
		op = emit(plan, TGT_OP_DELETE_TARGET, a->tid, SIZE_MAX);
		op->str = a->iqn;
		deleted[i] = 1;
	}
	/* 2. accounts nobody wants, unless a target we do not manage uses them */
	for (size_t i = 0; i < n_accounts; i++) {
		int foreign = 0;

		if (desired_has_user(d, accounts[i]))
			continue;
		for (size_t k = 0; k < actual->n && !foreign; k++) {
			const struct tgt_target *a = &actual->targets[k];

			foreign = !deleted[k] && !under_prefix(a->iqn, prefix) &&
				  (in_list(a->accounts, a->n_accounts, accounts[i]) ||
				   (a->out_account && strcmp(a->out_account, accounts[i]) == 0));
		}
		if (!foreign) {
			op = emit(plan, TGT_OP_DELETE_ACCOUNT, 0, SIZE_MAX);
			op->str = accounts[i];
		}
	}
	/* 3. each wanted target */
	for (size_t ti = 0; ti < d->n; ti++) {
		const struct tgt_target_spec *t = &d->targets[ti];
		const struct tgt_target *a = tgt_state_find_iqn(actual, t->iqn);
		int exists = in_list(accounts, n_accounts, t->chap_user);
		int current = exists && known && known(ctx, t->chap_user, t->chap_secret);
		int bound = 0, has_acl = 0, tid;

		if (!a) {
			tid = alloc_tid(actual, deleted, planned, n_planned);
			if (tid < 0) {
				r = tid;
				goto out;
			}
			planned[n_planned++] = tid;
			op = emit(plan, TGT_OP_NEW_TARGET, tid, ti);
			op->str = t->iqn;
			for (size_t l = 0; l < t->n_luns; l++)
				emit_new_lun(plan, tid, &t->luns[l], ti);
			if (exists && !current) {
				op = emit(plan, TGT_OP_DELETE_ACCOUNT, tid, ti);
				op->str = t->chap_user;
			}
			if (!current) {
				op = emit(plan, TGT_OP_NEW_ACCOUNT, tid, ti);
				op->str = t->chap_user;
				op->secret = t->chap_secret;
			}
			op = emit(plan, TGT_OP_BIND_ACCOUNT, tid, ti);
			op->str = t->chap_user;
			op = emit(plan, TGT_OP_BIND_INITIATOR, tid, ti);
			op->str = t->initiator;
			continue;
		}
		tid = a->tid;
		/* Sensitive changes (LUNs, accounts) are collected in sub and wrapped
		 * in offline/ready; ACL tightening goes first, ACL binding last. */
		sub.n = 0;
		for (size_t k = 0; k < a->n_acls; k++) {
			const char *e = a->acls[k];

			if (strcmp(e, t->initiator) == 0) {
				has_acl = 1;
				continue;
			}
			op = emit(plan,
				  tgtshow_acl_is_name(e) ? TGT_OP_UNBIND_INITIATOR
							 : TGT_OP_UNBIND_ADDRESS,
				  tid, ti);
			op->str = e;
		}
		if (exists && !current) {
			op = emit(&sub, TGT_OP_DELETE_ACCOUNT, tid, ti);
			op->str = t->chap_user;
		}
		if (!current) {
			op = emit(&sub, TGT_OP_NEW_ACCOUNT, tid, ti);
			op->str = t->chap_user;
			op->secret = t->chap_secret;
		}
		for (size_t k = 0; k < a->n_accounts; k++) {
			if (strcmp(a->accounts[k], t->chap_user) == 0) {
				bound = current;
				continue;
			}
			/* deleting an account unbinds it everywhere */
			if (account_goes(d, plan, accounts, n_accounts, known, ctx, a->accounts[k]))
				continue;
			op = emit(&sub, TGT_OP_UNBIND_ACCOUNT, tid, ti);
			op->str = a->accounts[k];
		}
		if (a->out_account &&
		    !account_goes(d, plan, accounts, n_accounts, known, ctx, a->out_account)) {
			op = emit(&sub, TGT_OP_UNBIND_ACCOUNT, tid, ti);
			op->str = a->out_account;
			op->flag = 1;
		}
		if (!bound) {
			op = emit(&sub, TGT_OP_BIND_ACCOUNT, tid, ti);
			op->str = t->chap_user;
		}
		plan_luns(&sub, t, a, ti);
		if (sub.n) {
			op = emit(plan, TGT_OP_STATE, tid, ti);
			op->flag = 0;
			for (size_t k = 0; k < sub.n; k++)
				*emit(plan, 0, 0, 0) = sub.ops[k];
		}
		if (!has_acl) {
			op = emit(plan, TGT_OP_BIND_INITIATOR, tid, ti);
			op->str = t->initiator;
		}
		if (sub.n || !a->state || strcmp(a->state, "ready") != 0) {
			op = emit(plan, TGT_OP_STATE, tid, ti);
			op->flag = 1;
		}
	}
out:
	free(sub.ops);
	free(deleted);
	free(planned);
	if (r < 0)
		tgt_plan_release(plan);
	return r;
}

static const char *const op_names[] = {
	[TGT_OP_DELETE_TARGET] = "delete-target",
	[TGT_OP_NEW_TARGET] = "new-target",
	[TGT_OP_STATE] = "state",
	[TGT_OP_DELETE_LUN] = "delete-lun",
	[TGT_OP_NEW_LUN] = "new-lun",
	[TGT_OP_LUN_READONLY] = "lun-readonly",
	[TGT_OP_DELETE_ACCOUNT] = "delete-account",
	[TGT_OP_NEW_ACCOUNT] = "new-account",
	[TGT_OP_BIND_ACCOUNT] = "bind-account",
	[TGT_OP_UNBIND_ACCOUNT] = "unbind-account",
	[TGT_OP_BIND_INITIATOR] = "bind-initiator",
	[TGT_OP_UNBIND_INITIATOR] = "unbind-initiator",
	[TGT_OP_UNBIND_ADDRESS] = "unbind-address",
};

void tgt_op_describe(const struct tgt_op *op, char *buf, size_t size)
{
	const char *name = op_names[op->kind];

	switch (op->kind) {
	case TGT_OP_STATE:
		snprintf(buf, size, "%s tid %d %s", name, op->tid, op->flag ? "ready" : "offline");
		break;
	case TGT_OP_DELETE_LUN:
		snprintf(buf, size, "%s tid %d lun %" PRIu64, name, op->tid, op->lun);
		break;
	case TGT_OP_NEW_LUN:
		snprintf(buf, size, "%s tid %d lun %" PRIu64 " %s", name, op->tid, op->lun,
			 op->str);
		break;
	case TGT_OP_LUN_READONLY:
		snprintf(buf, size, "%s tid %d lun %" PRIu64 " %d", name, op->tid, op->lun,
			 op->flag);
		break;
	case TGT_OP_DELETE_ACCOUNT:
	case TGT_OP_NEW_ACCOUNT:
		snprintf(buf, size, "%s %s", name, op->str);
		break;
	case TGT_OP_UNBIND_ACCOUNT:
		snprintf(buf, size, "%s tid %d %s%s", name, op->tid, op->str,
			 op->flag ? " (outgoing)" : "");
		break;
	default:
		snprintf(buf, size, "%s tid %d %s", name, op->tid, op->str ? op->str : "");
		break;
	}
}

/* ---- applying ---- */

static int apply_op(struct tgt_ctl *ctl, const struct tgt_op *op, struct tgt_reconcile_stats *st)
{
	char tid[16], lun[24], params[32];
	const char *args[16];
	size_t n = 0;
	int r;

	snprintf(tid, sizeof(tid), "%d", op->tid);
	snprintf(lun, sizeof(lun), "%" PRIu64, op->lun);
#define A(x) (args[n++] = (x))
	switch (op->kind) {
	case TGT_OP_DELETE_TARGET:
		A("--op"), A("delete"), A("--mode"), A("target"), A("--force"), A("--tid"), A(tid);
		break;
	case TGT_OP_NEW_TARGET:
		A("--op"), A("new"), A("--mode"), A("target"), A("--tid"), A(tid), A("-T"),
			A(op->str);
		break;
	case TGT_OP_STATE:
		A("--op"), A("update"), A("--mode"), A("target"), A("--tid"), A(tid), A("--name"),
			A("state"), A("--value"), A(op->flag ? "ready" : "offline");
		break;
	case TGT_OP_DELETE_LUN:
		A("--op"), A("delete"), A("--mode"), A("logicalunit"), A("--tid"), A(tid),
			A("--lun"), A(lun);
		break;
	case TGT_OP_NEW_LUN:
		A("--op"), A("new"), A("--mode"), A("logicalunit"), A("--tid"), A(tid), A("--lun"),
			A(lun), A("-b"), A(op->str);
		break;
	case TGT_OP_LUN_READONLY:
		snprintf(params, sizeof(params), "readonly=%d", op->flag);
		A("--op"), A("update"), A("--mode"), A("logicalunit"), A("--tid"), A(tid),
			A("--lun"), A(lun), A("--params"), A(params);
		break;
	case TGT_OP_DELETE_ACCOUNT:
		A("--op"), A("delete"), A("--mode"), A("account"), A("--user"), A(op->str);
		break;
	case TGT_OP_NEW_ACCOUNT:
		A("--op"), A("new"), A("--mode"), A("account"), A("--user"), A(op->str),
			A("--password"), A(op->secret);
		break;
	case TGT_OP_BIND_ACCOUNT:
		A("--op"), A("bind"), A("--mode"), A("account"), A("--tid"), A(tid), A("--user"),
			A(op->str);
		break;
	case TGT_OP_UNBIND_ACCOUNT:
		A("--op"), A("unbind"), A("--mode"), A("account"), A("--tid"), A(tid), A("--user"),
			A(op->str);
		if (op->flag)
			A("--outgoing");
		break;
	case TGT_OP_BIND_INITIATOR:
		A("--op"), A("bind"), A("--mode"), A("target"), A("--tid"), A(tid), A("-Q"),
			A(op->str);
		break;
	case TGT_OP_UNBIND_INITIATOR:
		A("--op"), A("unbind"), A("--mode"), A("target"), A("--tid"), A(tid), A("-Q"),
			A(op->str);
		break;
	case TGT_OP_UNBIND_ADDRESS:
		A("--op"), A("unbind"), A("--mode"), A("target"), A("--tid"), A(tid), A("-I"),
			A(op->str);
		break;
	}
#undef A
	args[n] = NULL;
	st->changes++;
	r = tgtadm_run(ctl, args, NULL, NULL);
	if (r < 0)
		return r;
	switch (op->kind) {
	case TGT_OP_DELETE_TARGET:
		st->targets_deleted++;
		break;
	case TGT_OP_NEW_TARGET:
		st->targets_created++;
		break;
	case TGT_OP_DELETE_LUN:
		st->luns_removed++;
		break;
	case TGT_OP_NEW_LUN:
		st->luns_added++;
		break;
	case TGT_OP_LUN_READONLY:
		st->luns_updated++;
		break;
	case TGT_OP_DELETE_ACCOUNT:
		st->accounts_deleted++;
		memo_del(ctl->memo, op->str);
		break;
	case TGT_OP_NEW_ACCOUNT: {
		char fp[HASH_HEX_LEN + 1];

		st->accounts_created++;
		memo_fp(ctl->memo, op->str, op->secret, fp);
		memo_set(ctl->memo, op->str, fp);
		break;
	}
	case TGT_OP_STATE:
		break;
	default:
		st->bindings++;
		break;
	}
	return 0;
}

int tgt_show(struct tgt_ctl *ctl, struct tgt_state *st, char ***accounts, size_t *n_accounts)
{
	const char *targs[] = {"--op", "show", "--mode", "target", NULL};
	const char *aargs[] = {"--op", "show", "--mode", "account", NULL};
	char *out = NULL;
	size_t len = 0, line = 0;
	int r;

	memset(st, 0, sizeof(*st));
	*accounts = NULL;
	*n_accounts = 0;
	r = tgtadm_run(ctl, targs, &out, &len);
	if (r < 0)
		return r;
	r = tgtshow_parse(out, len, st, &line);
	free(out);
	if (r < 0) {
		log_error("cannot read tgtd's target list (line %zu): %s", line, strerror(-r));
		return r;
	}
	r = tgtadm_run(ctl, aargs, &out, &len);
	if (r < 0)
		goto fail;
	r = tgtshow_parse_accounts(out, len, accounts, n_accounts);
	free(out);
	if (r < 0) {
		log_error("cannot read tgtd's account list: %s", strerror(-r));
		goto fail;
	}
	return 0;
fail:
	tgt_state_release(st);
	return r;
}

int tgt_reconcile(struct tgt_ctl *ctl, const struct tgt_desired *d, struct tgt_reconcile_stats *stp)
{
	struct tgt_reconcile_stats local = {0}, *st = stp ? stp : &local;
	struct tgt_state actual = {0};
	struct tgt_plan plan = {0};
	struct tgt_memo *memo;
	char **accounts = NULL, err[512], desc[512];
	size_t n_accounts = 0, failed_target = SIZE_MAX;
	int r;

	memset(st, 0, sizeof(*st));
	r = tgt_desired_check(d, ctl->iqn_prefix, err, sizeof(err));
	if (r < 0) {
		log_error("refusing desired targets: %s", err);
		return r;
	}
	memo = memo_get(ctl);
	r = tgt_show(ctl, &actual, &accounts, &n_accounts);
	st->shows = 2;
	if (r < 0)
		goto out;
	r = tgt_plan_build(d, &actual, accounts, n_accounts, ctl->iqn_prefix, memo_known, memo,
			   &plan);
	if (r < 0) {
		log_error("no free target id for %zu targets", d->n);
		goto out;
	}
	for (size_t i = 0; i < plan.n; i++) {
		const struct tgt_op *op = &plan.ops[i];

		if (op->target != SIZE_MAX && op->target == failed_target)
			continue;
		tgt_op_describe(op, desc, sizeof(desc));
		r = apply_op(ctl, op, st);
		if (r == -ECONNREFUSED || r == -ENOENT) {
			/* tgtd went away (or no tgtadm): the rest would fail the same way */
			st->errors++;
			log_error("stopped reconciling at '%s': %s", desc, strerror(-r));
			memo_save(ctl);
			goto out;
		}
		if (r < 0) {
			st->errors++;
			if (op->target != SIZE_MAX) {
				log_error("target '%s': '%s' failed; skipping its other changes "
					  "until the next reconcile",
					  d->targets[op->target].iqn, desc);
				failed_target = op->target;
			}
			continue;
		}
		log_info("%s", desc);
	}
	r = memo_save(ctl);
	if (st->errors)
		r = -EIO;
	else if (r < 0)
		st->errors++;
	if (st->changes)
		log_info("reconciled %zu targets: %u changes, %u errors", d->n, st->changes,
			 st->errors);
out:
	tgt_plan_release(&plan);
	tgt_state_release(&actual);
	tgtshow_free_list(accounts, n_accounts);
	return r;
}
