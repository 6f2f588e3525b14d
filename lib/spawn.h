/* Running external programs (tgtadm, qemu-img, dnsmasq, tgtd) with argv arrays,
 * never through a shell, with a time limit and bounded output capture. */
#ifndef GC_LIB_SPAWN_H
#define GC_LIB_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

struct spawn_opts {
	int timeout_ms; /* 0: no limit (spawn_run only) */
	int stdin_fd; /* -1: /dev/null */
	int stdout_fd; /* -1: inherit, unless out is set */
	int stderr_fd; /* -1: inherit, unless err is set */
	char **out; /* capture stdout into a heap NUL-terminated string */
	size_t *out_len;
	char **err; /* capture stderr likewise */
	size_t out_max; /* capture limit per stream; the rest is drained and dropped */
	const char *const *env; /* extra NAME=VALUE entries, NULL-terminated, or NULL */
	int new_session; /* setsid() in the child (supervised daemons) */
	int death_signal; /* sent to the child when our thread dies (PR_SET_PDEATHSIG):
			   * supervised daemons never outlive a killed goldcached; 0: none */
};

#define SPAWN_OPTS_INIT                                                              \
	{                                                                            \
		.stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .out_max = 1 << 20 \
	}

/* Runs argv[0] (PATH search) and waits. Returns 0 when it ran; *code is its exit
 * status, or 128 + signal. -ETIMEDOUT when killed at the time limit; -ENOENT (or
 * the exec errno) when it could not start. */
int spawn_run(const char *const argv[], const struct spawn_opts *o, int *code);

/* Starts argv[0] without waiting (no capture; fds as in o). Returns 0 and *pid. */
int spawn_start(const char *const argv[], const struct spawn_opts *o, pid_t *pid);

/* Waits up to timeout_ms for pid; -ETIMEDOUT if it is still running. */
int spawn_wait(pid_t pid, int timeout_ms, int *code);

/* Formats argv as one line for logs ("tgtadm --lld iscsi ..."); the argument
 * after "--password" is printed as "***". */
void spawn_argv_str(const char *const argv[], char *buf, size_t size);

#endif
