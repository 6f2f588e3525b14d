/* A chunk source that survives a lost session: see source-retry.c. */
#ifndef GC_AGENT_SOURCE_RETRY_H
#define GC_AGENT_SOURCE_RETRY_H

#include <stdint.h>

#include "agent/source.h"

/* Opens a new inner source (the iSCSI login). */
typedef int (*retry_open_fn)(void *arg, struct chunk_source **out);

/* Opens the first inner source now (its error is returned), then reopens it
 * after a lost session with a backoff of min_ms doubling to max_ms, calling
 * open on a thread of its own (so `open` must only read what nothing else
 * changes meanwhile: see iscsi_opener in source-iscsi.h); requests made
 * meanwhile wait and are re-issued on the new session. After give_up_ms
 * without a session the waiting requests fail with -EIO (new ones wait for
 * the next attempt). Free with chunk_source_free (no callbacks then). */
int chunk_source_retry_new(retry_open_fn open, void *arg, unsigned min_ms, unsigned max_ms,
			   uint64_t give_up_ms, struct chunk_source **out);

#endif
