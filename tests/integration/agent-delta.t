#!/usr/bin/env bash
# Gold update by deltas: v2 differs from v1 by scattered 4 KiB blocks in four
# 1 MiB chunks. At the attach after the promote, goldagent fetches those four
# chunks as zstd deltas against slot A's chunks over HTTP (a few KiB on the
# wire for 4 MiB of chunks) and none over iSCSI; slot B is byte-identical to
# `goldctl image export deb@2` and the machine volume is untouched. A damaged
# delta in goldcached's cache is detected there and made again; a delta that
# does not verify on the machine (its slot A chunk damaged) is rejected and
# that chunk comes over iSCSI, still correct; an agent killed in the middle
# of the delta pass completes at the next attach; --no-delta fetches all over
# iSCSI; an appliance asked for what the machine is not assigned says 403; with
# no delta to give (404: the machine's version removed from the store, as an
# appliance without the route answers) the changed chunks come over iSCSI.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
. "$GC_SRC/tests/lib-machine.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm nbdcopy qemu-io cmp dd

D=$T_DIR
CS=1048576
CHANGED="1 3 4 6"
ATTACH_MACHINES="pc1 pc2 pc3 pc4"
mkdir -p "$D/pc1" "$D/pc2" "$D/pc3" "$D/pc4"
head -c $((8 << 20)) /dev/urandom >"$D/v1.img"
cp "$D/v1.img" "$D/v2.img"
for c in $CHANGED; do
	for b in 3 200; do
		head -c 4096 /dev/urandom | dd of="$D/v2.img" bs=4096 seek=$((c * CS / 4096 + b)) conv=notrunc 2>/dev/null
	done
done
attach_lab "$D" "$D/v1.img" || bail "lab"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
for m in pc1 pc2 pc3 pc4; do
	goldctl machine token $m --url "$URL" --token-file "$ADMIN" >"$D/$m/$m.token" || bail "token $m"
done
goldctl --store "$D/store" image export deb@1 "$D/v1.export" >/dev/null || bail "export 1"

# hydrate M [ARGS]: goldagent hydrate --appliance for machine M into $D/M/c.img
hydrate() {
	local m=$1
	shift
	goldagent hydrate --appliance "$URL" --machine "$m" --cache "$D/$m/c.img" "$@"
}
# gold M FILE: the active slot of M's cache read back through an NBD export
gold() {
	goldagent serve --cache "$D/$1/c.img" --gold-socket "$D/$1/g.sock" >"$D/$1/serve.log" 2>&1 &
	local p=$!
	track "$p"
	wait_for 20 test -S "$D/$1/g.sock" || return 1
	nbdcopy "nbd+unix:///gold?socket=$D/$1/g.sock" "$2"
	kill -TERM "$p"
	wait "$p"
}
deltas() { sed -n 's/^slot B: \([0-9]*\) chunks as deltas (\([0-9]*\) bytes on the wire.* \([0-9]*\) rejected.*/\1 \2 \3/p' "$1"; }
iscsi() { sed -n 's/^slot B: \([0-9]*\) chunks fetched (\([0-9]*\) bytes).*/\1 \2/p' "$1"; }

# --- every machine runs deb@1 (slot A) first
machine_wait_lun "$D/state/run/tgtd.sock" "$PREFIX" pc4 "$D/state/exports/deb@1.img" 30
ok $? "LUN 1 serves deb@1"
for m in pc1 pc2 pc3 pc4; do
	hydrate $m >"$D/$m/h1.log" 2>&1 || bail "hydrate $m with deb@1: $(tail -3 "$D/$m/h1.log")"
done
ok 0 "four machines hydrated deb@1 over iSCSI"
gold pc1 "$D/pc1/vol.before" # (the gold slot; the volume below)
goldagent serve --cache "$D/pc1/c.img" --volume-socket "$D/pc1/v.sock" >"$D/pc1/v.log" 2>&1 &
VP=$!
track "$VP"
wait_for 20 test -S "$D/pc1/v.sock" || bail "serve volume"
qemu-io -f raw -c 'write -P 0x5a 0 64K' "nbd+unix:///volume?socket=$D/pc1/v.sock" >/dev/null
nbdcopy "nbd+unix:///volume?socket=$D/pc1/v.sock" "$D/pc1/vol.before"
kill -TERM "$VP"
wait "$VP"

