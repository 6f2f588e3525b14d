/* gc-targets: operator and test tool over the targets/ library. It only parses
 * argv and prints; the work is done by the same functions goldcached calls
 * (tgt_reconcile, tgt_show, tgtd_start, tgtd_shutdown).
 *
 *   gc-targets [-C PORT] [--socket BASE] COMMAND ...
 *     show [--json]                          tgtd's targets and accounts
 *     reconcile --desired FILE [--prefix P] [--state FILE] [--json]
 *     plan --desired FILE [--prefix P] [--state FILE]   dry run: print operations
 *     start --portal ADDR:PORT [--log FILE]  start a private tgtd, print its pid
 *     shutdown [--timeout MS]                delete all targets, stop tgtd
 *     iqn PREFIX NAME                        print a machine's target and initiator IQN
 *     write-probe [--expect-refused] --initiator IQN [--user U --secret-file F] URL
 *                                            try one WRITE(10) through libiscsi; exit 0
 *                                            when the target accepted it (refused it with
 *                                            DATA PROTECT, with --expect-refused)
 *
 * Desired-state file (JSON):
 *   {"prefix": "iqn.2026-11.org.example.gc",
 *    "targets": [{"machine": "alpha", "chap_secret_file": "/etc/...",
 *                 "luns": [{"lun": 1, "path": "/var/lib/.../gold.img", "readonly": true}]},
 *                {"iqn": "...", "initiator": "...", "chap_user": "u",
 *                 "chap_secret": "...", "luns": [...]}]}
 * "machine" derives iqn, initiator and chap_user by the scheme in iqn.h.
 *
 * Exit codes: 0 success; 1 tgtd or tgtadm failed (or some operations failed);
 * 2 usage error or invalid desired state (nothing was changed). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"
#include "targets/iqn.h"
#include "targets/probe.h"
#include "targets/reconcile.h"
#include "targets/tgtd.h"
#include "targets/tgtshow.h"

#define SECRET_FILE_MAX 4096

struct desired_file {
	json_t *root;
	struct tgt_target_spec *specs;
	char **owned; /* strings we built (IQNs, secrets) */
	size_t n_owned;
	struct tgt_desired d;
	const char *prefix;
};

static void usage(void)
{
	fprintf(stderr, "usage: gc-targets [-C PORT] [--socket BASE] [-v] COMMAND\n"
			"  show [--json]\n"
			"  reconcile --desired FILE [--prefix P] [--state FILE] [--json]\n"
			"  plan --desired FILE [--prefix P] [--state FILE]\n"
			"  start --portal ADDR:PORT [--log FILE] [--timeout MS]\n"
			"  shutdown [--timeout MS]\n"
			"  iqn PREFIX NAME\n"
			"  write-probe [--expect-refused] --initiator IQN [--user U --secret-file "
			"F] URL\n");
	exit(2);
}

static char *own(struct desired_file *f, char *s)
{
	f->owned = xrealloc(f->owned, (f->n_owned + 1) * sizeof(*f->owned));
	f->owned[f->n_owned++] = s;
	return s;
}

static void desired_free(struct desired_file *f)
{
	for (size_t i = 0; i < f->n_owned; i++) {
		explicit_bzero(f->owned[i], strlen(f->owned[i]));
		free(f->owned[i]);
	}
	free(f->owned);
	free(f->specs);
	json_decref(f->root);
}

