#!/usr/bin/env bash
# Sync back end to end with the real goldcached and tgtd on loopback: a cache
# machine's target has LUN 2 = its sparse upload file at the profile's
# volume_size; gc-upload (goldagent's iSCSI transfer engine) writes a volume's
# changed chunks there as the machine (initiator name + CHAP); POST .../commit
# with the machine's token commits a snapshot off the loop (polled); `goldctl
# machine export` gives back exactly the written volume (first and incremental
# snapshots), `goldctl machine snapshots` lists them. A claimed hash that does
# not match the uploaded data is refused naming the chunk and no snapshot
# appears; the admin token and oversized bodies are refused. goldcached killed
# with SIGKILL during a commit leaves no partial snapshot, and after a restart
# the same commit goes through. Restore/reset orders reach the machine's state.
. "$GC_SRC/tests/lib.sh"
need goldcached goldctl gc-upload curl jq tgtd tgtadm ss cmp

D=$T_DIR
HTTP_PORT=$(free_port)
ISCSI_PORT=$(free_port)
URL=http://127.0.0.1:$HTTP_PORT
PREFIX=iqn.2026-11.org.example.synctest
MB=1048576
mkdir -p "$D/tftp" "$D/store" "$D/state"
head -c 100000 /dev/urandom >"$D/vmlinuz"
head -c 50000 /dev/urandom >"$D/initrd"
head -c $MB /dev/urandom >"$D/gold.img"
cat >"$D/goldcache.yaml" <<-YAML
	appliance:
	  interface: lo
	  listen: 127.0.0.1
	  http_port: $HTTP_PORT
	  dhcp: {mode: off}
	  tftp_root: $D/tftp
	  iscsi: {portal: 127.0.0.1:$ISCSI_PORT, iqn_prefix: $PREFIX}
	  store_dir: $D/store
	  state_dir: $D/state
	images:
	  - {name: deb, version: current, kernel: $D/vmlinuz, initrd: $D/initrd}
	profiles:
	  - {name: desk, image: deb, mode: cache, volume_size: 64M, retention: 3}
	  - {name: lab, image: deb, mode: cache, persist: false}
	machines:
	  - {mac: 52:54:00:20:00:01, name: pc1, profile: desk}
	  - {mac: 52:54:00:20:00:02, name: pc2, profile: desk}
	  - {mac: 52:54:00:20:00:03, name: kiosk, profile: lab}
YAML
t_run "import image deb" goldctl --store "$D/store" image import deb "$D/gold.img"

