#!/usr/bin/env bash
# A machine boots from its own disk with no appliance and no network: the local disk
# made by image-build/local-disk.sh (MBR, SYSLINUX on the FAT partition GCBOOT with
# the netboot kernel and initramfs, a cache partition) boots under SeaBIOS, the
# initramfs gets the machine's goldcache arguments from syslinux.cfg, has vfat for
# GCBOOT, and (gold from a second disk standing in for the agent) reaches the image.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-qemu.sh"
need qemu-system-x86_64

qemu_images initramfs-plain
qemu_images tiny
disk=$T_DIR/local.img
t_run "local disk built" bash "$GC_SRC/image-build/local-disk.sh" --out "$disk" --size 128 --boot-size 32 \
	--initrd "$GC_IMAGES/initramfs-plain.img" \
	--append "goldcache.mode=cache goldcache.cache=/dev/vda2 goldcache.machine=lab-09 goldcache.net=off goldcache.selftest=1 goldcache.root=/dev/vdb goldcache.onfail=poweroff goldcache-tiny.poweroff=1"

qemu_start localdisk -nic none -drive "file=$disk,if=virtio,format=raw" \
	-drive "file=$GC_IMAGES/tiny.ext4,if=virtio,format=raw,readonly=on"
qemu_wait 'SYSLINUX' 60
ok $? "the BIOS boots SYSLINUX from the local disk"
qemu_wait 'goldcache: stage cmdline url=none machine=lab-09 mode=cache cache=/dev/vda2 root=/dev/vdb' 90
ok $? "kernel and initramfs from GCBOOT, the machine's arguments from syslinux.cfg"
qemu_wait 'goldcache: selftest vfat ok' 30
ok $? "vfat available for GCBOOT"
qemu_wait '^goldcache-tiny: up' 60
ok $? "the gold image runs, with no appliance and no network"
qemu_wait_exit 30
ok $? "the guest powers off"
diag "guest uptime at stage root: $(qemu_stage_time root) s"

done_testing
