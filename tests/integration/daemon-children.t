#!/usr/bin/env bash
# goldcached supervises its children: after `kill -9` of dnsmasq it restarts it
# (new pid, logged with the exit status) and a DHCP client gets a lease again.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-daemon.sh"
need ip dnsmasq busybox

lab_new
gcd_config "$T_DIR/gc.yaml" "  - mac: 52:54:00:77:00:01
    name: m1
    profile: p-gold"
gcd_start "$T_DIR/gc.yaml"
c1=$(lab_client c1 52:54:00:77:00:01)

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

gcd_stop
is "$GCD_RC" 0 "clean shutdown after the restarts"
ok "$(kill -0 "$dns3" 2>/dev/null && echo 1 || echo 0)" "the last dnsmasq is gone"
done_testing
