#!/usr/bin/env bash
# The skeleton of stream mode: the initramfs, given goldcache.root=/dev/vda (a virtio
# disk holding the tiny gold image, read-only), mounts it as the lower layer with a
# RAM upper via overlayfs, switch_roots into it, and the image's init runs on a
# writable overlay root.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-qemu.sh"
need qemu-system-x86_64 mkfs.ext4 debugfs

qemu_images initramfs-plain
qemu_images tiny
ok 0 "kernel, initramfs and tiny image built"
gold=$GC_IMAGES/tiny.ext4
before=$(sha256sum <"$gold")

qemu_boot_args "$GC_IMAGES/initramfs-plain.img" \
	"goldcache.root=/dev/vda goldcache.net=off goldcache.onfail=poweroff goldcache-tiny.poweroff=1"
qemu_start tiny -nic none -drive "file=$gold,if=virtio,format=raw,readonly=on" "${QEMU_BOOT_ARGS[@]}"

qemu_wait 'goldcache: stage cmdline .*root=/dev/vda' 60
ok $? "goldcache.root parsed"
qemu_wait 'goldcache: stage network off' 30
ok $? "goldcache.net=off skips the network"
qemu_wait 'goldcache: stage root lower=/dev/vda upper=ram' 30
ok $? "overlay root: gold /dev/vda below, RAM above"
qemu_wait 'goldcache: stage switch_root /sbin/init' 10
ok $? "switch_root into the image"
qemu_wait '^goldcache-tiny: up' 20
ok $? "the tiny image's init runs"
qemu_wait '^goldcache-tiny: root overlay' 10
ok $? "its root is overlayfs"
qemu_wait '^goldcache-tiny: root writable' 10
ok $? "its root is writable (RAM upper)"
qemu_wait_exit 30
ok $? "the guest powers off"
is "$(sha256sum <"$gold")" "$before" "the gold image is unchanged"
diag "guest uptime at stage root: $(qemu_stage_time root) s, at switch_root: $(qemu_stage_time switch_root) s"

done_testing
