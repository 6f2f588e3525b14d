/* Small helpers every module uses: allocation that never returns NULL (an
 * out-of-memory appliance cannot do anything useful; it dies loudly), strict
 * number parsing, bounded formatting, monotonic time. */
#ifndef GC_LIB_UTIL_H
#define GC_LIB_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* Grows *p (holding *cap elements of size each) to hold at least want elements. */
void xgrow(void **p, size_t *cap, size_t want, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Heap-allocated printf; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Strict parsers: the whole string must be a number in range. 0 or -EINVAL/-ERANGE. */
int parse_u64(const char *s, uint64_t *out);
int parse_u32(const char *s, uint32_t *out);
int parse_int(const char *s, int min, int max, int *out);
/* "4096", "4K", "64KiB", "1M", "2G", "1T" (binary multiples). */
int parse_size(const char *s, uint64_t *out);

/* snprintf that reports truncation: 0 or -ENAMETOOLONG. */
int fmt_buf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Human-readable size into buf ("1.5 GiB"). Returns buf. */
const char *fmt_size(char *buf, size_t size, uint64_t bytes);

/* Monotonic clock in milliseconds and nanoseconds. */
uint64_t now_ms(void);
uint64_t now_ns(void);
/* Wall clock, seconds since the epoch. */
int64_t now_unix(void);
/* Sleeps ms milliseconds, through signals. */
void sleep_ms(unsigned ms);

/* Is s a safe object name: 1-64 chars of [A-Za-z0-9._-], not starting with '.' or '-'. */
int name_is_valid(const char *s);

#endif
