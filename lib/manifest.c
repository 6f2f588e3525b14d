/* Manifest encoding (see manifest.h).
 *
 * On-disk text format, version 1. Every line ends in '\n'; no other
 * whitespace, no CR, no NUL; keys in this exact order; numbers are decimal
 * without sign or leading zeros; hex is lower case:
 *
 *     goldcache-manifest 1
 *     name debian
 *     version 3
 *     created 1732480000
 *     kind fs                     (fs: a filesystem image, disk: a whole disk)
 *     size 1073741824             (logical bytes, multiple of 512)
 *     chunk-size 1048576          (power of two, 4 KiB..64 MiB)
 *     parent 2                    (0: none)
 *     chunks 1024                 (== ceil(size / chunk-size))
 *     <64 hex digits>             (one line per chunk: its SHA-256 ...)
 *     zero                        (... or "zero": all zero bytes, not stored)
 *     sha256 <64 hex digits>      (SHA-256 of every byte above this line)
 *
 * The decoder accepts exactly what the encoder writes (one canonical form), so
 * a manifest's bytes are a function of its content. The trailing checksum
 * catches torn or edited files; it is not a signature. Input is untrusted
 * (fetched by the agent over HTTP): every count is bounded before allocating. */
#include "lib/manifest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

int manifest_geometry_ok(uint64_t size, uint32_t chunk_size)
{
	if (chunk_size < MANIFEST_MIN_CHUNK || chunk_size > MANIFEST_MAX_CHUNK ||
	    (chunk_size & (chunk_size - 1)) != 0)
		return -EINVAL;
	if (size % 512 != 0 || size > MANIFEST_MAX_SIZE)
		return -EINVAL;
	if ((size + chunk_size - 1) / chunk_size > MANIFEST_MAX_CHUNKS)
		return -EINVAL;
	return 0;
}

int manifest_new(const char *name, uint64_t size, uint32_t chunk_size, struct manifest **out)
{
	struct manifest *m;

	if (manifest_geometry_ok(size, chunk_size) < 0 || strlen(name) >= sizeof(m->name))
		return -EINVAL;
	m = xcalloc(1, sizeof(*m));
	memcpy(m->name, name, strlen(name) + 1);
	m->size = size;
	m->chunk_size = chunk_size;
	m->nchunks = (size + chunk_size - 1) / chunk_size;
	m->chunks = xcalloc(m->nchunks ? m->nchunks : 1, sizeof(*m->chunks));
	for (uint64_t i = 0; i < m->nchunks; i++)
		m->chunks[i].zero = 1;
	*out = m;
	return 0;
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	free(m->chunks);
	free(m);
}

uint32_t manifest_chunk_len(const struct manifest *m, uint64_t i)
{
	uint64_t off = i * m->chunk_size;

	if (i >= m->nchunks)
		return 0;
	return (uint32_t)MIN((uint64_t)m->chunk_size, m->size - off);
}

const char *manifest_kind_str(enum manifest_kind k)
{
	return k == MANIFEST_DISK ? "disk" : "fs";
}

int manifest_kind_parse(const char *s, enum manifest_kind *out)
{
	if (strcmp(s, "fs") == 0)
		*out = MANIFEST_FS;
	else if (strcmp(s, "disk") == 0)
		*out = MANIFEST_DISK;
	else
		return -EINVAL;
	return 0;
}

