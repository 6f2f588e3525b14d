/* Unit tests for agent/nbdproto: the handshake (GO, INFO, EXPORT_NAME, LIST,
 * ABORT, unsupported options), request checks (bounds in subtraction form,
 * EPERM on the read-only export, size limits), replies, pipelining, blocked
 * reads woken later, framing errors that end the session, and coalesced
 * replies (one sendmsg vector for every reply of one input buffer). */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/nbdproto.h"
#include "lib/util.h"
#include "tests/tap.h"

#define SZ 65536

static uint8_t gold[SZ], vol[SZ];
static int flushes, defer_next;
static void *waiter;

static int m_read(void *priv, void *w, void *buf, uint64_t off, uint32_t len)
{
	if (defer_next) {
		defer_next = 0;
		waiter = w;
		return -EINPROGRESS;
	}
	memcpy(buf, (uint8_t *)priv + off, len);
	return 0;
}
static int m_write(void *priv, const void *buf, uint64_t off, uint32_t len, int fua)
{
	memcpy((uint8_t *)priv + off, buf, len);
	flushes += fua;
	return 0;
}
static int m_zero(void *priv, uint64_t off, uint32_t len, int fua)
{
	memset((uint8_t *)priv + off, 0, len);
	flushes += fua;
	return 0;
}
static int m_flush(void *priv)
{
	(void)priv;
	flushes++;
	return 0;
}
static int holding;
static int m_hold(void *priv)
{
	(void)priv;
	return holding;
}
/* read_cached: "in the page cache" for the first half of the export only;
 * counts its calls and the reads that fell back to m_read */
static int cached_calls, reads;
static int m_read_cached(void *priv, void *buf, uint64_t off, uint32_t len)
{
	cached_calls++;
	if (off + len > SZ / 2)
		return -EAGAIN;
	memcpy(buf, (uint8_t *)priv + off, len);
	return 0;
}
static int m_read_counted(void *priv, void *w, void *buf, uint64_t off, uint32_t len)
{
	reads++;
	return m_read(priv, w, buf, off, len);
}
static const struct nbd_export_ops ops = {
	.read = m_read, .write = m_write, .zero = m_zero, .flush = m_flush};
static const struct nbd_export_ops ops_h = {
	.read = m_read, .write = m_write, .zero = m_zero, .flush = m_flush, .hold = m_hold};
static const struct nbd_export_ops ops_c = {.read = m_read_counted,
					    .write = m_write,
					    .zero = m_zero,
					    .flush = m_flush,
					    .read_cached = m_read_cached};
static const struct nbd_export exp_g = {"gold", "gold image", SZ, 1, &ops, gold};
static const struct nbd_export exp_v = {"volume", "machine volume", SZ, 0, &ops, vol};
static const struct nbd_export exp_h = {"volume", "machine volume", SZ, 0, &ops_h, vol};
static const struct nbd_export exp_c = {"gold", "gold image", SZ, 1, &ops_c, gold};

/* output collected from the session */
static uint8_t out[1 << 20];
static size_t out_len, out_pos;

static void be(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}
static uint64_t rd(int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n && out_pos < out_len; i++)
		v = v << 8 | out[out_pos++];
	return v;
}

static int feed(struct nbd_session *s, const void *data, size_t len)
{
	size_t avail, n;
	const uint8_t *p;
	int r;

	while (len > 0) {
		uint8_t *in = nbd_session_inbuf(s, &avail);

		n = len < avail ? len : avail;
		memcpy(in, data, n);
		nbd_session_received(s, n);
		data = (const uint8_t *)data + n;
		len -= n;
	}
	r = nbd_session_run(s);
	while (nbd_session_out_pending(s)) {
		p = nbd_session_outbuf(s, &n);
		if (n == 0) { /* the memory exports here have no file ranges */
			ok(0, "unexpected file range in output");
			break;
		}
		memcpy(out + out_len, p, n);
		out_len += n;
		nbd_session_sent(s, n);
	}
	return r;
}

