/* Unit tests for targets/reconcile (the pure planning step) and targets/iqn:
 * desired state + a parsed tgtd state -> the exact list of operations. The
 * actual states are written in tgtd's show format and go through the real
 * parser, so plan and parser are tested together. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/io.h"
#include "lib/spawn.h"
#include "lib/util.h"
#include "targets/iqn.h"
#include "targets/reconcile.h"
#include "targets/tgtshow.h"
#include "tests/tap.h"

#define PFX "iqn.2026-11.org.example.gc"

/* Appends one target in tgtd's show format. luns: "1=/path:ro,2=/up:rw" */
static void show_target(char *buf, size_t size, int tid, const char *iqn, const char *state,
			const char *luns, const char *accounts, const char *acls)
{
	size_t n = strlen(buf);
	char tmp[1024], *save = NULL, *tok;

	n += (size_t)snprintf(buf + n, size - n,
			      "Target %d: %s\n    System information:\n        Driver: iscsi\n"
			      "        State: %s\n    I_T nexus information:\n"
			      "    LUN information:\n        LUN: 0\n            Type: controller\n"
			      "            Readonly: No\n            Backing store path: None\n",
			      tid, iqn, state);
	snprintf(tmp, sizeof(tmp), "%s", luns);
	for (tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '='), *colon = strrchr(tok, ':');

		*eq = '\0';
		*colon = '\0';
		n += (size_t)snprintf(
			buf + n, size - n,
			"        LUN: %s\n            Type: disk\n"
			"            Size: 10 MB, Block size: 512\n"
			"            Readonly: %s\n            Backing store type: rdwr\n"
			"            Backing store path: %s\n",
			tok, strcmp(colon + 1, "ro") == 0 ? "Yes" : "No", eq + 1);
	}
	n += (size_t)snprintf(buf + n, size - n, "    Account information:\n");
	snprintf(tmp, sizeof(tmp), "%s", accounts);
	for (tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		n += (size_t)snprintf(buf + n, size - n, "        %s\n", tok);
	n += (size_t)snprintf(buf + n, size - n, "    ACL information:\n");
	snprintf(tmp, sizeof(tmp), "%s", acls);
	for (tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		n += (size_t)snprintf(buf + n, size - n, "        %s\n", tok);
}

static struct tgt_target_spec specs[3];
static struct tgt_desired desired;
static int known_answer = 1;

static int known(void *ctx, const char *user, const char *secret)
{
	(void)ctx;
	(void)user;
	(void)secret;
	return known_answer;
}

static void setup(size_t n)
{
	static const char *const names[] = {"alpha", "beta", "gamma"};

	memset(specs, 0, sizeof(specs));
	for (size_t i = 0; i < n; i++) {
		static char iqn[3][IQN_MAX + 1], ini[3][IQN_MAX + 1];

		iqn_machine_target(PFX, names[i], iqn[i], sizeof(iqn[i]));
		iqn_machine_initiator(PFX, names[i], ini[i], sizeof(ini[i]));
		specs[i].iqn = iqn[i];
		specs[i].initiator = ini[i];
		specs[i].chap_user = names[i];
		specs[i].chap_secret = "secret-000000001";
		specs[i].luns[0] = (struct tgt_lun_spec){1, "/srv/gold-v1.img", 1};
		specs[i].n_luns = 1;
	}
	desired.targets = specs;
	desired.n = n;
	known_answer = 1;
}

/* Plans against show text and the account list; returns the ops as one
 * string "op;op;..." (described), or "ERR". */
static char *plan_str(const char *show, const char *accounts_csv)
{
	struct tgt_state st;
	struct tgt_plan plan;
	char *accounts[16], tmp[512], *save = NULL, *tok, line[512];
	size_t n_acc = 0, len = 0;
	static char out[8192];

	out[0] = '\0';
	if (tgtshow_parse(show, strlen(show), &st, NULL) < 0) {
		snprintf(out, sizeof(out), "PARSE");
		return out;
	}
	snprintf(tmp, sizeof(tmp), "%s", accounts_csv);
	for (tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		accounts[n_acc++] = tok;
	if (tgt_plan_build(&desired, &st, accounts, n_acc, PFX, known, NULL, &plan) < 0) {
		tgt_state_release(&st);
		snprintf(out, sizeof(out), "ERR");
		return out;
	}
	for (size_t i = 0; i < plan.n; i++) {
		tgt_op_describe(&plan.ops[i], line, sizeof(line));
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%s", i ? ";" : "", line);
	}
	tgt_plan_release(&plan);
	tgt_state_release(&st);
	return out;
}

#define ALPHA PFX ":m.alpha"
#define ALPHA_I PFX ":i.alpha"
#define BETA PFX ":m.beta"
#define BETA_I PFX ":i.beta"

static void test_create(void)
{
	setup(2);
	is_str(plan_str("", ""),
	       "new-target tid 1 " ALPHA ";new-lun tid 1 lun 1 /srv/gold-v1.img;"
	       "lun-readonly tid 1 lun 1 1;new-account alpha;bind-account tid 1 alpha;"
	       "bind-initiator tid 1 " ALPHA_I ";"
	       "new-target tid 2 " BETA ";new-lun tid 2 lun 1 /srv/gold-v1.img;"
	       "lun-readonly tid 2 lun 1 1;new-account beta;bind-account tid 2 beta;"
	       "bind-initiator tid 2 " BETA_I,
	       "empty tgtd: create all, ACL bound last");
}

static void test_nothing_to_do(void)
{
	char show[8192] = "";

	setup(2);
	show_target(show, sizeof(show), 1, ALPHA, "ready", "1=/srv/gold-v1.img:ro", "alpha",
		    ALPHA_I);
	show_target(show, sizeof(show), 2, BETA, "ready", "1=/srv/gold-v1.img:ro", "beta", BETA_I);
	is_str(plan_str(show, "alpha,beta"), "", "matching state: no operation");
	known_answer = 0;
	is_str(plan_str(show, "alpha,beta"),
	       "state tid 1 offline;delete-account alpha;new-account alpha;"
	       "bind-account tid 1 alpha;state tid 1 ready;"
	       "state tid 2 offline;delete-account beta;new-account beta;"
	       "bind-account tid 2 beta;state tid 2 ready",
	       "unknown secrets: accounts reset behind offline");
}

static void test_changes(void)
{
	char show[8192] = "";

	setup(2);
	show_target(show, sizeof(show), 1, ALPHA, "ready", "1=/srv/gold-v1.img:ro", "alpha",
		    ALPHA_I);
	show_target(show, sizeof(show), 2, BETA, "ready", "1=/srv/gold-v1.img:ro", "beta", BETA_I);
	specs[1].luns[0].path = "/srv/gold-v2.img";
	is_str(plan_str(show, "alpha,beta"),
	       "state tid 2 offline;delete-lun tid 2 lun 1;new-lun tid 2 lun 1 /srv/gold-v2.img;"
	       "lun-readonly tid 2 lun 1 1;state tid 2 ready",
	       "changed backing file: LUN replaced behind offline");

	setup(2);
	specs[0].luns[1] = (struct tgt_lun_spec){2, "/srv/up-alpha.img", 0};
	specs[0].n_luns = 2;
	is_str(plan_str(show, "alpha,beta"),
	       "state tid 1 offline;new-lun tid 1 lun 2 /srv/up-alpha.img;state tid 1 ready",
	       "new upload LUN: read-write, no readonly op");

	setup(1);
	is_str(plan_str(show, "alpha,beta"), "delete-target tid 2 " BETA ";delete-account beta",
	       "removed machine: target and account deleted");

	setup(2);
	specs[0].luns[0].readonly = 0;
	is_str(plan_str(show, "alpha,beta"),
	       "state tid 1 offline;lun-readonly tid 1 lun 1 0;state tid 1 ready",
	       "readonly flag change is an update");

	setup(2);
	specs[0].n_luns = 0;
	is_str(plan_str(show, "alpha,beta"),
	       "state tid 1 offline;delete-lun tid 1 lun 1;state tid 1 ready", "LUN removed");
}

static void test_acl_and_accounts(void)
{
	char show[8192] = "";

	setup(1);
	show_target(show, sizeof(show), 1, ALPHA, "ready", "1=/srv/gold-v1.img:ro",
		    "alpha,intruder,spy (outgoing)", "ALL,10.0.0.0/8,iqn.2000-01.x:other");
	is_str(plan_str(show, "alpha,intruder,spy"),
	       "delete-account intruder;delete-account spy;"
	       "unbind-address tid 1 ALL;unbind-address tid 1 10.0.0.0/8;"
	       "unbind-initiator tid 1 iqn.2000-01.x:other;bind-initiator tid 1 " ALPHA_I,
	       "stray accounts deleted (unbinds them), ACL tightened first then bound");

	show[0] = '\0';
	show_target(show, sizeof(show), 1, ALPHA, "offline", "1=/srv/gold-v1.img:ro", "", "");
	is_str(plan_str(show, "alpha"),
	       "state tid 1 offline;bind-account tid 1 alpha;bind-initiator tid 1 " ALPHA_I
	       ";state tid 1 ready",
	       "half-made target (offline, no bindings) completed");

	show[0] = '\0';
	show_target(show, sizeof(show), 1, ALPHA, "offline", "1=/srv/gold-v1.img:ro", "alpha",
		    ALPHA_I);
	is_str(plan_str(show, "alpha"), "state tid 1 ready", "left offline: back to ready");
}

static void test_foreign_and_tids(void)
{
	char show[8192] = "";

	setup(2);
	show_target(show, sizeof(show), 1, "iqn.2001-04.com.example:stock", "ready",
		    "1=/srv/gold-v1.img:rw", "stockuser", "ALL");
	show_target(show, sizeof(show), 3, ALPHA, "ready", "1=/srv/gold-v1.img:ro", "alpha",
		    ALPHA_I);
	show_target(show, sizeof(show), 4, PFX ":m.old", "ready", "", "olduser", "");
	is_str(plan_str(show, "stockuser,alpha,olduser"),
	       "delete-target tid 4 " PFX ":m.old;delete-account olduser;"
	       "new-target tid 2 " BETA ";new-lun tid 2 lun 1 /srv/gold-v1.img;"
	       "lun-readonly tid 2 lun 1 1;new-account beta;bind-account tid 2 beta;"
	       "bind-initiator tid 2 " BETA_I,
	       "foreign target and its account kept, lowest free tid used");
	known_answer = 0;
	{
		const char *p = plan_str(show, "stockuser,alpha,olduser,beta");

		ok(strstr(p, "delete-account beta;new-account beta;") != NULL,
		   "existing account of a new target reset when its secret is unknown");
		ok(strstr(p, "stockuser") == NULL, "foreign account untouched");
	}
}

static void test_check(void)
{
	char err[512];

	setup(2);
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), 0, "valid desired set");
	specs[1].chap_user = "alpha";
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), -EINVAL, "shared CHAP user");
	ok(strstr(err, "share CHAP user") != NULL, "message names it: %s", err);
	setup(2);
	specs[1].initiator = specs[0].initiator;
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), -EINVAL, "shared initiator");
	setup(2);
	specs[1].iqn = specs[0].iqn;
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), -EINVAL, "duplicate IQN");
	setup(1);
	specs[0].chap_secret = "short";
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), -EINVAL, "short secret");
	ok(strstr(err, "short") == NULL, "secret not quoted in the message");
	specs[0].chap_secret = "has space 123456";
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), -EINVAL, "secret with space");
	setup(1);
	specs[0].luns[0].lun = 0;
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), -EINVAL, "LUN 0 refused");
	setup(1);
	specs[0].luns[0].path = "/a,b";
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), -EINVAL, "comma in path");
	specs[0].luns[0].path = "/gold.img ";
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), -EINVAL,
	       "trailing space in path");
	specs[0].luns[0].path = "relative.img";
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), -EINVAL, "relative path");
	setup(1);
	specs[0].luns[1] = specs[0].luns[0];
	specs[0].n_luns = 2;
	is_int(tgt_desired_check(&desired, PFX, err, sizeof(err)), -EINVAL, "LUN twice");
	setup(1);
	is_int(tgt_desired_check(&desired, "iqn.2026-11.org.other", err, sizeof(err)), -EINVAL,
	       "IQN outside the managed prefix");
	is_int(tgt_desired_check(&desired, NULL, err, sizeof(err)), 0, "no prefix: any IQN");
}

