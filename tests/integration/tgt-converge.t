#!/usr/bin/env bash
# Reconciling is idempotent and minimal against a real tgtd: a second run with
# the same desired state changes nothing (counted tgtadm calls); a changed
# secret, a removed machine and a new LUN file apply only that difference; a
# tgtd killed -9 and restarted empty converges again (login works); a state
# left by another process (no secret memo) converges; clean shutdown removes
# every target and tgtd exits. A tgtd that cannot bind its portal is refused.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-targets.sh"
need jq cmp

gct_lab_start
d=$T_DIR
head -c $((4 << 20)) /dev/urandom >"$d/gold-v1.img"
head -c $((4 << 20)) /dev/urandom >"$d/gold-v2.img"
truncate -s 1M "$d/up-alpha.img"
gct_secret "$d/alpha.secret" 'alpha-secret-0001'
gct_secret "$d/beta.secret" 'beta-secret-00002'
gct_secret "$d/gamma.secret" 'gamma-secret-0003'
read -r A_T A_I <<<"$(gct_machine alpha)"
read -r B_T B_I <<<"$(gct_machine beta)"
read -r G_T G_I <<<"$(gct_machine gamma)"
want() { gct_desired "$d/want.json" "$@"; }
rec() { gct reconcile --desired "$d/want.json" --state "$d/secrets.json" --json; }
three=("alpha:$d/alpha.secret:$d/gold-v1.img" "beta:$d/beta.secret:$d/gold-v1.img"
	"gamma:$d/gamma.secret:$d/gold-v1.img")

want "${three[@]}"
out=$(rec)
ok $? "first reconcile"
is "$(gct_stat "$out" targets_created)" 3 "three targets created"

out=$(rec)
ok $? "second reconcile with the same desired state"
is "$(gct_stat "$out" changes)" 0 "  ... issues zero changing tgtadm calls"
is "$(gct_stat "$out" shows)" 2 "  ... only the two shows"

# changed secret: only alpha's account is rebuilt (behind offline/ready)
gct_secret "$d/alpha.secret" 'alpha-secret-NEW1'
out=$(rec)
is "$(jq -c '[.accounts_deleted,.accounts_created,.bindings,.targets_created,.targets_deleted,.luns_added,.luns_removed]' <<<"$out")" \
	'[1,1,1,0,0,0,0]' "changed secret: one account rebuilt and rebound, nothing else"
is "$(gct_stat "$out" changes)" 5 "  ... 5 calls (offline, delete, new, bind, ready)"
gct_secret "$d/old.secret" 'alpha-secret-0001'
t_fails "  ... old secret refused" gct_login "$A_T" 1 "$A_I" alpha "$d/old.secret"
t_run "  ... new secret works" gct_login "$A_T" 1 "$A_I" alpha "$d/alpha.secret"
is "$(gct_stat "$(rec)" changes)" 0 "  ... and the next reconcile is quiet again"

# new LUN file for beta (gold v2) + an upload LUN for alpha
want "alpha:$d/alpha.secret:$d/gold-v1.img:$d/up-alpha.img" \
	"beta:$d/beta.secret:$d/gold-v2.img" "gamma:$d/gamma.secret:$d/gold-v1.img"
out=$(rec)
is "$(jq -c '[.luns_removed,.luns_added,.luns_updated,.accounts_created,.targets_created,.bindings]' <<<"$out")" \
	'[1,2,1,0,0,0]' "new gold file for beta + upload LUN for alpha: only those LUNs"
t_run "  ... beta now reads gold v2" gct_read "$d/b2.img" "$B_T" 1 "$B_I" beta "$d/beta.secret"
t_run "  ... byte for byte" cmp "$d/b2.img" "$d/gold-v2.img"
ro=$(gct show --json | jq -r '.targets[] | select(.iqn=="'"$B_T"'") | .luns[] | select(.lun==1) | .readonly')
is "$ro" true "  ... the replaced gold LUN is read-only again"
state=$(gct show --json | jq -r '[.targets[].state] | unique | join(",")')
is "$state" ready "  ... every target back to ready"

