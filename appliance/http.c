/* HTTP server over libmicrohttpd in external-epoll mode (see http.h).
 *
 * Request life: MHD calls uri_cb with the raw request target first (before the
 * headers are parsed): we allocate our request there, so the path and query are
 * parsed by our own bounded, fuzzed parser (http_split_uri), not MHD's. The
 * access handler then runs once with the headers (size checks), once per body
 * piece (appended up to max_body), and once at the end, where the route handler
 * runs and its response is queued. done_cb writes the access-log line and frees
 * the request.
 *
 * Access log: one line per request, appended with a single write(2) to a file
 * opened O_APPEND: "TIME PEER METHOD TARGET STATUS BYTES MS". The target is the
 * raw request target with bytes outside printable ASCII, space and '"' escaped
 * as %XX (a raw %XX in the target is logged as sent), so a client cannot forge log lines. Headers
 * (tokens) are never logged. */
#include "appliance/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

#define DEFAULT_MAX_BODY ((size_t)64 * 1024)
#define LOG_TARGET_MAX 512

struct http_server {
	struct MHD_Daemon *mhd;
	http_handler handler;
	void *arg;
	size_t max_body;
	size_t (*body_limit)(void *arg, const char *method, const char *path,
			     const char *authorization);
	char *log_path;
	int log_fd;
	uint16_t port;
};

struct req {
	struct http_server *srv;
	uint64_t start_ns;
	char peer[INET6_ADDRSTRLEN + 8];
	char *target; /* raw request target */
	char path[HTTP_MAX_PATH + 1];
	const char *query;
	int bad_uri;
	int started;
	int too_big;
	char *body;
	size_t len, cap, max_body;
	int status;
	uint64_t bytes;
	char method[16];
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..n) into out (outsize); plus_space turns '+' into ' '. */
static int pct_decode(const char *s, size_t n, char *out, size_t outsize, int plus_space)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			int hi, lo;

			if (n - i < 3 || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
				return -EINVAL;
			c = hi * 16 + lo;
			i += 2;
			if (c < 0x20 || c == 0x7f)
				return -EINVAL;
		} else if (c == '+' && plus_space) {
			c = ' ';
		} else if (c < 0x20 || c == 0x7f) {
			return -EINVAL;
		}
		if (o + 1 >= outsize)
			return -ENAMETOOLONG;
		out[o++] = (char)c;
	}
	if (outsize == 0)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return 0;
}

int http_split_uri(const char *uri, char *path, size_t pathsize, const char **query)
{
	const char *q;
	size_t n;
	int rc;

	if (!uri || uri[0] != '/')
		return -EINVAL;
	q = strchr(uri, '?');
	n = q ? (size_t)(q - uri) : strlen(uri);
	if (n > HTTP_MAX_PATH)
		return -EINVAL;
	rc = pct_decode(uri, n, path, pathsize, 0);
	if (rc < 0)
		return -EINVAL;
	*query = q ? q + 1 : "";
	if (strlen(*query) > HTTP_MAX_QUERY)
		return -EINVAL;
	return 0;
}

int http_query_get(const char *query, const char *key, char *out, size_t outsize)
{
	size_t klen = strlen(key);
	const char *p = query;

	if (!query)
		return -ENOENT;
	if (strlen(query) > HTTP_MAX_QUERY)
		return -EINVAL;
	while (*p) {
		const char *amp = strchr(p, '&');
		size_t n = amp ? (size_t)(amp - p) : strlen(p);

		if (n > klen && memcmp(p, key, klen) == 0 && p[klen] == '=')
			return pct_decode(p + klen + 1, n - klen - 1, out, outsize, 1);
		if (n == klen && memcmp(p, key, klen) == 0)
			return pct_decode("", 0, out, outsize, 1);
		p += n;
		if (*p == '&')
			p++;
	}
	return -ENOENT;
}

void http_error(struct http_response *resp, int status, const char *fmt, ...)
{
	char msg[512];
	char *esc = NULL;
	size_t o = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* JSON-escape by hand: this must not fail or allocate through jansson here */
	esc = xmalloc(strlen(msg) * 6 + 1);
	for (const char *m = msg; *m; m++) {
		unsigned char c = (unsigned char)*m;

		if (c == '"' || c == '\\') {
			esc[o++] = '\\';
			esc[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(esc + o, 7, "\\u%04x", c);
		} else {
			esc[o++] = (char)c;
		}
	}
	esc[o] = '\0';
	free(resp->body);
	resp->status = status;
	resp->content_type = "application/json";
	resp->body = xasprintf("{\"error\":{\"status\":%d,\"message\":\"%s\"}}\n", status, esc);
	resp->len = strlen(resp->body);
	free(esc);
}

static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *con)
{
	struct http_server *s = cls;
	struct req *r = xcalloc(1, sizeof(*r));
	const union MHD_ConnectionInfo *ci;

	r->srv = s;
	r->start_ns = now_ns();
	uri = uri ? uri : "";
	r->target = xstrndup(uri, HTTP_MAX_PATH + HTTP_MAX_QUERY + 2);
	r->bad_uri = strlen(r->target) < strlen(uri) ||
		     http_split_uri(r->target, r->path, sizeof(r->path), &r->query) < 0;
	ci = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;
		char host[INET6_ADDRSTRLEN], serv[8];
		socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
							  : sizeof(struct sockaddr_in);

		if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
				NI_NUMERICHOST | NI_NUMERICSERV) == 0)
			snprintf(r->peer, sizeof(r->peer), "%s:%s", host, serv);
	}
	return r;
}

