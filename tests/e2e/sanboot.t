#!/usr/bin/env bash
# Issue 5's sanboot mode on real firmware: image-build's whole-disk image (MBR +
# SYSLINUX + kernel + initramfs on a FAT partition, image-build/wholedisk.sh) is
# imported with goldctl as a `disk` image; goldcached (its own dnsmasq and tgtd) in a
# lab netns serves a sanboot profile. A diskless QEMU guest (TCG, virtio-net with
# QEMU's iPXE ROM) PXE-boots: dnsmasq -> iPXE -> goldcached's sanboot script (the
# machine's initiator name and CHAP credentials) -> iPXE logs in to the machine's
# target and sanboots LUN 1 (the read-only gold export) -> SYSLINUX, the kernel and
# the initramfs are read from the iSCSI disk (nothing but the script over HTTP) ->
# the disk's /init prints the disk id baked into that image and the iBFT iPXE left
# (target, LUN 1, initiator, CHAP user); like an OS installed on a SAN disk it logs
# in again from the iBFT (open-iscsi), reads the whole disk (its SHA-256 is the
# built image's) and cannot write it, then powers off. tgtd shows the session
# of the machine's initiator from the guest's address on a read-only LUN bound to
# the machine's CHAP account; the store's image is byte-identical afterwards.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
need goldcached goldctl qemu-system-x86_64 tgtd tgtadm dnsmasq curl cmp
MAC=52:54:00:77:00:51
HYP=52-54-00-77-00-51
PREFIX=iqn.2026-11.org.example.sanboot
URL="http://$LAB_ADDR:$LAB_HTTP_PORT"
GCLOG=$T_DIR/goldcached.log
ACCESS=$T_DIR/state/access.log
SERIAL=$T_DIR/exam1.serial

# --- the whole-disk image, from Debian packages
log=$T_DIR/image-build.log
if ! bash "$GC_SRC/image-build/wholedisk.sh" >"$log" 2>&1; then
	sed 's/^/#   /' "$log" | tail -n 20
	bail "image-build/wholedisk.sh failed"
fi
DISK=$GC_IMAGES/wholedisk.img
DISK_ID=$(cat "$DISK.id")
like "$DISK_ID" '^[0-9a-f]{16}$' "image-build: whole-disk image ready (disk id $DISK_ID)"
mbr=$(od -An -tx1 -j 510 -N 2 "$DISK" | tr -d ' ')
is "$mbr" 55aa "the image is an MBR disk"
t_run "a rebuild from the same inputs is byte-identical (the store deduplicates it)" \
	sh -c "bash '$GC_SRC/image-build/wholedisk.sh' --out '$T_DIR/again.img' >/dev/null 2>&1 && cmp '$DISK' '$T_DIR/again.img'"
rm -f "$T_DIR/again.img"*
t_fails "wholedisk.sh --size 8: refused" bash "$GC_SRC/image-build/wholedisk.sh" --size 8 --out "$T_DIR/small.img"
like "$T_OUT" "error: --size 8 MiB is too small: the kernel and initramfs need 16 MiB" "it says why"
t_fails "wholedisk.sh --size 1G: refused" bash "$GC_SRC/image-build/wholedisk.sh" --size 1G --out "$T_DIR/small.img"
like "$T_OUT" "error: --size '1G' is not a number of MiB" "it names the value"

lab_new
mkdir -p "$T_DIR/store" "$T_DIR/state" "$T_DIR/secrets"
ver=$(goldctl --store "$T_DIR/store" image import --kind disk wdisk "$DISK" 2>&1)
is "$ver" "wdisk@1" "whole-disk image imported with goldctl (kind disk)"
printf 'exam1-chap-secret-4242\n' >"$T_DIR/secrets/exam1"
chmod 600 "$T_DIR/secrets/exam1"

{
	e2e_appliance_yaml "$PREFIX"
	cat <<YAML
images:
  - {name: wdisk, version: current}
profiles:
  - {name: exam, image: wdisk, mode: sanboot}
machines:
  - {mac: $MAC, name: exam1, profile: exam, chap_secret_file: $T_DIR/secrets/exam1}
unknown_machines:
  policy: refuse
YAML
} >"$T_DIR/goldcache.yaml"
t_run "the config is valid on this lab" \
	ip netns exec "$LAB_NS" goldcached --check -c "$T_DIR/goldcache.yaml"
