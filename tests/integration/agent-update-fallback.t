#!/usr/bin/env bash
# A gold update that cannot complete does not stop the machine from booting:
# pc1 runs deb@1 (slot A); deb@2 is promoted, but LUN 1 serves bytes that do not
# match deb@2's manifest (as right after a promote, before goldcached's reconcile,
# or from a damaged export). The next attach rejects those chunks, keeps the ones
# it verified in slot B, and serves deb@1 from slot A (a warning says why) with
# the machine volume untouched. Once LUN 1 serves deb@2 correctly, the attach
# after that fetches only what slot B still lacks and serves deb@2. The attaches
# run with --no-delta: this is about the iSCSI path (deltas would bring the two
# changed chunks over HTTP; tests/integration/agent-delta.t covers them).
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
. "$GC_SRC/tests/lib-machine.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm nbdcopy qemu-io cmp

D=$T_DIR
CS=1048576
mkdir -p "$D/a"
head -c $((8 << 20)) /dev/urandom >"$D/v1.img"
cp "$D/v1.img" "$D/v2.img"
for c in 2 5; do
	head -c 4096 /dev/urandom | dd of="$D/v2.img" bs=4096 seek=$((c * CS / 4096 + 7)) conv=notrunc 2>/dev/null
done
attach_lab "$D" "$D/v1.img" || bail "lab"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
goldctl machine token pc1 --url "$URL" --token-file "$ADMIN" >"$D/a/pc1.token" || bail "token"
goldctl --store "$D/store" image export deb@1 "$D/v1.export" >/dev/null || bail "export 1"

# boot N: one attach of pc1; the gold export read back whole; the volume written
# (boot 1) or read back (later); then a clean stop
boot() {
	goldagent attach --appliance "$URL" --machine pc1 --mode cache --cache "$D/a/c.img" --no-delta \
		--run-dir "$D/run$1" --sync-interval 0 >"$D/attach$1.log" 2>&1 &
	AP=$!
	track "$AP"
	wait_for 60 sh -c "test -S '$D/run$1/volume.sock' || ! kill -0 $AP" && test -S "$D/run$1/volume.sock" || {
		sed 's/^/#   attach: /' "$D/attach$1.log"
		return 1
	}
	nbdcopy "nbd+unix:///gold?socket=$D/run$1/gold.sock" "$D/gold$1.read"
	if [ "$1" = 1 ]; then
		qemu-io -f raw -c 'write -P 0x5a 0 64K' "nbd+unix:///volume?socket=$D/run$1/volume.sock" >/dev/null
	fi
	nbdcopy "nbd+unix:///volume?socket=$D/run$1/volume.sock" "$D/vol$1.read"
	kill -TERM "$AP"
	wait "$AP"
}
fetched() { sed -n 's/^slot \([AB]\): \([0-9]*\) chunks fetched (\([0-9]*\) bytes).*/\1 \2 \3/p' "$D/attach$1.log"; }
slot() { goldagent status --json --cache "$D/a/c.img" | jq -r "$1"; }

# --- 1: deb@1 in slot A, the user's data on the volume
machine_wait_lun "$D/state/run/tgtd.sock" "$PREFIX" pc1 "$D/state/exports/deb@1.img" 30
ok $? "LUN 1 serves deb@1"
boot 1
ok $? "attach 1 serves deb@1 and the volume"
t_run "  gold is deb@1" cmp "$D/gold1.read" "$D/v1.export"

# --- 2: deb@2 promoted, but LUN 1's bytes do not match its manifest
is "$(goldctl --store "$D/store" image import --promote deb "$D/v2.img" 2>&1)" deb@2 "deb@2 imported and current"
goldctl --store "$D/store" image export deb@2 "$D/v2.export" >/dev/null || bail "export 2"
machine_wait_lun "$D/state/run/tgtd.sock" "$PREFIX" pc1 "$D/state/exports/deb@2.img" 30
ok $? "LUN 1 serves deb@2's export file"
# chunk 5 (one of the two new ones) is made wrong in the file tgtd serves
head -c 4096 /dev/urandom | dd of="$D/state/exports/deb@2.img" bs=4096 seek=$((5 * CS / 4096 + 7)) \
	conv=notrunc 2>/dev/null
boot 2
ok $? "attach 2 still serves the machine (gold and volume)"
like "$(cat "$D/attach2.log")" "gold update to deb@2 incomplete .*: serving deb@1 from slot A this time" \
	"  it says the update is incomplete and it serves deb@1"
like "$(cat "$D/attach2.log")" "slot B: 1 chunks fetched .* 1 rejected" "  the wrong chunk was rejected, the other new one kept"
t_run "  gold is deb@1, byte-identical" cmp "$D/gold2.read" "$D/v1.export"
t_run "  the volume is untouched" cmp "$D/vol2.read" "$D/vol1.read"
is "$(slot '[.active_slot, .slots[0].state, .slots[1].image, .slots[1].version, .slots[1].state] | join(" ")')" \
	"A complete deb 2 filling" "slot A stays active; slot B holds part of deb@2"

# --- 3: LUN 1 right again: only the missing chunk is fetched, deb@2 served
cp "$D/v2.export" "$D/state/exports/deb@2.img"
boot 3
ok $? "attach 3 serves the machine"
is "$(fetched 3)" "B 1 $CS" "attach 3 fetches only the chunk slot B still lacked"
t_run "  gold is deb@2, byte-identical" cmp "$D/gold3.read" "$D/v2.export"
t_run "  the volume is untouched" cmp "$D/vol3.read" "$D/vol1.read"
is "$(slot '[.active_slot, .slots[1].state] | join(" ")')" "B complete" "slot B complete and active"
t_run "cache check" goldagent cache check "$D/a/c.img"
done_testing
