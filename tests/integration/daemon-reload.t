#!/usr/bin/env bash
# SIGHUP reloads the config and applies only the difference: a machine added
# leaves dnsmasq running (same pid, it reads the new host file itself) and gets
# its target while the other targets keep their tid; a machine renamed makes
# goldcached SIGHUP dnsmasq (same pid); a profile changed moves only that
# machine's LUN to the other image's export; a change of dnsmasq's main config
# restarts it; a broken config is logged and the old one keeps serving.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-daemon.sh"
need ip dnsmasq busybox tgtd tgtadm

lab_new
head -c 1M /dev/urandom >"$T_DIR/gold.img"
head -c 1M /dev/urandom >"$T_DIR/silver.img"
if ! gcd_import gold "$T_DIR/gold.img" || ! gcd_import silver "$T_DIR/silver.img"; then
	bail "cannot import the images"
fi
GOLD="$GCD_STATE/exports/gold@1.img"
SILVER="$GCD_STATE/exports/silver@1.img"
CFG="$T_DIR/gc.yaml"
M1="  - mac: 52:54:00:77:00:01
    name: m1
    profile: p-gold"
M2="  - mac: 52:54:00:77:00:02
    name: m2
    profile: p-silver"
gcd_config "$CFG" "$M1"
gcd_start "$CFG"
dns=$(gcd_wait_child dnsmasq 0 10)
ok $? "dnsmasq runs (pid $dns)"
gcd_wait_lun m1 "$GOLD" 20
ok $? "m1 serves gold"
tid1=$(gcd_tid m1)

# hup: SIGHUP and wait until the reload has been handled (the log's nth line).
hup() {
	local n
	n=$(gcd_log_count 'SIGHUP: reloading')
	kill -HUP "$GCD_PID"
	wait_for 10 test "$(gcd_log_count 'SIGHUP: reloading')" -gt "$n"
	sleep 0.3 # let dnsmasq act on what it was told
}

# 1. A machine added: only a new host file.
gcd_config "$CFG" "$M1
$M2"
hup
like "$(cat "$GCD_LOG")" 'config changed: machines \+1 -0 ~0' "the difference is logged"
ok "$([ -f "$GCD_STATE/dhcp/hosts.d/52-54-00-77-00-02" ]; echo $?)" "host file for m2 written"
is "$(gcd_child dnsmasq)" "$dns" "dnsmasq not restarted (same pid)"
gcd_wait_lun m2 "$SILVER" 20
ok $? "m2's target serves silver"
is "$(gcd_tid m1)" "$tid1" "m1's target untouched (same tid $tid1)"
tid2=$(gcd_tid m2)
c2=$(lab_client c2 52:54:00:77:00:02)
t_run "the new machine gets a lease" lab_udhcpc "$c2" "$T_DIR/c2.env"
is "$(lab_env_get "$T_DIR/c2.env" hostname)" m2 "with its name"

# 2. A machine renamed: dnsmasq is told with SIGHUP.
gcd_config "$CFG" "$M1
  - mac: 52:54:00:77:00:02
    name: m2b
    profile: p-silver"
hup
like "$(cat "$GCD_LOG")" 'dnsmasq re-reads its hosts \(SIGHUP\)' "dnsmasq got SIGHUP"
is "$(gcd_child dnsmasq)" "$dns" "dnsmasq not restarted (same pid)"
: >"$T_DIR/c2b.env"
t_run "the renamed machine gets a lease" lab_udhcpc "$c2" "$T_DIR/c2b.env"
is "$(lab_env_get "$T_DIR/c2b.env" hostname)" m2b "with its new name"
gcd_wait_lun m2b "$SILVER" 20
ok $? "the renamed machine's target (new name, new IQN) serves silver"
is "$(gcd_tid m2)" "" "the old name's target is gone"
is "$(gcd_tid m1)" "$tid1" "m1 untouched (tid $tid1)"
tid2=$(gcd_tid m2b)

# 3. A profile changed (m2b moved to p-gold): no dnsmasq change at all.
gcd_config "$CFG" "$M1
  - mac: 52:54:00:77:00:02
    name: m2b
    profile: p-gold"
hup
like "$(cat "$GCD_LOG")" 'config changed: machines \+0 -0 ~1' "one machine changed"
is "$(gcd_child dnsmasq)" "$dns" "dnsmasq untouched"
gcd_wait_lun m2b "$GOLD" 20
ok $? "m2b's LUN moved to gold's export"
is "$(gcd_tid m2b)" "$tid2" "m2b keeps its target (tid $tid2)"
is "$(gcd_tid m1)" "$tid1" "m1 untouched (tid $tid1)"
t_run "m1 can still log in" gcd_login m1
wait_for 10 test ! -e "$SILVER"
ok $? "silver's export, used by nobody now, is removed"

# 4. A broken config: logged, old config kept, still serving.
cp "$CFG" "$T_DIR/good.yaml"
printf 'machines: [ {mac: zz}\n' >>"$CFG"
hup
like "$(cat "$GCD_LOG")" 'gc\.yaml:[0-9]+:[0-9]+' "the error is logged with file:line:column"
like "$(cat "$GCD_LOG")" 'reload failed: keeping the running config' "the old config is kept"
is "$(gcd_child dnsmasq)" "$dns" "dnsmasq untouched"
ok "$(kill -0 "$GCD_PID"; echo $?)" "goldcached still running"
c1=$(lab_client c1 52:54:00:77:00:01)
t_run "still serving leases" lab_udhcpc "$c1" "$T_DIR/c1.env"
is "$(lab_env_get "$T_DIR/c1.env" hostname)" m1 "with the kept config"
is "$(gcd_tid m1) $(gcd_tid m2b)" "$tid1 $tid2" "targets untouched"

# 4b. A new state dir cannot be taken over live: refused, old config kept.
sed "s|state_dir: .*|state_dir: $T_DIR/elsewhere|" "$T_DIR/good.yaml" >"$CFG"
hup
like "$(cat "$GCD_LOG")" 'state_dir cannot change while goldcached runs' "a state_dir change is refused"
ok "$([ ! -e "$T_DIR/elsewhere" ]; echo $?)" "nothing written to the new state dir"
is "$(gcd_tid m1) $(gcd_tid m2b)" "$tid1 $tid2" "targets untouched"

# 4c. Same config, but m1's target was deleted behind goldcached's back: a
# SIGHUP puts it back.
cp "$T_DIR/good.yaml" "$CFG"
gcd_tgtadm --op delete --mode target --force --tid "$tid1"
is "$(gcd_tid m1)" "" "m1's target deleted by hand"
hup
gcd_wait_lun m1 "$GOLD" 20
ok $? "SIGHUP with an unchanged config restores it"
t_run "m1 can log in again" gcd_login m1
tid1=$(gcd_tid m1)

# 5. dnsmasq's main config changes (lease time): it is restarted.
sed 's/lease_time: 10m/lease_time: 20m/' "$T_DIR/good.yaml" >"$CFG"
hup
dns2=$(gcd_wait_child dnsmasq "$dns" 10)
ok $? "dnsmasq restarted for a main config change (pid $dns -> $dns2)"
like "$(cat "$GCD_LOG")" "dnsmasq\\[$dns2\\].*lease time 20m" "with the new settings"
is "$(gcd_tid m1) $(gcd_tid m2b)" "$tid1 $tid2" "targets untouched by a DHCP change"

gcd_stop
is "$GCD_RC" 0 "clean shutdown"
done_testing
