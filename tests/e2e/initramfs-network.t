#!/usr/bin/env bash
# The initramfs brings up the boot NIC picked by BOOTIF with busybox udhcpc against a
# real dnsmasq (in a private network namespace, bridge + tap, no host networking),
# reaches the appliance's health URL (busybox httpd standing in for goldcached), and
# with no goldagent in the initramfs says so and stops.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-qemu.sh"
need qemu-system-x86_64 dnsmasq busybox ip

qemu_images initramfs-plain
ok 0 "kernel and initramfs built"

ns=$(netns_new boot)
ip -n "$ns" link add br0 type bridge
ip -n "$ns" addr add 10.77.0.1/24 dev br0
ip -n "$ns" link set br0 up
ip -n "$ns" tuntap add dev tap0 mode tap
ip -n "$ns" link set tap0 master br0
ip -n "$ns" link set tap0 up

ip netns exec "$ns" dnsmasq -k --port=0 --interface=br0 --bind-interfaces --no-ping \
	--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h --dhcp-leasefile="$T_DIR/leases" \
	--pid-file="$T_DIR/dnsmasq.pid" --log-facility=- --log-dhcp >"$T_DIR/dnsmasq.log" 2>&1 &
track $!
mkdir -p "$T_DIR/www/api/v1"
echo '{"status":"ok"}' >"$T_DIR/www/api/v1/health"
ip netns exec "$ns" busybox httpd -f -p 10.77.0.1:8080 -h "$T_DIR/www" &
track $!

mac=52:54:00:77:00:42
QEMU_NETNS=$ns
qemu_boot_args "$GC_IMAGES/initramfs-plain.img" \
	"goldcache.url=http://10.77.0.1:8080 goldcache.machine=lab-42 goldcache.mode=stream BOOTIF=01-${mac//:/-} goldcache.onfail=poweroff"
qemu_start net -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
	-device "virtio-net-pci,netdev=n0,mac=$mac" "${QEMU_BOOT_ARGS[@]}"

qemu_wait 'goldcache: stage modules ' 60
ok $? "initramfs running"
qemu_wait 'goldcache: stage network eth0 10\.77\.0\.(5[0-9]|[6-9][0-9])/24 ' 40
ok $? "DHCP lease from dnsmasq on the BOOTIF NIC"
like "$(cat "$T_DIR/dnsmasq.log")" "DHCPACK\(br0\) 10\.77\.0\.[0-9]+ $mac" "dnsmasq acknowledged the guest's MAC"
qemu_wait 'goldcache: stage appliance reachable http://10\.77\.0\.1:8080' 20
ok $? "the appliance's health URL answered"
qemu_wait 'goldcache: goldagent is not in this initramfs: cannot attach to the appliance at http://10\.77\.0\.1:8080' 10
ok $? "no goldagent: reported with the appliance address"
qemu_wait_exit 30
ok $? "the guest powers off (goldcache.onfail=poweroff)"
diag "guest uptime at stage network: $(qemu_stage_time network) s"

done_testing
