/* Reconciling tgtd with the desired set of targets: read tgtd's state (two
 * `--op show` calls), compute the minimal list of tgtadm operations (a pure
 * function, unit-tested), apply it. Idempotent: with nothing to change it
 * issues no changing call. Copes with a tgtd it did not fill (restart of the
 * daemon) and with an empty tgtd (tgtd restarted): both converge.
 *
 * Synchronous: a reconcile runs tgtadm once per operation (a few ms each, each
 * bounded by ctl->timeout_ms). The daemon calls it at start, on SIGHUP and when
 * it has restarted tgtd; with nothing to change it costs two tgtadm runs. */
#ifndef GC_TARGETS_RECONCILE_H
#define GC_TARGETS_RECONCILE_H

#include <stddef.h>
#include <stdint.h>

#include "targets/tgtadm.h"
#include "targets/tgtshow.h"

#define TGT_SPEC_MAX_LUNS 8

struct tgt_lun_spec {
	unsigned lun; /* 1..255 (LUN 0 is tgt's controller) */
	const char *path; /* absolute path of the backing file */
	int readonly;
};

/* One target: exactly one initiator name may log in, with one incoming CHAP
 * account. Strings are borrowed (the caller keeps them alive during the call). */
struct tgt_target_spec {
	const char *iqn;
	const char *initiator;
	const char *chap_user;
	const char *chap_secret;
	struct tgt_lun_spec luns[TGT_SPEC_MAX_LUNS];
	size_t n_luns;
};

/* A machine's target by the goldcache scheme (iqn.h): the IQN buffers live
 * here, so an array of these can back a tgt_desired (spec points into it). */
struct tgt_machine_target {
	char iqn[224]; /* IQN_MAX + 1 */
	char initiator[224];
	struct tgt_target_spec spec;
};

/* Fills m for machine name under prefix: target PREFIX:m.NAME, initiator
 * PREFIX:i.NAME, CHAP user NAME with secret (borrowed), LUN 1 = gold_path
 * read-only, LUN 2 = upload_path read-write when not NULL. Returns 0 or
 * -EINVAL (bad prefix or name). */
int tgt_machine_target_init(struct tgt_machine_target *m, const char *prefix, const char *name,
			    const char *secret, const char *gold_path, const char *upload_path);

struct tgt_desired {
	const struct tgt_target_spec *targets;
	size_t n;
};

struct tgt_reconcile_stats {
	unsigned shows; /* tgtadm --op show runs */
	unsigned changes; /* tgtadm runs that change tgtd's state */
	unsigned targets_created, targets_deleted;
	unsigned luns_added, luns_removed, luns_updated;
	unsigned accounts_created, accounts_deleted;
	unsigned bindings; /* ACL and account bind/unbind */
	unsigned errors; /* failed operations (the rest was still applied) */
};

enum tgt_op_kind {
	TGT_OP_DELETE_TARGET, /* --force */
	TGT_OP_NEW_TARGET,
	TGT_OP_STATE, /* flag: 1 ready, 0 offline */
	TGT_OP_DELETE_LUN,
	TGT_OP_NEW_LUN,
	TGT_OP_LUN_READONLY, /* flag: readonly value */
	TGT_OP_DELETE_ACCOUNT,
	TGT_OP_NEW_ACCOUNT,
	TGT_OP_BIND_ACCOUNT,
	TGT_OP_UNBIND_ACCOUNT, /* flag: outgoing */
	TGT_OP_BIND_INITIATOR,
	TGT_OP_UNBIND_INITIATOR,
	TGT_OP_UNBIND_ADDRESS,
};

struct tgt_op {
	enum tgt_op_kind kind;
	int tid;
	uint64_t lun;
	int flag;
	const char *str; /* IQN, path, user, initiator or address (borrowed) */
	const char *secret; /* TGT_OP_NEW_ACCOUNT only (borrowed) */
	size_t target; /* index in the desired set; SIZE_MAX for clean-up ops */
};

struct tgt_plan {
	struct tgt_op *ops;
	size_t n, cap;
};

/* Checks a desired set before anything runs: valid IQNs and initiator names,
 * unique IQNs, initiators and CHAP users, valid CHAP credentials, LUNs 1-255
 * unique per target, absolute paths without ',' or control characters, IQNs
 * under prefix (when not NULL). Returns 0, or -EINVAL with a message naming the
 * target in err (secrets are never quoted). */
int tgt_desired_check(const struct tgt_desired *d, const char *prefix, char *err, size_t size);

/* Is the CHAP secret of user known to be current in tgtd? (1 yes, 0 no) */
typedef int (*tgt_secret_known_fn)(void *ctx, const char *user, const char *secret);

/* Computes the operations that turn actual (targets and the account list) into
 * d. Targets whose IQN is not under prefix ("PREFIX:...") are left alone when
 * prefix is not NULL. Ops borrow strings from d and actual. Returns 0 or
 * -E2BIG (no free tid). Release with tgt_plan_release. */
int tgt_plan_build(const struct tgt_desired *d, const struct tgt_state *actual,
		   char *const *accounts, size_t n_accounts, const char *prefix,
		   tgt_secret_known_fn known, void *ctx, struct tgt_plan *plan);
void tgt_plan_release(struct tgt_plan *plan);

/* One line describing op for logs and dry runs ("new-lun tid 3 lun 1 /x");
 * never the secret. */
void tgt_op_describe(const struct tgt_op *op, char *buf, size_t size);

/* Reads tgtd's state: targets and the account list. Returns 0, or the error of
 * tgtadm_run / the parser (-EINVAL on output it cannot read). */
int tgt_show(struct tgt_ctl *ctl, struct tgt_state *st, char ***accounts, size_t *n_accounts);

/* Makes tgtd match d. Returns 0 when tgtd now matches; -EINVAL for a bad
 * desired set (nothing applied); the tgtadm error when the show failed; -EIO
 * when some operations failed (that target's remaining operations are skipped,
 * the other targets are applied; a failure while a target is being created or
 * changed leaves it closed: no ACL yet, or offline; the next reconcile retries);
 * -ECONNREFUSED when tgtd stopped answering midway (the rest was not tried).
 * st (may be NULL) receives the counts. */
int tgt_reconcile(struct tgt_ctl *ctl, const struct tgt_desired *d, struct tgt_reconcile_stats *st);

#endif
