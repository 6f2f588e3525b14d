/* Booting a machine's snapshot as a QEMU VM on the appliance (the lost laptop
 * as a centralized virtual desktop): plan (resolve the snapshot, the gold
 * version, check the boot files, build qemu's argv), materialise (export the
 * gold version read-only and the snapshot as a private copy into a work
 * folder: the VM never writes to the store), run (qemu in the foreground).
 * Library code: 0 or a negative errno, never prints; a refusal says why in
 * plan->error. */
#ifndef GC_APPLIANCE_VM_H
#define GC_APPLIANCE_VM_H

#include <stddef.h>
#include <stdint.h>

#include "appliance/image.h"
#include "appliance/store.h"

#define VM_DEFAULT_MEM_MIB 1024u

struct vm_opts {
	const char *machine; /* whose snapshot */
	uint32_t snapshot; /* 0: the newest */
	const char *image; /* the gold image the snapshot runs on (required) */
	uint32_t image_version; /* 0: the image's current version */
	const char *kernel, *initrd; /* the netboot kernel and initramfs (required) */
	const char *cmdline; /* the image's extra kernel arguments, or NULL */
	const char *append; /* the operator's extra kernel arguments, or NULL */
	const char *work_dir; /* where the disk files go (created) */
	unsigned mem_mib; /* 0: VM_DEFAULT_MEM_MIB */
	const char *vnc; /* a VNC display ":N" (on 127.0.0.1) or "ADDR:N"; NULL: -nographic */
	const char *accel; /* "kvm" or "tcg"; NULL: kvm when /dev/kvm opens, else tcg */
	int no_net; /* 1: no NIC (goldcache.net=off); else QEMU user networking */
	int resume; /* 1: keep the volume copy an earlier run left (its writes) */
};

struct vm_plan {
	char machine[65];
	uint32_t snapshot; /* resolved */
	char image[65];
	uint32_t image_version; /* resolved */
	uint64_t gold_size; /* the version's logical size */
	char gold_path[4096]; /* work_dir/gold-IMAGE@VERSION.img (shared, read-only) */
	char volume_path[4096]; /* work_dir/MACHINE@SNAPSHOT.img (the VM's own copy) */
	const char *accel; /* "kvm" or "tcg" */
	char *cmdline; /* the kernel command line (heap) */
	char **argv; /* qemu's argv, NULL-terminated (heap, each string heap) */
	size_t argc;
	int bad_file; /* plan refused the kernel or initramfs file */
	int resume; /* from vm_opts */
	int resumed; /* materialise kept an earlier run's volume copy */
	char error[320]; /* why plan or materialise refused */
};

/* Resolves o into p (release with vm_plan_release, also after a failure):
 * -ENOENT unknown machine, snapshot, image or version (p->error says which);
 * -EINVAL bad options; -errno (p->error names the file) when the kernel or the
 * initramfs cannot be read. Touches no file. */
int vm_plan(struct store *s, const struct vm_opts *o, struct vm_plan *p);

/* Creates the work folder and exports the gold version (reused when its file
 * exists with the version's size: versions are immutable and exports are
 * published whole) and the snapshot (fresh, so each run starts from the
 * snapshot; with resume an existing copy is kept) into it.
 * 0 or -errno (p->error says what). */
int vm_materialise(struct store *s, struct vm_plan *p, const struct export_opts *eo);

/* Runs qemu with the terminal (stdin, stdout, stderr) until it exits; *code
 * is its exit status. 0, or -errno when it could not start. */
int vm_run(const struct vm_plan *p, int *code);

void vm_plan_release(struct vm_plan *p);

#endif
