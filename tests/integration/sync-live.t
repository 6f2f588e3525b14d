#!/usr/bin/env bash
# Live sync: `goldagent serve` with a sync interval, against the real
# goldcached and tgtd, while a writer keeps writing through NBD. The writer
# writes a sequence of records (record i: slot i mod M, pattern = its round);
# every snapshot taken meanwhile must hold one prefix of that sequence (a
# consistent image: the volume at the pause point), the rest of the volume as
# filled before; the last one equals the volume; some sync needed more than
# one pass (writes landed during it) and writes were paused only for the
# final pass; `goldagent status` reports the last one's bytes and pause. Then: tgtd killed during a live sync's upload (retried with
# backoff, completes); goldcached killed and restarted while the agent polls
# its commit (the durable record answers, the agent commits again or takes
# the done); kill -9 of the serving agent during live syncs (2 rounds; 50
# with GC_FULL=1): no dirty block lost (a re-sync's snapshot equals the volume).
# The ASan pass (GC_SAN=1) runs the short variant: the fill and the live
# syncs under a writer with a third of the writes, then stops, so the
# threaded uploader and the write pause run under ASan+UBSan in make check;
# the peer-killing parts (3-5) run in the plain pass only.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
. "$GC_SRC/tests/lib-agent.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm nbdcopy qemu-io perl pgrep cmp

D=$T_DIR
MB=1048576
mkdir -p "$D/a"
head -c $((4 * MB)) /dev/urandom >"$D/gold.img"
attach_lab "$D" "$D/gold.img" || bail "lab"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
goldctl machine token pc1 --url "$URL" --token-file "$ADMIN" >"$D/a/pc1.token" || bail "token"
TOKEN=$(cat "$D/a/pc1.token")
AG=(--cache "$D/a/c.img" --appliance "$URL" --machine pc1 --state-dir "$D/a")
goldagent hydrate "${AG[@]}" >/dev/null 2>&1 || bail "hydrate"
VOL="nbd+unix:///volume?socket=$D/v.sock"
serve() { agent_serve "$D/serve.log" "${AG[@]}" --volume-socket "$D/v.sock" "$@"; }
volume() { serve && nbdcopy "$VOL" "$1" && agent_stop; }
dirty() { agent_json_field "$D/a/c.img" .dirty_blocks; }
nodirty() { [ "$(dirty)" = 0 ]; }
commits() { grep -c "committed:" "$D/serve.log"; }
lun_ready() { [ -n "$(attach_lun_path "$D" pc1 2)" ]; }
# gc_restart: attach_gc_start, with more patience on a loaded machine
gc_restart() {
	attach_gc_start "$D" && return 0
	wait_for 60 curl -sf "$URL/api/v1/health" && wait_for 60 lun_ready
}
newest() { goldctl --store "$D/store" --json machine snapshots pc1 | jq -r '.[-1].snapshot'; }

# 1. the whole volume filled (64 MiB dirty), with no sync running
head -c $((64 * MB)) /dev/urandom >"$D/fill.img"
serve || bail "serve"
t_run "fill the volume through NBD" nbdcopy "$D/fill.img" "$VOL"
agent_stop

# 2. syncs every second while the writer runs
M=32
ROUNDS=60
[ "${GC_SAN:-}" = 1 ] && ROUNDS=20
slot_off() { echo $(($1 * MB + ($1 % 16) * 65536 + 4096)); }
writer() {
	local i j r
	for ((i = 0; i < M * ROUNDS; i++)); do
		j=$((i % M))
		r=$((i / M + 1))
		echo "write -P $r $(slot_off $j) 4k"
		((i % 4 == 3)) && sleep 0.01
	done | qemu-io -f raw "$VOL" >"$D/writer.log" 2>&1
}
: >"$D/serve.log"
GOLDAGENT_TEST_CHUNK_DELAY_MS=10 serve --sync-interval 1 || bail "serve"
writer
is "$(grep -c '^qemu-io> wrote 4096/4096' "$D/writer.log")" $((M * ROUNDS)) \
	"the writer's $((M * ROUNDS)) writes were all acknowledged"