# removed machine: only its target (and account) go
want "alpha:$d/alpha.secret:$d/gold-v1.img:$d/up-alpha.img" "beta:$d/beta.secret:$d/gold-v2.img"
out=$(rec)
is "$(jq -c '[.targets_deleted,.accounts_deleted,.changes]' <<<"$out")" '[1,1,2]' \
	"removed machine: its target deleted (--force) and its account, nothing else"
is "$(gct show --json | jq -r '[.targets[].iqn] | sort | join(" ")')" "$A_T $B_T" \
	"  ... alpha and beta remain"
t_fails "  ... gamma cannot log in any more" gct_login "$G_T" 1 "$G_I" gamma "$d/gamma.secret"

# a session open while its target is reconciled does not block the change
ip netns exec "$GCT_NS" timeout 20 qemu-io --object "secret,id=chap0,file=$d/alpha.secret" -r \
	-c 'sleep 4000' --image-opts "$(gct_opts "$A_T" 1 "$A_I" alpha x)" >/dev/null 2>&1 &
sess=$!
track $sess
wait_for 10 bash -c "gc-targets --socket '$GCT_SOCK' show --json | jq -e '.targets[] | select(.iqn==\"$A_T\") | .sessions == 1'"
ok $? "alpha has a live session"
want "beta:$d/beta.secret:$d/gold-v2.img"
out=$(rec)
is "$(gct_stat "$out" targets_deleted)" 1 "target with a live session deleted (--force)"
kill $sess 2>/dev/null
wait $sess 2>/dev/null

# tgtd killed -9 and restarted: empty state, reconcile converges
want "${three[@]}"
rec >/dev/null
gct_kill9
ok $? "tgtd killed -9"
gct_start
is "$(gct show --json | jq '.targets | length')" 0 "restarted tgtd is empty"
out=$(rec)
ok $? "reconcile after the restart"
is "$(gct_stat "$out" targets_created)" 3 "  ... all three targets back"
t_run "  ... login works again" gct_read "$d/g.img" "$G_T" 1 "$G_I" gamma "$d/gamma.secret"
t_run "  ... bytes equal" cmp "$d/g.img" "$d/gold-v1.img"
is "$(gct_stat "$(rec)" changes)" 0 "  ... then quiet"

# a goldcached restart that lost its memo: accounts are reset once, then quiet
mv "$d/secrets.json" "$d/secrets.lost"
out=$(rec)
is "$(jq -c '[.accounts_created,.targets_created,.luns_added]' <<<"$out")" '[3,0,0]' \
	"without the memo: each account reset once, targets kept"
is "$(gct_stat "$(rec)" changes)" 0 "  ... then quiet"

# a stray target and account made by hand under the managed prefix are removed;
# a foreign target outside it is left alone
gct_adm --op new --mode target --tid 40 -T "$GCT_PREFIX:m.stray"
gct_adm --op new --mode account --user stray --password stray-secret-1
gct_adm --op new --mode target --tid 41 -T iqn.2001-04.com.example:foreign
out=$(rec)
is "$(jq -c '[.targets_deleted,.accounts_deleted]' <<<"$out")" '[1,1]' \
	"stray managed target and account deleted"
like "$(gct show)" 'iqn.2001-04.com.example:foreign' "  ... foreign target kept"

# a second tgtd on a portal already in use does not stay up on every interface
# (tgtd would fall back to 0.0.0.0:3260 and [::]:3260): gc-targets start kills it
t_fails "a tgtd whose portal is in use is refused" gct_ns gc-targets --socket "$T_DIR/ipc2" \
	start --portal "$GCT_PORTAL" --log "$T_DIR/tgtd2.log"
like "$T_OUT" 'serves .* not' "  ... it served other portals"
is "$(ip netns pids "$GCT_NS" | xargs -r ps -o comm= -p | grep -c '^tgtd$')" 1 \
	"  ... and was killed: only our tgtd runs in the namespace"

# clean shutdown
t_run "clean shutdown" gct shutdown
wait_for 10 bash -c "! kill -0 $GCT_PID 2>/dev/null"
ok $? "tgtd exited"
t_fails "control socket no longer answers" gct show

done_testing
