/* Unit tests for agent/source-retry: the first open (the first iSCSI login
 * of a boot) is retried while it fails with a transient error, is final at
 * once when refused (-EACCES), and gives up after give_up_ms. The inner
 * source is a real file source; only the failures before it are scripted. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/source-retry.h"
#include "agent/source.h"
#include "lib/io.h"
#include "lib/util.h"
#include "tests/tap.h"

struct script {
	const char *path;
	int fail_with; /* error of the failing attempts */
	unsigned fail_first; /* how many attempts fail before the file opens */
	unsigned calls;
};

static int scripted_open(void *arg, struct chunk_source **out)
{
	struct script *s = arg;

	if (s->calls++ < s->fail_first)
		return s->fail_with;
	return chunk_source_file_new(s->path, out);
}

int main(void)
{
	char dir[] = "/tmp/gc-unit.XXXXXX", *path;
	struct chunk_source *src = NULL;
	struct script s;
	char data[4096] = "gold";

	if (!mkdtemp(dir))
		return 1;
	path = xasprintf("%s/gold.img", dir);
	if (io_write_file_atomic(path, data, sizeof(data), 0644) < 0)
		return 1;

	s = (struct script){.path = path, .fail_with = -ENXIO, .fail_first = 3};
	is_int(chunk_source_retry_new(scripted_open, &s, 10, 40, 60000, &src), 0,
	       "a target not found three times, then there: opened");
	is_int(s.calls, 4, "after four attempts");
	ok(src && src->size == sizeof(data), "the source has the file's size");
	chunk_source_free(src);
	src = NULL;

	s = (struct script){.path = path, .fail_with = -ETIMEDOUT, .fail_first = 2};
	is_int(chunk_source_retry_new(scripted_open, &s, 10, 40, 60000, &src), 0,
	       "a login that timed out twice: opened");
	is_int(s.calls, 3, "on the third attempt");
	chunk_source_free(src);
	src = NULL;

	s = (struct script){.path = path, .fail_with = -EACCES, .fail_first = 1000};
	is_int(chunk_source_retry_new(scripted_open, &s, 10, 40, 60000, &src), -EACCES,
	       "a refused login (CHAP) is final");
	is_int(s.calls, 1, "after one attempt");
	ok(src == NULL, "no source");

	s = (struct script){.path = path, .fail_with = -ENXIO, .fail_first = 1000};
	is_int(chunk_source_retry_new(scripted_open, &s, 10, 40, 300, &src), -ENXIO,
	       "a target that never comes back: the last error after give_up_ms");
	ok(s.calls >= 2 && s.calls < 1000, "after a few attempts (%u)", s.calls);
	ok(src == NULL, "no source");

	unlink(path);
	rmdir(dir);
	free(path);
	return done_testing();
}
