#!/usr/bin/env bash
# Cache mode in a guest with the real goldagent: /init starts "goldagent attach",
# waits for its NBD Unix sockets, connects /dev/nbd0 (gold, read-only) and /dev/nbd1
# (machine volume) with nbd-client, formats the blank volume, mounts overlayfs and
# switch_roots into the tiny image with the agent still running. The agent hydrates
# the gold image on demand into its cache on the machine's disk (/dev/vdb) and tracks
# the image's writes as dirty volume blocks; the next boot finds them. Until goldagent
# has "attach", a wrapper maps it to "cache init" + "serve" with /dev/vda's bytes as
# the chunk source (standing in for the appliance's LUN) and their SHA-256 list
# (qemu_agent_initramfs in tests/lib-qemu.sh).
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-qemu.sh"
need qemu-system-x86_64 goldagent mkfs.ext4

qemu_images tiny
gold=$GC_IMAGES/tiny.ext4
chunks=$(($(stat -c %s "$gold") / 1048576))
img=$T_DIR/initramfs-goldagent.img
t_run "initramfs with goldagent (and its libraries)" qemu_agent_initramfs "$gold" tiny 16M "$img"

before=$(sha256sum <"$gold")
disk=$T_DIR/disk.img
truncate -s 64M "$disk"
qemu_boot_args "$img" \
	"goldcache.machine=lab-11 goldcache.mode=cache goldcache.net=off goldcache.onfail=poweroff goldcache-tiny.poweroff=1"
disks=(-drive "file=$gold,if=virtio,format=raw,readonly=on" -drive "file=$disk,if=virtio,format=raw")

qemu_start boot1 -nic none "${disks[@]}" "${QEMU_BOOT_ARGS[@]}"
qemu_wait 'goldcache: stage modules ' 60
ok $? "initramfs running"
qemu_wait 'goldcache: stage agent pid [0-9]+' 60
ok $? "goldagent started and created its sockets"
qemu_wait 'goldcache: stage nbd gold=/dev/nbd0 volume=/dev/nbd1' 30
ok $? "nbd-client connected the gold and volume exports"
qemu_wait 'goldcache: machine volume /dev/nbd1 is blank: formatting it' 10
ok $? "the blank machine volume is formatted"
qemu_wait 'goldcache: stage root lower=/dev/nbd0 upper=volume /dev/nbd1' 30
ok $? "overlay root: gold from goldagent below, machine volume above"
qemu_wait '^goldcache-tiny: up' 30
ok $? "switch_root into the gold image"
qemu_wait '^goldcache-tiny: root writable' 10
ok $? "the root is writable"
qemu_wait '^goldcache-tiny: goldagent alive' 10
ok $? "goldagent still runs after switch_root"
qemu_wait_exit 30
ok $? "the guest powers off"
t1=$(qemu_stage_time root)
is "$(sha256sum <"$gold")" "$before" "the gold image is unchanged"

st=$(goldagent status --cache "$disk" 2>&1)
like "$st" "slot A \\(active\\): [a-z]+ tiny@1, [1-9][0-9]*/$chunks chunks" "the cache on the machine's disk holds hydrated gold chunks"
like "$st" "volume: [0-9]+ bytes, [1-9][0-9]* dirty blocks" "the machine's writes are tracked as dirty volume blocks"

qemu_start boot2 -nic none "${disks[@]}" "${QEMU_BOOT_ARGS[@]}"
qemu_wait "^goldcache-tiny: previous boot's write present: written at " 90
ok $? "second boot: the previous boot's write is there"
ok "$(qemu_log | grep -c 'is blank: formatting')" "second boot: the volume is not formatted again"
qemu_wait_exit 30
ok $? "the guest powers off"
t2=$(qemu_stage_time root)

# stream mode: gold from the agent, RAM upper; the volume is not used
qemu_boot_args "$img" \
	"goldcache.machine=lab-11 goldcache.mode=stream goldcache.net=off goldcache.onfail=poweroff goldcache-tiny.poweroff=1"
qemu_start boot3 -nic none "${disks[@]}" "${QEMU_BOOT_ARGS[@]}"
qemu_wait 'goldcache: stage nbd gold=/dev/nbd0 t=' 90
ok $? "stream mode: only the gold export is connected"
qemu_wait 'goldcache: stage root lower=/dev/nbd0 upper=ram' 30
ok $? "stream mode: overlay root with a RAM upper"
qemu_wait '^goldcache-tiny: root writable' 30
ok $? "stream mode: the root is writable"
ok "$(qemu_log | grep -c "previous boot's write present")" "stream mode: nothing of the volume's writes shows"
qemu_wait_exit 30
ok $? "the guest powers off"
diag "guest uptime at stage root: cache first boot $t1 s, second $t2 s, stream $(qemu_stage_time root) s"
diag "$(printf '%s\n' "$st" | sed -n '2p;4p' | tr '\n' ';')"

done_testing
