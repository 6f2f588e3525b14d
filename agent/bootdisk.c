/* goldagent bootdisk: the machine's own disk, bootable with no appliance.
 *
 * Layout (the same as image-build/local-disk.sh writes on a host):
 *   sector 0      MBR: SYSLINUX's mbr.bin boot code, disk signature "gcld",
 *                 entry 1 active, type 0x0e (FAT16 LBA) at 1 MiB: GCBOOT;
 *                 entry 2 type 0xda (non-filesystem data) right after it, to the
 *                 end of the disk (capped at 2 TiB): goldagent's cache
 *   GCBOOT        FAT made by mkfs.fat, SYSLINUX installed by its unmounted-FAT
 *                 installer (syslinux --offset), then the files below.
 * A disk is "blank" when its first MiB is all zeros; anything else that is not
 * this layout is someone's data and is never written unless forced.
 *
 * Order on a blank disk: FAT, SYSLINUX, flush, then the MBR sector (one write,
 * the commit), flush. Until the MBR lands the first MiB stays zero, so a crash
 * anywhere before it leaves a blank disk that the next online boot prepares
 * again. A forced disk gets its first and last MiB zeroed and flushed first, so
 * that it too is blank until the commit.
 *
 * GCBOOT's files: a/vmlinuz + a/initrd.img and b/vmlinuz + b/initrd.img, two
 * slots, and syslinux.cfg, whose head records which slot each entry boots and
 * the SHA-256 of its two files:
 *   # goldcache-bootdisk entry goldcache a KERNEL-SHA256 INITRD-SHA256
 *   # goldcache-bootdisk entry previous b KERNEL-SHA256 INITRD-SHA256
 * The FAT cannot rename two files as one step, so names never change roles:
 * a new pair is written (temp file, fsync, rename, fsync of the directory) into
 * the slot no entry of the current syslinux.cfg names, and a new syslinux.cfg,
 * published the same way, makes it the default and the old default "previous".
 * When "previous" names the slot to be written, a syslinux.cfg without it is
 * published first. So every entry syslinux.cfg names has its complete files at
 * every instant: a crash leaves the old pair booting, or the new one.
 *
 * The pair is checked before it is written: its size and SHA-256 against what
 * the appliance says of the files it serves (GET /boot/images/IMAGE/sums, the
 * boot URLs iPXE used), and the kernel's release (from its bzImage header)
 * against the running kernel's, so GCBOOT boots what this network boot ran. */
#include "agent/bootdisk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "lib/bytes.h"
#include "lib/hash.h"
#include "lib/httpc.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/spawn.h"
#include "lib/util.h"

#define MIB (1ull << 20)
#define SECTOR 512u
#define CFG_NAME "syslinux.cfg"
#define CFG_MAX (64u << 10)
#define FILE_MAX (1ull << 30) /* a kernel or initramfs larger than this is refused */
#define TAG "# goldcache-bootdisk"
#define TOOL_TIMEOUT_MS 120000

static const uint8_t disk_sig[4] = {'g', 'c', 'l', 'd'};

const char *bootdisk_kind_name(enum bootdisk_kind k)
{
	switch (k) {
	case BOOTDISK_BLANK:
		return "blank";
	case BOOTDISK_GOLDCACHE:
		return "goldcache";
	case BOOTDISK_FOREIGN:
		break;
	}
	return "foreign";
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Opens disk; *size from BLKGETSIZE64 (block device) or fstat (image file). */
static int disk_open(const char *disk, int flags, uint64_t *size, int *is_blk)
{
	struct stat st;
	int fd = open(disk, flags | O_CLOEXEC);

	if (fd < 0) {
		int r = -errno;

		log_error("cannot open disk '%s': %s", disk, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0)
		goto bad;
	*is_blk = S_ISBLK(st.st_mode);
	if (*is_blk) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0)
			goto bad;
	} else if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
	} else {
		log_error("disk '%s' is neither a block device nor an image file", disk);
		close(fd);
		return -EINVAL;
	}
	return fd;
bad:;
	int r = -errno;

	log_error("cannot size disk '%s': %s", disk, strerror(-r));
	close(fd);
	return r;
}

/* Describes the partition table in sector 0 (which types) for messages. */
static void describe_mbr(const uint8_t *s, char *why, size_t size)
{
	size_t n = 0;

	if (s[510] != 0x55 || s[511] != 0xaa) {
		snprintf(why, size, "data in its first MiB (no partition table: a filesystem?)");
		return;
	}
	for (int i = 0; i < 4; i++)
		if (s[446 + 16 * i + 4] == 0xee) {
			snprintf(why, size, "a GPT partition table");
			return;
		}
	n = (size_t)snprintf(why, size, "an MBR partition table (types");
	for (int i = 0; i < 4 && n < size; i++) {
		uint8_t t = s[446 + 16 * i + 4];

		if (t)
			n += (size_t)snprintf(why + n, size - n, " 0x%02x", t);
	}
	if (n < size)
		snprintf(why + n, size - n, ")");
}

