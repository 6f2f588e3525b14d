/* iSCSI transfer through libiscsi's asynchronous interface (see fetch.h).
 *
 * One session, many tasks: libiscsi queues PDUs and we keep `depth` commands
 * outstanding, which is what lets a CPU-bound tgtd stream at its best rate
 * (LAB.md: qd1 ~550 MB/s, qd8 ~900 MB/s on loopback). Data lands directly in
 * the caller's buffer through a one-element iovec: no copy. Each task's
 * completion maps SCSI status to an errno; the caller decides what a failed
 * range means (the hydrator retries with backoff, the NBD path returns EIO).
 * Time-outs: libiscsi cancels tasks older than iscsi_set_timeout() when it is
 * serviced, so fetch_drain() services at least every 100 ms; that deadline is
 * what notices a silent link (cable out, packets dropped: TCP itself would
 * retry for many minutes). A timed-out or cancelled command marks the
 * session lost (sticky error; fetch_free skips the logout, which would wait
 * another full deadline on a dead link). Automatic reconnection is off: a
 * lost session fails its requests and the caller, who knows whether to retry
 * with backoff or report, opens a new one. */
#include "agent/fetch.h"

#include <errno.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

struct fetch {
	struct iscsi_context *iscsi;
	int lun;
	uint32_t block_size;
	uint64_t size;
	unsigned inflight;
	int error; /* sticky session error */
	int closing; /* fetch_free: completions free, never call back */
	char iqn[256];
};

struct fetch_req {
	struct fetch *f;
	struct scsi_iovec iov;
	uint64_t off;
	size_t len;
	fetch_cb cb;
	void *arg;
};

static int status_errno(int status, struct scsi_task *task)
{
	if (status == SCSI_STATUS_GOOD)
		return 0;
	if (status == SCSI_STATUS_TIMEOUT)
		return -ETIMEDOUT;
	if (status == SCSI_STATUS_CANCELLED)
		return -ECANCELED;
	if (status == SCSI_STATUS_CHECK_CONDITION && task &&
	    task->sense.key == SCSI_SENSE_DATA_PROTECTION)
		return -EROFS;
	return -EIO;
}

static void req_done(struct iscsi_context *iscsi, int status, void *command_data, void *pd)
{
	struct fetch_req *r = pd;
	struct scsi_task *task = command_data;
	int err = status_errno(status, task);

	if (err && err != -ECANCELED && !r->f->closing)
		log_warn("iSCSI %s of %zu bytes at %llu on '%s' failed: %s", "transfer", r->len,
			 (unsigned long long)r->off, r->f->iqn, iscsi_get_error(iscsi));
	/* a command past its deadline (a silent link: cable out, packets
	 * dropped) or cancelled by libiscsi itself (socket error) means the
	 * session is gone: no logout round trip on it (fetch_free) */
	if ((err == -ETIMEDOUT || err == -ECANCELED) && !r->f->closing && !r->f->error)
		r->f->error = err;
	r->f->inflight--;
	if (task)
		scsi_free_scsi_task(task);
	if (!r->f->closing)
		r->cb(r->arg, err, r->off, r->len);
	free(r);
}

static int wait_connected(struct fetch *f, int *done, int timeout_s)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_s * 1000;

	while (!*done) {
		struct pollfd p = {.fd = iscsi_get_fd(f->iscsi),
				   .events = (short)iscsi_which_events(f->iscsi)};
		int n;

		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		n = poll(&p, 1, 100);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (iscsi_service(f->iscsi, n > 0 ? p.revents : 0) < 0)
			return -EIO;
	}
	return 0;
}

struct connect_state {
	int done;
	int status;
};

static void connect_cb(struct iscsi_context *iscsi, int status, void *command_data, void *pd)
{
	struct connect_state *cs = pd;

	(void)iscsi;
	(void)command_data;
	cs->status = status;
	cs->done = 1;
}

static int read_capacity(struct fetch *f)
{
	struct scsi_task *task = iscsi_readcapacity16_sync(f->iscsi, f->lun);
	struct scsi_readcapacity16 *rc;
	int r = 0;

	if (!task || task->status != SCSI_STATUS_GOOD) {
		log_error("cannot read capacity of '%s' LUN %d: %s", f->iqn, f->lun,
			  iscsi_get_error(f->iscsi));
		r = task && task->sense.key == SCSI_SENSE_ILLEGAL_REQUEST ? -ENOENT : -EIO;
		goto out;
	}
	rc = scsi_datain_unmarshall(task);
	if (!rc || rc->block_length == 0 || rc->block_length > 65536) {
		log_error("'%s' LUN %d: unusable capacity data", f->iqn, f->lun);
		r = -EIO;
		goto out;
	}
	f->block_size = rc->block_length;
	f->size = (rc->returned_lba + 1) * (uint64_t)rc->block_length;
out:
	if (task)
		scsi_free_scsi_task(task);
	return r;
}

