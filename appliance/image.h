/* Images and their versions in the store: import, export, list, promote, rm,
 * verify. Every function is callable from the daemon (returns 0 or a negative
 * errno, logs once, never prints to stdout or exits).
 *
 * Error codes callers can rely on: -ENOENT unknown image or version, -EINVAL
 * bad name or input (logged with the reason), -EBADMSG damaged store data (a
 * missing or corrupt chunk or manifest; logged naming it), -EBUSY refusing to
 * remove the current version. */
#ifndef GC_APPLIANCE_IMAGE_H
#define GC_APPLIANCE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "appliance/store.h"
#include "lib/manifest.h"

typedef void image_progress_fn(uint64_t done, uint64_t total, void *arg);

struct import_opts {
	uint32_t chunk_size; /* 0: the current version's, else STORE_DEFAULT_CHUNK */
	enum manifest_kind kind;
	const char *format; /* NULL: detect (raw, or qcow2/vmdk/vdi/vhdx/vpc via qemu-img) */
	int promote; /* make the new version current (the first version always is) */
	int qemu_timeout_ms; /* 0: 1 hour */
	image_progress_fn *progress; /* optional, called about every chunk */
	void *progress_arg;
};

struct import_result {
	uint32_t version;
	uint64_t size, chunks, zero_chunks, new_chunks, new_bytes;
};

/* Imports the image file at path as a new version of name (created when new).
 * Holds the store lock shared for its whole run. The version becomes visible
 * only once complete (chunks durable first, then the manifest, published with
 * link(2) so concurrent imports never share a version id). */
int image_import(struct store *s, const char *name, const char *path, const struct import_opts *o,
		 struct import_result *res);

struct export_opts {
	int no_sync; /* skip the final fsync (benchmarks; not for LUN files) */
	image_progress_fn *progress;
	void *progress_arg;
};

/* Writes name@version (0: current) to path as a raw image, bit-identical to
 * what was imported, with holes where chunks are zero. A regular file is
 * written to a temp file next to path and renamed over it when complete, so
 * path is either untouched or whole; a block device is written in place.
 * Every chunk is hash-checked: a damaged or missing chunk fails the export
 * (-EBADMSG, logged with the chunk id and offset) and removes the temp file. */
int image_export_to_file(struct store *s, const char *name, uint32_t version, const char *path,
			 const struct export_opts *o);

/* The same for a manifest already loaded (a version or a machine snapshot);
 * the caller holds the store lock shared. */
int image_export_manifest(struct store *s, const struct manifest *m, const char *path,
			  const struct export_opts *o);

/* Loads name@version (0: current). *out freed with manifest_free. */
int image_manifest_load(struct store *s, const char *name, uint32_t version, struct manifest **out);
/* The current version of name: the one its pointer names, or when there is
 * no usable pointer (never written, or naming a removed version after a
 * crash) the latest version. -ENOENT when the image has no version. */
int image_current(struct store *s, const char *name, uint32_t *version);

/* "NAME" (version 0) or "NAME@VERSION". name gets at most 64 chars + NUL.
 * -EINVAL with nothing logged (the CLI reports usage errors). */
int image_ref_parse(const char *ref, char name[65], uint32_t *version);

struct image_info {
	char name[65];
	uint32_t current; /* 0: none */
	uint32_t nversions, latest;
	uint64_t size; /* of the current (or latest) version */
};
/* All images, sorted by name. *out is a heap array (caller frees). */
int image_list(struct store *s, struct image_info **out, size_t *n);

struct version_info {
	uint32_t version, parent;
	int64_t created;
	enum manifest_kind kind;
	uint64_t size, nchunks, zero_chunks;
	uint32_t chunk_size;
	int current;
};
/* Versions of name, ascending. -ENOENT for an unknown image. Caller frees *out. */
int image_versions(struct store *s, const char *name, struct version_info **out, size_t *n);

/* Makes name@version current (atomic pointer replace). */
int image_promote(struct store *s, const char *name, uint32_t version);
/* Removes name@version. Its id is never reused. The current version is
 * refused (-EBUSY) unless force; then the latest remaining version becomes
 * current. Chunks are freed by gc. */
int image_rm(struct store *s, const char *name, uint32_t version, int force);

/* Every manifest that is a gc root: images/NAME/versions/N.manifest and
 * machines/NAME/snapshots/N.manifest. fn gets a label ("debian@3" or
 * "machine:pc1@7") and the decoded manifest, or NULL and a negative errno (with
 * a message in err) when the file is damaged. A non-zero return stops the walk. */
typedef int manifest_walk_fn(const char *label, const char *path, const struct manifest *m, int err,
			     const char *errmsg, void *arg);
int image_walk_manifests(struct store *s, const char *name, uint32_t version, manifest_walk_fn *fn,
			 void *arg);

struct verify_bad {
	struct hash id;
	int err; /* -ENOENT missing, -EBADMSG damaged */
	char *users; /* "debian@2 debian@3" (heap) */
};
struct verify_result {
	uint64_t manifests, chunks_checked;
	size_t nbad, nbad_manifests;
	struct verify_bad *bad;
	char **bad_manifests; /* "path: reason" (heap) */
};
/* Checks every chunk used by name@version (name NULL: everything; version 0:
 * every version of name): present and hashing to its id; and that every
 * manifest in scope decodes. Returns 0 after a complete check (sound or not:
 * see res), or a negative errno when the check itself could not run
 * (-ENOENT: unknown image). Free res with image_verify_result_release. */
int image_verify(struct store *s, const char *name, uint32_t version, struct verify_result *res);
void image_verify_result_release(struct verify_result *res);

#endif
