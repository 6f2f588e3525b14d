#!/usr/bin/env bash
# Gold update in QEMU, cache mode (issue 5): laptop1 PXE-boots tiny@1 (the story's
# step 1: enrolled, slot A of its cache filled), then boots from its own disk with
# the appliance up and writes a file on its overlay root (the machine volume).
# Version 2 of the image (a file added, one replaced, written with debugfs) is
# imported with --promote; at the next boot goldagent attach fetches only the
# chunks of v2 that v1 does not have into slot B, the changed ones as zstd deltas
# against slot A over HTTP and the rest over iSCSI (its own counts, shown by the
# guest from goldagent's log, and tgtd's bytes counted by nftables in the lab
# say so), the guest sees v2's files and the user's file is still there. Rolling back
# (promote tiny@1) switches to slot A at the next boot with no chunk fetched; the
# user's file is still there.
# gc-test: slow
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
. "$GC_SRC/tests/lib-story.sh"
. "$GC_SRC/tests/lib-update.sh"
need nft debugfs cmp awk

# each own-disk boot stays up a little (the cache fills, goldagent syncs), then
# powers off after a sync
STORY_STAY=${STORY_STAY:-10}
story_setup
# the image shows what this test checks on its console: the image's command line
# gets the arguments (goldagent copies it to the disk's offline entries at the
# PXE boot), through a config reload
show="goldcache-tiny.show=/etc/goldcache-release goldcache-tiny.show=/etc/issue"
show="$show goldcache-tiny.show=/goldcache-tiny.boots goldcache-tiny.show=/run/goldcache/agent.log"
sed -i "s|^\(    cmdline: \"[^\"]*\)\"|\1 $show\"|" "$T_DIR/goldcache.yaml"
t_run "the image's cmdline shows the update's evidence" grep -q "goldcache-tiny.show=/run/goldcache/agent.log" \
	"$T_DIR/goldcache.yaml"
kill -HUP "$STORY_GC_PID"
wait_for 30 grep -q "config changed" "$STORY_GCLOG"
ok $? "goldcached reloaded its config (SIGHUP)"
cs=$(goldctl --store "$T_DIR/store" --json image versions tiny | jq -r '.[0].chunk_size')
update_counter_new || bail "cannot add the nftables counter in $LAB_NS"

# update_boot N: laptop1 boots from its own disk (appliance reachable), runs the
# tiny image and powers itself off; its console is in $T_DIR/boot-N.serial
update_boot() {
	local S=$T_DIR/boot-$1.serial
	story_qemu laptop1 "$STORY_MAC1" "$T_DIR/laptop1.img" c "$S"
	e2e_timeline 300 \
		"syslinux@$S=SYSLINUX" \
		"appliance@$S=goldcache: stage appliance reachable" \
		"agent@$S=goldcache: stage agent pid" \
		"root@$S=goldcache: stage root lower=/dev/nbd0 upper=volume" \
		"image-up@$S=goldcache-tiny: up" \
		"logged@$S=goldcache-tiny: logged boot" \
		"poweroff@$S=goldcache-tiny: powering off"
	ok $? "boot $1: own disk -> initramfs -> goldagent attach (online) -> overlay root -> tiny image" ||
		{ story_tail "$S" 40; story_stop_qemu; return 1; }
	story_wait_exit 60 || story_stop_qemu
	UPDATE_SERIAL=$(tr -d '\r' <"$S")
}

# --- boot 1: PXE (a machine enrolls only after it booted from the appliance),
# the story's step 1: tiny@1 streamed, slot A filled; then a power cut
story_step1
story_stop_qemu
st=$(story_cache_status "$T_DIR/laptop1.img" --json)
is "$(jq -r '"\(.active_slot) " + (.slots[0] | "\(.image)@\(.version) \(.state)")' <<<"$st")" \
	"A tiny@1 complete" "goldagent status: slot A active, tiny@1 complete" || story_fail "slot A is not complete"

# --- boot 2: from its own disk, online, still v1: the user's file, clean poweroff
story_begin 2 "laptop1 boots tiny@1 from its own disk and writes a file"
update_boot 2 || story_fail "laptop1 did not boot from its own disk"
boots=$(sed -n 's/^goldcache-tiny: logged boot \([0-9]*\)$/\1/p' <<<"$UPDATE_SERIAL" | tail -n 1)
like "$boots" '^[0-9]+$' "the user's file: /goldcache-tiny.boots has boot $boots"
userline=$(grep -o "boot $boots at [0-9.]*" <<<"$UPDATE_SERIAL" | tail -n 1)
like "$userline" "^boot $boots at [0-9.]+\$" "  its line: '$userline'"
like "$UPDATE_SERIAL" "show /etc/goldcache-release: no such file" "tiny@1 has no /etc/goldcache-release"
story_end

# --- the update: v2 imported and promoted
story_begin 3 "tiny@2 imported with --promote"
t_run "tiny@2 made with debugfs (a file added, one replaced, 384 KiB installed)" \
	update_tiny_v2 "$GC_IMAGES/tiny.ext4" "$T_DIR/tiny-v2.ext4"
is "$(goldctl --store "$T_DIR/store" image import --promote tiny "$T_DIR/tiny-v2.ext4" 2>&1)" tiny@2 \
	"goldctl image import --promote tiny: tiny@2 is current"
goldctl --store "$T_DIR/store" image manifest tiny@1 >"$T_DIR/m1"
goldctl --store "$T_DIR/store" image manifest tiny@2 >"$T_DIR/m2"
new=$(update_new_chunks "$T_DIR/m1" "$T_DIR/m2")
total=$(grep -cE '^[0-9a-f]{64}$' "$T_DIR/m2")
like "$new" '^[1-9][0-9]*$' "v2 has $new chunk(s) of $cs bytes that v1 does not have ($total non-zero chunks in all)"
ok "$((new < total ? 0 : 1))" "  fewer than all of them (the update is a delta)"
update_lun_wait laptop1 tiny@2.img 60
ok $? "goldcached reconciled: laptop1's LUN 1 serves tiny@2" || story_fail "tgtd still serves tiny@1"
story_end