/* Puts data in the input and runs the session, leaving the output queued. */
static void feed_only(struct nbd_session *s, const void *data, size_t len)
{
	size_t avail;
	uint8_t *in = nbd_session_inbuf(s, &avail);

	ok(avail >= len, "input room");
	memcpy(in, data, len);
	nbd_session_received(s, len);
	ok(nbd_session_run(s) == 0, "session runs");
}

static size_t opt(uint8_t *b, uint32_t o, const void *data, uint32_t len)
{
	memcpy(b, "IHAVEOPT", 8); // NOLINT(bugprone-not-null-terminated-result)
	be(b + 8, o, 4);
	be(b + 12, len, 4);
	if (len)
		memcpy(b + 16, data, len);
	return 16 + len;
}
static size_t go(uint8_t *b, uint32_t o, const char *name, const uint16_t *infos, int n)
{
	uint8_t d[256];
	size_t l = strlen(name);

	be(d, l, 4);
	memcpy(d + 4, name, l); // NOLINT(bugprone-not-null-terminated-result)
	be(d + 4 + l, (uint64_t)n, 2);
	for (int i = 0; i < n; i++)
		be(d + 6 + l + (size_t)2 * i, infos[i], 2);
	return opt(b, o, d, (uint32_t)(6 + l + 2 * (size_t)n));
}
static size_t req(uint8_t *b, uint16_t type, uint16_t flags, uint64_t cookie, uint64_t off,
		  uint32_t len)
{
	be(b, NBD_REQUEST_MAGIC, 4);
	be(b + 4, flags, 2);
	be(b + 6, type, 2);
	be(b + 8, cookie, 8);
	be(b + 16, off, 8);
	be(b + 24, len, 4);
	return 28;
}

/* Reads one option reply header; returns its type, *len its data length. */
static uint32_t opt_reply(uint32_t *optn, uint32_t *len)
{
	uint64_t magic = rd(8);

	*optn = (uint32_t)rd(4);
	{
		uint32_t t = (uint32_t)rd(4);

		*len = (uint32_t)rd(4);
		return magic == NBD_REP_MAGIC ? t : 0xdead;
	}
}
static uint32_t simple_reply(uint64_t *cookie)
{
	uint32_t magic = (uint32_t)rd(4), err = (uint32_t)rd(4);

	*cookie = rd(8);
	return magic == NBD_SIMPLE_REPLY_MAGIC ? err : 0xdead;
}

/* The next reply is a good READ reply for cookie want carrying gold[off, off + len). */
static void read_reply(uint64_t want, uint64_t off, size_t len, const char *what_ok,
		       const char *what_data)
{
	uint64_t cookie;

	is_int(simple_reply(&cookie), 0, "%s", what_ok);
	ok(cookie == want && memcmp(out + out_pos, gold + off, len) == 0, "%s", what_data);
	out_pos += len;
}

static struct nbd_session *start(const struct nbd_export *const *e, size_t n)
{
	struct nbd_session *s = nbd_session_new(e, n);
	uint8_t flags[4] = {0, 0, 0, 3};

	out_len = out_pos = 0;
	feed(s, flags, 4);
	return s;
}

