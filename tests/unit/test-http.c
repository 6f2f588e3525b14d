/* Unit tests for appliance/http (a real socket, MHD driven by an epoll loop in a
 * thread as goldcached's loop drives it) and lib/httpc (the client goldctl and
 * goldagent use): routing of method, path, query, Authorization and body to the
 * handler; 400 for a malformed target; 413 for an oversized body; the access
 * log (one line per request, hostile bytes escaped); URI and query parsing. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "appliance/http.h"
#include "lib/httpc.h"
#include "lib/io.h"
#include "lib/util.h"
#include "tests/tap.h"

static atomic_int stop;

static void echo(void *arg, const struct http_request *req, struct http_response *resp)
{
	char mac[32] = "";

	(void)arg;
	if (strcmp(req->path, "/err") == 0) {
		http_error(resp, 404, "no \"such\" thing\n");
		return;
	}
	http_query_get(req->query, "mac", mac, sizeof(mac));
	resp->body =
		xasprintf("%s %s q=%s mac=%s auth=%s body=%s", req->method, req->path, req->query,
			  mac, req->authorization ? req->authorization : "-", req->body);
	resp->len = strlen(resp->body);
	resp->status = 200;
}

static void *loop_thread(void *arg)
{
	struct http_server *s = arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN};

	epoll_ctl(ep, EPOLL_CTL_ADD, http_epoll_fd(s), &ev);
	while (!atomic_load(&stop)) {
		int t = http_timeout_ms(s);

		epoll_wait(ep, &ev, 1, t < 0 || t > 50 ? 50 : t);
		http_run(s);
	}
	close(ep);
	return NULL;
}

static void test_parsers(void)
{
	char path[HTTP_MAX_PATH + 1], v[8];
	const char *q = NULL;
	char host[64], port[8], prefix[64];

	is_int(http_split_uri("/a%20b/c?x=1&y", path, sizeof(path), &q), 0, "split");
	is_str(path, "/a b/c", "path decoded");
	is_str(q, "x=1&y", "query raw");
	is_int(http_split_uri("/p", path, sizeof(path), &q), 0, "no query");
	is_str(q, "", "empty query");
	is_int(http_split_uri("/a%00", path, sizeof(path), &q), -EINVAL, "%%00 refused");
	is_int(http_split_uri("/a%4", path, sizeof(path), &q), -EINVAL, "short escape");
	is_int(http_split_uri("/a%g0", path, sizeof(path), &q), -EINVAL, "bad escape");
	is_int(http_split_uri("a", path, sizeof(path), &q), -EINVAL, "relative target");
	is_int(http_split_uri("*", path, sizeof(path), &q), -EINVAL, "asterisk target");
	is_int(http_query_get("a=1&mac=52-54&b", "mac", v, sizeof(v)), 0, "query get");
	is_str(v, "52-54", "value");
	is_int(http_query_get("xmac=1", "mac", v, sizeof(v)), -ENOENT, "key must match whole");
	is_int(http_query_get("b", "b", v, sizeof(v)), 0, "key without value");
	is_str(v, "", "empty value");
	is_int(http_query_get("a=%41+b", "a", v, sizeof(v)), 0, "decoded");
	is_str(v, "A b", "percent and plus");
	is_int(http_query_get("a=12345678", "a", v, sizeof(v)), -ENAMETOOLONG, "too long");
	is_int(http_query_get("a=%0a", "a", v, sizeof(v)), -EINVAL, "control byte refused");

	is_int(httpc_parse_url("http://10.0.0.1:8080", host, sizeof(host), port, sizeof(port),
			       prefix, sizeof(prefix)),
	       0, "url");
	ok(!strcmp(host, "10.0.0.1") && !strcmp(port, "8080") && !prefix[0], "url parts");
	is_int(httpc_parse_url("http://[::1]/gc/", host, sizeof(host), port, sizeof(port), prefix,
			       sizeof(prefix)),
	       0, "v6 url");
	ok(!strcmp(host, "::1") && !strcmp(port, "80") && !strcmp(prefix, "/gc"), "v6 parts");
	is_int(httpc_parse_url("https://x", host, sizeof(host), port, sizeof(port), prefix,
			       sizeof(prefix)),
	       -EINVAL, "https refused");
	is_int(httpc_parse_url("http://x:99999", host, sizeof(host), port, sizeof(port), prefix,
			       sizeof(prefix)),
	       -EINVAL, "bad port");
	{
		struct httpc_response r;
		const char ok1[] = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n"
				   "Content-Type: text/plain\r\n\r\nhi";
		const char bad[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi";

		is_int(httpc_parse_response(ok1, sizeof(ok1) - 1, 100, &r), 0, "response parses");
		ok(r.status == 201 && r.len == 2 && !strcmp(r.body, "hi") &&
			   !strcmp(r.content_type, "text/plain"),
		   "status, body, type");
		httpc_response_release(&r);
		is_int(httpc_parse_response(bad, sizeof(bad) - 1, 100, &r), -EPROTO,
		       "short body refused");
		is_int(httpc_parse_response(ok1, sizeof(ok1) - 1, 1, &r), -EFBIG, "body limit");
		is_int(httpc_parse_response("HTTP/1.1 2", 10, 100, &r), -EPROTO, "truncated head");
	}
}

int main(void)
{
	char *dir = tap_tmpdir();
	char *logp = xasprintf("%s/access.log", dir);
	struct http_opts o = {.addr = "127.0.0.1", .port = 0, .max_body = 1000, .access_log = logp};
	struct http_server *s = NULL;
	pthread_t th;
	char url[64], *big, *log = NULL;
	struct httpc_response r;
	struct httpc_request q = {.path = "/boot.ipxe?mac=52-54-00-12-34-56"};
	size_t loglen = 0;
	int lines = 0;

	test_parsers();
	is_int(http_new(&o, echo, NULL, &s), 0, "server listens");
	ok(http_port(s) > 0, "bound port %u", http_port(s));
	ok(http_epoll_fd(s) >= 0, "epoll fd exposed");
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", http_port(s));
	pthread_create(&th, NULL, loop_thread, s);

	is_int(httpc_request(url, &q, &r), 0, "GET");
	is_int(r.status, 200, "200");
	is_str(r.body, "GET /boot.ipxe q=mac=52-54-00-12-34-56 mac=52-54-00-12-34-56 auth=- body=",
	       "handler saw path and query");
	httpc_response_release(&r);

	q = (struct httpc_request){.method = "PUT",
				   .path = "/x%2Fy",
				   .bearer = "tok123",
				   .body = "{\"a\":1}",
				   .body_len = 7};
	is_int(httpc_request(url, &q, &r), 0, "PUT with body");
	is_str(r.body, "PUT /x/y q= mac= auth=Bearer tok123 body={\"a\":1}", "body and auth");
	httpc_response_release(&r);

	big = xmalloc(5000);
	memset(big, 'x', 5000);
	q = (struct httpc_request){.method = "POST", .path = "/big", .body = big, .body_len = 5000};
	is_int(httpc_request(url, &q, &r), 0, "POST oversized");
	is_int(r.status, 413, "413 for a body over max_body");
	ok(r.body && strstr(r.body, "\"status\":413") != NULL, "JSON error body");
	httpc_response_release(&r);
	free(big);

	q = (struct httpc_request){.path = "/a%00b"};
	is_int(httpc_request(url, &q, &r), 0, "GET malformed target");
	is_int(r.status, 400, "400 for %%00");
	httpc_response_release(&r);

	{
		char *longp = xmalloc(4001);

		memset(longp, 'a', 4000);
		longp[0] = '/';
		longp[4000] = '\0';
		q = (struct httpc_request){.path = longp};
		is_int(httpc_request(url, &q, &r), 0, "GET with a 4000-byte target");
		is_int(r.status, 400, "overlong target: 400");
		httpc_response_release(&r);
		free(longp);
	}

	q = (struct httpc_request){.path = "/err"};
	is_int(httpc_request(url, &q, &r), 0, "GET error route");
	is_int(r.status, 404, "status from http_error");
	is_str(r.body,
	       "{\"error\":{\"status\":404,\"message\":\"no \\\"such\\\" thing\\u000a\"}}\n",
	       "error message JSON-escaped");
	is_str(r.content_type, "application/json", "JSON content type");
	httpc_response_release(&r);

	q = (struct httpc_request){.path = "/evil\"%0d%0a"};
	is_int(httpc_request(url, &q, &r), 0, "GET with escapes in the target");
	is_int(r.status, 400, "encoded CR LF refused");
	httpc_response_release(&r);
	q = (struct httpc_request){.path = "/a b"};
	is_int(httpc_request(url, &q, &r), -EINVAL, "client refuses a space in the path");

	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	http_free(s);

	is_int(io_read_file(logp, 1 << 20, &log, &loglen), 0, "access log written");
	for (size_t i = 0; i < loglen; i++)
		lines += log[i] == '\n';
	is_int(lines, 7, "one line per request");
	ok(log && strstr(log, " 127.0.0.1:") &&
		   strstr(log, " GET /boot.ipxe?mac=52-54-00-12-34-56 200 "),
	   "line has peer, method, target, status");
	ok(log && strstr(log, " POST /big 413 "), "413 logged");
	ok(log && strstr(log, " GET /evil%22%0d%0a 400 "), "hostile bytes escaped in the log");
	free(log);
	tap_rmtree(dir);
	free(logp);
	return done_testing();
}
