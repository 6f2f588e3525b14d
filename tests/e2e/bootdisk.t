#!/usr/bin/env bash
# A machine with a BLANK disk PXE-boots through the real goldcached (dnsmasq, iPXE,
# HTTP, tgtd) into cache mode; in its initramfs goldagent lays the disk out (MBR,
# FAT "GCBOOT" with SYSLINUX, cache partition), writes this boot's kernel and
# initramfs (checked against GET /boot/images/IMAGE/sums and the running release)
# and the machine's arguments to GCBOOT, and fills the cache on partition 2. With the
# appliance stopped the machine boots from its own disk only (SeaBIOS -> SYSLINUX ->
# GCBOOT's pair) and runs the gold image from the cache, offline. Back online, a
# network boot finds GCBOOT current and rewrites nothing. A machine whose disk holds
# another partition table stops its boot with the reason, the disk untouched.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
. "$GC_SRC/tests/lib-story.sh"
need mdir mcopy
export MTOOLS_SKIP_CHECK=1
# the tiny image's stay before its poweroff on the offline boot (goldcache.local_args)
export STORY_STAY=${STORY_STAY:-5}

story_setup
DISK=$T_DIR/laptop1.img
S1=$T_DIR/bd-boot1.serial
S2=$T_DIR/bd-boot2.serial
S3=$T_DIR/bd-boot3.serial
is "$(goldagent bootdisk probe "$DISK" | cut -d: -f1)" blank "laptop1's disk is blank before its first boot"

# --- 1. network boot on the blank disk
story_begin 1 "laptop1 PXE-boots with a blank disk; goldagent lays it out and fills the cache"
story_qemu laptop1 "$STORY_MAC1" "$DISK" n "$S1"
e2e_timeline "$STORY_BOOT_S" \
	"script@$STORY_ACCESS=GET /boot\\.ipxe\\?mac=52-54-00-77-05-01 " \
	"appliance@$S1=goldcache: stage appliance reachable" \
	"laid-out@$S1=goldcache: bootdisk: /dev/vda laid out: GCBOOT /dev/vda1, cache /dev/vda2" \
	"sums@$STORY_ACCESS=GET /boot/images/$STORY_IMAGE/sums " \
	"bootdisk@$S1=goldcache: stage bootdisk " \
	"root@$S1=goldcache: stage root lower=/dev/nbd0 upper=volume" \
	"image-up@$S1=goldcache-tiny: up"
ok $? "PXE boot: the blank disk laid out, GCBOOT written, the gold image up" ||
	{ story_tail "$S1"; story_fail "laptop1 did not boot with its blank disk"; }
like "$(tr -d '\r' <"$S1")" "goldcache: stage bootdisk /dev/vda laid-out gcboot installed slot a" \
	"stage bootdisk: laid out, this boot's pair installed in GCBOOT's slot a"
for _ in $(seq "$STORY_BOOT_S"); do
	st=$(story_cache_status "$DISK" --json)
	[ "$(jq -r '.mode // empty' <<<"$st" 2>/dev/null)" = offline-ready ] && break
	sleep 1
done
is "$(jq -r .mode <<<"$st" 2>/dev/null)" offline-ready "the cache on /dev/vda2 is complete (offline-ready)" ||
	{ diag "$st"; story_fail "the cache did not fill"; }
story_mark "cache complete"
# guest uptime (s) at a stage of serial log $1
stage_t() { tr -d '\r' <"$1" | sed -n "s/^goldcache: stage $2 .*t=\\([0-9.]*\\)$/\\1/p" | head -n 1; }
diag "guest uptime: appliance reachable $(stage_t "$S1" appliance) s, disk laid out and GCBOOT written (stage bootdisk) $(stage_t "$S1" bootdisk) s, overlay root $(stage_t "$S1" root) s"
story_stop_qemu
story_end

# --- what the disk holds, read on the host
story_begin 2 "the disk goldagent wrote, read from the host"
like "$(goldagent bootdisk probe "$DISK")" '^goldcache: the goldcache layout \(GCBOOT 64 MiB' "probe: the goldcache layout"
G="$DISK@@1M"
gcfile() { mcopy -n -i "$G" "::/$1" - 2>/dev/null; }
gcsums() { for f in syslinux.cfg a/vmlinuz a/initrd.img; do gcfile "$f" | sha256sum; done; }
is "$(gcfile a/vmlinuz | sha256sum | cut -c1-64)" "$(sha256sum <"$GC_IMAGES/vmlinuz" | cut -c1-64)" \
	"GCBOOT a/vmlinuz is the appliance's netboot kernel, byte for byte"
is "$(gcfile a/initrd.img | sha256sum | cut -c1-64)" "$(sha256sum <"$GC_IMAGES/initramfs.img" | cut -c1-64)" \
	"GCBOOT a/initrd.img is the appliance's initramfs, byte for byte"
cfg=$(gcfile syslinux.cfg | tr -d '\r')
printf '%s\n' "$cfg" | sed 's/^/#   syslinux.cfg: /'
like "$cfg" "APPEND .*goldcache.url=$STORY_URL goldcache.machine=laptop1 goldcache.mode=cache goldcache.image=$STORY_IMAGE" \
	"syslinux.cfg carries the machine's goldcache arguments"