static void test_handshake(void)
{
	const struct nbd_export *e[2] = {&exp_g, &exp_v};
	struct nbd_session *s;
	uint8_t b[512];
	uint16_t infos[] = {NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME, NBD_INFO_DESCRIPTION};
	uint32_t o, len, t;

	s = start(e, 2);
	is_int(rd(8), NBD_MAGIC, "greeting: NBDMAGIC");
	is_int(rd(8), NBD_IHAVEOPT, "greeting: IHAVEOPT");
	is_int(rd(2), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, "greeting: fixed newstyle");
	feed(s, b, opt(b, NBD_OPT_LIST, NULL, 0));
	t = opt_reply(&o, &len);
	is_int(t, NBD_REP_SERVER, "LIST: first server");
	is_int(rd(4), 4, "LIST: name length");
	out_pos += 4;
	t = opt_reply(&o, &len);
	is_int(t, NBD_REP_SERVER, "LIST: second server");
	out_pos += len;
	is_int(opt_reply(&o, &len), NBD_REP_ACK, "LIST: ack");
	feed(s, b, opt(b, 8 /* STRUCTURED_REPLY */, NULL, 0));
	is_int(opt_reply(&o, &len), NBD_REP_ERR_UNSUP, "STRUCTURED_REPLY unsupported");
	out_pos += len;
	feed(s, b, go(b, NBD_OPT_GO, "nope", NULL, 0));
	is_int(opt_reply(&o, &len), NBD_REP_ERR_UNKNOWN, "GO unknown export");
	out_pos += len;
	feed(s, b, opt(b, NBD_OPT_GO, "\0\0\0\x09gold\0\0", 10));
	is_int(opt_reply(&o, &len), NBD_REP_ERR_INVALID, "GO name length beyond option");
	out_pos += len;
	feed(s, b, go(b, NBD_OPT_INFO, "volume", infos, 3));
	is_int(opt_reply(&o, &len), NBD_REP_INFO, "INFO: export info");
	is_int(rd(2), NBD_INFO_EXPORT, "INFO: type export");
	is_int(rd(8), SZ, "INFO: size");
	ok(!(rd(2) & NBD_TF_READ_ONLY), "INFO: volume writable");
	is_int(opt_reply(&o, &len), NBD_REP_INFO, "INFO: block size");
	is_int(rd(2), NBD_INFO_BLOCK_SIZE, "INFO: type block size");
	is_int(rd(4), 1, "min block 1");
	is_int(rd(4), 4096, "preferred 4096");
	is_int(rd(4), NBD_MAX_REQUEST, "max = request limit");
	is_int(opt_reply(&o, &len), NBD_REP_INFO, "INFO: name");
	out_pos += len;
	is_int(opt_reply(&o, &len), NBD_REP_INFO, "INFO: description");
	out_pos += len;
	is_int(opt_reply(&o, &len), NBD_REP_ACK, "INFO: ack");
	ok(nbd_session_export(s) == NULL, "INFO does not enter transmission");
	feed(s, b, go(b, NBD_OPT_GO, "gold", NULL, 0));
	is_int(opt_reply(&o, &len), NBD_REP_INFO, "GO: info");
	out_pos += 2 + 8;
	ok(rd(2) & NBD_TF_READ_ONLY, "GO: gold read-only");
	is_int(opt_reply(&o, &len), NBD_REP_ACK, "GO: ack");
	ok(nbd_session_export(s) == &exp_g, "transmission on gold");
	nbd_session_free(s);

	s = start(e, 2);
	out_pos = 18;
	ok(feed(s, b, opt(b, NBD_OPT_ABORT, NULL, 0)) < 0, "ABORT ends the session");
	is_int(opt_reply(&o, &len), NBD_REP_ACK, "ABORT acked");
	is_int(nbd_session_done(s), 1, "done, output drained");
	nbd_session_free(s);

	s = start(e, 2);
	out_pos = 18;
	feed(s, b, opt(b, NBD_OPT_EXPORT_NAME, "volume", 6));
	is_int(rd(8), SZ, "EXPORT_NAME: size");
	ok(nbd_session_export(s) == &exp_v && out_len - out_pos == 2, "EXPORT_NAME: no zeroes");
	nbd_session_free(s);

	s = start(e, 2);
	be(b, NBD_IHAVEOPT, 8);
	be(b + 8, NBD_OPT_GO, 4);
	be(b + 12, 1u << 20, 4);
	ok(feed(s, b, 16) < 0, "option longer than the limit ends the session");
	nbd_session_free(s);

	s = nbd_session_new(e, 2);
	out_len = 0;
	ok(feed(s, "\0\0\0\0", 4) < 0, "client without fixed newstyle refused");
	nbd_session_free(s);
}

static struct nbd_session *tx(const struct nbd_export *e)
{
	const struct nbd_export *es[1] = {e};
	struct nbd_session *s = start(es, 1);
	uint8_t b[64];
	uint32_t o, len;

