/* The content-addressed chunk store: an immutable chunk file per distinct
 * SHA-256, verified on every read. Images, versions and gc live in image.h and
 * gc.h on top of this. Callable from the daemon: functions return 0 or a
 * negative errno, log once, never exit or print to stdout. */
#ifndef GC_APPLIANCE_STORE_H
#define GC_APPLIANCE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hash.h"

#define STORE_DEFAULT_DIR "/var/lib/goldcache/store" /* as goldcached's store_dir default */
/* Chunk size for new imports; chosen by bench/store.sh (see docs/store.md). */
#define STORE_DEFAULT_CHUNK (1u << 20)

/* Chunk file header (little endian), followed by the payload. */
#define STORE_CHUNK_MAGIC 0x4b434347u /* "GCCK" */
#define STORE_CHUNK_HDR 16
#define STORE_CHUNK_ZSTD 0x1

/* A chunk written to tmp/ whose fdatasync and rename into place are batched. */
struct store_pending {
	struct hash id;
	int fd;
	char *tmp;
};
#define STORE_BATCH 32

struct store {
	char *root;
	int lock_fd;
	int lock_mode; /* 0, LOCK_SH or LOCK_EX currently held */
	int compress; /* try zstd on new chunks */
	int zstd_level;
	void *zcctx; /* ZSTD_CCtx for store_chunk_put */
	uint8_t dirty_dirs[32]; /* fan-out dirs that got or deduped a chunk, to fsync */
	uint64_t bytes_written, chunks_written, chunks_deduped;
	struct store_pending pending[STORE_BATCH];
	size_t npending;
};

/* Opens the store at root. With create, makes the layout when missing;
 * without, -ENOENT when root is not a store. Caller frees with store_free. */
int store_open(const char *root, int create, struct store **out);
void store_free(struct store *s);

/* The store lock (STORE/lock, flock): imports, exports and verify hold it
 * shared for their whole run, gc holds it exclusively, so gc never sweeps a
 * chunk an operation in flight wrote, deduplicated against or is reading.
 * store_lock(s, LOCK_SH|LOCK_EX); store_unlock(s). Blocking. */
int store_lock(struct store *s, int mode);
void store_unlock(struct store *s);

/* Paths under the store; write at most size bytes. 0 or -ENAMETOOLONG. */
int store_chunk_path(const struct store *s, const struct hash *id, char *buf, size_t size);
int store_path(const struct store *s, char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Stores data (len bytes, <= 64 MiB) under id, which must be its SHA-256
 * (computed by the caller, who hashed it anyway). Deduplicates: when the chunk
 * exists (or is pending) nothing is written. The file is written to tmp/ and
 * its writeback started; every STORE_BATCH chunks (and in store_sync) the
 * pending files are fdatasynced and only then renamed into place, so a chunk
 * name never points at data not on disk, and one journal commit serves many
 * chunks. *was_new (optional) says whether a file was written. An error may
 * come from an earlier pending chunk: the caller abandons the whole operation. */
int store_chunk_put(struct store *s, const struct hash *id, const void *data, size_t len,
		    int *was_new);

/* Publishes the pending chunks, then makes every name created or relied on
 * since the last call durable (fsync of the fan-out directories). Call before
 * publishing metadata that references the chunks. */
int store_sync(struct store *s);

/* Reads chunk id into buf (size >= its length), decompressing, and checks its
 * SHA-256. Thread-safe (several readers on one handle). *len gets the chunk's length. -ENOENT:
 * missing; -EBADMSG: damaged (bad header, bad compression or hash mismatch); -ENOBUFS: buf too
 * small. */
int store_chunk_get(struct store *s, const struct hash *id, void *buf, size_t size, size_t *len);

/* 1 when a chunk file named id exists, 0 when not, or a negative errno. */
int store_chunk_has(struct store *s, const struct hash *id);

/* Reads and checks chunk id like store_chunk_get with a private buffer; 0,
 * -ENOENT or -EBADMSG (and *len, optional, the chunk's raw length). */
int store_chunk_verify(struct store *s, const struct hash *id, size_t *len);

/* Calls fn for every chunk file (id, its stored size on disk in bytes). Stops
 * and returns fn's value when non-zero. Names that are not chunk ids are skipped. */
int store_chunk_foreach(struct store *s,
			int (*fn)(const struct hash *id, uint64_t stored, void *arg), void *arg);

/* Removes chunk id (gc). 0 or a negative errno. */
int store_chunk_remove(struct store *s, const struct hash *id);

struct manifest;
/* Publishes m in dir as "<id>.manifest" under the first free id above
 * max_used, setting m->version: written to a temp file, fsynced, then link()ed
 * so two writers never get the same id (the loser takes the next one), then
 * dir fsynced. Image versions and machine snapshots both publish this way. */
int store_publish_manifest(const char *dir, struct manifest *m, uint32_t max_used);

/* "<id>.manifest" (0) or "<id>.removed" (1, a tombstone: the id stays used)
 * with id 1..MANIFEST_MAX_VERSION and no leading zero; -1 for anything else. */
int store_parse_id_name(const char *d, uint32_t *v);
/* Lists the live ids of a versions/snapshots dir (ascending heap array, when out
 * is not NULL) and the highest id ever used, live or removed. -errno (-ENOENT:
 * no such dir). */
int store_scan_ids(const char *dir, uint32_t **out, size_t *n, uint32_t *max_used);

#endif