static void test_iqn(void)
{
	char b[IQN_MAX + 1];

	is_int(iqn_machine_target(PFX, "Lab_PC-07", b, sizeof(b)), 0, "machine target IQN");
	is_str(b, PFX ":m.lab-pc-07", "lower-cased, '_' mapped to '-'");
	is_int(iqn_machine_initiator(PFX, "alpha", b, sizeof(b)), 0, "machine initiator IQN");
	is_str(b, PFX ":i.alpha", "initiator scheme");
	is_int(iqn_machine_target("iqn.2026-11.x:y", "a", b, sizeof(b)), -EINVAL,
	       "prefix with ':' refused");
	is_int(iqn_machine_target(PFX, "../x", b, sizeof(b)), -EINVAL, "bad machine name");
	ok(iqn_is_valid("iqn.1993-08.org.debian:01:abc"), "debian initiator name valid");
	ok(!iqn_is_valid("iqn.93-08.org"), "short date refused");
	ok(!iqn_is_valid("iqn.2026-11.Org.example"), "upper case refused");
	ok(!iqn_is_valid("iqn.2026-11.org..x"), "empty label refused");
	ok(!iqn_is_valid("eui.02004567A425678D"), "only iqn type");
	ok(!iqn_is_valid("iqn.2026-11.org.x y"), "space refused");
	ok(chap_user_is_valid("alpha.1@lab"), "chap user");
	ok(!chap_user_is_valid("a b"), "chap user with space");
	ok(chap_secret_is_valid("abcdefghijkl"), "12-char secret");
	ok(!chap_secret_is_valid("abcdefghijk"), "11-char secret refused");
	ok(chap_secret_is_valid("abcdefghijk,"),
	   "comma accepted (tgtd keeps the rest of the line)");
	ok(!chap_secret_is_valid("abcdefghijk\t"), "control character refused");
}