int bootdisk_probe(const char *disk, struct bootdisk_probe *out)
{
	uint8_t *buf = NULL;
	int is_blk, fd;
	ssize_t n;
	size_t want;

	memset(out, 0, sizeof(*out));
	fd = disk_open(disk, O_RDONLY, &out->size, &is_blk);
	if (fd < 0)
		return fd;
	want = out->size < MIB ? (size_t)out->size : (size_t)MIB;
	buf = xmalloc(MIB);
	n = io_pread_full(fd, buf, want, 0);
	close(fd);
	if (n < 0 || (size_t)n != want) {
		log_error("cannot read the first MiB of disk '%s': %s", disk,
			  n < 0 ? strerror((int)-n) : "short read");
		free(buf);
		return n < 0 ? (int)n : -EIO;
	}
	out->kind = BOOTDISK_FOREIGN;
	if (want >= SECTOR && buf[510] == 0x55 && buf[511] == 0xaa &&
	    !memcmp(buf + 440, disk_sig, sizeof(disk_sig))) {
		const uint8_t *e1 = buf + 446, *e2 = buf + 462;
		uint64_t s1 = le32(e1 + 8), l1 = le32(e1 + 12), s2 = le32(e2 + 8),
			 l2 = le32(e2 + 12);

		if (e1[4] == 0x0e && e2[4] == 0xda && buf[478 + 4] == 0 && buf[494 + 4] == 0 &&
		    s1 == 2048 && l1 > 0 && s2 == s1 + l1 && l2 > 0 &&
		    (s2 + l2) * SECTOR <= out->size) {
			out->kind = BOOTDISK_GOLDCACHE;
			out->boot_start = s1 * SECTOR;
			out->boot_size = l1 * SECTOR;
			out->cache_start = s2 * SECTOR;
			out->cache_size = l2 * SECTOR;
			snprintf(out->why, sizeof(out->why),
				 "the goldcache layout (GCBOOT %llu MiB, cache %llu MiB)",
				 (unsigned long long)(l1 * SECTOR / MIB),
				 (unsigned long long)(l2 * SECTOR / MIB));
		}
	}
	if (out->kind == BOOTDISK_FOREIGN) {
		size_t i = 0;

		while (i < want && buf[i] == 0)
			i++;
		if (i == want) {
			out->kind = BOOTDISK_BLANK;
			snprintf(out->why, sizeof(out->why), "blank (first MiB all zeros)");
		} else if (want >= SECTOR) {
			describe_mbr(buf, out->why, sizeof(out->why));
		} else {
			snprintf(out->why, sizeof(out->why), "data (and smaller than 1 MiB)");
		}
	}
	free(buf);
	return 0;
}

static int zero_range(int fd, const char *disk, uint64_t off, uint64_t len)
{
	uint8_t *z = xcalloc(1, MIB);
	int r = 0;

	while (len > 0 && r == 0) {
		size_t n = len < MIB ? (size_t)len : (size_t)MIB;

		r = io_pwrite_all(fd, z, n, (off_t)off);
		off += n;
		len -= n;
	}
	free(z);
	if (r < 0)
		log_error("cannot clear disk '%s': %s", disk, strerror(-r));
	return r;
}

static int run_tool(const char *const argv[], const char *what, const char *disk)
{
	struct spawn_opts so = SPAWN_OPTS_INIT;
	char *err = NULL, *out = NULL, line[512];
	int code = 0, r;

	so.timeout_ms = TOOL_TIMEOUT_MS;
	so.err = &err;
	so.out = &out; /* mkfs.fat's banner: not for goldagent's stdout */
	so.out_max = 16 << 10;
	r = spawn_run(argv, &so, &code);
	free(out);
	spawn_argv_str(argv, line, sizeof(line));
	if (r < 0 || code != 0) {
		size_t l = err ? strlen(err) : 0;

		while (l > 0 && (err[l - 1] == '\n' || err[l - 1] == '\r'))
			err[--l] = '\0';
		if (r == -ENOENT)
			log_error(
				"%s for disk '%s': '%s' is not installed (the initramfs copies it: "
				"image-build/initramfs.sh)",
				what, disk, argv[0]);
		else
			log_error("%s for disk '%s' failed (%s): %s%s%s", what, disk, line,
				  r < 0 ? strerror(-r) : "exit status", r < 0 ? "" : " ",
				  r < 0 ? "" : (err && *err ? err : "no message"));
		free(err);
		return r < 0 ? r : -EIO;
	}
	log_debug("%s: %s", what, line);
	free(err);
	return 0;
}

/* The MBR sector of the layout: boot code (first 440 bytes of mbr_code), the
 * disk signature, GCBOOT and the cache partition. */
