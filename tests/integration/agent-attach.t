#!/usr/bin/env bash
# goldagent against the real goldcached and tgtd on loopback: hydrate over
# iSCSI (the machine's own target, initiator name, CHAP secret from GET
# .../iscsi with its token) gives a gold export byte-identical to `goldctl
# image export`; kill -9 during hydration resumes without re-fetching
# verified chunks; tgtd killed mid-hydration is survived (reconnect with
# backoff after goldcached restarts it); a tampered chunk in the appliance's
# export file is rejected and never present; offline: complete cache served,
# incomplete refused; enrollment writes a 0600 token file.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
. "$GC_SRC/tests/lib-agent.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm ss cmp nbdcopy pgrep

D=$T_DIR
MB=1048576
mkdir -p "$D/a"
# 40 MiB gold: random chunks with a few zero ones
head -c $((40 * MB)) /dev/urandom >"$D/gold.img"
for i in 3 17 18; do dd if=/dev/zero of="$D/gold.img" bs=1M seek=$i count=1 conv=notrunc status=none; done
attach_lab "$D" "$D/gold.img" || bail "lab"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
goldctl --store "$D/store" image export deb "$D/want.img" >/dev/null || bail "export"
goldctl machine token pc1 --url "$URL" --token-file "$ADMIN" >"$D/a/pc1.token" || bail "token"
AG=(--appliance "$URL" --machine pc1)
hyd() { goldagent hydrate --cache "$1" "${AG[@]}" --state-dir "$D/a" "${@:2}"; }
# hyd_bg: the same, to be started with & (exec: $! is goldagent's own pid)
hyd_bg() { exec goldagent hydrate --cache "$1" "${AG[@]}" --state-dir "$D/a" "${@:2}"; }
fetched() { sed -n 's/.*: \([0-9]*\) chunks fetched.*/\1/p' "$1"; }

# 1. the iSCSI login route: own token only
tok=$(cat "$D/a/pc1.token")
s=$(curl -sS -H "Authorization: Bearer $tok" "$URL/api/v1/machines/pc1/iscsi")
is "$(jq -r '.target + " " + .initiator + " " + .user' <<<"$s")" "$PREFIX:m.pc1 $PREFIX:i.pc1 pc1" \
	"GET .../iscsi: the machine's target, initiator name, CHAP user"
is "$(jq -r .secret <<<"$s")" "$(cat "$D/state/secrets/pc1.chap")" "and its CHAP secret"
is "$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$ADMIN")" \
	"$URL/api/v1/machines/pc1/iscsi")" 403 "not for the admin token"
tok2=$(goldctl machine token pc2 --url "$URL" --token-file "$ADMIN")
is "$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok2" \
	"$URL/api/v1/machines/pc1/iscsi")" 403 "not for another machine's token"

# 2. hydrate from nothing: cache created, every chunk over iSCSI, verified
hyd "$D/a/c1" >"$D/h1.out" 2>"$D/h1.err"
is "$?" 0 "goldagent hydrate --appliance: complete"
is "$(fetched "$D/h1.out")" 37 "37 chunks fetched (3 zero chunks written locally)"
agent_serve "$D/serve.log" --cache "$D/a/c1" --gold-socket "$D/g.sock" || bail "serve"
t_run "nbdcopy of the gold export" nbdcopy "nbd+unix:///gold?socket=$D/g.sock" "$D/got.img"
agent_stop
t_run "equals goldctl image export" cmp "$D/want.img" "$D/got.img"
t_run "cache check against the kept manifest" goldagent cache check --manifest "$D/a/pc1.A.manifest" "$D/a/c1"
hyd "$D/a/c1" >"$D/h1b.out" 2>&1
is "$(fetched "$D/h1b.out")" 0 "a rerun fetches nothing"

# 3. kill -9 during hydration, then resume
rounds=3
[ "${GC_FULL:-0}" = 1 ] && rounds=50
lost=0 landed=0
for r in $(seq "$rounds"); do
	rm -f "$D/a/k.img"
	GOLDAGENT_TEST_CHUNK_DELAY_MS=20 hyd_bg "$D/a/k.img" --commit-every 1M --depth 2 >/dev/null 2>&1 &
	pid=$!
	sleep "0.$((RANDOM % 7 + 2))"
	kill -9 "$pid" 2>/dev/null && landed=$((landed + 1))
	wait "$pid" 2>/dev/null
	before=0
	[ -f "$D/a/k.img" ] && goldagent status --json --cache "$D/a/k.img" >"$D/st.json" 2>/dev/null &&
		before=$(jq '.slots[0].present' "$D/st.json")
	hyd "$D/a/k.img" >"$D/k.out" 2>&1 || lost=$((lost + 1000))
	f=$(fetched "$D/k.out")
	# chunks present before + chunks the resume fetched <= 40: none fetched twice
	goldagent cache check --manifest "$D/a/pc1.A.manifest" "$D/a/k.img" >"$D/kc.out" 2>&1 ||
		{ lost=$((lost + 1)) && sed 's/^/# check: /' "$D/kc.out"; }
	[ "$((f + before))" -le 40 ] || lost=$((lost + 1))
	echo "# round $r: $before present after the kill, $f fetched by the resume"
done
is "$lost" 0 "kill -9 during hydration ($landed of $rounds kills landed): resumed, cache check passes, no verified chunk fetched again"

# 4. tgtd killed mid-hydration: reconnect with backoff after goldcached restarts it
rm -f "$D/a/t.img"
GOLDAGENT_TEST_CHUNK_DELAY_MS=50 hyd_bg "$D/a/t.img" --depth 1 --commit-every 1M --give-up 60 \
	>"$D/t.out" 2>"$D/t.err" &
