/* Fuzz harness for the NBD protocol engine (agent/nbdproto.c): the input is
 * what a client sends (handshake, options, requests), delivered in pieces of
 * varying size to a session serving a 64 KiB read-only export and a 64 KiB
 * writable one held in memory (with pretend file ranges, page-cache copies
 * and fetches on parts of the read-only one). Output is drained and discarded; the engine
 * must never read or write out of bounds, nor loop. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent/nbdproto.h"
#include "lib/log.h"

#define EXP_SIZE 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t gold[EXP_SIZE], vol[EXP_SIZE];
static void *waiting;
static int retry_ok;

static int m_read(void *priv, void *waiter, void *buf, uint64_t off, uint32_t len)
{
	uint8_t *m = priv;

	/* reads of gold's page 3 (mod 7) wait for a pretend fetch once */
	if (m == gold && (off / 4096) % 7 == 3 && !retry_ok) {
		waiting = waiter;
		return -EINPROGRESS;
	}
	retry_ok = 0;
	if (off > EXP_SIZE || len > EXP_SIZE - off)
		__builtin_trap();
	memcpy(buf, m + off, len);
	return 0;
}
static int m_write(void *priv, const void *buf, uint64_t off, uint32_t len, int fua)
{
	(void)fua;
	if (priv == gold || off > EXP_SIZE || len > EXP_SIZE - off)
		__builtin_trap();
	memcpy((uint8_t *)priv + off, buf, len);
	return 0;
}
static int m_zero(void *priv, uint64_t off, uint32_t len, int fua)
{
	(void)fua;
	if (priv == gold || off > EXP_SIZE || len > EXP_SIZE - off)
		__builtin_trap();
	memset((uint8_t *)priv + off, 0, len);
	return 0;
}
static int m_flush(void *priv)
{
	(void)priv;
	return 0;
}

static int m_locate(void *priv, uint64_t off, uint32_t len, uint64_t *foff)
{
	/* gold page 5 (mod 7) "lies in a file": exercises file ranges */
	if (priv != gold || (off / 4096) % 7 != 5 || off > EXP_SIZE || len > EXP_SIZE - off)
		return -1;
	*foff = off;
	return 99;
}

static int m_read_cached(void *priv, void *buf, uint64_t off, uint32_t len)
{
	/* gold page 1 (mod 7) "is in the page cache": copied at parse time */
	if (priv != gold || (off / 4096) % 7 != 1)
		return -EAGAIN;
	if (off > EXP_SIZE || len > EXP_SIZE - off || len > NBD_COPY_MAX)
		__builtin_trap();
	memcpy(buf, gold + off, len);
	return 0;
}

static const struct nbd_export_ops ops = {
	.read = m_read,
	.write = m_write,
	.zero = m_zero,
	.flush = m_flush,
	.locate = m_locate,
	.read_cached = m_read_cached,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct nbd_export g = {"gold", "ro", EXP_SIZE, 1, &ops, gold};
	static const struct nbd_export v = {"volume", "rw", EXP_SIZE, 0, &ops, vol};
	const struct nbd_export *exps[2] = {&g, &v};
	struct nbd_session *s;
	size_t pos = 0, piece;
	int rounds = 0;

	log_set_level(LOG_ERROR);
	if (size < 1)
		return 0;
	piece = (size_t)data[0] % 61 + 1; /* feed in pieces of 1-61 bytes */
	data++, size--;
	waiting = NULL;
	retry_ok = 0;
	s = nbd_session_new(exps, 2);
	while (rounds++ < 100000) {
		size_t avail, n, outlen;
		uint8_t *in = nbd_session_inbuf(s, &avail);

		n = size - pos < piece ? size - pos : piece;
		n = n < avail ? n : avail;
		memcpy(in, data + pos, n);
		nbd_session_received(s, n);
		pos += n;
		if (nbd_session_run(s) < 0 && nbd_session_done(s))
			break;
		while (nbd_session_out_pending(s)) {
			uint64_t foff;

			if (nbd_session_outbuf(s, &outlen) == NULL || outlen == 0) {
				if (nbd_session_outfile(s, &foff, &outlen) < 0)
					__builtin_trap(); /* bytes pending, nothing to send */
			}
			nbd_session_sent(s, outlen);
		}
		if (waiting) {
			/* the fetch completes: fine every other time, EIO else */
			nbd_session_wake(waiting, rounds % 2 ? -EIO : 0);
			waiting = NULL;
			retry_ok = 1;
			continue;
		}
		if (pos == size && !nbd_session_pending_input(s) && !nbd_session_woken(s))
			break;
	}
	nbd_session_free(s);
	return 0;
}