static int build_mbr(const char *mbr_code, uint64_t disk_sectors, uint64_t boot_sectors,
		     uint8_t sec[SECTOR])
{
	char *code = NULL;
	size_t len = 0;
	uint64_t s2 = 2048 + boot_sectors, end = disk_sectors;
	int r = io_read_file(mbr_code, SECTOR, &code, &len);

	if (r < 0 || len < 440) {
		log_error("cannot use '%s' as MBR boot code: %s", mbr_code,
			  r < 0 ? strerror(-r) : "shorter than 440 bytes (SYSLINUX's mbr.bin?)");
		free(code);
		return r < 0 ? r : -EINVAL;
	}
	if (end > 0xffffffffull)
		end = 0xffffffffull; /* MBR entries count 32-bit sectors: the first 2 TiB */
	memset(sec, 0, SECTOR);
	memcpy(sec, code, 440);
	free(code);
	memcpy(sec + 440, disk_sig, sizeof(disk_sig));
	/* entry: status, CHS first, type, CHS last, LBA start, sectors; CHS fields say
	 * "beyond CHS" (fe ff ff): LBA only */
	sec[446] = 0x80;
	memcpy(sec + 447, "\xfe\xff\xff", 3);
	sec[450] = 0x0e;
	memcpy(sec + 451, "\xfe\xff\xff", 3);
	put_le32(sec + 454, 2048);
	put_le32(sec + 458, (uint32_t)boot_sectors);
	memcpy(sec + 463, "\xfe\xff\xff", 3);
	sec[466] = 0xda;
	memcpy(sec + 467, "\xfe\xff\xff", 3);
	put_le32(sec + 470, (uint32_t)s2);
	put_le32(sec + 474, (uint32_t)(end - s2));
	sec[510] = 0x55;
	sec[511] = 0xaa;
	return 0;
}

static void reread_partitions(int fd, const char *disk)
{
	for (int i = 0; i < 50; i++) {
		if (ioctl(fd, BLKRRPART) == 0)
			return;
		if (errno != EBUSY)
			break;
		sleep_ms(100);
	}
	log_warn("the kernel did not re-read the partitions of '%s': %s (they appear at the "
		 "next boot)",
		 disk, strerror(errno));
}

int bootdisk_prepare(const struct bootdisk_prepare_opts *o, int *created)
{
	struct bootdisk_probe p;
	uint64_t bsize = o->boot_size ? o->boot_size : BOOTDISK_DEFAULT_BOOT_SIZE, size;
	uint8_t sec[SECTOR];
	char offs[32], blocks[32], byteoff[32];
	int fd = -1, is_blk = 0, r;

	*created = 0;
	if (bsize % MIB || bsize < 16 * MIB) {
		log_error("GCBOOT's size must be a whole number of MiB, at least 16 MiB");
		return -EINVAL;
	}
	r = bootdisk_probe(o->disk, &p);
	if (r < 0)
		return r;
	if (p.kind == BOOTDISK_GOLDCACHE)
		return 0;
	if (p.kind == BOOTDISK_FOREIGN && !o->force) {
		log_error(
			"disk '%s' holds %s: not touching it (goldcache.disk_init=force, or "
			"goldagent bootdisk prepare --force, lays the goldcache layout out over it "
			"and its data is lost)",
			o->disk, p.why);
		return -EEXIST;
	}
	if (p.size < MIB + bsize + 16 * MIB) {
		log_error("disk '%s' has %llu MiB: too small for a %llu MiB GCBOOT and a cache "
			  "partition of at least 16 MiB",
			  o->disk, (unsigned long long)(p.size / MIB),
			  (unsigned long long)(bsize / MIB));
		return -ENOSPC;
	}
	r = build_mbr(o->mbr_code ? o->mbr_code : BOOTDISK_DEFAULT_MBR, p.size / SECTOR,
		      bsize / SECTOR, sec);
	if (r < 0)
		return r;
	fd = disk_open(o->disk, O_RDWR, &size, &is_blk);
	if (fd < 0)
		return fd;
	if (p.kind == BOOTDISK_FOREIGN) {
		/* forced: blank first, so that a crash before the commit leaves a disk
		 * the next boot prepares again, never half of two layouts */
		log_warn("disk '%s' holds %s: laying the goldcache layout out over it (forced)",
			 o->disk, p.why);
		r = zero_range(fd, o->disk, 0, MIB);
		if (r == 0)
			r = zero_range(fd, o->disk, size - MIB, MIB);
		if (r == 0 && (r = io_fsync(fd)) < 0)
			log_error("cannot flush disk '%s': %s", o->disk, strerror(-r));
		if (r < 0)
			goto out;
	}
	log_info("laying out disk '%s' (%llu MiB): GCBOOT %llu MiB at 1 MiB, the rest for the "
		 "cache",
		 o->disk, (unsigned long long)(size / MIB), (unsigned long long)(bsize / MIB));
	snprintf(offs, sizeof(offs), "--offset=%u", 2048u);
	snprintf(blocks, sizeof(blocks), "%llu", (unsigned long long)(bsize / 1024));
	snprintf(byteoff, sizeof(byteoff), "%llu", (unsigned long long)MIB);
	{
		/* -F 16: given the whole disk with an offset, mkfs.fat picks the FAT
		 * type from the device's size and refuses a small FAT32 on a large
		 * disk (about 1 GiB and up) */
		const char *mkfs[] = {"mkfs.fat", "-F",	  "16", "-I",	 "-n",	 "GCBOOT",
				      "-h",	  "2048", offs, o->disk, blocks, NULL};
		const char *sysl[] = {"syslinux", "--install", "--offset", byteoff, o->disk, NULL};

		r = run_tool(mkfs, "making GCBOOT's FAT (mkfs.fat)", o->disk);
		if (r == 0)
			r = run_tool(sysl, "installing SYSLINUX on GCBOOT (syslinux)", o->disk);
	}
	if (r < 0)
		goto out;
	if ((r = io_fsync(fd)) < 0) {
		log_error("cannot flush GCBOOT on disk '%s': %s", o->disk, strerror(-r));
		goto out;
	}
	/* the commit: until this sector lands the disk reads as blank */
	r = io_pwrite_all(fd, sec, SECTOR, 0);
	if (r == 0)
		r = io_fsync(fd);
	if (r < 0) {
		log_error("cannot write the partition table of disk '%s': %s", o->disk,
			  strerror(-r));
		goto out;
	}
	if (is_blk)
		reread_partitions(fd, o->disk);
	*created = 1;
out:
	close(fd);
	return r;
}