hp=$!
sleep 0.5
tp=$(pgrep -P "$GC_PID" -x tgtd | head -n1)
ok "$([ -n "$tp" ]; echo $?)" "tgtd found (pid $tp)"
kill -9 "$tp"
wait "$hp"
hrc=$?
is "$hrc" 0 "hydration completed after tgtd was killed"
[ "$hrc" = 0 ] || sed 's/^/# hydrate: /' "$D/t.err"
like "$(cat "$D/t.err")" "reconnect|retrying" "and says it reconnected"
t_run "every chunk matches the manifest" goldagent cache check --manifest "$D/a/pc1.A.manifest" "$D/a/t.img"
is "$(agent_json_field "$D/a/t.img" .mode)" offline-ready "the slot is complete"

# 5. a tampered chunk behind goldcached's back: rejected, never present
for i in $(seq 100); do
	exp=$(attach_lun_path "$D" pc1 1)
	[ -n "$exp" ] && break
	sleep 0.1
done
ok "$([ -f "$exp" ]; echo $?)" "LUN 1 backing file: $exp"
cp "$exp" "$D/exp.save"
printf 'TAMPERED' | dd of="$exp" bs=1 seek=$((5 * MB + 100)) conv=notrunc status=none
rm -f "$D/a/x.img"
hyd "$D/a/x.img" >"$D/x.out" 2>"$D/x.err"
ok "$([ $? -ne 0 ]; echo $?)" "hydrate fails when a chunk does not match"
like "$(cat "$D/x.err")" "chunk 5 .*does not match" "the log names chunk 5"
is "$(fetched "$D/x.out")" 36 "every other chunk stored"
agent_serve "$D/serve.log" --cache "$D/a/x.img" --gold-socket "$D/g.sock" || bail "serve x"
ok "$(nbdcopy "nbd+unix:///gold?socket=$D/g.sock" "$D/x.got" 2>/dev/null; [ $? -ne 0 ]; echo $?)" \
	"chunk 5 is not served (no source: EIO)"
agent_stop
cp "$D/exp.save" "$exp"

# 6. offline: goldcached stopped
attach_gc_stop
goldagent serve --cache "$D/a/c1" "${AG[@]}" --state-dir "$D/a" --gold-socket "$D/g.sock" >"$D/off.log" 2>&1 &
op=$!
track "$op"
wait_for 20 test -S "$D/g.sock" || bail "offline serve"
t_run "offline with a complete cache: served" nbdcopy "nbd+unix:///gold?socket=$D/g.sock" "$D/off.img"
t_run "and identical" cmp "$D/want.img" "$D/off.img"
kill -TERM "$op"
wait "$op"
like "$(cat "$D/off.log")" "unreachable: cache complete" "the log says it serves offline"
goldagent hydrate --cache "$D/a/x.img" "${AG[@]}" --state-dir "$D/a" >/dev/null 2>"$D/off2.err"
is "$?" 1 "offline with an incomplete cache: exit 1"
like "$(cat "$D/off2.err")" "cannot start offline" "with a clear refusal"
like "$(cat "$D/off2.err")" "39 of 40 chunks" "saying how much is there"

# 7. enrollment: a machine without a token enrolls after its boot script
attach_gc_start "$D" || bail "goldcached restart"
curl -sf "$URL/boot.ipxe?mac=52-54-00-30-00-03" >/dev/null
mkdir -p "$D/b"
goldagent hydrate --cache "$D/b/c.img" --appliance "$URL" --machine pc3 >"$D/e.out" 2>"$D/e.err"
is "$?" 0 "pc3 enrolls and hydrates"
is "$(stat -c %a "$D/b/pc3.token")" 600 "its token file is mode 0600"
like "$(cat "$D/e.err")" "enrolled" "the log says it enrolled"

# 8. gold update: v2 differs in 2 chunks and has one more; only those travel
cp "$D/gold.img" "$D/gold2.img"
head -c $((2 * MB)) /dev/urandom | dd of="$D/gold2.img" bs=1M seek=10 conv=notrunc status=none
head -c $MB /dev/urandom >>"$D/gold2.img"
goldctl --store "$D/store" image import deb "$D/gold2.img" >/dev/null || bail "import v2"
goldctl --store "$D/store" image promote deb@2 >/dev/null 2>&1
goldctl --store "$D/store" image export deb@2 "$D/want2.img" >/dev/null
for _ in $(seq 200); do
	[ "$(attach_lun_path "$D" pc1 1)" = "$D/state/exports/deb@2.img" ] && break
	sleep 0.1
done
is "$(attach_lun_path "$D" pc1 1)" "$D/state/exports/deb@2.img" "goldcached serves v2 on LUN 1"
hyd "$D/a/c1" >"$D/u.out" 2>"$D/u.err"
is "$?" 0 "hydrate after the update"
like "$(cat "$D/u.out")" "slot B: 3 chunks fetched \\([0-9]+ bytes\\), 35 copied from slot A, 3 zero" \
	"slot B: the 3 new chunks fetched, the 35 others copied locally"
is "$(agent_json_field "$D/a/c1" .active_slot)" B "slot B active once complete"
agent_serve "$D/serve.log" --cache "$D/a/c1" --gold-socket "$D/g.sock" || bail "serve v2"
t_run "the gold export now reads v2" nbdcopy "nbd+unix:///gold?socket=$D/g.sock" "$D/got2.img"
agent_stop
t_run "equal to goldctl image export deb@2" cmp "$D/want2.img" "$D/got2.img"
done_testing
