#!/usr/bin/env bash
# Issue 5's OS swap on real firmware: a cache-mode machine (QEMU, iPXE ROM) PXE-boots
# image A through the real goldcached (dnsmasq, HTTP, tgtd) and goldagent fills the
# cache on its own disk; `goldctl machine assign` moves it to a profile of image B
# (A with its marker file changed): the next boot runs B (its marker on the console)
# from the cache's other slot, fetching only the chunks A lacks; assigned back, the
# next boot runs A again with zero bytes from the appliance's iSCSI portal (counted
# by nftables in the lab namespace, and by goldagent's own figure on the console).
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
. "$GC_SRC/tests/lib-story.sh"
. "$GC_SRC/tests/lib-machine.sh"

MAC=52:54:00:77:06:01
machine_setup
t_run "image A: the tiny image with /goldcache-image 'image A'" machine_variant "$T_DIR/a.ext4" "image A"
t_run "image B: the tiny image with /goldcache-image 'image B'" machine_variant "$T_DIR/b.ext4" "image B"
lab_tap st-node1
{
	e2e_appliance_yaml "iqn.2026-11.org.example.swap"
	cat <<YAML
images:
  - {name: ima, kernel: $GC_IMAGES/vmlinuz, initrd: $GC_IMAGES/initramfs.img, cmdline: "$(machine_cmdline)"}
  - {name: imb, kernel: $GC_IMAGES/vmlinuz, initrd: $GC_IMAGES/initramfs.img, cmdline: "$(machine_cmdline)"}
profiles:
  - {name: desk-a, image: ima, mode: cache, volume_size: 32M}
  - {name: desk-b, image: imb, mode: cache, volume_size: 32M}
machines:
  - {mac: $MAC, name: node1, profile: desk-a}
unknown_machines: {policy: refuse}
YAML
} >"$MACHINE_CONF"
is "$(goldctl --store "$T_DIR/store" image import ima "$T_DIR/a.ext4" 2>&1)" ima@1 "goldctl image import ima"
is "$(goldctl --store "$T_DIR/store" image import imb "$T_DIR/b.ext4" 2>&1)" imb@1 "goldctl image import imb"
# the chunks of B that A does not hold (neither zero nor anywhere in A): what the swap fetches
goldctl --store "$T_DIR/store" image manifest ima@1 >"$T_DIR/ma"
goldctl --store "$T_DIR/store" image manifest imb@1 >"$T_DIR/mb"
DIFFER=$(awk 'FNR == 1 { f++ } /^[0-9a-f]+$/ && length($0) == 64 {
	if (f == 1) seen[$0] = 1; else if (!seen[$0]) n++ } END { print n + 0 }' "$T_DIR/ma" "$T_DIR/mb")
like "$DIFFER" '^[1-9]$' "image B differs from image A in $DIFFER of its 1 MiB chunks"
NZ=$(grep -cE '^[0-9a-f]{64}$' "$T_DIR/ma")
NZB=$(grep -cE '^[0-9a-f]{64}$' "$T_DIR/mb")
diag "image A: $NZ non-zero chunks of 1 MiB (zero chunks are written locally, never fetched)"
e2e_goldcached "$MACHINE_CONF" "$MACHINE_GCLOG"
ok 0 "goldcached runs in the lab namespace (dnsmasq, tgtd, HTTP)"
t_run "node1's local disk (GCBOOT for goldagent's state, partition 2 for its cache)" \
	machine_disk node1 "$T_DIR/node1.img"
machine_meter_start
ok $? "nftables counts what the iSCSI portal (tgtd, port 3260) sends, in the lab namespace"

# slots DISK: "ACTIVE A-IMAGE:A-STATE B-IMAGE:B-STATE" of the cache on DISK
slots() {
	story_cache_status "$1" --json | jq -r '[.active_slot,
		(.slots[] | "\(.image // "-"):\(.state)")] | join(" ")' 2>/dev/null
}

