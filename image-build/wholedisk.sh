#!/usr/bin/env bash
# The whole-disk test image for sanboot profiles: a bootable MBR disk that iPXE
# sanboots from the appliance's iSCSI LUN, standing in for "any OS" (a Windows or
# other installed disk in real use). Layout:
#   sector 0        SYSLINUX's mbr.bin (boot code, 440 bytes), disk signature "gcwd",
#                   one partition entry, 0x55aa
#   1 MiB - end     partition 1, active, FAT16 (LBA, type 0x0e), label GCDISK:
#                   ldlinux.sys + ldlinux.c32 (SYSLINUX), syslinux.cfg, /vmlinuz (the
#                   netboot kernel), /initrd.img (busybox + image-build/wholedisk/init
#                   + open-iscsi's iscsistart + iscsi_ibft, virtio-net, iscsi_tcp, sd_mod)
# The booted /init prints "goldcache-wholedisk: up", the disk id given on its kernel
# command line by syslinux.cfg (goldcache-wholedisk.id=, also in FILE.id: the hash
# of this build's inputs) and the iBFT iPXE left behind (which target and LUN it
# sanbooted); then, as an OS installed on a SAN disk does, it logs in again from
# the iBFT (iscsistart -N, -b), prints the SHA-256 of the whole disk it reads over
# iSCSI and whether a write to it was refused. Built without mounting or a partitioning tool: the FAT is made in
# place with mformat at the partition's offset, filled with mcopy, SYSLINUX is
# installed with its mtools installer (--offset), and the MBR is written with dd;
# syslinux, syslinux-common and mtools are unpacked from Debian packages. Reruns with
# the same inputs give the same bytes (epoch times, a reproducible cpio, a fixed serial).
#
# Usage: image-build/wholedisk.sh [--out FILE] [--size MiB] [--append "ARGS"]
# Defaults: build/images/wholedisk.img, 32 MiB, append "goldcache-wholedisk.poweroff=1"
# (the console, ttyS0, is always on the command line). Prints the path.
. "$(dirname "$0")/common.sh"
ib_lock
ib_need dd truncate cpio gzip sha256sum

out=$IB_OUT/wholedisk.img size=32 append="goldcache-wholedisk.poweroff=1"
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--append) append=$2; shift 2 ;;
	*) ib_die "usage: $0 [--out FILE] [--size MiB] [--append ARGS]" ;;
	esac
done
case "$size" in '' | *[!0-9]*) ib_die "--size '$size' is not a number of MiB" ;; esac
[ "$size" -ge 16 ] || ib_die "--size $size MiB is too small: the kernel and initramfs need 16 MiB"

release=$(bash "$IB_DIR/kernel.sh")
kernel=$IB_OUT/vmlinuz
kroot=$IB_OUT/kernel
tools=$IB_OUT/pkgs/syslinux-tools
for p in syslinux syslinux-common mtools; do ib_unpack "$p" "$tools"; done
bbroot=$IB_OUT/pkgs/busybox-static
ib_unpack busybox-static "$bbroot"
# iscsistart (open-iscsi) logs in again from the iBFT; its library may be missing on
# the build host: unpacked into a sysroot that ldd searches first
sysroot=$IB_OUT/pkgs/wholedisk-sysroot
for p in open-iscsi libopeniscsiusr; do ib_unpack "$p" "$sysroot"; done
libdirs=("$sysroot/lib/x86_64-linux-gnu" "$sysroot/usr/lib/x86_64-linux-gnu")
# the NIC (virtio), iSCSI (crc32c first: without it the login fails) and SCSI disks
modules=(iscsi_ibft virtio_pci virtio_net crc32c_generic sd_mod iscsi_tcp)
hash=$(ib_inputs_hash "$0" "$IB_DIR/common.sh" "$IB_DIR/wholedisk" "$size" "$append" \
	"$release" "$(cat "$kernel.inputs")" "$bbroot/.deb-busybox-static" \
	"$tools/.deb-syslinux" "$tools/.deb-syslinux-common" "$tools/.deb-mtools" \
	"$sysroot/.deb-open-iscsi" "$sysroot/.deb-libopeniscsiusr" "${modules[*]}")
if ib_up_to_date "$out" "$hash" && [ -s "$out.id" ]; then
	echo "$out"
	exit 0
fi
id=${hash:0:16}
# SOURCE_DATE_EPOCH: mtools stamps the entries it creates (volume label, files) with it
export PATH="$tools/usr/bin:$PATH" MTOOLSRC=/dev/null MTOOLS_SKIP_CHECK=1 SOURCE_DATE_EPOCH=0
ib_need mformat mcopy minfo syslinux
ib_log "whole-disk image -> $out (disk id $id)"

work=$(mktemp -d "${TMPDIR:-/tmp}/gc-wholedisk.XXXXXX")
img=$out.tmp
trap 'rm -rf "$work" "$img"' EXIT

