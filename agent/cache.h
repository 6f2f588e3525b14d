/* The machine's local cache: two gold slots (A/B) with a present map each, the
 * machine volume with its dirty map, and a double header. One file or one
 * partition, addressed only with pread/pwrite at offsets (docs/agent.md has
 * the byte layout). All I/O goes through lib/io.h (fault injection).
 *
 * Durability contract (DESIGN.md): data, flush, then metadata.
 *  - a present bit reaches the disk only after its chunk's data was fdatasynced
 *    and verified against its expected hash;
 *  - a dirty bit reaches the disk (written + fdatasynced) before the volume
 *    data it covers is written, so no crash can forget a written block;
 *  - a header update goes to the older of the two header copies, so a torn
 *    header write leaves the previous header readable. */
#ifndef GC_AGENT_CACHE_H
#define GC_AGENT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hash.h"

#define CACHE_MAGIC "GCCACHE\n"
#define CACHE_FORMAT_VERSION 1u
#define CACHE_HDR_COPY_SIZE 4096u /* each header copy occupies one 4 KiB block */
#define CACHE_HDR_LEN 640u /* encoded bytes of a header (rest of the block: zero) */
#define CACHE_ALIGN 4096u /* maps are written in whole 4 KiB pages */
#define CACHE_DATA_ALIGN (1u << 20) /* gold slots and volume start on 1 MiB */
#define CACHE_NAME_MAX 63u /* image name and version: NUL-padded 64-byte fields */
#define CACHE_MAX_SIZE (1ull << 44) /* 16 TiB per slot and for the volume */
#define CACHE_MIN_CHUNK 4096u
#define CACHE_MAX_CHUNK (64u << 20)
#define CACHE_DEFAULT_DIRTY_BLOCK (64u << 10)

#define CACHE_NSLOTS 2
#define CACHE_NO_SLOT 0xffffffffu

enum cache_slot_state {
	CACHE_SLOT_EMPTY = 0, /* present map meaningless (all-zero on disk) */
	CACHE_SLOT_FILLING = 1, /* assigned; present map says what is here */
	CACHE_SLOT_COMPLETE = 2, /* every chunk present and verified */
};

/* header flags */
#define CACHE_F_VOL_OPEN 0x1u /* a server has the volume open read-write */
#define CACHE_F_DIRTY_ALL 0x2u /* dirty map not provably complete: all blocks dirty */
/* the machine's profile keeps no volume (persist: false): every start resets
 * it, offline ones too (remembered from the last online start) */
#define CACHE_F_VOL_RESET 0x4u
/* the volume is being overwritten by a restore order (restore_order):
 * half-restored until it completes */
#define CACHE_F_RESTORING 0x8u
#define CACHE_F_KNOWN (CACHE_F_VOL_OPEN | CACHE_F_DIRTY_ALL | CACHE_F_VOL_RESET | CACHE_F_RESTORING)

/* How the writer that last had the volume open kept its dirty map. Only
 * write-ahead (bit durable before data) survives an unclean stop as-is. */
#define CACHE_DIRTY_WRITE_AHEAD 1u

struct cache_slot_info {
	uint32_t state;
	uint64_t image_size; /* bytes of this version (<= gold_capacity) */
	char name[CACHE_NAME_MAX + 1];
	char version[CACHE_NAME_MAX + 1];
	struct hash manifest; /* SHA-256 of the manifest followed; zero if none */
};

/* The geometry: fixed at init; everything else is derived from it. */
struct cache_geometry {
	uint32_t chunk_size; /* gold chunk (the store's chunk size) */
	uint32_t dirty_block_size; /* volume tracking block */
	uint64_t gold_capacity; /* bytes per gold slot */
	uint64_t volume_size;
	/* derived by cache_geometry_layout() */
	uint64_t nchunks; /* chunks per slot at full capacity */
	uint64_t nblocks; /* dirty-map blocks of the volume */
	uint64_t pmap_off[CACHE_NSLOTS], pmap_len; /* len: bytes, page-rounded */
	uint64_t dmap_off, dmap_len;
	uint64_t slot_off[CACHE_NSLOTS];
	uint64_t volume_off;
	uint64_t total_size; /* bytes the file or partition must have */
};

struct cache_header {
	uint64_t generation;
	struct cache_geometry geo;
	uint32_t flags;
	uint32_t active_slot; /* 0, 1 or CACHE_NO_SLOT */
	uint32_t dirty_protocol;
	uint32_t unclean_stops; /* times the volume was found open at start */
	int64_t created;
	int64_t last_sync; /* unix time of the last acknowledged sync, 0: never */
	int64_t restore_order; /* CACHE_F_RESTORING: the order being carried out, else 0 */
	int64_t restore_done; /* the last order whose restore completed, 0: none */
	/* the last acknowledged sync's figures (struct cache_sync_figures); all 0:
	 * not recorded (never synced, or synced by an agent older than them) */
	uint64_t last_sync_bytes;
	uint32_t last_sync_pause_ms;
	uint32_t last_sync_snapshot;
	struct cache_slot_info slot[CACHE_NSLOTS];
};

