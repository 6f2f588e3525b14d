/* Minimal HTTP/1.1 client (see httpc.h).
 *
 * The exchange: resolve (getaddrinfo; numeric hosts need no NSS, so a static
 * goldagent works), non-blocking connect, write the request, read until the
 * server closes, all under one deadline with poll(2). The response parser is
 * strict and bounded: status line "HTTP/1.x NNN ...", headers up to
 * HTTPC_MAX_HEADERS, Content-Length (when present) must match the bytes read. */
#include "lib/httpc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

int httpc_parse_url(const char *url, char *host, size_t hostsize, char *port, size_t portsize,
		    char *prefix, size_t prefixsize)
{
	const char *h, *slash, *colon, *hend;
	size_t n;

	if (!url || strncmp(url, "http://", 7) != 0)
		return -EINVAL;
	h = url + 7;
	slash = strchr(h, '/');
	hend = slash ? slash : h + strlen(h);
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(hend - h));

		if (!rb)
			return -EINVAL;
		n = (size_t)(rb - h - 1);
		if (n == 0 || n >= hostsize)
			return -EINVAL;
		memcpy(host, h + 1, n);
		host[n] = '\0';
		colon = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
		if (!colon && rb + 1 != hend)
			return -EINVAL;
	} else {
		colon = memchr(h, ':', (size_t)(hend - h));
		n = (size_t)((colon ? colon : hend) - h);
		if (n == 0 || n >= hostsize)
			return -EINVAL;
		memcpy(host, h, n);
		host[n] = '\0';
	}
	if (colon) {
		uint32_t p;
		char tmp[8];

		n = (size_t)(hend - colon - 1);
		if (n == 0 || n >= sizeof(tmp))
			return -EINVAL;
		memcpy(tmp, colon + 1, n);
		tmp[n] = '\0';
		if (parse_u32(tmp, &p) < 0 || p == 0 || p > 65535)
			return -EINVAL;
		if (fmt_buf(port, portsize, "%u", p) < 0)
			return -EINVAL;
	} else if (fmt_buf(port, portsize, "80") < 0) {
		return -EINVAL;
	}
	n = slash ? strlen(slash) : 0;
	while (n && slash[n - 1] == '/')
		n--;
	if (n >= prefixsize)
		return -EINVAL;
	if (n)
		memcpy(prefix, slash, n);
	prefix[n] = '\0';
	return 0;
}

static int remaining(uint64_t deadline)
{
	uint64_t now = now_ms();

	return now >= deadline ? 0 : (int)MIN(deadline - now, (uint64_t)INT32_MAX);
}

static int wait_fd(int fd, short ev, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = ev};
	int rc;

	do {
		rc = poll(&p, 1, remaining(deadline));
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	return rc == 0 ? -ETIMEDOUT : 0;
}

static int dial(const char *host, const char *port, uint64_t deadline, int *out)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
	int rc = -ECONNREFUSED, gai;

	gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0)
		return gai == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
		socklen_t sl = sizeof(int);
		int err = 0;

		if (fd < 0) {
			rc = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			rc = -errno;
			close(fd);
			continue;
		}
		rc = wait_fd(fd, POLLOUT, deadline);
		if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) == 0 && err)
			rc = -err;
		if (rc == 0) {
			*out = fd;
			break;
		}
		close(fd);
	}
	freeaddrinfo(res);
	return rc;
}

static int send_all(int fd, const char *p, size_t n, uint64_t deadline)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				int rc = wait_fd(fd, POLLOUT, deadline);

				if (rc < 0)
					return rc;
				continue;
			}
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int httpc_parse_response(const char *buf, size_t len, size_t max_body, struct httpc_response *out)
{
	const char *end = NULL, *line, *eol;
	size_t hlen, blen;
	long long clen = -1;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i + 3 < len && i < HTTPC_MAX_HEADERS; i++)
		if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
			end = buf + i;
			break;
		}
	if (!end)
		return len >= HTTPC_MAX_HEADERS ? -EFBIG : -EPROTO;
	hlen = (size_t)(end - buf);
	if (hlen < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
	    buf[8] != ' ')
		return -EPROTO;
	for (int i = 9; i < 12; i++)
		if (buf[i] < '0' || buf[i] > '9')
			return -EPROTO;
	if (hlen > 12 && buf[12] != ' ' && buf[12] != '\r')
		return -EPROTO;
	out->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	if (out->status < 100)
		return -EPROTO;
	line = memchr(buf, '\n', hlen);
	for (; line && line < end; line = eol) {
		const char *colon, *v;
		size_t n, vn;

		line++;
		eol = memchr(line, '\n', (size_t)(end + 2 - line));
		if (!eol)
			break;
		n = (size_t)(eol - line);
		if (n && line[n - 1] == '\r')
			n--;
		colon = memchr(line, ':', n);
		if (!colon)
			continue;
		v = colon + 1;
		while (v < line + n && (*v == ' ' || *v == '\t'))
			v++;
		vn = (size_t)(line + n - v);
		if ((size_t)(colon - line) == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
			char tmp[24];
			uint64_t u;

			if (vn == 0 || vn >= sizeof(tmp))
				return -EPROTO;
			memcpy(tmp, v, vn);
			tmp[vn] = '\0';
			if (parse_u64(tmp, &u) < 0)
				return -EPROTO;
			if (u > (uint64_t)max_body)
				return -EFBIG;
			if (clen >= 0 && (uint64_t)clen != u)
				return -EPROTO; /* two different lengths: refuse to guess */
			clen = (long long)u;
		} else if ((size_t)(colon - line) == 12 &&
			   strncasecmp(line, "Content-Type", 12) == 0) {
			snprintf(out->content_type, sizeof(out->content_type), "%.*s", (int)vn, v);
		} else if ((size_t)(colon - line) == 17 &&
			   strncasecmp(line, "Transfer-Encoding", 17) == 0) {
			return -EPROTO; /* goldcached never chunks; refuse rather than misread */
		}
	}
	blen = len - hlen - 4;
	if (blen > max_body)
		return -EFBIG;
	if (clen >= 0 && (size_t)clen != blen)
		return -EPROTO;
	out->body = xmalloc(blen + 1);
	memcpy(out->body, end + 4, blen);
	out->body[blen] = '\0';
	out->len = blen;
	return 0;
}