	feed(s, b, go(b, NBD_OPT_GO, "", NULL, 0));
	out_pos = 18;
	opt_reply(&o, &len);
	out_pos += len;
	opt_reply(&o, &len);
	return s;
}

static void test_requests(void)
{
	struct nbd_session *s;
	uint8_t b[4096 + 28 * 8];
	uint64_t cookie;
	size_t n;

	for (int i = 0; i < SZ; i++)
		gold[i] = (uint8_t)(i * 7);
	s = tx(&exp_g);
	ok(nbd_session_export(s) == &exp_g, "default export is the socket's");
	feed(s, b, req(b, NBD_CMD_READ, 0, 11, 1000, 100));
	is_int(simple_reply(&cookie), 0, "read ok");
	is_int(cookie, 11, "cookie echoed");
	ok(memcmp(out + out_pos, gold + 1000, 100) == 0, "read data");
	out_pos += 100;
	n = req(b, NBD_CMD_WRITE, 0, 12, 0, 4);
	memcpy(b + n, "evil", 4);
	feed(s, b, n + 4);
	is_int(simple_reply(&cookie), NBD_EPERM, "write on gold: EPERM");
	is_int(gold[0], 0, "gold untouched");
	feed(s, b, req(b, NBD_CMD_READ, 0, 13, SZ - 10, 11));
	is_int(simple_reply(&cookie), NBD_EINVAL, "read past end: EINVAL");
	feed(s, b, req(b, NBD_CMD_READ, 0, 14, UINT64_MAX - 5, 10));
	is_int(simple_reply(&cookie), NBD_EINVAL, "offset+len overflow: EINVAL");
	feed(s, b, req(b, NBD_CMD_READ, 0, 15, 0, NBD_MAX_REQUEST + 1));
	is_int(simple_reply(&cookie), NBD_EOVERFLOW, "read above the limit: EOVERFLOW");
	feed(s, b, req(b, NBD_CMD_READ, 0x80, 16, 0, 1));
	is_int(simple_reply(&cookie), NBD_EINVAL, "unknown flag: EINVAL");
	feed(s, b, req(b, 9, 0, 17, 0, 1));
	is_int(simple_reply(&cookie), NBD_EINVAL, "unknown command: EINVAL");
	/* a read that waits for its chunk, then is retried */
	defer_next = 1;
	feed(s, b, req(b, NBD_CMD_READ, 0, 18, 4096, 16));
	ok(nbd_session_blocked(s) && out_len == out_pos, "read blocked, no reply yet");
	nbd_session_wake(waiter, 0);
	feed(s, b, 0);
	is_int(simple_reply(&cookie), 0, "woken read answered");
	is_int(cookie, 18, "woken read's cookie");
	ok(memcmp(out + out_pos, gold + 4096, 16) == 0, "woken read's data");
	out_pos += 16;
	defer_next = 1;
	feed(s, b, req(b, NBD_CMD_READ, 0, 19, 0, 16));
	nbd_session_wake(waiter, -EIO);
	feed(s, b, 0);
	is_int(simple_reply(&cookie), NBD_EIO, "failed fetch: EIO");
	ok(feed(s, b, req(b, NBD_CMD_DISC, 0, 20, 0, 0)) < 0, "DISC ends the session");
	nbd_session_free(s);

	/* writes held (a sync's final pass): a read goes on, a write and what
	 * follows it wait unexecuted until the export wakes the session */
	s = tx(&exp_h);
	holding = 1;
	memset(vol, 0, 16);
	feed(s, b, req(b, NBD_CMD_READ, 0, 30, 0, 8));
	is_int(simple_reply(&cookie), 0, "read while writes are held: answered");
	out_pos += 8;
	n = req(b, NBD_CMD_WRITE, 0, 31, 0, 4);
	memcpy(b + n, "held", 4);
	n += 4;
	n += req(b + n, NBD_CMD_READ, 0, 32, 0, 4);
	feed(s, b, n);
	ok(nbd_session_blocked(s) && out_len == out_pos && vol[0] == 0,
	   "held write: blocked, not executed, no reply, the read behind it waits");
	feed(s, b, 0);
	ok(nbd_session_blocked(s) && vol[0] == 0, "still held when run again");
	holding = 0;
	nbd_session_wake(s, 0);
	ok(nbd_session_woken(s), "woken");
	feed(s, b, 0);
	is_int(simple_reply(&cookie), 0, "released write answered");
	is_int(cookie, 31, "its cookie");
	ok(memcmp(vol, "held", 4) == 0, "and executed");
	is_int(simple_reply(&cookie), 0, "the read behind it answered");
	ok(cookie == 32 && memcmp(out + out_pos, "held", 4) == 0, "with the written data");
	out_pos += 4;
	nbd_session_free(s);

	s = tx(&exp_v);
	flushes = 0;
	n = 0;
	for (int i = 0; i < 4; i++) { /* pipelined writes, then reads */
		n += req(b + n, NBD_CMD_WRITE, i == 3 ? NBD_CMD_FLAG_FUA : 0, (uint64_t)i,
			 (uint64_t)i * 100, 100);
		memset(b + n, 'a' + i, 100);
		n += 100;
	}
	n += req(b + n, NBD_CMD_FLUSH, 0, 50, 0, 0);
	n += req(b + n, NBD_CMD_READ, 0, 51, 0, 400);
	feed(s, b, n);
	for (int i = 0; i < 5; i++)
		is_int(simple_reply(&cookie), 0, "pipelined write/flush ok");
	is_int(flushes, 2, "FUA and FLUSH reached the export");
	is_int(simple_reply(&cookie), 0, "read after writes");
	ok(out[out_pos] == 'a' && out[out_pos + 399] == 'd', "writes visible");
	out_pos += 400;
	feed(s, b, req(b, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 52, 0, 200));
	is_int(simple_reply(&cookie), 0, "write zeroes");
	is_int(vol[150], 0, "zeroed");
	feed(s, b, req(b, NBD_CMD_TRIM, 0, 53, 0, 4096));
	is_int(simple_reply(&cookie), 0, "trim accepted");
	n = req(b, NBD_CMD_WRITE, 0, 54, SZ - 2, 4);
	memcpy(b + n, "abcd", 4);
	feed(s, b, n + 4);
	is_int(simple_reply(&cookie), NBD_ENOSPC, "write past end: ENOSPC, stream in sync");
	feed(s, b, req(b, NBD_CMD_READ, 0, 55, 0, 1));
	is_int(simple_reply(&cookie), 0, "next request parsed");
	out_pos++;
	/* a write split across many deliveries */
	n = req(b, NBD_CMD_WRITE, 0, 56, 1000, 4096);
	memset(b + n, 'z', 4096);
	for (size_t i = 0; i < n + 4096; i += 7)
		feed(s, b + i, MIN(7, n + 4096 - i));
	is_int(simple_reply(&cookie), 0, "byte-dribbled write");
	ok(vol[1000] == 'z' && vol[1000 + 4095] == 'z', "dribbled data");
	feed(s, b, req(b, NBD_CMD_WRITE, 0, 57, 0, NBD_MAX_REQUEST + 1));
	is_int(nbd_session_done(s), 1, "write above the limit ends the session");
	nbd_session_free(s);
	/* bad request magic */
	s = tx(&exp_v);
	memset(b, 0xab, 28);
	ok(feed(s, b, 28) < 0, "bad request magic ends the session");
	nbd_session_free(s);
	is_int(nbd_errno_to_nbd(-EROFS), NBD_EPERM, "EROFS -> EPERM");
	is_int(nbd_errno_to_nbd(-ENODATA), NBD_EIO, "other errors -> EIO");
}

