/* goldagent's API client (see apiclient.h). Every call is one blocking HTTP
 * exchange through lib/httpc.h with a deadline; answers are parsed with
 * jansson and copied into fixed-size fields (an over-long value is a
 * malformed answer, never a truncation). The manifest is accepted only after
 * lib/manifest's strict decoder (self-checksum, geometry) and only if it is
 * the image version asked for; its file hash is what the cache slot records.
 * The token file is written atomically with mode 0600: a crash leaves the old
 * file or the new one, and nobody else on the machine can read it. */
#include "agent/apiclient.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/httpc.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/manifest.h"
#include "lib/util.h"

int apic_unreachable(int r)
{
	return r == -ECONNREFUSED || r == -ETIMEDOUT || r == -EHOSTUNREACH || r == -ENETUNREACH ||
	       r == -ECONNRESET || r == -EPIPE || r == -ENETDOWN || r == -EADDRNOTAVAIL;
}

static int status_err(int st)
{
	if (st >= 200 && st < 300)
		return 0;
	if (st == 401 || st == 403)
		return -EACCES;
	if (st == 404)
		return -ENOENT;
	if (st == 409)
		return -EEXIST;
	return -EIO;
}

/* One exchange; on an HTTP error logs the server's message. */
static int call(struct apic *a, const char *method, const char *path, const char *body,
		struct httpc_response *r, int auth)
{
	struct httpc_request q = {.method = method,
				  .path = path,
				  .bearer = auth ? a->token : NULL,
				  .body = body,
				  .body_len = body ? strlen(body) : 0,
				  .timeout_ms = a->timeout_ms ? a->timeout_ms : 10000};
	int rc = httpc_request(a->url, &q, r);

	if (rc < 0) {
		log_warn("appliance %s: %s %s: %s", a->url, method ? method : "GET", path,
			 strerror(-rc));
		return rc;
	}
	rc = status_err(r->status);
	if (rc < 0) {
		json_t *j = json_loadb(r->body, r->len, 0, NULL);
		const char *msg =
			json_string_value(json_object_get(json_object_get(j, "error"), "message"));

		log_error("appliance %s: %s %s: HTTP %d: %s", a->url, method ? method : "GET", path,
			  r->status, msg ? msg : "(no message)");
		json_decref(j);
		httpc_response_release(r);
	}
	return rc;
}

static int get_json(struct apic *a, const char *method, const char *path, const char *body,
		    json_t **out, int auth)
{
	struct httpc_response r = {0};
	int rc = call(a, method, path, body, &r, auth);

	if (rc < 0)
		return rc;
	*out = json_loadb(r.body, r.len, 0, NULL);
	httpc_response_release(&r);
	if (!*out || !json_is_object(*out)) {
		log_error("appliance %s: %s: answer is not a JSON object", a->url, path);
		json_decref(*out);
		return -EBADMSG;
	}
	return 0;
}

static int copy_str(json_t *j, const char *key, char *out, size_t size, int optional)
{
	json_t *v = json_object_get(j, key);
	const char *s = json_string_value(v);

	if (!s) {
		out[0] = '\0';
		if (optional && (!v || json_is_null(v)))
			return 0;
		log_error("API answer: \"%s\" missing or not a string", key);
		return -EBADMSG;
	}
	if (fmt_buf(out, size, "%s", s) < 0) {
		log_error("API answer: \"%s\" too long", key);
		return -EBADMSG;
	}
	return 0;
}

