#!/usr/bin/env bash
# Issue 3's end-to-end proof, hop by hop, on the real appliance: in a lab netns with
# a bridge, goldcached (its own dnsmasq and tgtd as supervised children) serves a
# stream-mode profile whose image (image-build's tiny ext4, imported into a private
# store with goldctl) has image-build's kernel and initramfs. A QEMU guest (TCG,
# virtio-net with QEMU's iPXE ROM) PXE-boots: firmware -> dnsmasq (DHCP, iPXE class
# gets the HTTP URL) -> iPXE -> goldcached /boot.ipxe?mac= -> kernel + initramfs over
# goldcached's HTTP -> the initramfs's stage markers, with the goldcache.* kernel
# arguments of the machine's profile. Each hop is read from its own evidence:
# dnsmasq's log (captured into goldcached's log), goldcached's access log (peer,
# status, bytes = file size), the serial console. An unknown MAC under the `refuse`
# policy gets the refusal script and fetches no kernel. Then dnsmasq is killed:
# goldcached restarts it and the machine PXE-boots again through the new one.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
need goldcached goldctl qemu-system-x86_64 tgtd tgtadm dnsmasq curl sqlite3
MAC=52:54:00:77:00:31
HYP=52-54-00-77-00-31
STRANGER=52:54:00:77:00:99
STRANGER_HYP=52-54-00-77-00-99
PORT=$LAB_HTTP_PORT
URL="http://$LAB_ADDR:$PORT"
GCLOG=$T_DIR/goldcached.log
ACCESS=$T_DIR/state/access.log

# --- the images: image-build's kernel, initramfs and tiny gold image
qemu_images initramfs
qemu_images tiny
for f in vmlinuz initramfs.img tiny.ext4; do
	[ -s "$GC_IMAGES/$f" ] || bail "image-build did not produce $GC_IMAGES/$f"
done
ok 0 "image-build: kernel, initramfs and tiny gold image ready"
KSIZE=$(stat -c %s "$GC_IMAGES/vmlinuz")
ISIZE=$(stat -c %s "$GC_IMAGES/initramfs.img")

lab_new
mkdir -p "$T_DIR/store" "$T_DIR/state"
ver=$(goldctl --store "$T_DIR/store" image import tiny "$GC_IMAGES/tiny.ext4" 2>&1)
is "$ver" "tiny@1" "tiny ext4 imported into a private store with goldctl"

{
	e2e_appliance_yaml "iqn.2026-11.org.example.e2e"
	cat <<YAML
images:
  - name: tiny
    version: current
    kernel: $GC_IMAGES/vmlinuz
    initrd: $GC_IMAGES/initramfs.img
    cmdline: "console=ttyS0 panic=-1 goldcache.onfail=poweroff"
profiles:
  - {name: hpc, image: tiny, mode: stream}
machines:
  - {mac: $MAC, name: node1, profile: hpc}
unknown_machines:
  policy: refuse
YAML
} >"$T_DIR/goldcache.yaml"
t_run "the config is valid on this lab" \
	ip netns exec "$LAB_NS" goldcached --check -c "$T_DIR/goldcache.yaml"
e2e_goldcached "$T_DIR/goldcache.yaml" "$GCLOG"
ok 0 "goldcached serves HTTP on the lab bridge"
wait_for 20 grep -q 'dnsmasq\[[0-9]*\]: .*started, version' "$GCLOG"
ok $? "goldcached started its own dnsmasq (log captured)"
wait_for 20 grep -Eq 'tgtd\[[0-9]+\]' "$GCLOG" ||
	wait_for 1 sh -c "ps -o comm= --ppid $E2E_GC_PID | grep -qx tgtd"
ok $? "goldcached started its own tgtd"
kids=$(ps -o comm= --ppid "$E2E_GC_PID" | sort | tr '\n' ' ')
like "$kids" "dnsmasq.*tgtd" "dnsmasq and tgtd are goldcached's children"

# --- 1. an unknown MAC under `refuse`: the refusal script, no kernel
lab_tap gctap1
lab_qemu stranger gctap1 "$STRANGER" "$T_DIR/stranger.serial"
e2e_timeline 90 \
	"dhcp-ack@$GCLOG=DHCPACK\\($LAB_BR\\) [0-9.]+ $STRANGER" \
	"script@$ACCESS=GET /boot\\.ipxe\\?mac=$STRANGER_HYP " \
	"refused@$T_DIR/stranger.serial=goldcache: boot refused: $STRANGER is not known to this appliance" \
	"advice@$T_DIR/stranger.serial=ask the administrator to add $STRANGER"
