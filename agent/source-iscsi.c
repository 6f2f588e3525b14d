/* The iSCSI chunk source: gold chunks read from the machine's target on the
 * appliance through agent/fetch.c (see source.h for the contract).
 *
 * A chunk is one READ16 of the chunk's byte range; many chunks may be in
 * flight on the one session (the hydrator keeps several outstanding). Nothing
 * here trusts the data: the caller verifies every chunk against the manifest
 * before it marks it present. A lost session fails the chunks in flight with
 * its errno; the caller reopens with backoff (fetch disables libiscsi's own
 * reconnection so that policy lives in one place). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/source-iscsi.h"
#include "lib/log.h"
#include "lib/util.h"

struct iscsi_chunk_req {
	uint64_t idx;
	chunk_fetch_cb cb;
	void *arg;
};

static void iscsi_done(void *arg, int err, uint64_t off, size_t len)
{
	struct iscsi_chunk_req *r = arg;

	(void)off;
	(void)len;
	r->cb(r->arg, r->idx, err);
	free(r);
}

static int iscsi_start(struct chunk_source *s, uint64_t idx, uint64_t off, void *buf, size_t len,
		       chunk_fetch_cb cb, void *arg)
{
	struct fetch *f = s->priv;
	struct iscsi_chunk_req *r;
	int e;

	if (off > s->size || len > s->size - off) {
		log_error("source %s: chunk %llu (offset %llu) beyond its %llu bytes", s->desc,
			  (unsigned long long)idx, (unsigned long long)off,
			  (unsigned long long)s->size);
		return -ERANGE;
	}
	r = xmalloc(sizeof(*r));
	*r = (struct iscsi_chunk_req){.idx = idx, .cb = cb, .arg = arg};
	e = fetch_read(f, off, buf, len, iscsi_done, r);
	if (e < 0)
		free(r);
	return e;
}

static int iscsi_fd(struct chunk_source *s)
{
	return fetch_fd(s->priv);
}
static int iscsi_events(struct chunk_source *s)
{
	return fetch_events(s->priv);
}
static int iscsi_service(struct chunk_source *s, int revents)
{
	return fetch_service(s->priv, revents);
}
static void iscsi_free(struct chunk_source *s)
{
	fetch_free(s->priv);
}
static int iscsi_probe(struct chunk_source *s, int send)
{
	return fetch_probe(s->priv, send);
}

static const struct chunk_source_ops iscsi_ops = {
	.kind = "iscsi",
	.start = iscsi_start,
	.fd = iscsi_fd,
	.events = iscsi_events,
	.service = iscsi_service,
	.free = iscsi_free,
	.probe = iscsi_probe,
};

int chunk_source_iscsi_new(const struct fetch_target *t, int timeout_s, struct chunk_source **out)
{
	struct chunk_source *s;
	struct fetch *f;
	int r = fetch_open(t, timeout_s, &f);

	if (r < 0)
		return r;
	s = xcalloc(1, sizeof(*s));
	s->ops = &iscsi_ops;
	s->priv = f;
	s->desc = xasprintf("iscsi '%s' LUN %d at %s", t->iqn, t->lun, t->portal);
	s->size = fetch_size(f);
	*out = s;
	return 0;
}

struct iscsi_opener {
	struct fetch_target t;
	int timeout_s;
	char *portal, *iqn, *initiator, *user, *secret;
};

struct iscsi_opener *iscsi_opener_new(const struct fetch_target *t, int timeout_s)
{
	struct iscsi_opener *o = xcalloc(1, sizeof(*o));

	o->portal = xstrdup(t->portal);
	o->iqn = xstrdup(t->iqn);
	o->initiator = xstrdup(t->initiator);
	o->user = t->user ? xstrdup(t->user) : NULL;
	o->secret = t->secret ? xstrdup(t->secret) : NULL;
	o->t = (struct fetch_target){.portal = o->portal,
				     .iqn = o->iqn,
				     .initiator = o->initiator,
				     .user = o->user,
				     .secret = o->secret,
				     .lun = t->lun};
	o->timeout_s = timeout_s;
	return o;
}

int iscsi_opener_open(void *opener, struct chunk_source **out)
{
	struct iscsi_opener *o = opener;

	return chunk_source_iscsi_new(&o->t, o->timeout_s, out);
}

void iscsi_opener_free(struct iscsi_opener *o)
{
	if (!o)
		return;
	free(o->portal);
	free(o->iqn);
	free(o->initiator);
	free(o->user);
	if (o->secret)
		explicit_bzero(o->secret, strlen(o->secret));
	free(o->secret);
	free(o);
}
