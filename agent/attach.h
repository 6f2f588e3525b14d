/* goldagent's appliance-facing commands: hydrate/serve --appliance, sync,
 * attach (see attach.c). */
#ifndef GC_AGENT_ATTACH_H
#define GC_AGENT_ATTACH_H

/* 1 when argv asks for one of these (goldagent.c dispatches to attach_main). */
int attach_wants(int argc, char **argv);
int attach_main(int argc, char **argv);

/* One goldagent per cache: two writing the same file (hydrating, syncing,
 * serving, assigning a slot) would interleave header and map writes. Takes
 * an exclusive lock on the cache file (flock, so it dies with the process:
 * nothing to clean up after a crash) and keeps it until exit; a second call
 * in the same process is not a rival. 0 also when the file does not exist
 * yet; -EBUSY (logged: "cache 'PATH' is in use by another goldagent") when
 * another process holds it. Readers (status, cache dirty, cache check
 * without --repair) take no lock. */
int goldagent_lock_cache(const char *path);

#endif
