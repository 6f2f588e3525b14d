#!/usr/bin/env bash
# `goldagent attach` (what the initramfs runs) against the real goldcached
# and tgtd: from an empty cache it serves gold.sock and volume.sock in the run
# dir at once, reads fetch chunks on demand while the rest hydrates in the
# background (the gold export equals `goldctl image export`), and writes to the
# volume reach a snapshot by the periodic sync (the export equals the volume);
# tgtd killed while attached: reads wait for the reconnection and complete.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm ss cmp nbdcopy qemu-io pgrep

D=$T_DIR
MB=1048576
mkdir -p "$D/a"
head -c $((24 * MB)) /dev/urandom >"$D/gold.img"
attach_lab "$D" "$D/gold.img" || bail "lab"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
goldctl --store "$D/store" image export deb "$D/want.img" >/dev/null || bail "export"
goldctl machine token pc1 --url "$URL" --token-file "$ADMIN" >"$D/a/pc1.token" || bail "token"

RUN=$D/run
goldagent attach --appliance "$URL" --machine pc1 --mode cache \
	--cache "$D/a/c.img" --run-dir "$RUN" --sync-interval 1 >"$D/attach.log" 2>&1 &
AP=$!
track "$AP"
wait_for 30 test -S "$RUN/volume.sock"
ok $? "attach serves gold.sock and volume.sock in the run dir"
t_run "the gold export reads back (on demand + background hydration)" \
	nbdcopy "nbd+unix:///gold?socket=$RUN/gold.sock" "$D/got.img"
t_run "equal to goldctl image export" cmp "$D/want.img" "$D/got.img"
wait_for 30 grep -q "background hydration complete" "$D/attach.log"
ok $? "background hydration completes"
pct() { curl -sS -H "Authorization: Bearer $(cat "$ADMIN")" "$URL/api/v1/machines/pc1" | jq -r .state.hydrated_pct; }
wait_for 10 sh -c "[ \"\$(curl -sS -H 'Authorization: Bearer $(cat "$ADMIN")' '$URL/api/v1/machines/pc1' | jq -r .state.hydrated_pct)\" = 100 ]"
is "$(pct)" 100 "with nothing to sync, the next tick reports the finished hydration"

t_run "write to the machine volume" qemu-io -f raw -c "write -P 77 1M 200K" -c "write -P 78 20M 4K" \
	"nbd+unix:///volume?socket=$RUN/volume.sock"
wait_for 30 grep -q "sync: snapshot 1 " "$D/attach.log"
ok $? "the periodic sync commits snapshot 1"
t_run "read the volume" nbdcopy "nbd+unix:///volume?socket=$RUN/volume.sock" "$D/vol.img"
t_run "goldctl machine export pc1" goldctl --store "$D/store" machine export pc1 "$D/snap.img"
t_run "the snapshot equals the volume" cmp "$D/vol.img" "$D/snap.img"
like "$(grep 'sync: snapshot 1 ' "$D/attach.log")" "\\(([0-9]+) bytes sent for \\1 dirty bytes\\)" \
	"bytes sent = dirty bytes"
st=$(curl -sS -H "Authorization: Bearer $(cat "$ADMIN")" "$URL/api/v1/machines/pc1")
is "$(jq -c '[.state.hydrated_pct, .state.dirty_bytes, .state.cache_complete, .state.image, .state.version]' <<<"$st")" \
	'[100,0,true,"deb",1]' "the agent reported its state (goldctl machine show)"
ok "$([ "$(jq .last_sync <<<"$st")" != null ]; echo $?)" "the appliance knows the last sync"
kill -TERM "$AP"
wait "$AP"
is "$?" 0 "attach stops cleanly on SIGTERM"
is "$(goldagent status --json --cache "$D/a/c.img" | jq .dirty_blocks)" 0 "nothing left dirty"

# tgtd killed while attached: reads of absent chunks wait for the reconnection
mkdir -p "$D/b"
cp "$D/a/pc1.token" "$D/b/pc1.token"
goldagent attach --appliance "$URL" --machine pc1 --mode stream --cache "$D/b/c.img" \
	--run-dir "$D/run2" --no-hydrate --sync-interval 0 >"$D/attach2.log" 2>&1 &
AP=$!
track "$AP"
wait_for 30 test -S "$D/run2/gold.sock"
ok $? "a second cache attached without background hydration"
tp=$(pgrep -P "$GC_PID" -x tgtd | head -n1)
kill -9 "$tp"
sleep 0.3
t_run "the gold export reads back after tgtd was killed" \
	nbdcopy "nbd+unix:///gold?socket=$D/run2/gold.sock" "$D/got2.img"
t_run "identical" cmp "$D/want.img" "$D/got2.img"
like "$(cat "$D/attach2.log")" "session back after" "the agent reconnected"
kill -TERM "$AP"
wait "$AP"
is "$?" 0 "attach stops cleanly"
done_testing
