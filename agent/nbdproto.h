/* NBD protocol engine, without I/O: bytes from the client go in, bytes for
 * the client come out, export operations are called through a table. The
 * socket server (agent/nbd.c) and the fuzz harness drive the same code.
 *
 * Implements the fixed newstyle handshake (NBD_OPT_GO, INFO, EXPORT_NAME,
 * LIST, ABORT; everything else answered NBD_REP_ERR_UNSUP), simple replies
 * only, and the commands READ, WRITE, FLUSH, DISC, TRIM (accepted, no-op) and
 * WRITE_ZEROES, with FUA. Every length and offset from the client is bounded
 * before use (subtraction form); a violation of framing closes the session. */
#ifndef GC_AGENT_NBDPROTO_H
#define GC_AGENT_NBDPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define NBD_MAX_REQUEST (32u << 20) /* bytes per READ/WRITE */
#define NBD_MAX_OPTION 4096u /* option payload bytes */
#define NBD_MAX_OPTIONS 64u /* options per handshake */
#define NBD_MAX_NAME 256u /* export name bytes */
#define NBD_OUT_HIGH (4u << 20) /* stop parsing requests while this much output waits */
/* READs up to this size are copied (read_cached) when the export can: for
 * 4-16 KiB a copy plus one send for the header and data beat a splice's
 * four calls; at 32 KiB and up the zero-copy splice costs less server CPU
 * (bench/agent-nbd.sh, see docs/agent.md "Performance") */
#define NBD_COPY_MAX (16u << 10)

/* wire constants (NBD protocol spec) */
#define NBD_MAGIC 0x4e42444d41474943ull
#define NBD_IHAVEOPT 0x49484156454F5054ull
#define NBD_REP_MAGIC 0x3e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u

#define NBD_FLAG_FIXED_NEWSTYLE 1u
#define NBD_FLAG_NO_ZEROES 2u

enum {
	NBD_OPT_EXPORT_NAME = 1,
	NBD_OPT_ABORT = 2,
	NBD_OPT_LIST = 3,
	NBD_OPT_STARTTLS = 5,
	NBD_OPT_INFO = 6,
	NBD_OPT_GO = 7,
};
enum {
	NBD_REP_ACK = 1,
	NBD_REP_SERVER = 2,
	NBD_REP_INFO = 3,
	NBD_REP_ERR_UNSUP = 0x80000001u,
	NBD_REP_ERR_POLICY = 0x80000002u,
	NBD_REP_ERR_INVALID = 0x80000003u,
	NBD_REP_ERR_UNKNOWN = 0x80000006u,
};
enum { NBD_INFO_EXPORT = 0, NBD_INFO_NAME = 1, NBD_INFO_DESCRIPTION = 2, NBD_INFO_BLOCK_SIZE = 3 };

#define NBD_TF_HAS_FLAGS (1u << 0)
#define NBD_TF_READ_ONLY (1u << 1)
#define NBD_TF_SEND_FLUSH (1u << 2)
#define NBD_TF_SEND_FUA (1u << 3)
#define NBD_TF_SEND_TRIM (1u << 5)
#define NBD_TF_SEND_WRITE_ZEROES (1u << 6)
#define NBD_TF_CAN_MULTI_CONN (1u << 8)

enum {
	NBD_CMD_READ = 0,
	NBD_CMD_WRITE = 1,
	NBD_CMD_DISC = 2,
	NBD_CMD_FLUSH = 3,
	NBD_CMD_TRIM = 4,
	NBD_CMD_WRITE_ZEROES = 6,
};
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)

/* NBD error numbers (not the host's errno values) */
enum {
	NBD_EPERM = 1,
	NBD_EIO = 5,
	NBD_ENOMEM = 12,
	NBD_EINVAL = 22,
	NBD_ENOSPC = 28,
	NBD_EOVERFLOW = 75,
	NBD_ENOTSUP = 95,
	NBD_ESHUTDOWN = 108,
};

/* A decoded transmission request header (28 bytes on the wire). */
struct nbd_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t length;
};

/* Decodes a request header; -EBADMSG on a wrong magic. */
int nbd_request_decode(const uint8_t *buf, size_t len, struct nbd_request *rq);
/* Validates rq against an export of size bytes: 0, or the NBD error to
 * reply (NBD_EINVAL, NBD_EPERM, NBD_ENOSPC, NBD_EOVERFLOW). */
uint32_t nbd_request_check(const struct nbd_request *rq, uint64_t size, int read_only);
/* Maps a negative errno from an export operation to an NBD error. */
uint32_t nbd_errno_to_nbd(int err);