/* Validates the four inputs and fills the derived fields. 0 or -EINVAL. */
int cache_geometry_layout(struct cache_geometry *g);

/* Encodes h into buf (CACHE_HDR_LEN bytes) with its checksum. */
void cache_header_encode(const struct cache_header *h, uint8_t *buf);
/* Decodes and validates one header copy: magic, version, checksum, geometry
 * (stored offsets must equal the derived layout), slot fields. 0 or
 * -EBADMSG (not a cache / wrong checksum), -EPROTONOSUPPORT, -EUCLEAN
 * (checksum right, content inconsistent). Never reads past len. */
int cache_header_decode(const uint8_t *buf, size_t len, struct cache_header *h);

struct cache;

struct cache_params {
	const char *image; /* slot A's image name */
	const char *version; /* slot A's version */
	uint64_t image_size; /* gold image bytes; also the slot capacity unless set */
	uint64_t gold_capacity; /* 0: image_size rounded up to the chunk size */
	uint32_t chunk_size;
	uint32_t dirty_block_size; /* 0: CACHE_DEFAULT_DIRTY_BLOCK (or chunk if smaller) */
	uint64_t volume_size;
	const struct hash *manifest; /* slot A's manifest file hash, or NULL */
	int force; /* overwrite a valid cache */
};

/* Formats path (a regular file, created if missing, or a block device) as a
 * new cache: slot A assigned and empty, slot B empty, clean volume. Zeroes
 * maps (and, on a block device, the volume) and makes them durable before the
 * headers are written, so a crash during init leaves "not a cache". Refuses a
 * valid cache unless p->force (-EEXIST). */
int cache_create(const char *path, const struct cache_params *p);

#define CACHE_OPEN_RDONLY 0x1
/* Opens a cache: reads both header copies (newest valid wins), both present
 * maps and the dirty map. A damaged copy, an unclean stop, a map that cannot
 * be read are reported through log_warn and cache_notes(). Returns 0 and *out
 * (cache_free / cache_close), -EBADMSG when neither copy is a valid header,
 * -EFBIG when the device is smaller than the header's layout. */
int cache_open(const char *path, int flags, struct cache **out);
/* Clean stop: flushes data and maps, clears CACHE_F_VOL_OPEN, frees. With a
 * commit job out (cache_commit_begin without its end): frees as
 * cache_free does and returns -EBUSY. */
int cache_close(struct cache *c);
/* Frees without a clean stop (as a crash would leave it), with the commit
 * job out if any (its cache_commit_io must not be running). */
void cache_free(struct cache *c);

const struct cache_header *cache_header(const struct cache *c);
const char *cache_path(const struct cache *c);
/* The open cache file or device, for another reader (dup it; pread only). An
 * agent that outlived switch_root cannot open cache_path() again: the
 * initramfs's /dev moved away, so every later reader goes through this. */
int cache_fd(const struct cache *c);
/* Which header copy (0 = A, 1 = B) holds the newest valid header; whether the
 * other copy failed validation at open. */
int cache_header_copy(const struct cache *c, int *other_bad);
/* Findings of cache_open, one per line ("" when none). */
const char *cache_notes(const struct cache *c);

/* ---- gold slots ---- */
uint64_t cache_slot_chunks(const struct cache *c, int slot); /* chunks of its image */
/* Bytes of chunk idx in slot (the last one may be short). */
size_t cache_chunk_len(const struct cache *c, int slot, uint64_t idx);
int cache_chunk_present(const struct cache *c, int slot, uint64_t idx);
/* Written and waiting for cache_commit() (not present yet). */
int cache_chunk_pending(const struct cache *c, int slot, uint64_t idx);
uint64_t cache_slot_present_count(const struct cache *c, int slot);

/* Assigns slot to an image version: header (EMPTY) durable, present map
 * zeroed durable, then header (FILLING, name, version, size). manifest may be
 * NULL. Refuses the active slot (-EBUSY). */
int cache_slot_assign(struct cache *c, int slot, const char *name, const char *version,
		      uint64_t image_size, const struct hash *manifest);
int cache_slot_set_active(struct cache *c, int slot);

/* Writes chunk idx's data (len == cache_chunk_len) into slot. Not present yet:
 * it becomes present at the next cache_commit(). The caller has verified it.
 * -EEXIST when already present (gold chunks are never rewritten). */