# --- the initramfs: static busybox, /init, iscsistart, the modules with their dependencies
tree=$work/root
mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc/iscsi,var/lock}
cp "$bbroot/bin/busybox" "$tree/bin/busybox"
"$tree/bin/busybox" --list-full | while read -r a; do
	[ -e "$tree/$a" ] || ln -s /bin/busybox "$tree/$a"
done
install -m 0755 "$IB_DIR/wholedisk/init" "$tree/init"
IB_BIN_DEST=/sbin/iscsistart ib_copy_binary "$sysroot/sbin/iscsistart" "$tree" "${libdirs[@]}"
ib_kmod_tools
for m in "${modules[@]}"; do
	deps=$("${IB_MODPROBE[@]}" -d "$kroot" -S "$release" --show-depends "$m") ||
		ib_die "module '$m' not found for $release"
	while read -r kind path _; do
		[ "$kind" = insmod ] || continue
		rel=${path#"$kroot/lib/modules/$release/"}
		mkdir -p "$tree/lib/modules/$release/$(dirname "$rel")"
		cp "$path" "$tree/lib/modules/$release/$rel"
	done <<<"$deps"
done
cp "$kroot/lib/modules/$release"/modules.{order,builtin,builtin.modinfo} "$tree/lib/modules/$release/"
"${IB_DEPMOD[@]}" -b "$tree" "$release" || ib_die "depmod failed in the whole-disk initramfs"
if [ "$(id -u)" = 0 ]; then
	mknod -m 0600 "$tree/dev/console" c 5 1
	# prove iscsistart finds its libraries inside the tree alone
	chroot "$tree" /sbin/iscsistart --version >/dev/null 2>&1 ||
		ib_die "iscsistart does not run inside the whole-disk initramfs tree"
fi
find "$tree" -exec touch -h -d @0 {} +
(cd "$tree" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc -R 0:0 --reproducible --quiet) | gzip -n -9 >"$work/initrd.img" ||
	ib_die "cannot pack the whole-disk initramfs"

cat >"$work/syslinux.cfg" <<CFG
# goldcache whole-disk test image $id (image-build/wholedisk.sh)
SERIAL 0 115200
PROMPT 0
TIMEOUT 10
DEFAULT wholedisk

LABEL wholedisk
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0 panic=-1 goldcache-wholedisk.id=$id $append
CFG

# every file's time is the epoch (mcopy copies it into the FAT): reruns with the same
# inputs give the same bytes, which the store deduplicates
touch -d @0 "$work/initrd.img" "$work/syslinux.cfg"

# --- the disk: partition 1 from sector 2048 to the end, FAT made in place
sectors=$((size * 2048))
p_start=2048 p_len=$((sectors - 2048))
offset=$((p_start * 512))
rm -f "$img"
truncate -s "${size}M" "$img"
# -H: hidden sectors (the partition's start, which the boot sector must know);
# -N: a fixed volume serial; 4 sectors per cluster keeps it FAT16 from 16 MiB up
mformat -i "$img@@$offset" -T "$p_len" -h 64 -s 32 -H "$p_start" -c 4 -N 67637764 \
	-v GCDISK :: || ib_die "mformat failed on $img at offset $offset"
fattype=$(minfo -i "$img@@$offset" :: | sed -n 's/^disk type="\([A-Z0-9]*\) *"$/\1/p')
[ "$fattype" = FAT16 ] ||
	ib_die "mformat made a '${fattype:-unknown}' file system, not FAT16 (partition type 0x0e); change --size"

mcopy -i "$img@@$offset" "$kernel" ::/vmlinuz || ib_die "cannot copy the kernel onto the disk (make --size larger)"
mcopy -i "$img@@$offset" "$work/initrd.img" ::/initrd.img || ib_die "cannot copy the initramfs onto the disk (make --size larger)"
mcopy -i "$img@@$offset" "$work/syslinux.cfg" ::/syslinux.cfg || ib_die "cannot copy syslinux.cfg onto the disk"
syslinux --install --offset "$offset" "$img" || ib_die "syslinux --install --offset $offset failed on $img"

# le32 N: N as four little-endian bytes, as printf escapes
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
{
	head -c 440 "$tools/usr/lib/syslinux/mbr/mbr.bin"
	printf 'gcwd\x00\x00' # disk signature, then 2 zero bytes
	# active, CHS "beyond CHS" (fe ff ff), type 0x0e FAT16 LBA, LBA start and length
	# shellcheck disable=SC2059 # the format is built from escapes on purpose
	printf "\\x80\\xfe\\xff\\xff\\x0e\\xfe\\xff\\xff$(le32 "$p_start")$(le32 "$p_len")"
	head -c 48 /dev/zero
	printf '\x55\xaa'
} | dd of="$img" conv=notrunc status=none
[ "$(stat -c %s "$img")" = $((size * 1048576)) ] || ib_die "the MBR write changed the disk size"
echo "$id" >"$out.id"
mv "$img" "$out"
ib_mark_built "$out" "$hash"
ib_log "whole-disk image ready: $out (${size} MiB, disk id $id)"
echo "$out"