int manifest_encode(const struct manifest *m, char **out, size_t *len)
{
	size_t cap, n;
	char *buf, hex[HASH_HEX_LEN + 1];
	struct hash sum;
	int w;

	if (!name_is_valid(m->name) || m->version == 0 || m->version > MANIFEST_MAX_VERSION ||
	    m->parent > MANIFEST_MAX_VERSION || m->created < 0 ||
	    manifest_geometry_ok(m->size, m->chunk_size) < 0 ||
	    m->nchunks != (m->size + m->chunk_size - 1) / m->chunk_size)
		return -EINVAL;
	cap = 512 + (size_t)m->nchunks * (HASH_HEX_LEN + 1) + 8 + HASH_HEX_LEN + 2;
	buf = xmalloc(cap);
	w = snprintf(buf, cap,
		     MANIFEST_MAGIC "\nname %s\nversion %u\ncreated %lld\nkind %s\nsize %llu\n"
				    "chunk-size %u\nparent %u\nchunks %llu\n",
		     m->name, m->version, (long long)m->created, manifest_kind_str(m->kind),
		     (unsigned long long)m->size, m->chunk_size, m->parent,
		     (unsigned long long)m->nchunks);
	if (w < 0 || (size_t)w >= 512) {
		free(buf);
		return -EINVAL;
	}
	n = (size_t)w;
	for (uint64_t i = 0; i < m->nchunks; i++) {
		if (m->chunks[i].zero) {
			n += (size_t)snprintf(buf + n, cap - n, "zero\n");
		} else {
			hash_to_hex(&m->chunks[i].id, buf + n);
			n += HASH_HEX_LEN;
			buf[n++] = '\n';
		}
	}
	hash_buf(buf, n, &sum);
	w = snprintf(buf + n, cap - n, "sha256 %s\n", hash_to_hex(&sum, hex));
	if (w < 0 || (size_t)w >= cap - n) {
		free(buf);
		return -EINVAL;
	}
	n += (size_t)w;
	*out = buf;
	*len = n;
	return 0;
}

struct reader {
	const char *buf, *p, *end;
	unsigned line;
	char *err;
	size_t errsize;
};

__attribute__((format(printf, 2, 3))) static int fail(struct reader *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->err && r->errsize) {
		n = snprintf(r->err, r->errsize, "manifest line %u: ", r->line);
		if (n >= 0 && (size_t)n < r->errsize) {
			va_start(ap, fmt);
			vsnprintf(r->err + n, r->errsize - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

/* Next line into line (NUL-terminated copy, at most size-1 chars). 0, or
 * -EINVAL with a message (missing newline, too long, control characters). */
static int next_line(struct reader *r, char *line, size_t size)
{
	const char *nl;
	size_t n;

	r->line++;
	if (r->p >= r->end)
		return fail(r, "unexpected end of manifest");
	nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
	if (!nl)
		return fail(r, "line does not end with a newline");
	n = (size_t)(nl - r->p);
	if (n >= size)
		return fail(r, "line too long");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)r->p[i];

		if (c < 0x20 || c > 0x7e)
			return fail(r, "control or non-ASCII byte 0x%02x at column %zu", c, i + 1);
	}
	memcpy(line, r->p, n);
	line[n] = '\0';
	r->p = nl + 1;
	return 0;
}

/* Canonical unsigned decimal: no sign, no leading zeros, no spaces. */
static int parse_canon_u64(const char *s, uint64_t max, uint64_t *out)
{
	size_t n = strlen(s);

	if (n == 0 || n > 20 || (s[0] == '0' && n > 1))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
	if (parse_u64(s, out) < 0 || *out > max)
		return -EINVAL;
	return 0;
}

/* "key value" with exactly one space; returns value or NULL. */
static const char *field(struct reader *r, char *line, size_t size, const char *key, int *rc)
{
	size_t kl = strlen(key);

	*rc = next_line(r, line, size);
	if (*rc < 0)
		return NULL;
	if (strlen(line) < kl + 2 || strncmp(line, key, kl) != 0 || line[kl] != ' ') {
		*rc = fail(r, "expected '%s <value>'", key);
		return NULL;
	}
	return line + kl + 1;
}

static int num_field(struct reader *r, const char *key, uint64_t max, uint64_t *out)
{
	char line[128] = {0};
	const char *v;
	int rc;

	v = field(r, line, sizeof(line), key, &rc);
	if (!v)
		return rc;
	if (parse_canon_u64(v, max, out) < 0)
		return fail(r, "'%s' must be a decimal number up to %llu", key,
			    (unsigned long long)max);
	return 0;
}

static int is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[n] == '\0';
}