/* small reads copied by read_cached when it can, else read; larger ones
 * never ask it; pipelined replies stay in order and intact */
static void test_read_cached(void)
{
	struct nbd_session *s;
	uint8_t b[28 * 4];
	uint64_t cookie;
	size_t n = 0;

	for (int i = 0; i < SZ; i++)
		gold[i] = (uint8_t)(i * 13 + 1);
	s = tx(&exp_c);
	cached_calls = reads = 0;
	feed(s, b, req(b, NBD_CMD_READ, 0, 1, 100, 4096));
	read_reply(1, 100, 4096, "small cached read ok", "its cookie and data");
	ok(cached_calls == 1 && reads == 0, "served by read_cached alone");
	feed(s, b, req(b, NBD_CMD_READ, 0, 2, SZ - 4096, 4096));
	read_reply(2, SZ - 4096, 4096, "small uncached read ok",
		   "its cookie and data (read_cached's try left nothing behind)");
	ok(cached_calls == 2 && reads == 1, "read_cached said EAGAIN: read served it");
	feed(s, b, req(b, NBD_CMD_READ, 0, 3, 0, NBD_COPY_MAX + 1));
	is_int(simple_reply(&cookie), 0, "read above NBD_COPY_MAX ok");
	ok(memcmp(out + out_pos, gold, NBD_COPY_MAX + 1) == 0, "its data");
	out_pos += NBD_COPY_MAX + 1;
	ok(cached_calls == 2 && reads == 2, "read_cached not asked above NBD_COPY_MAX");
	n += req(b + n, NBD_CMD_READ, 0, 10, 0, 512);
	n += req(b + n, NBD_CMD_READ, 0, 11, SZ - 512, 512);
	n += req(b + n, NBD_CMD_READ, 0, 12, 512, 512);
	n += req(b + n, NBD_CMD_READ, 0, 13, 0, 0);
	feed(s, b, n);
	for (uint64_t i = 10; i < 14; i++) {
		uint64_t off = i == 11 ? SZ - 512 : i == 12 ? 512 : 0;
		size_t len = i == 13 ? 0 : 512;

		read_reply(i, off, len, "pipelined read ok",
			   "pipelined reply in order, data intact");
	}
	is_int(out_pos, out_len, "nothing else queued");
	nbd_session_free(s);
}

