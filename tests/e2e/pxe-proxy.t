#!/usr/bin/env bash
# pxe-appliance.t beside an existing DHCP server: goldcached runs its dnsmasq in
# proxy mode on the lab bridge, a second dnsmasq in its own netns is the site's DHCP
# server (addresses only). The guest's iPXE ROM takes its address from the site,
# the boot information from goldcached's proxy, then fetches /boot.ipxe?mac= from
# goldcached, loads kernel and initramfs over HTTP, and the initramfs (whose own
# DHCP is answered by the site) reaches goldcached. Ends at the appliance marker.
# gc-test: slow
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
need goldcached goldctl qemu-system-x86_64 tgtd dnsmasq curl
MAC=52:54:00:77:00:61
HYP=52-54-00-77-00-61
URL="http://$LAB_ADDR:$LAB_HTTP_PORT"
GCLOG=$T_DIR/goldcached.log
ACCESS=$T_DIR/state/access.log
SERIAL=$T_DIR/proxy1.serial

qemu_images initramfs
qemu_images tiny
ok 0 "image-build: kernel, initramfs and tiny gold image ready"
lab_new
mkdir -p "$T_DIR/store" "$T_DIR/state"
t_run "tiny gold image imported" goldctl --store "$T_DIR/store" image import tiny "$GC_IMAGES/tiny.ext4"

# the site's DHCP server: addresses 10.77.0.50-90 and router adverts (as most site
# routers send; without any iPXE waits about 16 s for one, docs/network.md)
site=$(lab_client site 52:54:00:77:99:02)
ip -n "$site" addr add 10.77.0.2/24 dev eth0
ip -n "$site" addr add fd77::2/64 dev eth0 nodad
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

cat >"$T_DIR/goldcache.yaml" <<YAML
appliance:
  interface: $LAB_BR
  listen: $LAB_ADDR/24
  http_port: $LAB_HTTP_PORT
  dhcp: {mode: proxy, range: 10.77.0.0}
  tftp_root: $LAB_TFTP
  iscsi: {portal: $LAB_ADDR:3260, iqn_prefix: iqn.2026-11.org.example.proxy}
  store_dir: $T_DIR/store
  state_dir: $T_DIR/state
images:
  - {name: tiny, kernel: $GC_IMAGES/vmlinuz, initrd: $GC_IMAGES/initramfs.img,
     cmdline: "console=ttyS0 panic=-1 goldcache.onfail=poweroff"}
profiles:
  - {name: hpc, image: tiny, mode: stream}
machines:
  - {mac: $MAC, name: proxy1, profile: hpc}
YAML
e2e_goldcached "$T_DIR/goldcache.yaml" "$GCLOG"
ok 0 "goldcached (proxy mode) serves HTTP on the lab bridge"

lab_tap gctap0
lab_qemu proxy1 gctap0 "$MAC" "$SERIAL"
e2e_timeline 120 \
	"site-ack@$T_DIR/site.log=DHCPACK\\(eth0\\) 10\\.77\\.0\\.[5-9][0-9] $MAC" \
	"proxy@$GCLOG=PXE\\($LAB_BR\\) $MAC proxy" \
	"script@$ACCESS=GET /boot\\.ipxe\\?mac=$HYP " \
	"kernel@$ACCESS=GET /boot/images/tiny/kernel " \
	"initrd@$ACCESS=GET /boot/images/tiny/initrd " \
	"linux@$SERIAL=Linux version" \
	"network@$SERIAL=goldcache: stage network " \
	"appliance@$SERIAL=goldcache: stage appliance "
ok $? "firmware -> site DHCP + goldcached proxy -> iPXE -> goldcached -> kernel + initramfs"
kill -KILL "$(lab_pid proxy1)" 2>/dev/null
wait "$(lab_pid proxy1)" 2>/dev/null

serial=$(tr -d '\r' <"$SERIAL")
IP=$(sed -n "s/.*DHCPACK(eth0) \\(10\\.77\\.0\\.[0-9]*\\) $MAC.*/\\1/p" "$T_DIR/site.log" | head -n 1)
like "$IP" '^10\.77\.0\.[5-9][0-9]$' "the site server leased $IP"
like "$serial" "net0: $IP/" "iPXE configured the site's address"
like "$serial" 'Next server: 10\.77\.0\.1' "boot information from goldcached's proxy"
is "$(grep -c 'DHCPACK' "$GCLOG")" 0 "goldcached's dnsmasq handed out no address"
line=$(e2e_access "$ACCESS" "$IP" GET "^/boot\\.ipxe\\?mac=$HYP\$")
like "$line" " 200 [0-9]+ " "access log: $IP fetched its script"
like "$serial" "goldcache: proxy1 mode stream image tiny@1" "iPXE ran proxy1's stream script"
like "$serial" "goldcache: stage network eth0 10\\.77\\.0\\.[5-9][0-9]/24" \
	"the initramfs's DHCP was answered by the site"
like "$serial" "goldcache: stage appliance reachable $URL" "the initramfs reached goldcached"
done_testing