static void test_no_secret_in_logs(void)
{
	const char *argv[] = {"tgtadm", "--op", "new",	      "--mode",		"account",
			      "--user", "u",	"--password", "top-secret-123", NULL};
	char line[256];

	spawn_argv_str(argv, line, sizeof(line));
	is_str(line, "tgtadm --op new --mode account --user u --password ***",
	       "command lines in logs mask the CHAP secret");
}

static void test_machine_target(void)
{
	struct tgt_machine_target m[2];
	struct tgt_desired d = {&m[0].spec, 1};
	char err[256];

	is_int(tgt_machine_target_init(&m[0], PFX, "pc1", "secret-000000001", "/g.img", "/u.img"),
	       0, "machine target spec");
	is_str(m[0].spec.iqn, PFX ":m.pc1", "  ... target IQN");
	is_str(m[0].spec.initiator, PFX ":i.pc1", "  ... initiator IQN");
	is_str(m[0].spec.chap_user, "pc1", "  ... CHAP user is the machine name");
	is_int(m[0].spec.n_luns, 2, "  ... gold + upload LUN");
	ok(m[0].spec.luns[0].readonly && !m[0].spec.luns[1].readonly, "  ... gold ro, upload rw");
	is_int(tgt_desired_check(&d, PFX, err, sizeof(err)), 0, "  ... passes the check");
	is_int(tgt_machine_target_init(&m[1], PFX, "pc2", "secret-000000001", "/g.img", NULL), 0,
	       "machine without upload LUN");
	is_int(m[1].spec.n_luns, 1, "  ... gold only");
	is_int(tgt_machine_target_init(&m[1], "bad prefix", "pc2", "x", "/g.img", NULL), -EINVAL,
	       "bad prefix refused");
}

