/* A machine's snapshot as a QEMU VM (see vm.h).
 *
 * The VM sees two virtio disks and boots the netboot kernel + initramfs
 * directly (no PXE, no agent):
 *     /dev/vda  the gold version, exported raw, attached readonly=on
 *     /dev/vdb  the machine volume: a raw copy of the snapshot (the same bytes
 *               goldagent serves as volume.sock), writable, the VM's own
 * and the kernel command line
 *     console=ttyS0 goldcache.root=/dev/vda goldcache.volume=/dev/vdb
 *     [goldcache.net=off] [image cmdline] [operator's --append]
 * with which image-build/initramfs/init mounts the gold image as the overlay
 * lower and the volume's ext4 as the upper (upper/ and work/ at its root, the
 * layout cache mode gives every machine volume), then switch_roots into it.
 *
 * Work folder: gold-IMAGE@VERSION.img is reused across runs (versions are
 * immutable; image_export_to_file publishes by rename, so a file that exists
 * is whole; its size is checked against the manifest in case the folder served
 * another store); MACHINE@SNAPSHOT.img is exported again on every run, so a
 * run starts from the snapshot and not from an earlier VM's writes, unless
 * resume keeps it (a VM used as a desktop for days). The store is only read. */
#include "appliance/vm.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/snapshot.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/spawn.h"
#include "lib/util.h"

#define VM_MAX_ARGS 48

static void push(struct vm_plan *p, char *s)
{
	assert(p->argc + 1 < VM_MAX_ARGS);
	p->argv[p->argc++] = s;
	p->argv[p->argc] = NULL;
}

static int readable_file(const char *what, const char *path, struct vm_plan *p)
{
	struct stat st;

	if (!path || !*path) {
		snprintf(p->error, sizeof(p->error), "no %s given", what);
		return -EINVAL;
	}
	if (stat(path, &st) < 0 || access(path, R_OK) < 0) {
		int e = errno;

		snprintf(p->error, sizeof(p->error), "%s '%s': %s", what, path, strerror(e));
		p->bad_file = 1;
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(p->error, sizeof(p->error), "%s '%s' is not a regular file", what, path);
		p->bad_file = 1;
		return -EINVAL;
	}
	return 0;
}

static const char *pick_accel(const char *want)
{
	int fd;

	if (want)
		return strcmp(want, "kvm") == 0 ? "kvm" : "tcg";
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return "tcg";
	close(fd);
	return "kvm";
}

static int resolve(struct store *s, const struct vm_opts *o, struct vm_plan *p)
{
	struct manifest *m = NULL;
	int r;

	snprintf(p->machine, sizeof(p->machine), "%s", o->machine);
	p->snapshot = o->snapshot;
	if (p->snapshot == 0 && (r = snapshot_latest(s, o->machine, &p->snapshot)) < 0) {
		snprintf(p->error, sizeof(p->error), "machine '%s' has no snapshot in this store",
			 o->machine);
		return r;
	}
	r = snapshot_manifest_load(s, o->machine, p->snapshot, &m);
	if (r < 0) {
		snprintf(p->error, sizeof(p->error), "machine '%s' has no snapshot %u", o->machine,
			 p->snapshot);
		return r;
	}
	manifest_free(m);
	if (!o->image || !name_is_valid(o->image)) {
		snprintf(p->error, sizeof(p->error), "no gold image given for machine '%s'",
			 o->machine);
		return -EINVAL;
	}
	snprintf(p->image, sizeof(p->image), "%s", o->image);
	p->image_version = o->image_version;
	if (p->image_version == 0 && (r = image_current(s, o->image, &p->image_version)) < 0) {
		snprintf(p->error, sizeof(p->error), "gold image '%s' is not in this store",
			 o->image);
		return r;
	}
	r = image_manifest_load(s, o->image, p->image_version, &m);
	if (r < 0) {
		snprintf(p->error, sizeof(p->error), "gold image '%s' has no version %u", o->image,
			 p->image_version);
		return r;
	}
	p->gold_size = m->size;
	manifest_free(m);
	return 0;
}