ok $? "unknown MAC: firmware -> dnsmasq -> iPXE -> goldcached's refusal script on the console"
# the script now waits at a prompt: everything it fetched is in the access log
kill -KILL "$(lab_pid stranger)" 2>/dev/null
wait "$(lab_pid stranger)" 2>/dev/null
xact=$(e2e_dhcp_xact "$GCLOG" "$STRANGER")
S_IP=$(printf '%s\n' "$xact" | sed -n "s/.* DHCPACK($LAB_BR) \([0-9.]*\) $STRANGER.*/\1/p")
like "$S_IP" '^10\.77\.0\.1[0-9][0-9]$' "dnsmasq leased the unknown machine $S_IP (full mode)"
like "$xact" "tags: ipxe, $LAB_BR" "dnsmasq: the unknown machine is not tagged known"
like "$xact" "option: 67 bootfile-name +$URL/boot\\.ipxe\\?mac=" "dnsmasq: it is sent the script URL all the same"
line=$(e2e_access "$ACCESS" "$S_IP" GET "^/boot\\.ipxe\\?mac=$STRANGER_HYP\$")
like "$line" " 200 [0-9]+ " "access log: $S_IP got its (refusal) script"
is "$(e2e_access "$ACCESS" "$S_IP" GET '^/boot/')" "" "access log: no kernel or initrd for the unknown machine"
like "$(grep 'boot script for unknown machine' "$GCLOG")" "$STRANGER from $S_IP:[0-9]+: refused by policy" \
	"goldcached's log names the refused MAC and its address"
serial=$(tr -d '\r' <"$T_DIR/stranger.serial")
if printf '%s' "$serial" | grep -q 'Linux version'; then ok 1 "no kernel booted on the unknown machine"; else
	ok 0 "no kernel booted on the unknown machine"
fi

# --- 2. the known machine: the whole chain to the initramfs
lab_tap gctap0
lab_qemu node1 gctap0 "$MAC" "$T_DIR/node1.serial"
SERIAL=$T_DIR/node1.serial
e2e_timeline 120 \
	"iPXE@$SERIAL=iPXE initialising devices" \
	"dhcp-ack@$GCLOG=DHCPACK\\($LAB_BR\\) [0-9.]+ $MAC" \
	"script@$ACCESS=GET /boot\\.ipxe\\?mac=$HYP " \
	"kernel@$ACCESS=GET /boot/images/tiny/kernel " \
	"initrd@$ACCESS=GET /boot/images/tiny/initrd " \
	"linux@$SERIAL=Linux version" \
	"initramfs@$SERIAL=goldcache: stage init " \
	"cmdline@$SERIAL=goldcache: stage cmdline " \
	"network@$SERIAL=goldcache: stage network " \
	"appliance@$SERIAL=goldcache: stage appliance "
ok $? "firmware -> dnsmasq -> iPXE -> goldcached script -> kernel + initramfs -> initramfs stages"
kill -KILL "$(lab_pid node1)" 2>/dev/null
wait "$(lab_pid node1)" 2>/dev/null
serial=$(tr -d '\r' <"$SERIAL")

# dnsmasq: the iPXE ROM's first transaction is tagged known + ipxe and answered
# with goldcached's script URL
xact=$(e2e_dhcp_xact "$GCLOG" "$MAC")
IP=$(printf '%s\n' "$xact" | sed -n "s/.* DHCPACK($LAB_BR) \([0-9.]*\) $MAC.*/\1/p")
like "$IP" '^10\.77\.0\.1[0-9][0-9]$' "dnsmasq: DHCPACK $IP to node1's iPXE"
like "$xact" "user class: iPXE" "dnsmasq: the ROM announces itself as iPXE"
like "$xact" "tags: known, ipxe, $LAB_BR" "dnsmasq: tagged known (goldcached's hosts entry) and ipxe"
like "$xact" "DHCPOFFER\\($LAB_BR\\) $IP $MAC" "dnsmasq: DHCPOFFER $IP"
like "$xact" "option: 12 hostname +node1" "dnsmasq: hostname node1 from the hosts entry"
like "$xact" "option: 67 bootfile-name +$URL/boot\\.ipxe\\?mac=\\\$\\{net0/mac:hexhyp\\}" \
	"dnsmasq: iPXE is sent goldcached's script URL"

# goldcached: the script, then kernel and initramfs in full, to node1's address
line=$(e2e_access "$ACCESS" "$IP" GET "^/boot\\.ipxe\\?mac=$HYP\$")
like "$line" " 200 [0-9]+ " "access log: $IP fetched /boot.ipxe?mac=$HYP"
line=$(e2e_access "$ACCESS" "$IP" GET '^/boot/images/tiny/kernel$')
like "$line" " 200 $KSIZE " "access log: kernel, 200, all $KSIZE bytes"
line=$(e2e_access "$ACCESS" "$IP" GET '^/boot/images/tiny/initrd$')
like "$line" " 200 $ISIZE " "access log: initrd, 200, all $ISIZE bytes"
like "$serial" "goldcache: node1 mode stream image tiny@1" "iPXE ran the stream script rendered for node1"

