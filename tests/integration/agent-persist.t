#!/usr/bin/env bash
# Reimaging labs: a machine whose profile says `persist: false` gets a fresh
# machine volume at every attach (the blocks its last boot wrote read as zeros
# again, nothing dirty, nothing synced) while its gold cache is kept: the
# second attach makes no iSCSI login for gold chunks at all.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm ss qemu-io

D=$T_DIR
mkdir -p "$D/a"
head -c $((8 << 20)) /dev/urandom >"$D/gold.img"
attach_lab "$D" "$D/gold.img" || bail "lab"
# pc2 moves to a lab profile that keeps nothing across boots
sed -i 's/^  - {name: desk, image: deb, mode: cache, volume_size: 64M, retention: 3}$/&\n  - {name: lab, image: deb, mode: cache, volume_size: 32M, persist: false}/;
	s/name: pc2, profile: desk}/name: pc2, profile: lab}/' "$D/goldcache.yaml"
grep -q "name: pc2, profile: lab" "$D/goldcache.yaml" || bail "config edit"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
goldctl machine token pc2 --url "$URL" --token-file "$ADMIN" >"$D/a/pc2.token" || bail "token"
is "$(curl -sS -H "Authorization: Bearer $(cat "$ADMIN")" "$URL/api/v1/machines/pc2" | jq .persist)" \
	false "the machine state says persist: false"

boot() { # N: one attach of pc2 until SIGTERM; sets AP
	goldagent attach --appliance "$URL" --machine pc2 --mode cache --cache "$D/a/c.img" \
		--run-dir "$D/run$1" --sync-interval 0 >"$D/attach$1.log" 2>&1 &
	AP=$!
	track "$AP"
	wait_for 30 test -S "$D/run$1/volume.sock"
}
stop() {
	kill -TERM "$AP"
	wait "$AP"
}

boot 1
ok $? "first boot: attach serves the volume"
wait_for 30 grep -q "background hydration complete" "$D/attach1.log"
ok $? "the gold cache fills"
t_run "the lab user writes to the volume" qemu-io -f raw -c "write -P 0x5a 1M 192K" \
	-c "write -P 0x33 30M 4K" "nbd+unix:///volume?socket=$D/run1/volume.sock"
t_run "and reads it back" qemu-io -f raw -c "read -P 0x5a 1M 192K" \
	"nbd+unix:///volume?socket=$D/run1/volume.sock"
stop
is "$?" 0 "first boot ends"
st=$(goldagent status --json --cache "$D/a/c.img")
ok "$([ "$(jq .dirty_blocks <<<"$st")" -gt 0 ]; echo $?)" "the written blocks are dirty (nothing synced)"
is "$(jq -r ".slots[0].hydrated_pct" <<<"$st")" 100 \
	"the gold slot is complete"

boot 2
ok $? "second boot: attach serves the volume"
like "$(cat "$D/attach2.log")" "machine volume reset" "attach resets the volume"
t_run "what the last boot wrote reads as zeros" qemu-io -f raw -c "read -P 0 1M 192K" \
	-c "read -P 0 30M 4K" "nbd+unix:///volume?socket=$D/run2/volume.sock"
ok "$(grep -qi "hydration\|log in to\|logged in" "$D/attach2.log"; [ $? -ne 0 ]; echo $?)" \
	"no gold chunk fetched again (no hydration, no iSCSI login for chunks)"
stop
is "$(goldagent status --json --cache "$D/a/c.img" | jq .dirty_blocks)" 0 "nothing dirty after the reset"
done_testing
