#!/usr/bin/env bash
# `goldagent attach` against an appliance that answers HTTP while its iSCSI
# target is not there (goldcached still adding it, tgtd restarting): the
# machine's target deleted from goldcached's tgtd, attach retries the first
# login with backoff (one log line per attempt, with the reason) and, once
# goldcached's full reconcile (SIGHUP) has re-created the target, serves the
# gold export equal to `goldctl image export`. A wrong CHAP secret in tgtd is
# a clear error and a non-zero exit, without retries (attach and hydrate). A
# complete cache is served while the target is missing (no login needed).
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-attach.sh"
need goldcached goldctl goldagent curl jq tgtd tgtadm cmp nbdcopy timeout

D=$T_DIR
MB=1048576
mkdir -p "$D/a"
head -c $((8 * MB)) /dev/urandom >"$D/gold.img"
attach_lab "$D" "$D/gold.img" || bail "lab"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
attach_gc_start "$D" || bail "goldcached did not start"
goldctl --store "$D/store" image export deb "$D/want.img" >/dev/null || bail "export"
goldctl machine token pc1 --url "$URL" --token-file "$ADMIN" >"$D/a/pc1.token" || bail "token"

tgt() { TGT_IPC_SOCKET="$D/state/run/tgtd.sock" tgtadm -C 0 --lld iscsi "$@"; }
# the tid of pc1's target in goldcached's tgtd (empty: none)
pc1_tid() {
	tgt --op show --mode target | awk -v iqn="$PREFIX:m.pc1" '/^Target [0-9]+: / && $3 == iqn {sub(":", "", $2); print $2}'
}

# 1. the target is gone while HTTP answers: attach retries, then serves
tid=$(pc1_tid)
[ -n "$tid" ] || bail "no target for pc1"
t_run "delete pc1's target in goldcached's tgtd" tgt --op delete --mode target --tid "$tid" --force
is "$(pc1_tid)" "" "pc1 has no target"
RUN=$D/run
goldagent attach --appliance "$URL" --machine pc1 --mode cache --cache "$D/a/c.img" \
	--state-dir "$D/a" --run-dir "$RUN" --give-up 120 >"$D/attach.log" 2>&1 &
AP=$!
track "$AP"
wait_for 60 grep -q "login attempt 3 failed" "$D/attach.log"
ok $? "attach keeps trying the login while the target is missing"
like "$(grep -m1 'login attempt 1 failed' "$D/attach.log")" "login attempt 1 failed \\(No such device or address\\): next in 500 ms" \
	"each attempt is logged with its reason and the backoff"
like "$(grep -m1 'login attempt 2 failed' "$D/attach.log")" "next in 1000 ms" "the backoff doubles"
ok "$(kill -0 "$AP" 2>/dev/null; echo $?)" "attach is still running"
ok "$([ ! -e "$RUN/gold.sock" ]; echo $?)" "nothing served before the login"
kill -HUP "$GC_PID" # goldcached's full reconcile re-creates the target
wait_for 60 test -S "$RUN/gold.sock"
ok $? "the target is back: attach serves gold.sock"
ok "$([ -n "$(pc1_tid)" ]; echo $?)" "goldcached re-created pc1's target"
t_run "the gold export reads back" nbdcopy "nbd+unix:///gold?socket=$RUN/gold.sock" "$D/got.img"
t_run "equal to goldctl image export" cmp "$D/want.img" "$D/got.img"
kill -TERM "$AP"
wait "$AP"
is "$?" 0 "attach stops cleanly on SIGTERM"

# 2. a wrong CHAP secret in tgtd: refused at once, a clear error, exit non-zero
tid=$(pc1_tid)
t_run "unbind pc1's account" tgt --op unbind --mode account --tid "$tid" --user pc1
t_run "delete it" tgt --op delete --mode account --user pc1
t_run "create it with another secret" tgt --op new --mode account --user pc1 --password WrongSecret1234
t_run "bind it" tgt --op bind --mode account --tid "$tid" --user pc1
timeout 120 goldagent attach --appliance "$URL" --machine pc1 --mode cache --cache "$D/a/c2.img" \
	--state-dir "$D/a2" --token-file "$D/a/pc1.token" --run-dir "$D/run2" --give-up 120 >"$D/chap.log" 2>&1
rc=$?
ok "$([ "$rc" != 0 ] && [ "$rc" != 124 ]; echo $?)" "attach exits non-zero on its own (rc $rc)"
like "$(cat "$D/chap.log")" "refused the login of $PREFIX:i.pc1 \\(user pc1\\): check that the CHAP secret" \
	"the error says the login was refused and what to check"
is "$(grep -c 'login attempt' "$D/chap.log")" 0 "no retries"
ok "$([ ! -e "$D/run2/gold.sock" ]; echo $?)" "nothing served"
timeout 120 goldagent hydrate --appliance "$URL" --machine pc1 --cache "$D/a/c3.img" \
	--state-dir "$D/a3" --token-file "$D/a/pc1.token" --give-up 120 >"$D/hyd.log" 2>&1
rc=$?
ok "$([ "$rc" != 0 ] && [ "$rc" != 124 ]; echo $?)" "goldagent hydrate too exits non-zero on its own (rc $rc)"
is "$(grep -c 'retrying in' "$D/hyd.log")" 0 "without retrying the refused login"
like "$(cat "$D/hyd.log")" "refused the login of $PREFIX:i.pc1 \\(user pc1\\)" "and says so"

# 3. the cache complete and the target gone: served without any login
tid=$(pc1_tid)
t_run "delete pc1's target again" tgt --op delete --mode target --tid "$tid" --force
goldagent attach --appliance "$URL" --machine pc1 --mode cache --cache "$D/a/c.img" \
	--state-dir "$D/a" --run-dir "$RUN" --give-up 120 >"$D/attach2.log" 2>&1 &
AP=$!
track "$AP"
wait_for 60 test -S "$RUN/gold.sock"
ok $? "a complete cache is served while the target is missing"
t_run "its gold export reads back" nbdcopy "nbd+unix:///gold?socket=$RUN/gold.sock" "$D/got2.img"
t_run "equal to goldctl image export" cmp "$D/want.img" "$D/got2.img"
kill -TERM "$AP"
wait "$AP"
is "$?" 0 "attach stops cleanly"
done_testing
