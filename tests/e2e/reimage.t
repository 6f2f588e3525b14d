#!/usr/bin/env bash
# Issue 5's reimaging lab on real firmware: lab1, a machine of a `persist: false`
# profile (QEMU, iPXE ROM, through the real goldcached: dnsmasq, HTTP, tgtd), PXE-boots
# its cache-mode image, which writes files on the machine volume (goldagent counts
# them as dirty blocks on the machine's disk); at its next PXE boot the files are gone
# (the image finds no previous write, its boot log starts over) and not one byte came
# from the appliance's iSCSI portal (nftables counts in the lab namespace): the gold
# cache was kept, only the volume was reset. desk1, the same image in a persistent
# profile, keeps its files across the same reboot (so the check can tell); then
# `goldctl machine reset desk1` reimages it at its next PXE boot: a fresh volume,
# again with no byte from the iSCSI portal, and the order acknowledged. Last, with
# the appliance stopped, lab1 boots from its own disk: the reset holds offline too
# (goldagent remembered persist: false in the cache).
# gc-test: slow
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
. "$GC_SRC/tests/lib-story.sh"
. "$GC_SRC/tests/lib-machine.sh"

MAC_LAB=52:54:00:77:07:01
MAC_DESK=52:54:00:77:07:02
# the image stays up this long before it flushes and powers off (room for the fill)
MACHINE_STAY=${MACHINE_STAY:-12}
machine_setup
t_run "the lab image: the tiny image with /goldcache-image 'lab image'" machine_variant "$T_DIR/lab.ext4" "lab image"
lab_tap st-lab1
lab_tap st-desk1
{
	e2e_appliance_yaml "iqn.2026-11.org.example.reimage"
	cat <<YAML
images:
  - {name: lab, kernel: $GC_IMAGES/vmlinuz, initrd: $GC_IMAGES/initramfs.img, cmdline: "$(machine_cmdline)"}
profiles:
  - {name: classroom, image: lab, mode: cache, volume_size: 32M, persist: false}
  - {name: desk, image: lab, mode: cache, volume_size: 32M}
machines:
  - {mac: $MAC_LAB, name: lab1, profile: classroom}
  - {mac: $MAC_DESK, name: desk1, profile: desk}
unknown_machines: {policy: refuse}
YAML
} >"$MACHINE_CONF"
is "$(goldctl --store "$T_DIR/store" image import lab "$T_DIR/lab.ext4" 2>&1)" lab@1 "goldctl image import lab"
e2e_goldcached "$MACHINE_CONF" "$MACHINE_GCLOG"
ok 0 "goldcached runs in the lab namespace (dnsmasq, tgtd, HTTP)"
t_run "lab1's local disk" machine_disk lab1 "$T_DIR/lab1.img"
t_run "desk1's local disk" machine_disk desk1 "$T_DIR/desk1.img"
machine_meter_start
ok $? "nftables counts what the iSCSI portal (tgtd, port 3260) sends, in the lab namespace"

# first NAME MAC: the first PXE boot; the image writes its files, the cache fills,
# the image flushes and powers itself off (MACHINE_STAY s after it came up)
first() {
	local S=$T_DIR/$1-boot1.serial st
	machine_pxe "$1" "$2" "$T_DIR/$1.img" "$S"
	ok $? "$1 boot 1: PXE boot into the cache-mode image"
	like "$(tr -d '\r' <"$S")" "goldcache-tiny: root writable" "$1 boot 1: the image wrote /goldcache-tiny.written"
	story_wait_exit $((MACHINE_STAY + 60))
	ok $? "$1 boot 1: the image flushed and powered off"
	st=$(story_cache_status "$T_DIR/$1.img" --json)
	is "$(jq -r .mode <<<"$st")" offline-ready "$1 boot 1: the gold cache is complete"
	like "$(jq -r .dirty_blocks <<<"$st")" '^[1-9][0-9]*$' \
		"$1 boot 1: the writes are on the machine volume ($(jq -r .dirty_blocks <<<"$st") dirty blocks)"
	read -r B C <<<"$(machine_meter_take)"
	diag "$1 boot 1: tgtd sent $B bytes over $C iSCSI connection(s)"
}
# again NAME MAC N [clean]: PXE boot N; stopped (power cut) once the image showed
# its state, or with clean: the image writes, flushes and powers off
again() {
	local S=$T_DIR/$1-boot$3.serial
	machine_pxe "$1" "$2" "$T_DIR/$1.img" "$S"
	ok $? "$1 boot $3: PXE boot into the cache-mode image"
	if [ "${4:-}" = clean ]; then
		story_wait_exit $((MACHINE_STAY + 60))
		ok $? "$1 boot $3: the image flushed and powered off"
	else
		story_stop_qemu
	fi
	read -r B C <<<"$(machine_meter_take)"
	diag "$1 boot $3: tgtd sent $B bytes over $C iSCSI connection(s)"
	SERIAL=$(tr -d '\r' <"$S")
}

