#!/usr/bin/env bash
# The Debian minbase gold image in cache mode through the real goldagent: systemd
# reaches multi-user on the overlay (gold over NBD from the agent's cache, hydrated on
# demand; machine volume above), and shuts down cleanly: the agent, started as
# "@goldagent", survives systemd's final killing spree, so the root is remounted
# read-only without I/O errors. Builds the Debian image first if missing (minutes):
# make check-full only.
# gc-test: slow
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-qemu.sh"
need qemu-system-x86_64 goldagent debootstrap

t_run "Debian minbase image built" bash "$GC_SRC/image-build/debian-rootfs.sh" || bail "no Debian image"
gold=$GC_IMAGES/debian-minbase.ext4
img=$T_DIR/initramfs-goldagent.img
t_run "initramfs with goldagent" qemu_agent_initramfs "$gold" debian 256M "$img"
disk=$T_DIR/disk.img
truncate -s 1G "$disk"

qemu_boot_args "$img" \
	"goldcache.machine=lab-12 goldcache.mode=cache goldcache.net=off goldcache.onfail=poweroff goldcache-debian.poweroff=1"
# the stand-in keeps the whole gold image in RAM as its chunk source
GC_QEMU_MEM=2048 qemu_start debian -nic none -drive "file=$gold,if=virtio,format=raw,readonly=on" \
	-drive "file=$disk,if=virtio,format=raw" "${QEMU_BOOT_ARGS[@]}"
qemu_wait 'goldcache: stage root lower=/dev/nbd0 upper=volume /dev/nbd1' 120
ok $? "overlay root: Debian gold from goldagent, machine volume above"
qemu_wait '^goldcache-debian: up overlay ' 300
ok $? "systemd reached multi-user"
qemu_wait_exit 120
ok $? "the guest powers off"
log=$(qemu_log)
like "$log" "Remounting '/' read-only" "systemd remounted the root read-only at shutdown"
if printf '%s\n' "$log" | grep -q "Failed to remount '/' read-only"; then
	ok 1 "the root remounted read-only without errors (the agent was killed?)"
else
	ok 0 "the root remounted read-only without errors"
fi
st=$(goldagent status --cache "$disk" 2>&1)
like "$st" "slot A \\(active\\): [a-z]+ debian@1, [1-9][0-9]*/[0-9]+ chunks" "gold chunks hydrated on demand"
diag "guest uptime when up: $(printf '%s\n' "$log" | sed -n 's/^goldcache-debian: up overlay //p') s"
diag "$(printf '%s\n' "$st" | sed -n '2p;4p' | tr '\n' ';')"

done_testing
