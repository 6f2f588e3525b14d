#!/usr/bin/env bash
# QEMU PXE smoke test: a TCG guest with virtio-net (its option ROM is iPXE, from
# ipxe-qemu) on a tap in the lab gets DHCP from dnsmasq running gc-dhcp's
# config, is handed the HTTP script URL with ${net0/mac:hexhyp} in it, which
# iPXE expands, and runs the script a busybox httpd on the bridge serves: the
# chain firmware -> dnsmasq -> iPXE -> HTTP script works, read on the serial console.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
need qemu-system-x86_64
[ -e /usr/share/qemu/efi-virtio.rom ] || [ -e /usr/lib/ipxe/qemu/efi-virtio.rom ] ||
	bail "missing prerequisite: the ipxe-qemu package (virtio-net option ROM)"
MAC=52:54:00:77:00:10
SERIAL="$T_DIR/serial.log"

lab_new
gc-dhcp install-boot "$LAB_TFTP" >/dev/null
t_run "full-mode config with IPv6 RA" lab_dhcp_config --mode full \
	--range 10.77.0.100,10.77.0.199 --ipv6-ra \
	--http-base "http://$LAB_ADDR:$LAB_HTTP_PORT/cgi-bin"
lab_dnsmasq_gc dhcp
lab_boot_script "$T_DIR/www"
lab_httpd "$T_DIR/www" "$LAB_HTTP_PORT"
lab_tap gctap0

lab_qemu vm gctap0 "$MAC" "$SERIAL"
# Generous limit: TCG on a shared 2-core machine; the figures go to the log.
lab_timeline "$SERIAL" 240 "iPXE=iPXE initialising devices" \
	"DHCP=net0: 10\\.77\\.0\\.1[0-9][0-9]/" "script=GC-MARKER" "fetch=GC-FETCHED"
ok $? "guest runs the chain within the limit"
serial=$(tr -d '\r' <"$SERIAL")
like "$serial" "Filename: http://10\\.77\\.0\\.1:$LAB_HTTP_PORT/cgi-bin/boot\\.ipxe\\?mac=52-54-00-77-00-10" \
	"iPXE expands \${net0/mac:hexhyp} in the DHCP filename"
like "$serial" 'GC-MARKER query=mac=52-54-00-77-00-10' "the HTTP server got the MAC in the query"
like "$serial" 'net0: fd77::' "IPv6 router advert seen (no 16 s wait)"
like "$(cat "$T_DIR/dhcp.log")" "DHCPACK\\(gcbr0\\) 10\\.77\\.0\\.1[0-9][0-9] $MAC" "dnsmasq leased the guest an address"
like "$(cat "$T_DIR/httpd.log")" 'url:/payload\.bin' "the script's fetch reached the HTTP server"
done_testing
