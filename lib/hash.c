/* SHA-256 through OpenSSL's EVP interface. The digest is fetched once
 * (EVP_MD_fetch is a lookup, not free), so hashing a chunk costs the hash
 * itself; OpenSSL picks SHA-NI where present. */
#include "lib/hash.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

static EVP_MD *sha256_md;

static const EVP_MD *md(void)
{
	/* benign race: both threads store the same algorithm */
	if (!sha256_md)
		sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!sha256_md)
		abort();
	return sha256_md;
}

void hash_buf(const void *data, size_t len, struct hash *out)
{
	unsigned int n = 0;

	/* one-shot: a context per call costs nothing next to hashing a chunk,
	 * and leaves no per-thread state behind when worker threads exit */
	if (!EVP_Digest(data, len, out->b, &n, md(), NULL) || n != HASH_LEN)
		abort();
}

char *hash_to_hex(const struct hash *h, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < HASH_LEN; i++) {
		out[2 * i] = digits[h->b[i] >> 4];
		out[2 * i + 1] = digits[h->b[i] & 15];
	}
	out[HASH_HEX_LEN] = '\0';
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hash_from_hex(const char *hex, struct hash *out)
{
	for (size_t i = 0; i < HASH_LEN; i++) {
		int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[HASH_HEX_LEN] == '\0' ? 0 : -EINVAL;
}

int hash_equal(const struct hash *a, const struct hash *b)
{
	return memcmp(a->b, b->b, HASH_LEN) == 0;
}

struct hash_ctx {
	EVP_MD_CTX *ctx;
};

struct hash_ctx *hash_ctx_new(void)
{
	struct hash_ctx *c = xmalloc(sizeof(*c));

	c->ctx = EVP_MD_CTX_new();
	if (!c->ctx || !EVP_DigestInit_ex(c->ctx, md(), NULL))
		abort();
	return c;
}

void hash_ctx_update(struct hash_ctx *c, const void *data, size_t len)
{
	if (!EVP_DigestUpdate(c->ctx, data, len))
		abort();
}

void hash_ctx_final(struct hash_ctx *c, struct hash *out)
{
	unsigned int n = 0;

	if (!EVP_DigestFinal_ex(c->ctx, out->b, &n) || n != HASH_LEN)
		abort();
	EVP_MD_CTX_free(c->ctx);
	free(c);
}