like "$cfg" "goldcache.cache=/dev/vda2 .*goldcache.disk=/dev/vda goldcache-tiny.stay=[0-9]+ goldcache-tiny.poweroff=1" \
	"the cache partition, the disk, and goldcache.local_args for the offline entries"
grep -q "BOOTIF=\|goldcache.local_args" <<<"$cfg"
is $? 1 "and not the network boot's BOOTIF nor goldcache.local_args itself"
like "$(mdir -a -i "$G" ::/ 2>&1)" "ldlinux +sys" "SYSLINUX is installed on GCBOOT"
story_end

# --- 3. appliance stopped: the machine boots from its own disk
story_begin 3 "appliance stopped; laptop1 boots from its own disk and runs from the cache"
story_gc_stop
ok $? "goldcached stopped: the appliance is unreachable"
story_qemu laptop1 "$STORY_MAC1" "$DISK" c "$S2"
e2e_timeline 240 \
	"syslinux@$S2=SYSLINUX" \
	"unreachable@$S2=goldcache: stage appliance unreachable" \
	"bootdisk@$S2=goldcache: stage bootdisk /dev/vda present gcboot kept \\(offline\\)" \
	"agent@$S2=goldcache: stage agent pid" \
	"root@$S2=goldcache: stage root lower=/dev/nbd0 upper=volume" \
	"image-up@$S2=goldcache-tiny: up" \
	"wrote@$S2=goldcache-tiny: root writable"
ok $? "disk-only boot: SYSLINUX -> GCBOOT's kernel + initramfs -> goldagent from the cache -> gold image, offline" ||
	{ story_tail "$S2"; story_fail "laptop1 did not boot from its own disk"; }
like "$(tr -d '\r' <"$S2" | grep -a 'Kernel command line')" "BOOT_IMAGE=/a/vmlinuz .*goldcache.machine=laptop1" \
	"the kernel came from GCBOOT's slot a with the machine's arguments"
diag "guest uptime (disk boot): stage init $(stage_t "$S2" init) s, appliance unreachable $(stage_t "$S2" appliance) s, overlay root $(stage_t "$S2" root) s"
story_wait "$S2" 'goldcache-tiny: powering off' 120
story_wait_exit 60 || story_stop_qemu
story_end

# --- 4. back online: a network boot finds GCBOOT current
story_begin 4 "appliance back; a network boot finds GCBOOT current"
story_gc_start
ok 0 "goldcached running again"
before=$(gcsums)
story_qemu laptop1 "$STORY_MAC1" "$DISK" n "$S3"
e2e_timeline "$STORY_BOOT_S" \
	"bootdisk@$S3=goldcache: stage bootdisk " \
	"image-up@$S3=goldcache-tiny: up"
ok $? "laptop1 PXE-boots again" || { story_tail "$S3"; story_fail "laptop1 did not boot again"; }
like "$(tr -d '\r' <"$S3")" "goldcache: stage bootdisk /dev/vda present gcboot current" \
	"stage bootdisk: the layout is present and GCBOOT current"
diag "guest uptime: appliance reachable $(stage_t "$S3" appliance) s, GCBOOT found current (stage bootdisk) $(stage_t "$S3" bootdisk) s"
story_stop_qemu
is "$(gcsums)" "$before" "GCBOOT's syslinux.cfg, kernel and initramfs are unchanged by that boot"
gcfile b/vmlinuz >/dev/null
is $? 1 "and nothing was written to slot b"
story_end

# --- 5. a disk holding another partition table is never touched
story_begin 5 "laptop2's disk holds an MBR partition table: the boot stops, the disk untouched"
D2=$T_DIR/laptop2.img
S4=$T_DIR/bd-laptop2.serial
story_disk laptop2 "$D2"
# one Linux partition (type 0x83) from 1 MiB on, and the boot signature
printf '\x00\xfe\xff\xff\x83\xfe\xff\xff\x00\x08\x00\x00\x00\x00\x01\x00' |
	dd of="$D2" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$D2" bs=1 seek=510 conv=notrunc status=none
before=$(sha256sum <"$D2")
story_qemu laptop2 "$STORY_MAC2" "$D2" n "$S4"
e2e_timeline "$STORY_BOOT_S" \
	"appliance@$S4=goldcache: stage appliance reachable" \
	"failed@$S4=goldcache: stage failed"
ok $? "laptop2's boot stops before goldagent attaches" || story_tail "$S4"
like "$(tr -d '\r' <"$S4")" "goldcache: error: goldcache.disk=/dev/vda holds an MBR partition table \\(types 0x83\\): goldcache does not touch it \\(goldcache.disk_init=force" \
	"the console says what the disk holds and how to lay it out anyway"
story_wait_exit 60 || story_stop_qemu
is "$(sha256sum <"$D2")" "$before" "laptop2's disk is byte for byte unchanged"
story_end
story_summary
done_testing
