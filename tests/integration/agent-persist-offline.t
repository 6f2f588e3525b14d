#!/usr/bin/env bash
# persist: false holds offline too: an online attach records the profile's flag
# in the cache header, so an attach with the appliance stopped (which cannot ask
# for the profile) still gives the lab machine a fresh volume; a persistent
# machine's offline attach keeps what its last boot wrote. A move back to a
# persistent profile clears the flag at the next online attach.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
. "$GC_SRC/tests/lib-machine.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm qemu-io

D=$T_DIR
mkdir -p "$D/a"
head -c $((4 << 20)) /dev/urandom >"$D/gold.img"
attach_lab "$D" "$D/gold.img" || bail "lab"
sed -i 's/^  - {name: desk, image: deb, mode: cache, volume_size: 64M, retention: 3}$/&\n  - {name: lab, image: deb, mode: cache, volume_size: 32M, persist: false}/;
	s/name: pc2, profile: desk}/name: pc2, profile: lab}/' "$D/goldcache.yaml"
grep -q "name: pc2, profile: lab" "$D/goldcache.yaml" || bail "config edit"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
for m in pc1 pc2; do
	goldctl machine token $m --url "$URL" --token-file "$ADMIN" >"$D/a/$m.token" || bail "token $m"
done

# ready: both machines' targets admit their logins
ready() {
	local m
	for m in pc1 pc2; do
		machine_wait_lun "$D/state/run/tgtd.sock" "$PREFIX" $m "$D/state/exports/deb@1.img" 30 || return 1
	done
}
# boot MACHINE N: one attach until SIGTERM (the cache fills first); sets AP
boot() {
	goldagent attach --appliance "$URL" --machine "$1" --mode cache --cache "$D/a/$1.img" \
		--run-dir "$D/run-$1-$2" --sync-interval 0 --timeout 3 >"$D/attach-$1-$2.log" 2>&1 &
	AP=$!
	track "$AP"
	wait_for 30 sh -c "test -S '$D/run-$1-$2/volume.sock' || ! kill -0 $AP" &&
		test -S "$D/run-$1-$2/volume.sock" || {
		sed 's/^/#   attach: /' "$D/attach-$1-$2.log"
		return 1
	}
}
stop() {
	kill -TERM "$AP"
	wait "$AP"
}
vol() { qemu-io -f raw "${@:3}" "nbd+unix:///volume?socket=$D/run-$1-$2/volume.sock"; }
st() { goldagent status --json --cache "$D/a/$1.img" | jq -r "$2"; }

# --- online: both machines fill their caches and write
ready
ok $? "pc1's and pc2's targets admit their logins"
for m in pc1 pc2; do
	boot $m 1
	ok $? "$m: online attach serves the volume"
	wait_for 30 sh -c "goldagent status --json --cache '$D/a/$m.img' | jq -e '.mode == \"offline-ready\"' >/dev/null"
	ok $? "$m: the cache is complete"
	t_run "$m: the user writes to the volume" vol $m 1 -c "write -P 0x5a 1M 128K"
	stop
	is "$?" 0 "$m: attach ends cleanly"
done
is "$(st pc2 .persist)" false "pc2's cache remembers persist: false (goldagent status)"
is "$(st pc2 .volume_size)" $((32 << 20)) "pc2's volume has the lab profile's volume_size (32M)"
is "$(st pc1 .persist)" true "pc1's cache says persist: true"

# --- offline: the appliance is gone
attach_gc_stop
t_fails "the appliance is unreachable" curl -sf --max-time 3 "$URL/api/v1/health"
boot pc2 2
ok $? "pc2: offline attach serves the volume from the complete cache"
like "$(cat "$D/attach-pc2-2.log")" "unreachable: cache complete" "  it is an offline start"
like "$(cat "$D/attach-pc2-2.log")" "machine volume reset" "  the volume is reset all the same"
t_run "  what the last boot wrote reads as zeros" vol pc2 2 -c "read -P 0 1M 128K"
stop
is "$(st pc2 .dirty_blocks)" 0 "pc2: nothing dirty after the offline reset"

boot pc1 2
ok $? "pc1: offline attach serves the volume"
ok "$(grep -q "volume reset" "$D/attach-pc1-2.log"; [ $? -ne 0 ]; echo $?)" "pc1 (persistent) is not reset"
t_run "  pc1 keeps what its last boot wrote" vol pc1 2 -c "read -P 0x5a 1M 128K"
stop

# --- pc2 moves to the persistent profile: the next online attach clears the flag
attach_gc_start "$D" || bail "goldcached did not start again"
ready || bail "targets after the restart"
goldctl machine assign pc2 desk --url "$URL" --token-file "$ADMIN" >/dev/null
boot pc2 3
ok $? "pc2 (now desk): online attach"
t_run "  pc2 writes" vol pc2 3 -c "write -P 0x6b 2M 64K"
stop
is "$(st pc2 .persist)" true "pc2's cache now says persist: true"
attach_gc_stop
boot pc2 4
ok $? "pc2: offline attach"
t_run "  the write of its persistent boot is kept offline" vol pc2 4 -c "read -P 0x6b 2M 64K"
stop
done_testing