int cache_chunk_write(struct cache *c, int slot, uint64_t idx, const void *data, size_t len);

/* cache_chunk_write in three steps, so that the data write can run on
 * another thread (the hydrator's workers) while the owning thread keeps the
 * maps: cache_chunk_prepare (owner: checks, fills *io), cache_chunk_io_write
 * (any thread: writes the data and starts its writeback; touches nothing of
 * the cache but the device), cache_chunk_written (owner, after the write
 * succeeded: pending, present at the next cache_commit()). The header and the
 * maps are never read by the writer, so a commit may run meanwhile. */
struct cache_chunk_io {
	int fd;
	int dfd; /* O_DIRECT descriptor, or -1 */
	int slot;
	uint64_t idx;
	uint64_t off; /* in the cache device */
	size_t len;
	const char *path; /* for the error message */
};
/* 0, -EINVAL, -EROFS, or -EEXIST when already present. */
int cache_chunk_prepare(struct cache *c, int slot, uint64_t idx, size_t len,
			struct cache_chunk_io *io);
#define CACHE_DIO_ALIGN 4096u
/* A buffer of n bytes aligned to CACHE_DIO_ALIGN, for chunks written with
 * cache_chunk_io_write; free() it. Dies when out of memory. */
uint8_t *cache_dio_buf(size_t n);
/* 0 or the write's negative errno (logged). Thread-safe. With data aligned
 * to CACHE_DIO_ALIGN (and a chunk offset and length that are too) the write
 * bypasses the page cache (O_DIRECT) where the file system allows it. */
int cache_chunk_io_write(const struct cache_chunk_io *io, const void *data);
void cache_chunk_written(struct cache *c, const struct cache_chunk_io *io);
/* Makes written chunks present: fdatasync (data), set bits, write the changed
 * present-map pages, fdatasync (maps), then COMPLETE in the header when the
 * slot is full (also when nothing is pending: a crash between the last map
 * fdatasync and that header write is finished here). On a failed data
 * fdatasync no bit is set and the chunks are forgotten (fetched again). */
int cache_commit(struct cache *c);

/* cache_commit in three steps, so that its I/O (two fdatasyncs and the map
 * pages, 0.3-9 ms) runs off the owner's event loop (agent/nbd.c):
 *  - cache_commit_begin (owner): takes every pending chunk into a job, sets
 *    their in-memory present bits (readers are served from them at once:
 *    their data was written and is read back through the page cache, and a
 *    gold chunk's bytes are fixed by its verified hash, so a read never sees
 *    anything but the right bytes; only durability is still to come) and
 *    copies the present-map pages the job covers. *out NULL when nothing is
 *    pending. -EBUSY while another job is out: one at a time.
 *  - cache_commit_io (any thread): fdatasync of the data, then the copied
 *    pages written, then fdatasync. Touches only the job and the device: the
 *    copy holds bits of this job's chunks (flushed first) and of earlier
 *    commits' (flushed before theirs), never a bit of a chunk written later,
 *    so the map on disk never gets ahead of the flushed data.
 *  - cache_commit_end (owner): on a failed data flush the job's bits are
 *    cleared again (the chunks are fetched again); a failed map write is only
 *    logged (a re-fetch after a crash); then COMPLETE in the header as in
 *    cache_commit. Frees the job. 0 or the job's (or the header's) -errno.
 * Until end, the job's chunks are present (never rewritten: -EEXIST) and
 * cache_commit, cache_slot_assign and cache_close refuse (-EBUSY). */
struct cache_commit_job;
int cache_commit_begin(struct cache *c, struct cache_commit_job **out);
int cache_commit_io(struct cache_commit_job *j);
int cache_commit_end(struct cache *c, struct cache_commit_job *j);
/* Chunks the job makes present. */
uint64_t cache_commit_job_chunks(const struct cache_commit_job *j);
/* 1 while a job is between begin and end. */
int cache_commit_busy(const struct cache *c);
/* Reads [off, off+len) of slot's image; every chunk it touches must be
 * present (-ENODATA otherwise, *missing = first absent chunk). */
int cache_gold_read(struct cache *c, int slot, void *buf, uint64_t off, size_t len,
		    uint64_t *missing);
/* Where [off, off+len) of slot's image lies in the cache: returns the cache's
 * fd and *foff when every chunk it touches is present (for sendfile), else
 * -ENODATA / -EINVAL. Present gold data never changes, so the range stays
 * valid while the slot is active. */
int cache_gold_locate(struct cache *c, int slot, uint64_t off, size_t len, uint64_t *foff);
/* Raw read of chunk idx's bytes whether present or not (check, verify). */
int cache_chunk_read_raw(struct cache *c, int slot, uint64_t idx, void *buf, size_t len);