wait_for 120 nodirty
ok $? "the syncs catch up: nothing dirty after the writer stopped"
agent_stop
volume "$D/vol2.img" || bail "read volume"
t_run "the newest snapshot equals the volume" \
	bash -c "goldctl --store '$D/store' machine export --force pc1@$(newest) '$D/snap.img' && cmp '$D/vol2.img' '$D/snap.img'"
# prefix: rounds r_0 >= r_1 >= ... >= r_{M-1} >= r_0 - 1 (a slot still
# holding the fill is round 0); everything outside the slots is the fill
check_prefix() {
	perl -e '
		my ($snap, $fill, $m, $mb) = @ARGV;
		open(my $s, "<", $snap) or die; binmode $s; local $/; my $a = <$s>;
		open(my $f, "<", $fill) or die; binmode $f; my $b = <$f>;
		my @r;
		for my $j (0 .. $m - 1) {
			my $off = $j * $mb + ($j % 16) * 65536 + 4096;
			my $x = substr($a, $off, 4096);
			if ($x eq substr($b, $off, 4096)) { push @r, 0; }
			elsif ($x eq chr(ord($x)) x 4096) { push @r, ord($x); }
			else { print "slot $j torn\n"; exit 1; }
			substr($a, $off, 4096) = substr($b, $off, 4096);
		}
		if ($a ne $b) { print "data outside the slots differs from the fill\n"; exit 1; }
		for my $j (1 .. $m - 1) {
			if ($r[$j] > $r[$j - 1] || $r[$j] < $r[0] - 1) {
				print "rounds not a prefix: @r\n"; exit 1;
			}
		}
		print "rounds @r\n";' "$1" "$D/fill.img" "$M" "$MB"
}
ids=$(goldctl --store "$D/store" --json machine snapshots pc1 | jq -r '.[].snapshot')
bad=0 n=0
for id in $ids; do
	goldctl --store "$D/store" machine export --force "pc1@$id" "$D/s.img" >/dev/null || bad=$((bad + 1))
	out=$(check_prefix "$D/s.img") || bad=$((bad + 1))
	echo "# snapshot $id: $out"
	n=$((n + 1))
done
is "$bad" 0 "each of the $n snapshots kept holds one prefix of the writer's sequence"
like "$(grep 'committed:' "$D/serve.log")" "in ([2-9]|[1-9][0-9]+) passes" \
	"a sync made more than one pass (writes landed while it uploaded)"
like "$(grep 'committed:' "$D/serve.log")" "writes paused [0-9]+ ms" "the pause is logged"
# status: the last commit's bytes sent and write pause, as its log line says
last=$(grep 'committed:' "$D/serve.log" | tail -n 1)
is "$(agent_json_field "$D/a/c.img" '[.last_sync_snapshot, .last_sync_bytes, .last_sync_pause_ms] | @tsv')" \
	"$(sed -n 's/.*snapshot \([0-9]*\) committed: .*, \([0-9]*\) bytes sent .*writes paused \([0-9]*\) ms.*/\1\t\2\t\3/p' <<<"$last")" \
	"goldagent status: the last sync's snapshot, bytes sent and write pause"
grep 'committed:' "$D/serve.log" | sed 's/.*sync: /# /'
if [ "${GC_SAN:-}" = 1 ]; then # the short variant (see the top)
	t_run "cache check passes" goldagent cache check "$D/a/c.img"
	attach_gc_stop
	done_testing
	exit
fi

