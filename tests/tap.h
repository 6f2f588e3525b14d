/* Minimal TAP producer for C unit tests, read by prove (as git's test-lib and
 * OpenSSH's test_helper). Header-only: each tests/unit/test-<module>.c includes it. */
#ifndef GC_TESTS_TAP_H
#define GC_TESTS_TAP_H

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 2, 3), unused)) static int ok(int cond, const char *fmt, ...)
{
	va_list ap;

	tap_n++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		tap_failed++;
	fflush(stdout);
	return cond;
}

#define is_int(got, want, ...)                                                                   \
	do {                                                                                     \
		long long g_ = (long long)(got), w_ = (long long)(want);                         \
		if (!ok(g_ == w_, __VA_ARGS__))                                                  \
			printf("#   got %lld, want %lld (%s:%d)\n", g_, w_, __FILE__, __LINE__); \
	} while (0)

#define is_str(got, want, ...)                                                          \
	do {                                                                            \
		const char *g_ = (got), *w_ = (want);                                   \
		if (!ok(g_ && w_ && strcmp(g_, w_) == 0, __VA_ARGS__))                  \
			printf("#   got '%s', want '%s' (%s:%d)\n", g_ ? g_ : "(null)", \
			       w_ ? w_ : "(null)", __FILE__, __LINE__);                 \
	} while (0)

__attribute__((unused)) static void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

__attribute__((unused)) static int done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

/* A fresh temp directory under $TMPDIR for a test; the test removes it at its end
 * with tap_rmtree(). Returns a static buffer: copy it to make a second one. */
__attribute__((unused)) static char *tap_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	static char path[4096];

	snprintf(path, sizeof(path), "%s/gc-unit-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(path)) {
		perror("mkdtemp");
		exit(2);
	}
	return path;
}

static int tap_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 && errno != ENOENT ? errno : 0;
}

/* At a test's end: removes PATH (a tap_tmpdir()) and everything under it, with
 * nftw (no shell, symlinks not followed). When a check failed, PATH is kept for
 * inspection and "# kept PATH" printed instead. A folder that cannot be removed
 * is a failed check naming it. Returns 0, or the errno of what was not removed. */
__attribute__((unused)) static int tap_rmtree(const char *path)
{
	int r;

	if (tap_failed) {
		diag("kept %s", path);
		return 0;
	}
	r = nftw(path, tap_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (r < 0)
		r = errno;
	if (r != 0 && r != ENOENT) {
		ok(0, "remove test folder '%s': %s", path, strerror(r));
		return r;
	}
	return 0;
}

#endif