e2e_goldcached "$T_DIR/goldcache.yaml" "$GCLOG"
ok 0 "goldcached serves HTTP on the lab bridge"

# goldcached's own tgtd, through its control socket
gc_tgtadm() { TGT_IPC_SOCKET="$T_DIR/state/run/tgtd.sock" tgtadm -C 0 --lld iscsi "$@"; }
# target_show: the "Target N: IQN" block of exam1's target
target_show() {
	gc_tgtadm --op show --mode target 2>/dev/null |
		awk -v iqn="$PREFIX:m.exam1" '/^Target [0-9]+: / { on = ($3 == iqn) } on'
}
wait_for 60 sh -c "TGT_IPC_SOCKET='$T_DIR/state/run/tgtd.sock' tgtadm -C 0 --lld iscsi --op show --mode target 2>/dev/null | grep -q 'Backing store path: /'"
ok $? "exam1's target has its gold LUN before the machine boots"
t=$(target_show)
lun1=$(printf '%s\n' "$t" | awk '/^ +LUN: 1$/ { on = 1 } /^ +LUN: [02-9]/ { on = 0 } on')
like "$lun1" "Readonly: Yes" "LUN 1 is read-only in tgtd"
like "$lun1" "Backing store path: $T_DIR/" "LUN 1 is goldcached's export of wdisk"
acct=$(printf '%s\n' "$t" | awk '/^ *Account information:/ { on = 1; next } /^ *ACL information:/ { on = 0 } on { print $1 }')
is "$acct" "exam1" "exam1's CHAP account (and only it) is bound to its target"
acl=$(printf '%s\n' "$t" | awk '/^ *ACL information:/ { on = 1; next } on { print $1 }')
is "$acl" "$PREFIX:i.exam1" "the ACL admits exam1's initiator name only"

# --- the diskless machine: PXE -> iPXE -> sanboot -> SYSLINUX -> kernel from the LUN
lab_tap gctap0
lab_qemu exam1 gctap0 "$MAC" "$SERIAL"
# SYSLINUX writes to the serial port itself and through SeaBIOS's serial console, so
# its "Loading ... ok" lines come interleaved: a file has been read from the LUN when
# the next one starts (the kernel) or the kernel runs (the initrd: "Probing EDD")
e2e_timeline 150 \
	"iPXE@$SERIAL=iPXE initialising devices" \
	"dhcp-ack@$GCLOG=DHCPACK\\($LAB_BR\\) [0-9.]+ $MAC" \
	"script@$ACCESS=GET /boot\\.ipxe\\?mac=$HYP " \
	"sanboot@$SERIAL=goldcache: exam1 mode sanboot image wdisk@1" \
	"san-device@$SERIAL=Booting from SAN device" \
	"syslinux@$SERIAL=SYSLINUX [0-9]" \
	"kernel-read@$SERIAL=Loading /initrd\\.img" \
	"initrd-read@$SERIAL=Probing EDD" \
	"linux@$SERIAL=Linux version" \
	"init@$SERIAL=goldcache-wholedisk: up" \
	"ibft@$SERIAL=goldcache-wholedisk: ibft target0/target-name" \
	"relogin@$SERIAL=goldcache-wholedisk: iscsi login from the iBFT" \
	"read-disk@$SERIAL=goldcache-wholedisk: disk sha256" \
	"poweroff@$SERIAL=goldcache-wholedisk: powering off"
ok $? "firmware -> dnsmasq -> iPXE -> sanboot script -> iSCSI LUN 1 -> SYSLINUX -> kernel -> the disk's init"
serial=$(tr -d '\r' <"$SERIAL")
IP=$(e2e_lease "$GCLOG" "$MAC")
like "$IP" '^10\.77\.0\.1[0-9][0-9]$' "dnsmasq leased exam1 $IP"