# the kernel command line it received carries the profile's goldcache.* arguments
kcmd=$(printf '%s\n' "$serial" | grep -m1 'Kernel command line:')
like "$kcmd" "goldcache\\.url=$URL( |$)" "kernel cmdline: goldcache.url=$URL"
like "$kcmd" "goldcache\\.machine=node1( |$)" "kernel cmdline: goldcache.machine=node1"
like "$kcmd" "goldcache\\.mode=stream( |$)" "kernel cmdline: goldcache.mode=stream (profile hpc)"
like "$kcmd" "goldcache\\.image=tiny goldcache\\.version=1( |$)" "kernel cmdline: image tiny@1"
like "$kcmd" "BOOTIF=01-$HYP( |$)" "kernel cmdline: BOOTIF names the booting NIC"
like "$kcmd" "console=ttyS0 panic=-1 goldcache\\.onfail=poweroff" "kernel cmdline: the image's cmdline"
like "$serial" "goldcache: stage cmdline url=$URL machine=node1 mode=stream t=" \
	"the initramfs parsed url, machine and mode"
like "$serial" "goldcache: stage network eth0 $IP/24" "the initramfs got the same lease ($IP)"
like "$serial" "goldcache: stage appliance reachable $URL" "the initramfs reached goldcached"
line=$(e2e_access "$ACCESS" "$IP" GET '^/api/v1/health$')
like "$line" " 200 " "access log: the initramfs's health check came from $IP"

# registry: node1's boot is recorded; the stranger is not a machine
boot=$(sqlite3 -readonly "$T_DIR/state/registry.db" \
	"select name, last_boot > 0 from machines where mac = '$MAC'")
is "$boot" "node1|1" "the registry recorded node1's boot"

# --- 3. dnsmasq killed: goldcached restarts it and node1 PXE-boots through the new one
child_pid() { ps -o pid=,comm= --ppid "$E2E_GC_PID" | awk -v c="$1" '$2 == c { print $1 }'; }
OLD_DNSMASQ=$(child_pid dnsmasq)
kill -KILL "$OLD_DNSMASQ"
wait_for 30 sh -c "ps -o pid=,comm= --ppid $E2E_GC_PID | awk '\$2 == \"dnsmasq\" && \$1 != $OLD_DNSMASQ { f = 1 } END { exit !f }'"
ok $? "goldcached restarted dnsmasq after SIGKILL"
like "$(cat "$GCLOG")" "dnsmasq\\[$OLD_DNSMASQ\\] exited with code 137 .*restarting" \
	"goldcached logged dnsmasq's death and the restart"
NEW_DNSMASQ=$(child_pid dnsmasq)
wait_for 10 grep -q "dnsmasq\\[$NEW_DNSMASQ\\]: .*started, version" "$GCLOG"
ALINES=$(wc -l <"$ACCESS")
lab_qemu node1again gctap0 "$MAC" "$T_DIR/node1-again.serial"
e2e_timeline 90 \
	"dhcp-ack@$GCLOG=dnsmasq-dhcp\\[$NEW_DNSMASQ\\]: [0-9]+ DHCPACK\\($LAB_BR\\) [0-9.]+ $MAC" \
	"initrd@$T_DIR/node1-again.serial=/boot/images/tiny/initrd\\.\\.\\. ok"
ok $? "node1 PXE-boots again through the restarted dnsmasq (DHCP, script, kernel, initrd)"
kill -KILL "$(lab_pid node1again)" 2>/dev/null
wait "$(lab_pid node1again)" 2>/dev/null
# (iPXE says ok once it has every byte; goldcached logs when the response ends)
wait_for 10 sh -c "tail -n +$((ALINES + 1)) '$ACCESS' | grep -q ' /boot/images/tiny/initrd '"
new=$(tail -n +"$((ALINES + 1))" "$ACCESS" | tr '\n' ' ')
like "$new" "GET /boot\\.ipxe\\?mac=$HYP 200 .*GET /boot/images/tiny/kernel 200 $KSIZE .*GET /boot/images/tiny/initrd 200 $ISIZE " \
	"access log: script, kernel and initrd again after the restart"

# still supervising both children after the boots
kids=$(ps -o comm= --ppid "$E2E_GC_PID" | sort | tr '\n' ' ')
like "$kids" "dnsmasq.*tgtd" "dnsmasq and tgtd still run under goldcached"
kill -TERM "$E2E_GC_PID"
wait_for 30 sh -c "! kill -0 $E2E_GC_PID"
ok $? "goldcached shuts down on SIGTERM"
wait "$E2E_GC_PID"
is "$?" 0 "goldcached exit status 0"
left=$(ip netns pids "$LAB_NS" | xargs -r ps -o comm= -p | sort | tr '\n' ' ')
is "$left" "" "nothing left running in the lab namespace"
done_testing