/* A streamed body (http_response.reader): counts what it produced for the
 * access log. Reads happen while the connection, hence r, is alive. */
struct stream {
	ssize_t (*reader)(void *arg, uint64_t pos, char *buf, size_t max);
	void (*reader_free)(void *arg);
	void *arg;
	struct req *r;
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *st = cls;
	ssize_t n = st->reader(st->arg, pos, buf, max);

	if (n > 0)
		st->r->bytes += (uint64_t)n;
	return n;
}

static void stream_free(void *cls)
{
	struct stream *st = cls;

	if (st->reader_free)
		st->reader_free(st->arg);
	free(st);
}

static enum MHD_Result queue(struct MHD_Connection *con, struct req *r, struct http_response *resp)
{
	struct MHD_Response *m;
	enum MHD_Result ret;

	if (!resp->status)
		resp->status = 200;
	if (resp->reader) {
		/* a streamed body: no length, no chunked encoding (goldcache's
		 * clients read until the server closes) */
		struct stream *st = xmalloc(sizeof(*st));

		*st = (struct stream){.reader = resp->reader,
				      .reader_free = resp->reader_free,
				      .arg = resp->reader_arg,
				      .r = r};
		r->bytes = 0;
		m = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_read, st,
						      stream_free);
		if (!m)
			stream_free(st);
		else
			MHD_set_response_options(m, MHD_RF_HTTP_1_0_SERVER, MHD_RO_END);
		resp->reader = NULL;
		if (resp->fd >= 0)
			close(resp->fd);
		resp->fd = -1;
		free(resp->body);
	} else if (resp->fd >= 0) {
		m = MHD_create_response_from_fd64(resp->fd_size, resp->fd);
		if (!m)
			close(resp->fd);
		resp->fd = -1;
		r->bytes = resp->fd_size;
		free(resp->body);
	} else {
		m = MHD_create_response_from_buffer_with_free_callback(resp->len, resp->body, free);
		if (!m)
			free(resp->body);
		r->bytes = resp->len;
	}
	resp->body = NULL;
	if (!m)
		return MHD_NO;
	MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE,
				resp->content_type ? resp->content_type : "text/plain");
	MHD_add_response_header(m, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (resp->status == 401)
		MHD_add_response_header(m, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					resp->www_authenticate ? resp->www_authenticate : "Bearer");
	r->status = resp->status;
	ret = MHD_queue_response(con, (unsigned)resp->status, m);
	MHD_destroy_response(m);
	return ret;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *con, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	struct http_server *s = cls;
	struct req *r = *con_cls;
	struct http_response resp = {.fd = -1};
	struct http_request hr;

	(void)url;
	(void)version;
	if (!r)
		return MHD_NO; /* uri_cb always runs first */
	if (!r->started) {
		const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		uint64_t n = 0;

		r->started = 1;
		snprintf(r->method, sizeof(r->method), "%s", method);
		r->max_body = s->max_body;
		if (s->body_limit && !r->bad_uri) {
			size_t lim = s->body_limit(
				s->arg, r->method, r->path,
				MHD_lookup_connection_value(con, MHD_HEADER_KIND,
							    MHD_HTTP_HEADER_AUTHORIZATION));

			if (lim)
				r->max_body = lim;
		}
		if (cl && (parse_u64(cl, &n) < 0 || n > r->max_body)) {
			http_error(&resp, 413, "request body larger than %zu bytes", r->max_body);
			return queue(con, r, &resp);
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		if (!r->too_big && (r->len > r->max_body || n > r->max_body - r->len))
			r->too_big = 1;
		if (!r->too_big) {
			xgrow((void **)&r->body, &r->cap, r->len + n + 1, 1);
			memcpy(r->body + r->len, upload_data, n);
			r->len += n;
			r->body[r->len] = '\0';
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->too_big) {
		http_error(&resp, 413, "request body larger than %zu bytes", r->max_body);
		return queue(con, r, &resp);
	}
	if (r->bad_uri) {
		http_error(&resp, 400, "malformed request target");
		return queue(con, r, &resp);
	}
	hr = (struct http_request){
		.method = r->method,
		.path = r->path,
		.query = r->query,
		.peer = r->peer,
		.authorization = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_AUTHORIZATION),
		.body = r->body ? r->body : "",
		.body_len = r->len,
	};
	s->handler(s->arg, &hr, &resp);
	return queue(con, r, &resp);
}

static void log_target(const char *t, char *out, size_t outsize)
{
	size_t o = 0;

	for (; *t && o + 4 < outsize; t++) {
		unsigned char c = (unsigned char)*t;

		if (c <= 0x20 || c >= 0x7f || c == '"')
			o += (size_t)snprintf(out + o, outsize - o, "%%%02X", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
}

static void done_cb(void *cls, struct MHD_Connection *con, void **con_cls,
		    enum MHD_RequestTerminationCode toe)
{
	struct http_server *s = cls;
	struct req *r = *con_cls;

	(void)con;
	if (!r)
		return;
	if (s->log_fd >= 0) {
		char tgt[LOG_TARGET_MAX * 3 + 1], ts[32], line[2048];
		struct tm tm;
		time_t now = time(NULL);
		uint64_t us = (now_ns() - r->start_ns) / 1000;
		int n;

		gmtime_r(&now, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		log_target(r->target, tgt, sizeof(tgt));
		n = snprintf(line, sizeof(line), "%s %s %s %s %d %" PRIu64 " %" PRIu64 ".%03u%s\n",
			     ts, r->peer[0] ? r->peer : "-", r->method[0] ? r->method : "-", tgt,
			     r->status, r->bytes, us / 1000, (unsigned)(us % 1000),
			     toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted");
		if (n > 0)
			(void)!write(s->log_fd, line, MIN((size_t)n, sizeof(line) - 1));
	}
	free(r->target);
	free(r->body);
	free(r);
	*con_cls = NULL;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_warn("libmicrohttpd: %s", msg);
}

int http_reopen_log(struct http_server *s)
{
	int fd;

	if (!s->log_path)
		return 0;
	fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0) {
		int rc = -errno;

		log_error("cannot open access log '%s': %s", s->log_path, strerror(errno));
		return rc;
	}
	if (s->log_fd >= 0)
		close(s->log_fd);
	s->log_fd = fd;
	return 0;
}

int http_new(const struct http_opts *o, http_handler h, void *arg, struct http_server **out)
{
	struct http_server *s = xcalloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_TURBO | MHD_USE_ERROR_LOG;
	const char *addr = o->addr && *o->addr ? o->addr : "0.0.0.0";
	const union MHD_DaemonInfo *di;
	int rc;

	*out = NULL;
	s->handler = h;
	s->arg = arg;
	s->max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
	s->body_limit = o->body_limit;
	s->log_fd = -1;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(o->port);
	} else if (inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(o->port);
		flags |= MHD_USE_IPv6;
	} else {
		log_error("HTTP listen address '%s' is not a numeric IPv4 or IPv6 address", addr);
		rc = -EINVAL;
		goto fail;
	}
	if (o->access_log) {
		s->log_path = xstrdup(o->access_log);
		rc = http_reopen_log(s);
		if (rc < 0)
			goto fail;
	}
	errno = 0;
	s->mhd = MHD_start_daemon(
		flags, o->port, NULL, NULL, access_cb, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
		MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_URI_LOG_CALLBACK, uri_cb, s,
		MHD_OPTION_NOTIFY_COMPLETED, done_cb, s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)32 * 1024, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)(o->max_conns ? o->max_conns : 1000), MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)(o->timeout_s ? o->timeout_s : 30), MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned)HTTP_MAX_CONNS_PER_IP, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
		MHD_OPTION_END);
	if (!s->mhd) {
		rc = errno ? -errno : -EADDRINUSE;
		log_error("cannot listen for HTTP on %s port %u: %s", addr, o->port, strerror(-rc));
		goto fail;
	}
	di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di ? di->port : o->port;
	*out = s;
	return 0;
fail:
	http_free(s);
	return rc;
}

void http_free(struct http_server *s)
{
	if (!s)
		return;
	if (s->mhd)
		MHD_stop_daemon(s->mhd);
	if (s->log_fd >= 0)
		close(s->log_fd);
	free(s->log_path);
	free(s);
}

int http_epoll_fd(struct http_server *s)
{
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);

	return di ? di->epoll_fd : -1;
}

int http_timeout_ms(struct http_server *s)
{
	MHD_UNSIGNED_LONG_LONG t = 0;

	if (MHD_get_timeout(s->mhd, &t) != MHD_YES)
		return -1;
	return t > 60000 ? 60000 : (int)t;
}

int http_run(struct http_server *s)
{
	return MHD_run(s->mhd) == MHD_YES ? 0 : -EIO;
}

uint16_t http_port(struct http_server *s)
{
	return s->port;
}
