/* A bounded parser of tgtadm's prose output (`--op show --mode target` and
 * `--op show --mode account`) into plain structs: the reconciler's view of what
 * tgtd really holds. tgtadm output is untrusted input (DESIGN.md): every list
 * and string has a maximum, and anything the parser does not understand at a
 * structural position makes the whole parse fail, so the reconciler never acts
 * on a half-read state. */
#ifndef GC_TARGETS_TGTSHOW_H
#define GC_TARGETS_TGTSHOW_H

#include <stddef.h>
#include <stdint.h>

/* Limits of what the parser accepts (beyond them: -E2BIG). */
#define TGTSHOW_MAX_INPUT (16u << 20) /* bytes of show output */
#define TGTSHOW_MAX_LINE 4096 /* bytes in one line */
#define TGTSHOW_MAX_TARGETS 4096
#define TGTSHOW_MAX_LUNS 256 /* per target, LUN 0 included */
#define TGTSHOW_MAX_LIST 256 /* accounts, ACL entries, I_T nexuses per target */
#define TGTSHOW_MAX_ACCOUNTS 65536 /* `--op show --mode account` */

struct tgt_lun {
	uint64_t lun;
	char *type; /* "controller", "disk", ... */
	char *path; /* backing store path; "None" for LUN 0 */
	char *bstype; /* "rdwr", "null", ... */
	int readonly; /* 1 when "Readonly: Yes" */
	int online;
	uint32_t block_size;
};

struct tgt_target {
	int tid;
	char *iqn;
	char *state; /* "ready", "offline" */
	struct tgt_lun *luns; /* in output order (tgt keeps them sorted) */
	size_t n_luns;
	char **accounts; /* incoming CHAP users bound to the target */
	size_t n_accounts;
	char *out_account; /* outgoing (mutual CHAP) user, or NULL */
	char **acls; /* "ACL information": addresses and initiator names mixed */
	size_t n_acls;
	size_t n_nexus; /* I_T nexuses (logged-in sessions) */
};

struct tgt_state {
	struct tgt_target *targets;
	size_t n;
};

/* Parses `tgtadm --lld iscsi --op show --mode target` output (buf need not be
 * NUL-terminated). Returns 0 and fills *st (release with tgt_state_release),
 * -EINVAL on malformed input (*st left empty), -E2BIG past a limit. When errline
 * is not NULL it receives the 1-based line number of the problem. */
int tgtshow_parse(const char *buf, size_t len, struct tgt_state *st, size_t *errline);

/* Parses `tgtadm --lld iscsi --op show --mode account` output ("Account list:"
 * then one user per line). Returns 0 and a heap array of heap strings (free with
 * tgtshow_free_list), -EINVAL or -E2BIG. */
int tgtshow_parse_accounts(const char *buf, size_t len, char ***users, size_t *n);

/* Parses `tgtadm --lld iscsi --op show --mode portal` output ("Portal:
 * ADDR:PORT,TPGT" per line) into a heap array of "ADDR:PORT" strings (free
 * with tgtshow_free_list). Returns 0, -EINVAL or -E2BIG. */
int tgtshow_parse_portals(const char *buf, size_t len, char ***portals, size_t *n);

void tgt_state_release(struct tgt_state *st);
void tgtshow_free_list(char **list, size_t n);

/* Lookups; NULL when absent. */
const struct tgt_target *tgt_state_find_iqn(const struct tgt_state *st, const char *iqn);
const struct tgt_target *tgt_state_find_tid(const struct tgt_state *st, int tid);
const struct tgt_lun *tgt_target_find_lun(const struct tgt_target *t, uint64_t lun);

/* Is an "ACL information" entry an initiator name (bound with -Q) rather than an
 * address (bound with -I)? tgt prints both kinds in one list. */
int tgtshow_acl_is_name(const char *entry);

#endif
