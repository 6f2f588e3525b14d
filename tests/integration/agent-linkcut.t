#!/usr/bin/env bash
# The link between goldagent and the appliance cut mid-hydration and mid-sync,
# two ways: the agent's veth taken down, and an nftables rule in the agent's
# namespace dropping everything to the appliance. goldcached (its tgtd, its
# API) runs in one network namespace, goldagent in another, a veth pair
# between them (rate-limited so the transfers are still running at the cut).
# Each time the agent notices the stall (its iSCSI command deadline), logs a
# retry with backoff, reconnects after the link is back and completes: the
# hydrated cache's gold export equals `goldctl image export`, status says
# 100 %; the synced snapshot equals the volume. Meanwhile goldcached keeps
# serving others (API, another machine's target), and a sync whose agent dies
# while the link is cut never becomes a snapshot. Last, `goldagent attach`:
# an NBD read of the gold export waits through the cut and completes, while
# the machine volume (local) stays usable. And an idle `goldagent attach`
# (nothing read) probes its session with NOP-Outs: a cut is noticed with no
# request out, the session is reopened once the link is back, and the first
# read after it finds a live session.
# Cut durations are inputs (LINKCUT_S, default 12 s: longer than the agent's
# 10 s command deadline), never checked; the time from the link's return to
# the transfer moving again is printed. make check cuts hydration by link
# down and sync by nftables drop; check-full (GC_FULL=1) does both kinds to both.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-netcut.sh"
. "$GC_SRC/tests/lib-agent.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm ss cmp nbdcopy qemu-io iscsi-inq \
	ip nft tc pgrep

D=$T_DIR
MB=1048576
CUT=${LINKCUT_S:-12}
mkdir -p "$D/a" "$D/b"
head -c $((128 * MB)) /dev/urandom >"$D/gold.img"
netcut_lab "$D" "$D/gold.img" || bail "cannot set up the two namespaces and the appliance config"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
netcut_gc_start "$D" || bail "goldcached did not start in namespace $NC_APP"
goldctl --store "$D/store" image export deb "$D/want.img" >/dev/null || bail "export"
for m in pc1 pc2; do
	in_app goldctl machine token $m --url "$URL" --token-file "$ADMIN" >"$D/$m.token" || bail "token $m"
done
cp "$D/pc1.token" "$D/a/"
cp "$D/pc2.token" "$D/b/"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }
present() { goldagent status --json --cache "$1" 2>/dev/null | jq -r '.slots[0].present // 0'; }
cut() { if [ "$1" = link ]; then netcut_link_down; else netcut_drop_on; fi; }
heal() { if [ "$1" = link ]; then netcut_link_up; else netcut_drop_off; fi; }
what() { if [ "$1" = link ]; then echo "link down"; else echo "nftables drop"; fi; }
# the appliance serves others while this agent's link is cut: its API, and a
# login + INQUIRY on pc3's target from the appliance's side
others_served() {
	in_app curl -sf "$URL/api/v1/health" >/dev/null &&
		in_app timeout 20 iscsi-inq -i "$PREFIX:i.pc3" \
			"iscsi://pc3%$(cat "$D/state/secrets/pc3.chap")@$NC_APP_ADDR:$ISCSI_PORT/$PREFIX:m.pc3/1" \
			>/dev/null
}
# gold_of CACHE OUT: the cache's gold export read through its NBD socket
gold_of() {
	agent_serve "$D/serve.log" --cache "$1" --gold-socket "$D/g.sock" &&
		nbdcopy "nbd+unix:///gold?socket=$D/g.sock" "$2" && agent_stop
}

