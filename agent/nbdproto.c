/* NBD protocol engine (see nbdproto.h), fed by agent/nbd.c and the fuzzer.
 *
 * Buffers: the input buffer holds at most one whole request (header + write
 * payload <= NBD_MAX_REQUEST) plus what arrived after it; the output buffer
 * holds replies until the server sends them, and the session stops parsing
 * while more than NBD_OUT_HIGH bytes wait, so a client that does not read
 * cannot grow it beyond one read reply past that mark. A READ reply's data
 * is read by the export straight into the output buffer (one copy between
 * the cache and the socket), or, for an export that can locate it in a file
 * (gold), queued as a file range the server splices without a copy; small
 * reads already in the page cache are copied (read_cached) all the same.
 *
 * Framing errors (bad magic, an option or a write longer than the limits,
 * too many options) end the session: the stream cannot be trusted after
 * them. Errors inside a well-framed request are answered with an NBD error
 * and the session goes on. */
#include "agent/nbdproto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bytes.h"
#include "lib/log.h"
#include "lib/util.h"

#define IN_INITIAL (256u << 10)
#define IN_MAX (NBD_MAX_REQUEST + (1u << 20))
#define OPT_HDR 16u
#define REQ_HDR 28u
#define REPLY_HDR 16u

enum state { ST_CLIENT_FLAGS, ST_OPTIONS, ST_TRANSMISSION, ST_DONE };

#define SEG_MIN (64u << 10)
#define SEG_KEEP 8u /* drained segments kept for reuse */

/* One piece of queued output: memory bytes [off, len), then optionally a
 * file range sent with sendfile (zero-copy READ replies of the gold image). */
struct oseg {
	struct oseg *next;
	uint8_t *p;
	size_t cap, len, off;
	int fd;
	uint64_t foff;
	size_t flen;
};

struct nbd_session {
	const struct nbd_export **exports; /* copy of the caller's array */
	size_t nexports;
	const struct nbd_export *exp;
	enum state state;
	int no_zeroes;
	unsigned noptions;
	uint8_t *in;
	size_t in_off, in_len, in_cap;
	struct oseg *ohead, *otail, *ofree;
	size_t out_pending; /* bytes queued, memory and file ranges */
	unsigned nfree;
	int blocked, woke, wake_err;
	int held; /* blocked by ops->hold: the request is still in the input */
	struct nbd_request pending;
};

/* ---- requests (pure) ---- */

int nbd_request_decode(const uint8_t *b, size_t len, struct nbd_request *rq)
{
	if (len < REQ_HDR || get_be32(b) != NBD_REQUEST_MAGIC)
		return -EBADMSG;
	rq->flags = get_be16(b + 4);
	rq->type = get_be16(b + 6);
	rq->cookie = get_be64(b + 8);
	rq->offset = get_be64(b + 16);
	rq->length = get_be32(b + 24);
	return 0;
}

uint32_t nbd_request_check(const struct nbd_request *rq, uint64_t size, int read_only)
{
	uint32_t allowed = NBD_CMD_FLAG_FUA;
	int writes = 0;

	switch (rq->type) {
	case NBD_CMD_READ:
		break;
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
		writes = 1;
		break;
	case NBD_CMD_WRITE_ZEROES:
		writes = 1;
		allowed |= NBD_CMD_FLAG_NO_HOLE;
		break;
	case NBD_CMD_FLUSH:
	case NBD_CMD_DISC:
		return 0;
	default:
		return NBD_EINVAL;
	}
	if (rq->flags & ~allowed)
		return NBD_EINVAL;
	if (writes && read_only)
		return NBD_EPERM;
	if (rq->type != NBD_CMD_WRITE_ZEROES && rq->type != NBD_CMD_TRIM &&
	    rq->length > NBD_MAX_REQUEST)
		return NBD_EOVERFLOW;
	if (rq->offset > size || rq->length > size - rq->offset)
		return writes ? NBD_ENOSPC : NBD_EINVAL;
	return 0;
}

