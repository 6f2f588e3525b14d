/* Running tgtadm (see tgtadm.h).
 *
 * tgtadm is a thin client: it connects to tgtd's control socket
 * ($TGT_IPC_SOCKET or /var/run/tgtd/socket, plus ".PORT"), sends one request
 * and prints tgtd's answer. It exits 0 on success, 22 (EINVAL) for every error
 * tgtd reports (and for its own usage errors), and the connect errno (ENOENT,
 * ECONNREFUSED, ENOTCONN) when no tgtd listens. Its stderr is the only
 * explanation, so it is logged, once, with the command line; the CHAP secret in
 * `--password` is masked by spawn_argv_str. */
#include "targets/tgtadm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/spawn.h"
#include "lib/util.h"
#include "targets/tgtshow.h"

#define TGTADM_MAX_ARGS 32

void tgt_ctl_init(struct tgt_ctl *ctl)
{
	memset(ctl, 0, sizeof(*ctl));
}

static int is_change(const char *const *args)
{
	for (size_t i = 0; args[i] && args[i + 1]; i++)
		if (strcmp(args[i], "--op") == 0)
			return strcmp(args[i + 1], "show") != 0;
	return 1;
}

static void strip_nl(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
}

static int run(struct tgt_ctl *ctl, const char *const *args, char **out, size_t *out_len, int quiet)
{
	const char *argv[TGTADM_MAX_ARGS + 6];
	char port[16], line[1024];
	char *env_sock = NULL, *sout = NULL, *serr = NULL;
	const char *env[2] = {NULL, NULL};
	struct spawn_opts o = SPAWN_OPTS_INIT;
	size_t n = 0, slen = 0;
	int code = -1, r;

	if (out)
		*out = NULL;
	if (out_len)
		*out_len = 0;
	snprintf(port, sizeof(port), "%d", ctl->control_port);
	argv[n++] = ctl->tgtadm ? ctl->tgtadm : "tgtadm";
	argv[n++] = "-C";
	argv[n++] = port;
	argv[n++] = "--lld";
	argv[n++] = "iscsi";
	for (size_t i = 0; args[i]; i++) {
		if (i >= TGTADM_MAX_ARGS)
			return -E2BIG;
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	if (ctl->ipc_socket) {
		env_sock = xasprintf("TGT_IPC_SOCKET=%s", ctl->ipc_socket);
		env[0] = env_sock;
		o.env = env;
	}
	o.timeout_ms = ctl->timeout_ms > 0 ? ctl->timeout_ms : 10000;
	o.out = &sout;
	o.out_len = &slen;
	o.err = &serr;
	o.out_max = TGTSHOW_MAX_INPUT + 1;
	ctl->n_calls++;
	if (is_change(args))
		ctl->n_changes++;
	r = spawn_run(argv, &o, &code);
	spawn_argv_str(argv, line, sizeof(line));
	if (r < 0) {
		log_error("cannot run '%s': %s", line, strerror(-r));
		goto out;
	}
	if (code != 0) {
		strip_nl(serr);
		/* 22: tgtd said no; a connect errno: nobody listens */
		r = code == ENOENT || code == ECONNREFUSED || code == ENOTCONN ? -ECONNREFUSED
									       : -EIO;
		if (quiet)
			log_debug("'%s' failed (exit %d): %s", line, code, serr);
		else if (r == -ECONNREFUSED)
			log_error("no tgtd answers on control port %d: '%s': %s", ctl->control_port,
				  line, serr);
		else
			log_error("'%s' failed (exit %d): %s", line, code, serr);
		goto out;
	}
	log_debug("ran '%s'", line);
	if (slen > TGTSHOW_MAX_INPUT) {
		log_error("'%s' printed more than %u bytes", line, TGTSHOW_MAX_INPUT);
		r = -E2BIG;
		goto out;
	}
	if (out) {
		*out = sout;
		sout = NULL;
		if (out_len)
			*out_len = slen;
	}
out:
	free(sout);
	free(serr);
	free(env_sock);
	return r;
}

int tgtadm_run(struct tgt_ctl *ctl, const char *const *args, char **out, size_t *out_len)
{
	return run(ctl, args, out, out_len, 0);
}

int tgtadm_try(struct tgt_ctl *ctl, const char *const *args, char **out, size_t *out_len)
{
	return run(ctl, args, out, out_len, 1);
}

int tgtadm_ping(struct tgt_ctl *ctl)
{
	const char *args[] = {"--op", "show", "--mode", "system", NULL};

	return tgtadm_try(ctl, args, NULL, NULL);
}
