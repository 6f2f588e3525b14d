#!/usr/bin/env bash
# OS swap in the agent: pc1 runs image deb (slot A), is assigned a profile of
# another image (deb2: deb with two chunks changed) and its next attach fills
# slot B with only the two chunks the cache lacks (the rest copied from slot A
# by hash), keeping slot A's deb whole; assigned back, the next attach switches
# to slot A with zero chunks fetched and no iSCSI login at all, and serves deb
# byte-identical again. A third image then takes the slot not in use.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
. "$GC_SRC/tests/lib-machine.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm nbdcopy cmp

D=$T_DIR
CS=1048576
mkdir -p "$D/a"
head -c $((8 << 20)) /dev/urandom >"$D/deb.img"
cp "$D/deb.img" "$D/deb2.img"
for c in 2 5; do
	head -c 4096 /dev/urandom | dd of="$D/deb2.img" bs=4096 seek=$((c * CS / 4096 + 7)) conv=notrunc 2>/dev/null
done
head -c $((6 << 20)) /dev/urandom >"$D/deb3.img"
attach_lab "$D" "$D/deb.img" || bail "lab"
goldctl --store "$D/store" image import deb2 "$D/deb2.img" >/dev/null || bail "import deb2"
goldctl --store "$D/store" image import deb3 "$D/deb3.img" >/dev/null || bail "import deb3"
for i in deb deb2 deb3; do
	goldctl --store "$D/store" image export "$i@1" "$D/$i.export" >/dev/null || bail "export $i"
done
# two more images and their profiles (the kernel and initrd are not used here)
sed -i "s|^images:\$|&\n  - {name: deb2, version: current, kernel: $D/vmlinuz, initrd: $D/initrd}\n  - {name: deb3, version: current, kernel: $D/vmlinuz, initrd: $D/initrd}|;
	s|^profiles:\$|&\n  - {name: desk2, image: deb2, mode: cache, volume_size: 64M}\n  - {name: desk3, image: deb3, mode: cache, volume_size: 64M}|" "$D/goldcache.yaml"
grep -q "name: desk3, image: deb3" "$D/goldcache.yaml" || bail "config edit"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
goldctl machine token pc1 --url "$URL" --token-file "$ADMIN" >"$D/a/pc1.token" || bail "token"
ctl() { goldctl machine "$@" --url "$URL" --token-file "$ADMIN"; }

# follow IMAGE: waits until pc1's LUN 1 serves IMAGE's export and admits logins
follow() {
	machine_wait_lun "$D/state/run/tgtd.sock" "$PREFIX" pc1 "$D/state/exports/$1@1.img" 30 && return 0
	diag "LUN 1 of pc1: $(tgt_machine_ready "$D/state/run/tgtd.sock" "$PREFIX" pc1)"
	return 1
}
# assign PROFILE IMAGE: pc1 moves to PROFILE; its LUN 1 follows to IMAGE's export
assign() {
	t_run "goldctl machine assign pc1 $1" ctl assign pc1 "$1"
	follow "$2"
}
# boot N: one attach of pc1 (hydrates what the slot lacks before serving), the
# gold export read back whole, then a clean stop
boot() {
	goldagent attach --appliance "$URL" --machine pc1 --mode cache --cache "$D/a/c.img" \
		--run-dir "$D/run$1" --sync-interval 0 >"$D/attach$1.log" 2>&1 &
	AP=$!
	track "$AP"
	wait_for 60 sh -c "test -S '$D/run$1/gold.sock' || ! kill -0 $AP" && test -S "$D/run$1/gold.sock" || {
		sed 's/^/#   attach: /' "$D/attach$1.log"
		return 1
	}
	nbdcopy "nbd+unix:///gold?socket=$D/run$1/gold.sock" "$D/gold$1.read"
	kill -TERM "$AP"
	wait "$AP"
}
fetched() { sed -n 's/^slot \([AB]\): \([0-9]*\) chunks fetched (\([0-9]*\) bytes).*/\1 \2 \3/p' "$D/attach$1.log"; }
slot() { goldagent status --json --cache "$D/a/c.img" | jq -r "$1"; }

# --- 1: deb into slot A
follow deb
ok $? "pc1's target admits its logins, LUN 1 serves deb"
boot 1
ok $? "attach 1 (deb) serves the gold image"
t_run "attach 1 serves deb byte-identical" cmp "$D/gold1.read" "$D/deb.export"
is "$(slot '.active_slot + " " + .slots[0].image + " " + .slots[0].state')" "A deb complete" \
	"slot A holds deb, complete, active"

# --- 2: swap to deb2: slot B, only the changed chunks fetched
assign desk2 deb2
ok $? "pc1's LUN 1 follows to deb2"
boot 2
ok $? "attach 2 (deb2) serves the gold image"
diag "$(grep -E 'slot [AB]' "$D/attach2.log" | tail -n 3)"
is "$(fetched 2)" "B 2 $((2 * CS))" "attach 2 fills slot B fetching only deb2's 2 changed chunks"
like "$(cat "$D/attach2.log")" " 6 copied from slot A" "  the 6 others are copied from slot A by hash"
t_run "attach 2 serves deb2 byte-identical" cmp "$D/gold2.read" "$D/deb2.export"
is "$(slot '[.active_slot, .slots[0].image, .slots[0].state, .slots[1].image, .slots[1].state] | join(" ")')" \
	"B deb complete deb2 complete" "slot B active with deb2; slot A still holds deb, complete"

# --- 3: swap back to deb: slot A again, nothing fetched, no login
assign desk deb
ok $? "pc1's LUN 1 follows back to deb"
boot 3
ok $? "attach 3 (deb again) serves the gold image"
is "$(fetched 3)" "A 0 0" "attach 3 switches to slot A with zero chunks (0 bytes) fetched"
like "$(cat "$D/attach3.log")" "slot A still holds deb@1 \\(complete\\)" "  it says slot A still holds deb@1"
ok "$(grep -qi "log in to\|logged in\|reconnecting" "$D/attach3.log"; [ $? -ne 0 ]; echo $?)" \
	"  and makes no iSCSI login for gold chunks"
t_run "attach 3 serves deb byte-identical" cmp "$D/gold3.read" "$D/deb.export"
is "$(slot '[.active_slot, .slots[1].image] | join(" ")')" "A deb2" "slot A active; slot B keeps deb2"

# --- 4: a third image takes the slot not in use (B), never the active one
assign desk3 deb3
ok $? "pc1's LUN 1 follows to deb3"
boot 4
ok $? "attach 4 (deb3) serves the gold image"
is "$(fetched 4)" "B 6 $((6 * CS))" "attach 4 fetches deb3 whole into slot B"
t_run "attach 4 serves deb3 byte-identical" cmp "$D/gold4.read" "$D/deb3.export"
is "$(slot '[.active_slot, .slots[0].image, .slots[1].image] | join(" ")')" "B deb deb3" \
	"slot B active with deb3; slot A keeps deb (the image the machine ran last)"
t_run "cache check" goldagent cache check "$D/a/c.img"
done_testing