uint32_t nbd_errno_to_nbd(int err)
{
	switch (-err) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

/* ---- buffers ---- */

/* Room for n more output bytes at the end of the queue; returns where they
 * go (out_commit(n) queues them). Segments are reused, never moved: no byte
 * already queued is copied again. */
static uint8_t *out_reserve(struct nbd_session *s, size_t n)
{
	struct oseg *t = s->otail, **pp;

	if (t && t->fd < 0 && t->cap - t->len >= n)
		return t->p + t->len;
	for (pp = &s->ofree; *pp; pp = &(*pp)->next)
		if ((*pp)->cap >= n)
			break;
	if (*pp) {
		t = *pp;
		*pp = t->next;
		s->nfree--;
	} else {
		t = xcalloc(1, sizeof(*t));
		t->cap = MAX(n, (size_t)SEG_MIN);
		t->p = xmalloc(t->cap);
	}
	t->next = NULL;
	t->len = t->off = 0;
	t->fd = -1;
	t->flen = 0;
	if (s->otail)
		s->otail->next = t;
	else
		s->ohead = t;
	s->otail = t;
	return t->p;
}

static void out_commit(struct nbd_session *s, size_t n)
{
	s->otail->len += n;
	s->out_pending += n;
}

static void out_put(struct nbd_session *s, const void *p, size_t n)
{
	if (!p || n == 0)
		return;
	memcpy(out_reserve(s, n), p, n);
	out_commit(s, n);
}

/* Queues a file range right after the bytes queued last. */
static void out_file(struct nbd_session *s, int fd, uint64_t off, size_t len)
{
	s->otail->fd = fd;
	s->otail->foff = off;
	s->otail->flen = len;
	s->out_pending += len;
}

static void opt_reply(struct nbd_session *s, uint32_t opt, uint32_t type, const void *data,
		      size_t len)
{
	uint8_t h[20];

	put_be64(h, NBD_REP_MAGIC);
	put_be32(h + 8, opt);
	put_be32(h + 12, type);
	put_be32(h + 16, (uint32_t)len);
	out_put(s, h, sizeof(h));
	if (len)
		out_put(s, data, len);
}

static void opt_error(struct nbd_session *s, uint32_t opt, uint32_t type, const char *msg)
{
	opt_reply(s, opt, type, msg, strlen(msg));
}

static void simple_reply(struct nbd_session *s, uint64_t cookie, uint32_t err)
{
	uint8_t h[REPLY_HDR];

	put_be32(h, NBD_SIMPLE_REPLY_MAGIC);
	put_be32(h + 4, err);
	put_be64(h + 8, cookie);
	out_put(s, h, sizeof(h));
}

/* ---- session ---- */

struct nbd_session *nbd_session_new(const struct nbd_export *const *exports, size_t n)
{
	struct nbd_session *s = xcalloc(1, sizeof(*s));
	uint8_t g[18];

	/* an array of pointers */
	s->exports = xcalloc(MAX(n, (size_t)1), sizeof(void *));
	if (n)
		memcpy((void *)s->exports, (const void *)exports, n * sizeof(void *));
	s->nexports = n;
	s->in_cap = IN_INITIAL;
	s->in = xmalloc(s->in_cap);
	put_be64(g, NBD_MAGIC);
	put_be64(g + 8, NBD_IHAVEOPT);
	put_be16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	out_put(s, g, sizeof(g));
	return s;
}

void nbd_session_free(struct nbd_session *s)
{
	if (!s)
		return;
	free(s->in);
	free(s->exports);
	for (int l = 0; l < 2; l++)
		for (struct oseg *g = l ? s->ofree : s->ohead, *next; g; g = next) {
			next = g->next;
			free(g->p);
			free(g);
		}
	free(s);
}

/* Bytes the parser needs in the input buffer before it can go on. */
static size_t in_need(const struct nbd_session *s)
{
	const uint8_t *p = s->in + s->in_off;
	size_t have = s->in_len - s->in_off;

	switch (s->state) {
	case ST_CLIENT_FLAGS:
		return 4;
	case ST_OPTIONS:
		if (have >= OPT_HDR && get_be32(p + 12) <= NBD_MAX_OPTION)
			return OPT_HDR + get_be32(p + 12);
		return OPT_HDR;
	case ST_TRANSMISSION:
		if (have >= REQ_HDR && get_be16(p + 6) == NBD_CMD_WRITE &&
		    get_be32(p + 24) <= NBD_MAX_REQUEST)
			return REQ_HDR + get_be32(p + 24);
		return REQ_HDR;
	default:
		return 1;
	}
}

uint8_t *nbd_session_inbuf(struct nbd_session *s, size_t *avail)
{
	size_t need = in_need(s), have = s->in_len - s->in_off;

	if (s->in_off > 0 && (s->in_off == s->in_len || s->in_cap - s->in_off < need)) {
		memmove(s->in, s->in + s->in_off, have);
		s->in_off = 0;
		s->in_len = have;
	}
	if (s->in_cap - s->in_off < need && need <= IN_MAX) {
		s->in_cap = MIN(MAX(s->in_cap * 2, need + IN_INITIAL), (size_t)IN_MAX);
		s->in = xrealloc(s->in, s->in_cap);
	}
	*avail = s->in_cap - s->in_len;
	return s->in + s->in_len;
}

void nbd_session_received(struct nbd_session *s, size_t n)
{
	s->in_len += MIN(n, s->in_cap - s->in_len);
}

/* Drops drained (or never filled) segments at the head of the queue: to the
 * free list (bounded) or freed. Returns the first segment with bytes. */
static struct oseg *out_head(struct nbd_session *s)
{
	struct oseg *h;

	while ((h = s->ohead) && h->off == h->len && h->flen == 0) {
		s->ohead = h->next;
		if (!s->ohead)
			s->otail = NULL;
		if (s->nfree < SEG_KEEP) {
			h->next = s->ofree;
			s->ofree = h;
			s->nfree++;
		} else {
			free(h->p);
			free(h);
		}
	}
	return h;
}

const uint8_t *nbd_session_outbuf(struct nbd_session *s, size_t *len)
{
	struct oseg *h = out_head(s);

	*len = h ? h->len - h->off : 0;
	return h ? h->p + h->off : NULL;
}

int nbd_session_outfile(struct nbd_session *s, uint64_t *off, size_t *len)
{
	struct oseg *h = out_head(s);

	if (!h || h->off < h->len || h->fd < 0 || h->flen == 0)
		return -1;
	*off = h->foff;
	*len = h->flen;
	return h->fd;
}

size_t nbd_session_out_pending(const struct nbd_session *s)
{
	return s->out_pending;
}

size_t nbd_session_outvec(struct nbd_session *s, struct iovec *iov, size_t max, size_t *len)
{
	size_t n = 0, total = 0;

	for (struct oseg *g = out_head(s); g && n < max; g = g->next) {
		if (g->off < g->len) {
			iov[n].iov_base = g->p + g->off;
			iov[n].iov_len = g->len - g->off;
			total += iov[n++].iov_len;
		}
		if (g->flen)
			break; /* a file range: sent its own way, after these bytes */
	}
	*len = total;
	return n;
}

void nbd_session_sent(struct nbd_session *s, size_t n)
{
	struct oseg *h;

	while (n && (h = out_head(s))) {
		size_t k;

		if (h->off < h->len) {
			k = MIN(n, h->len - h->off);
			h->off += k;
		} else {
			k = MIN(n, h->flen);
			h->foff += k;
			h->flen -= k;
		}
		s->out_pending -= k;
		n -= k;
	}
	out_head(s);
}

int nbd_session_done(const struct nbd_session *s)
{
	if (s->state != ST_DONE)
		return 0;
	return s->out_pending == 0 ? 1 : 2;
}

int nbd_session_pending_input(const struct nbd_session *s)
{
	return s->in_len - s->in_off >= in_need(s);
}

int nbd_session_blocked(const struct nbd_session *s)
{
	return s->blocked;
}

void nbd_session_wake(struct nbd_session *s, int err)
{
	s->woke = 1;
	s->wake_err = err;
}

int nbd_session_woken(const struct nbd_session *s)
{
	return s->blocked && s->woke;
}

const struct nbd_export *nbd_session_export(const struct nbd_session *s)
{
	return s->state == ST_TRANSMISSION ? s->exp : NULL;
}

static int fail(struct nbd_session *s, const char *why)
{
	log_debug("nbd session ended: %s", why);
	s->state = ST_DONE;
	return -ECONNABORTED;
}

static const struct nbd_export *find_export(const struct nbd_session *s, const uint8_t *name,
					    size_t len)
{
	if (len == 0)
		return s->nexports ? s->exports[0] : NULL;
	for (size_t i = 0; i < s->nexports; i++)
		if (strlen(s->exports[i]->name) == len &&
		    memcmp(s->exports[i]->name, name, len) == 0)
			return s->exports[i];
	return NULL;
}

static uint16_t tx_flags(const struct nbd_export *e)
{
	uint16_t f = NBD_TF_HAS_FLAGS | NBD_TF_SEND_FLUSH | NBD_TF_CAN_MULTI_CONN;

	if (e->read_only)
		f |= NBD_TF_READ_ONLY;
	else
		f |= NBD_TF_SEND_FUA | NBD_TF_SEND_TRIM | NBD_TF_SEND_WRITE_ZEROES;
	return f;
}

/* NBD_OPT_INFO / NBD_OPT_GO */
static int opt_info(struct nbd_session *s, uint32_t opt, const uint8_t *d, uint32_t len)
{
	const struct nbd_export *e;
	uint32_t namelen;
	uint16_t nreq;
	uint8_t info[14];

	if (len < 6)
		goto invalid;
	namelen = get_be32(d);
	if (namelen > len - 6 || namelen > NBD_MAX_NAME)
		goto invalid;
	nreq = get_be16(d + 4 + namelen);
	if ((uint32_t)nreq * 2 != len - 6 - namelen)
		goto invalid;
	e = find_export(s, d + 4, namelen);
	if (!e) {
		opt_error(s, opt, NBD_REP_ERR_UNKNOWN, "no such export (try 'gold' or 'volume')");
		return 0;
	}
	put_be16(info, NBD_INFO_EXPORT);
	put_be64(info + 2, e->size);
	put_be16(info + 10, tx_flags(e));
	opt_reply(s, opt, NBD_REP_INFO, info, 12);
	for (uint16_t i = 0; i < nreq; i++) {
		uint16_t type = get_be16(d + 6 + namelen + (size_t)2 * i);
		uint8_t buf[2 + NBD_MAX_NAME + 64];
		const char *str = NULL;

		if (type == NBD_INFO_NAME)
			str = e->name;
		else if (type == NBD_INFO_DESCRIPTION)
			str = e->description;
		if (str) {
			size_t n = MIN(strlen(str), sizeof(buf) - 2);

			put_be16(buf, type);
			memcpy(buf + 2, str, n); // NOLINT(bugprone-not-null-terminated-result)
			opt_reply(s, opt, NBD_REP_INFO, buf, 2 + n);
		} else if (type == NBD_INFO_BLOCK_SIZE) {
			put_be16(buf, type);
			put_be32(buf + 2, 1);
			put_be32(buf + 6, 4096);
			put_be32(buf + 10, NBD_MAX_REQUEST);
			opt_reply(s, opt, NBD_REP_INFO, buf, 14);
		}
	}
	opt_reply(s, opt, NBD_REP_ACK, NULL, 0);
	if (opt == NBD_OPT_GO) {
		s->exp = e;
		s->state = ST_TRANSMISSION;
	}
	return 0;
invalid:
	opt_error(s, opt, NBD_REP_ERR_INVALID, "malformed option");
	return 0;
}

static int handle_option(struct nbd_session *s, uint32_t opt, const uint8_t *d, uint32_t len)
{
	switch (opt) {
	case NBD_OPT_EXPORT_NAME: {
		const struct nbd_export *e = len <= NBD_MAX_NAME ? find_export(s, d, len) : NULL;
		uint8_t r[10 + 124];

		if (!e)
			return fail(s, "EXPORT_NAME of an unknown export");
		memset(r, 0, sizeof(r));
		put_be64(r, e->size);
		put_be16(r + 8, tx_flags(e));
		out_put(s, r, s->no_zeroes ? 10 : sizeof(r));
		s->exp = e;
		s->state = ST_TRANSMISSION;
		return 0;
	}
	case NBD_OPT_ABORT:
		opt_reply(s, opt, NBD_REP_ACK, NULL, 0);
		return fail(s, "client aborted");
	case NBD_OPT_LIST:
		if (len != 0) {
			opt_error(s, opt, NBD_REP_ERR_INVALID, "LIST takes no data");
			return 0;
		}
		for (size_t i = 0; i < s->nexports; i++) {
			size_t n = MIN(strlen(s->exports[i]->name), (size_t)NBD_MAX_NAME);
			uint8_t buf[4 + NBD_MAX_NAME];

			put_be32(buf, (uint32_t)n);
			memcpy(buf + 4, s->exports[i]->name, n);
			opt_reply(s, opt, NBD_REP_SERVER, buf, 4 + n);
		}
		opt_reply(s, opt, NBD_REP_ACK, NULL, 0);
		return 0;
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return opt_info(s, opt, d, len);
	default:
		opt_error(s, opt, NBD_REP_ERR_UNSUP, "option not supported");
		return 0;
	}
}

/* Executes one request (payload, for WRITE, at data). Returns 1 when the
 * request is blocked waiting for its export. */
static int handle_request(struct nbd_session *s, const struct nbd_request *rq, const uint8_t *data)
{
	const struct nbd_export *e = s->exp;
	int fua = !!(rq->flags & NBD_CMD_FLAG_FUA), r = 0;
	uint32_t err = nbd_request_check(rq, e->size, e->read_only);

	if (err) {
		simple_reply(s, rq->cookie, err);
		return 0;
	}
	switch (rq->type) {
	case NBD_CMD_READ: {
		uint8_t *p;
		uint64_t foff;
		int fd = -1;

		/* small and in memory: header and data leave in one send */
		if (rq->length && rq->length <= NBD_COPY_MAX && e->ops->read_cached) {
			/* reserved, not committed: reused below if it fails */
			p = out_reserve(s, REPLY_HDR + (size_t)rq->length);
			if (e->ops->read_cached(e->priv, p + REPLY_HDR, rq->offset, rq->length) ==
			    0) {
				put_be32(p, NBD_SIMPLE_REPLY_MAGIC);
				put_be32(p + 4, 0);
				put_be64(p + 8, rq->cookie);
				out_commit(s, REPLY_HDR + rq->length);
				return 0;
			}
		}
		/* zero-copy when the export can name the bytes in a file */
		if (rq->length && e->ops->locate)
			fd = e->ops->locate(e->priv, rq->offset, rq->length, &foff);
		if (fd >= 0) {
			simple_reply(s, rq->cookie, 0);
			out_file(s, fd, foff, rq->length);
			return 0;
		}
		p = out_reserve(s, REPLY_HDR + (size_t)rq->length);
		r = rq->length ? e->ops->read(e->priv, s, p + REPLY_HDR, rq->offset, rq->length)
			       : 0;
		if (r == -EINPROGRESS) {
			s->blocked = 1;
			s->woke = 0;
			s->pending = *rq;
			return 1;
		}
		/* header in front of the data the export read in place */
		put_be32(p, NBD_SIMPLE_REPLY_MAGIC);
		put_be32(p + 4, nbd_errno_to_nbd(r));
		put_be64(p + 8, rq->cookie);
		out_commit(s, REPLY_HDR + (r == 0 ? rq->length : 0));
		return 0;
	}
	case NBD_CMD_WRITE:
		if (rq->length)
			r = e->ops->write(e->priv, data, rq->offset, rq->length, fua);
		break;
	case NBD_CMD_WRITE_ZEROES:
		if (rq->length)
			r = e->ops->zero(e->priv, rq->offset, rq->length, fua);
		break;
	case NBD_CMD_TRIM:
		/* advisory: the blocks keep their data (and their dirty bits) */
		if (fua)
			r = e->ops->flush(e->priv);
		break;
	case NBD_CMD_FLUSH:
		r = e->ops->flush(e->priv);
		break;
	default:
		break;
	}
	simple_reply(s, rq->cookie, nbd_errno_to_nbd(r));
	return 0;
}

int nbd_session_run(struct nbd_session *s)
{
	for (;;) {
		const uint8_t *p = s->in + s->in_off;
		size_t have = s->in_len - s->in_off;

		if (s->state == ST_DONE)
			return -ECONNABORTED;
		if (s->blocked) {
			if (!s->woke)
				return 0;
			s->blocked = 0;
			if (s->held) { /* parse the held write again */
				s->held = 0;
				continue;
			}
			if (s->wake_err) {
				simple_reply(s, s->pending.cookie, nbd_errno_to_nbd(s->wake_err));
				continue;
			}
			if (handle_request(s, &s->pending, NULL))
				return 0;
			continue;
		}
		if (s->out_pending > NBD_OUT_HIGH)
			return 0;
		switch (s->state) {
		case ST_CLIENT_FLAGS: {
			uint32_t f;

			if (have < 4)
				return 0;
			f = get_be32(p);
			s->in_off += 4;
			if (!(f & NBD_FLAG_FIXED_NEWSTYLE) ||
			    (f & ~(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)))
				return fail(s, "client flags not supported");
			s->no_zeroes = !!(f & NBD_FLAG_NO_ZEROES);
			s->state = ST_OPTIONS;
			break;
		}
		case ST_OPTIONS: {
			uint32_t opt, len;

			if (have < OPT_HDR)
				return 0;
			if (get_be64(p) != NBD_IHAVEOPT)
				return fail(s, "bad option magic");
			opt = get_be32(p + 8);
			len = get_be32(p + 12);
			if (len > NBD_MAX_OPTION)
				return fail(s, "option too long");
			if (++s->noptions > NBD_MAX_OPTIONS)
				return fail(s, "too many options");
			if (have - OPT_HDR < len)
				return 0;
			s->in_off += OPT_HDR + len;
			if (handle_option(s, opt, p + OPT_HDR, len) < 0)
				return -ECONNABORTED;
			break;
		}
		case ST_TRANSMISSION: {
			struct nbd_request rq;

			if (have < REQ_HDR)
				return 0;
			if (nbd_request_decode(p, have, &rq) < 0)
				return fail(s, "bad request magic");
			if (rq.type == NBD_CMD_WRITE) {
				if (rq.length > NBD_MAX_REQUEST)
					return fail(s, "write longer than the maximum");
				if (have - REQ_HDR < rq.length)
					return 0;
			}
			if ((rq.type == NBD_CMD_WRITE || rq.type == NBD_CMD_WRITE_ZEROES) &&
			    s->exp->ops->hold && s->exp->ops->hold(s->exp->priv)) {
				/* writes held (a sync's final pass): the request stays
				 * in the input until nbd_session_wake */
				s->blocked = 1;
				s->woke = 0;
				s->held = 1;
				return 0;
			}
			s->in_off += REQ_HDR + (rq.type == NBD_CMD_WRITE ? rq.length : 0);
			if (rq.type == NBD_CMD_DISC)
				return fail(s, "client disconnected");
			if (handle_request(s, &rq, p + REQ_HDR))
				return 0;
			break;
		}
		default:
			return -ECONNABORTED;
		}
	}
}