GC_PID=
start() {
	goldcached -c "$D/goldcache.yaml" --log "$D/goldcached.log" &
	GC_PID=$!
	track "$GC_PID"
	wait_for 60 curl -sf "$URL/api/v1/health"
}
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 30 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
start || bail "goldcached did not start"
ADMIN=$D/state/admin.token
ctl() { goldctl machine "$@" --url "$URL" --token-file "$ADMIN"; }
sctl() { goldctl --store "$D/store" machine "$@"; }
tgt_show() { TGT_IPC_SOCKET="$D/state/run/tgtd.sock" tgtadm -C 0 --lld iscsi --op show --mode target; }
# lun2 MACHINE: the backing file of LUN 2 of MACHINE's target
lun2() {
	tgt_show 2>/dev/null | awk -v iqn="$PREFIX:m.$1" '
		/^Target [0-9]+: / {t = ($3 == iqn)}
		t && /^ +LUN: / {lun = $2}
		t && lun == 2 && /Backing store path:/ {print $4}'
}
wait_lun2() {
	local i
	for i in $(seq 200); do
		[ "$(lun2 "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
UP1=$D/state/uploads/pc1.img
wait_lun2 pc1 "$UP1"
ok $? "pc1's target has LUN 2 = its upload file"
is "$(stat -c %s "$UP1")" $((64 * MB)) "upload file sized at the profile's volume_size"
ok "$([ "$(stat -c %b "$UP1")" -le 64 ]; echo $?)" "and sparse"
is "$(lun2 kiosk)" "" "a persist: false machine has no upload LUN"

AGENT=$(ctl token pc1)
AGENT2=$(ctl token pc2)
like "$AGENT" '^[0-9a-f]{64}$' "pc1 agent token"
# upload VOL [gc-upload args...]: as pc1, to its LUN 2; prints the commit body
upload() {
	local vol=$1
	shift
	gc-upload -c 1M -i "$PREFIX:i.pc1" -u pc1 --secret-file "$D/state/secrets/pc1.chap" "$@" \
		"127.0.0.1:$ISCSI_PORT" "$PREFIX:m.pc1" 2 "$vol"
}
# post BODYFILE [TOKEN]: POST .../commit; prints "HTTP-STATUS BODY"
post() {
	curl -sS -o "$D/post.out" -w '%{http_code}' -X POST -H "Authorization: Bearer ${2:-$AGENT}" \
		--data-binary "@$1" "$URL/api/v1/machines/pc1/commit"
}
# commit_wait: polls until the commit is no longer running; prints the status
commit_wait() {
	local i s
	for i in $(seq 600); do
		s=$(curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1/commit")
		[ "$(jq -r .state <<<"$s")" != running ] && break
		sleep 0.1
	done
	printf '%s' "$s"
}
nsnaps() { sctl --json snapshots pc1 2>/dev/null | jq length; }

# 1. first snapshot: 40 random chunks in a 64 MiB volume, the rest zero
truncate -s 64M "$D/vol1"
for i in $(seq 0 39); do
	head -c $MB /dev/urandom | dd of="$D/vol1" bs=1M seek=$((i + (i / 10) * 2)) conv=notrunc status=none
done
upload "$D/vol1" >"$D/body1.json"
ok $? "gc-upload writes vol1's chunks to LUN 2 as pc1"
is "$(jq '.chunks | length' "$D/body1.json")" 40 "40 changed chunks claimed"
is "$(post "$D/body1.json")" 202 "POST commit: 202 accepted"
is "$(jq -r .poll "$D/post.out")" "/api/v1/machines/pc1/commit" "the answer says where to poll"
st=$(commit_wait)
is "$(jq -r .state <<<"$st")" "done" "the commit is done"
is "$(jq -r .snapshot <<<"$st")" 1 "snapshot 1"
is "$(jq -r .changed <<<"$st")" 40 "40 changed chunks"
ok "$([ "$(stat -c %b "$UP1")" -lt 2048 ]; echo $?)" \
	"the committed ranges of the upload file are freed ($(stat -c %b "$UP1") blocks left)"
t_run "goldctl machine export pc1" sctl export pc1 "$D/out1"
t_run "the snapshot is bit-identical to the volume" cmp "$D/vol1" "$D/out1"
ok "$([ "$(stat -c %b "$D/out1")" -lt $((50 * 2048)) ]; echo $?)" "export is sparse where zero"

# 2. incremental: 3 chunks changed, one zeroed; the rest inherited
cp "$D/vol1" "$D/vol2"
for i in 5 20 63; do
	head -c $MB /dev/urandom | dd of="$D/vol2" bs=1M seek=$i conv=notrunc status=none
done
dd if=/dev/zero of="$D/vol2" bs=1M seek=0 count=1 conv=notrunc status=none
upload "$D/vol2" --base "$D/vol1" --base-snapshot 1 >"$D/body2.json"
ok $? "gc-upload of vol2's changes"
is "$(jq '.chunks | length' "$D/body2.json")" 4 "4 changed chunks claimed"
is "$(post "$D/body2.json")" 202 "POST the incremental commit"
st=$(commit_wait)
is "$(jq -r '.state + " " + (.snapshot|tostring) + " " + (.inherited|tostring)' <<<"$st")" \
	"done 2 60" "snapshot 2, 60 chunks inherited"
t_run "export pc1@2" sctl export pc1@2 "$D/out2"
t_run "snapshot 2 equals vol2" cmp "$D/vol2" "$D/out2"
t_run "export pc1@1 (still there)" sctl export pc1@1 "$D/out1b"
t_run "snapshot 1 still equals vol1" cmp "$D/vol1" "$D/out1b"
s=$(sctl --json snapshots pc1)
is "$(jq -c '[.[] | [.snapshot, .parent, .changed_chunks]]' <<<"$s")" "[[1,0,40],[2,1,4]]" \
	"goldctl machine snapshots: ids, parents, changed chunks"
like "$(sctl snapshots pc1)" "SNAPSHOT +CREATED" "table output"
s=$(curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1/snapshots")
is "$(jq -c '[.snapshots[].snapshot]' <<<"$s")" "[1,2]" "GET .../snapshots lists them for the agent"
curl -sS -f -H "Authorization: Bearer $AGENT" -o "$D/m2" "$URL/api/v1/machines/pc1/snapshots/2/manifest"
ok $? "GET .../snapshots/2/manifest"
like "$(head -n 1 "$D/m2")" "goldcache-manifest" "is a manifest"

# 3. a claimed hash that does not match the uploaded data
cp "$D/vol2" "$D/vol3"
head -c $MB /dev/urandom | dd of="$D/vol3" bs=1M seek=7 conv=notrunc status=none
upload "$D/vol3" --base "$D/vol2" --base-snapshot 2 >"$D/body3.json"
jq -c '.chunks[0].sha256 = "'"$(head -c $MB /dev/urandom | sha256sum | cut -c1-64)"'"' \
	"$D/body3.json" >"$D/bad3.json"
is "$(post "$D/bad3.json")" 202 "POST a commit with a wrong hash"
st=$(commit_wait)
is "$(jq -r '.state + " " + .reason + " " + (.chunk|tostring)' <<<"$st")" "failed mismatch 7" \
	"refused: mismatch at chunk 7"
like "$(jq -r .error <<<"$st")" "chunk 7 .*uploaded data hashes to" "the error names the chunk"
is "$(nsnaps)" 2 "no snapshot appeared"

# refusals at the door
is "$(post "$D/body3.json" "$(cat "$ADMIN")")" 403 "the admin token cannot commit"
is "$(post "$D/body3.json" "$AGENT2")" 403 "another machine's token cannot commit for pc1"
head -c $((9 * MB)) /dev/zero | tr '\0' ' ' >"$D/huge.json"
is "$(post "$D/huge.json")" 413 "a body past the commit limit is refused"
printf '{"volume_size": 1000, "chunk_size": 1048576, "chunks": []}' >"$D/bad.json"
is "$(post "$D/bad.json")" 400 "bad geometry is refused at once"
printf '{"volume_size": 134217728, "chunk_size": 1048576, "chunks": []}' >"$D/big.json"
is "$(post "$D/big.json")" 400 "a volume past the profile's volume_size is refused"
like "$(cat "$D/post.out")" "volume_size" "and says why"

# 4. SIGKILL during a commit: 48 MiB of new data keeps the job busy a while
cp "$D/vol2" "$D/vol4"
for i in $(seq 10 57); do
	head -c $MB /dev/urandom | dd of="$D/vol4" bs=1M seek="$i" conv=notrunc status=none
done
upload "$D/vol4" --base "$D/vol2" --base-snapshot 2 >"$D/body4.json"
ok $? "gc-upload of 48 changed chunks"
is "$(post "$D/body4.json")" 202 "POST the big commit"
state=$(curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1/commit" | jq -r .state)
{
	kill -KILL "$GC_PID"
	wait "$GC_PID"
} 2>/dev/null
diag "goldcached killed while the commit was: $state"
n=$(nsnaps)
if [ "$n" = 3 ]; then
	sctl export pc1@3 "$D/out4"
	t_run "the commit finished before the kill: snapshot 3 is whole" cmp "$D/vol4" "$D/out4"
else
	is "$n" 2 "no partial snapshot after the kill"
fi
t_run "goldctl image verify: every manifest and chunk sound" goldctl --store "$D/store" image verify
start || bail "goldcached did not restart"
st=$(curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1/commit")
if [ "$n" = 3 ]; then
	is "$(jq -r '.state + " " + (.snapshot|tostring)' <<<"$st")" "done 3" \
		"after the restart the commit is known: done, snapshot 3 (its durable record)"
else
	is "$(jq -r '.state + " " + .reason' <<<"$st")" "failed interrupted" \
		"after the restart the commit is known: failed, interrupted (commit again)"
fi
wait_lun2 pc1 "$UP1"
ok $? "LUN 2 is back"
# the agent saw no acknowledgement: its chunks are still dirty, so it uploads
# them again (a commit that did finish freed them from the upload file)
upload "$D/vol4" --base "$D/vol2" --base-snapshot 2 >"$D/body4.json"
ok $? "the agent uploads its dirty chunks again"
is "$(post "$D/body4.json")" 202 "and commits again"
st=$(commit_wait)
is "$(jq -r .state <<<"$st")" "done" "goes through"
last=$(jq -r .snapshot <<<"$st")
t_run "export the new snapshot" sctl export "pc1@$last" "$D/out4b"
t_run "it equals vol4" cmp "$D/vol4" "$D/out4b"
is "$(nsnaps)" 3 "retention 3 keeps 3 snapshots"
t_run "gc after pruning" goldctl --store "$D/store" store gc
t_run "the newest snapshot survives gc" sctl export --force "pc1@$last" "$D/out4b"
t_run "still equal to vol4" cmp "$D/vol4" "$D/out4b"

# 4b. a commit in batches (one transaction): the staged claims and the last
# batch's commit one snapshot; a batch that does not continue the open
# transaction is refused, and a restart loses a transaction being staged
cp "$D/vol4" "$D/vol5"
for i in 3 20 41 60; do
	head -c $MB /dev/urandom | dd of="$D/vol5" bs=1M seek="$i" conv=notrunc status=none
done
upload "$D/vol5" --base "$D/vol4" --base-snapshot "$last" >"$D/body5.json"
ok $? "gc-upload of 4 changed chunks"
batch() { # batch N MORE FROM COUNT: part of body5 as batch N of a transaction
	jq -c --argjson n "$1" --argjson more "$2" --argjson from "$3" --argjson cnt "$4" \
		'.chunks |= (sort_by(.index) | .[$from:$from+$cnt]) | . + {batch: $n, more: $more}' \
		"$D/body5.json" >"$D/batch.json"
	post "$D/batch.json"
}
is "$(batch 1 true 0 2)" 409 "batch 1 with no open transaction: 409"
like "$(cat "$D/post.out")" "batch 0" "and says to start again at batch 0"
is "$(batch 0 true 0 2)" 202 "batch 0 of 2 staged"
is "$(jq -r '.state + " " + (.staged|tostring)' "$D/post.out")" "staging 2" "2 claims staged"
is "$(nsnaps)" 3 "staging commits nothing"
is "$(batch 0 true 0 2)" 202 "batch 0 again opens a new transaction"
id=$(jq -r .id "$D/post.out")
is "$(batch 2 false 2 2)" 409 "batch 2 where 1 is expected: 409"
is "$(batch 0 true 0 2)" 202 "start over: batch 0"
id=$(jq -r .id "$D/post.out")
is "$(batch 1 false 2 2)" 202 "the last batch starts the commit"
is "$(jq -r .id "$D/post.out")" "$id" "under the transaction's id"
st=$(commit_wait)
is "$(jq -r '.state + " " + (.changed|tostring) + " " + (.id|tostring)' <<<"$st")" "done 4 $id" \
	"done: 4 chunks from 2 batches"
last=$(jq -r .snapshot <<<"$st")
t_run "export it" sctl export "pc1@$last" "$D/out5"
t_run "it equals vol5" cmp "$D/vol5" "$D/out5"
is "$(batch 0 true 0 2)" 202 "a transaction staged"
{
	kill -TERM "$GC_PID"
	wait "$GC_PID"
} 2>/dev/null
start || bail "goldcached did not restart"
is "$(batch 1 false 2 2)" 409 "after a restart its next batch is refused: start again"
st=$(curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1/commit")
is "$(jq -r '.state + " " + (.snapshot|tostring) + " " + (.id|tostring)' <<<"$st")" \
	"done $last $id" "and GET .../commit still answers the last commit (durable record)"
# the window between publishing a snapshot and recording "done": a record
# left saying running is settled against the store at the next start
{
	kill -KILL "$GC_PID"
	wait "$GC_PID"
} 2>/dev/null
jq -c --argjson mb $((last - 1)) '.state = "running" | .max_before = $mb' \
	"$D/state/uploads/pc1.commit" >"$D/rec" && mv "$D/rec" "$D/state/uploads/pc1.commit"
start || bail "goldcached did not restart"
st=$(curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1/commit")
is "$(jq -r '.state + " " + (.snapshot|tostring) + " " + (.id|tostring)' <<<"$st")" \
	"done $last $id" "a commit recorded running whose snapshot exists is done after a restart"
jq -c '.state = "running" | .max_before = 99' "$D/state/uploads/pc1.commit" >"$D/rec" &&
	mv "$D/rec" "$D/state/uploads/pc1.commit"
{
	kill -KILL "$GC_PID"
	wait "$GC_PID"
} 2>/dev/null
start || bail "goldcached did not restart"
st=$(curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1/commit")
is "$(jq -r '.state + " " + .reason' <<<"$st")" "failed interrupted" \
	"one whose snapshot does not exist: failed, interrupted"
wait_lun2 pc1 "$UP1"
ok $? "LUN 2 is back"

# 5. restore and reset orders: what pc2's next attach must hydrate
t_run "goldctl machine restore pc2 --from pc1@$last" ctl restore pc2 --from "pc1@$last"
h=$(curl -sS -H "Authorization: Bearer $AGENT2" "$URL/api/v1/machines/pc2")
is "$(jq -c '.hydrate | [.kind, .from, .snapshot]' <<<"$h")" "[\"restore\",\"pc1\",$last]" \
	"pc2's machine state names pc1@$last"
curl -sS -f -o /dev/null -H "Authorization: Bearer $AGENT2" \
	"$URL/api/v1/machines/pc1/snapshots/$last/manifest"
ok $? "pc2 may read the manifest of the snapshot it restores"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AGENT2" \
	"$URL/api/v1/machines/pc1/snapshots/1/manifest")
is "$code" 403 "but no other snapshot of pc1"
id=$(jq .hydrate.id <<<"$h")
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $AGENT2" \
	--data "{\"id\": $id}" "$URL/api/v1/machines/pc2/hydrated")
is "$code" 200 "pc2 acknowledges the order"
is "$(curl -sS -H "Authorization: Bearer $AGENT2" "$URL/api/v1/machines/pc2" | jq -c .hydrate)" \
	null "the order is cleared"
ctl restore pc2 --from kiosk >"$D/err.out" 2>&1
is "$?" 3 "restore from a machine without snapshots: exit 3 (not found)"
like "$(cat "$D/err.out")" "no snapshot" "and says why"
t_run "goldctl machine reset pc1" ctl reset pc1
is "$(curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1" |
	jq -c '.hydrate | [.kind, .from, .snapshot]')" '["reset",null,null]' "reset: a fresh volume"
t_run "goldctl machine reset pc1 --to $last" ctl reset pc1 --to "$last"
is "$(curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1" |
	jq -c '.hydrate | [.kind, .from, .snapshot]')" "[\"reset\",\"pc1\",$last]" "reset --to: that snapshot"
t_fails "reset to a snapshot that does not exist" ctl reset pc1 --to 99
like "$(ctl --json show pc1 2>/dev/null | jq -c .hydrate)" '"reset"' "the last good order stays"

kill -TERM "$GC_PID"
wait "$GC_PID"
is "$?" 0 "clean shutdown"
done_testing
