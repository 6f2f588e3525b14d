/* A minimal blocking HTTP/1.1 client for goldctl and goldagent talking to
 * goldcached: one request per connection (Connection: close), a deadline for
 * the whole exchange, a bounded response, plain http:// only. Not a general
 * client: no redirects, no chunked bodies, no TLS. */
#ifndef GC_LIB_HTTPC_H
#define GC_LIB_HTTPC_H

#include <stddef.h>

#define HTTPC_MAX_HEADERS ((size_t)16 * 1024)
#define HTTPC_DEFAULT_MAX_BODY (16u << 20)

struct httpc_response {
	int status;
	char content_type[128];
	char *body; /* NUL-terminated heap buffer ("" when empty) */
	size_t len;
};

struct httpc_request {
	const char *method; /* "GET" when NULL */
	const char *path; /* "/api/v1/...", appended to the URL's path */
	const char *bearer; /* token for Authorization: Bearer, or NULL */
	const char *body; /* NULL: none */
	size_t body_len;
	const char *content_type; /* of the body; "application/json" when NULL */
	int timeout_ms; /* whole exchange; 0: 10 s */
	size_t max_body; /* 0: HTTPC_DEFAULT_MAX_BODY */
};

/* Splits "http://HOST[:PORT][/PREFIX]" (HOST may be [v6]). 0 or -EINVAL. */
int httpc_parse_url(const char *url, char *host, size_t hostsize, char *port, size_t portsize,
		    char *prefix, size_t prefixsize);

/* Sends req to base_url and reads the response into *out (release with
 * httpc_response_release). Returns 0 for any HTTP status (check out->status),
 * or -errno: -EINVAL bad URL, -ECONNREFUSED, -ETIMEDOUT, -EPROTO malformed
 * response, -EFBIG response too large. */
int httpc_request(const char *base_url, const struct httpc_request *req,
		  struct httpc_response *out);
void httpc_response_release(struct httpc_response *r);

/* Parses a complete response (head and body, len bytes) as read until the
 * server closed. Exposed for tests and fuzzing. 0, -EPROTO or -EFBIG. */
int httpc_parse_response(const char *buf, size_t len, size_t max_body, struct httpc_response *out);

#endif
