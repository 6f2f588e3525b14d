#!/usr/bin/env bash
# Full DHCP mode: the real dnsmasq on gc-dhcp's rendered config, on a bridge in a
# netns, gives real busybox udhcpc clients a lease and the right boot file: PXE
# BIOS -> undionly.kpxe (fetched over TFTP, byte-identical), UEFI x86-64 ->
# ipxe.efi, iPXE (user class or option 175) -> the HTTP boot script URL.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
need curl cmp
PXE_VC=PXEClient:Arch:00000:UNDI:002001
URL="http://10.77.0.1:$LAB_HTTP_PORT/boot.ipxe?mac=\${net0/mac:hexhyp}"

lab_new
t_run "gc-dhcp installs the iPXE boot files" gc-dhcp install-boot "$LAB_TFTP"
t_run "gc-dhcp writes the full-mode config" lab_dhcp_config --mode full \
	--range 10.77.0.100,10.77.0.199 --lease 600 --ipv6-ra
lab_dnsmasq_gc dhcp

# A BIOS PXE ROM: vendor class PXEClient, client arch 0.
c1=$(lab_client c1 52:54:00:77:00:01)
t0=$(date +%s%N)
t_run "BIOS client gets a lease" lab_udhcpc "$c1" "$T_DIR/bios.env" -V "$PXE_VC" -x 0x5d:0000
t1=$(date +%s%N)
diag "BIOS client lease in $(((t1 - t0) / 1000000)) ms"
like "$(lab_env_get "$T_DIR/bios.env" ip)" '^10\.77\.0\.1[0-9][0-9]$' "address from the range"
is "$(lab_env_get "$T_DIR/bios.env" boot_file)" undionly.kpxe "BIOS client gets undionly.kpxe"
is "$(lab_env_get "$T_DIR/bios.env" siaddr)" 10.77.0.1 "next-server is the appliance"
t_run "undionly.kpxe fetched over TFTP" ip netns exec "$c1" curl -sS --max-time 20 \
	-o "$T_DIR/got.kpxe" tftp://10.77.0.1/undionly.kpxe
t_run "TFTP copy equals the ipxe package's file" cmp "$T_DIR/got.kpxe" /usr/lib/ipxe/undionly.kpxe

# UEFI x86-64 firmware: client arch 7.
c2=$(lab_client c2 52:54:00:77:00:02)
t_run "UEFI client gets a lease" lab_udhcpc "$c2" "$T_DIR/uefi.env" \
	-V PXEClient:Arch:00007:UNDI:003016 -x 0x5d:0007
is "$(lab_env_get "$T_DIR/uefi.env" boot_file)" ipxe.efi "UEFI client gets ipxe.efi"
t_run "ipxe.efi fetched over TFTP" ip netns exec "$c2" curl -sS --max-time 30 \
	-o "$T_DIR/got.efi" tftp://10.77.0.1/ipxe.efi
t_run "TFTP copy equals the ipxe package's file" cmp "$T_DIR/got.efi" /usr/lib/ipxe/ipxe.efi

# iPXE identifies itself with user class "iPXE" (option 77) and option 175.
c3=$(lab_client c3 52:54:00:77:00:03)
t_run "iPXE client (user class) gets a lease" lab_udhcpc "$c3" "$T_DIR/ipxe.env" \
	-V "$PXE_VC" -x 0x5d:0000 -x 0x4d:69505845
is "$(lab_env_get "$T_DIR/ipxe.env" boot_file)" "$URL" "iPXE client gets the HTTP script URL"
c4=$(lab_client c4 52:54:00:77:00:04)
t_run "iPXE client (option 175) gets a lease" lab_udhcpc "$c4" "$T_DIR/ipxe175.env" \
	-V PXEClient:Arch:00007:UNDI:003016 -x 0x5d:0007 -x 0xaf:130101
is "$(lab_env_get "$T_DIR/ipxe175.env" boot_file)" "$URL" "iPXE on UEFI gets the HTTP script URL"

log=$(cat "$T_DIR/dhcp.log")
like "$log" 'DHCPACK\(gcbr0\) 10\.77\.0\.1[0-9][0-9] 52:54:00:77:00:01' "dnsmasq logs the lease"
like "$log" 'sent .*/undionly\.kpxe to 10\.77\.0\.' "dnsmasq logs the TFTP transfer"
t_run "dnsmasq still running" kill -0 "$(lab_pid dhcp)"
done_testing