# --- boot 2: only the delta fetched into slot B; v2 seen; the user's file kept
story_begin 4 "laptop1's next boot: the delta into slot B, v2 seen, the user's file kept"
update_counter_reset
update_boot 3 || story_fail "laptop1 did not boot after the update"
sent=$(update_counter_bytes)
dline=$(grep -o 'slot B: [0-9]* chunks as deltas ([0-9]* bytes on the wire for [0-9]* bytes of chunks), [0-9]* left for iSCSI, [0-9]* rejected' <<<"$UPDATE_SERIAL" | tail -n 1)
line=$(grep -o 'slot B: [0-9]* chunks fetched ([0-9]* bytes), [0-9]* copied from slot A' <<<"$UPDATE_SERIAL" | tail -n 1)
diag "goldagent (shown by the guest): $dline"
diag "goldagent (shown by the guest): $line"
read -r dn dwire < <(sed -n 's/^slot B: \([0-9]*\) chunks as deltas (\([0-9]*\) bytes on the wire.*/\1 \2/p' <<<"$dline")
inew=$(sed -n 's/^slot B: \([0-9]*\) chunks fetched.*/\1/p' <<<"$line")
like "$dline" "^slot B: [1-9][0-9]* chunks as deltas .* 0 rejected" \
	"goldagent got ${dn:-no} changed chunk(s) as deltas over HTTP, none rejected"
ok "$((${dn:-0} + ${inew:-0} == new ? 0 : 1))" \
	"  deltas (${dn:-?}) + chunks over iSCSI (${inew:-?}) = the $new new chunk(s)"
ok "$((${dwire:-0} > 0 && ${dwire:-0} < ${dn:-0} * cs / 2 ? 0 : 1))" \
	"  the deltas took ${dwire:-?} bytes for ${dn:-?} chunk(s) of $cs bytes (under half)"
like "$line" "^slot B: ${inew:-x} chunks fetched \($((${inew:-0} * cs)) bytes\), [1-9][0-9]* copied from slot A" \
	"  only the rest (${inew:-?}) fetched over iSCSI, the others copied from slot A"
diag "tgtd sent $sent bytes during boot 3 (nftables in the lab)"
ok "$((sent >= ${inew:-0} * cs && sent < ${inew:-0} * cs + cs / 2 ? 0 : 1))" \
	"  tgtd sent $sent bytes: the chunks fetched over iSCSI plus overhead, less than one more chunk"
like "$UPDATE_SERIAL" "show /etc/goldcache-release: tiny v2" "the guest sees v2's new file"
like "$UPDATE_SERIAL" "show /etc/issue: goldcache tiny gold image, version 2" "  and v2's replaced /etc/issue"
like "$UPDATE_SERIAL" "(^|: )$userline\$" "the user's file survived the update: '$userline' is in it"
like "$UPDATE_SERIAL" "goldcache-tiny: logged boot $((boots + 1))" "  and it goes on: boot $((boots + 1))"
st=$(story_cache_status "$T_DIR/laptop1.img" --json)
is "$(jq -r '"\(.active_slot) " + (.slots | map("\(.image)@\(.version) \(.state)") | join(", "))' <<<"$st")" \
	"B tiny@1 complete, tiny@2 complete" "goldagent status: slot B (tiny@2) active, slot A keeps tiny@1" ||
	diag "$st"
story_end

# --- rollback: promote v1; the next boot switches back to slot A, nothing fetched
story_begin 5 "rollback: tiny@1 promoted; the next boot uses slot A with no fetch"
t_run "goldctl image promote tiny@1" goldctl --store "$T_DIR/store" image promote tiny@1
update_lun_wait laptop1 tiny@1.img 60
ok $? "goldcached reconciled: laptop1's LUN 1 serves tiny@1 again" || story_fail "tgtd still serves tiny@2"
update_counter_reset
update_boot 4 || story_fail "laptop1 did not boot after the rollback"
sent=$(update_counter_bytes)
line=$(grep -o 'slot A: [0-9]* chunks fetched ([0-9]* bytes).*already present' <<<"$UPDATE_SERIAL" | tail -n 1)
diag "goldagent (shown by the guest): $line"
like "$line" "^slot A: 0 chunks fetched \(0 bytes\), 0 copied from slot B, [0-9]+ zero, [1-9][0-9]* already present" \
	"goldagent switched back to slot A: nothing fetched, nothing copied"
diag "tgtd sent $sent bytes during boot 4"
ok "$((sent < cs / 4 ? 0 : 1))" "  tgtd sent $sent bytes: less than a quarter of one chunk (no image data)"
like "$UPDATE_SERIAL" "show /etc/goldcache-release: no such file" "the guest sees v1 again (no /etc/goldcache-release)"
like "$UPDATE_SERIAL" "show /etc/issue: goldcache tiny gold image\$" "  and v1's /etc/issue"
like "$UPDATE_SERIAL" "(^|: )$userline\$" "the user's file survived the rollback: '$userline' is in it"
like "$UPDATE_SERIAL" "goldcache-tiny: logged boot $((boots + 2))" "  and it goes on: boot $((boots + 2))"
st=$(story_cache_status "$T_DIR/laptop1.img" --json)
is "$(jq -r '.active_slot' <<<"$st")" A "goldagent status: slot A active again" || diag "$st"
story_end
story_summary
done_testing