/* ---- GCBOOT's files ---- */

static const char *const entry_label[2] = {"goldcache", "previous"};

int bootdisk_cfg_parse(const char *text, size_t len, struct bootdisk_cfg *st)
{
	char *buf = xstrndup(text, len), *line, *next;
	int r = 0;

	memset(st, 0, sizeof(*st));
	for (line = buf; line && *line; line = next) {
		char label[16], slot[4], k[HASH_HEX_LEN + 2], i[HASH_HEX_LEN + 2];
		int which;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (strncmp(line, TAG " entry ", sizeof(TAG " entry ") - 1) != 0)
			continue;
		if (sscanf(line + sizeof(TAG " entry ") - 1, "%15s %3s %65s %65s", label, slot, k,
			   i) != 4) {
			r = -EBADMSG;
			break;
		}
		which = !strcmp(label, entry_label[0])	 ? 0
			: !strcmp(label, entry_label[1]) ? 1
							 : -1;
		if (which < 0 || (strcmp(slot, "a") && strcmp(slot, "b")) || st->e[which].used ||
		    hash_from_hex(k, &st->e[which].kernel) < 0 ||
		    hash_from_hex(i, &st->e[which].initrd) < 0) {
			r = -EBADMSG;
			break;
		}
		st->e[which].used = 1;
		st->e[which].slot = slot[0];
	}
	if (r == 0 && st->e[1].used && (!st->e[0].used || st->e[0].slot == st->e[1].slot))
		r = -EBADMSG;
	if (r < 0)
		memset(st, 0, sizeof(*st));
	free(buf);
	return r;
}

/* Reads DIR/syslinux.cfg (its text into *text, heap) and the pair it records.
 * -ENOENT: no file. A file without TAG lines (made by hand or by
 * image-build/local-disk.sh), or whose TAG lines do not parse, records no pair. */
static int state_load(const char *dir, struct bootdisk_cfg *st, char **text)
{
	char *path = xasprintf("%s/" CFG_NAME, dir), *buf = NULL;
	size_t len;
	int r = io_read_file(path, CFG_MAX, &buf, &len);

	memset(st, 0, sizeof(*st));
	*text = NULL;
	if (r < 0) {
		if (r != -ENOENT)
			log_error("cannot read '%s': %s", path, strerror(-r));
		free(path);
		return r;
	}
	*text = buf;
	if (bootdisk_cfg_parse(buf, len, st) < 0)
		log_warn("'%s': goldcache-bootdisk lines that do not parse: treating GCBOOT as "
			 "holding no pair",
			 path);
	free(path);
	return 0;
}

char *bootdisk_cfg_render(const struct bootdisk_cfg *st, const char *append)
{
	char *out = xstrdup(""), *t;

	for (int i = 0; i < 2; i++) {
		char k[HASH_HEX_LEN + 1], d[HASH_HEX_LEN + 1];

		if (!st->e[i].used)
			continue;
		t = xasprintf("%s" TAG " entry %s %c %s %s\n", out, entry_label[i], st->e[i].slot,
			      hash_to_hex(&st->e[i].kernel, k), hash_to_hex(&st->e[i].initrd, d));
		free(out);
		out = t;
	}
	t = xasprintf("%s# goldcache local boot: written by goldagent bootdisk (agent/bootdisk.c) "
		      "at each network boot; edits are lost\n"
		      "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 30\nDEFAULT %s\n",
		      out, entry_label[0]);
	free(out);
	out = t;
	for (int i = 0; i < 2; i++) {
		if (!st->e[i].used)
			continue;
		t = xasprintf("%s\nLABEL %s\n  LINUX /%c/vmlinuz\n  INITRD /%c/initrd.img\n"
			      "  APPEND %s\n",
			      out, entry_label[i], st->e[i].slot, st->e[i].slot, append);
		free(out);
		out = t;
	}
	return out;
}

