/* The machine's own disk, made bootable without the appliance (agent/bootdisk.c):
 * an MBR with a FAT partition "GCBOOT" (SYSLINUX, the netboot kernel and
 * initramfs, syslinux.cfg) and a partition for goldagent's cache; goldagent lays
 * it out on a blank disk and keeps GCBOOT's kernel + initramfs those of the last
 * network boot. Functions return 0 or a negative errno and log once. */
#ifndef GC_AGENT_BOOTDISK_H
#define GC_AGENT_BOOTDISK_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hash.h"

#define BOOTDISK_DEFAULT_BOOT_SIZE (64ull << 20)
#define BOOTDISK_DEFAULT_MBR "/usr/lib/syslinux/mbr/mbr.bin"

enum bootdisk_kind {
	BOOTDISK_BLANK, /* first MiB all zeros: nobody's data */
	BOOTDISK_GOLDCACHE, /* the layout bootdisk_prepare (or local-disk.sh) writes */
	BOOTDISK_FOREIGN, /* anything else: another partition table, a filesystem */
};

struct bootdisk_probe {
	enum bootdisk_kind kind;
	uint64_t size; /* bytes */
	uint64_t boot_start, boot_size, cache_start, cache_size; /* bytes, GOLDCACHE only */
	char why[192]; /* what was found, for messages */
};

/* Reads the first MiB of disk (a block device or an image file) and says what
 * it holds. */
int bootdisk_probe(const char *disk, struct bootdisk_probe *out);
const char *bootdisk_kind_name(enum bootdisk_kind k);

struct bootdisk_prepare_opts {
	const char *disk;
	int force; /* lay out a disk that holds something else too (its data is lost) */
	uint64_t boot_size; /* GCBOOT's size, a multiple of 1 MiB; 0: 64 MiB */
	const char *mbr_code; /* SYSLINUX's mbr.bin; NULL: BOOTDISK_DEFAULT_MBR */
};

/* Lays the goldcache layout out on o->disk when it is blank (or o->force): FAT
 * at 1 MiB (mkfs.fat), SYSLINUX installed on it (syslinux, unmounted), flushed,
 * then the MBR as the one write that makes the layout exist, flushed, and the
 * kernel asked to re-read the partitions. A crash before the MBR leaves a disk
 * whose first MiB is still blank: the next boot starts again. *created is 1 when
 * the layout was written, 0 when the disk already had it. -EEXIST: the disk holds
 * something else and o->force is not set (nothing written). */
int bootdisk_prepare(const struct bootdisk_prepare_opts *o, int *created);

struct bootdisk_update_opts {
	const char *dir; /* GCBOOT, mounted */
	const char *url; /* the appliance, http://HOST:PORT */
	const char *image; /* whose boot files (goldcache.image) */
	const char *append; /* kernel arguments of the local entries */
	const char *kernel_release; /* the kernel must be this release; NULL: uname's */
	int timeout_ms; /* per download; 0: 120 s */
};

enum bootdisk_result {
	BOOTDISK_CURRENT, /* nothing to do */
	BOOTDISK_CONFIG, /* the files were current; syslinux.cfg rewritten (arguments) */
	BOOTDISK_INSTALLED, /* a new kernel + initramfs pair became the default */
};

/* Makes GCBOOT boot the appliance's kernel and initramfs of o->image: fetches
 * their sizes and SHA-256 (GET /boot/images/IMAGE/sums), and when the default
 * entry's files differ (or do not match what syslinux.cfg records), downloads
 * both, checks them against those sums and the kernel's release, writes them
 * into the slot (a/ or b/) no entry refers to, and publishes a syslinux.cfg
 * whose default entry boots them and whose "previous" entry boots the pair that
 * was the default. syslinux.cfg is the commit point: at every instant, and after
 * a crash at any instant, each entry it names has its complete files. */
int bootdisk_update(const struct bootdisk_update_opts *o, enum bootdisk_result *res,
		    char *slot_out);

/* What syslinux.cfg records: e[0] the default entry ("goldcache"), e[1] the
 * "previous" one; each boots SLOT/vmlinuz + SLOT/initrd.img of GCBOOT. */
struct bootdisk_entry {
	int used;
	char slot; /* 'a' or 'b' */
	struct hash kernel, initrd;
};
struct bootdisk_cfg {
	struct bootdisk_entry e[2];
};

/* Parses the "# goldcache-bootdisk entry LABEL SLOT KSHA ISHA" lines of a
 * syslinux.cfg's text (other lines are SYSLINUX's). 0 (no such lines: no entry
 * used) or -EBADMSG (a malformed or contradictory line; *cfg is then empty). */
int bootdisk_cfg_parse(const char *text, size_t len, struct bootdisk_cfg *cfg);
/* The syslinux.cfg text for cfg, both entries with kernel arguments append
 * (heap, caller frees). bootdisk_cfg_parse gives cfg back from it. */
char *bootdisk_cfg_render(const struct bootdisk_cfg *cfg, const char *append);

/* The release a Linux bzImage says it is (its setup header's kernel_version
 * string, up to the first space) into out. -EINVAL when buf is no bzImage. */
int bootdisk_kernel_release(const void *buf, size_t len, char *out, size_t size);

/* Checks GCBOOT's syslinux.cfg as goldagent wrote it: every entry's kernel and
 * initramfs exist and hash to what it records. Prints one line per entry to
 * stdout. 0 when the default entry is sound, -EBADMSG otherwise. */
int bootdisk_check(const char *dir);

/* The local entries' arguments from a kernel command line: everything but what
 * only a network boot means (BOOTIF=, initrd=, BOOT_IMAGE=, goldcache.disk_init=,
 * goldcache.local_args=), then goldcache.local_args's comma-separated items. */
int bootdisk_local_append(const char *cmdline, char *out, size_t size);

/* goldagent bootdisk probe|prepare|update|check ... (argv[1] is "bootdisk"). */
int bootdisk_main(int argc, char **argv);

#endif