/* ---- machine volume ---- */
/* Marks the volume open read-write in the header (durable). Counts an unclean
 * stop when the flag was already set. -EBUSY while a restore is half done
 * (CACHE_F_RESTORING): such a volume is never served. */
int cache_vol_open(struct cache *c);
/* Records whether the volume is reset at every start (CACHE_F_VOL_RESET, the
 * profile's persist: false) in the header, durable; no write when unchanged. */
int cache_set_vol_reset(struct cache *c, int on);
int cache_vol_read(struct cache *c, void *buf, uint64_t off, size_t len);
/* Write-ahead: the blocks' dirty bits are made durable first, then the data is
 * written; with fua the data is fdatasynced before returning. */
int cache_vol_write(struct cache *c, const void *buf, uint64_t off, size_t len, int fua);
/* Writes zeros (WRITE_ZEROES), same ordering. */
int cache_vol_zero(struct cache *c, uint64_t off, size_t len, int fua);
/* fdatasync: every write acknowledged before is durable afterwards. */
int cache_flush(struct cache *c);
int cache_block_dirty(const struct cache *c, uint64_t block);
uint64_t cache_dirty_count(const struct cache *c); /* blocks (all if DIRTY_ALL) */

/* ---- restore (agent/restore.c) ---- */
/* Order: cache_restore_begin (CACHE_F_RESTORING and the order id durable in
 * the header before any volume byte changes), cache_restore_write/zero (no
 * dirty bits: the restored volume is the new base, not a change to upload),
 * cache_restore_finish (data fdatasynced, then the dirty map cleared and made
 * durable, then the header: flag off, restore_done = the order). A crash at
 * any point before the last header write leaves the flag set: the volume is
 * half-restored and the restore must run again. */
int cache_restore_begin(struct cache *c, int64_t order);
/* Only while restoring (-EPERM otherwise); no dirty bit is set. */
int cache_restore_write(struct cache *c, const void *buf, uint64_t off, size_t len);
/* Zeroes [off, off+len) of the volume (a hole where the file system can). */
int cache_restore_zero(struct cache *c, uint64_t off, size_t len);
/* Completes the restore begun (see above). 0 or -errno (the flag stays). */
int cache_restore_finish(struct cache *c);

/* ---- sync (agent/uploader.c) ---- */
/* on: from now on, remember in memory which volume blocks are written (a
 * sync's upload has started); off: forget. */
void cache_dirty_track(struct cache *c, int on);
/* 1 when block was written since the last cache_dirty_track(c, 1). */
int cache_dirty_seen(const struct cache *c, uint64_t block);
/* After the appliance acknowledged a commit: clears the dirty bits of
 * blocks[0..n) (with all: of every block, and CACHE_F_DIRTY_ALL) except those
 * written since cache_dirty_track(c, 1); the map pages are written and
 * fdatasynced, then the header records last_sync = when. *cleared (may be
 * NULL): bits cleared. Stops tracking. */
int cache_sync_done(struct cache *c, const uint64_t *blocks, size_t n, int all, int64_t when,
		    uint64_t *cleared);
/* What the header keeps of the last sync, for `goldagent status`. */
struct cache_sync_figures {
	uint32_t snapshot; /* the committed snapshot */
	uint64_t bytes; /* bytes sent to the upload LUN, all passes */
	uint32_t pause_ms; /* writes held for the final pass (0: none held) */
};
/* cache_sync_done that also records fig (NULL: the recorded ones are kept)
 * in the same header write. */
int cache_sync_done_figures(struct cache *c, const uint64_t *blocks, size_t n, int all,
			    int64_t when, const struct cache_sync_figures *fig, uint64_t *cleared);

/* ---- check ---- */
struct cache_check_report {
	unsigned problems; /* inconsistencies found */
	unsigned repaired; /* of those, fixed (with repair) */
	char *text; /* one finding per line, heap, caller frees */
};
/* Consistency check: header copies, bits beyond the end of each map, slot
 * state against its map, flags. With a verify callback, every present chunk
 * is re-read and passed to it (return 0: good, -EBADMSG: bad data; a bad
 * chunk loses its present bit on repair). With repair, fixes what it found
 * (ordering as everywhere: data untouched, maps then header). */
typedef int (*cache_verify_fn)(void *arg, int slot, uint64_t idx, const void *data, size_t len);
int cache_check(struct cache *c, int repair, cache_verify_fn verify, void *arg,
		struct cache_check_report *rep);

/* Loads the maps region from a memory image of a cache (fuzzing, tests): the
 * headers at offset 0 and the maps after them. 0 or -errno. */
int cache_load_mem(const uint8_t *buf, size_t len, struct cache_header *h, uint64_t *present,
		   uint64_t *dirty);

#endif