/* A login the target answered with a refusal: libiscsi keeps the response's
 * status (RFC 7143 11.13.5) only in its error text, "... Status: NAME(N)".
 * Target not found or removed (0x0203, 0x0204: not created yet, or being
 * re-created by goldcached's reconciler) is -ENXIO and a busy target (class
 * 3) -EBUSY, both worth another try; anything else (CHAP, authorization) is
 * -EACCES, final. */
static int login_refusal(struct iscsi_context *iscsi)
{
	const char *e = iscsi_get_error(iscsi), *p = e ? strstr(e, "Status: ") : NULL;
	const char *n = p ? strrchr(p, '(') : NULL;
	long st = n ? strtol(n + 1, NULL, 10) : 0;

	if (st == 0x0203 || st == 0x0204)
		return -ENXIO;
	if (st >> 8 == 3)
		return -EBUSY;
	return -EACCES;
}

int fetch_open(const struct fetch_target *t, int timeout_s, struct fetch **out)
{
	struct connect_state cs = {0};
	struct fetch *f = xcalloc(1, sizeof(*f));
	int r;

	f->lun = t->lun;
	if (fmt_buf(f->iqn, sizeof(f->iqn), "%s", t->iqn) < 0) {
		r = -ENAMETOOLONG;
		goto err_free;
	}
	f->iscsi = iscsi_create_context(t->initiator);
	if (!f->iscsi) {
		r = -ENOMEM;
		goto err_free;
	}
	if (iscsi_set_targetname(f->iscsi, t->iqn) ||
	    iscsi_set_session_type(f->iscsi, ISCSI_SESSION_NORMAL) ||
	    iscsi_set_header_digest(f->iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C) ||
	    (t->user && iscsi_set_initiator_username_pwd(f->iscsi, t->user, t->secret))) {
		log_error("cannot set up iSCSI session to '%s': %s", t->iqn,
			  iscsi_get_error(f->iscsi));
		r = -EINVAL;
		goto err_ctx;
	}
	iscsi_set_timeout(f->iscsi, timeout_s);
	/* reconnect policy (backoff, giving up) belongs to the caller */
	iscsi_set_noautoreconnect(f->iscsi, 1);
	if (iscsi_full_connect_async(f->iscsi, t->portal, t->lun, connect_cb, &cs) != 0) {
		log_error("cannot connect to '%s': %s", t->portal, iscsi_get_error(f->iscsi));
		r = -ECONNREFUSED;
		goto err_ctx;
	}
	r = wait_connected(f, &cs.done, timeout_s);
	if (r == 0 && cs.status != SCSI_STATUS_GOOD) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);

		/* refused by the target (CHAP, ACL, no LUN), or no connection at
		 * all (link down, nothing listening): only the first is final */
		r = getpeername(iscsi_get_fd(f->iscsi), (struct sockaddr *)&peer, &plen) == 0
			    ? login_refusal(f->iscsi)
			    : -ECONNREFUSED;
	}
	if (r < 0) {
		log_error("cannot log in to '%s' at %s as '%s': %s", t->iqn, t->portal,
			  t->initiator, r == -ETIMEDOUT ? "timed out" : iscsi_get_error(f->iscsi));
		goto err_ctx;
	}
	r = read_capacity(f);
	if (r < 0)
		goto err_ctx;
	*out = f;
	return 0;
err_ctx:
	iscsi_destroy_context(f->iscsi);
err_free:
	free(f);
	return r;
}

void fetch_free(struct fetch *f)
{
	if (!f)
		return;
	/* queued requests' buffers may be gone: their completions must not call
	 * back (the chunk_source contract) */
	f->closing = 1;
	/* cancel before logging out: a read completing during logout would
	 * write into a buffer its owner may already have freed */
	if (f->inflight)
		iscsi_scsi_cancel_all_tasks(f->iscsi);
	if (iscsi_is_logged_in(f->iscsi) && !f->error)
		iscsi_logout_sync(f->iscsi);
	/* destroying the context completes queued tasks with CANCELLED */
	iscsi_destroy_context(f->iscsi);
	free(f);
}

uint64_t fetch_size(const struct fetch *f)
{
	return f->size;
}
uint32_t fetch_block_size(const struct fetch *f)
{
	return f->block_size;
}
unsigned fetch_inflight(const struct fetch *f)
{
	return f->inflight;
}
int fetch_fd(const struct fetch *f)
{
	return iscsi_get_fd(f->iscsi);
}
int fetch_events(const struct fetch *f)
{
	return iscsi_which_events(f->iscsi);
}

static int check_range(const struct fetch *f, uint64_t off, size_t len)
{
	if (f->error)
		return f->error;
	if (len == 0 || len > (1u << 30) || off % f->block_size || len % f->block_size)
		return -EINVAL;
	if (off > f->size || len > f->size - off)
		return -ERANGE;
	return 0;
}

