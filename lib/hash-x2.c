/* Two SHA-256 digests at once, for verifying chunks (hash-x2.h).
 *
 * Why: the agent verifies every chunk it receives, and hashing was half of
 * its CPU per GB while hydrating (docs/agent.md, Performance). On the x86
 * SHA extensions one message is bound by the latency of SHA256RNDS2: each
 * pair of rounds waits for the previous one, and the unit idles between
 * them. Two independent messages interleaved round by round keep it busy:
 * measured 3.35 GB/s for two lanes against 1.75 GB/s for OpenSSL's
 * one-message SHA-NI code on the build machine's AMD EPYC (four lanes gave
 * no more). OpenSSL has no public multi-message SHA-256, so this is the one
 * hand-written hash in the tree; hash_buf (OpenSSL) stays the reference:
 * tests/unit/test-hash-x2.c compares the two on every length up to a few
 * blocks and on whole chunks, and a CPU without SHA-NI (or any non-x86
 * build) gets two hash_buf calls.
 *
 * The round code is the usual SHA-NI schedule (Intel's "Intel SHA
 * Extensions" paper, 2013) written as a loop over the sixteen four-round
 * groups: W[g] for g >= 4 is msg2(msg1(W[g-4], W[g-3]) + W[g-1:g-2] >> 32,
 * W[g-1]); the compiler unrolls it and interleaves the two lanes. */
#include "lib/hash-x2.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HX2_NI 1
#endif

static int force_portable;

void hash_x2_force_portable(int on)
{
	__atomic_store_n(&force_portable, on, __ATOMIC_RELAXED);
}

#ifdef HX2_NI

static const uint32_t k256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2};

static const uint32_t iv256[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
				  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

#define HX2_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* The state of one lane in SHA-NI order: s0 = ABEF, s1 = CDGH. */
struct lane {
	__m128i s0, s1;
};

/* Four rounds (group g of sixteen) of one lane over the block at p. */
#define HX2_GROUP(L, W, g, p)                                                                     \
	do {                                                                                      \
		__m128i w_, m_;                                                                   \
		if ((g) < 4)                                                                      \
			w_ = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 16 * (g))), \
					      bswap);                                             \
		else                                                                              \
			w_ = _mm_sha256msg2_epu32(                                                \
				_mm_add_epi32(                                                    \
					_mm_sha256msg1_epu32(W[(g)&3], W[((g) + 1) & 3]),         \
					_mm_alignr_epi8(W[((g) + 3) & 3], W[((g) + 2) & 3], 4)),  \
				W[((g) + 3) & 3]);                                                \
		W[(g)&3] = w_;                                                                    \
		m_ = _mm_add_epi32(w_, _mm_loadu_si128((const __m128i *)&k256[4 * (g)]));         \
		(L).s1 = _mm_sha256rnds2_epu32((L).s1, (L).s0, m_);                               \
		m_ = _mm_shuffle_epi32(m_, 0x0E);                                                 \
		(L).s0 = _mm_sha256rnds2_epu32((L).s0, (L).s1, m_);                               \
	} while (0)

/* nblk 64-byte blocks of a into la and of b into lb, interleaved. */
HX2_TARGET static void blocks2(struct lane *la, struct lane *lb, const uint8_t *a, const uint8_t *b,
			       size_t nblk)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
	struct lane x = *la, y = *lb;

	for (size_t n = 0; n < nblk; n++, a += 64, b += 64) {
		struct lane x0 = x, y0 = y;
		__m128i wa[4], wb[4];

#pragma GCC unroll 16
		for (int g = 0; g < 16; g++) {
			HX2_GROUP(x, wa, g, a);
			HX2_GROUP(y, wb, g, b);
		}
		x.s0 = _mm_add_epi32(x.s0, x0.s0);
		x.s1 = _mm_add_epi32(x.s1, x0.s1);
		y.s0 = _mm_add_epi32(y.s0, y0.s0);
		y.s1 = _mm_add_epi32(y.s1, y0.s1);
	}
	*la = x;
	*lb = y;
}

