/* Crash-safe file I/O (see io.h).
 *
 * Invariant kept by every writer in the project: data, flush, then metadata.
 * io_publish() is the only way a new file becomes visible under its final
 * name, and it runs after the caller has fsynced the data; the directory
 * fsync after rename makes the name itself durable (git finalize_object_file).
 * A failed fsync is returned as-is and the caller abandons the operation: after
 * a failed fsync the page cache may hold data that never reaches the disk. */
#include "lib/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"

struct fault_rule {
	enum io_op op;
	unsigned long at;
	int from_on;
	int err; /* positive errno, or 0 for crash */
};

static struct fault_rule fault_rules[8];
static int fault_nrules = -1; /* -1: not parsed yet */
static unsigned long fault_count[IO_OP_N];

static const char *const op_names[IO_OP_N] = {"write", "fsync", "rename", "read"};

static int errno_by_name(const char *s)
{
	static const struct {
		const char *name;
		int err;
	} t[] = {{"EIO", EIO},	   {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT},
		 {"EROFS", EROFS}, {"EINTR", EINTR},   {"crash", 0}};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++)
		if (strcmp(s, t[i].name) == 0)
			return t[i].err;
	return -1;
}

static void fault_parse(void)
{
	const char *env = getenv("GOLDCACHE_FAULT");
	char spec[256], *save = NULL, *tok;

	fault_nrules = 0;
	memset(fault_count, 0, sizeof(fault_count));
	if (!env || !*env || strlen(env) >= sizeof(spec))
		return;
	memcpy(spec, env, strlen(env) + 1);
	for (tok = strtok_r(spec, ",", &save); tok && fault_nrules < (int)ARRAY_SIZE(fault_rules);
	     tok = strtok_r(NULL, ",", &save)) {
		char *c1 = strchr(tok, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		struct fault_rule *r = &fault_rules[fault_nrules];
		int op = -1, err;
		char *end;

		if (!c1 || !c2)
			continue;
		*c1 = *c2 = '\0';
		for (int i = 0; i < IO_OP_N; i++)
			if (strcmp(tok, op_names[i]) == 0)
				op = i;
		err = errno_by_name(c2 + 1);
		r->at = strtoul(c1 + 1, &end, 10);
		r->from_on = *end == '+';
		if (op < 0 || err < 0 || r->at == 0)
			continue;
		r->op = (enum io_op)op;
		r->err = err;
		fault_nrules++;
	}
}

void io_fault_reset(void)
{
	fault_nrules = -1;
}

int io_fault(enum io_op op)
{
	unsigned long n;

	if (fault_nrules < 0)
		fault_parse();
	if (fault_nrules == 0)
		return 0;
	n = ++fault_count[op];
	for (int i = 0; i < fault_nrules; i++) {
		const struct fault_rule *r = &fault_rules[i];

		if (r->op != op || (r->from_on ? n < r->at : n != r->at))
			continue;
		if (r->err == 0)
			_exit(137);
		return -r->err;
	}
	return 0;
}

int io_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	int r = io_fault(IO_OP_WRITE);

	if (r < 0)
		return r;
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int io_pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
	const char *p = buf;
	int r = io_fault(IO_OP_WRITE);

	if (r < 0)
		return r;
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

ssize_t io_read_full(int fd, void *buf, size_t n)
{
	char *p = buf;
	size_t got = 0;
	int r = io_fault(IO_OP_READ);

	if (r < 0)
		return r;
	while (got < n) {
		ssize_t k = read(fd, p + got, n - got);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

ssize_t io_pread_full(int fd, void *buf, size_t n, off_t off)
{
	char *p = buf;
	size_t got = 0;
	int r = io_fault(IO_OP_READ);

	if (r < 0)
		return r;
	while (got < n) {
		ssize_t k = pread(fd, p + got, n - got, off + (off_t)got);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

int io_fsync(int fd)
{
	int r = io_fault(IO_OP_FSYNC);

	if (r < 0)
		return r;
	return fsync(fd) < 0 ? -errno : 0;
}

int io_fdatasync(int fd)
{
	int r = io_fault(IO_OP_FSYNC);

	if (r < 0)
		return r;
	return fdatasync(fd) < 0 ? -errno : 0;
}

int io_fsync_dir(const char *dir)
{
	int fd, r;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = io_fsync(fd);
	close(fd);
	return r;
}

int io_rename(const char *from, const char *to)
{
	int r = io_fault(IO_OP_RENAME);

	if (r < 0)
		return r;
	return rename(from, to) < 0 ? -errno : 0;
}

static int dir_of(const char *path, char *dir, size_t size)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return fmt_buf(dir, size, ".");
	if (slash == path)
		return fmt_buf(dir, size, "/");
	return fmt_buf(dir, size, "%.*s", (int)(slash - path), path);
}

int io_publish(const char *tmp, const char *final)
{
	char dir[4096];
	int r;

	r = dir_of(final, dir, sizeof(dir));
	if (r < 0)
		return r;
	r = io_rename(tmp, final);
	if (r < 0)
		return r;
	return io_fsync_dir(dir);
}

int io_open_tmp_for(const char *path, char *tmp, size_t tmpsize, mode_t mode)
{
	int fd, r;

	r = fmt_buf(tmp, tmpsize, "%s.tmp.XXXXXX", path);
	if (r < 0)
		return r;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode) < 0) {
		r = -errno;
		close(fd);
		unlink(tmp);
		return r;
	}
	return fd;
}

int io_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[4096];
	int fd, r;

	fd = io_open_tmp_for(path, tmp, sizeof(tmp), mode);
	if (fd < 0)
		return fd;
	r = io_write_all(fd, data, len);
	if (r == 0)
		r = io_fsync(fd);
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0)
		r = io_publish(tmp, path);
	if (r < 0)
		unlink(tmp);
	return r;
}

int io_read_file(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto out_close;
	}
	if ((uint64_t)st.st_size > max) {
		r = -EFBIG;
		goto out_close;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	/* read one byte more than stat said, to catch a file that grew */
	n = io_read_full(fd, buf, (size_t)st.st_size + 1);
	if (n < 0) {
		r = (int)n;
		free(buf);
		goto out_close;
	}
	if ((size_t)n > (size_t)st.st_size) {
		r = -EAGAIN;
		free(buf);
		goto out_close;
	}
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = (size_t)n;
	r = 0;
out_close:
	close(fd);
	return r;
}

int io_mkdir_p(const char *path, mode_t mode)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}
