#!/usr/bin/env bash
# Restore and reset orders carried out by goldagent attach against the real
# goldcached and tgtd: pc1 writes a file into ext4 on its volume (nbdfuse +
# loop + mount in a private mount namespace) and syncs; `goldctl machine
# restore pc2 --from pc1` makes goldcached export pc1@1 as LUN 3 (read-only)
# of pc2's target; pc2's attach restores it (every chunk verified), the volume
# equals the snapshot byte for byte and the file is there, the order is
# cleared and LUN 3 and its file go away; pc2's next sync commits against base
# pc1@1 (only its own change travels). reset gives a zero volume, reset --to
# its own snapshot; an order replaced mid-restore is followed by the new
# one; kill -9 mid-restore leaves a marked, half-restored volume
# that an offline start refuses and the next online attach completes; a
# tampered byte in the LUN file is detected and the restore does not complete;
# after goldcached restarts with the order pending the LUN comes back; a
# snapshot larger than the machine's volume is refused, the order stays.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
. "$GC_SRC/tests/lib-agent.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm ss cmp nbdcopy qemu-io nbdfuse losetup \
	mkfs.ext4 mount umount unshare fusermount3

D=$T_DIR
MB=1048576
VOL=$((64 * MB))
mkdir -p "$D/a" "$D/fuse" "$D/mnt"
head -c $((4 * MB)) /dev/urandom >"$D/gold.img"
attach_lab "$D" "$D/gold.img" || bail "lab"
# pc3 gets a volume smaller than pc1's snapshot
sed -i 's/^  - {name: desk, image: deb, mode: cache, volume_size: 64M, retention: 3}$/&\n  - {name: small, image: deb, mode: cache, volume_size: 32M}/;
	s/name: pc3, profile: desk}/name: pc3, profile: small}/' "$D/goldcache.yaml"
grep -q "name: pc3, profile: small" "$D/goldcache.yaml" || bail "config edit"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 25 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
# attach_gc_start waits for pc1's LUN 2 only: the gold LUN may come a moment later
has_lun() { [ -n "$(attach_lun_path "$D" "$1" "$2")" ]; }
for m in pc1 pc2 pc3; do
	wait_for 60 has_lun $m 1 || bail "no gold LUN on $m's target"
done
for m in pc1 pc2 pc3; do
	goldctl machine token $m --url "$URL" --token-file "$ADMIN" >"$D/a/$m.token" || bail "token $m"
done