# --- deb@2 promoted
is "$(goldctl --store "$D/store" image import --promote deb "$D/v2.img" 2>&1)" deb@2 "deb@2 imported and current"
goldctl --store "$D/store" image export deb@2 "$D/v2.export" >/dev/null || bail "export 2"
machine_wait_lun "$D/state/run/tgtd.sock" "$PREFIX" pc4 "$D/state/exports/deb@2.img" 30
ok $? "LUN 1 serves deb@2"

# --- pc1: the four changed chunks come as deltas, nothing over iSCSI
hydrate pc1 >"$D/pc1/h2.log" 2>&1
ok $? "pc1's update to deb@2 completes"
grep '^slot' "$D/pc1/h2.log" | while read -r l; do diag "$l"; done
read -r n wire rej <<<"$(deltas "$D/pc1/h2.log")"
is "$n" 4 "  the 4 changed chunks came as deltas"
is "$rej" 0 "  none rejected"
ok "$((!(wire > 0 && wire < 4 * CS / 20)))" "  $wire bytes on the wire for 4 MiB of chunks (under 5%)"
is "$(iscsi "$D/pc1/h2.log")" "0 0" "  no chunk over iSCSI"
gold pc1 "$D/pc1/gold2" || bail "serve pc1"
t_run "  slot B is byte-identical to the export of deb@2" cmp "$D/pc1/gold2" "$D/v2.export"
goldagent serve --cache "$D/pc1/c.img" --volume-socket "$D/pc1/v.sock" >"$D/pc1/v.log" 2>&1 &
VP=$!
track "$VP"
wait_for 20 test -S "$D/pc1/v.sock" || bail "serve volume"
nbdcopy "nbd+unix:///volume?socket=$D/pc1/v.sock" "$D/pc1/vol.after"
kill -TERM "$VP"
wait "$VP"
t_run "  the machine volume is untouched" cmp "$D/pc1/vol.after" "$D/pc1/vol.before"
is "$(find "$D/state/deltas" -name '*.zd' | wc -l)" 4 "goldcached keeps the 4 deltas"

# chunk I's id in deb@V's manifest
chunk_id() { goldctl --store "$D/store" image manifest "deb@$1" | awk -v i="$2" '/^chunks / {n = NR} n && NR == n + 1 + i {print}'; }

# --- pc2: a damaged delta in goldcached's cache (chunk 1) is made again; a
# damaged chunk 3 in pc2's slot A makes its delta fail verification: rejected,
# that chunk comes over iSCSI
zd="$D/state/deltas/$(chunk_id 1 1)-$(chunk_id 2 1).zd"
ok "$([ -f "$zd" ]; echo $?)" "the delta of chunk 1 is in goldcached's cache"
printf 'damaged' | dd of="$zd" bs=1 seek=100 conv=notrunc 2>/dev/null
slot_a=$(goldagent status --json --cache "$D/pc2/c.img" | jq .layout.slot_a)
printf 'damaged' | dd of="$D/pc2/c.img" bs=1 seek=$((slot_a + 3 * CS + 5000)) conv=notrunc 2>/dev/null
hydrate pc2 >"$D/pc2/h2.log" 2>&1
ok $? "pc2's update to deb@2 completes"
grep '^slot' "$D/pc2/h2.log" | while read -r l; do diag "$l"; done
like "$(cat "$D/goldcached.log")" "delta cache file .*$(chunk_id 2 1).zd' is damaged: removed, the delta is made again" \
	"  goldcached found its damaged cache file and made the delta again"
read -r n wire rej <<<"$(deltas "$D/pc2/h2.log")"
is "$n $rej" "3 1" "  3 deltas applied, the one against the damaged slot A chunk rejected"
like "$(cat "$D/pc2/h2.log")" "delta for chunk 3 rejected" "  the log names the rejected chunk"
is "$(iscsi "$D/pc2/h2.log")" "1 $CS" "  that chunk came over iSCSI"
gold pc2 "$D/pc2/gold2" || bail "serve pc2"
t_run "  slot B is byte-identical to the export of deb@2" cmp "$D/pc2/gold2" "$D/v2.export"