/* No byte that could end a header line or the request line. */
static int token_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return 0;
	return 1;
}

int httpc_request(const char *base_url, const struct httpc_request *req, struct httpc_response *out)
{
	char host[256], port[8], prefix[512];
	uint64_t deadline = now_ms() + (uint64_t)(req->timeout_ms > 0 ? req->timeout_ms : 10000);
	size_t max_body = req->max_body ? req->max_body : HTTPC_DEFAULT_MAX_BODY;
	size_t cap = 0, len = 0, limit = max_body + HTTPC_MAX_HEADERS;
	char *head = NULL, *buf = NULL;
	int fd = -1, rc, early = 0;

	memset(out, 0, sizeof(*out));
	if (!req->path || req->path[0] != '/' || !token_ok(req->path) ||
	    (req->method && !token_ok(req->method)) || (req->bearer && !token_ok(req->bearer)) ||
	    (req->content_type && strpbrk(req->content_type, "\r\n")))
		return -EINVAL;
	rc = httpc_parse_url(base_url, host, sizeof(host), port, sizeof(port), prefix,
			     sizeof(prefix));
	if (rc < 0)
		return rc;
	rc = dial(host, port, deadline, &fd);
	if (rc < 0)
		goto out;
	{
		const char *auth = req->bearer ? "Authorization: Bearer " : "";
		const char *ctype = req->content_type ? req->content_type : "application/json";

		head = xasprintf("%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n"
				 "User-Agent: goldcache\r\n%s%s%s%s%s%sContent-Length: %zu\r\n\r\n",
				 req->method ? req->method : "GET", prefix, req->path, host, port,
				 auth, req->bearer ? req->bearer : "", req->bearer ? "\r\n" : "",
				 req->body ? "Content-Type: " : "", req->body ? ctype : "",
				 req->body ? "\r\n" : "", req->body ? req->body_len : 0);
	}
	rc = send_all(fd, head, strlen(head), deadline);
	if (rc == 0 && req->body && req->body_len)
		rc = send_all(fd, req->body, req->body_len, deadline);
	/* a server may answer before it has read the whole body (413, 401) and
	 * close: the rest of the body then meets a reset, but the answer already
	 * sent is the one to report */
	if (rc == -EPIPE || rc == -ECONNRESET) {
		early = rc;
		rc = 0;
	}
	if (rc < 0)
		goto out;
	for (;;) {
		ssize_t r;

		if (len == limit) {
			rc = -EFBIG;
			goto out;
		}
		xgrow((void **)&buf, &cap, MIN(len + 65536, limit) + 1, 1);
		r = recv(fd, buf + len, MIN(cap - 1, limit) - len, 0);
		if (r > 0) {
			len += (size_t)r;
			continue;
		}
		if (r == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			rc = -errno;
			/* a reset after the answer arrived (the server closed with
			 * request bytes unread): parse what came */
			if (len > 0 && (rc == -ECONNRESET || rc == -EPIPE))
				break;
			goto out;
		}
		rc = wait_fd(fd, POLLIN, deadline);
		if (rc < 0)
			goto out;
	}
	rc = httpc_parse_response(buf ? buf : "", len, max_body, out);
	if (rc < 0 && early)
		rc = early; /* no complete answer: the send's error says more */
out:
	if (fd >= 0)
		close(fd);
	free(head);
	free(buf);
	if (rc < 0)
		httpc_response_release(out);
	return rc;
}

void httpc_response_release(struct httpc_response *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->len = 0;
}