/* optional locate: reads from offset SZ / 2 on are "in the file" lfd */
static int lfd = -1;
static int m_locate(void *priv, uint64_t off, uint32_t len, uint64_t *foff)
{
	(void)priv, (void)len;
	if (off < SZ / 2)
		return -1;
	*foff = off;
	return lfd;
}
static const struct nbd_export_ops ops_l = {.read = m_read,
					    .write = m_write,
					    .zero = m_zero,
					    .flush = m_flush,
					    .locate = m_locate,
					    .read_cached = m_read_cached};
static const struct nbd_export exp_l = {"gold", "gold image", SZ, 1, &ops_l, gold};

/* Copies what nbd_session_outvec offers into out (one sendmsg's worth);
 * returns the number of iovecs, *bytes the bytes. */
static size_t take_vec(struct nbd_session *s, size_t *bytes)
{
	struct iovec iov[64];
	size_t n = nbd_session_outvec(s, iov, 64, bytes), got = 0;

	for (size_t i = 0; i < n; i++) {
		memcpy(out + out_len, iov[i].iov_base, iov[i].iov_len);
		out_len += iov[i].iov_len;
		got += iov[i].iov_len;
	}
	ok(got == *bytes, "outvec's total is the sum of its buffers");
	nbd_session_sent(s, got);
	return n;
}

/* Reply coalescing: requests that arrive in one buffer are all answered
 * before the server sends, and their replies (several output buffers) leave
 * in one sendmsg, each matching its cookie and data; a file range (a
 * zero-copy reply) ends the vector, the bytes behind it follow in order. */