static int submit(struct fetch *f, int write, uint64_t off, void *buf, size_t len, fetch_cb cb,
		  void *arg)
{
	struct fetch_req *r;
	struct scsi_task *task;
	int e = check_range(f, off, len);

	if (e < 0)
		return e;
	r = xcalloc(1, sizeof(*r));
	*r = (struct fetch_req){.f = f, .off = off, .len = len, .cb = cb, .arg = arg};
	r->iov.iov_base = buf;
	r->iov.iov_len = len;
	if (write)
		task = iscsi_write16_iov_task(f->iscsi, f->lun, off / f->block_size, NULL,
					      (uint32_t)len, (int)f->block_size, 0, 0, 0, 0, 0,
					      req_done, r, &r->iov, 1);
	else
		task = iscsi_read16_iov_task(f->iscsi, f->lun, off / f->block_size, (uint32_t)len,
					     (int)f->block_size, 0, 0, 0, 0, 0, req_done, r,
					     &r->iov, 1);
	if (!task) {
		log_error("cannot queue iSCSI request on '%s': %s", f->iqn,
			  iscsi_get_error(f->iscsi));
		free(r);
		return -ENOMEM;
	}
	f->inflight++;
	return 0;
}

int fetch_read(struct fetch *f, uint64_t off, void *buf, size_t len, fetch_cb cb, void *arg)
{
	return submit(f, 0, off, buf, len, cb, arg);
}

int fetch_write(struct fetch *f, uint64_t off, const void *buf, size_t len, fetch_cb cb, void *arg)
{
	/* libiscsi's iovec is not const-qualified; writes only read from it */
	return submit(f, 1, off, (void *)(uintptr_t)buf, len, cb, arg);
}

int fetch_probe(struct fetch *f, int send)
{
	int n;

	if (f->error)
		return f->error;
	n = iscsi_get_nops_in_flight(f->iscsi);
	if (!send || n > 0)
		return n;
	/* no callback: libiscsi counts it, and a NOP-In resets the count */
	if (iscsi_nop_out_async(f->iscsi, NULL, NULL, 0, NULL) != 0) {
		log_error("cannot queue a NOP-Out on '%s': %s", f->iqn, iscsi_get_error(f->iscsi));
		return -EIO;
	}
	return iscsi_get_nops_in_flight(f->iscsi);
}

int fetch_service(struct fetch *f, int revents)
{
	if (f->error)
		return f->error;
	if (iscsi_service(f->iscsi, revents) < 0) {
		log_error("iSCSI session to '%s' failed: %s", f->iqn, iscsi_get_error(f->iscsi));
		f->error = -EIO;
	}
	return f->error;
}

int fetch_drain(struct fetch *f, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	while (f->inflight) {
		struct pollfd p = {.fd = fetch_fd(f), .events = (short)fetch_events(f)};
		int n, r;

		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		n = poll(&p, 1, 100);
		if (n < 0 && errno != EINTR)
			return -errno;
		r = fetch_service(f, n > 0 ? p.revents : 0);
		if (r < 0)
			return r;
	}
	return 0;
}

/* fetch_copy_all: `depth` slots, each owning a buffer; a completed slot writes
 * its data out and immediately reissues the next range. Output order does not
 * matter (pwrite at the offset), so slots never wait for each other. */
struct copy_slot {
	struct copy_state *s;
	char *buf;
};

struct copy_state {
	struct fetch *f;
	int fd;
	size_t reqsize;
	uint64_t next;
	int err;
};

static void copy_done(void *arg, int err, uint64_t off, size_t len);

static int copy_issue(struct copy_slot *slot)
{
	struct copy_state *s = slot->s;
	size_t len;
	int r;

	if (s->err || s->next >= s->f->size)
		return 0;
	len = (size_t)MIN((uint64_t)s->reqsize, s->f->size - s->next);
	r = fetch_read(s->f, s->next, slot->buf, len, copy_done, slot);
	if (r < 0)
		return r;
	s->next += len;
	return 0;
}

static void copy_done(void *arg, int err, uint64_t off, size_t len)
{
	struct copy_slot *slot = arg;
	struct copy_state *s = slot->s;

	if (!err)
		err = io_pwrite_all(s->fd, slot->buf, len, (off_t)off);
	if (!err)
		err = copy_issue(slot);
	if (err && !s->err)
		s->err = err;
}

int fetch_copy_all(struct fetch *f, int out_fd, size_t reqsize, unsigned depth)
{
	struct copy_state s = {.f = f, .fd = out_fd, .reqsize = reqsize};
	struct copy_slot *slots;
	int r = 0;

	if (depth == 0 || depth > 256 || reqsize == 0 || reqsize % f->block_size ||
	    reqsize > (64u << 20))
		return -EINVAL;
	slots = xcalloc(depth, sizeof(*slots));
	for (unsigned i = 0; i < depth; i++) {
		slots[i] = (struct copy_slot){.s = &s, .buf = xmalloc(reqsize)};
		if (r == 0)
			r = copy_issue(&slots[i]);
	}
	if (r == 0)
		r = fetch_drain(f, 1 << 30);
	if (r == 0)
		r = s.err;
	/* on error, requests may still reference the buffers: cancel them first */
	if (f->inflight) {
		iscsi_scsi_cancel_all_tasks(f->iscsi);
		f->error = f->error ? f->error : -ECANCELED;
	}
	for (unsigned i = 0; i < depth; i++)
		free(slots[i].buf);
	free(slots);
	return r;
}
