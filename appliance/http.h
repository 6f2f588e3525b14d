/* goldcached's HTTP server (libmicrohttpd), driven by the daemon's own event
 * loop: no internal threads. The loop watches http_epoll_fd() for EPOLLIN, calls
 * http_run() when it is readable and at least every http_timeout_ms().
 *
 * A request is handed to one handler as a plain struct (method, decoded path,
 * raw query, peer, Authorization header, body); the handler fills a plain
 * response. The handler is a pure function of the request and the handler's
 * state, so tests drive it without sockets. Request sizes are bounded: headers
 * by MHD's per-connection memory limit, bodies by http_opts.max_body (413). */
#ifndef GC_APPLIANCE_HTTP_H
#define GC_APPLIANCE_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_MAX_PATH 1024
#define HTTP_MAX_QUERY 2048
/* One host cannot hold more connections than this (a boot storm is many hosts
 * with a few each); more are refused at accept. */
#define HTTP_MAX_CONNS_PER_IP 128
/* http_response.reader's end and error returns */
#define HTTP_READER_END ((ssize_t)-1)
#define HTTP_READER_ERROR ((ssize_t)-2)

struct http_request {
	const char *method; /* "GET", "PUT", ... */
	const char *path; /* percent-decoded, starts with '/', no query */
	const char *query; /* raw query string after '?', "" when none */
	const char *peer; /* "ADDR:PORT" or "" */
	const char *authorization; /* the Authorization header, or NULL */
	const char *body; /* request body (NUL-terminated), "" when none */
	size_t body_len;
};

struct http_response {
	int status; /* 200 when left 0 */
	const char *content_type; /* static string; "text/plain" when NULL */
	char *body; /* heap, freed by the server; NULL: empty */
	size_t len;
	int fd; /* >= 0: send this file instead (closed by the server) */
	uint64_t fd_size;
	/* Non-NULL: the body is made piecewise by reader, called on the loop
	 * whenever the connection can take more: it copies at most max bytes into
	 * buf and returns their count (never 0), HTTP_READER_END after the last
	 * byte, or HTTP_READER_ERROR (the connection is cut: the client sees a
	 * short body). Sent without a length; the connection closes at the end.
	 * reader_free(reader_arg) runs once the response is done (or refused). */
	ssize_t (*reader)(void *arg, uint64_t pos, char *buf, size_t max);
	void (*reader_free)(void *arg);
	void *reader_arg;
	const char *www_authenticate; /* static; sent with 401 */
};

typedef void (*http_handler)(void *arg, const struct http_request *req, struct http_response *resp);

struct http_opts {
	const char *addr; /* numeric IPv4 or IPv6 address; NULL: 0.0.0.0 */
	uint16_t port; /* 0: any free port (see http_port) */
	size_t max_body; /* 0: 64 KiB */
	unsigned max_conns;
	unsigned timeout_s;
	const char *access_log; /* path, appended to; NULL: no access log */
	/* Optional: the body limit of one request (a route that takes large bodies
	 * from authenticated callers), asked once its method, path and headers are
	 * known; authorization may be NULL; arg is the handler's. 0: max_body. */
	size_t (*body_limit)(void *arg, const char *method, const char *path,
			     const char *authorization);
};

struct http_server;

/* Binds and listens; 0 and *out, or -errno (logged: address in use, ...). */
int http_new(const struct http_opts *o, http_handler h, void *arg, struct http_server **out);
void http_free(struct http_server *s);
/* The epoll fd to watch for EPOLLIN. */
int http_epoll_fd(struct http_server *s);
/* Milliseconds until http_run() must be called even without events; -1: no limit. */
int http_timeout_ms(struct http_server *s);
/* Does all pending work without blocking. 0 or -EIO. */
int http_run(struct http_server *s);
/* The port actually bound. */
uint16_t http_port(struct http_server *s);
/* Reopens the access log (after rotation, on SIGHUP). */
int http_reopen_log(struct http_server *s);

/* Sets resp to a JSON error {"error": {"status": N, "message": "..."}}. */
void http_error(struct http_response *resp, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* URI parsing, exposed for tests and fuzzing. Splits a request target into a
 * percent-decoded path (rejecting control bytes such as %00, bad escapes, a path not starting with
 * '/' and paths longer than HTTP_MAX_PATH) and the raw query. 0 or -EINVAL. */
int http_split_uri(const char *uri, char *path, size_t pathsize, const char **query);
/* Finds key in a raw query string ("a=1&b=2"); percent-decodes its value ('+' is
 * a space) into out. 0, -ENOENT, -EINVAL (bad escape, NUL), -ENAMETOOLONG. */
int http_query_get(const char *query, const char *key, char *out, size_t outsize);

#endif
