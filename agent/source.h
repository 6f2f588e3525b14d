/* Where gold chunks come from, and how they are checked before they count.
 *
 * struct chunk_source is the hook the serve loop and the hydrator call to fill
 * an absent chunk. A source may complete inside start() (a local raw image
 * file) or later, from service() when its fd is ready (the iSCSI fetcher:
 * libiscsi's get_fd / which_events / service pattern, driven by the agent's
 * one event loop). Every fetched chunk goes through chunk_hashes_verify()
 * before cache_chunk_write(); a chunk that does not match is never written. */
#ifndef GC_AGENT_SOURCE_H
#define GC_AGENT_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "agent/workpool.h"
#include "lib/hash.h"

struct cache;

/* Completion of one fetch: err is 0 or a negative errno. */
typedef void (*chunk_fetch_cb)(void *arg, uint64_t idx, int err);

struct chunk_source;
struct chunk_source_ops {
	const char *kind; /* "file", "iscsi" */
	/* Starts reading chunk idx (bytes [off, off+len) of the image) into buf,
	 * which stays valid until cb runs. cb may run before start returns. */
	int (*start)(struct chunk_source *s, uint64_t idx, uint64_t off, void *buf, size_t len,
		     chunk_fetch_cb cb, void *arg);
	/* Event-loop integration; fd NULL (or returning -1): synchronous source. */
	int (*fd)(struct chunk_source *s);
	int (*events)(struct chunk_source *s);
	int (*service)(struct chunk_source *s, int revents);
	void (*free)(struct chunk_source *s);
	/* Optional keepalive of an idle session (NULL: none): with send, sends
	 * one probe (iSCSI NOP-Out) unless one is unanswered. Returns how many
	 * probes are unanswered (0: the last one was answered), or the session's
	 * negative errno. The caller keeps the deadline (source-retry.c). */
	int (*probe)(struct chunk_source *s, int send);
};

struct chunk_source {
	const struct chunk_source_ops *ops;
	void *priv;
	char *desc; /* for logs: "file 'x.img'" */
	uint64_t size; /* bytes the source holds */
};

/* A local raw image (an exported gold image; a regular file or a block
 * device): reads with pread. */
int chunk_source_file_new(const char *path, struct chunk_source **out);
void chunk_source_free(struct chunk_source *s);
/* Blocking fetch through any source (drives service() for async ones). */
int chunk_source_fetch(struct chunk_source *s, uint64_t idx, uint64_t off, void *buf, size_t len);

/* Expected content of every chunk of one image version. */
struct chunk_hashes {
	uint64_t n;
	struct hash *h;
	uint8_t *zero; /* 1: chunk is all zeros (manifest's zero chunks) */
};

/* Hash list file: one line per chunk, in order: 64 hex digits (SHA-256 of
 * the chunk's bytes; the last chunk may be short) or "zero"; blank lines
 * and lines starting with '#' are skipped. Bounded: at most 2^26 chunks.
 * Errors name the file and line. */
int chunk_hashes_load(const char *path, struct chunk_hashes *out);
struct manifest;
/* From a decoded manifest (lib/manifest.h): one hash per chunk, zero chunks
 * marked. */
void chunk_hashes_from_manifest(const struct manifest *m, struct chunk_hashes *out);
/* Reads and decodes a manifest file (strict, self-checksummed; errors name
 * the line). *m (caller frees with manifest_free) and *file_hash (SHA-256
 * of the file's bytes, recorded in the cache slot) when not NULL. */
int manifest_load_file(const char *path, struct manifest **m, struct hash *file_hash);
/* From memory (fuzzing, tests). */
int chunk_hashes_parse(const char *text, size_t len, struct chunk_hashes *out, unsigned *bad_line);
void chunk_hashes_release(struct chunk_hashes *hs);
/* 0 when data matches chunk idx, -EBADMSG when not, -ERANGE for no such chunk. */
int chunk_hashes_verify(const struct chunk_hashes *hs, uint64_t idx, const void *data, size_t len);
/* Two chunks at once, verdicts as chunk_hashes_verify into *ra and *rb: both
 * hashed together (hash_buf2, about half the CPU of two) when both are
 * hashed chunks of the same length, else one after the other. */
void chunk_hashes_verify2(const struct chunk_hashes *hs, uint64_t ia, const void *a, size_t la,
			  uint64_t ib, const void *b, size_t lb, int *ra, int *rb);

/* A fetched chunk on its way through a workpool (agent/workpool.h): the
 * first member of the caller's item, so the pool's work_item is its first. */
struct chunk_check {
	struct work_item wi;
	uint64_t idx;
	uint8_t *buf;
	size_t len;
	int verdict; /* chunk_checks_verify's, then the caller's (its write's) */
};

/* On a pool thread: the verdict of every chunk_check of a batch (a list
 * through wi.next), as chunk_hashes_verify; a batch of two is hashed together
 * (chunk_hashes_verify2). Without hashes (hs NULL) every verdict is 0.
 * Returns 2 when a pair was hashed together, else 0. */
unsigned chunk_checks_verify(const struct chunk_hashes *hs, struct work_item *items);

struct hydrate_stats {
	uint64_t fetched; /* chunks read from the source, written, made present */
	uint64_t copied; /* chunks copied from the other slot (same hash) */
	uint64_t zero; /* zero chunks written without fetching */
	uint64_t skipped; /* already present */
	uint64_t rejected; /* hash mismatch: not written */
	uint64_t bytes; /* bytes read from the source */
};

/* Fills every absent chunk of slot from src (verified against hs when given),
 * committing every commit_bytes (0: 64 MiB) so an interrupted run resumes
 * where it was. With other (the hashes of the other slot's image, e.g. the
 * previous version) and hs, a chunk whose hash is present in the other slot
 * is copied from there (and verified) instead of fetched: a gold update
 * fetches only the chunks that differ. src may be NULL when every chunk is
 * local. Returns 0 when the slot is complete, -EBADMSG when chunks were
 * rejected (the rest is filled), -ENODATA when one was needed from a missing
 * source, or the first I/O error. */
int hydrate_slot(struct cache *c, int slot, struct chunk_source *src, const struct chunk_hashes *hs,
		 const struct chunk_hashes *other, uint64_t commit_bytes, struct hydrate_stats *st);

#endif