ctl() { goldctl machine "$@" --url "$URL" --token-file "$ADMIN"; }
state() { curl -sS -H "Authorization: Bearer $(cat "$ADMIN")" "$URL/api/v1/machines/$1"; }
lun3() { attach_lun_path "$D" "$1" 3; }
AP=
# boot MACHINE LOG [ENV...]: goldagent attach of MACHINE in the background (AP)
boot() {
	local m=$1 log=$2
	shift 2
	rm -rf "$D/run-$m"
	env "$@" goldagent attach --appliance "$URL" --machine "$m" --mode cache \
		--cache "$D/a/$m.img" --run-dir "$D/run-$m" --sync-interval 0 --give-up 60 \
		>"$log" 2>&1 &
	AP=$!
	track "$AP"
}
# up MACHINE: waits until the attach serves the volume (0) or exits (1)
up() {
	for _ in $(seq 600); do
		[ -S "$D/run-$1/volume.sock" ] && return 0
		kill -0 "$AP" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
stop() {
	kill -TERM "$AP" 2>/dev/null
	wait "$AP"
}
sync_now() {
	goldagent sync --cache "$D/a/$1.img" --appliance "$URL" --machine "$1" --state-dir "$D/a"
}
vol() { echo "nbd+unix:///volume?socket=$D/run-$1/volume.sock"; }
# in_mountns MACHINE SCRIPT: SCRIPT with MACHINE's volume as loop device $loop
in_mountns() { nbd_mountns "$(vol "$1")" "$2"; }
# order_ready MACHINE: the order's LUN is served
order_ready() { [ "$(state "$1" | jq -r .hydrate.lun)" = 3 ]; }

# 1. pc1: ext4 with a file on its volume, synced -> pc1@1
head -c $((1 * MB)) /dev/urandom >"$D/payload"
boot pc1 "$D/pc1.log"
up pc1 || bail "pc1 attach: $(tail -5 "$D/pc1.log")"
t_run "pc1: mkfs.ext4, a file written (nbdfuse + loop + mount)" in_mountns pc1 "
mkfs.ext4 -q -F \"\$loop\"
mount \"\$loop\" \"$D/mnt\"
echo 'written on pc1' >\"$D/mnt/hello.txt\"
cp \"$D/payload\" \"$D/mnt/payload\"
sync
umount \"$D/mnt\""
stop
t_run "pc1 syncs: snapshot 1" sync_now pc1
t_run "export pc1@1" goldctl --store "$D/store" machine export pc1@1 "$D/pc1-1.img"

# 2. restore pc2 from pc1: LUN 3 on pc2's target, read-only
t_run "goldctl machine restore pc2 --from pc1" ctl restore pc2 --from pc1
is "$(state pc2 | jq -c '.hydrate | [.kind, .from, .snapshot]')" '["restore","pc1",1]' \
	"pc2's order names pc1@1"
wait_for 60 order_ready pc2
ok $? "goldcached serves the snapshot as LUN 3 of pc2's target"
is "$(state pc2 | jq -c '.hydrate | [.lun, .size, .lun_state]')" "[3,$VOL,\"ready\"]" \
	"the machine state says which LUN and its size"
is "$(lun3 pc2)" "$D/state/restore/pc1@1.img" "LUN 3 is the restore file of pc1@1"
like "$(TGT_IPC_SOCKET="$D/state/run/tgtd.sock" tgtadm -C 0 --lld iscsi --op show --mode target |
	awk -v iqn="$PREFIX:m.pc2" '/^Target [0-9]+: / {t = ($3 == iqn)} t && /LUN: 3/ {l = 1}
		t && l && /Readonly:/ {print; exit}')" "Readonly: Yes" "LUN 3 is read-only"
is "$(lun3 pc1)" "" "pc1's target has no LUN 3"
like "$(ctl show pc2)" "pending order: +restore from pc1@1 \(order [0-9]+\), LUN 3: ready" \
	"goldctl machine show says where the order's snapshot is served"

# 3. pc2's attach restores it
boot pc2 "$D/pc2.log"
up pc2
ok $? "pc2's attach serves the volume after the restore"
like "$(cat "$D/pc2.log")" "restore: order [0-9]+ done" "the log says the restore is done"
like "$(cat "$D/pc2.log")" "restore: order [0-9]+ acknowledged" "and acknowledged"
t_run "read pc2's volume" nbdcopy "$(vol pc2)" "$D/pc2.img"
t_run "pc2's volume equals pc1@1 byte for byte" cmp "$D/pc1-1.img" "$D/pc2.img"
t_run "pc1's file is on pc2's ext4" in_mountns pc2 "
mount -o ro \"\$loop\" \"$D/mnt\"
grep -qx 'written on pc1' \"$D/mnt/hello.txt\"
cmp \"$D/payload\" \"$D/mnt/payload\"
umount \"$D/mnt\""
is "$(state pc2 | jq -c .hydrate)" null "the order is cleared"
like "$(ctl show pc2)" "pending order: +-" "goldctl machine show: no pending order"
no_lun3() { ! has_lun pc2 3; }
wait_for 30 no_lun3
ok $? "LUN 3 is gone from pc2's target"
wait_for 30 sh -c "! test -e '$D/state/restore/pc1@1.img'"
ok $? "and its file is removed"
is "$(goldagent status --json --cache "$D/a/pc2.img" | jq -c '[.restore_order, .dirty_blocks]')" \
	'[null,0]' "no restore marker, nothing dirty"

# 4. pc2's next sync commits against base pc1@1: only its own change travels
t_run "pc2 writes 64 KiB" qemu-io -f raw -c "write -P 0x77 40M 64K" "$(vol pc2)"
stop
sync_now pc2 >"$D/sync2.out" 2>&1
is "$?" 0 "pc2 syncs: snapshot 1"
like "$(cat "$D/sync2.out")" "65536 bytes sent" "only the changed 64 KiB is sent"
t_run "export pc2@1" goldctl --store "$D/store" machine export pc2@1 "$D/pc2-1.img"
cp "$D/pc1-1.img" "$D/want.img"
perl -e 'print "\x77" x 65536' | dd of="$D/want.img" bs=64K seek=640 conv=notrunc status=none
t_run "pc2@1 is pc1@1 plus pc2's change (base pc1@1)" cmp "$D/want.img" "$D/pc2-1.img"

# 5. reset (fresh): a zero volume; reset --to 1: pc2@1
t_run "goldctl machine reset pc2" ctl reset pc2
boot pc2 "$D/pc2-reset.log"
up pc2
ok $? "attach after the reset"
t_run "the volume is all zeros" qemu-io -f raw -c "read -P 0 0 64M" "$(vol pc2)"
is "$(state pc2 | jq -c .hydrate)" null "the reset order is cleared"
t_run "pc2 writes 4 KiB" qemu-io -f raw -c "write -P 0x42 1M 4K" "$(vol pc2)"
stop
sync_now pc2 >"$D/sync3.out" 2>&1
is "$?" 0 "pc2 syncs: snapshot 2 (no base)"
like "$(cat "$D/sync3.out")" "65536 bytes sent" "only the written block is sent, no full commit"
t_run "export pc2@2" goldctl --store "$D/store" machine export pc2@2 "$D/pc2-2.img"
head -c "$VOL" /dev/zero >"$D/want2.img"
perl -e 'print "\x42" x 4096' | dd of="$D/want2.img" bs=4K seek=256 conv=notrunc status=none
t_run "pc2@2 is zeros plus the write" cmp "$D/want2.img" "$D/pc2-2.img"
t_run "goldctl machine reset pc2 --to 1" ctl reset pc2 --to 1
wait_for 60 order_ready pc2
ok $? "LUN 3 serves pc2@1"
boot pc2 "$D/pc2-to.log"
up pc2
ok $? "attach after reset --to 1"
t_run "read pc2's volume" nbdcopy "$(vol pc2)" "$D/pc2b.img"
t_run "it equals pc2@1" cmp "$D/pc2-1.img" "$D/pc2b.img"
stop

# 6. kill -9 mid-restore (a couple here, more in check-full); offline refusal
kills=2
[ -n "${GC_FULL:-}" ] && kills=10
marked=0
for i in $(seq "$kills"); do
	ctl restore pc2 --from pc1 >/dev/null || bail "restore order $i"
	wait_for 60 order_ready pc2 || bail "LUN 3 for order $i"
	boot pc2 "$D/kill$i.log" GOLDAGENT_TEST_CHUNK_DELAY_MS=15
	wait_for 60 grep -q "the machine volume becomes pc1@1" "$D/kill$i.log" || bail "restore $i"
	[ "$i" -gt 1 ] && sleep "0.$((RANDOM % 8))"
	kill -KILL "$AP"
	wait "$AP" 2>/dev/null
	if [ "$(goldagent status --json --cache "$D/a/pc2.img" | jq .restore_order)" != null ]; then
		marked=$((marked + 1))
		if [ "$i" = 1 ]; then
			goldagent attach --appliance "http://127.0.0.1:$(free_port)" --machine pc2 \
				--mode cache --cache "$D/a/pc2.img" --run-dir "$D/run-off" \
				--state-dir "$D/a" --timeout 2 >"$D/off.log" 2>&1
			ok "$([ $? -ne 0 ]; echo $?)" "offline with a half-restored volume: refused"
			like "$(cat "$D/off.log")" "half-restored" "and it says why"
			ok "$([ ! -S "$D/run-off/volume.sock" ]; echo $?)" "nothing served"
			sync_now pc2 >"$D/sync-half.log" 2>&1
			ok "$([ $? -ne 0 ]; echo $?)" "a sync of the half-restored volume is refused"
			like "$(cat "$D/sync-half.log")" "half-restored" "and says why"
		fi
	fi
	boot pc2 "$D/re$i.log"
	up pc2 || diag "$(tail -5 "$D/re$i.log")"
	nbdcopy "$(vol pc2)" "$D/pc2k.img"
	stop
	cmp -s "$D/pc1-1.img" "$D/pc2k.img" || diag "kill $i: volume differs after re-attach"
	cmp -s "$D/pc1-1.img" "$D/pc2k.img" && [ "$(state pc2 | jq -c .hydrate)" = null ] ||
		break
done
is "$i" "$kills" "after $kills kill -9 mid-restore, each re-attach completes: volume = pc1@1, order cleared"
ok "$([ "$marked" -ge 1 ]; echo $?)" "the marker was set after a kill ($marked of $kills)"

# 6b. the order replaced while the agent restores: the new one is carried out
ctl restore pc2 --from pc1 >/dev/null || bail "restore order"
wait_for 60 order_ready pc2 || bail "LUN 3 for the replaced order"
boot pc2 "$D/replaced.log" GOLDAGENT_TEST_CHUNK_DELAY_MS=100
wait_for 60 grep -q "the machine volume becomes pc1@1" "$D/replaced.log" || bail "restore"
t_run "goldctl machine reset pc2 --to 1 while pc2 restores pc1@1" ctl reset pc2 --to 1
up pc2
ok $? "the attach serves the volume"
like "$(cat "$D/replaced.log")" "order [0-9]+ was replaced" "the agent noticed the replacement"
t_run "read pc2's volume" nbdcopy "$(vol pc2)" "$D/pc2r.img"
t_run "it is the new order's snapshot, pc2@1" cmp "$D/pc2-1.img" "$D/pc2r.img"
is "$(state pc2 | jq -c .hydrate)" null "the new order is cleared"
stop

# 7. a tampered byte in the LUN file is detected; a goldcached restart with the
# order pending exports the snapshot again
t_run "restore pc2 --from pc1 again" ctl restore pc2 --from pc1
wait_for 60 order_ready pc2 || bail "LUN 3 for the tamper test"
# flip one byte of ext4's superblock (chunk 0, never a zero chunk)
printf '\xff' | dd of="$D/state/restore/pc1@1.img" bs=1 seek=1100 conv=notrunc status=none
boot pc2 "$D/tamper.log"
wait "$AP"
ok "$([ $? -ne 0 ]; echo $?)" "attach with a tampered LUN file fails"
like "$(cat "$D/tamper.log")" "chunk 0 at offset 0 of pc1@1 read from the restore LUN does not match" \
	"the tampered chunk is named"
is "$(goldagent status --json --cache "$D/a/pc2.img" | jq -c '.restore_order != null')" true \
	"the volume stays marked half-restored"
is "$(state pc2 | jq -r .hydrate.kind)" restore "the order stays pending"
attach_gc_stop
rm -f "$D/state/restore/pc1@1.img"
attach_gc_start "$D" || bail "goldcached restart"
wait_for 60 has_lun pc2 1 || bail "no gold LUN on pc2's target after the restart"
wait_for 60 order_ready pc2
ok $? "after a restart with the order pending, LUN 3 is back"
boot pc2 "$D/after.log"
up pc2
ok $? "the attach now completes the restore"
t_run "read pc2's volume" nbdcopy "$(vol pc2)" "$D/pc2c.img"
t_run "it equals pc1@1" cmp "$D/pc1-1.img" "$D/pc2c.img"
stop

# 8. a snapshot larger than the machine's volume: refused, the order stays
t_run "restore pc3 (32M volume) --from pc1 (64M)" ctl restore pc3 --from pc1
boot pc3 "$D/pc3.log"
wait "$AP"
ok "$([ $? -ne 0 ]; echo $?)" "pc3's attach refuses"
like "$(cat "$D/pc3.log")" "larger than this machine's" "and says the snapshot does not fit"
is "$(state pc3 | jq -r .hydrate.from)" pc1 "the order stays pending"
is "$(goldagent status --json --cache "$D/a/pc3.img" | jq -c .restore_order)" null \
	"pc3's volume was not touched (no marker)"

attach_gc_stop
done_testing
