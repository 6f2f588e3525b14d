#!/usr/bin/env bash
# Issue 3's "takes effect at the next boot, with no restart", on real firmware: a
# QEMU guest PXE-boots node1 through the real goldcached (own dnsmasq + tgtd) in its
# stream profile; `goldctl machine assign node1 desk` moves it to a cache profile of
# another image, and a SIGHUP'd config turns the unknown-machines policy from refuse
# to that profile. At the next PXE boots (node1, then an unknown MAC)
# iPXE gets the new scripts: the kernels come from the new image's URL and the
# initramfs's kernel command line carries the new mode/image, while goldcached,
# dnsmasq and tgtd kept their PIDs. Guests are stopped as soon as the evidence is in
# (iPXE's downloads, the kernel's command line, node1's initramfs cmdline marker).
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
need goldcached goldctl qemu-system-x86_64 tgtd dnsmasq curl sqlite3
MAC=52:54:00:77:00:41
HYP=52-54-00-77-00-41
STRANGER=52:54:00:77:00:98
STRANGER_HYP=52-54-00-77-00-98
URL="http://$LAB_ADDR:$LAB_HTTP_PORT"
GCLOG=$T_DIR/goldcached.log
ACCESS=$T_DIR/state/access.log
CONF=$T_DIR/goldcache.yaml

qemu_images initramfs
qemu_images tiny
ok 0 "image-build: kernel, initramfs and tiny gold image ready"

lab_new
mkdir -p "$T_DIR/store" "$T_DIR/state"
t_run "gold image 'tiny' imported" goldctl --store "$T_DIR/store" image import tiny "$GC_IMAGES/tiny.ext4"
t_run "gold image 'lab' imported" goldctl --store "$T_DIR/store" image import lab "$GC_IMAGES/tiny.ext4"

# write_config POLICY-YAML: the lab config with the given unknown_machines section
write_config() {
	{
		e2e_appliance_yaml iqn.2026-11.org.example.swap
		cat <<-YAML
			images:
			  - {name: tiny, kernel: $GC_IMAGES/vmlinuz, initrd: $GC_IMAGES/initramfs.img,
			     cmdline: "console=ttyS0 panic=-1 goldcache.onfail=poweroff"}
			  - {name: lab, kernel: $GC_IMAGES/vmlinuz, initrd: $GC_IMAGES/initramfs.img,
			     cmdline: "console=ttyS0 panic=-1 goldcache.onfail=poweroff goldcache.net=off"}
			profiles:
			  - {name: hpc, image: tiny, mode: stream}
			  - {name: desk, image: lab, mode: cache}
			machines:
			  - {mac: $MAC, name: node1, profile: hpc}
			unknown_machines: $1
		YAML
	} >"$CONF.tmp"
	mv "$CONF.tmp" "$CONF"
}
write_config "{policy: refuse}"
e2e_goldcached "$CONF" "$GCLOG"
ok 0 "goldcached serves HTTP on the lab bridge"
# (goldcached's forked workers come and go: only its two supervised peers count)
pids_of_children() {
	ps -o pid=,comm= --ppid "$E2E_GC_PID" | awk '$2 == "dnsmasq" || $2 == "tgtd"' |
		sort -k2 | tr -s ' \n' ' '
}
wait_for 20 sh -c "ps -o comm= --ppid $E2E_GC_PID | grep -qx tgtd" &&
	wait_for 20 grep -q 'dnsmasq\[[0-9]*\]: .*started, version' "$GCLOG"
KIDS=$(pids_of_children)
like "$KIDS" "[0-9]+ dnsmasq [0-9]+ tgtd" "goldcached runs dnsmasq and tgtd"

# --- boot 1: node1 in its configured stream profile (pxe-appliance.t follows this
# chain into the initramfs; here iPXE's script and downloads are enough)
lab_tap gctap0
lab_tap gctap1
lab_qemu node1 gctap0 "$MAC" "$T_DIR/node1-a.serial"
e2e_timeline 90 \
	"script@$ACCESS=GET /boot\\.ipxe\\?mac=$HYP " \
	"kernel@$ACCESS=GET /boot/images/tiny/kernel 200 " \
	"initrd@$ACCESS=GET /boot/images/tiny/initrd 200 "