# 3. tgtd killed during a live sync's upload: retried with backoff, completes
: >"$D/serve.log"
GOLDAGENT_TEST_CHUNK_DELAY_MS=100 serve --sync-interval 1 || bail "serve"
head -c $((16 * MB)) /dev/urandom >"$D/r3.img"
t_run "16 MiB written" qemu-io -f raw -c "write -s $D/r3.img $((8 * MB)) $((16 * MB))" "$VOL"
wait_for 30 grep -q "dirty blocks" "$D/serve.log"
sleep 0.3
tp=$(pgrep -P "$GC_PID" -x tgtd | head -n1)
[ -n "$tp" ] && kill -9 "$tp"
wait_for 120 nodirty
ok $? "the sync completes after tgtd was killed"
like "$(cat "$D/serve.log")" "attempt [2-9]" "after a retry with backoff"
agent_stop
volume "$D/vol3.img" || bail "read volume"
t_run "the snapshot equals the volume" \
	bash -c "goldctl --store '$D/store' machine export --force pc1@$(newest) '$D/snap.img' && cmp '$D/vol3.img' '$D/snap.img'"

# 4. goldcached killed (-9) and restarted while the agent polls its commit
: >"$D/serve.log"
serve --sync-interval 1 || bail "serve"
head -c $((32 * MB)) /dev/urandom >"$D/r4.img"
t_run "32 MiB written" qemu-io -f raw -c "write -s $D/r4.img $((24 * MB)) $((32 * MB))" "$VOL"
state=
for _ in $(seq 600); do
	state=$(curl -sS -H "Authorization: Bearer $TOKEN" "$URL/api/v1/machines/pc1/commit" | jq -r .state)
	[ "$state" = running ] && break
	sleep 0.02
done
{
	kill -KILL "$GC_PID"
	wait "$GC_PID"
} 2>/dev/null
diag "goldcached killed while the commit was: $state"
gc_restart || bail "goldcached did not restart"
wait_for 120 nodirty
ok $? "the agent's sync completes across the restart"
like "$(cat "$D/serve.log")" "cannot poll|posting again|committed:" "it polled through the restart"
grep -E "cannot poll|posting again|committed:" "$D/serve.log" | tail -n 3 | sed 's/.*sync: /# /'
agent_stop
volume "$D/vol4.img" || bail "read volume"
t_run "the snapshot equals the volume" \
	bash -c "goldctl --store '$D/store' machine export --force pc1@$(newest) '$D/snap.img' && cmp '$D/vol4.img' '$D/snap.img'"

# 5. kill -9 of the serving agent during live syncs: no dirty block lost
rounds=2
[ "${GC_FULL:-0}" = 1 ] && rounds=50
bad=0 landed=0
for r in $(seq "$rounds"); do
	: >"$D/serve.log"
	GOLDAGENT_TEST_CHUNK_DELAY_MS=20 serve --sync-interval 1 || bail "serve"
	for _ in $(seq 24); do
		echo "write -P $((RANDOM % 250 + 1)) $(((RANDOM % 1000) * 65536)) $(((RANDOM % 4 + 1) * 16384))"
		sleep 0.05
	done | qemu-io -f raw "$VOL" >/dev/null 2>&1 &
	wp=$!
	wait_for 30 grep -q "dirty blocks" "$D/serve.log"
	sleep "0.$((RANDOM % 10))" # during a pass, the pause or the commit
	grep -q "committed:" "$D/serve.log" || landed=$((landed + 1))
	agent_kill
	wait "$wp" 2>/dev/null
	goldagent sync "${AG[@]}" >/dev/null 2>&1 || bad=$((bad + 10))
	goldctl --store "$D/store" machine export --force "pc1@$(newest)" "$D/snapk.img" >/dev/null 2>&1 ||
		bad=$((bad + 1000))
	volume "$D/volk.img" || bail "read volume"
	cmp -s "$D/volk.img" "$D/snapk.img" || bad=$((bad + 10000))
	[ "$(dirty)" = 0 ] || bad=$((bad + 100))
done
is "$bad" 0 "kill -9 during live syncs ($landed of $rounds before a commit): no dirty block lost, the re-sync's snapshot equals the volume"
t_run "cache check passes" goldagent cache check "$D/a/c.img"
attach_gc_stop
done_testing