# ---- mid-hydration: appliance -> agent at 100 Mbit/s (128 MiB: ~11 s) ----
netcut_rate "$NC_APP" "$NC_APP_IF" 100mbit || bail "tc tbf on $NC_APP_IF"
hydrate_cut() { # KIND DIR MACHINE
	local kind=$1 dir=$2 m=$3 hp t_cut t_heal t_moving p0 rc
	ip netns exec "$NC_AG" goldagent hydrate --cache "$dir/c.img" --appliance "$URL" --machine "$m" \
		--state-dir "$dir" --commit-every 4M >"$dir/hydrate.log" 2>&1 &
	hp=$!
	track "$hp"
	wait_for 60 sh -c "[ \"\$(goldagent status --json --cache '$dir/c.img' 2>/dev/null |
		jq -r '.slots[0].present // 0')\" -ge 16 ]"
	p0=$(present "$dir/c.img")
	ok "$([ "$p0" -ge 16 ] && [ "$p0" -lt 128 ] && kill -0 "$hp"; echo $?)" \
		"$(what "$kind"): hydration of $m is running ($p0 of 128 chunks) when the link is cut"
	t_cut=$(now)
	cut "$kind" || bail "cannot cut the link ($kind)"
	sleep "$CUT"
	t_run "$(what "$kind"): goldcached still serves its API and another machine's target" others_served
	p0=$(present "$dir/c.img")
	t_heal=$(now)
	heal "$kind" || bail "cannot restore the link ($kind)"
	t_moving=
	while kill -0 "$hp" 2>/dev/null; do
		if [ -z "$t_moving" ] && [ "$(present "$dir/c.img")" -gt "$p0" ]; then
			t_moving=$(now)
		fi
		sleep 0.2
	done
	wait "$hp"
	rc=$?
	is "$rc" 0 "$(what "$kind"): goldagent hydrate completes after the link is back"
	[ "$rc" = 0 ] || sed 's/^/#   /' "$dir/hydrate.log" | tail -n 20
	like "$(cat "$dir/hydrate.log")" "(timed out|failed).*reconnecting in [0-9]+ ms" \
		"$(what "$kind"): the stall was noticed and a reconnection with backoff logged"
	is "$(agent_json_field "$dir/c.img" '.slots[0].hydrated_pct')" 100 \
		"$(what "$kind"): status says 100 %"
	gold_of "$dir/c.img" "$dir/got.img" || bail "cannot read the gold export of $dir/c.img"
	t_run "$(what "$kind"): the cache's gold export equals goldctl image export" \
		cmp "$D/want.img" "$dir/got.img"
	diag "$(what "$kind") mid-hydration: cut $(secs "$t_cut" "$t_heal") s;" \
		"chunks stored again $( [ -n "$t_moving" ] && secs "$t_heal" "$t_moving" || echo '?') s after the link was back;" \
		"$(grep -o 'reconnects, [0-9]* ms' "$dir/hydrate.log" | tail -n1 | sed 's/reconnects, //') total"
	rm -f "$dir/got.img"
}
hydrate_cut link "$D/a" pc1
[ "${GC_FULL:-0}" = 1 ] && hydrate_cut drop "$D/b" pc2
in_app tc qdisc del dev "$NC_APP_IF" root

# ---- mid-sync: agent -> appliance at 40 Mbit/s (48 MiB dirty: ~10 s) ----
netcut_rate "$NC_AG" "$NC_AG_IF" 40mbit || bail "tc tbf on $NC_AG_IF"
head -c $((48 * MB)) /dev/urandom >"$D/dirty.img"
volume_of() { # CACHE OUT
	agent_serve "$D/serve.log" --cache "$1" --volume-socket "$D/v.sock" &&
		nbdcopy "nbd+unix:///volume?socket=$D/v.sock" "$2" && agent_stop
}
# dirty PATTERN: 48 MiB of new data over the whole volume, through NBD
dirty() {
	agent_serve "$D/serve.log" --cache "$D/a/c.img" --volume-socket "$D/v.sock" || return 1
	qemu-io -f raw -c "write -s $D/dirty.img $(($1 * MB)) 48M" \
		"nbd+unix:///volume?socket=$D/v.sock" >/dev/null || return 1
	qemu-io -f raw -c "write -P $1 $((200 * MB)) 1M" "nbd+unix:///volume?socket=$D/v.sock" \
		>/dev/null || return 1
	agent_stop
}
# snapshots of pc1 (goldctl says "has no snapshot" and fails before the first)
snaps() {
	local n
	n=$(goldctl --store "$D/store" --json machine snapshots pc1 2>/dev/null | jq length)
	echo "${n:-0}"
}
sent() { ip netns exec "$NC_AG" tc -s qdisc show dev "$NC_AG_IF" | awk '/Sent/ {print $2; exit}'; }
sync_cut() { # KIND ROUND
	local kind=$1 n=$2 sp t_cut t_heal t_done before s0 rc
	dirty "$n" || bail "cannot write to the volume"
	before=$(snaps)
	s0=$(sent)
	ip netns exec "$NC_AG" goldagent sync --cache "$D/a/c.img" --appliance "$URL" \
		--machine pc1 --state-dir "$D/a" >"$D/sync$n.out" 2>"$D/sync$n.err" &
	sp=$!
	track "$sp"
	wait_for 60 sh -c "[ \$(ip netns exec '$NC_AG' tc -s qdisc show dev '$NC_AG_IF' |
		awk '/Sent/ {print \$2; exit}') -ge $((s0 + 8 * MB)) ]"
	ok "$(kill -0 "$sp"; echo $?)" \
		"$(what "$kind"): goldagent sync is uploading ($(($(sent) - s0)) bytes sent) when the link is cut"
	t_cut=$(now)
	cut "$kind" || bail "cannot cut the link ($kind)"
	sleep "$CUT"
	t_run "$(what "$kind"): goldcached still serves its API and another machine's target" others_served
	is "$(snaps)" "$before" "$(what "$kind"): no snapshot from the cut upload"
	t_heal=$(now)
	heal "$kind" || bail "cannot restore the link ($kind)"
	wait "$sp"
	rc=$?
	t_done=$(now)
	is "$rc" 0 "$(what "$kind"): goldagent sync completes after the link is back"
	[ "$rc" = 0 ] || sed 's/^/#   /' "$D/sync$n.err" | tail -n 20
	like "$(cat "$D/sync$n.err")" "attempt [2-9]" "$(what "$kind"): the upload was retried"
	is "$(snaps)" "$((before + 1))" "$(what "$kind"): exactly one new snapshot"
	is "$(agent_json_field "$D/a/c.img" .dirty_blocks)" 0 "$(what "$kind"): nothing left dirty"
	goldctl --store "$D/store" machine export --force pc1 "$D/snap.img" >/dev/null || bail "export"
	volume_of "$D/a/c.img" "$D/vol.img" || bail "cannot read the volume"
	t_run "$(what "$kind"): the snapshot equals the volume" cmp "$D/vol.img" "$D/snap.img"
	diag "$(what "$kind") mid-sync: cut $(secs "$t_cut" "$t_heal") s; sync done" \
		"$(secs "$t_heal" "$t_done") s after the link was back; $(sed -n 's/.*\(upload [0-9]* ms, commit [0-9]* ms, [0-9]* attempts\)/\1/p' "$D/sync$n.out")"
	rm -f "$D/snap.img" "$D/vol.img"
}
[ "${GC_FULL:-0}" = 1 ] && sync_cut link 1
sync_cut drop 2

