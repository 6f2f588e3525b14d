/* Unit tests for agent/bootdisk: the local entries' kernel arguments, the
 * bzImage release, syslinux.cfg's recorded pairs (parse and render), and probe
 * on image files (blank, the goldcache layout, other partition tables). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/bootdisk.h"
#include "lib/io.h"
#include "lib/log.h"
#include "tests/tap.h"

static void test_append(void)
{
	char out[256], small[16];

	is_int(bootdisk_local_append(
		       "BOOT_IMAGE=/a/vmlinuz initrd=initrd.img BOOTIF=01-aa "
		       "console=ttyS0 goldcache.url=http://x:1 goldcache.disk_init=force "
		       "goldcache.local_args=a.b=1,,c=2 quiet\n",
		       out, sizeof(out)),
	       0, "local append of a network boot's command line");
	is_str(out, "console=ttyS0 goldcache.url=http://x:1 quiet a.b=1 c=2",
	       "network-only arguments dropped, local_args items appended (empty ones skipped)");
	is_int(bootdisk_local_append("  \n", out, sizeof(out)), 0, "an empty command line");
	is_str(out, "", "gives no arguments");
	is_int(bootdisk_local_append("goldcache.local_args=x", out, sizeof(out)), 0,
	       "only local_args");
	is_str(out, "x", "gives its item");
	is_int(bootdisk_local_append("goldcache.url=http://appliance:8077", small, sizeof(small)),
	       -ENAMETOOLONG, "too long for the buffer: -ENAMETOOLONG, never truncated");
	is_int(bootdisk_local_append("a goldcache.local_args=0123456789abcdef", small,
				     sizeof(small)),
	       -ENAMETOOLONG, "local_args too long for the buffer: -ENAMETOOLONG");
}

static void test_release(void)
{
	static uint8_t k[0x2000];
	char rel[64];

	memcpy(k + 0x202, "HdrS", 4);
	k[0x20e] = 0x00;
	k[0x20f] = 0x10; /* 0x1000 + 0x200 */
	memcpy(k + 0x1200, "6.1.0-27-amd64 (debian-kernel@lists) #1 SMP", 44);
	is_int(bootdisk_kernel_release(k, sizeof(k), rel, sizeof(rel)), 0, "a bzImage header");
	is_str(rel, "6.1.0-27-amd64", "its release, up to the first space");
	is_int(bootdisk_kernel_release(k, sizeof(k), rel, 6), 0, "a small buffer");
	is_str(rel, "6.1.0", "holds the release's start");
	is_int(bootdisk_kernel_release(k, 0x1202, rel, sizeof(rel)), 0, "a string cut by the end");
	is_str(rel, "6.", "stops at the end of the buffer");
	is_int(bootdisk_kernel_release(k, 0x1200, rel, sizeof(rel)), -EINVAL,
	       "a version pointer past the end: not a bzImage");
	k[0x20f] = 0;
	is_int(bootdisk_kernel_release(k, sizeof(k), rel, sizeof(rel)), -EINVAL,
	       "no version pointer: refused");
	k[0x202] = 'X';
	is_int(bootdisk_kernel_release(k, sizeof(k), rel, sizeof(rel)), -EINVAL,
	       "no HdrS magic: refused");
	is_int(bootdisk_kernel_release(k, 0x100, rel, sizeof(rel)), -EINVAL, "too short: refused");
}

