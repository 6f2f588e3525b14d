#!/usr/bin/env bash
# Issue 5's stream mode on real firmware: a diskless QEMU guest (no drive at all)
# PXE-boots through goldcached (own dnsmasq + tgtd) in a stream profile; the
# initramfs runs the real goldagent attach, which logs in to the machine's target
# and serves the gold image (image-build's tiny ext4) as /dev/nbd0; the root is
# overlayfs with that gold read-only below and a tmpfs above. The tiny image's init
# writes files on that root (/goldcache-tiny.written, a line in /goldcache-tiny.boots)
# and powers off; the machine is powered on again and PXE-boots the same way: the
# files are gone (no "previous boot's write present", the boot log starts over at
# boot 1), the appliance holds no snapshot of the machine and the gold version in
# the store is still the imported image, bit for bit. /proc/partitions and
# /proc/mounts, printed by the guest, show no local disk and the RAM upper layer.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
need goldcached goldctl goldagent qemu-system-x86_64 tgtd tgtadm dnsmasq curl cmp jq
MAC=52:54:00:77:00:61
HYP=52-54-00-77-00-61
PREFIX=iqn.2026-11.org.example.stream
GCLOG=$T_DIR/goldcached.log
ACCESS=$T_DIR/state/access.log

qemu_images initramfs
qemu_images tiny
grep -q goldagent < <(gzip -dc "$GC_IMAGES/initramfs.img" | cpio -t --quiet 2>/dev/null)
ok $? "image-build: kernel, initramfs with goldagent, tiny gold image ready"

lab_new
mkdir -p "$T_DIR/store" "$T_DIR/state"
ver=$(goldctl --store "$T_DIR/store" image import tiny "$GC_IMAGES/tiny.ext4" 2>&1)
is "$ver" "tiny@1" "tiny ext4 imported into a private store with goldctl"

show="goldcache-tiny.show=/goldcache-tiny.boots goldcache-tiny.show=/proc/partitions goldcache-tiny.show=/proc/mounts"
{
	e2e_appliance_yaml "$PREFIX"
	cat <<YAML
images:
  - name: tiny
    version: current
    kernel: $GC_IMAGES/vmlinuz
    initrd: $GC_IMAGES/initramfs.img
    cmdline: "console=ttyS0 panic=-1 goldcache.onfail=poweroff goldcache-tiny.poweroff=1 $show"
profiles:
  - {name: hpc, image: tiny, mode: stream}
machines:
  - {mac: $MAC, name: node1, profile: hpc}
YAML
} >"$T_DIR/goldcache.yaml"
e2e_goldcached "$T_DIR/goldcache.yaml" "$GCLOG"
ok 0 "goldcached serves HTTP on the lab bridge"
lab_tap gctap0

# boot N: one power-on of node1 (no drive: lab_qemu's -nodefaults, no -drive), to
# the tiny image's poweroff; its console in $T_DIR/boot-N.serial
boot() {
	local n=$1 serial=$T_DIR/boot-$1.serial
	lab_qemu "node1_$n" gctap0 "$MAC" "$serial"
	e2e_timeline 180 \
		"dhcp@$serial=Configuring \\(net0 $MAC\\)\\.+ ok" \
		"script@$serial=goldcache: node1 mode stream image tiny@1" \
		"initrd@$serial=/boot/images/tiny/initrd\\.\\.\\. ok" \
		"init@$serial=goldcache: stage init " \
		"network@$serial=goldcache: stage network eth0 " \
		"agent@$serial=goldcache: stage agent pid " \
		"nbd@$serial=goldcache: stage nbd gold=/dev/nbd0" \
		"root@$serial=goldcache: stage root lower=/dev/nbd0 upper=ram" \
		"tiny-up@$serial=goldcache-tiny: up" \
		"poweroff@$serial=goldcache-tiny: powering off"
	ok $? "boot $n: PXE -> stream script -> goldagent attach -> gold over NBD, RAM upper -> the tiny image"
	wait_for 30 sh -c "! kill -0 $(lab_pid "node1_$n")"
	ok $? "boot $n: the guest powered off"
	wait "$(lab_pid "node1_$n")" 2>/dev/null
	BOOT=$(tr -d '\r' <"$serial")
	printf '%s\n' "$BOOT" | grep -Eq 'goldcache: (error|stage failed)' &&
		printf '%s\n' "$BOOT" | grep -E 'goldcache: ' | tail -n 20 | sed 's/^/#   serial: /'
}

# --- boot 1: the root is writable, and where the writes land
boot 1
like "$BOOT" "goldcache: stage cmdline url=http://$LAB_ADDR:$LAB_HTTP_PORT machine=node1 mode=stream t=" \
	"boot 1: the initramfs runs in stream mode"