# --- boot 1: image A, the cache fills
S=$T_DIR/node1-boot1.serial
machine_pxe node1 "$MAC" "$T_DIR/node1.img" "$S"
ok $? "boot 1: node1 PXE-boots into its cache-mode gold image"
like "$(tr -d '\r' <"$S")" "goldcache-tiny: show /goldcache-image: image A" "boot 1 runs image A (its marker)"
for _ in $(seq 120); do
	[ "$(story_cache_status "$T_DIR/node1.img" --json | jq -r .mode 2>/dev/null)" = offline-ready ] && break
	sleep 1
done
is "$(slots "$T_DIR/node1.img")" "A ima:complete -:empty" "boot 1: the cache's slot A holds image A, complete"
story_stop_qemu
read -r B1 C1 <<<"$(machine_meter_take)"
diag "boot 1: tgtd sent $B1 bytes over $C1 iSCSI connection(s)"
ok "$([ "$B1" -ge $((NZ << 20)) ]; echo $?)" \
	"boot 1: the appliance's iSCSI portal sent at least image A's $NZ non-zero chunks ($B1 bytes)"

# --- swap: node1 moves to image B's profile
t_run "goldctl machine assign node1 desk-b" machine_ctl assign node1 desk-b
S=$T_DIR/node1-boot2.serial
machine_pxe node1 "$MAC" "$T_DIR/node1.img" "$S"
ok $? "boot 2: node1 PXE-boots"
like "$(grep -E 'GET /boot/images/imb/initrd ' "$MACHINE_ACCESS")" " 200 " \
	"boot 2: iPXE fetched image B's initramfs (access log)"
like "$(tr -d '\r' <"$S")" "goldcache-tiny: show /goldcache-image: image B" "boot 2 runs image B (its marker)"
is "$(machine_fetched "$S")" "B $DIFFER $((DIFFER << 20))" \
	"boot 2: goldagent filled slot B fetching only the $DIFFER chunk(s) A lacks ($((DIFFER << 20)) bytes)"
like "$(tr -d '\r' <"$S")" "slot B: [0-9]+ chunks fetched .*, $((NZB - DIFFER)) copied from slot A" \
	"  its other $((NZB - DIFFER)) non-zero chunks copied from slot A by hash"
story_stop_qemu
is "$(slots "$T_DIR/node1.img")" "B ima:complete imb:complete" \
	"after boot 2: slot B (image B) active, slot A still holds image A, complete"
read -r B2 C2 <<<"$(machine_meter_take)"
diag "boot 2: tgtd sent $B2 bytes over $C2 iSCSI connection(s)"
ok "$([ "$B2" -ge $((DIFFER << 20)) ] && [ "$B2" -lt $(((DIFFER + 1) << 20)) ]; echo $?)" \
	"boot 2: the iSCSI portal sent the changed chunks and little else ($B2 bytes)"

# --- swap back: image A is still in slot A
t_run "goldctl machine assign node1 desk-a" machine_ctl assign node1 desk-a
S=$T_DIR/node1-boot3.serial
machine_pxe node1 "$MAC" "$T_DIR/node1.img" "$S"
ok $? "boot 3: node1 PXE-boots"
like "$(tr -d '\r' <"$S")" "goldcache-tiny: show /goldcache-image: image A" "boot 3 runs image A again (its marker)"
like "$(tr -d '\r' <"$S")" "slot A still holds ima@1 \\(complete\\): switching back to it" \
	"boot 3: goldagent switches back to slot A"
is "$(machine_fetched "$S")" "A 0 0" "boot 3: goldagent fetched 0 chunks (0 bytes)"
story_stop_qemu
read -r B3 C3 <<<"$(machine_meter_take)"
diag "boot 3: tgtd sent $B3 bytes over $C3 iSCSI connection(s)"
is "$B3 $C3" "0 0" "boot 3: zero bytes from the appliance's iSCSI portal, no iSCSI connection at all"
is "$(slots "$T_DIR/node1.img")" "A ima:complete imb:complete" "after boot 3: slot A active; slot B keeps image B"
done_testing
