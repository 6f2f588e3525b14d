/* The iSCSI chunk source (see agent/source.h for the chunk_source contract). */
#ifndef GC_AGENT_SOURCE_ISCSI_H
#define GC_AGENT_SOURCE_ISCSI_H

#include "agent/fetch.h"
#include "agent/source.h"

/* Logs in to t (initiator name, CHAP) and returns a source reading gold chunks
 * from its LUN; errors as fetch_open(). Free with chunk_source_free(). */
int chunk_source_iscsi_new(const struct fetch_target *t, int timeout_s, struct chunk_source **out);

#endif