unlike_line() { printf '%s\n' "$1" | grep -Eq -- "$2"; ok $((!$?)) "$3"; }
unlike_line "$BOOT" "goldcache: stage nbd .*volume=" "boot 1: no machine volume device (stream mode)"
like "$BOOT" "goldcache-tiny: root overlay" "boot 1: the root is overlayfs"
like "$BOOT" "goldcache-tiny: root writable" "boot 1: the guest wrote /goldcache-tiny.written on its root"
like "$BOOT" "goldcache-tiny: logged boot 1" "boot 1: the guest appended to /goldcache-tiny.boots"
like "$BOOT" "goldcache-tiny: show /goldcache-tiny.boots: boot 1 at " "boot 1: and reads it back"
unlike_line "$BOOT" "previous boot's write present" "boot 1: nothing written before"
like "$BOOT" "goldcache-tiny: goldagent alive" "boot 1: goldagent still serves the gold after switch_root"
like "$BOOT" "^tmpfs /run/goldcache/upper tmpfs " "boot 1: /proc/mounts: the upper layer is a tmpfs"
like "$BOOT" "^overlay / overlay .*upperdir=/run/goldcache/upper/upper" "boot 1: /proc/mounts: the root's upperdir is on it"
like "$BOOT" "^/dev/nbd0 /run/goldcache/lower ext4 ro" "boot 1: /proc/mounts: the gold is /dev/nbd0, read-only"
# /proc/partitions lines ("major minor blocks name"): the guest has nbd devices only
parts=$(printf '%s\n' "$BOOT" | awk '/goldcache-tiny: show \/proc\/partitions:/ { on = 1; next }
	on && /^ +[0-9]+ +[0-9]+ +[0-9]+ [a-z]/ { print $4; next } on && NF { on = 0 }' | sort -u | tr '\n' ' ')
like "$parts" "nbd0" "boot 1: /proc/partitions lists the gold's nbd0"
unlike_line "$parts" "(^| )(vd|sd|hd|sr|nvme|mmcblk)" "boot 1: and no local disk (partitions: $parts)"
tgt_sessions=$(TGT_IPC_SOCKET="$T_DIR/state/run/tgtd.sock" tgtadm -C 0 --lld iscsi --op show --mode target 2>/dev/null)
like "$tgt_sessions" "Initiator: $PREFIX:i\\.node1 alias:" "boot 1: goldagent's iSCSI session as node1 in goldcached's tgtd"
IP1=$(e2e_lease "$GCLOG" "$MAC")

# --- boot 2: power on again; everything written in boot 1 is gone
boot 2
like "$BOOT" "goldcache: stage root lower=/dev/nbd0 upper=ram" "boot 2: again gold over NBD with a RAM upper"
unlike_line "$BOOT" "previous boot's write present" "boot 2: /goldcache-tiny.written from boot 1 is gone"
like "$BOOT" "goldcache-tiny: logged boot 1\$" "boot 2: /goldcache-tiny.boots starts over (boot 1, not 2)"
like "$BOOT" "goldcache-tiny: show /goldcache-tiny.boots: boot 1 at " "boot 2: its only line is this boot's"
is "$(e2e_access "$ACCESS" "$IP1" GET "^/boot\\.ipxe\\?mac=$HYP\$" | wc -l)" 2 \
	"access log: two boot scripts for node1 ($IP1), one per power-on"
like "$(grep -c "enrolled from $IP1:" "$GCLOG")" "^2$" "goldagent enrolled at each boot (a diskless machine keeps no token)"
like "$(cat "$GCLOG")" "machine 'node1' .* enrolled from $IP1:[0-9]+ \\(stream mode: a new token for this boot\\)" \
	"the second enrollment replaced the first boot's token"

# the appliance kept nothing of the machine's writes
t_fails "goldctl machine snapshots node1 fails" goldctl --store "$T_DIR/store" machine snapshots node1
like "$T_OUT" "machine 'node1' has no snapshot in this store" "no snapshot of node1 in the store"
stats=$(goldctl --json --store "$T_DIR/store" store stats 2>&1)
is "$(printf '%s' "$stats" | jq -r '"\(.versions) \(.snapshots)"' 2>/dev/null)" "1 0" \
	"the store holds the one gold version and no snapshot at all"
t_run "goldctl exports tiny@1" goldctl --store "$T_DIR/store" image export tiny@1 "$T_DIR/export.img"
t_run "tiny@1 in the store is still the imported image, bit for bit" cmp "$GC_IMAGES/tiny.ext4" "$T_DIR/export.img"

kill -TERM "$E2E_GC_PID"
wait_for 30 sh -c "! kill -0 $E2E_GC_PID"
ok $? "goldcached shuts down on SIGTERM"
wait "$E2E_GC_PID"
is "$?" 0 "goldcached exit status 0"
left=$(ip netns pids "$LAB_NS" | xargs -r ps -o comm= -p | sort | tr '\n' ' ')
is "$left" "" "nothing left running in the lab namespace"
done_testing