static int cfg_publish(const char *dir, const struct bootdisk_cfg *st, const char *append)
{
	char *path = xasprintf("%s/" CFG_NAME, dir), *text = bootdisk_cfg_render(st, append);
	int r = io_write_file_atomic(path, text, strlen(text), 0644);

	if (r < 0)
		log_error("cannot publish '%s': %s", path, strerror(-r));
	free(text);
	free(path);
	return r;
}

/* SHA-256 of DIR/SLOT/NAME; -ENOENT when it does not exist. */
static int file_hash(const char *dir, char slot, const char *name, struct hash *h)
{
	char *path = xasprintf("%s/%c/%s", dir, slot, name), *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;
	struct hash_ctx *hc;
	ssize_t n;

	free(path);
	if (fd < 0)
		return -errno;
	buf = xmalloc(MIB);
	hc = hash_ctx_new();
	while ((n = io_read_full(fd, buf, MIB)) > 0)
		hash_ctx_update(hc, buf, (size_t)n);
	hash_ctx_final(hc, h);
	if (n < 0)
		r = (int)n;
	free(buf);
	close(fd);
	return r;
}

/* 1 when entry e's files are on GCBOOT with the hashes it records. */
static int entry_sound(const char *dir, const struct bootdisk_entry *e)
{
	struct hash k, i;

	return e->used && file_hash(dir, e->slot, "vmlinuz", &k) == 0 &&
	       file_hash(dir, e->slot, "initrd.img", &i) == 0 && hash_equal(&k, &e->kernel) &&
	       hash_equal(&i, &e->initrd);
}

int bootdisk_check(const char *dir)
{
	struct bootdisk_cfg st;
	char *text = NULL;
	int r = state_load(dir, &st, &text), bad = 0;

	free(text);
	if (r < 0) {
		printf("%s/" CFG_NAME ": %s\n", dir, strerror(-r));
		return -EBADMSG;
	}
	if (!st.e[0].used) {
		printf("%s/" CFG_NAME ": no pair recorded by goldagent\n", dir);
		return -EBADMSG;
	}
	for (int i = 0; i < 2; i++) {
		int ok;

		if (!st.e[i].used)
			continue;
		ok = entry_sound(dir, &st.e[i]);
		printf("%s %c %s\n", entry_label[i], st.e[i].slot,
		       ok ? "ok"
			  : "damaged (a file is missing or differs from its recorded "
			    "hash)");
		if (!ok && i == 0)
			bad = 1;
	}
	return bad ? -EBADMSG : 0;
}

/* Removes temp files a crash left (NAME.tmp.XXXXXX) from dir. */
static void remove_temps(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".tmp.")) {
			char *p = xasprintf("%s/%s", dir, de->d_name);

			if (unlink(p) == 0)
				log_info("removed '%s' (a crash's leftover)", p);
			free(p);
		}
	closedir(d);
}

/* Empties slot dir DIR/SLOT (no entry names it when this runs). */
static void slot_clear(const char *dir, char slot)
{
	static const char *const names[] = {"vmlinuz", "initrd.img"};

	for (size_t i = 0; i < 2; i++) {
		char *p = xasprintf("%s/%c/%s", dir, slot, names[i]);

		if (unlink(p) < 0 && errno != ENOENT)
			log_warn("cannot remove '%s': %s", p, strerror(errno));
		free(p);
	}
}

struct bootfile {
	const char *what; /* kernel, initrd */
	char path[256];
	uint64_t size;
	struct hash sha;
	char *data;
	size_t len;
};

static int sums_get(const struct bootdisk_update_opts *o, struct bootfile f[2])
{
	struct httpc_request rq = {.timeout_ms = 20000, .max_body = 64 << 10};
	struct httpc_response rs = {0};
	char *path = xasprintf("/boot/images/%s/sums", o->image);
	json_t *j = NULL;
	json_error_t err;
	int r;

	rq.path = path;
	r = httpc_request(o->url, &rq, &rs);
	if (r < 0) {
		log_error("cannot ask %s%s: %s", o->url, path, strerror(-r));
		goto out;
	}
	if (rs.status != 200) {
		log_error("%s%s answered %d: %.200s", o->url, path, rs.status, rs.body);
		r = rs.status == 404 ? -ENOENT : -EIO;
		goto out;
	}
	j = json_loadb(rs.body, rs.len, 0, &err);
	r = -EBADMSG;
	if (!j) {
		log_error("%s%s: not JSON: %s", o->url, path, err.text);
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		json_t *x = json_object_get(j, f[i].what), *p = json_object_get(x, "path"),
		       *s = json_object_get(x, "size"), *h = json_object_get(x, "sha256");
		const char *ps = json_string_value(p);

		if (!json_is_integer(s) || json_integer_value(s) <= 0 ||
		    (uint64_t)json_integer_value(s) > FILE_MAX || !ps ||
		    strncmp(ps, "/boot/images/", 13) != 0 || strlen(ps) >= sizeof(f[i].path) ||
		    strstr(ps, "..") || !json_is_string(h) ||
		    hash_from_hex(json_string_value(h), &f[i].sha) < 0) {
			log_error("%s%s: no valid %s (path under /boot/images/, size up to 1 GiB, "
				  "sha256)",
				  o->url, path, f[i].what);
			goto out;
		}
		snprintf(f[i].path, sizeof(f[i].path), "%s", ps);
		f[i].size = (uint64_t)json_integer_value(s);
	}
	r = 0;
out:
	json_decref(j);
	httpc_response_release(&rs);
	free(path);
	return r;
}