static void test_cfg(void)
{
	struct bootdisk_cfg c = {0}, back;
	char *text;
	const char *h = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char line[512];

	is_int(bootdisk_cfg_parse("DEFAULT x\nLABEL x\n", 18, &back), 0,
	       "a syslinux.cfg without goldcache lines parses");
	ok(!back.e[0].used && !back.e[1].used, "and records no pair");
	c.e[0] = (struct bootdisk_entry){.used = 1, .slot = 'b'};
	c.e[1] = (struct bootdisk_entry){.used = 1, .slot = 'a'};
	hash_buf("k", 1, &c.e[0].kernel);
	hash_buf("i", 1, &c.e[0].initrd);
	hash_buf("k0", 2, &c.e[1].kernel);
	hash_buf("i0", 2, &c.e[1].initrd);
	text = bootdisk_cfg_render(&c, "console=ttyS0 goldcache.machine=m");
	is_int(bootdisk_cfg_parse(text, strlen(text), &back), 0, "a rendered syslinux.cfg parses");
	ok(back.e[0].used && back.e[0].slot == 'b' && back.e[1].used && back.e[1].slot == 'a' &&
		   hash_equal(&back.e[0].kernel, &c.e[0].kernel) &&
		   hash_equal(&back.e[1].initrd, &c.e[1].initrd),
	   "and gives both entries back");
	ok(strstr(text, "DEFAULT goldcache\n") &&
		   strstr(text, "LABEL previous\n  LINUX /a/vmlinuz\n"
				"  INITRD /a/initrd.img\n"
				"  APPEND console=ttyS0 "
				"goldcache.machine=m\n"),
	   "default goldcache; previous boots slot a with the arguments");
	free(text);
	snprintf(line, sizeof(line), "# goldcache-bootdisk entry previous a %s %s\n", h, h);
	is_int(bootdisk_cfg_parse(line, strlen(line), &back), -EBADMSG,
	       "a previous entry without a default: refused");
	ok(!back.e[1].used, "and nothing recorded");
	snprintf(line, sizeof(line), "# goldcache-bootdisk entry goldcache c %s %s\n", h, h);
	is_int(bootdisk_cfg_parse(line, strlen(line), &back), -EBADMSG, "slot c: refused");
	snprintf(line, sizeof(line), "# goldcache-bootdisk entry goldcache a %.63s %s\n", h, h);
	is_int(bootdisk_cfg_parse(line, strlen(line), &back), -EBADMSG, "a short hash: refused");
	snprintf(line, sizeof(line),
		 "# goldcache-bootdisk entry goldcache a %s %s\n"
		 "# goldcache-bootdisk entry previous a %s %s\n",
		 h, h, h, h);
	is_int(bootdisk_cfg_parse(line, strlen(line), &back), -EBADMSG,
	       "both entries in one slot: refused");
	is_int(bootdisk_cfg_parse("# goldcache-bootdisk entry goldcache", 36, &back), -EBADMSG,
	       "a cut line: refused");
}

static void write_at(const char *path, off_t off, const void *b, size_t n)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || io_pwrite_all(fd, b, n, off) < 0)
		abort();
	close(fd);
}

static void test_probe(void)
{
	char dir[] = "/tmp/test-bootdisk.XXXXXX", path[64];
	struct bootdisk_probe p;
	uint8_t e[16] = {0x80, 0xfe, 0xff, 0xff, 0x0e, 0xfe, 0xff, 0xff, 0x00,
			 0x08, 0,    0,	   0x00, 0x00, 0x01, 0}; /* 2048 + 65536 sectors: 32 MiB */
	uint8_t e2[16] = {0,	0xfe, 0xff, 0xff, 0xda, 0xfe, 0xff, 0xff,
			  0x00, 0x08, 0x01, 0,	  0x00, 0x00, 0x01, 0}; /* 67584 + 65536 */
	int fd;

	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/disk", dir);
	fd = open(path, O_CREAT | O_RDWR, 0600);
	if (fd < 0 || ftruncate(fd, 80 << 20) < 0)
		abort();
	close(fd);
	is_int(bootdisk_probe(path, &p), 0, "probe a zeroed image file");
	is_int(p.kind, BOOTDISK_BLANK, "blank");
	is_int(p.size, 80 << 20, "its size");
	write_at(path, 440, "gcld", 4);
	write_at(path, 446, e, 16);
	write_at(path, 462, e2, 16);
	write_at(path, 510, "\x55\xaa", 2);
	is_int(bootdisk_probe(path, &p), 0, "probe the goldcache layout");
	is_int(p.kind, BOOTDISK_GOLDCACHE, "goldcache");
	ok(p.boot_start == 1 << 20 && p.boot_size == 32 << 20 && p.cache_start == 33 << 20 &&
		   p.cache_size == 32 << 20,
	   "GCBOOT and the cache partition where the MBR says");
	write_at(path, 440, "xxxx", 4);
	is_int(bootdisk_probe(path, &p), 0, "another disk signature");
	is_int(p.kind, BOOTDISK_FOREIGN, "is someone else's MBR");
	is_str(p.why, "an MBR partition table (types 0x0e 0xda)", "named with its types");
	write_at(path, 440, "gcld", 4);
	e2[14] = 0x03; /* the cache partition past the end of the disk */
	write_at(path, 462, e2, 16);
	is_int(bootdisk_probe(path, &p), 0, "a partition past the disk's end");
	is_int(p.kind, BOOTDISK_FOREIGN, "is not the goldcache layout");
	write_at(path, 450, "\xee", 1);
	is_int(bootdisk_probe(path, &p), 0, "a protective MBR");
	is_str(p.why, "a GPT partition table", "is a GPT");
	write_at(path, 510, "\0\0", 2);
	is_int(bootdisk_probe(path, &p), 0, "bytes without a boot signature");
	is_str(p.why, "data in its first MiB (no partition table: a filesystem?)", "are data");
	is_int(bootdisk_probe("/nonexistent/disk", &p), -ENOENT, "a missing disk: -ENOENT");
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	log_init("test-bootdisk", LOG_ERROR);
	test_append();
	test_release();
	test_cfg();
	test_probe();
	return done_testing();
}