int vm_plan(struct store *s, const struct vm_opts *o, struct vm_plan *p)
{
	const char *wd = o->work_dir;
	int r;

	memset(p, 0, sizeof(*p));
	if (!o->machine || !name_is_valid(o->machine)) {
		snprintf(p->error, sizeof(p->error), "invalid machine name");
		return -EINVAL;
	}
	if ((r = resolve(s, o, p)) < 0)
		return r;
	if ((r = readable_file("kernel", o->kernel, p)) < 0 ||
	    (r = readable_file("initramfs", o->initrd, p)) < 0)
		return r;
	if (!wd || !*wd) {
		snprintf(p->error, sizeof(p->error), "no work folder given");
		return -EINVAL;
	}
	if ((size_t)snprintf(p->gold_path, sizeof(p->gold_path), "%s/gold-%s@%u.img", wd, p->image,
			     p->image_version) >= sizeof(p->gold_path) ||
	    (size_t)snprintf(p->volume_path, sizeof(p->volume_path), "%s/%s@%u.img", wd, p->machine,
			     p->snapshot) >= sizeof(p->volume_path)) {
		snprintf(p->error, sizeof(p->error), "work folder path too long");
		return -ENAMETOOLONG;
	}
	p->accel = pick_accel(o->accel);
	p->resume = o->resume;
	p->cmdline = xasprintf("%s goldcache.root=/dev/vda goldcache.volume=/dev/vdb%s%s%s%s%s",
			       o->vnc ? "console=ttyS0 console=tty0" : "console=ttyS0",
			       o->no_net ? " goldcache.net=off" : "",
			       o->cmdline && *o->cmdline ? " " : "", o->cmdline ? o->cmdline : "",
			       o->append && *o->append ? " " : "", o->append ? o->append : "");

	p->argv = xcalloc(VM_MAX_ARGS, sizeof(char *));
	push(p, xstrdup("qemu-system-x86_64"));
	push(p, xstrdup("-name"));
	push(p, xasprintf("goldcache-vm-%s@%u", p->machine, p->snapshot));
	push(p, xstrdup("-accel"));
	push(p, xstrdup(p->accel));
	push(p, xstrdup("-cpu"));
	push(p, xstrdup(strcmp(p->accel, "kvm") == 0 ? "host" : "max"));
	push(p, xstrdup("-m"));
	push(p, xasprintf("%u", o->mem_mib ? o->mem_mib : VM_DEFAULT_MEM_MIB));
	push(p, xstrdup("-kernel"));
	push(p, xstrdup(o->kernel));
	push(p, xstrdup("-initrd"));
	push(p, xstrdup(o->initrd));
	push(p, xstrdup("-append"));
	push(p, xstrdup(p->cmdline));
	push(p, xstrdup("-drive"));
	push(p, xasprintf("file=%s,if=virtio,format=raw,readonly=on", p->gold_path));
	push(p, xstrdup("-drive"));
	push(p, xasprintf("file=%s,if=virtio,format=raw", p->volume_path));
	push(p, xstrdup("-nic"));
	push(p, xstrdup(o->no_net ? "none" : "user,model=virtio-net-pci"));
	if (o->vnc) {
		push(p, xstrdup("-vnc"));
		/* ":N" listens on loopback only (no password: reach it through ssh -L);
		 * "ADDR:N" is the operator's explicit choice */
		push(p, o->vnc[0] == ':' ? xasprintf("127.0.0.1%s", o->vnc) : xstrdup(o->vnc));
		push(p, xstrdup("-serial"));
		push(p, xstrdup("mon:stdio"));
	} else {
		push(p, xstrdup("-nographic"));
	}
	return 0;
}

int vm_materialise(struct store *s, struct vm_plan *p, const struct export_opts *eo)
{
	const char *wd = p->gold_path;
	char dir[4096];
	struct stat st;
	int r;

	snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(wd, '/') - wd), wd);
	if ((r = io_mkdir_p(dir, 0700)) < 0) {
		snprintf(p->error, sizeof(p->error), "cannot create the work folder '%.200s': %s",
			 dir, strerror(-r));
		return r;
	}
	if (stat(p->gold_path, &st) != 0 || (uint64_t)st.st_size != p->gold_size) {
		/* missing, or another store's export of a same-named version */
		if (unlink(p->gold_path) < 0 && errno != ENOENT) {
			r = -errno;
			snprintf(p->error, sizeof(p->error), "cannot replace '%.200s': %s",
				 p->gold_path, strerror(-r));
			return r;
		}
		r = image_export_to_file(s, p->image, p->image_version, p->gold_path, eo);
		if (r < 0) {
			snprintf(p->error, sizeof(p->error), "cannot export %s@%u to '%.200s': %s",
				 p->image, p->image_version, p->gold_path, strerror(-r));
			return r;
		}
		/* QEMU opens it readonly=on; the mode says so to anyone else too */
		chmod(p->gold_path, 0444);
	}
	if (p->resume && stat(p->volume_path, &st) == 0 && S_ISREG(st.st_mode)) {
		p->resumed = 1;
		return 0;
	}
	r = snapshot_export_to_file(s, p->machine, p->snapshot, p->volume_path, eo);
	if (r < 0) {
		snprintf(p->error, sizeof(p->error), "cannot export %s@%u to '%.200s': %s",
			 p->machine, p->snapshot, p->volume_path, strerror(-r));
		return r;
	}
	return 0;
}

int vm_run(const struct vm_plan *p, int *code)
{
	struct spawn_opts o = SPAWN_OPTS_INIT;

	/* the operator's terminal is the VM's serial console (-nographic) */
	o.stdin_fd = STDIN_FILENO;
	o.stdout_fd = STDOUT_FILENO;
	o.stderr_fd = STDERR_FILENO;
	return spawn_run((const char *const *)p->argv, &o, code);
}

void vm_plan_release(struct vm_plan *p)
{
	if (p->argv)
		for (size_t i = 0; i < p->argc; i++)
			free(p->argv[i]);
	free(p->argv);
	free(p->cmdline);
	p->argv = NULL;
	p->cmdline = NULL;
	p->argc = 0;
}