static void test_coalesced(void)
{
	struct nbd_session *s;
	uint8_t b[28 * 16];
	uint64_t cookie;
	size_t n = 0, bytes, niov, want = 0;
	char tmpl[] = "/tmp/test-nbdproto.XXXXXX";

	for (int i = 0; i < SZ; i++)
		gold[i] = (uint8_t)(i * 11 + 5);
	/* 12 reads of 16 KiB in the cached half, a flush, an out-of-bounds read */
	s = tx(&exp_c);
	out_len = out_pos = 0;
	for (uint64_t i = 0; i < 12; i++) {
		n += req(b + n, NBD_CMD_READ, 0, 100 + i, (i % 2) * 16384, NBD_COPY_MAX);
		want += 16 + NBD_COPY_MAX;
	}
	n += req(b + n, NBD_CMD_FLUSH, 0, 200, 0, 0);
	n += req(b + n, NBD_CMD_READ, 0, 201, SZ - 10, 4096);
	want += 32;
	feed_only(s, b, n); /* 14 requests in one buffer */
	is_int(nbd_session_out_pending(s), want, "every request answered before any send");
	niov = take_vec(s, &bytes);
	ok(niov > 1, "replies span several output buffers");
	is_int(bytes, want, "one sendmsg carries them all");
	is_int(nbd_session_out_pending(s), 0, "nothing left");
	for (uint64_t i = 0; i < 12; i++) {
		read_reply(100 + i, (i % 2) * 16384, NBD_COPY_MAX, "coalesced read ok",
			   "coalesced reply: its cookie, its data");
	}
	is_int(simple_reply(&cookie), 0, "flush ok");
	ok(cookie == 200, "flush's cookie");
	is_int(simple_reply(&cookie), NBD_EINVAL, "read past the end: EINVAL");
	ok(cookie == 201, "its cookie");
	is_int(out_pos, out_len, "nothing else");
	/* partly sent: the vector resumes at the first unsent byte */
	out_len = out_pos = 0;
	n = 0;
	for (uint64_t i = 0; i < 6; i++)
		n += req(b + n, NBD_CMD_READ, 0, 300 + i, i * 512, NBD_COPY_MAX);
	feed_only(s, b, n);
	nbd_session_sent(s, 100);
	take_vec(s, &bytes);
	is_int(bytes, 6 * (16 + NBD_COPY_MAX) - 100, "after 100 bytes sent: the rest");
	nbd_session_free(s);

	/* a zero-copy reply (file range) in the middle */
	lfd = mkstemp(tmpl);
	ok(lfd >= 0 && write(lfd, gold, SZ) == SZ, "file for the zero-copy range");
	unlink(tmpl);
	s = tx(&exp_l);
	out_len = out_pos = 0;
	n = 0;
	n += req(b + n, NBD_CMD_READ, 0, 1, 0, 4096);
	n += req(b + n, NBD_CMD_READ, 0, 2, SZ / 2, 65536 - SZ / 2);
	n += req(b + n, NBD_CMD_READ, 0, 3, 4096, 4096);
	feed_only(s, b, n);
	take_vec(s, &bytes);
	is_int(bytes, 16 + 4096 + 16, "vector stops at the file range (after its header)");
	{
		uint64_t foff;
		size_t flen;
		int fd = nbd_session_outfile(s, &foff, &flen);

		ok(fd == lfd && foff == SZ / 2 && flen == SZ / 2, "then the file range");
		ok(pread(fd, out + out_len, flen, (off_t)foff) == (ssize_t)flen, "read it");
		out_len += flen;
		nbd_session_sent(s, flen);
	}
	take_vec(s, &bytes);
	is_int(bytes, 16 + 4096, "then the reply behind it");
	for (uint64_t i = 1; i <= 3; i++) {
		uint64_t off = i == 1 ? 0 : i == 2 ? SZ / 2 : 4096;
		size_t len = i == 2 ? SZ / 2 : 4096;

		read_reply(i, off, len, "mixed read ok", "mixed replies in order, data intact");
	}
	is_int(out_pos, out_len, "nothing else");
	nbd_session_free(s);
	close(lfd);
}

int main(void)
{
	test_handshake();
	test_requests();
	test_read_cached();
	test_coalesced();
	return done_testing();
}
