/* goldagent's NBD server: the active gold slot (read-only, export "gold") and
 * the machine volume (read-write, export "volume"), each on its own Unix
 * socket, many clients, one epoll loop in one process.
 *
 * A gold read that touches an absent chunk asks the chunk source (if any) for
 * it, verifies it against the expected hashes, stores it (data, fdatasync,
 * present bit) and then answers; with no source the read fails with EIO and
 * the log names the missing chunk. With hydrate_depth, the loop also fills
 * every absent chunk in the background (between client requests), committing
 * in batches; a reader that needs one of them gets it committed at once. */
#ifndef GC_AGENT_NBD_H
#define GC_AGENT_NBD_H

#include <stdint.h>

struct cache;
struct chunk_source;
struct chunk_hashes;

struct nbd_server_opts {
	struct cache *cache;
	int gold_slot; /* slot served as "gold" */
	struct chunk_source *source; /* NULL: absent chunks fail with EIO */
	const struct chunk_hashes *hashes; /* NULL: fetched chunks not verified */
	const char *gold_socket; /* NULL: no gold export */
	const char *volume_socket; /* NULL: no volume export */
	unsigned max_clients; /* 0: 64 */
	unsigned hydrate_depth; /* >0: fetch absent chunks in the background (needs a source) */
	/* every tick_ms (0: never), between requests, with no request half done:
	 * tick(tick_arg) runs on the loop (the agent's periodic sync: clients wait
	 * meanwhile, so what it reads is one point in time) */
	void (*tick)(void *arg);
	void *tick_arg;
	unsigned tick_ms;
	/* optional: when notify_fd is readable, notify(tick_arg) runs on the
	 * loop (a sync's upload thread asking for its next step) */
	int notify_fd;
	void (*notify)(void *arg);
};

struct nbd_server;

/* Binds the sockets (replacing stale socket files) and, with a volume
 * socket, marks the volume open in the cache header. */
int nbd_server_new(const struct nbd_server_opts *o, struct nbd_server **out);
/* Serves until SIGINT or SIGTERM (blocked and read through a signalfd).
 * Returns 0 on a signal, or a negative errno if the loop failed. */
int nbd_server_run(struct nbd_server *srv);
/* Pauses (on) or resumes the volume export's WRITE and WRITE_ZEROES: while
 * paused they wait unexecuted in their session (reads, flushes and the gold
 * export go on; a read behind a held write on the same connection waits for
 * it). A sync's final pass uploads a volume no client can change. */
void nbd_server_pause_writes(struct nbd_server *srv, int on);
/* Closes the clients and sockets (removing the socket files); the cache
 * stays open (the caller closes it cleanly). */
void nbd_server_free(struct nbd_server *srv);

#endif
