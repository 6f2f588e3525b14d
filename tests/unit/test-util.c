/* Unit tests for lib/util, lib/io and lib/hash. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/hash.h"
#include "lib/io.h"
#include "lib/spawn.h"
#include "lib/util.h"
#include "tests/tap.h"

static void test_parse(void)
{
	uint64_t v = 0;
	int i = 0;

	is_int(parse_u64("123", &v), 0, "parse_u64 accepts digits");
	is_int(v, 123, "parse_u64 value");
	is_int(parse_u64("12x", &v), -EINVAL, "parse_u64 rejects trailing garbage");
	is_int(parse_u64("-1", &v), -EINVAL, "parse_u64 rejects sign");
	is_int(parse_u64("99999999999999999999999", &v), -ERANGE, "parse_u64 overflow");
	is_int(parse_size("64K", &v), 0, "parse_size 64K");
	is_int(v, 65536, "64K is 65536");
	is_int(parse_size("2GiB", &v), 0, "parse_size 2GiB");
	is_int(v, 2ull << 30, "2GiB value");
	is_int(parse_size("1Q", &v), -EINVAL, "parse_size unknown unit");
	is_int(parse_size("20000000000000T", &v), -ERANGE, "parse_size overflow");
	is_int(parse_int("42", 0, 100, &i), 0, "parse_int in range");
	is_int(parse_int("420", 0, 100, &i), -ERANGE, "parse_int out of range");
	ok(name_is_valid("debian-12.1_x"), "valid name");
	ok(!name_is_valid("a/b"), "slash rejected");
	ok(!name_is_valid("a b"), "space rejected");
	ok(!name_is_valid(".hidden"), "leading dot rejected");
	ok(!name_is_valid(""), "empty rejected");
}

static void test_hash(void)
{
	struct hash h, h2;
	char hex[HASH_HEX_LEN + 1];

	hash_buf("abc", 3, &h);
	is_str(hash_to_hex(&h, hex),
	       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	       "sha256(abc) known answer");
	is_int(hash_from_hex(hex, &h2), 0, "hex round trip parses");
	ok(hash_equal(&h, &h2), "hex round trip equal");
	is_int(hash_from_hex("abc", &h2), -EINVAL, "short hex rejected");
	hex[5] = 'g';
	is_int(hash_from_hex(hex, &h2), -EINVAL, "non-hex rejected");
}

static void test_io(void)
{
	char *dir = tap_tmpdir(), path[4200], *data = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	is_int(io_mkdir_p(path, 0755), 0, "mkdir -p");
	snprintf(path, sizeof(path), "%s/a/file", dir);
	is_int(io_write_file_atomic(path, "hello", 5, 0644), 0, "atomic write");
	is_int(io_read_file(path, 100, &data, &len), 0, "read back");
	is_str(data, "hello", "content");
	free(data);
	is_int(io_read_file(path, 3, &data, &len), -EFBIG, "bounded read refuses big file");

	setenv("GOLDCACHE_FAULT", "fsync:1:EIO", 1);
	io_fault_reset();
	is_int(io_write_file_atomic(path, "world", 5, 0644), -EIO, "injected fsync EIO fails");
	unsetenv("GOLDCACHE_FAULT");
	io_fault_reset();
	is_int(io_read_file(path, 100, &data, &len), 0, "old content still readable");
	is_str(data, "hello", "failed atomic write left the old file");
	free(data);
	{
		const char *argv[] = {"rm", "-rf", dir, NULL};
		struct spawn_opts o = SPAWN_OPTS_INIT;
		int code = -1;

		o.timeout_ms = 10000;
		is_int(spawn_run(argv, &o, &code), 0, "spawn rm");
		is_int(code, 0, "rm exit 0");
	}
}

static void test_spawn(void)
{
	struct spawn_opts o = SPAWN_OPTS_INIT;
	const char *echo[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
	const char *sleep_[] = {"sleep", "10", NULL};
	const char *none[] = {"/nonexistent/prog", NULL};
	char *out = NULL, *err = NULL;
	int code = -1;

	o.out = &out;
	o.err = &err;
	o.timeout_ms = 5000;
	is_int(spawn_run(echo, &o, &code), 0, "spawn runs");
	is_int(code, 3, "exit code");
	is_str(out, "out\n", "stdout captured");
	is_str(err, "err\n", "stderr captured");
	free(out);
	free(err);
	o = (struct spawn_opts)SPAWN_OPTS_INIT;
	o.timeout_ms = 200;
	is_int(spawn_run(sleep_, &o, &code), -ETIMEDOUT, "time limit kills");
	is_int(spawn_run(none, &o, &code), -ENOENT, "missing program is -ENOENT");
}

int main(void)
{
	test_parse();
	test_hash();
	test_io();
	test_spawn();
	return done_testing();
}
