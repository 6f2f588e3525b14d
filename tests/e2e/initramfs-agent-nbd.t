#!/usr/bin/env bash
# The skeleton of cache mode, with a stand-in for goldagent: /init starts
# "goldagent attach", waits for its two NBD Unix sockets, connects /dev/nbd0 (gold,
# read-only) and /dev/nbd1 (machine volume) with nbd-client, formats the blank
# volume, mounts overlayfs (gold below, volume above), switch_roots into the tiny
# image with the agent still running, and the image's write lands in the machine
# volume and survives the next boot. The stand-in is a shell script serving the
# guest's virtio disks with Debian's nbd-server (both copied in by initramfs.sh
# --agent/--add with their libraries); goldagent will serve them from its cache.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-qemu.sh"
need qemu-system-x86_64 mkfs.ext4 debugfs

qemu_images tiny
nbd_server=$(bash "$GC_SRC/image-build/deb.sh" nbd-server)/bin/nbd-server
cat >"$T_DIR/stub-goldagent" <<'AGENT'
#!/bin/sh
# stand-in for "goldagent attach": gold = /dev/vda, machine volume = /dev/vdb
[ "$1" = attach ] || exit 2
shift
echo "stub-goldagent: attach $*"
rundir="" mode=cache
while [ $# -gt 1 ]; do
	case "$1" in
	--run-dir) rundir=$2 ;;
	--mode) mode=$2 ;;
	esac
	shift 2
done
for e in gold:/dev/vda:true volume:/dev/vdb:false; do
	name=${e%%:*} rest=${e#*:}
	[ "$name" = volume ] && [ "$mode" != cache ] && continue
	printf '[generic]\nunixsock = %s\n[%s]\nexportname = %s\nreadonly = %s\nflush = true\nfua = true\n' \
		"$rundir/$name.sock.tmp" "$name" "${rest%%:*}" "${rest#*:}" >"$rundir/$name.conf"
	nbd-server -C "$rundir/$name.conf" -p "$rundir/$name.pid" || exit 1
	# publish the socket only once its server listens
	i=0
	while [ ! -S "$rundir/$name.sock.tmp" ] && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
	ln "$rundir/$name.sock.tmp" "$rundir/$name.sock"
done
while :; do sleep 3600; done
AGENT
chmod +x "$T_DIR/stub-goldagent"
img=$T_DIR/initramfs-stub.img
t_run "initramfs with the stand-in agent and nbd-server" \
	bash "$GC_SRC/image-build/initramfs.sh" --agent "$T_DIR/stub-goldagent" \
	--add "$nbd_server:/sbin/nbd-server" --out "$img"

gold=$GC_IMAGES/tiny.ext4
before=$(sha256sum <"$gold")
vol=$T_DIR/volume.img
truncate -s 32M "$vol"
qemu_boot_args "$img" \
	"goldcache.machine=lab-07 goldcache.mode=cache goldcache.net=off goldcache.onfail=poweroff goldcache-tiny.poweroff=1"
disks=(-drive "file=$gold,if=virtio,format=raw,readonly=on" -drive "file=$vol,if=virtio,format=raw")

qemu_start boot1 -nic none "${disks[@]}" "${QEMU_BOOT_ARGS[@]}"
qemu_wait 'goldcache: selftest|goldcache: stage modules ' 60
ok $? "initramfs running"
qemu_wait 'goldcache: stage agent pid [0-9]+' 30
ok $? "goldagent attach started and its sockets appeared"
qemu_wait 'goldcache: stage nbd gold=/dev/nbd0 volume=/dev/nbd1' 60
ok $? "nbd-client connected gold and volume over the Unix sockets"
qemu_wait 'goldcache: machine volume /dev/nbd1 is blank: formatting it' 10
ok $? "the blank machine volume is formatted"
qemu_wait 'goldcache: stage root lower=/dev/nbd0 upper=volume /dev/nbd1' 30
ok $? "overlay root: gold over NBD below, machine volume above"
qemu_wait '^goldcache-tiny: up' 30
ok $? "switch_root into the gold image"
qemu_wait '^goldcache-tiny: root writable' 10
ok $? "the root is writable"
qemu_wait '^goldcache-tiny: goldagent alive' 10
ok $? "goldagent still runs after switch_root"
qemu_wait_exit 30
ok $? "the guest powers off"
t1=$(qemu_stage_time root)

written=$(debugfs -R 'cat /upper/goldcache-tiny.written' "$vol" 2>/dev/null)
like "$written" '^written at ' "the image's write is in the machine volume's upper layer"
is "$(sha256sum <"$gold")" "$before" "the gold image is unchanged"

qemu_start boot2 -nic none "${disks[@]}" "${QEMU_BOOT_ARGS[@]}"
qemu_wait "^goldcache-tiny: previous boot's write present: written at " 60
ok $? "second boot: the previous boot's write is there"
ok "$(qemu_log | grep -c 'is blank: formatting')" "second boot: the volume is not formatted again"
qemu_wait_exit 30
ok $? "the guest powers off"
diag "guest uptime at stage root: first boot $t1 s (with mke2fs), second boot $(qemu_stage_time root) s"

done_testing
