#!/usr/bin/env bash
# The reconciler builds per-machine targets in a real tgtd: the machine's own
# initiator name + CHAP reads its gold LUN byte for byte; wrong CHAP, no CHAP
# and another machine's initiator name are refused; the gold LUN refuses writes
# (the file stays unchanged) while the machine's upload LUN takes them.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-targets.sh"
need jq cmp

gct_lab_start
d=$T_DIR
head -c $((8 << 20)) /dev/urandom >"$d/gold-v1.img"
truncate -s 4M "$d/up-alpha.img"
gct_secret "$d/alpha.secret" 'alpha-secret-0001'
gct_secret "$d/beta.secret" 'beta-secret-00002'
gct_secret "$d/wrong.secret" 'wrong-secret-0003'
read -r A_T A_I <<<"$(gct_machine alpha)"
read -r B_T B_I <<<"$(gct_machine beta)"
gct_desired "$d/want.json" "alpha:$d/alpha.secret:$d/gold-v1.img:$d/up-alpha.img" \
	"beta:$d/beta.secret:$d/gold-v1.img"
gold_sum=$(sha256sum <"$d/gold-v1.img")

out=$(gct -v -v reconcile --desired "$d/want.json" --state "$d/secrets.json" --json 2>"$d/rec.log")
ok $? "reconcile creates the targets"
like "$(cat "$d/rec.log")" "new-account alpha" "its debug log names the operations"
if grep -q 'secret-000' "$d/rec.log"; then ok 1 "a CHAP secret reached the log"; else
	ok 0 "no CHAP secret in the debug log (argv masked)"; fi
is "$(gct_stat "$out" targets_created)" 2 "two targets created"
is "$(gct_stat "$out" luns_added)" 3 "three LUNs (two gold, one upload)"
show=$(gct show --json)
is "$(jq -r '.targets[] | select(.iqn=="'"$A_T"'") | .acls | join(",")' <<<"$show")" "$A_I" \
	"alpha's ACL is exactly its initiator name"
is "$(jq -r '.targets[] | select(.iqn=="'"$A_T"'") | .accounts | join(",")' <<<"$show")" \
	alpha "alpha's target has exactly its CHAP account"
is "$(jq -r '[.targets[].luns[] | select(.lun==1) | .readonly] | unique | join(",")' <<<"$show")" \
	true "gold LUNs are read-only"
is "$(jq -r '.targets[] | select(.iqn=="'"$A_T"'") | .luns[] | select(.lun==2) | .readonly' \
	<<<"$show")" false "upload LUN is read-write"
like "$(stat -c %a "$d/secrets.json")" '^600$' "secret memo file is 0600"
if grep -q 'alpha-secret-0001' "$d/secrets.json" "$T_DIR/tgtd.log"; then
	ok 1 "secret written in clear"
else ok 0 "no secret in clear in the memo or tgtd's log"; fi

t_run "alpha reads its gold LUN with its CHAP" \
	gct_read "$d/read-a.img" "$A_T" 1 "$A_I" alpha "$d/alpha.secret"
t_run "bytes equal the backing file" cmp "$d/read-a.img" "$d/gold-v1.img"
t_run "beta reads the same shared gold file through its own target" \
	gct_read "$d/read-b.img" "$B_T" 1 "$B_I" beta "$d/beta.secret"
t_run "beta's bytes equal too" cmp "$d/read-b.img" "$d/gold-v1.img"

t_fails "wrong CHAP secret refused" gct_login "$A_T" 1 "$A_I" alpha "$d/wrong.secret"
like "$T_OUT" 'uthentication' "  ... as an authentication failure"
t_fails "no CHAP refused" gct_login "$A_T" 1 "$A_I"
t_fails "another machine's CHAP refused" gct_login "$A_T" 1 "$A_I" beta "$d/beta.secret"
t_fails "another machine's initiator name refused (with valid CHAP)" \
	gct_login "$A_T" 1 "$B_I" alpha "$d/alpha.secret"
like "$T_OUT" 'not found|Target' "  ... tgt hides the target from it"
t_fails "an unknown initiator name refused" \
	gct_login "$A_T" 1 iqn.1993-08.org.debian:01:stranger alpha "$d/alpha.secret"
disc=$(gct_ns iscsi-ls -i "$B_I" "iscsi://$GCT_PORTAL" 2>&1)
like "$disc" "$B_T" "discovery as beta lists beta's target"
if printf '%s' "$disc" | grep -q "$A_T"; then ok 1 "discovery shows beta alpha's target"; else
	ok 0 "discovery as beta does not list alpha's target"; fi

t_fails "write to the gold LUN refused" gct_write "$A_T" 1 "$A_I" alpha "$d/alpha.secret"
like "$T_OUT" 'write protect|Permission|read-only|Read-only' "  ... as write-protected"
t_run "probe: a raw WRITE(10) to the gold LUN is refused by tgtd (DATA PROTECT)" \
	gct_ns gc-targets write-probe --expect-refused --initiator "$A_I" --user alpha \
	--secret-file "$d/alpha.secret" "iscsi://$GCT_PORTAL/$A_T/1"
is "$(sha256sum <"$d/gold-v1.img")" "$gold_sum" "gold file unchanged"
t_run "probe control: the same raw write to the upload LUN is accepted" \
	gct_ns gc-targets write-probe --initiator "$A_I" --user alpha \
	--secret-file "$d/alpha.secret" "iscsi://$GCT_PORTAL/$A_T/2"
t_run "write to alpha's upload LUN works" gct_write "$A_T" 2 "$A_I" alpha "$d/alpha.secret"
is "$(od -An -tx1 -N2 "$d/up-alpha.img" | tr -d ' ')" 5a5a "upload file got the bytes"

done_testing