# --- pc3: killed (as by kill -9: GOLDCACHE_FAULT's crash, at the Nth fsync)
# while the delta pass is committing one chunk per request; the next attach
# completes. The first N that leaves 1-3 of the 4 chunks in slot B is taken.
killed=
for n in $(seq 1 60); do
	GOLDCACHE_FAULT=fsync:$n:crash hydrate pc3 --delta-batch 1 >"$D/pc3/crash.log" 2>&1
	rc=$?
	[ $rc = 0 ] && break
	[ $rc = 137 ] || { diag "exit $rc at fsync $n"; break; }
	have=$(goldagent status --json --cache "$D/pc3/c.img" | jq '.slots[1].present // 0')
	if [ "$(goldagent status --json --cache "$D/pc3/c.img" | jq -r '.slots[1].version')" = 2 ] &&
		[ "$have" -gt 0 ] && [ "$have" -lt 4 ]; then
		killed=$have
		break
	fi
done
ok "$([ -n "$killed" ]; echo $?)" "pc3 killed in the delta pass with ${killed:-?} of the 4 chunks made present"
hydrate pc3 >"$D/pc3/h2.log" 2>&1
ok $? "  the next attach completes the update"
grep '^slot' "$D/pc3/h2.log" | while read -r l; do diag "$l"; done
read -r n wire rej <<<"$(deltas "$D/pc3/h2.log")"
is "$n" "$((4 - ${killed:-0}))" "  it fetches only the deltas still missing"
gold pc3 "$D/pc3/gold2" || bail "serve pc3"
t_run "  slot B is byte-identical to the export of deb@2" cmp "$D/pc3/gold2" "$D/v2.export"

# --- pc4: --no-delta: every changed chunk over iSCSI, as before deltas
hydrate pc4 --no-delta >"$D/pc4/h2.log" 2>&1
ok $? "pc4's update with --no-delta completes"
is "$(iscsi "$D/pc4/h2.log")" "4 $((4 * CS))" "  the 4 chunks came over iSCSI"
is "$(deltas "$D/pc4/h2.log")" "" "  no delta pass"

# --- the route refuses what a machine is not assigned, and bad requests
post() { # TOKEN_FILE IMAGE BODY: prints the HTTP status
	curl -s -o "$D/post.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $(cat "$1")" \
		--data "$3" "$URL/api/v1/images/$2/delta"
}
tok=$D/pc1/pc1.token
is "$(post "$tok" deb '{"from": 2, "to": 1, "chunks": [1]}')" 403 "a machine cannot ask towards a version it is not assigned"
like "$(cat "$D/post.out")" "assigned deb@2, not deb@1" "  and is told why"
is "$(post "$tok" other '{"from": 1, "to": 2, "chunks": [1]}')" 403 "nor for another image"
is "$(post "$ADMIN" other '{"from": 1, "to": 2, "chunks": [1]}')" 404 "unknown image: 404"
is "$(post "$tok" deb '{"from": 9, "to": 2, "chunks": [1]}')" 404 "unknown version: 404"
is "$(post "$tok" deb '{"from": 1, "to": 2, "chunks": [8]}')" 400 "index out of range: 400"
like "$(cat "$D/post.out")" 'not a chunk index of deb@2 \(0 to 7\)' "  naming the range"
big=$(seq -s, 0 256)
is "$(post "$tok" deb "{\"from\": 1, \"to\": 2, \"chunks\": [$big]}")" 400 "257 chunks: 400"
is "$(post "$tok" deb '{"from": 1, "to": 2, "chunks": [1')" 400 "malformed JSON: 400"
is "$(post "$tok" deb '{"from": 1, "to": 2, "chunks": [1], "x": 1}')" 400 "unknown key: 400"
is "$(post "$tok" deb '{"from": 1, "to": 2, "chunks": [1, 6]}')" 200 "a good request: 200"
is "$(head -c 8 "$D/post.out")" "GCDELTA" "  a delta stream"
logged=$(awk '$3 == "POST" && $4 == "/api/v1/images/deb/delta" && $5 == 200 {b = $6} END {print b}' "$D/state/access.log")
is "$logged" "$(stat -c %s "$D/post.out")" "  the access log counts the streamed bytes"