# ---- the agent dies while the link is cut mid-upload: no snapshot from it ----
dirty 3 || bail "cannot write to the volume"
before=$(snaps)
s0=$(sent)
ip netns exec "$NC_AG" goldagent sync --cache "$D/a/c.img" --appliance "$URL" --machine pc1 \
	--state-dir "$D/a" >"$D/sync3.out" 2>&1 &
sp=$!
track "$sp"
wait_for 60 sh -c "[ \$(ip netns exec '$NC_AG' tc -s qdisc show dev '$NC_AG_IF' |
	awk '/Sent/ {print \$2; exit}') -ge $((s0 + 8 * MB)) ]"
netcut_drop_on || bail "cannot cut the link"
sleep 1
kill -9 "$sp"
wait "$sp" 2>/dev/null
netcut_drop_off || bail "cannot restore the link"
dirty_before=$(agent_json_field "$D/a/c.img" .dirty_blocks)
ok "$([ "$dirty_before" -gt 0 ]; echo $?)" "the killed sync cleared no dirty bit ($dirty_before dirty blocks)"
is "$(snaps)" "$before" "a half-finished upload never becomes a snapshot"
in_ag goldagent sync --cache "$D/a/c.img" --appliance "$URL" --machine pc1 --state-dir "$D/a" \
	>"$D/sync4.out" 2>&1
is "$?" 0 "the next sync completes"
goldctl --store "$D/store" machine export --force pc1 "$D/snap.img" >/dev/null || bail "export"
volume_of "$D/a/c.img" "$D/vol.img" || bail "cannot read the volume"
t_run "its snapshot equals the volume" cmp "$D/vol.img" "$D/snap.img"
t_run "cache check passes" goldagent cache check "$D/a/c.img"

# ---- goldagent attach (the NBD serve loop): gold reads wait through the cut ----
in_ag tc qdisc del dev "$NC_AG_IF" root
netcut_rate "$NC_APP" "$NC_APP_IF" 100mbit || bail "tc tbf on $NC_APP_IF"
mkdir -p "$D/c"
in_app goldctl machine token pc3 --url "$URL" --token-file "$ADMIN" >"$D/c/pc3.token" || bail "token pc3"
RUN=$D/run
ip netns exec "$NC_AG" goldagent attach --appliance "$URL" --machine pc3 --mode cache \
	--cache "$D/c/c.img" --run-dir "$RUN" --no-hydrate --sync-interval 0 >"$D/attach.log" 2>&1 &