static const char *read_secret(struct desired_file *f, const char *path, const char *what)
{
	char *buf = NULL;
	size_t len = 0;
	int r = io_read_file(path, SECRET_FILE_MAX, &buf, &len);

	if (r < 0)
		die(2, "%s: cannot read CHAP secret file '%s': %s", what, path, strerror(-r));
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	return own(f, buf);
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void desired_load(const char *path, const char *prefix_opt, struct desired_file *f)
{
	json_error_t jerr;
	json_t *targets, *t;
	size_t i;
	char buf[IQN_MAX + 1];

	memset(f, 0, sizeof(*f));
	f->root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!f->root)
		die(2, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
	f->prefix = prefix_opt ? prefix_opt : jstr(f->root, "prefix");
	if (f->prefix && !iqn_prefix_is_valid(f->prefix))
		die(2, "%s: prefix '%s' is not an iqn name without ':'", path, f->prefix);
	targets = json_object_get(f->root, "targets");
	if (!json_is_array(targets))
		die(2, "%s: expected \"targets\": [ ... ]", path);
	f->specs = xcalloc(json_array_size(targets) + 1, sizeof(*f->specs));
	json_array_foreach(targets, i, t)
	{
		struct tgt_target_spec *s = &f->specs[i];
		const char *machine = jstr(t, "machine"), *sf;
		char what[64];
		json_t *luns, *l;
		size_t k;

		snprintf(what, sizeof(what), "%s: targets[%zu]", path, i);
		if (!json_is_object(t))
			die(2, "%s: expected an object", what);
		if (machine) {
			if (!f->prefix)
				die(2, "%s: \"machine\" needs a prefix", what);
			if (iqn_machine_target(f->prefix, machine, buf, sizeof(buf)) < 0)
				die(2, "%s: bad machine name '%s'", what, machine);
			s->iqn = own(f, xstrdup(buf));
			iqn_machine_initiator(f->prefix, machine, buf, sizeof(buf));
			s->initiator = own(f, xstrdup(buf));
			s->chap_user = machine;
		}
		if (jstr(t, "iqn"))
			s->iqn = jstr(t, "iqn");
		if (jstr(t, "initiator"))
			s->initiator = jstr(t, "initiator");
		if (jstr(t, "chap_user"))
			s->chap_user = jstr(t, "chap_user");
		s->chap_secret = jstr(t, "chap_secret");
		sf = jstr(t, "chap_secret_file");
		if (sf)
			s->chap_secret = read_secret(f, sf, what);
		luns = json_object_get(t, "luns");
		if (luns && !json_is_array(luns))
			die(2, "%s: \"luns\" must be an array", what);
		if (json_array_size(luns) > TGT_SPEC_MAX_LUNS)
			die(2, "%s: more than %d LUNs", what, TGT_SPEC_MAX_LUNS);
		json_array_foreach(luns, k, l)
		{
			json_t *n = json_object_get(l, "lun");

			if (!json_is_integer(n) || json_integer_value(n) < 1 ||
			    json_integer_value(n) > 255)
				die(2, "%s.luns[%zu]: \"lun\" must be 1-255", what, k);
			s->luns[k].lun = (unsigned)json_integer_value(n);
			s->luns[k].path = jstr(l, "path");
			s->luns[k].readonly = json_is_true(json_object_get(l, "readonly"));
		}
		s->n_luns = json_array_size(luns);
	}
	f->d.targets = f->specs;
	f->d.n = json_array_size(targets);
}

static json_t *strlist(char *const *list, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(list[i]));
	return a;
}

static int cmd_show(struct tgt_ctl *ctl, int as_json)
{
	struct tgt_state st;
	char **accounts;
	size_t n_accounts;
	int r = tgt_show(ctl, &st, &accounts, &n_accounts);

	if (r < 0)
		return 1;
	if (as_json) {
		json_t *root = json_object(), *ts = json_array();

		for (size_t i = 0; i < st.n; i++) {
			const struct tgt_target *t = &st.targets[i];
			json_t *jt = json_object(), *luns = json_array();

			for (size_t l = 0; l < t->n_luns; l++) {
				const struct tgt_lun *lu = &t->luns[l];

				json_array_append_new(
					luns,
					json_pack("{s:I, s:s?, s:s?, s:s?, s:b, s:b, s:I}", "lun",
						  (json_int_t)lu->lun, "type", lu->type, "path",
						  lu->path, "bstype", lu->bstype, "readonly",
						  lu->readonly, "online", lu->online, "block_size",
						  (json_int_t)lu->block_size));
			}
			json_object_set_new(jt, "tid", json_integer(t->tid));
			json_object_set_new(jt, "iqn", json_string(t->iqn));
			json_object_set_new(jt, "state",
					    t->state ? json_string(t->state) : json_null());
			json_object_set_new(jt, "luns", luns);
			json_object_set_new(jt, "accounts", strlist(t->accounts, t->n_accounts));
			json_object_set_new(jt, "out_account",
					    t->out_account ? json_string(t->out_account)
							   : json_null());
			json_object_set_new(jt, "acls", strlist(t->acls, t->n_acls));
			json_object_set_new(jt, "sessions", json_integer((json_int_t)t->n_nexus));
			json_array_append_new(ts, jt);
		}
		json_object_set_new(root, "targets", ts);
		json_object_set_new(root, "accounts", strlist(accounts, n_accounts));
		json_dumpf(root, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(root);
	} else {
		for (size_t i = 0; i < st.n; i++) {
			const struct tgt_target *t = &st.targets[i];

			printf("%d %s %s luns=%zu accounts=%zu acls=%zu sessions=%zu\n", t->tid,
			       t->iqn, t->state ? t->state : "?", t->n_luns, t->n_accounts,
			       t->n_acls, t->n_nexus);
		}
	}
	tgt_state_release(&st);
	tgtshow_free_list(accounts, n_accounts);
	return 0;
}

static void print_stats(const struct tgt_reconcile_stats *s, int as_json, int rc)
{
	if (as_json) {
		json_t *o =
			json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b}",
				  "shows", s->shows, "changes", s->changes, "targets_created",
				  s->targets_created, "targets_deleted", s->targets_deleted,
				  "luns_added", s->luns_added, "luns_removed", s->luns_removed,
				  "luns_updated", s->luns_updated, "accounts_created",
				  s->accounts_created, "accounts_deleted", s->accounts_deleted,
				  "bindings", s->bindings, "errors", s->errors, "ok", rc == 0);

		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
		return;
	}
	printf("shows=%u changes=%u targets_created=%u targets_deleted=%u luns_added=%u "
	       "luns_removed=%u luns_updated=%u accounts_created=%u accounts_deleted=%u "
	       "bindings=%u errors=%u\n",
	       s->shows, s->changes, s->targets_created, s->targets_deleted, s->luns_added,
	       s->luns_removed, s->luns_updated, s->accounts_created, s->accounts_deleted,
	       s->bindings, s->errors);
}