struct nbd_export_ops {
	/* read len bytes at off into buf; 0, -errno, or -EINPROGRESS: data not
	 * here yet, the export will call nbd_session_wake(waiter) later and the
	 * request is retried then. */
	int (*read)(void *priv, void *waiter, void *buf, uint64_t off, uint32_t len);
	int (*write)(void *priv, const void *buf, uint64_t off, uint32_t len, int fua);
	int (*zero)(void *priv, uint64_t off, uint32_t len, int fua);
	int (*flush)(void *priv);
	/* optional, zero-copy READ: the fd holding bytes [off, off+len) of the
	 * export contiguously and *foff where they start, or -1 (then read is
	 * used). Only for data that does not change while queued (gold). */
	int (*locate)(void *priv, uint64_t off, uint32_t len, uint64_t *foff);
	/* optional: 1 while WRITE and WRITE_ZEROES must wait (a sync pauses
	 * writes for its final pass). A held request stays unparsed in the
	 * input, the session blocks (reads queued behind it wait too, reads of
	 * other sessions go on) until the export calls nbd_session_wake(s, 0). */
	int (*hold)(void *priv);
	/* optional, READs up to NBD_COPY_MAX: copy len bytes at off into buf
	 * only if that needs no disk I/O (the page cache holds them, the data
	 * is present): 0, or -EAGAIN and nothing promised (then locate or read
	 * serve the request, which may wait for the disk or a fetch). */
	int (*read_cached)(void *priv, void *buf, uint64_t off, uint32_t len);
};

struct nbd_export {
	const char *name;
	const char *description;
	uint64_t size;
	int read_only;
	const struct nbd_export_ops *ops;
	void *priv;
};

struct nbd_session;

/* A session serving exports[0..n) (the first one is also the default, ""
 * name; the array is copied, the exports must outlive the session). The
 * greeting is queued at once. Free with nbd_session_free. */
struct nbd_session *nbd_session_new(const struct nbd_export *const *exports, size_t n);
void nbd_session_free(struct nbd_session *s);

/* Input: where the caller may put up to *avail bytes (at least want bytes
 * free), then nbd_session_received(n). want is how much the session needs
 * to make progress (at least 1). */
uint8_t *nbd_session_inbuf(struct nbd_session *s, size_t *avail);
void nbd_session_received(struct nbd_session *s, size_t n);

/* Parses and executes what has arrived. Returns 0, or -ECONNABORTED when the
 * session must end (after its pending output is sent: see nbd_session_done). */
int nbd_session_run(struct nbd_session *s);

/* Output waiting to be sent, in order: first the memory bytes of
 * nbd_session_outbuf (len 0: none), then, when it returns an fd, the file
 * range of nbd_session_outfile (send with sendfile). nbd_session_sent(n)
 * consumes n bytes of whichever comes first. */
const uint8_t *nbd_session_outbuf(struct nbd_session *s, size_t *len);
int nbd_session_outfile(struct nbd_session *s, uint64_t *off, size_t *len);
/* The memory bytes queued before the first file range, possibly spread over
 * several buffers, as up to max iovecs (the replies of every request parsed
 * so far leave in one sendmsg); returns the count, *len their total bytes. */
size_t nbd_session_outvec(struct nbd_session *s, struct iovec *iov, size_t max, size_t *len);
/* Consumes the first n queued bytes, in order (memory, then a file range). */
void nbd_session_sent(struct nbd_session *s, size_t n);
/* All bytes queued (memory and file ranges). */
size_t nbd_session_out_pending(const struct nbd_session *s);

/* 1 when the session has ended (ABORT, DISC, protocol violation) and its
 * output is drained; 2 when ended and output is still waiting. */
int nbd_session_done(const struct nbd_session *s);
/* 1 when a whole message waits in the input buffer (parked by NBD_OUT_HIGH). */
int nbd_session_pending_input(const struct nbd_session *s);
/* 1 while a request waits for an export (-EINPROGRESS). */
int nbd_session_blocked(const struct nbd_session *s);
/* Called by an export when what a blocked read waited for happened: err 0
 * retries the read, a negative errno answers it with that error. The server
 * then runs every woken session (nbd_session_woken) again. */
void nbd_session_wake(struct nbd_session *s, int err);
int nbd_session_woken(const struct nbd_session *s);
/* 1 once the session is in transmission phase; its export. */
const struct nbd_export *nbd_session_export(const struct nbd_session *s);

#endif