# --- deb@3 promoted and deb@2, the version pc2 runs, removed from the store:
# the appliance has no delta from it (404, as an appliance without the route
# answers): pc2's changed chunks come over iSCSI, still correct
cp "$D/v2.img" "$D/v3.img"
head -c 4096 /dev/urandom | dd of="$D/v3.img" bs=4096 seek=$((2 * CS / 4096 + 9)) conv=notrunc 2>/dev/null
# half of chunk 5 new: its delta (~512 KiB) takes many writes of the answer
head -c $((CS / 2)) /dev/urandom | dd of="$D/v3.img" bs=4096 seek=$((5 * CS / 4096 + 16)) conv=notrunc 2>/dev/null
is "$(goldctl --store "$D/store" image import --promote deb "$D/v3.img" 2>&1)" deb@3 "deb@3 imported and current"
goldctl --store "$D/store" image export deb@3 "$D/v3.export" >/dev/null || bail "export 3"
machine_wait_lun "$D/state/run/tgtd.sock" "$PREFIX" pc4 "$D/state/exports/deb@3.img" 30
ok $? "LUN 1 serves deb@3"
t_run "deb@2 removed from the store" goldctl --store "$D/store" image rm deb@2
hydrate pc2 >"$D/pc2/h3.log" 2>&1
ok $? "pc2's update from the removed deb@2 to deb@3 completes"
like "$(cat "$D/pc2/h3.log")" "no deltas from the appliance .*deb@2 is gone" "  it says why there are no deltas"
is "$(sed -n 's/^slot A: \([0-9]*\) chunks fetched (\([0-9]*\) bytes).*/\1 \2/p' "$D/pc2/h3.log")" "2 $((2 * CS))" \
	"  the 2 changed chunks came over iSCSI"
gold pc2 "$D/pc2/gold3" || bail "serve pc2"
t_run "  slot A is byte-identical to the export of deb@3" cmp "$D/pc2/gold3" "$D/v3.export"

# goldcached's loop interleaves answers: 6 different ones at once, each the
# same as the request made alone (deltas are deterministic; records never mix)
lists=("5, 1, 2, 5, 3" "1, 5, 3" "2, 5, 1, 5" "5, 3" "3, 2, 1, 5" "5, 2")
delta_post() { # OUT CHUNKS
	curl -s -m 60 -o "$1" -X POST -H "Authorization: Bearer $(cat "$ADMIN")" \
		--data "{\"from\": 1, \"to\": 3, \"chunks\": [$2]}" "$URL/api/v1/images/deb/delta"
}
pids=()
for k in 0 1 2 3 4 5; do
	delta_post "$D/par$k.out" "${lists[$k]}" &
	pids+=($!)
done
wait "${pids[@]}" # not a bare wait: goldcached runs in the background too
same=0
for k in 0 1 2 3 4 5; do
	delta_post "$D/seq$k.out" "${lists[$k]}"
	cmp -s "$D/par$k.out" "$D/seq$k.out" && same=$((same + 1))
done
ok "$([ "$(stat -c %s "$D/seq0.out")" -gt $((CS / 2)) ]; echo $?)" \
	"an answer of $(stat -c %s "$D/seq0.out") bytes (chunk 5's delta twice)"
is "$same" 6 "  6 answers made at once are each the same as alone"

m=$(curl -s "$URL/metrics")
like "$m" 'goldcache_deltas_total\{how="made"\} [1-9]' "/metrics counts the deltas made"
like "$m" 'goldcache_deltas_total\{how="cached"\} [1-9]' "  and those served from the cache"
like "$m" 'goldcache_delta_cache_damaged_total 1' "  and the damaged cache file"
t_run "cache check pc1" goldagent cache check "$D/pc1/c.img"
done_testing