static int file_get(const struct bootdisk_update_opts *o, struct bootfile *f)
{
	struct httpc_request rq = {.path = f->path,
				   .timeout_ms = o->timeout_ms ? o->timeout_ms : 120000,
				   .max_body = (size_t)f->size + 1};
	struct httpc_response rs = {0};
	struct hash h;
	char want[HASH_HEX_LEN + 1], got[HASH_HEX_LEN + 1];
	int r = httpc_request(o->url, &rq, &rs);

	if (r < 0) {
		log_error("cannot download the %s %s%s: %s", f->what, o->url, f->path,
			  strerror(-r));
		return r;
	}
	if (rs.status != 200) {
		log_error("the %s %s%s answered %d", f->what, o->url, f->path, rs.status);
		httpc_response_release(&rs);
		return -EIO;
	}
	hash_buf(rs.body, rs.len, &h);
	if (rs.len != f->size || !hash_equal(&h, &f->sha)) {
		log_error(
			"the %s from %s%s is not what the appliance's sums say: %zu bytes, sha256 "
			"%s (want %llu bytes, %s); not written",
			f->what, o->url, f->path, rs.len, hash_to_hex(&h, got),
			(unsigned long long)f->size, hash_to_hex(&f->sha, want));
		httpc_response_release(&rs);
		return -EBADMSG;
	}
	f->data = rs.body; /* ownership moves to f */
	f->len = rs.len;
	return 0;
}

int bootdisk_kernel_release(const void *buf, size_t len, char *out, size_t size)
{
	const uint8_t *b = buf;
	size_t off, n = 0;

	if (size == 0 || len < 0x210 || memcmp(b + 0x202, "HdrS", 4) != 0)
		return -EINVAL;
	off = (size_t)(b[0x20e] | b[0x20f] << 8);
	if (off == 0)
		return -EINVAL;
	off += 0x200;
	while (off < len && n + 1 < size && b[off] > ' ' && b[off] < 0x7f)
		out[n++] = (char)b[off++];
	out[n] = '\0';
	return n ? 0 : -EINVAL;
}

static int write_pair(const char *dir, char slot, const struct bootfile f[2])
{
	static const char *const names[2] = {"vmlinuz", "initrd.img"};
	char *sdir = xasprintf("%s/%c", dir, slot);
	int r = io_mkdir_p(sdir, 0755);

	if (r < 0)
		log_error("cannot create '%s': %s", sdir, strerror(-r));
	for (int i = 0; i < 2 && r == 0; i++) {
		char *p = xasprintf("%s/%s", sdir, names[i]);

		r = io_write_file_atomic(p, f[i].data, f[i].len, 0644);
		if (r < 0)
			log_error("cannot write the %s to '%s': %s", f[i].what, p, strerror(-r));
		free(p);
	}
	free(sdir);
	return r;
}

static void remove_legacy(const char *dir)
{
	/* image-build/local-disk.sh's names: no entry of ours names them */
	static const char *const names[] = {"vmlinuz", "initrd.img", "vmlinuz.prev", "initrd.prev"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *p = xasprintf("%s/%s", dir, names[i]);

		if (unlink(p) == 0)
			log_info("removed '%s' (the pair of the disk's first layout)", p);
		free(p);
	}
}

