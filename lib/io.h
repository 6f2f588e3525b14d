/* File I/O for everything that must survive a crash: full reads and writes,
 * fsync, atomic publish (temp + fsync + rename + fsync dir), bounded whole-file
 * reads. All store, cache and dirty-map I/O goes through these functions so
 * tests can inject faults (see io_fault below). Every function returns 0 (or a
 * byte count where said) or a negative errno. */
#ifndef GC_LIB_IO_H
#define GC_LIB_IO_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all n bytes (retrying short writes and EINTR). */
int io_write_all(int fd, const void *buf, size_t n);
int io_pwrite_all(int fd, const void *buf, size_t n, off_t off);
/* Reads up to n bytes; returns the count (< n only at end of file). */
ssize_t io_read_full(int fd, void *buf, size_t n);
ssize_t io_pread_full(int fd, void *buf, size_t n, off_t off);
int io_fsync(int fd);
/* fdatasync: data and the metadata needed to read it back. */
int io_fdatasync(int fd);
int io_fsync_dir(const char *dir);
int io_rename(const char *from, const char *to);

/* Publishes tmp (already written and fsynced by the caller) as final:
 * rename, then fsync of final's directory. */
int io_publish(const char *tmp, const char *final);

/* Creates a temp file next to path (same directory, "path.tmp.XXXXXX");
 * fills tmp (size tmpsize) with its name. Returns the fd or a negative errno. */
int io_open_tmp_for(const char *path, char *tmp, size_t tmpsize, mode_t mode);

/* Writes data to path atomically: readers see the old file or the new one,
 * never a mix, before and after a crash. */
int io_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Reads a whole file of at most max bytes into a NUL-terminated heap buffer
 * (*out, caller frees). -EFBIG when larger than max. */
int io_read_file(const char *path, size_t max, char **out, size_t *len);

/* mkdir -p; existing directories are fine. */
int io_mkdir_p(const char *path, mode_t mode);

/* Fault injection for tests, from the environment variable GOLDCACHE_FAULT:
 * a comma-separated list of OP:N:WHAT where OP is write, fsync, rename or read,
 * N the 1-based call count at which to fire (N+ means from N on), and WHAT an
 * errno name (EIO, ENOSPC) or "crash" (the process _exits with 137 before the
 * call, as a power cut or kill -9 would leave it). Disabled when unset. */
enum io_op { IO_OP_WRITE, IO_OP_FSYNC, IO_OP_RENAME, IO_OP_READ, IO_OP_N };
int io_fault(enum io_op op);
/* Re-reads GOLDCACHE_FAULT and resets counters (unit tests). */
void io_fault_reset(void);

#endif