/* ---- apply, against a fake tgtadm (a shell script that logs its arguments,
 * prints canned show output and fails the calls matching $FAKE_FAIL) ---- */

static const char fake_tgtadm[] =
	"#!/bin/sh\n"
	"echo \"$*\" >>\"$FAKE_DIR/log\"\n"
	"case \"$*\" in\n"
	"*'--op show --mode target'*) cat \"$FAKE_DIR/show\"; exit 0 ;;\n"
	"*'--op show --mode account'*) cat \"$FAKE_DIR/accounts\"; exit 0 ;;\n"
	"esac\n"
	"if [ -n \"$FAKE_FAIL\" ]; then case \"$*\" in *\"$FAKE_FAIL\"*)\n"
	"  echo 'tgtadm: fake failure' >&2; exit \"${FAKE_CODE:-22}\" ;; esac; fi\n"
	"exit 0\n";

static char fake_dir[4096];

static void fake_files(const char *show, const char *accounts)
{
	char p[4200];

	snprintf(p, sizeof(p), "%s/show", fake_dir);
	io_write_file_atomic(p, show, strlen(show), 0644);
	snprintf(p, sizeof(p), "%s/accounts", fake_dir);
	io_write_file_atomic(p, accounts, strlen(accounts), 0644);
	snprintf(p, sizeof(p), "%s/log", fake_dir);
	unlink(p);
}

static char *fake_log(void)
{
	static char *buf;
	char p[4200];
	size_t len;

	free(buf);
	buf = NULL;
	snprintf(p, sizeof(p), "%s/log", fake_dir);
	if (io_read_file(p, 1 << 20, &buf, &len) < 0)
		buf = xstrdup("");
	return buf;
}