int bootdisk_update(const struct bootdisk_update_opts *o, enum bootdisk_result *res, char *slot_out)
{
	struct bootfile f[2] = {{.what = "kernel"}, {.what = "initrd"}};
	struct bootdisk_cfg st, next;
	struct statvfs vfs;
	struct utsname u;
	char *text = NULL, *want_text = NULL, rel[128], *sdir;
	const char *want_rel = o->kernel_release;
	char target;
	int r;

	*res = BOOTDISK_CURRENT;
	if (slot_out)
		*slot_out = '\0';
	if (!name_is_valid(o->image)) {
		log_error("'%s' is not a valid image name", o->image);
		return -EINVAL;
	}
	if (strchr(o->append, '\n') || strlen(o->append) > 2048) {
		log_error("the kernel arguments for GCBOOT hold a newline or exceed 2048 bytes");
		return -EINVAL;
	}
	r = state_load(o->dir, &st, &text);
	if (r < 0 && r != -ENOENT)
		return r;
	remove_temps(o->dir);
	for (char s = 'a'; s <= 'b'; s++) {
		sdir = xasprintf("%s/%c", o->dir, s);
		remove_temps(sdir);
		free(sdir);
	}
	r = sums_get(o, f);
	if (r < 0)
		goto out;
	if (st.e[0].used && hash_equal(&st.e[0].kernel, &f[0].sha) &&
	    hash_equal(&st.e[0].initrd, &f[1].sha) && entry_sound(o->dir, &st.e[0])) {
		/* the pair is current; the arguments may not be */
		if (st.e[1].used && !entry_sound(o->dir, &st.e[1])) {
			log_warn("GCBOOT's previous pair (slot %c) is damaged: dropping its entry",
				 st.e[1].slot);
			st.e[1].used = 0;
		}
		want_text = bootdisk_cfg_render(&st, o->append);
		if (text && strcmp(text, want_text) == 0)
			goto out;
		r = cfg_publish(o->dir, &st, o->append);
		if (r == 0)
			*res = BOOTDISK_CONFIG;
		goto out;
	}
	for (int i = 0; i < 2 && r == 0; i++)
		r = file_get(o, &f[i]);
	if (r < 0)
		goto out;
	if (!want_rel) {
		uname(&u);
		want_rel = u.release;
	}
	if (bootdisk_kernel_release(f[0].data, f[0].len, rel, sizeof(rel)) < 0) {
		log_error("the kernel %s%s is not a Linux bzImage; not written", o->url, f[0].path);
		r = -EBADMSG;
		goto out;
	}
	if (strcmp(rel, want_rel) != 0) {
		log_error("the kernel %s%s is release %s, this boot runs %s: it is not the kernel "
			  "this machine booted (the image's kernel changed since?); not written",
			  o->url, f[0].path, rel, want_rel);
		r = -ESTALE;
		goto out;
	}
	/* the slot no entry names after step 1 below */
	target = st.e[0].used && st.e[0].slot == 'a' ? 'b' : 'a';
	next = st;
	if (next.e[1].used && next.e[1].slot == target) {
		next.e[1].used = 0;
		r = cfg_publish(o->dir, &next, o->append);
		if (r < 0)
			goto out;
	}
	if (!next.e[0].used || next.e[0].slot != target)
		slot_clear(o->dir, target);
	if (statvfs(o->dir, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < f[0].len + f[1].len + MIB) {
		log_error("GCBOOT ('%s') has %llu MiB free; the new pair needs %llu MiB (make "
			  "GCBOOT larger: goldcache.boot_size)",
			  o->dir, (unsigned long long)((uint64_t)vfs.f_bavail * vfs.f_frsize / MIB),
			  (unsigned long long)((f[0].len + f[1].len) / MIB + 1));
		r = -ENOSPC;
		goto out;
	}
	r = write_pair(o->dir, target, f);
	if (r < 0)
		goto out;
	next.e[1] = st.e[0].used && entry_sound(o->dir, &st.e[0]) ? st.e[0]
								  : (struct bootdisk_entry){0};
	next.e[0] = (struct bootdisk_entry){
		.used = 1, .slot = target, .kernel = f[0].sha, .initrd = f[1].sha};
	r = cfg_publish(o->dir, &next, o->append);
	if (r < 0)
		goto out;
	if (!st.e[0].used)
		remove_legacy(o->dir);
	*res = BOOTDISK_INSTALLED;
	if (slot_out)
		*slot_out = target;
	log_info("GCBOOT boots %s's kernel (release %s) and initramfs from slot %c%s", o->image,
		 rel, target,
		 next.e[1].used ? "; the previous pair stays as entry 'previous'" : "");
out:
	for (int i = 0; i < 2; i++)
		free(f[i].data);
	free(text);
	free(want_text);
	return r;
}

int bootdisk_local_append(const char *cmdline, char *out, size_t size)
{
	static const char *const drop[] = {"BOOTIF=", "initrd=", "BOOT_IMAGE=",
					   "goldcache.disk_init=", "goldcache.local_args="};
	const char *p = cmdline, *local = NULL;
	size_t n = 0, local_len = 0;

	out[0] = '\0';
	while (*p) {
		const char *w;
		size_t l, i;
		int keep = 1;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (!*p)
			break;
		w = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
		l = (size_t)(p - w);
		for (i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
			if (l >= strlen(drop[i]) && !strncmp(w, drop[i], strlen(drop[i])))
				keep = 0;
		if (l > 21 && !strncmp(w, "goldcache.local_args=", 21)) {
			local = w + 21;
			local_len = l - 21;
		}
		if (!keep)
			continue;
		if (n + l + 2 > size)
			return -ENAMETOOLONG;
		if (n)
			out[n++] = ' ';
		memcpy(out + n, w, l);
		n += l;
		out[n] = '\0';
	}
	for (size_t i = 0; local && i < local_len;) {
		size_t j = i;

		while (j < local_len && local[j] != ',')
			j++;
		if (j > i) {
			if (n + (j - i) + 2 > size)
				return -ENAMETOOLONG;
			if (n)
				out[n++] = ' ';
			memcpy(out + n, local + i, j - i);
			n += j - i;
			out[n] = '\0';
		}
		i = j + 1;
	}
	return 0;
}

/* ---- command line ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: goldagent bootdisk probe DISK\n"
		"       goldagent bootdisk prepare [--force] [--boot-size SIZE] [--mbr FILE] DISK\n"
		"       goldagent bootdisk update --dir GCBOOT --url URL --image NAME\n"
		"                 (--append ARGS | --cmdline FILE) [--kernel-release R]\n"
		"       goldagent bootdisk check GCBOOT\n"
		"exit: 0 done, 1 failed, 2 usage, 3 prepare refused a disk that holds data\n");
	exit(2);
}

int bootdisk_main(int argc, char **argv)
{
	static const struct option opts[] = {{"force", no_argument, NULL, 'f'},
					     {"boot-size", required_argument, NULL, 's'},
					     {"mbr", required_argument, NULL, 'm'},
					     {"dir", required_argument, NULL, 'd'},
					     {"url", required_argument, NULL, 'u'},
					     {"image", required_argument, NULL, 'i'},
					     {"append", required_argument, NULL, 'a'},
					     {"cmdline", required_argument, NULL, 'c'},
					     {"kernel-release", required_argument, NULL, 'k'},
					     {"verbose", no_argument, NULL, 'v'},
					     {NULL, 0, NULL, 0}};
	struct bootdisk_prepare_opts po = {0};
	struct bootdisk_update_opts uo = {0};
	const char *sub, *cmdline = NULL;
	char append[4096];
	int c, r;

	if (argc < 3)
		usage();
	sub = argv[2];
	optind = 3;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			po.force = 1;
			break;
		case 's':
			if (parse_size(optarg, &po.boot_size) < 0)
				die(2, "--boot-size '%s' is not a size (e.g. 64M)", optarg);
			break;
		case 'm':
			po.mbr_code = optarg;
			break;
		case 'd':
			uo.dir = optarg;
			break;
		case 'u':
			uo.url = optarg;
			break;
		case 'i':
			uo.image = optarg;
			break;
		case 'a':
			uo.append = optarg;
			break;
		case 'c':
			cmdline = optarg;
			break;
		case 'k':
			uo.kernel_release = optarg;
			break;
		case 'v':
			log_set_level(LOG_DEBUG);
			break;
		default:
			usage();
		}
	}
	if (!strcmp(sub, "probe") || !strcmp(sub, "prepare")) {
		struct bootdisk_probe p;
		int created;

		if (optind != argc - 1)
			usage();
		if (sub[1] == 'r' && sub[2] == 'o') {
			if (bootdisk_probe(argv[optind], &p) < 0)
				return 1;
			printf("%s: %s\n", bootdisk_kind_name(p.kind), p.why);
			return 0;
		}
		po.disk = argv[optind];
		r = bootdisk_prepare(&po, &created);
		if (r == -EEXIST)
			return 3;
		if (r < 0)
			return 1;
		printf("%s\n", created ? "created" : "present");
		return 0;
	}
	if (!strcmp(sub, "check")) {
		if (optind != argc - 1)
			usage();
		return bootdisk_check(argv[optind]) < 0;
	}
	if (!strcmp(sub, "update")) {
		enum bootdisk_result res;
		char slot;

		if (optind != argc || !uo.dir || !uo.url || !uo.image || (!uo.append == !cmdline))
			usage();
		if (cmdline) {
			/* /proc/cmdline says its size is 0: read it up to a bound */
			char text[4096];
			int fd = open(cmdline, O_RDONLY | O_CLOEXEC);
			ssize_t n = fd < 0 ? -errno : io_read_full(fd, text, sizeof(text));

			if (fd >= 0)
				close(fd);
			if (n < 0)
				die(1, "cannot read the kernel command line '%s': %s", cmdline,
				    strerror((int)-n));
			if ((size_t)n == sizeof(text))
				die(1, "the kernel command line in '%s' exceeds %zu bytes", cmdline,
				    sizeof(text) - 1);
			text[n] = '\0';
			if (bootdisk_local_append(text, append, sizeof(append)) < 0)
				die(1, "the kernel command line in '%s' is too long", cmdline);
			uo.append = append;
		}
		if (bootdisk_update(&uo, &res, &slot) < 0)
			return 1;
		if (res == BOOTDISK_INSTALLED)
			printf("installed slot %c\n", slot);
		else
			printf("%s\n", res == BOOTDISK_CONFIG ? "config" : "current");
		return 0;
	}
	usage();
	return 2;
}
