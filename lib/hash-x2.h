/* SHA-256 of two equal-length buffers at once (see hash-x2.c). */
#ifndef GC_LIB_HASH_X2_H
#define GC_LIB_HASH_X2_H

#include <stddef.h>

#include "lib/hash.h"

/* The SHA-256 of a[0, len) into *ha and of b[0, len) into *hb: the same
 * digests as two hash_buf() calls, in about half their CPU time on a CPU
 * with the SHA extensions (two messages interleaved on one core). */
void hash_buf2(const void *a, const void *b, size_t len, struct hash *ha, struct hash *hb);

/* 1 when hash_buf2 uses the two-lane SHA-NI path on this CPU. */
int hash_x2_accelerated(void);

/* Tests and benchmarks: 1 makes hash_buf2 use two hash_buf() calls. */
void hash_x2_force_portable(int on);

#endif
