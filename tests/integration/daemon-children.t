#!/usr/bin/env bash
# goldcached supervises its children. After `kill -9` of tgtd it restarts it and
# the tgt state converges: the machine's target is back with its gold LUN, and a
# libiscsi login as the machine (its initiator name, its CHAP) reads the gold
# bytes again. After `kill -9` of dnsmasq it restarts it (new pid, logged with
# the exit status, backoff doubling) and a DHCP client gets a lease again.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-daemon.sh"
need ip dnsmasq busybox tgtd tgtadm iscsi-inq qemu-img cmp

lab_new
head -c 2M /dev/urandom >"$T_DIR/gold.img"
truncate -s 4M "$T_DIR/gold.img"
gcd_import gold "$T_DIR/gold.img" || bail "cannot import the gold image"
gcd_config "$T_DIR/gc.yaml" "  - mac: 52:54:00:77:00:01
    name: m1
    profile: p-gold"
gcd_start "$T_DIR/gc.yaml"
c1=$(lab_client c1 52:54:00:77:00:01)
EXPORT="$GCD_STATE/exports/gold@1.img"

# tgtd: targets, login, kill -9, convergence.
tgtd=$(gcd_wait_child tgtd 0 10)
ok $? "tgtd runs as goldcached's child (pid $tgtd)"
gcd_wait_lun m1 "$EXPORT" 20
ok $? "m1's target has LUN 1 = the export of gold@1"
t_run "libiscsi login as m1 (initiator name + CHAP)" gcd_login m1
t_run "reading m1's LUN through libiscsi" gcd_read m1 "$T_DIR/read1.img"
t_run "the bytes equal the imported image" cmp "$T_DIR/read1.img" "$T_DIR/gold.img"
tid=$(gcd_tid m1)
kill -9 "$tgtd"
tgtd2=$(gcd_wait_child tgtd "$tgtd" 20)
ok $? "tgtd restarted after kill -9 (pid $tgtd -> $tgtd2)"
gcd_wait_lun m1 "$EXPORT" 20
ok $? "m1's target and LUN are back (tid $tid -> $(gcd_tid m1))"
t_run "libiscsi login as m1 works again" gcd_login m1
t_run "reading m1's LUN again" gcd_read m1 "$T_DIR/read2.img"
t_run "same bytes" cmp "$T_DIR/read2.img" "$T_DIR/gold.img"
like "$(cat "$GCD_LOG")" "tgtd\\[$tgtd\\] exited with code 137" "the tgtd crash is logged"

dns=$(gcd_wait_child dnsmasq 0 10)
ok $? "dnsmasq runs (pid $dns)"
t_run "a DHCP client gets a lease" lab_udhcpc "$c1" "$T_DIR/a.env"
kill -9 "$dns"
dns2=$(gcd_wait_child dnsmasq "$dns" 20)
ok $? "dnsmasq restarted after kill -9 (pid $dns -> $dns2)"
like "$(cat "$GCD_LOG")" "dnsmasq\\[$dns\\] exited with code 137 .*restarting in" \
	"the crash and the restart delay are logged"
wait_for 10 grep -q "dnsmasq\\[$dns2\\].*started, version" "$GCD_LOG"
ok $? "the new dnsmasq's output reaches the log"
: >"$T_DIR/b.env"
t_run "a DHCP client gets a lease again" lab_udhcpc "$c1" "$T_DIR/b.env"
like "$(lab_env_get "$T_DIR/b.env" ip)" '^10\.77\.0\.1[0-9][0-9]$' "from the range"

# Two quick crashes: the second restart waits longer (backoff doubles).
kill -9 "$dns2"
dns3=$(gcd_wait_child dnsmasq "$dns2" 20)
ok $? "restarted again (pid $dns3)"
like "$(grep "dnsmasq\\[$dns2\\] exited" "$GCD_LOG")" 'restarting in 1000 ms' \
	"second crash within a minute: the delay doubled"

# goldcached itself killed with SIGKILL: tgtd dies with it (parent-death
# signal); dnsmasq (it dropped root, which clears that) is found by its pid file
# and stopped by the next goldcached, which then serves alone.
kill -9 "$GCD_PID"
wait "$GCD_PID" 2>/dev/null
wait_for 10 gcd_gone "$tgtd2"
ok $? "kill -9 of goldcached: its tgtd exits too"
gcd_start "$T_DIR/gc.yaml"
like "$(cat "$GCD_LOG")" "a dnsmasq \\(pid $dns3\\) left behind by an earlier run" \
	"the next goldcached stops the orphaned dnsmasq"
gcd_gone "$dns3"
ok $? "it is gone"
# (goldcached's own workers may come and go: count the servers)
is "$(ip netns pids "$LAB_NS" | xargs -r ps -o stat=,comm= -p |
	awk '$1 !~ /^Z/ && $2 != "goldcached" {print $2}' | sort | tr '\n' ' ')" \
	"dnsmasq tgtd " "one tgtd and one dnsmasq serve"
gcd_wait_lun m1 "$EXPORT" 20
ok $? "m1's target is served again"
: >"$T_DIR/c.env"
t_run "a DHCP client gets a lease from the new dnsmasq" lab_udhcpc "$c1" "$T_DIR/c.env"
dns3=$(gcd_child dnsmasq)
tgtd2=$(gcd_child tgtd)

gcd_stop
is "$GCD_RC" 0 "clean shutdown after the restarts"
ok "$(kill -0 "$dns3" 2>/dev/null && echo 1 || echo 0)" "the last dnsmasq is gone"
ok "$(kill -0 "$tgtd2" 2>/dev/null && echo 1 || echo 0)" "the last tgtd is gone"
done_testing
