/* goldagent's side of goldcached's JSON API (docs/api.md, docs/sync.md):
 * enrollment and the token file, the machine's state, its iSCSI login, image
 * manifests (verified), sync commits. Blocking calls through lib/httpc.h.
 * Errors: -ECONNREFUSED / -ETIMEDOUT / -EHOSTUNREACH ... when the appliance
 * cannot be reached (apic_unreachable() says which those are), -EACCES (401,
 * 403), -ENOENT (404), -EEXIST (409), -EBADMSG (a malformed answer or a
 * manifest that fails its checks), -EIO (other statuses). */
#ifndef GC_AGENT_APICLIENT_H
#define GC_AGENT_APICLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hash.h"

struct manifest;

struct apic {
	const char *url; /* http://HOST:PORT */
	const char *machine;
	char *token; /* heap, NUL-terminated; NULL until loaded */
	int timeout_ms; /* per request; 0: 10 s */
};

/* 1 when r means "the appliance is not reachable" (offline), else 0. */
int apic_unreachable(int r);

/* Loads the machine token from token_file; when the file does not exist,
 * enrolls (POST .../enroll) and writes the token there (mode 0600, atomic). */
int apic_token(struct apic *a, const char *token_file);
void apic_release(struct apic *a);

struct apic_machine {
	char profile[128], mode[32], image[128];
	uint64_t volume_size; /* 0: the profile keeps no volume */
	uint32_t latest_snapshot; /* 0: none */
	uint32_t sync_interval_s; /* the profile's; 0: not given */
	int persist; /* 0: the profile wants a fresh machine volume every boot */
	int64_t hydrate_id; /* pending restore/reset order, 0: none */
	char hydrate_kind[16], hydrate_from[128];
	uint32_t hydrate_snapshot;
	int hydrate_lun; /* LUN serving that snapshot on our target, 0: not (yet) */
	uint64_t hydrate_size; /* its bytes */
	char hydrate_lun_state[16]; /* ready, preparing, failed, none ("" : older appliance) */
};
int apic_machine_get(struct apic *a, struct apic_machine *out);

struct apic_iscsi {
	char portal[128], target[256], initiator[256], user[128], secret[256];
	char image[128];
	uint32_t version;
	int gold_lun, upload_lun; /* upload_lun 0: none */
};
int apic_iscsi_get(struct apic *a, struct apic_iscsi *out);

/* GET .../images/IMAGE/VERSION/manifest, decoded strictly (lib/manifest.h:
 * self-checksum, geometry); checks the name and version against what was
 * asked. *text (heap, caller frees) holds the file's bytes, *file_hash their
 * SHA-256 (recorded in the cache slot). */
int apic_manifest_get(struct apic *a, const char *image, uint32_t version, char **text, size_t *len,
		      struct manifest **m, struct hash *file_hash);

/* GET .../machines/FROM/snapshots/SNAP/manifest (a restore order's
 * snapshot), decoded strictly and checked to be FROM@SNAP. *m: caller frees. */
int apic_snapshot_manifest_get(struct apic *a, const char *from, uint32_t snap,
			       struct manifest **m);
/* POST .../hydrated {"id": ID}: the order is carried out. -EEXIST (409): it is
 * not the pending order any more (a newer one replaced it). */
int apic_hydrated(struct apic *a, int64_t id);

struct apic_commit_status {
	char state[16]; /* done, failed, running, staging, none */
	uint64_t id; /* the commit's id (0: none said) */
	uint32_t snapshot;
	char reason[32];
	uint64_t chunk; /* failed: mismatch */
	char error[256];
};
/* One POST .../commit (a whole commit or one batch of it): 0 and the
 * answer's COMMIT_STATUS (state running or staging, id), or an error as
 * above (-EEXIST: 409, a commit is running or the batch does not continue
 * the open transaction). */
int apic_commit_post(struct apic *a, const char *body, size_t len, struct apic_commit_status *st);
/* One GET .../commit: the status of the machine's last commit. */
int apic_commit_get(struct apic *a, struct apic_commit_status *st);
/* POST /api/v1/images/IMAGE/delta {"from", "to", "chunks"} (lib/delta.h):
 * the answer's raw body (heap, caller frees), refused above max bytes
 * (-EFBIG). -ENOENT: 404 (an appliance without deltas, or no such version;
 * not logged as an error), other errors as above. */
int apic_delta_post(struct apic *a, const char *image, uint32_t from, uint32_t to,
		    const uint64_t *idx, size_t n, size_t max, char **body, size_t *len);
/* POST .../state with a STATE body (best effort report). */
int apic_state_put(struct apic *a, const char *body);

#endif
