/* iSCSI block transfer for goldagent: one logged-in session to one LUN of the
 * appliance (libiscsi, CHAP, the machine's initiator name), with many READ16 /
 * WRITE16 requests in flight. Driven by the caller's event loop (fetch_fd,
 * fetch_events, fetch_service) or by fetch_drain() for blocking use. */
#ifndef GC_AGENT_FETCH_H
#define GC_AGENT_FETCH_H

#include <stddef.h>
#include <stdint.h>

struct fetch_target {
	const char *portal; /* "ADDR:PORT", numeric (static builds have no NSS) */
	const char *iqn; /* target name */
	const char *initiator; /* our initiator name; the target's ACL names it */
	const char *user; /* CHAP user, NULL for none */
	const char *secret; /* CHAP secret */
	int lun;
};

struct fetch;

/* Completion of one request: err is 0 or a negative errno. */
typedef void (*fetch_cb)(void *arg, int err, uint64_t off, size_t len);

/* Connects, logs in and reads the LUN's capacity; blocking, bounded by
 * timeout_s. Returns 0 and *out (free with fetch_free), or -ECONNREFUSED,
 * -EACCES (login refused: CHAP or ACL), -ENOENT (no such LUN), -ETIMEDOUT, -EIO. */
int fetch_open(const struct fetch_target *t, int timeout_s, struct fetch **out);
/* Ends the session. Requests still queued are cancelled without calling their
 * callbacks, and no data lands in their buffers afterwards. */
void fetch_free(struct fetch *f);

uint64_t fetch_size(const struct fetch *f);
uint32_t fetch_block_size(const struct fetch *f);
/* Requests queued and not yet completed. */
unsigned fetch_inflight(const struct fetch *f);

/* Queues a read of len bytes at off (both multiples of the block size) into
 * buf, which must stay valid until cb runs. 0 or a negative errno. */
int fetch_read(struct fetch *f, uint64_t off, void *buf, size_t len, fetch_cb cb, void *arg);
/* Queues a write likewise (upload LUNs; the gold LUN refuses with -EROFS/-EIO). */
int fetch_write(struct fetch *f, uint64_t off, const void *buf, size_t len, fetch_cb cb, void *arg);

/* Event-loop integration: the fd, the poll events it wants now, and the call
 * to make with the events that fired (0 on a timer tick, for time-outs).
 * fetch_service returns a negative errno when the session is lost for good. */
int fetch_fd(const struct fetch *f);
int fetch_events(const struct fetch *f);
int fetch_service(struct fetch *f, int revents);

/* Keepalive: with send, queues an iSCSI NOP-Out (no data) unless one is
 * unanswered (then the fd wants POLLOUT). Returns the NOP-Outs without a
 * NOP-In so far (0: answered), or the session's error. No libiscsi deadline
 * applies to a NOP: the caller decides how long is too long. */
int fetch_probe(struct fetch *f, int send);

/* Services the session until nothing is in flight. 0, -ETIMEDOUT, or the
 * session's error. */
int fetch_drain(struct fetch *f, int timeout_ms);

/* Reads [0, size) into out_fd with `depth` requests of `reqsize` bytes in
 * flight (the hydration pattern, also the benchmark's). */
int fetch_copy_all(struct fetch *f, int out_fd, size_t reqsize, unsigned depth);

#endif