static int cmd_reconcile(struct tgt_ctl *ctl, const char *desired, const char *prefix, int as_json,
			 int dry)
{
	struct desired_file f;
	struct tgt_reconcile_stats st;
	char err[512];
	int r;

	desired_load(desired, prefix, &f);
	ctl->iqn_prefix = f.prefix;
	r = tgt_desired_check(&f.d, f.prefix, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "gc-targets: %s: %s\n", desired, err);
		desired_free(&f);
		return 2;
	}
	if (dry) {
		struct tgt_state actual;
		struct tgt_plan plan;
		char **accounts, line[512];
		size_t n_accounts;

		r = tgt_show(ctl, &actual, &accounts, &n_accounts);
		if (r == 0) {
			/* no secret memo in a dry run: accounts show as reset */
			r = tgt_plan_build(&f.d, &actual, accounts, n_accounts, f.prefix, NULL,
					   NULL, &plan);
			for (size_t i = 0; r == 0 && i < plan.n; i++) {
				tgt_op_describe(&plan.ops[i], line, sizeof(line));
				printf("%s\n", line);
			}
			if (r == 0)
				tgt_plan_release(&plan);
			tgt_state_release(&actual);
			tgtshow_free_list(accounts, n_accounts);
		}
		desired_free(&f);
		return r < 0 ? 1 : 0;
	}
	r = tgt_reconcile(ctl, &f.d, &st);
	print_stats(&st, as_json, r);
	desired_free(&f);
	return r < 0 ? (r == -EINVAL ? 2 : 1) : 0;
}

static int cmd_start(struct tgt_ctl *ctl, const char *portal, const char *log, int timeout_ms)
{
	int fd = -1, r;
	pid_t pid;

	if (!portal)
		usage();
	if (log) {
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd < 0)
			die(1, "cannot open '%s': %s", log, strerror(errno));
	}
	r = tgtd_start(ctl, portal, fd, timeout_ms, &pid);
	if (fd >= 0)
		close(fd);
	if (r < 0)
		return 1;
	printf("%d\n", (int)pid);
	return 0;
}

