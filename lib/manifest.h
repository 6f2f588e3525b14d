/* Image manifests: the ordered chunk list of one immutable image version (or
 * machine snapshot), encoded as a strict, versioned, self-checksummed text
 * file. Shared by the store, goldcached (agent API) and goldagent (cache), so
 * this module knows nothing about where manifests or chunks live. */
#ifndef GC_LIB_MANIFEST_H
#define GC_LIB_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hash.h"

#define MANIFEST_MAGIC "goldcache-manifest 1"
/* Chunk sizes: powers of two in [4 KiB, 64 MiB]. */
#define MANIFEST_MIN_CHUNK (4u << 10)
#define MANIFEST_MAX_CHUNK (64u << 20)
/* Bounds that keep a hostile manifest from costing more than ~300 MB to parse. */
#define MANIFEST_MAX_CHUNKS (1u << 22)
#define MANIFEST_MAX_SIZE (1ull << 50)
#define MANIFEST_MAX_BYTES ((size_t)MANIFEST_MAX_CHUNKS * 68 + 4096)
#define MANIFEST_MAX_VERSION 999999999u

enum manifest_kind { MANIFEST_FS, MANIFEST_DISK };

struct manifest_chunk {
	struct hash id; /* unset (all zero) for zero chunks */
	uint8_t zero; /* 1: the chunk is all zero bytes and not stored */
};

struct manifest {
	char name[65];
	uint32_t version; /* 1.. */
	int64_t created; /* seconds since the epoch */
	enum manifest_kind kind;
	uint64_t size; /* logical bytes, a multiple of 512 */
	uint32_t chunk_size; /* bytes per chunk; the last chunk may be shorter */
	uint32_t parent; /* version this one was derived from, 0: none */
	uint64_t nchunks; /* == ceil(size / chunk_size) */
	struct manifest_chunk *chunks; /* nchunks entries */
};

/* A manifest with room for nchunks = ceil(size / chunk_size) chunks (all set
 * to zero chunks). Caller frees with manifest_free. -EINVAL on bad geometry. */
int manifest_new(const char *name, uint64_t size, uint32_t chunk_size, struct manifest **out);
void manifest_free(struct manifest *m);

/* Geometry check used by the decoder and by writers. 0 or -EINVAL. */
int manifest_geometry_ok(uint64_t size, uint32_t chunk_size);
/* Byte length of chunk i (the last one may be shorter). */
uint32_t manifest_chunk_len(const struct manifest *m, uint64_t i);

/* Encodes m as text into a heap buffer (*out, caller frees, NUL-terminated;
 * *len excludes the NUL). -EINVAL when m is inconsistent. */
int manifest_encode(const struct manifest *m, char **out, size_t *len);

/* Decodes buf (len bytes, need not be NUL-terminated). On -EINVAL, err (if not
 * NULL) holds a message naming the line. On success *out is a new manifest. */
int manifest_decode(const char *buf, size_t len, struct manifest **out, char *err, size_t errsize);

const char *manifest_kind_str(enum manifest_kind k);
/* "fs" or "disk". 0 or -EINVAL. */
int manifest_kind_parse(const char *s, enum manifest_kind *out);

#endif