ok $? "boot 1: node1 PXE-boots, iPXE loads image tiny's kernel and initrd"
kill -KILL "$(lab_pid node1)" 2>/dev/null
wait "$(lab_pid node1)" 2>/dev/null
like "$(tr -d '\r' <"$T_DIR/node1-a.serial")" "goldcache: node1 mode stream image tiny@1" \
	"boot 1: iPXE ran node1's stream script (profile hpc)"

# --- the changes: an assignment through the API, a policy change through SIGHUP
ctl() { ip netns exec "$LAB_NS" goldctl machine "$@" --url "$URL" --token-file "$T_DIR/state/admin.token"; }
t_run "goldctl machine assign node1 desk" ctl assign node1 desk
like "$(ctl show node1)" "assigned profile: +desk" "goldctl shows node1 assigned to desk"
write_config "{policy: profile, profile: desk}"
kill -HUP "$E2E_GC_PID"
wait_for 20 grep -q 'config changed' "$GCLOG"
ok $? "SIGHUP: goldcached took the new unknown-machines policy"
ALINES=$(wc -l <"$ACCESS")

# --- boot 2: node1, then a MAC nobody listed (one guest at a time: 2 shared cores)
lab_qemu node1b gctap0 "$MAC" "$T_DIR/node1-b.serial"
e2e_timeline 90 \
	"kernel@$ACCESS=GET /boot/images/lab/kernel " \
	"cmdline@$T_DIR/node1-b.serial=goldcache: stage cmdline "
ok $? "boot 2: node1 PXE-boots to its initramfs"
kill -KILL "$(lab_pid node1b)" 2>/dev/null
wait "$(lab_pid node1b)" 2>/dev/null
lab_qemu stranger gctap1 "$STRANGER" "$T_DIR/stranger.serial"
e2e_timeline 90 \
	"script@$ACCESS=GET /boot\\.ipxe\\?mac=$STRANGER_HYP " \
	"linux@$T_DIR/stranger.serial=Kernel command line: "
ok $? "boot 2: the unknown MAC PXE-boots into the kernel"
kill -KILL "$(lab_pid stranger)" 2>/dev/null
wait "$(lab_pid stranger)" 2>/dev/null

n1=$(tr -d '\r' <"$T_DIR/node1-b.serial")
like "$n1" "goldcache: node1 mode cache image lab@1" "boot 2: iPXE ran node1's new cache script"
like "$n1" "goldcache: stage cmdline url=$URL machine=node1 mode=cache t=" \
	"boot 2: node1's initramfs is in cache mode"
kcmd=$(printf '%s\n' "$n1" | grep -m1 'Kernel command line:')
like "$kcmd" "goldcache\\.image=lab goldcache\\.version=1 .*goldcache\\.net=off" \
	"boot 2: node1's kernel cmdline names image lab@1 and carries its cmdline"
st=$(tr -d '\r' <"$T_DIR/stranger.serial")
like "$st" "goldcache: $STRANGER_HYP mode cache image lab@1" "boot 2: the unknown MAC now gets the desk profile"
kcmd=$(printf '%s\n' "$st" | grep -m1 'Kernel command line:')
like "$kcmd" "goldcache\\.url=$URL goldcache\\.machine=$STRANGER_HYP goldcache\\.mode=cache goldcache\\.image=lab " \
	"boot 2: the unknown MAC's kernel cmdline: its default name, cache mode, image lab"
new=$(tail -n +"$((ALINES + 1))" "$ACCESS")
like "$new" "GET /boot\\.ipxe\\?mac=$HYP 200 " "access log: node1's second script"
like "$new" "GET /boot\\.ipxe\\?mac=$STRANGER_HYP 200 " "access log: the unknown MAC's script"
kernels=$(printf '%s\n' "$new" | grep -c 'GET /boot/images/lab/kernel 200 ')
is "$kernels" 2 "access log: both fetched the kernel from image lab's URL"
tinyk=$(printf '%s\n' "$new" | grep -c 'GET /boot/images/tiny/')
is "$tinyk" 0 "access log: nothing fetched from image tiny at boot 2"

is "$(pids_of_children)" "$KIDS" "dnsmasq and tgtd kept their PIDs (no restart)"
kill -0 "$E2E_GC_PID"
ok $? "goldcached kept running"
reg=$(sqlite3 -readonly "$T_DIR/state/registry.db" \
	"select mac, assigned_profile from machines order by mac" 2>&1)
like "$reg" "$MAC\\|desk" "registry: node1 assigned to desk"
like "$reg" "$STRANGER" "registry: the unknown MAC was recorded at its boot"
done_testing
