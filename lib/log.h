/* Logging: one line per event on stderr (or a file), prefixed with the program
 * name, level and the function that logged. Log once, where the object is known;
 * callers above propagate the error code silently. */
#ifndef GC_LIB_LOG_H
#define GC_LIB_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Sets the program name and the most verbose level printed (default LOG_INFO). */
void log_init(const char *prog, enum log_level max);
void log_set_level(enum log_level max);
enum log_level log_get_level(void);
/* Writes log lines to fd instead of stderr (the daemon's log file). */
void log_set_fd(int fd);
/* Adds a timestamp to each line (daemons). */
void log_set_timestamps(int on);

void log_msg(enum log_level lvl, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level lvl, const char *func, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

#define log_error(...) log_msg(LOG_ERROR, __func__, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __func__, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __func__, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __func__, __VA_ARGS__)

/* Prints "prog: message" to stderr and exits with code; for CLI front ends only. */
void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

#endif