static int cmd_probe(const char *url, const char *initiator, const char *user,
		     const char *secret_file, int expect_refused)
{
	static const char *const names[] = {"accepted", "refused with DATA PROTECT",
					    "failed with another SCSI error"};
	enum tgt_probe_result res;
	char *secret = NULL;
	size_t len = 0;
	int r;

	if (secret_file) {
		r = io_read_file(secret_file, SECRET_FILE_MAX, &secret, &len);
		if (r < 0)
			die(2, "cannot read '%s': %s", secret_file, strerror(-r));
		while (len > 0 && (secret[len - 1] == '\n' || secret[len - 1] == '\r'))
			secret[--len] = '\0';
	}
	r = tgt_probe_write(url, initiator, user, secret, &res);
	if (secret) {
		explicit_bzero(secret, len);
		free(secret);
	}
	if (r < 0)
		return 1;
	printf("write %s\n", names[res]);
	return (expect_refused ? res == TGT_PROBE_PROTECTED : res == TGT_PROBE_WRITTEN) ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"control-port", required_argument, NULL, 'C'},
		{"socket", required_argument, NULL, 'S'},
		{"desired", required_argument, NULL, 'd'},
		{"prefix", required_argument, NULL, 'p'},
		{"state", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"portal", required_argument, NULL, 'P'},
		{"log", required_argument, NULL, 'l'},
		{"timeout", required_argument, NULL, 't'},
		{"verbose", no_argument, NULL, 'v'},
		{"initiator", required_argument, NULL, 'I'},
		{"user", required_argument, NULL, 'U'},
		{"secret-file", required_argument, NULL, 'F'},
		{"expect-refused", no_argument, NULL, 'E'},
		{NULL, 0, NULL, 0},
	};
	struct tgt_ctl ctl;
	const char *desired = NULL, *prefix = NULL, *portal = NULL, *log = NULL, *cmd;
	const char *initiator = NULL, *user = NULL, *secret_file = NULL;
	int c, as_json = 0, timeout_ms = 10000, rc, expect_refused = 0;

	log_init("gc-targets", LOG_WARN);
	tgt_ctl_init(&ctl);
	while ((c = getopt_long(argc, argv, "+C:v", opts, NULL)) != -1) {
		switch (c) {
		case 'C':
			if (parse_int(optarg, 0, 32767, &ctl.control_port) < 0)
				die(2, "bad control port '%s'", optarg);
			break;
		case 'S':
			ctl.ipc_socket = optarg;
			break;
		case 'v':
			log_set_level(log_get_level() == LOG_INFO ? LOG_DEBUG : LOG_INFO);
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	cmd = argv[optind];
	optind++;
	if (strcmp(cmd, "iqn") == 0) {
		char t[IQN_MAX + 1], i[IQN_MAX + 1];

		if (argc - optind != 2)
			usage();
		if (iqn_machine_target(argv[optind], argv[optind + 1], t, sizeof(t)) < 0 ||
		    iqn_machine_initiator(argv[optind], argv[optind + 1], i, sizeof(i)) < 0)
			die(2, "bad prefix '%s' or machine name '%s'", argv[optind],
			    argv[optind + 1]);
		printf("%s\n%s\n", t, i);
		return 0;
	}
	while ((c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			desired = optarg;
			break;
		case 'p':
			prefix = optarg;
			break;
		case 's':
			ctl.state_path = optarg;
			break;
		case 'j':
			as_json = 1;
			break;
		case 'P':
			portal = optarg;
			break;
		case 'l':
			log = optarg;
			break;
		case 't':
			if (parse_int(optarg, 1, 3600000, &timeout_ms) < 0)
				die(2, "bad timeout '%s'", optarg);
			break;
		case 'v':
			log_set_level(log_get_level() == LOG_INFO ? LOG_DEBUG : LOG_INFO);
			break;
		case 'I':
			initiator = optarg;
			break;
		case 'U':
			user = optarg;
			break;
		case 'F':
			secret_file = optarg;
			break;
		case 'E':
			expect_refused = 1;
			break;
		default:
			usage();
		}
	}
	if (strcmp(cmd, "write-probe") == 0) {
		if (optind + 1 != argc || !initiator)
			usage();
		return cmd_probe(argv[optind], initiator, user, secret_file, expect_refused);
	}
	if (optind != argc)
		usage();
	if (strcmp(cmd, "show") == 0) {
		rc = cmd_show(&ctl, as_json);
	} else if (strcmp(cmd, "reconcile") == 0 || strcmp(cmd, "plan") == 0) {
		if (!desired)
			usage();
		rc = cmd_reconcile(&ctl, desired, prefix, as_json, cmd[0] == 'p');
	} else if (strcmp(cmd, "start") == 0) {
		rc = cmd_start(&ctl, portal, log, timeout_ms);
	} else if (strcmp(cmd, "shutdown") == 0) {
		rc = tgtd_shutdown(&ctl, timeout_ms) < 0 ? 1 : 0;
	} else {
		usage();
	}
	tgt_ctl_release(&ctl);
	return rc;
}
