#!/usr/bin/env bash
# goldcached's DHCP modes end to end: `dhcp.mode: off` runs no dnsmasq (HTTP and
# tgtd still serve); a SIGHUP to `proxy` starts dnsmasq as a proxy beside a site
# DHCP server (the PXE ROM gets its address from the site, the boot service from
# us); a SIGHUP back to `off` stops dnsmasq.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-daemon.sh"
need ip dnsmasq busybox tgtd tgtadm curl

lab_new
head -c 1M /dev/urandom >"$T_DIR/gold.img"
gcd_import gold "$T_DIR/gold.img" || bail "cannot import"
CFG="$T_DIR/gc.yaml"
M1="  - mac: 52:54:00:77:00:01
    name: m1
    profile: p-gold"
# mode_config MODE: the lab config with dhcp.mode MODE.
mode_config() {
	gcd_config "$CFG" "$M1"
	case "$1" in
	off) sed -i -e 's/^    mode: full/    mode: off/' -e '/^    range: /d' -e '/^    lease_time: /d' "$CFG" ;;
	proxy) sed -i -e 's/^    mode: full/    mode: proxy/' -e 's/^    range: .*/    range: 10.77.0.0/' \
		-e '/^    lease_time: /d' "$CFG" ;;
	esac
}
hup() {
	local n
	n=$(gcd_log_count 'SIGHUP: reloading')
	kill -HUP "$GCD_PID"
	wait_for 10 test "$(gcd_log_count 'SIGHUP: reloading')" -gt "$n"
}

mode_config off
gcd_start "$CFG"
is "$(gcd_child dnsmasq)" "" "dhcp mode off: no dnsmasq"
tgtd=$(gcd_wait_child tgtd 0 10)
ok $? "tgtd runs"
like "$(ip netns exec "$LAB_NS" curl -sS --max-time 10 "http://$LAB_ADDR:$GCD_HTTP_PORT/boot.ipxe?mac=52-54-00-77-00-01")" \
	'^#!ipxe' "HTTP serves boot scripts"

# The site's own DHCP server: addresses only.
site=$(lab_client site 52:54:00:77:99:01)
ip -n "$site" addr add 10.77.0.2/24 dev eth0
cat >"$T_DIR/site.conf" <<EOF2
port=0
interface=eth0
bind-interfaces
no-ping
log-facility=-
dhcp-range=10.77.0.50,10.77.0.90,600
dhcp-leasefile=$T_DIR/site.leases
EOF2
lab_dnsmasq_ns "$site" site dnsmasq --keep-in-foreground --pid-file --conf-file="$T_DIR/site.conf"

mode_config proxy
hup
dns=$(gcd_wait_child dnsmasq 0 10)
ok $? "SIGHUP to proxy mode starts dnsmasq (pid $dns)"
is "$(gcd_child tgtd)" "$tgtd" "tgtd untouched"
wait_for 10 grep -q 'proxy on subnet 10.77.0.0' "$GCD_LOG"
ok $? "dnsmasq runs as a proxy on the lab's subnet"
c1=$(lab_client c1 52:54:00:77:00:01)
t_run "a client gets a lease" lab_udhcpc "$c1" "$T_DIR/c1.env"
is "$(lab_env_get "$T_DIR/c1.env" serverid)" 10.77.0.2 "from the site server"
out=$(ip netns exec "$c1" gc-dhcp probe eth0 --timeout 1500 --arch 0)
like "$out" 'offer type=2 server=10\.77\.0\.2 yiaddr=10\.77\.0\.[5-9][0-9] ' \
	"a PXE ROM gets an address offer from the site server"
like "$out" 'offer type=2 server=10\.77\.0\.1 yiaddr=0\.0\.0\.0 ' "and a proxy offer from goldcached's dnsmasq"
like "$out" 'pxe-ack type=5 server=10\.77\.0\.1 .*file=undionly\.kpxe ' \
	"boot server discovery gives undionly.kpxe"

mode_config off
hup
wait_for 10 gcd_gone "$dns"
ok $? "SIGHUP back to off stops dnsmasq"
is "$(gcd_child tgtd)" "$tgtd" "tgtd still untouched"

gcd_stop
is "$GCD_RC" 0 "clean shutdown"
done_testing