static int64_t get_int(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

int apic_token(struct apic *a, const char *token_file)
{
	char *s = NULL, path[512];
	size_t n = 0;
	json_t *j = NULL;
	const char *tok;
	int rc = io_read_file(token_file, 4096, &s, &n);

	if (rc == 0) {
		while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
			s[--n] = '\0';
		if (n == 0) {
			log_error("token file '%s' is empty: remove it to enroll again, or put "
				  "the token from 'goldctl machine token %s' there",
				  token_file, a->machine);
			free(s);
			return -EINVAL;
		}
		free(a->token);
		a->token = s;
		return 0;
	}
	if (rc != -ENOENT) {
		log_error("cannot read token file '%s': %s", token_file, strerror(-rc));
		return rc;
	}
	fmt_buf(path, sizeof(path), "/api/v1/machines/%s/enroll", a->machine);
	rc = get_json(a, "POST", path, NULL, &j, 0);
	if (rc < 0) {
		if (!apic_unreachable(rc))
			log_error("machine '%s' cannot enroll: an admin can issue a token with "
				  "'goldctl machine token %s' and put it in '%s'",
				  a->machine, a->machine, token_file);
		return rc;
	}
	tok = json_string_value(json_object_get(j, "token"));
	if (!tok || !*tok) {
		log_error("enroll answer holds no token");
		json_decref(j);
		return -EBADMSG;
	}
	rc = io_write_file_atomic(token_file, tok, strlen(tok), 0600);
	if (rc < 0) {
		log_error("cannot write token file '%s': %s", token_file, strerror(-rc));
	} else {
		free(a->token);
		a->token = xstrdup(tok);
		log_info("machine '%s' enrolled; token kept in '%s'", a->machine, token_file);
	}
	json_decref(j);
	return rc;
}

void apic_release(struct apic *a)
{
	if (a->token) {
		explicit_bzero(a->token, strlen(a->token));
		free(a->token);
		a->token = NULL;
	}
}

int apic_machine_get(struct apic *a, struct apic_machine *out)
{
	char path[512];
	json_t *j = NULL, *h;
	int rc;

	memset(out, 0, sizeof(*out));
	fmt_buf(path, sizeof(path), "/api/v1/machines/%s", a->machine);
	rc = get_json(a, NULL, path, NULL, &j, 1);
	if (rc < 0)
		return rc;
	rc = copy_str(j, "profile", out->profile, sizeof(out->profile), 1);
	if (rc == 0)
		rc = copy_str(j, "mode", out->mode, sizeof(out->mode), 1);
	if (rc == 0)
		rc = copy_str(j, "image", out->image, sizeof(out->image), 1);
	out->volume_size = (uint64_t)get_int(j, "volume_size");
	out->latest_snapshot = (uint32_t)get_int(j, "latest_snapshot");
	out->sync_interval_s = (uint32_t)get_int(j, "sync_interval");
	/* absent (an older appliance): keep the volume */
	out->persist = !json_is_false(json_object_get(j, "persist"));
	h = json_object_get(j, "hydrate");
	if (rc == 0 && json_is_object(h)) {
		out->hydrate_id = get_int(h, "id");
		out->hydrate_snapshot = (uint32_t)get_int(h, "snapshot");
		rc = copy_str(h, "kind", out->hydrate_kind, sizeof(out->hydrate_kind), 1);
		if (rc == 0)
			rc = copy_str(h, "from", out->hydrate_from, sizeof(out->hydrate_from), 1);
		out->hydrate_lun = (int)get_int(h, "lun");
		out->hydrate_size = (uint64_t)get_int(h, "size");
		if (rc == 0)
			rc = copy_str(h, "lun_state", out->hydrate_lun_state,
				      sizeof(out->hydrate_lun_state), 1);
	}
	json_decref(j);
	return rc;
}

int apic_iscsi_get(struct apic *a, struct apic_iscsi *out)
{
	char path[512];
	json_t *j = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	fmt_buf(path, sizeof(path), "/api/v1/machines/%s/iscsi", a->machine);
	rc = get_json(a, NULL, path, NULL, &j, 1);
	if (rc < 0)
		return rc;
	rc = copy_str(j, "portal", out->portal, sizeof(out->portal), 0);
	if (rc == 0)
		rc = copy_str(j, "target", out->target, sizeof(out->target), 0);
	if (rc == 0)
		rc = copy_str(j, "initiator", out->initiator, sizeof(out->initiator), 0);
	if (rc == 0)
		rc = copy_str(j, "user", out->user, sizeof(out->user), 0);
	if (rc == 0)
		rc = copy_str(j, "secret", out->secret, sizeof(out->secret), 0);
	if (rc == 0)
		rc = copy_str(j, "image", out->image, sizeof(out->image), 0);
	out->version = (uint32_t)get_int(j, "version");
	out->gold_lun = (int)get_int(j, "gold_lun");
	out->upload_lun = (int)get_int(j, "upload_lun");
	if (rc == 0 && (out->version == 0 || out->gold_lun <= 0)) {
		log_error("iSCSI answer without a version or gold LUN");
		rc = -EBADMSG;
	}
	json_decref(j);
	return rc;
}

/* GET path: a manifest, decoded and checked to be image@version. */
static int manifest_at(struct apic *a, const char *path, const char *image, uint32_t version,
		       char **text, size_t *len, struct manifest **m, struct hash *file_hash)
{
	struct httpc_response r = {0};
	struct httpc_request q;
	char err[256];
	int rc;

	q = (struct httpc_request){.path = path,
				   .bearer = a->token,
				   .timeout_ms = a->timeout_ms ? a->timeout_ms * 6 : 60000,
				   .max_body = MANIFEST_MAX_BYTES};
	rc = httpc_request(a->url, &q, &r);
	if (rc < 0) {
		log_warn("appliance %s: GET %s: %s", a->url, path, strerror(-rc));
		return rc;
	}
	rc = status_err(r.status);
	if (rc < 0) {
		log_error("appliance %s: GET %s: HTTP %d", a->url, path, r.status);
		httpc_response_release(&r);
		return rc;
	}
	rc = manifest_decode(r.body, r.len, m, err, sizeof(err));
	if (rc < 0) {
		log_error("manifest of %s@%u from %s is invalid: %s", image, version, a->url, err);
		httpc_response_release(&r);
		return -EBADMSG;
	}
	if (strcmp((*m)->name, image) != 0 || (*m)->version != version) {
		log_error("asked for the manifest of %s@%u, got %s@%u", image, version, (*m)->name,
			  (*m)->version);
		manifest_free(*m);
		*m = NULL;
		httpc_response_release(&r);
		return -EBADMSG;
	}
	if (file_hash)
		hash_buf(r.body, r.len, file_hash);
	if (text) {
		*text = r.body;
		*len = r.len;
		r.body = NULL;
	}
	httpc_response_release(&r);
	return 0;
}

int apic_manifest_get(struct apic *a, const char *image, uint32_t version, char **text, size_t *len,
		      struct manifest **m, struct hash *file_hash)
{
	char path[512];

	fmt_buf(path, sizeof(path), "/api/v1/images/%s/%u/manifest", image, version);
	return manifest_at(a, path, image, version, text, len, m, file_hash);
}

int apic_snapshot_manifest_get(struct apic *a, const char *from, uint32_t snap, struct manifest **m)
{
	char path[512];

	fmt_buf(path, sizeof(path), "/api/v1/machines/%s/snapshots/%u/manifest", from, snap);
	return manifest_at(a, path, from, snap, NULL, NULL, m, NULL);
}

int apic_hydrated(struct apic *a, int64_t id)
{
	struct httpc_response r = {0};
	char path[512], body[64];
	int rc;

	fmt_buf(path, sizeof(path), "/api/v1/machines/%s/hydrated", a->machine);
	fmt_buf(body, sizeof(body), "{\"id\": %lld}", (long long)id);
	rc = call(a, "POST", path, body, &r, 1);
	if (rc == 0)
		httpc_response_release(&r);
	return rc;
}

static int commit_status(json_t *j, struct apic_commit_status *st)
{
	memset(st, 0, sizeof(*st));
	if (copy_str(j, "state", st->state, sizeof(st->state), 0) < 0)
		return -EBADMSG;
	st->id = (uint64_t)get_int(j, "id");
	st->snapshot = (uint32_t)get_int(j, "snapshot");
	st->chunk = (uint64_t)get_int(j, "chunk");
	copy_str(j, "reason", st->reason, sizeof(st->reason), 1);
	if (json_string_value(json_object_get(j, "error")))
		fmt_buf(st->error, sizeof(st->error), "%s",
			json_string_value(json_object_get(j, "error")));
	return 0;
}

int apic_commit_post(struct apic *a, const char *body, size_t len, struct apic_commit_status *st)
{
	char path[512];
	struct httpc_response r = {0};
	struct httpc_request q;
	json_t *j;
	int rc;

	fmt_buf(path, sizeof(path), "/api/v1/machines/%s/commit", a->machine);
	q = (struct httpc_request){.method = "POST",
				   .path = path,
				   .bearer = a->token,
				   .body = body,
				   .body_len = len,
				   .timeout_ms = a->timeout_ms ? a->timeout_ms : 10000};
	rc = httpc_request(a->url, &q, &r);
	if (rc < 0) {
		log_warn("appliance %s: POST %s: %s", a->url, path, strerror(-rc));
		return rc;
	}
	j = json_loadb(r.body, r.len, 0, NULL);
	if (r.status != 202) {
		log_warn("appliance %s: POST %s: HTTP %d: %s", a->url, path, r.status,
			 json_string_value(json_object_get(json_object_get(j, "error"), "message"))
				 ?: "(no message)");
		rc = status_err(r.status) ?: -EIO;
	} else {
		rc = j ? commit_status(j, st) : -EBADMSG;
	}
	json_decref(j);
	httpc_response_release(&r);
	return rc;
}

int apic_commit_get(struct apic *a, struct apic_commit_status *st)
{
	char path[512];
	json_t *j;
	int rc;

	fmt_buf(path, sizeof(path), "/api/v1/machines/%s/commit", a->machine);
	rc = get_json(a, NULL, path, NULL, &j, 1);
	if (rc < 0)
		return rc;
	rc = commit_status(j, st);
	json_decref(j);
	return rc;
}

int apic_delta_post(struct apic *a, const char *image, uint32_t from, uint32_t to,
		    const uint64_t *idx, size_t n, size_t max, char **body, size_t *len)
{
	struct httpc_response r = {0};
	struct httpc_request q;
	char path[512], *req;
	size_t cap = 64 + n * 21, off;
	int rc;

	*body = NULL;
	*len = 0;
	fmt_buf(path, sizeof(path), "/api/v1/images/%s/delta", image);
	req = xmalloc(cap);
	off = (size_t)snprintf(req, cap, "{\"from\": %u, \"to\": %u, \"chunks\": [", from, to);
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(req + off, cap - off, "%s%llu", i ? "," : "",
					(unsigned long long)idx[i]);
	snprintf(req + off, cap - off, "]}");
	q = (struct httpc_request){.method = "POST",
				   .path = path,
				   .bearer = a->token,
				   .body = req,
				   .body_len = strlen(req),
				   /* the appliance may compress every chunk of the batch */
				   .timeout_ms = a->timeout_ms ? a->timeout_ms * 12 : 120000,
				   .max_body = max};
	rc = httpc_request(a->url, &q, &r);
	free(req);
	if (rc < 0) {
		log_warn("appliance %s: POST %s: %s", a->url, path, strerror(-rc));
		return rc;
	}
	rc = status_err(r.status);
	if (rc < 0) {
		json_t *j = json_loadb(r.body, r.len, 0, NULL);
		const char *msg =
			json_string_value(json_object_get(json_object_get(j, "error"), "message"));

		if (rc == -ENOENT)
			log_info("appliance %s: POST %s: HTTP 404: %s", a->url, path,
				 msg ? msg : "(no message)");
		else
			log_warn("appliance %s: POST %s: HTTP %d: %s", a->url, path, r.status,
				 msg ? msg : "(no message)");
		json_decref(j);
		httpc_response_release(&r);
		return rc;
	}
	*body = r.body;
	*len = r.len;
	r.body = NULL;
	httpc_response_release(&r);
	return 0;
}

int apic_state_put(struct apic *a, const char *body)
{
	char path[512];
	json_t *j = NULL;
	int rc;

	fmt_buf(path, sizeof(path), "/api/v1/machines/%s/state", a->machine);
	rc = get_json(a, "PUT", path, body, &j, 1);
	json_decref(j);
	return rc;
}
