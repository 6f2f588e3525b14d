#!/usr/bin/env bash
# Proxy DHCP mode beside a site DHCP server (a second real dnsmasq in its own
# netns): the site server hands out the address, ours only the boot information.
# A real udhcpc gets its address from the site server (ours ignores non-PXE
# clients); gc-dhcp probe, acting as the PXE ROM, sees both offers and follows
# PXE boot server discovery (port 4011) to the boot file, which then comes over
# TFTP byte-identical. UEFI gets ipxe.efi; iPXE gets the HTTP script URL.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
need curl cmp

lab_new
gc-dhcp install-boot "$LAB_TFTP" >/dev/null
t_run "gc-dhcp writes the proxy-mode config" lab_dhcp_config --mode proxy \
	--proxy-subnet 10.77.0.0
lab_dnsmasq_gc proxy

# The site's own DHCP server: addresses only, no boot information.
site=$(lab_client site 52:54:00:77:99:01)
ip -n "$site" addr add 10.77.0.2/24 dev eth0
cat >"$T_DIR/site.conf" <<EOF2
port=0
interface=eth0
bind-interfaces
log-dhcp
log-facility=-
no-ping
dhcp-range=10.77.0.50,10.77.0.90,600
dhcp-leasefile=$T_DIR/site.leases
EOF2
lab_dnsmasq_ns "$site" site dnsmasq --keep-in-foreground --pid-file --conf-file="$T_DIR/site.conf"

c1=$(lab_client c1 52:54:00:77:00:01)
t_run "client gets a lease" lab_udhcpc "$c1" "$T_DIR/c1.env"
is "$(lab_env_get "$T_DIR/c1.env" serverid)" 10.77.0.2 "the lease comes from the site server"
like "$(lab_env_get "$T_DIR/c1.env" ip)" '^10\.77\.0\.[5-9][0-9]$' "address from the site's range"
is "$(lab_env_get "$T_DIR/c1.env" boot_file)" "" "no boot file for a non-PXE client"

probe() { ip netns exec "$c1" gc-dhcp probe eth0 --timeout 1500 "$@"; }
out=$(probe --arch 0)
diag "BIOS probe:"
printf '%s\n' "$out" | sed 's/^/#   /'
like "$out" 'offer type=2 server=10\.77\.0\.2 yiaddr=10\.77\.0\.[5-9][0-9] .*file=- ' \
	"PXE ROM: site server offers an address and no boot file"
like "$out" 'offer type=2 server=10\.77\.0\.1 yiaddr=0\.0\.0\.0 .*pxe-menu=yes' \
	"PXE ROM: our proxy offers no address, a PXE boot service"
like "$out" 'pxe-ack type=5 server=10\.77\.0\.1 .*siaddr=10\.77\.0\.1 file=undionly\.kpxe ' \
	"PXE ROM: boot server discovery (port 4011) gives undionly.kpxe"
t_run "undionly.kpxe fetched over TFTP" ip netns exec "$c1" curl -sS --max-time 20 \
	-o "$T_DIR/got.kpxe" tftp://10.77.0.1/undionly.kpxe
t_run "TFTP copy equals the ipxe package's file" cmp "$T_DIR/got.kpxe" /usr/lib/ipxe/undionly.kpxe

out=$(probe --arch 7)
like "$out" 'pxe-ack type=5 server=10\.77\.0\.1 .*file=ipxe\.efi ' "UEFI (arch 7): ipxe.efi on port 4011"
out=$(probe --arch 9)
like "$out" 'pxe-ack type=5 server=10\.77\.0\.1 .*file=ipxe\.efi ' "UEFI (arch 9): ipxe.efi on port 4011"

out=$(probe --arch 0 --ipxe)
like "$out" "offer type=2 server=10\\.77\\.0\\.1 yiaddr=0\\.0\\.0\\.0 siaddr=10\\.77\\.0\\.1 file=http://10\\.77\\.0\\.1:$LAB_HTTP_PORT/boot\\.ipxe\\?mac=\\\$\\{net0/mac:hexhyp\\} pxe-menu=no" \
	"iPXE: the proxy offer holds the script URL, a next-server and no menu"
out=$(probe --arch 7 --ipxe)
like "$out" "file=http://10\\.77\\.0\\.1:$LAB_HTTP_PORT/boot\\.ipxe" "iPXE on UEFI: the script URL"

log=$(cat "$T_DIR/proxy.log")
like "$log" 'DHCP, proxy on subnet 10\.77\.0\.0' "dnsmasq runs as a proxy"
if printf '%s\n' "$log" | grep -Eq 'DHCP(OFFER|ACK)'; then
	ok 1 "our dnsmasq never hands out an address"
else
	ok 0 "our dnsmasq never hands out an address"
fi
t_run "both servers still running" kill -0 "$(lab_pid proxy)" "$(lab_pid site)"
done_testing
