#!/usr/bin/env bash
# The whole boot chain through goldcached: a QEMU guest (virtio-net, its option ROM
# is iPXE) on the lab bridge gets DHCP from the dnsmasq goldcached runs, fetches
# /boot.ipxe?mac=... from goldcached, which renders the machine's stream-mode
# script; iPXE loads kernel and initramfs from goldcached's /boot/images/... and
# boots them; the initramfs parses goldcache.url/.machine/.mode and reaches the
# appliance's health URL. Checks the guest's console and goldcached's registry
# and access log.
# gc-test: once
# gc-test: slow (pxe-appliance.t covers the same chain in make check)
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
need goldcached goldctl qemu-system-x86_64 sqlite3 tgtd
MAC=52:54:00:77:00:21
SERIAL=$T_DIR/serial.log
PORT=$LAB_HTTP_PORT

qemu_images initramfs
ok 0 "kernel and initramfs built"
lab_new
mkdir -p "$T_DIR/store" "$T_DIR/state"
head -c 1048576 /dev/zero >"$T_DIR/gold.img"
t_run "gold image imported" goldctl --store "$T_DIR/store" image import deb "$T_DIR/gold.img"
cat >"$T_DIR/goldcache.yaml" <<YAML
appliance:
  interface: $LAB_BR
  listen: $LAB_ADDR/24
  http_port: $PORT
  dhcp: {mode: full, range: 10.77.0.100-10.77.0.199}
  tftp_root: $LAB_TFTP
  iscsi: {portal: $LAB_ADDR:3260, iqn_prefix: iqn.2026-11.org.example.pxe}
  store_dir: $T_DIR/store
  state_dir: $T_DIR/state
images:
  - name: deb
    version: current
    kernel: $GC_IMAGES/vmlinuz
    initrd: $GC_IMAGES/initramfs.img
    cmdline: "console=ttyS0 panic=-1 goldcache.onfail=poweroff"
profiles:
  - {name: hpc, image: deb, mode: stream}
machines:
  - {mac: $MAC, name: lab-pc, profile: hpc}
YAML
ip netns exec "$LAB_NS" goldcached -c "$T_DIR/goldcache.yaml" --log "$T_DIR/goldcached.log" &
GC_PID=$!
track $GC_PID
wait_for 20 ip netns exec "$LAB_NS" curl -sf "http://$LAB_ADDR:$PORT/api/v1/health"
ok $? "goldcached serves HTTP in the lab" || {
	sed 's/^/#   /' "$T_DIR/goldcached.log" | tail -n 20
	bail "goldcached did not start"
}
lab_tap gctap0
lab_qemu vm gctap0 "$MAC" "$SERIAL"
lab_timeline "$SERIAL" 300 "iPXE=iPXE initialising devices" \
	"script=goldcache: lab-pc mode stream image deb@1" \
	"initramfs=goldcache: stage modules" \
	"network=goldcache: stage network eth0 10\\.77\\.0\\.1[0-9][0-9]/24" \
	"appliance=goldcache: stage appliance reachable http://10\\.77\\.0\\.1:$PORT"
ok $? "firmware -> dnsmasq -> iPXE -> goldcached script -> kernel + initramfs -> appliance"
serial=$(tr -d '\r' <"$SERIAL")
like "$serial" "boot\\.ipxe\\?mac=52-54-00-77-00-21" "iPXE asked goldcached for its MAC's script"
like "$serial" "goldcache: lab-pc mode stream image deb@1" "the rendered stream script ran"
log=$(cat "$T_DIR/state/access.log")
like "$log" "GET /boot\\.ipxe\\?mac=52-54-00-77-00-21 200 " "access log: script"
like "$log" "GET /boot/images/deb/kernel 200 " "access log: kernel"
like "$log" "GET /boot/images/deb/initrd 200 " "access log: initrd"
like "$log" "GET /api/v1/health 200 " "access log: the initramfs's health check"
boot=$(sqlite3 -readonly "$T_DIR/state/registry.db" \
	"select name, last_boot > 0 from machines where mac = '$MAC'")
is "$boot" "lab-pc|1" "the registry recorded lab-pc's boot"
done_testing
