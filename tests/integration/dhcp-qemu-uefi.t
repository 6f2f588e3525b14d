#!/usr/bin/env bash
# UEFI boot chain with real firmware: a TCG guest with OVMF and no iPXE option
# ROM, so the firmware's own PXE client (EDK2) asks dnsmasq (client arch 7),
# is given ipxe.efi, loads it over TFTP; iPXE then asks again, gets the HTTP
# script URL and runs the script: UEFI firmware -> dnsmasq -> TFTP -> iPXE -> HTTP.
# gc-test: slow
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
need qemu-system-x86_64
OVMF=/usr/share/OVMF/OVMF_CODE_4M.fd
[ -r "$OVMF" ] || bail "missing prerequisite $OVMF (the ovmf package; run make deps)"
MAC=52:54:00:77:00:12
SERIAL="$T_DIR/serial.log"

lab_new
gc-dhcp install-boot "$LAB_TFTP" >/dev/null
t_run "full-mode config" lab_dhcp_config --mode full --range 10.77.0.100,10.77.0.199 \
	--ipv6-ra --http-base "http://$LAB_ADDR:$LAB_HTTP_PORT/cgi-bin"
lab_dnsmasq_gc dhcp
lab_boot_script "$T_DIR/www"
lab_httpd "$T_DIR/www" "$LAB_HTTP_PORT"
lab_tap gctap0
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$T_DIR/vars.fd"
LAB_NIC_OPTS=",romfile=" lab_qemu vm gctap0 "$MAC" "$SERIAL" \
	-drive "if=pflash,format=raw,readonly=on,file=$OVMF" \
	-drive "if=pflash,format=raw,file=$T_DIR/vars.fd"
lab_timeline "$SERIAL" 300 "firmware-PXE=Start PXE over IPv4" \
	"TFTP=NBP file downloaded successfully" "iPXE=iPXE initialising devices" \
	"DHCP=net0: 10\\.77\\.0\\.1[0-9][0-9]/" "script=GC-MARKER" "fetch=GC-FETCHED"
ok $? "guest runs the chain within the limit"
serial=$(tr -d '\r' <"$SERIAL")
like "$serial" 'NBP filename is ipxe\.efi' "the UEFI firmware was told ipxe.efi"
like "$serial" 'GC-MARKER query=mac=52-54-00-77-00-12' "iPXE ran the HTTP script, MAC expanded"
log=$(cat "$T_DIR/dhcp.log")
like "$log" 'vendor class: PXEClient:Arch:00007' "dnsmasq saw the firmware's UEFI x86-64 request"
like "$log" 'sent .*/ipxe\.efi to 10\.77\.0\.1[0-9][0-9]' "dnsmasq sent ipxe.efi over TFTP"
done_testing
