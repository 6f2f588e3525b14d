/* Argument helpers shared by the agent's small command-line tools (gc-fetch,
 * gc-upload). Like die(), they are for front ends only: on bad input they print
 * the reason and exit 2 (usage). */
#ifndef GC_AGENT_TOOL_H
#define GC_AGENT_TOOL_H

#include "agent/fetch.h"

/* A CHAP secret file: its first 256 bytes at most, trailing newlines dropped.
 * Heap string, caller frees. */
char *tool_read_secret(const char *path);

/* Fills t from the positional PORTAL TARGET_IQN LUN (pos[0..2]) and its secret
 * from *secret (from --secret-file) or, when t->user is set and no file was
 * given, GOLDCACHE_CHAP_SECRET (never argv). *secret is then heap, caller frees. */
void tool_target_args(struct fetch_target *t, char *const pos[3], char **secret);

#endif
