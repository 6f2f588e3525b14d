/* SHA-256 chunk ids (OpenSSL libcrypto). */
#ifndef GC_LIB_HASH_H
#define GC_LIB_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_LEN 32
#define HASH_HEX_LEN 64

struct hash {
	uint8_t b[HASH_LEN];
};

/* Hash of a buffer. */
void hash_buf(const void *data, size_t len, struct hash *out);
/* Lower-case hex, NUL-terminated, into out (HASH_HEX_LEN + 1 bytes). Returns out. */
char *hash_to_hex(const struct hash *h, char *out);
/* Exactly 64 hex digits, either case. 0 or -EINVAL. */
int hash_from_hex(const char *hex, struct hash *out);
int hash_equal(const struct hash *a, const struct hash *b);

/* Incremental hashing for streams (whole-image digests). */
struct hash_ctx;
struct hash_ctx *hash_ctx_new(void);
void hash_ctx_update(struct hash_ctx *c, const void *data, size_t len);
/* Finishes and frees c. */
void hash_ctx_final(struct hash_ctx *c, struct hash *out);

#endif