HX2_TARGET static void lane_init(struct lane *l)
{
	__m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&iv256[0]), 0xB1);
	__m128i u = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&iv256[4]), 0x1B);

	l->s0 = _mm_alignr_epi8(t, u, 8); /* ABEF */
	l->s1 = _mm_blend_epi16(u, t, 0xF0); /* CDGH */
}

HX2_TARGET static void lane_final(const struct lane *l, struct hash *out)
{
	__m128i t = _mm_shuffle_epi32(l->s0, 0x1B), u = _mm_shuffle_epi32(l->s1, 0xB1);
	uint32_t st[8];

	_mm_storeu_si128((__m128i *)&st[0], _mm_blend_epi16(t, u, 0xF0)); /* ABCD */
	_mm_storeu_si128((__m128i *)&st[4], _mm_alignr_epi8(u, t, 8)); /* EFGH */
	for (int i = 0; i < 8; i++) {
		out->b[4 * i] = (uint8_t)(st[i] >> 24);
		out->b[4 * i + 1] = (uint8_t)(st[i] >> 16);
		out->b[4 * i + 2] = (uint8_t)(st[i] >> 8);
		out->b[4 * i + 3] = (uint8_t)st[i];
	}
}

/* The last partial block, the 0x80 byte and the length: one or two blocks. */
static size_t tail(uint8_t out[128], const uint8_t *data, size_t len)
{
	size_t rem = len % 64, n = rem < 56 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;

	memset(out, 0, 128);
	memcpy(out, data + len - rem, rem);
	out[rem] = 0x80;
	for (int i = 0; i < 8; i++)
		out[n - 1 - i] = (uint8_t)(bits >> (8 * i));
	return n / 64;
}

HX2_TARGET static void hash2_ni(const uint8_t *a, const uint8_t *b, size_t len, struct hash *ha,
				struct hash *hb)
{
	struct lane la, lb;
	uint8_t ta[128], tb[128];
	size_t nt;

	lane_init(&la);
	lane_init(&lb);
	blocks2(&la, &lb, a, b, len / 64);
	nt = tail(ta, a, len);
	tail(tb, b, len);
	blocks2(&la, &lb, ta, tb, nt);
	lane_final(&la, ha);
	lane_final(&lb, hb);
}

/* 1 with SHA (CPUID 7.0 EBX bit 29), SSE4.1 and SSSE3 (1.0 ECX 19, 9). */
static int cpu_has_sha_ni(void)
{
	static int known; /* 0 unknown, 1 yes, 2 no */
	int v = __atomic_load_n(&known, __ATOMIC_RELAXED);

	if (!v) {
		unsigned eax, ebx, ecx, edx;
		int yes = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 19)) &&
			  (ecx & (1u << 9)) && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) &&
			  (ebx & (1u << 29));

		v = yes ? 1 : 2;
		__atomic_store_n(&known, v, __ATOMIC_RELAXED);
	}
	return v == 1;
}

int hash_x2_accelerated(void)
{
	return !__atomic_load_n(&force_portable, __ATOMIC_RELAXED) && cpu_has_sha_ni();
}

void hash_buf2(const void *a, const void *b, size_t len, struct hash *ha, struct hash *hb)
{
	if (!hash_x2_accelerated()) {
		hash_buf(a, len, ha);
		hash_buf(b, len, hb);
		return;
	}
	hash2_ni(a, b, len, ha, hb);
}

#else /* no SHA-NI path on this architecture */

int hash_x2_accelerated(void)
{
	return 0;
}

void hash_buf2(const void *a, const void *b, size_t len, struct hash *ha, struct hash *hb)
{
	hash_buf(a, len, ha);
	hash_buf(b, len, hb);
}

#endif
