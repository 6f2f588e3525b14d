/* Unit tests for lib/manifest: encode/decode round trip, the canonical form,
 * geometry, and that the decoder rejects each kind of off-format input with a
 * message naming the line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/manifest.h"
#include "lib/util.h"
#include "tests/tap.h"

static struct manifest *sample(void)
{
	struct manifest *m;

	if (manifest_new("debian-12", 3 * 65536 + 512, 65536, &m) < 0)
		abort();
	m->version = 7;
	m->parent = 6;
	m->created = 1700000000;
	m->kind = MANIFEST_DISK;
	for (uint64_t i = 0; i < m->nchunks; i++) {
		if (i == 1)
			continue; /* stays a zero chunk */
		m->chunks[i].zero = 0;
		hash_buf(&i, sizeof(i), &m->chunks[i].id);
	}
	return m;
}

static char *encode(const struct manifest *m, size_t *len)
{
	char *t = NULL;

	if (manifest_encode(m, &t, len) < 0)
		abort();
	return t;
}

/* Recomputes the trailing checksum of a hand-edited manifest body. */
static char *reseal(const char *body)
{
	struct hash h;
	char hex[HASH_HEX_LEN + 1];

	hash_buf(body, strlen(body), &h);
	return xasprintf("%ssha256 %s\n", body, hash_to_hex(&h, hex));
}

static void expect_reject(const char *text, const char *what, const char *want_in_err)
{
	struct manifest *m = NULL;
	char err[256];
	int r = manifest_decode(text, strlen(text), &m, err, sizeof(err));

	is_int(r, -EINVAL, "rejects %s", what);
	if (!ok(strstr(err, want_in_err) != NULL, "message for %s names '%s'", what, want_in_err))
		diag("got '%s'", err);
	manifest_free(m);
}

static void test_roundtrip(void)
{
	struct manifest *m = sample(), *d = NULL;
	char err[256], *t, *t2;
	size_t len, len2;

	t = encode(m, &len);
	is_int(m->nchunks, 4, "geometry: 4 chunks for 3*64K+512");
	is_int(manifest_chunk_len(m, 3), 512, "last chunk is short");
	is_int(manifest_chunk_len(m, 0), 65536, "full chunk");
	is_int(manifest_chunk_len(m, 4), 0, "past the end");
	is_int(manifest_decode(t, len, &d, err, sizeof(err)), 0, "decodes what it encodes");
	if (!d)
		return;
	is_str(d->name, "debian-12", "name");
	is_int(d->version, 7, "version");
	is_int(d->parent, 6, "parent");
	is_int(d->created, 1700000000, "created");
	is_int(d->kind, MANIFEST_DISK, "kind");
	is_int(d->size, 3 * 65536 + 512, "size");
	is_int(d->chunk_size, 65536, "chunk size is a field");
	is_int(d->chunks[1].zero, 1, "zero chunk kept");
	ok(hash_equal(&d->chunks[2].id, &m->chunks[2].id) && !d->chunks[2].zero, "chunk id kept");
	t2 = encode(d, &len2);
	ok(len == len2 && memcmp(t, t2, len) == 0, "canonical: re-encoding gives the same bytes");
	ok(strstr(t, "\nzero\n") != NULL, "zero chunk written as 'zero'");
	free(t2);
	manifest_free(d);
	free(t);
	manifest_free(m);
}

static void test_empty_and_limits(void)
{
	struct manifest *m, *d = NULL;
	char *t;
	size_t len;

	is_int(manifest_new("e", 0, 1u << 20, &m), 0, "empty image allowed");
	m->version = 1;
	t = encode(m, &len);
	is_int(manifest_decode(t, len, &d, NULL, 0), 0, "empty image round trip");
	ok(d && d->nchunks == 0, "no chunks");
	manifest_free(d);
	free(t);
	manifest_free(m);
	is_int(manifest_new("x", 1000, 65536, &m), -EINVAL, "size not a multiple of 512");
	is_int(manifest_new("x", 512, 65537, &m), -EINVAL, "chunk size not a power of two");
	is_int(manifest_new("x", 512, 2048, &m), -EINVAL, "chunk size below 4K");
	is_int(manifest_new("x", (uint64_t)MANIFEST_MAX_CHUNKS * 4096 + 4096, 4096, &m), -EINVAL,
	       "too many chunks");
	is_int(manifest_geometry_ok(1ull << 40, 1u << 20), 0, "1 TiB at 1 MiB is fine");
	is_int(manifest_new("a/b", 512, 4096, &m), 0, "manifest_new does not judge names");
	m->version = 1;
	is_int(manifest_encode(m, &t, &len), -EINVAL, "encode refuses a bad name");
	m->version = 0;
	memcpy(m->name, "ok", 3);
	is_int(manifest_encode(m, &t, &len), -EINVAL, "encode refuses version 0");
	manifest_free(m);
}

