#!/usr/bin/env bash
# goldagent attach outlives the initramfs's switch_root: there the agent's paths
# stop leading anywhere (the initramfs's /dev, holding the cache device, and /run,
# holding the state partition and the sockets, are moved under the new root while
# the agent keeps the old root). Here, in a private mount namespace, the cache file,
# the state folder and the run folder live on a tmpfs that is moved away once the
# sockets are up, as /init does. The agent must go on: its periodic syncs read the
# volume through the open cache, commit, record their base in the state folder
# (the second snapshot's parent is the first) and clear the dirty bits; its status
# in the moved cache shows the sync.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm ss qemu-io unshare mount

D=$T_DIR
head -c $((8 << 20)) /dev/urandom >"$D/gold.img"
attach_lab "$D" "$D/gold.img" || bail "lab"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
mkdir -p "$D/old" "$D/new"
goldctl machine token pc1 --url "$URL" --token-file "$ADMIN" >"$D/pc1.token" || bail "token"

# the "initramfs": agent started with paths on $D/old, then $D/old moved to $D/new
cat >"$D/initramfs.sh" <<EOF
set -u
mount -t tmpfs -o size=256m initramfs "$D/old" || exit 10
mkdir -p "$D/old/dev" "$D/old/run/state/goldagent" "$D/old/run/agent"
cp "$D/pc1.token" "$D/old/run/state/goldagent/pc1.token"
goldagent attach --appliance "$URL" --machine pc1 --mode cache --cache "$D/old/dev/cache.img" \
	--state-dir "$D/old/run/state/goldagent" --run-dir "$D/old/run/agent" --sync-interval 1 \
	>"$D/agent.log" 2>&1 &
echo \$! >"$D/agent.pid"
for _ in \$(seq 300); do [ -S "$D/old/run/agent/volume.sock" ] && break; sleep 0.1; done
[ -S "$D/old/run/agent/volume.sock" ] || exit 11
mount --move "$D/old" "$D/new" || exit 12
[ ! -e "$D/old/dev/cache.img" ] || exit 13
echo moved >"$D/moved"
# the "booted system": writes through the socket at its new place, lets syncs run
V="nbd+unix:///volume?socket=$D/new/run/agent/volume.sock"
qemu-io -f raw -c "write -P 0x61 1M 256K" "\$V" >/dev/null || exit 14
for _ in \$(seq 300); do
	n=\$(goldctl --store "$D/store" --json machine snapshots pc1 2>/dev/null | jq length)
	[ "\${n:-0}" -ge 1 ] && break
	sleep 0.1
done
qemu-io -f raw -c "write -P 0x62 20M 64K" "\$V" >/dev/null || exit 15
for _ in \$(seq 300); do
	n=\$(goldctl --store "$D/store" --json machine snapshots pc1 2>/dev/null | jq length)
	[ "\${n:-0}" -ge 2 ] && break
	sleep 0.1
done
kill -TERM "\$(cat "$D/agent.pid")"
for _ in \$(seq 100); do kill -0 "\$(cat "$D/agent.pid")" 2>/dev/null || break; sleep 0.1; done
cp "$D/new/dev/cache.img" "$D/cache-after.img"
cp "$D/new/run/state/goldagent/pc1.sync" "$D/sync-after" 2>/dev/null
umount "$D/new"
exit 0
EOF
timeout 120 unshare -m --propagation private bash "$D/initramfs.sh"
is "$?" 0 "the agent started on the old paths, which were then moved away; the writes went through"
ok "$([ -e "$D/moved" ]; echo $?)" "the old paths were gone while the agent ran"
diag "$(grep -E "sync|error" "$D/agent.log" | tail -n 8)"
# what it logged once serving (before: the first attach creates the missing cache)
sed -n '/serving gold/,$p' "$D/agent.log" >"$D/agent-serving.log"
ok "$(grep -Eq "cannot open|cannot duplicate|cannot record the sync base|dirty bits kept" "$D/agent-serving.log"; [ $? = 1 ]; echo $?)" \
	"the agent reached its cache and state folder after the move (no open or state error in its log)"
snaps=$(goldctl --store "$D/store" --json machine snapshots pc1)
ok "$([ "$(jq length <<<"$snaps")" -ge 2 ]; echo $?)" "two snapshots committed after the move"
first=$(jq -r 'min_by(.snapshot) | .snapshot' <<<"$snaps")
like "$(jq -r 'max_by(.snapshot) | .parent' <<<"$snaps")" "^[1-9][0-9]*$" \
	"the newest snapshot is incremental: its parent is an earlier one (the base was recorded)"
like "$(cat "$D/sync-after" 2>/dev/null)" "^snapshot [0-9]+" "the state folder holds the sync base"
st=$(goldagent status --json --cache "$D/cache-after.img")
ok "$([ "$(jq -r .last_sync <<<"$st")" -gt 0 ]; echo $?)" "the cache records the acknowledged sync"
is "$(jq -r .dirty_blocks <<<"$st")" 0 "dirty bits cleared after the commits"
goldctl --store "$D/store" machine export "pc1" "$D/vol.img" >/dev/null
t_run "the newest snapshot holds both writes" qemu-io -f raw -c "read -P 0x61 1M 256K" \
	-c "read -P 0x62 20M 64K" "$D/vol.img"
diag "first snapshot $first"
done_testing
