/* Logging. Lines are formatted into one buffer and written with a single
 * write(2), so concurrent writers (daemon, workers, children sharing the fd)
 * never interleave within a line. Debug lines name the function; user-facing
 * error lines name it too, which is what an operator quotes in a report. */
#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "goldcache";
static enum log_level log_max = LOG_INFO;
static int log_fd = 2;
static int log_ts;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

void log_init(const char *prog, enum log_level max)
{
	const char *env = getenv("GOLDCACHE_DEBUG");

	log_prog = prog;
	log_max = max;
	if (env && *env && strcmp(env, "0") != 0)
		log_max = LOG_DEBUG;
}

void log_set_level(enum log_level max)
{
	log_max = max;
}
enum log_level log_get_level(void)
{
	return log_max;
}
void log_set_fd(int fd)
{
	log_fd = fd;
}
void log_set_timestamps(int on)
{
	log_ts = on;
}

void log_vmsg(enum log_level lvl, const char *func, const char *fmt, va_list ap)
{
	char line[2048];
	size_t n = 0;
	int r, saved = errno;

	if (lvl > log_max)
		return;
	if (log_ts) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n += strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		r = snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
		if (r > 0)
			n += (size_t)r;
	}
	if (lvl == LOG_INFO)
		r = snprintf(line + n, sizeof(line) - n, "%s: ", log_prog);
	else
		r = snprintf(line + n, sizeof(line) - n, "%s: %s: %s: ", log_prog, level_names[lvl],
			     func);
	if (r > 0 && (size_t)r < sizeof(line) - n)
		n += (size_t)r;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(log_fd, line, n) < 0) {
		/* nowhere left to report it */
	}
	errno = saved;
}

void log_msg(enum log_level lvl, const char *func, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, func, fmt, ap);
	va_end(ap);
}

void die(int code, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(line, sizeof(line), fmt, ap) < 0)
		line[0] = '\0';
	va_end(ap);
	fprintf(stderr, "%s: %s\n", log_prog, line);
	exit(code);
}