AP=$!
track "$AP"
wait_for 30 test -S "$RUN/volume.sock" || bail "goldagent attach did not come up"
nbdcopy "nbd+unix:///gold?socket=$RUN/gold.sock" "$D/c/got.img" 2>"$D/c/nbdcopy.err" &
cp=$!
track "$cp"
wait_for 60 sh -c "[ \"\$(goldagent status --json --cache '$D/c/c.img' 2>/dev/null |
	jq -r '.slots[0].present // 0')\" -ge 16 ]"
p0=$(present "$D/c/c.img")
ok "$([ "$p0" -lt 128 ] && kill -0 "$cp"; echo $?)" \
	"attach: a gold export read is running ($p0 of 128 chunks in the cache) when the link is cut"
t_cut=$(now)
netcut_drop_on || bail "cannot cut the link"
# the session is declared lost at its command deadline, then reopened with
# backoff: the volume is used while those logins go unanswered
wait_for 60 grep -q "session lost" "$D/attach.log"
ok $? "attach: the stalled session is declared lost while the link is still cut"
sleep 2
t0=$(now)
t_run "attach: the machine volume stays writable and readable meanwhile" \
	qemu-io -f raw -c "write -P 7 0 64k" -c "read -P 7 0 64k" "nbd+unix:///volume?socket=$RUN/volume.sock"
t1=$(now)
sleep 2
t_heal=$(now)
netcut_drop_off || bail "cannot restore the link"
wait "$cp"
is "$?" 0 "attach: the gold export read completes after the link is back"
t_done=$(now)
t_run "attach: it equals goldctl image export" cmp "$D/want.img" "$D/c/got.img"
like "$(cat "$D/attach.log")" "session back after" "attach: and reopened"
diag "attach: nftables drop $(secs "$t_cut" "$t_heal") s; the read done $(secs "$t_heal" "$t_done") s" \
	"after the link was back; a volume write+read during the cut took $(secs "$t0" "$t1") s"
kill -TERM "$AP"
wait "$AP"
is "$?" 0 "attach stops cleanly"

# ---- an idle session is probed (NOP-Out): a cut while nothing is read is
# noticed, and the session is back by itself before the first request ----
mkdir -p "$D/d"
cp "$D/c/pc3.token" "$D/d/"
RUN=$D/run-idle
# (debug log: the probes' lines)
GOLDCACHE_DEBUG=1 ip netns exec "$NC_AG" goldagent attach --appliance "$URL" --machine pc3 \
	--mode cache --cache "$D/d/c.img" --run-dir "$RUN" --no-hydrate --sync-interval 0 \
	>"$D/idle.log" 2>&1 &
AP=$!
track "$AP"
wait_for 30 test -S "$RUN/gold.sock" || bail "goldagent attach (idle) did not come up"
wait_for 60 grep -q "NOP-Out answered" "$D/idle.log"
ok $? "idle: with the link up the idle session's NOP-Out is answered"
is "$(grep -c "session lost" "$D/idle.log")" 0 "idle: and the session is kept"
diag "idle: $(grep -m1 -o 'NOP-Out answered.*' "$D/idle.log")"
t_cut=$(now)
netcut_drop_on || bail "cannot cut the link"
wait_for 90 grep -q "no answer to a NOP-Out" "$D/idle.log"
ok $? "idle: the probe notices the silent link with no request out (a NOP-Out unanswered)"
like "$(cat "$D/idle.log")" "session lost .*reconnecting in [0-9]+ ms" \
	"idle: the session is declared lost and reopened in the background"
t_lost=$(now)
lost=$(grep -c "session lost" "$D/idle.log")
sleep 2
t_heal=$(now)
netcut_drop_off || bail "cannot restore the link"
wait_for 90 grep -q "session back after [0-9]* ms; re-issuing 0 waiting" "$D/idle.log"
ok $? "idle: the session is back by itself after the link is, with no request waiting"
t_back=$(now)
t_run "idle: the first gold read after the cut is served" \
	qemu-io -f raw -r -c "read 0 1M" "nbd+unix:///gold?socket=$RUN/gold.sock"
is "$(grep -c "session lost" "$D/idle.log")" "$lost" "idle: that read found the session alive (no new loss)"
diag "idle: the cut noticed $(secs "$t_cut" "$t_lost") s after it; the session back" \
	"$(secs "$t_heal" "$t_back") s after the link"
kill -TERM "$AP"
wait "$AP"
is "$?" 0 "attach (idle) stops cleanly"
done_testing
