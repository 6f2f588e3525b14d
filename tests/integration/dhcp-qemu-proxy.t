#!/usr/bin/env bash
# QEMU PXE smoke test in proxy mode: the guest's iPXE ROM takes its address
# from a site DHCP server (a second dnsmasq in its own netns) and its boot
# script URL from our dnsmasq in ProxyDHCP mode, then runs the HTTP script.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
need qemu-system-x86_64
MAC=52:54:00:77:00:11
SERIAL="$T_DIR/serial.log"

lab_new
gc-dhcp install-boot "$LAB_TFTP" >/dev/null
t_run "proxy-mode config" lab_dhcp_config --mode proxy --proxy-subnet 10.77.0.0 \
	--http-base "http://$LAB_ADDR:$LAB_HTTP_PORT/cgi-bin"
lab_dnsmasq_gc proxy

site=$(lab_client site 52:54:00:77:99:01)
ip -n "$site" addr add 10.77.0.2/24 dev eth0
ip -n "$site" addr add fd77::2/64 dev eth0 nodad
# Like most site routers it sends IPv6 router adverts: without any, iPXE waits
# about 16 s for one (docs/network.md).
cat >"$T_DIR/site.conf" <<EOF2
port=0
interface=eth0
bind-interfaces
log-dhcp
log-facility=-
no-ping
dhcp-range=10.77.0.50,10.77.0.90,600
dhcp-leasefile=$T_DIR/site.leases
enable-ra
dhcp-range=::,constructor:eth0,ra-only
EOF2
lab_dnsmasq_ns "$site" site dnsmasq --keep-in-foreground --pid-file --conf-file="$T_DIR/site.conf"

lab_boot_script "$T_DIR/www"
lab_httpd "$T_DIR/www" "$LAB_HTTP_PORT"
lab_tap gctap0
lab_qemu vm gctap0 "$MAC" "$SERIAL"
lab_timeline "$SERIAL" 240 "iPXE=iPXE initialising devices" \
	"DHCP=net0: 10\\.77\\.0\\.[5-9][0-9]/" "script=GC-MARKER" "fetch=GC-FETCHED"
ok $? "guest runs the chain within the limit"
serial=$(tr -d '\r' <"$SERIAL")
like "$serial" 'net0: 10\.77\.0\.[5-9][0-9]/' "address from the site server's range"
like "$serial" 'Next server: 10\.77\.0\.1' "boot information from our proxy"
like "$serial" 'GC-MARKER query=mac=52-54-00-77-00-11' "the HTTP script ran, MAC expanded"
like "$(cat "$T_DIR/proxy.log")" "PXE\\(gcbr0\\) $MAC proxy" "our dnsmasq answered as a proxy"
like "$(cat "$T_DIR/site.log")" "DHCPACK\\(eth0\\) 10\\.77\\.0\\.[5-9][0-9] $MAC" "the site server leased the address"
done_testing
