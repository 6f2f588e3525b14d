#!/usr/bin/env bash
# The netboot kernel boots the goldcache initramfs under QEMU (direct -kernel boot, no
# network): /init announces its stages, parses the goldcache.* arguments, loads the
# modules, its ldd-copied tools (nbd-client, mke2fs) run, and with no NIC and no
# goldagent it says so clearly and powers off as goldcache.onfail asks.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-qemu.sh"
need qemu-system-x86_64 cpio gzip

qemu_images initramfs-plain
ok 0 "kernel and initramfs built"

qemu_boot_args "$GC_IMAGES/initramfs-plain.img" \
	"goldcache.url=http://10.77.0.1:8080 goldcache.machine=lab-01 goldcache.mode=cache goldcache.selftest=1 goldcache.onfail=poweroff"
qemu_start noagent -nic none "${QEMU_BOOT_ARGS[@]}"

qemu_wait 'goldcache: stage init ' 60
ok $? "the kernel runs /init"
qemu_wait 'goldcache: stage cmdline url=http://10.77.0.1:8080 machine=lab-01 mode=cache ' 10
ok $? "goldcache.url, .machine and .mode parsed"
qemu_wait 'goldcache: stage modules ' 30
ok $? "modules loaded"
for tool in nbd-client mke2fs 'nbd device' overlay ext4; do
	qemu_wait "goldcache: selftest $tool ok" 10
	ok $? "in the guest: $tool ok"
done
qemu_wait 'goldcache: network: no network interface found' 20
ok $? "a missing NIC is reported clearly"
qemu_wait 'goldcache: stage network none' 5
ok $? "network stage: none"
qemu_wait 'goldcache: stage appliance unreachable' 10
ok $? "the appliance is reported unreachable"
qemu_wait 'goldcache: goldagent is not in this initramfs' 10
ok $? "the missing goldagent is reported clearly"
qemu_wait 'goldcache: stage failed' 10
ok $? "the boot stops at stage failed"
qemu_wait_exit 30
ok $? "goldcache.onfail=poweroff powers the guest off"
diag "guest uptime at stage modules: $(qemu_stage_time modules) s, at failed: $(qemu_stage_time failed) s"

done_testing
