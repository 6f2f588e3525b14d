#!/usr/bin/env bash
# goldagent's iSCSI transfer engine against the real tgtd: a machine's target
# with its initiator ACL and CHAP reads back bit-identical; wrong secret, no
# CHAP and another initiator are refused at login; a LUN that does not exist is
# an error; tgtd killed mid-transfer ends the transfer with an error.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-tgt.sh"
need gc-fetch cmp head

tgt_start
iqn=iqn.2026-11.org.goldcache.test:m.pc01
ini=iqn.2026-11.org.goldcache.test:i.pc01
head -c $((48 << 20)) /dev/urandom >"$T_DIR/gold.img"
tgt_target 1 "$iqn" "$T_DIR/gold.img" readonly || bail "cannot create target"
tgtadm -C "$TGT_C" --lld iscsi --op bind --mode target --tid 1 -Q "$ini" || bail "acl"
tgtadm -C "$TGT_C" --lld iscsi --op new --mode account --user pc01 --password s3cret-pc01 || bail "acct"
tgtadm -C "$TGT_C" --lld iscsi --op bind --mode account --tid 1 --user pc01 || bail "bind acct"
printf 's3cret-pc01\n' >"$T_DIR/secret"
printf 'wrong-secret\n' >"$T_DIR/bad"
portal=127.0.0.1:$TGT_PORT

t_run "reads the LUN with the machine's initiator and CHAP" \
	gc-fetch -i "$ini" -u pc01 --secret-file "$T_DIR/secret" "$portal" "$iqn" 1 "$T_DIR/out.img"
t_run "bytes equal the backing file" cmp "$T_DIR/gold.img" "$T_DIR/out.img"
t_run "queue depth 1 and 1 MiB requests read the same bytes" \
	gc-fetch -d 1 -s 1M -i "$ini" -u pc01 --secret-file "$T_DIR/secret" "$portal" "$iqn" 1 "$T_DIR/out1.img"
t_run "  and they are equal" cmp "$T_DIR/gold.img" "$T_DIR/out1.img"

gc-fetch -t 5 -i "$ini" -u pc01 --secret-file "$T_DIR/bad" "$portal" "$iqn" 1 "$T_DIR/x" 2>"$T_DIR/err"
is "$?" 3 "a wrong CHAP secret is refused at login (exit 3)"
gc-fetch -t 5 -i "$ini" "$portal" "$iqn" 1 "$T_DIR/x" 2>"$T_DIR/err"
is "$?" 3 "no CHAP is refused at login"
gc-fetch -t 5 -i "${ini%pc01}pc02" -u pc01 --secret-file "$T_DIR/secret" "$portal" "$iqn" 1 "$T_DIR/x" 2>"$T_DIR/err"
is "$?" 3 "another machine's initiator name is refused"
like "$(cat "$T_DIR/err")" "cannot log in to '$iqn'" "the refusal names the target"

gc-fetch -t 5 -i "$ini" -u pc01 --secret-file "$T_DIR/secret" "$portal" "$iqn" 7 "$T_DIR/x" 2>"$T_DIR/err"
rc=$?
ok "$([ $rc -ne 0 ] && echo 0 || echo 1)" "a LUN that does not exist is an error (exit $rc)"

# a bigger LUN so the transfer is still running when tgtd dies
truncate -s 2G "$T_DIR/big.img"
tgt_target 2 "${iqn}big" "$T_DIR/big.img" readonly || bail "cannot create big target"
tgtadm -C "$TGT_C" --lld iscsi --op bind --mode target --tid 2 -I ALL
gc-fetch -t 5 -d 1 -s 64K -i "$ini" "$portal" "${iqn}big" 1 "$T_DIR/big.out" 2>"$T_DIR/err" &
fpid=$!
track $fpid
sleep 0.3
kill -KILL "$TGT_PID"
wait $fpid
rc=$?
ok "$([ $rc -ne 0 ] && echo 0 || echo 1)" "tgtd killed mid-transfer: the transfer fails (exit $rc), never reports success"
done_testing