int manifest_decode(const char *buf, size_t len, struct manifest **out, char *err, size_t errsize)
{
	struct reader r = {.buf = buf, .p = buf, .end = buf + len, .err = err, .errsize = errsize};
	struct manifest *m = NULL;
	char line[128] = {0};
	const char *v, *body_end;
	uint64_t version = 0, created = 0, size = 0, cs = 0, parent = 0, nchunks = 0;
	enum manifest_kind kind;
	struct hash want, got;
	int rc;

	if (err && errsize)
		err[0] = '\0';
	if (len > MANIFEST_MAX_BYTES) {
		r.line = 0;
		return fail(&r, "manifest larger than %zu bytes", (size_t)MANIFEST_MAX_BYTES);
	}
	rc = next_line(&r, line, sizeof(line));
	if (rc < 0)
		return rc;
	if (strcmp(line, MANIFEST_MAGIC) != 0)
		return fail(&r, "expected '" MANIFEST_MAGIC "' (not a goldcache manifest, or a "
				"newer format)");
	v = field(&r, line, sizeof(line), "name", &rc);
	if (!v)
		return rc;
	if (!name_is_valid(v))
		return fail(&r, "invalid name '%s'", v);
	m = xcalloc(1, sizeof(*m));
	memcpy(m->name, v, strlen(v) + 1);
	rc = num_field(&r, "version", MANIFEST_MAX_VERSION, &version);
	if (rc == 0 && version == 0)
		rc = fail(&r, "version must be at least 1");
	if (rc == 0)
		rc = num_field(&r, "created", INT64_MAX, &created);
	if (rc < 0)
		goto fail;
	v = field(&r, line, sizeof(line), "kind", &rc);
	if (!v)
		goto fail;
	if (manifest_kind_parse(v, &kind) < 0) {
		rc = fail(&r, "kind must be 'fs' or 'disk'");
		goto fail;
	}
	rc = num_field(&r, "size", MANIFEST_MAX_SIZE, &size);
	if (rc == 0 && size % 512 != 0)
		rc = fail(&r, "size must be a multiple of 512");
	if (rc == 0)
		rc = num_field(&r, "chunk-size", MANIFEST_MAX_CHUNK, &cs);
	if (rc == 0 && manifest_geometry_ok(size, (uint32_t)cs) < 0)
		rc = fail(&r,
			  "chunk-size must be a power of two in [%u, %u] and give at most %u "
			  "chunks",
			  MANIFEST_MIN_CHUNK, MANIFEST_MAX_CHUNK, MANIFEST_MAX_CHUNKS);
	if (rc == 0)
		rc = num_field(&r, "parent", MANIFEST_MAX_VERSION, &parent);
	if (rc == 0)
		rc = num_field(&r, "chunks", MANIFEST_MAX_CHUNKS, &nchunks);
	if (rc == 0 && (cs == 0 || nchunks != (size + cs - 1) / cs))
		rc = fail(&r, "chunks must be ceil(size / chunk-size) = %llu",
			  (unsigned long long)(cs ? (size + cs - 1) / cs : 0));
	if (rc < 0)
		goto fail;
	m->version = (uint32_t)version;
	m->created = (int64_t)created;
	m->kind = kind;
	m->size = size;
	m->chunk_size = (uint32_t)cs;
	m->parent = (uint32_t)parent;
	m->nchunks = nchunks;
	m->chunks = xcalloc(nchunks ? nchunks : 1, sizeof(*m->chunks));
	for (uint64_t i = 0; i < nchunks; i++) {
		rc = next_line(&r, line, sizeof(line));
		if (rc < 0)
			goto fail;
		if (strcmp(line, "zero") == 0) {
			m->chunks[i].zero = 1;
		} else if (strlen(line) == HASH_HEX_LEN && is_lower_hex(line, HASH_HEX_LEN)) {
			if (hash_from_hex(line, &m->chunks[i].id) < 0) {
				rc = fail(&r, "bad chunk id");
				goto fail;
			}
		} else {
			rc = fail(&r,
				  "expected a chunk id (64 lower-case hex digits) or 'zero' "
				  "(chunk %llu of %llu)",
				  (unsigned long long)i, (unsigned long long)nchunks);
			goto fail;
		}
	}
	body_end = r.p;
	v = field(&r, line, sizeof(line), "sha256", &rc);
	if (!v)
		goto fail;
	if (strlen(v) != HASH_HEX_LEN || !is_lower_hex(v, HASH_HEX_LEN) ||
	    hash_from_hex(v, &want) < 0) {
		rc = fail(&r, "expected 'sha256 <64 lower-case hex digits>'");
		goto fail;
	}
	hash_buf(buf, (size_t)(body_end - buf), &got);
	if (!hash_equal(&want, &got)) {
		rc = fail(&r, "checksum mismatch: the manifest is damaged or was edited");
		goto fail;
	}
	if (r.p != r.end) {
		r.line++;
		rc = fail(&r, "trailing data after the checksum line");
		goto fail;
	}
	*out = m;
	return 0;
fail:
	manifest_free(m);
	return rc;
}