static size_t lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void test_apply(void)
{
	struct tgt_ctl ctl;
	struct tgt_reconcile_stats st;
	char path[4200], state[4200], show[8192] = "", *log, *memo = NULL;
	size_t len;
	struct stat sb;
	int r;

	snprintf(fake_dir, sizeof(fake_dir), "%s", tap_tmpdir());
	snprintf(path, sizeof(path), "%s/tgtadm", fake_dir);
	io_write_file_atomic(path, fake_tgtadm, strlen(fake_tgtadm), 0755);
	snprintf(state, sizeof(state), "%s/memo.json", fake_dir);
	setenv("FAKE_DIR", fake_dir, 1);
	tgt_ctl_init(&ctl);
	ctl.tgtadm = path;
	ctl.iqn_prefix = PFX;

	/* a failed operation skips the rest of that target only */
	setup(2);
	fake_files("", "");
	setenv("FAKE_FAIL", "--tid 1 --lun 1 -b", 1);
	r = tgt_reconcile(&ctl, &desired, &st);
	log = fake_log();
	is_int(r, -EIO, "a failed operation: -EIO");
	is_int(st.errors, 1, "  ... one error");
	ok(strstr(log, "--op bind --mode target --tid 2 -Q " BETA_I) != NULL,
	   "  ... the other target was completed");
	ok(strstr(log, "--mode target --tid 1 -Q") == NULL,
	   "  ... the failed target got no ACL (closed)");
	ok(strstr(log, "--user alpha --password") == NULL, "  ... nor its account");
	ok(strstr(log, "secret-000000001") != NULL, "(the fake tgtadm saw the secret in argv)");

	/* tgtd gone midway: stop at once */
	setenv("FAKE_FAIL", "--op new --mode target --tid 1", 1);
	setenv("FAKE_CODE", "111", 1);
	fake_files("", "");
	r = tgt_reconcile(&ctl, &desired, &st);
	log = fake_log();
	is_int(r, -ECONNREFUSED, "tgtd stops answering: -ECONNREFUSED");
	is_int(lines(log), 3, "  ... two shows and the one failed call, nothing more");
	unsetenv("FAKE_FAIL");
	unsetenv("FAKE_CODE");

	/* secret memo across processes: a new ctl with the same state file */
	tgt_ctl_release(&ctl);
	tgt_ctl_init(&ctl);
	ctl.tgtadm = path;
	ctl.iqn_prefix = PFX;
	ctl.state_path = state;
	fake_files("", "");
	is_int(tgt_reconcile(&ctl, &desired, &st), 0, "create with a state file");
	is_int(st.accounts_created, 2, "  ... two accounts");
	ok(stat(state, &sb) == 0 && (sb.st_mode & 0777) == 0600, "  ... memo written, 0600");
	io_read_file(state, 1 << 20, &memo, &len);
	ok(memo && !strstr(memo, "secret-000000001") && strstr(memo, "\"alpha\""),
	   "  ... holds fingerprints, not secrets");
	free(memo);
	tgt_ctl_release(&ctl);
	tgt_ctl_init(&ctl);
	ctl.tgtadm = path;
	ctl.iqn_prefix = PFX;
	ctl.state_path = state;
	show_target(show, sizeof(show), 1, ALPHA, "ready", "1=/srv/gold-v1.img:ro", "alpha",
		    ALPHA_I);
	show_target(show, sizeof(show), 2, BETA, "ready", "1=/srv/gold-v1.img:ro", "beta", BETA_I);
	fake_files(show, "Account list:\n    alpha\n    beta\n");
	is_int(tgt_reconcile(&ctl, &desired, &st), 0, "a new process, same state");
	is_int(st.changes, 0, "  ... zero changes: the memo says the secrets are current");
	is_int(lines(fake_log()), 2, "  ... only the two shows ran");
	specs[0].chap_secret = "secret-000000002";
	is_int(tgt_reconcile(&ctl, &desired, &st), 0, "alpha's secret changed");
	is_int(st.changes, 5, "  ... offline, delete, new, bind, ready");
	is_int(st.accounts_created, 1, "  ... one account");
	tgt_ctl_release(&ctl);
	unsetenv("FAKE_DIR");
	tap_rmtree(fake_dir);
}

int main(void)
{
	test_create();
	test_nothing_to_do();
	test_changes();
	test_acl_and_accounts();
	test_foreign_and_tids();
	test_check();
	test_iqn();
	test_machine_target();
	test_no_secret_in_logs();
	test_apply();
	return done_testing();
}
