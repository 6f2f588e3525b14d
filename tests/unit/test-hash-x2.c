/* Unit tests for lib/hash-x2: hash_buf2 gives exactly OpenSSL's SHA-256
 * (hash_buf) for both buffers, at every length around the block and padding
 * edges, on whole chunks, at unaligned addresses, and on the portable path. */
#include <stdlib.h>
#include <string.h>

#include "lib/hash-x2.h"
#include "lib/hash.h"
#include "tests/tap.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		p[i] = (uint8_t)rng;
	}
}

/* Both digests of hash_buf2 against hash_buf at each length in [lo, hi]. */
static int agree(const uint8_t *a, const uint8_t *b, size_t lo, size_t hi, size_t *bad)
{
	for (size_t len = lo; len <= hi; len++) {
		struct hash ha, hb, ra, rb;

		hash_buf2(a, b, len, &ha, &hb);
		hash_buf(a, len, &ra);
		hash_buf(b, len, &rb);
		if (!hash_equal(&ha, &ra) || !hash_equal(&hb, &rb)) {
			*bad = len;
			return 0;
		}
	}
	return 1;
}

int main(void)
{
	size_t big = 1u << 20, bad = 0;
	uint8_t *a = malloc(big + 1), *b = malloc(big + 1);
	struct hash ha, hb, r;
	char hex[HASH_HEX_LEN + 1];

	fill(a, big + 1);
	fill(b, big + 1);
	diag("two-lane SHA-NI: %s", hash_x2_accelerated() ? "yes" : "no (portable path only)");
	hash_buf2("abc", "", 0, &ha, &hb);
	is_str(hash_to_hex(&ha, hex),
	       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	       "empty message: the FIPS 180 digest");
	hash_buf2("abc", "abd", 3, &ha, &hb);
	is_str(hash_to_hex(&ha, hex),
	       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	       "'abc': the FIPS 180 digest");
	ok(!hash_equal(&ha, &hb), "a one-byte difference in the other lane gives another digest");
	bad = 0;
	ok(agree(a, b, 0, 300, &bad),
	   "every length 0-300 (padding in one or two blocks) agrees with hash_buf (first bad: "
	   "%zu)",
	   bad);
	ok(agree(a + 1, b + 3, 4000, 4200, &bad),
	   "unaligned buffers, lengths 4000-4200 agree (first bad: %zu)", bad);
	ok(agree(a, b, big - 1, big, &bad),
	   "a whole 1 MiB chunk and one byte less agree (first bad: %zu)", bad);
	hash_buf2(a, a, big, &ha, &hb);
	hash_buf(a, big, &r);
	ok(hash_equal(&ha, &r) && hash_equal(&hb, &r), "the same buffer in both lanes");
	hash_x2_force_portable(1);
	ok(!hash_x2_accelerated(), "forced portable: not accelerated");
	ok(agree(a, b, 0, 130, &bad), "portable path agrees (first bad: %zu)", bad);
	hash_x2_force_portable(0);
	free(a);
	free(b);
	return done_testing();
}
