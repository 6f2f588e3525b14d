/* Unit tests for targets/tgtshow: the parser of tgtadm's show output, on
 * outputs captured from the real tgtd 1.0.85 (tests/unit/data/tgtshow/) and on
 * malformed, truncated and oversized variants of them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io.h"
#include "lib/util.h"
#include "targets/tgtshow.h"
#include "tests/tap.h"

static char *load(const char *name, size_t *len)
{
	const char *src = getenv("GC_SRC");
	char path[4096];
	char *buf = NULL;

	snprintf(path, sizeof(path), "%s/tests/unit/data/tgtshow/%s", src ? src : ".", name);
	if (io_read_file(path, 1 << 20, &buf, len) < 0) {
		printf("Bail out! cannot read %s (set GC_SRC)\n", path);
		exit(1);
	}
	return buf;
}

static int parse_str(const char *s, struct tgt_state *st)
{
	return tgtshow_parse(s, strlen(s), st, NULL);
}

static void test_three_targets(void)
{
	struct tgt_state st;
	const struct tgt_target *t;
	const struct tgt_lun *l;
	size_t len;
	char *buf = load("three-targets.txt", &len);

	is_int(tgtshow_parse(buf, len, &st, NULL), 0, "three-targets parses");
	is_int(st.n, 3, "three targets");
	t = tgt_state_find_tid(&st, 1);
	ok(t != NULL, "tid 1 found");
	if (t) {
		is_str(t->iqn, "iqn.2026-11.test:m.alpha", "tid 1 iqn");
		is_str(t->state, "ready", "tid 1 ready");
		is_int(t->n_luns, 2, "tid 1 has LUN 0 and 1");
		l = tgt_target_find_lun(t, 1);
		ok(l && l->readonly, "LUN 1 readonly");
		is_str(l ? l->path : NULL, "/tmp/tgtlab/a.img", "LUN 1 path");
		is_str(l ? l->type : NULL, "disk", "LUN 1 type");
		is_str(l ? l->bstype : NULL, "rdwr", "LUN 1 backing store");
		is_int(l ? l->block_size : 0, 512, "LUN 1 block size");
		l = tgt_target_find_lun(t, 0);
		is_str(l ? l->type : NULL, "controller", "LUN 0 is the controller");
		ok(l && !l->readonly, "LUN 0 not readonly");
		is_int(t->n_accounts, 1, "one account");
		is_str(t->accounts[0], "alpha", "account alpha");
		ok(t->out_account == NULL, "no outgoing account");
		is_int(t->n_acls, 1, "one ACL");
		is_str(t->acls[0], "iqn.2026-11.test:i.alpha", "ACL is the initiator name");
		ok(tgtshow_acl_is_name(t->acls[0]), "initiator name classified as name");
		is_int(t->n_nexus, 0, "no session");
	}
	t = tgt_state_find_iqn(&st, "iqn.2026-11.test:m.beta");
	ok(t && t->tid == 2, "beta by iqn is tid 2");
	if (t) {
		is_int(t->n_luns, 3, "beta has 3 LUNs");
		ok(!tgt_target_find_lun(t, 2)->readonly, "beta LUN 2 read-write");
		is_str(t->out_account, "outu", "outgoing account parsed apart");
		is_int(t->n_accounts, 1, "one incoming account");
		is_int(t->n_acls, 2, "two address ACLs");
		is_str(t->acls[0], "ALL", "ALL");
		ok(!tgtshow_acl_is_name("ALL") && !tgtshow_acl_is_name("127.0.0.1") &&
			   !tgtshow_acl_is_name("fd00::1/64"),
		   "addresses classified as addresses");
	}
	t = tgt_state_find_tid(&st, 5);
	ok(t && t->n_luns == 1 && t->n_accounts == 0 && t->n_acls == 0, "empty target 5");
	ok(tgt_state_find_tid(&st, 3) == NULL, "no tid 3");
	tgt_state_release(&st);
	free(buf);
}

static void test_nexus_offline(void)
{
	struct tgt_state st;
	const struct tgt_target *t;
	size_t len;
	char *buf = load("nexus-active.txt", &len);

	is_int(tgtshow_parse(buf, len, &st, NULL), 0, "nexus-active parses");
	t = tgt_state_find_tid(&st, 1);
	is_int(t ? t->n_nexus : 99, 1, "one I_T nexus counted");
	tgt_state_release(&st);
	free(buf);

	buf = load("mixed-offline-nexus.txt", &len);
	is_int(tgtshow_parse(buf, len, &st, NULL), 0, "mixed-offline-nexus parses");
	is_int(st.n, 3, "three targets");
	t = tgt_state_find_tid(&st, 7);
	ok(t != NULL, "tid 7");
	if (t) {
		is_str(t->state, "offline", "offline state");
		is_int(tgt_target_find_lun(t, 3)->block_size, 4096, "4K block size");
		ok(tgt_target_find_lun(t, 2) == NULL, "no LUN 2");
		is_str(t->out_account, "mutual", "outgoing mutual");
		is_int(t->n_acls, 3, "three ACL entries");
		ok(tgtshow_acl_is_name(t->acls[2]) && !tgtshow_acl_is_name(t->acls[1]),
		   "mixed ACL list classified");
	}
	t = tgt_state_find_tid(&st, 2);
	is_int(t ? t->n_nexus : 0, 1, "beta has a session");
	tgt_state_release(&st);
	free(buf);
}

static void test_accounts(void)
{
	char **u;
	size_t n, len;
	char *buf = load("accounts.txt", &len);

	is_int(tgtshow_parse_accounts(buf, len, &u, &n), 0, "account list parses");
	is_int(n, 3, "three accounts");
	if (n == 3) {
		is_str(u[0], "mutual", "first");
		is_str(u[2], "beta", "last");
	}
	tgtshow_free_list(u, n);
	free(buf);
	is_int(tgtshow_parse_accounts("", 0, &u, &n), 0, "empty account output");
	is_int(n, 0, "no accounts");
	is_int(tgtshow_parse_accounts("Account list:\n", 14, &u, &n), 0, "header only");
	is_int(n, 0, "header only: none");
	is_int(tgtshow_parse_accounts("alpha\n", 6, &u, &n), -EINVAL, "no header refused");
	is_int(tgtshow_parse_accounts("Account list:\n  x\n", 18, &u, &n), -EINVAL,
	       "bad indent refused");
}

static void test_portals(void)
{
	char **p;
	size_t n;
	const char *two = "Portal: [::]:3260,1\nPortal: 0.0.0.0:3260,1\n";

	is_int(tgtshow_parse_portals("Portal: 127.0.0.1:13286,1\n", 26, &p, &n), 0,
	       "portal list parses");
	is_int(n, 1, "one portal");
	is_str(n ? p[0] : NULL, "127.0.0.1:13286", "TPGT stripped");
	tgtshow_free_list(p, n);
	is_int(tgtshow_parse_portals(two, strlen(two), &p, &n), 0, "fallback portals parse");
	is_int(n, 2, "two portals");
	is_str(n ? p[0] : NULL, "[::]:3260", "IPv6 portal");
	tgtshow_free_list(p, n);
	is_int(tgtshow_parse_portals("", 0, &p, &n), 0, "no portal");
	is_int(tgtshow_parse_portals("Portal: x\n", 10, &p, &n), -EINVAL, "no TPGT refused");
	is_int(tgtshow_parse_portals("Portal: a,b\n", 12, &p, &n), -EINVAL, "bad TPGT refused");
	is_int(tgtshow_parse_portals("  Portal: a,1\n", 14, &p, &n), -EINVAL, "indented refused");
}

static void test_malformed(void)
{
	struct tgt_state st;
	size_t len, line = 0;
	char *buf = load("system.txt", &len);
	int r;

	is_int(tgtshow_parse(buf, len, &st, &line), -EINVAL, "system output is not a target list");
	is_int(line, 1, "error on line 1");
	free(buf);
	is_int(parse_str("", &st), 0, "empty output: no targets");
	is_int(st.n, 0, "zero targets");
	is_int(parse_str("\n\n", &st), 0, "blank lines only");
	is_int(parse_str("Target x: iqn.a\n", &st), -EINVAL, "non-numeric tid");
	is_int(parse_str("Target 0: iqn.a\n", &st), -EINVAL, "tid 0");
	is_int(parse_str("Target 1:\n", &st), -EINVAL, "empty iqn");
	is_int(parse_str("Target 1: iqn.a b\n", &st), -EINVAL, "space in iqn");
	is_int(parse_str("Target 1: iqn.a\nTarget 1: iqn.b\n", &st), -EINVAL, "duplicate tid");
	is_int(parse_str("    LUN information:\n", &st), -EINVAL, "section before any target");
	is_int(parse_str("Target 1: iqn.a\n        LUN: 1\n", &st), -EINVAL,
	       "entry outside a section");
	is_int(parse_str("Target 1: iqn.a\n    LUN information:\n            Type: disk\n", &st),
	       -EINVAL, "LUN property without LUN");
	is_int(parse_str("Target 1: iqn.a\n    LUN information:\n        LUN: 1\n        LUN: 1\n",
			 &st),
	       -EINVAL, "duplicate LUN");
	is_int(parse_str("Target 1: iqn.a\n    LUN information:\n        LUN: x\n", &st), -EINVAL,
	       "non-numeric LUN");
	is_int(parse_str("Target 1: iqn.a\n\tLUN information:\n", &st), -EINVAL, "tab indent");
	is_int(parse_str("Target 1: iqn.a\n      LUN information:\n", &st), -EINVAL,
	       "indent not a multiple of 4");
	is_int(parse_str("Target 1: iqn.a\n    Something odd\n", &st), -EINVAL,
	       "section header without colon");
	is_int(parse_str("Target 1: iqn.a\n    Account information:\n        a (outgoing)\n"
			 "        b (outgoing)\n",
			 &st),
	       -EINVAL, "two outgoing accounts");
	is_int(parse_str("Target 1: iqn.a\n    I_T nexus information:\n        bogus\n", &st),
	       -EINVAL, "bad nexus line");
	r = parse_str("Target 1: iqn.a\n    Future section:\n        whatever: 1\n"
		      "            deeper\n    ACL information:\n        ALL\n",
		      &st);
	is_int(r, 0, "unknown section skipped");
	is_int(r == 0 ? st.targets[0].n_acls : 0, 1, "sections after it still read");
	tgt_state_release(&st);
	r = parse_str("Target 1: iqn.a\n    System information:\n        Driver: iscsi\n"
		      "        State: ready\n        nop_interval: 0\n",
		      &st);
	is_int(r, 0, "unknown system keys ignored");
	tgt_state_release(&st);
	is_int(tgtshow_parse("Target 1: iqn.a\n\0x", 18, &st, NULL), -EINVAL, "NUL byte refused");
	r = parse_str("Target 1: iqn.a\r\n    ACL information:\r\n        ALL\r\n", &st);
	is_int(r, 0, "CRLF tolerated");
	tgt_state_release(&st);
}

static void test_limits(void)
{
	struct tgt_state st;
	size_t cap = 0, n = 0;
	char *big = xmalloc(TGTSHOW_MAX_LINE + 64);
	char *many = NULL;

	memset(big, 'a', TGTSHOW_MAX_LINE + 20);
	big[6] = ' ';
	big[TGTSHOW_MAX_LINE + 20] = '\n';
	is_int(tgtshow_parse(big, TGTSHOW_MAX_LINE + 21, &st, NULL), -E2BIG, "overlong line");
	free(big);

	xgrow((void **)&many, &cap, 64u << 10, 1);
	for (int i = 1; i <= TGTSHOW_MAX_TARGETS + 1; i++) {
		char line[64];
		int k = snprintf(line, sizeof(line), "Target %d: iqn.x\n", i);

		xgrow((void **)&many, &cap, n + (size_t)k + 1, 1);
		memcpy(many + n, line, (size_t)k);
		n += (size_t)k;
	}
	is_int(tgtshow_parse(many, n, &st, NULL), -E2BIG, "too many targets");
	n = 0;
	n += (size_t)snprintf(many, cap, "Target 1: iqn.x\n    ACL information:\n");
	for (int i = 0; i <= TGTSHOW_MAX_LIST; i++) {
		xgrow((void **)&many, &cap, n + 64, 1);
		n += (size_t)snprintf(many + n, cap - n, "        10.0.0.%d\n", i);
	}
	is_int(tgtshow_parse(many, n, &st, NULL), -E2BIG, "too many ACL entries");
	free(many);
}

/* Every prefix of a real output either parses or fails cleanly (ASan checks the
 * rest), and cutting inside the structure is reported. */
static void test_truncated(void)
{
	size_t len, fails = 0, oks = 0;
	char *buf = load("mixed-offline-nexus.txt", &len);

	for (size_t cut = 0; cut <= len; cut++) {
		struct tgt_state st;
		char *copy = xmalloc(cut + 1);

		memcpy(copy, buf, cut);
		if (tgtshow_parse(copy, cut, &st, NULL) == 0) {
			oks++;
			tgt_state_release(&st);
		} else {
			fails++;
		}
		free(copy);
	}
	ok(oks > 0 && fails > 0, "all %zu prefixes handled (%zu parse, %zu refused)", len + 1, oks,
	   fails);
	free(buf);
}

int main(void)
{
	test_three_targets();
	test_nexus_offline();
	test_accounts();
	test_portals();
	test_malformed();
	test_limits();
	test_truncated();
	return done_testing();
}