# the session iPXE opened stays in tgtd (its INT13 disk: the OS never logs out)
t=$(target_show)
like "$t" "Initiator: $PREFIX:i\\.exam1 alias:" "tgtd: a session of exam1's initiator on its target"
like "$t" "IP Address: $IP" "tgtd: that session comes from the guest's address ($IP)"
wait_for 30 sh -c "! kill -0 $(lab_pid exam1)"
ok $? "the guest powered off by itself"
wait "$(lab_pid exam1)" 2>/dev/null

# what the booted system says: it is the disk imported above, sanbooted from exam1's target
like "$serial" "goldcache-wholedisk: disk id $DISK_ID" "the kernel's command line is the disk's syslinux.cfg (disk id $DISK_ID)"
like "$serial" "goldcache-wholedisk: loaded by the bootloader as /vmlinuz" "SYSLINUX loaded /vmlinuz from the FAT partition"
like "$serial" "goldcache-wholedisk: ibft target0/target-name $PREFIX:m\\.exam1" "iBFT: exam1's target"
like "$serial" "goldcache-wholedisk: ibft target0/ip-addr $LAB_ADDR" "iBFT: the appliance's portal address"
like "$serial" "goldcache-wholedisk: ibft target0/port 3260" "iBFT: the portal port"
like "$serial" "goldcache-wholedisk: ibft target0/lun 0?1(0+)?$" "iBFT: LUN 1"
like "$serial" "goldcache-wholedisk: ibft target0/chap-name exam1" "iBFT: CHAP user exam1"
like "$serial" "goldcache-wholedisk: ibft initiator/initiator-name $PREFIX:i\\.exam1" "iBFT: exam1's initiator name"
like "$serial" "goldcache-wholedisk: ibft ethernet0/mac $MAC" "iBFT: the booting NIC"
# the running system logs in again from the iBFT and reads the disk it booted from
like "$serial" "goldcache-wholedisk: iscsi login from the iBFT: /dev/sd[a-z]+, 32 MiB" \
	"Linux logged in to the LUN again with the iBFT's credentials (open-iscsi)"
like "$serial" "goldcache-wholedisk: disk sha256 $(sha256sum <"$DISK" | cut -c1-64)" \
	"the disk Linux reads over iSCSI is the built image, byte for byte (SHA-256)"
like "$serial" "sd [0-9:]+: \\[sd[a-z]+\\] Write Protect is on" "the target reports the LUN write-protected"
like "$serial" "goldcache-wholedisk: disk write-protect flag 1" "the disk is read-only in the guest"
like "$serial" "goldcache-wholedisk: disk write refused: " "a write to it is refused"
printf '%s' "$serial" | grep -q exam1-chap-secret
ok $((!$?)) "the CHAP secret never reaches the console"

# HTTP carried the script only: the kernel and initramfs came from the iSCSI disk
line=$(e2e_access "$ACCESS" "$IP" GET "^/boot\\.ipxe\\?mac=$HYP\$")
like "$line" " 200 [0-9]+ " "access log: $IP fetched its sanboot script"
is "$(e2e_access "$ACCESS" "$IP" GET '^/boot/')" "" "access log: no kernel or initrd over HTTP"
metrics=$(ip netns exec "$LAB_NS" curl -s "$URL/metrics")
like "$metrics" 'goldcache_boot_scripts_total\{mode="sanboot"\} 1' "metrics: one sanboot script served"

# the gold stayed gold: the store's version is the imported disk, bit for bit
t_run "goldctl exports wdisk@1" goldctl --store "$T_DIR/store" image export wdisk@1 "$T_DIR/export.img"
t_run "wdisk@1 in the store is byte-identical to the built disk" cmp "$DISK" "$T_DIR/export.img"

kill -TERM "$E2E_GC_PID"
wait_for 30 sh -c "! kill -0 $E2E_GC_PID"
ok $? "goldcached shuts down on SIGTERM (its targets deleted with the live session)"
wait "$E2E_GC_PID"
is "$?" 0 "goldcached exit status 0"
left=$(ip netns pids "$LAB_NS" | xargs -r ps -o comm= -p | sort | tr '\n' ' ')
is "$left" "" "nothing left running in the lab namespace"
done_testing
