#!/usr/bin/env bash
# The Debian minbase gold image (debootstrap, systemd) boots through the goldcache
# initramfs as stream mode's skeleton: read-only virtio disk below, RAM above,
# systemd reaches multi-user on the overlay root. Builds the image first if missing
# (several minutes), so it runs in make check-full only.
# gc-test: slow
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-qemu.sh"
need qemu-system-x86_64 debootstrap mkfs.ext4

qemu_images initramfs-plain
t_run "Debian minbase image built" bash "$GC_SRC/image-build/debian-rootfs.sh" || bail "no Debian image"
gold=$GC_IMAGES/debian-minbase.ext4
before=$(sha256sum <"$gold")

qemu_boot_args "$GC_IMAGES/initramfs-plain.img" \
	"goldcache.root=/dev/vda goldcache.net=off goldcache.onfail=poweroff goldcache-debian.poweroff=1"
GC_QEMU_MEM=1024 qemu_start debian -nic none -drive "file=$gold,if=virtio,format=raw,readonly=on" "${QEMU_BOOT_ARGS[@]}"
qemu_wait 'goldcache: stage root lower=/dev/vda upper=ram' 60
ok $? "overlay root over the Debian image"
qemu_wait 'goldcache: stage switch_root /sbin/init' 10
ok $? "switch_root to systemd"
qemu_wait '^goldcache-debian: up overlay ' 240
ok $? "systemd reached multi-user on the overlay root"
qemu_wait_exit 120
ok $? "the guest powers off"
is "$(sha256sum <"$gold")" "$before" "the gold image is unchanged"
diag "guest uptime when up: $(qemu_log | sed -n 's/^goldcache-debian: up overlay //p') s"

done_testing
