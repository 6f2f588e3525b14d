#!/usr/bin/env bash
# The UEFI variant of pxe-appliance.t, with the TFTP hop: a TCG guest with OVMF and
# no iPXE option ROM, so the firmware's own PXE client asks goldcached's dnsmasq
# (client arch 7), loads ipxe.efi over TFTP from the tftp_root goldcached filled,
# and iPXE then fetches /boot.ipxe?mac= from goldcached, loads kernel and initramfs
# over HTTP and boots them through the kernel's EFI stub (initrd=initrd.img names
# iPXE's image). Ends at the initramfs's cmdline and appliance markers.
# gc-test: slow
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
need goldcached goldctl qemu-system-x86_64 tgtd dnsmasq curl
OVMF=/usr/share/OVMF/OVMF_CODE_4M.fd
[ -r "$OVMF" ] || bail "missing prerequisite $OVMF (the ovmf package; run make deps)"
MAC=52:54:00:77:00:51
HYP=52-54-00-77-00-51
URL="http://$LAB_ADDR:$LAB_HTTP_PORT"
GCLOG=$T_DIR/goldcached.log
ACCESS=$T_DIR/state/access.log
SERIAL=$T_DIR/uefi.serial

qemu_images initramfs
qemu_images tiny
ok 0 "image-build: kernel, initramfs and tiny gold image ready"
lab_new
mkdir -p "$T_DIR/store" "$T_DIR/state"
t_run "tiny gold image imported" goldctl --store "$T_DIR/store" image import tiny "$GC_IMAGES/tiny.ext4"
{
	e2e_appliance_yaml iqn.2026-11.org.example.uefi
	cat <<YAML
images:
  - {name: tiny, kernel: $GC_IMAGES/vmlinuz, initrd: $GC_IMAGES/initramfs.img,
     cmdline: "console=ttyS0 panic=-1 goldcache.onfail=poweroff"}
profiles:
  - {name: desk, image: tiny, mode: cache}
machines:
  - {mac: $MAC, name: uefi1, profile: desk}
YAML
} >"$T_DIR/goldcache.yaml"
e2e_goldcached "$T_DIR/goldcache.yaml" "$GCLOG"
ok 0 "goldcached serves HTTP on the lab bridge"
cmp -s "$LAB_TFTP/ipxe.efi" /usr/lib/ipxe/ipxe.efi
ok $? "goldcached put the ipxe package's ipxe.efi in its tftp_root"

lab_tap gctap0
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$T_DIR/vars.fd"
LAB_NIC_OPTS=",romfile=" lab_qemu uefi1 gctap0 "$MAC" "$SERIAL" \
	-drive "if=pflash,format=raw,readonly=on,file=$OVMF" \
	-drive "if=pflash,format=raw,file=$T_DIR/vars.fd"
e2e_timeline 150 \
	"firmware-PXE@$SERIAL=Start PXE over IPv4" \
	"tftp@$GCLOG=sent .*/ipxe\\.efi to " \
	"iPXE@$SERIAL=iPXE initialising devices" \
	"script@$ACCESS=GET /boot\\.ipxe\\?mac=$HYP " \
	"kernel@$ACCESS=GET /boot/images/tiny/kernel " \
	"initrd@$ACCESS=GET /boot/images/tiny/initrd " \
	"linux@$SERIAL=Linux version" \
	"cmdline@$SERIAL=goldcache: stage cmdline " \
	"appliance@$SERIAL=goldcache: stage appliance "
ok $? "UEFI firmware -> dnsmasq -> TFTP ipxe.efi -> iPXE -> goldcached -> kernel + initramfs"
kill -KILL "$(lab_pid uefi1)" 2>/dev/null
wait "$(lab_pid uefi1)" 2>/dev/null

serial=$(tr -d '\r' <"$SERIAL")
like "$serial" 'NBP filename is ipxe\.efi' "the firmware was told ipxe.efi"
dlog=$(grep 'dnsmasq\[' "$GCLOG")
like "$dlog" "vendor class: PXEClient:Arch:00007" "dnsmasq saw the firmware's UEFI x86-64 request"
like "$dlog" "sent $LAB_TFTP/ipxe\\.efi to 10\\.77\\.0\\.1[0-9][0-9]" "dnsmasq sent ipxe.efi over TFTP"
like "$serial" "goldcache: uefi1 mode cache image tiny@1" "iPXE ran uefi1's cache script"
like "$serial" "goldcache: stage cmdline url=$URL machine=uefi1 mode=cache t=" \
	"the initramfs got url, machine and mode through the EFI stub"
like "$serial" "goldcache: stage appliance reachable $URL" "the initramfs reached goldcached"
done_testing
