/* The iSCSI chunk source (see agent/source.h for the chunk_source contract). */
#ifndef GC_AGENT_SOURCE_ISCSI_H
#define GC_AGENT_SOURCE_ISCSI_H

#include "agent/fetch.h"
#include "agent/source.h"

/* Logs in to t (initiator name, CHAP) and returns a source reading gold chunks
 * from its LUN; errors as fetch_open(). Free with chunk_source_free(). */
int chunk_source_iscsi_new(const struct fetch_target *t, int timeout_s, struct chunk_source **out);

/* A private copy of a target (every string duplicated) and a time-out, for a
 * caller that opens sessions on another thread (source-retry.c reconnects
 * off the serve loop): nothing it reads can change under it. */
struct iscsi_opener;
struct iscsi_opener *iscsi_opener_new(const struct fetch_target *t, int timeout_s);
/* A retry_open_fn (source-retry.h): chunk_source_iscsi_new on the copy. */
int iscsi_opener_open(void *opener, struct chunk_source **out);
void iscsi_opener_free(struct iscsi_opener *o);

#endif