# --- lab1 (persist: false)
first lab1 "$MAC_LAB"
is "$(story_cache_status "$T_DIR/lab1.img" --json | jq -r .persist)" false \
	"lab1: goldagent recorded persist: false in the cache (an offline boot resets too)"
again lab1 "$MAC_LAB" 2 clean
like "$SERIAL" "machine volume reset \\([0-9]+ blocks written last boot zeroed\\)" \
	"lab1 boot 2: goldagent reset the machine volume"
machine_unlike "$SERIAL" "previous boot's write present" "lab1 boot 2: the file the last boot wrote is gone"
like "$SERIAL" "goldcache-tiny: logged boot 1" "lab1 boot 2: the image's boot log starts over"
like "$SERIAL" "goldcache-tiny: show /goldcache-image: lab image" "lab1 boot 2: the gold image is there"
is "$B $C" "0 0" "lab1 boot 2: zero bytes from the appliance's iSCSI portal, no iSCSI connection"
machine_unlike "$SERIAL" "chunks fetched|background hydration" \
	"lab1 boot 2: goldagent hydrated nothing (its log on the console)"

# --- desk1 (persistent): the same reboot keeps the files
first desk1 "$MAC_DESK"
again desk1 "$MAC_DESK" 2
like "$SERIAL" "goldcache-tiny: previous boot's write present" "desk1 boot 2: the file the last boot wrote is there"
like "$SERIAL" "goldcache-tiny: logged boot 2" "desk1 boot 2: the image's boot log goes on"
machine_unlike "$SERIAL" "machine volume reset" "desk1 boot 2: no volume reset"
is "$B $C" "0 0" "desk1 boot 2: zero bytes from the iSCSI portal either"

# --- desk1 reset: goldctl machine reset, then its next boot has a fresh volume
t_run "goldctl machine reset desk1" machine_ctl reset desk1
like "$(machine_show desk1 2>/dev/null | jq -c .hydrate)" '"kind":"reset"' \
	"goldctl machine show desk1: the reset order waits for its next boot"
again desk1 "$MAC_DESK" 3
like "$SERIAL" "restore: order [0-9]+ \\(reset\\): the machine volume becomes a fresh, empty one" \
	"desk1 boot 3: goldagent carries out the reset before it serves the volume"
like "$SERIAL" "restore: order [0-9]+ acknowledged" "desk1 boot 3: and acknowledges it"
machine_unlike "$SERIAL" "previous boot's write present" "desk1 boot 3: the files of its earlier boots are gone"
like "$SERIAL" "goldcache-tiny: logged boot 1" "desk1 boot 3: the image's boot log starts over"
like "$SERIAL" "goldcache-tiny: show /goldcache-image: lab image" "desk1 boot 3: the gold image is there"
is "$B $C" "0 0" "desk1 boot 3: zero bytes from the appliance's iSCSI portal, no iSCSI connection"
is "$(machine_show desk1 2>/dev/null | jq -c .hydrate)" null "the order is cleared at the appliance"

# --- lab1 offline: appliance stopped, boot from its own disk (GCBOOT's SYSLINUX)
like "$(story_cache_status "$T_DIR/lab1.img" --json | jq -r .dirty_blocks)" '^[1-9][0-9]*$' \
	"lab1: boot 2's writes are on the machine volume"
kill -TERM "$E2E_GC_PID"
wait_for 30 sh -c "! kill -0 $E2E_GC_PID 2>/dev/null"
ok $? "goldcached stopped (dnsmasq and tgtd with it): the appliance is unreachable"
S=$T_DIR/lab1-boot3.serial
story_qemu lab1 "$MAC_LAB" "$T_DIR/lab1.img" c "$S"
story_wait "$S" 'goldcache-tiny: show /run/goldcache/agent.log' "$MACHINE_BOOT_S"
ok $? "lab1 boot 3: boots from its own disk, offline" || story_tail "$S" 30
story_stop_qemu
SERIAL=$(tr -d '\r' <"$S")
like "$SERIAL" "goldcache: stage appliance unreachable" "lab1 boot 3: the appliance is unreachable"
like "$SERIAL" "offline start: the profile said persist: false" "lab1 boot 3: goldagent remembers persist: false"
like "$SERIAL" "machine volume reset \\([0-9]+ blocks written last boot zeroed\\)" \
	"lab1 boot 3: and resets the machine volume offline too"
machine_unlike "$SERIAL" "previous boot's write present" "lab1 boot 3: the file boot 2 wrote is gone"
like "$SERIAL" "goldcache-tiny: logged boot 1" "lab1 boot 3: the image's boot log starts over"
done_testing