static void test_rejects(void)
{
	struct manifest *m = sample();
	char *t, *body, *bad, *p;
	size_t len;

	t = encode(m, &len);
	body = xstrndup(t, (size_t)(strstr(t, "sha256 ") - t));

	expect_reject("", "empty input", "line 1");
	expect_reject("goldcache-manifest 2\n", "newer format", "line 1");
	expect_reject("goldcache-manifest 1", "missing newline", "newline");

	/* checksum: flip one hex digit of a chunk id */
	bad = xstrdup(t);
	p = strstr(bad, "\nzero\n") + 6;
	*p = *p == 'a' ? 'b' : 'a';
	expect_reject(bad, "edited chunk id", "checksum mismatch");
	free(bad);

	/* field-level errors, each resealed so only the named problem remains */
	{
		static const struct {
			const char *from, *to, *what, *want;
		} cases[] = {
			{"name debian-12", "name a/b", "slash in name", "line 2: invalid name"},
			{"name debian-12", "name  x", "double space", "line 2"},
			{"version 7", "version 07", "leading zero", "line 3"},
			{"version 7", "version 0", "version 0", "line 3"},
			{"version 7", "version -7", "negative", "line 3"},
			{"created 1700000000", "created 1e9", "non-decimal", "line 4"},
			{"kind disk", "kind tape", "unknown kind", "line 5"},
			{"size 197120", "size 197121", "size not multiple of 512", "line 6"},
			{"chunk-size 65536", "chunk-size 65535", "chunk size not power of 2",
			 "line 7"},
			{"parent 6", "parent x", "bad parent", "line 8"},
			{"chunks 4", "chunks 5", "wrong chunk count", "line 9"},
			{"\nzero\n", "\nZERO\n", "upper-case zero", "line 11"},
			{"\nzero\n", "\nzero \n", "trailing space", "line 11"},
			{"version 7\n", "version 7\r\n", "CR", "line 3"},
			{"kind disk\n", "kind disk\nextra 1\n", "unknown key", "line 6"},
			{"name debian-12\n", "", "missing key", "line 2"},
		};
		for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
			char *edited, *sealed, *at = strstr(body, cases[i].from);

			if (!at)
				abort();
			edited = xasprintf("%.*s%s%s", (int)(at - body), body, cases[i].to,
					   at + strlen(cases[i].from));
			sealed = reseal(edited);
			expect_reject(sealed, cases[i].what, cases[i].want);
			free(sealed);
			free(edited);
		}
	}
	/* an upper-case chunk id */
	{
		char *edited = xstrdup(body), *sealed;

		p = strstr(edited, "chunks 4\n") + 9;
		for (int i = 0; i < 64; i++)
			if (p[i] >= 'a' && p[i] <= 'f')
				p[i] = (char)(p[i] - 32);
		sealed = reseal(edited);
		expect_reject(sealed, "upper-case chunk id", "line 10");
		free(sealed);
		free(edited);
	}
	/* embedded NUL */
	{
		struct manifest *d = NULL;
		char err[256], *copy = xstrdup(t);

		copy[12] = '\0';
		is_int(manifest_decode(copy, len, &d, err, sizeof(err)), -EINVAL,
		       "rejects NUL byte");
		ok(strstr(err, "line 1") != NULL, "NUL reported on line 1");
		free(copy);
	}
	/* truncated at every length: never accepted, never crashes */
	{
		int accepted = 0;

		for (size_t n = 0; n < len; n++) {
			struct manifest *d = NULL;

			if (manifest_decode(t, n, &d, NULL, 0) == 0)
				accepted++;
			manifest_free(d);
		}
		is_int(accepted, 0, "no truncation of a manifest decodes");
	}
	bad = xasprintf("%sx\n", t);
	expect_reject(bad, "trailing data", "trailing data");
	free(bad);
	free(body);
	free(t);
	manifest_free(m);
}

int main(void)
{
	test_roundtrip();
	test_empty_and_limits();
	test_rejects();
	return done_testing();
}
