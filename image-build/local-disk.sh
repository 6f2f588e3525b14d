#!/usr/bin/env bash
# A machine's local disk laid out for offline boots: an MBR disk whose first partition
# (FAT, "GCBOOT", active) holds SYSLINUX, the netboot kernel and initramfs and a
# syslinux.cfg booting them with the machine's goldcache arguments, and whose second
# partition (type 0xda, non-filesystem data) is left for goldagent's local cache.
# It is the layout `goldagent bootdisk` (agent/bootdisk.c) lays out on a machine's
# blank disk itself at an online boot (goldcache.disk=DEV): this script is the
# host-side tool for tests and VMs that need such a disk made beforehand. goldagent
# also updates a disk made here at its next network boot: it writes the boot's
# kernel + initramfs into its own slots (a/, b/) and a syslinux.cfg naming them, and
# removes /vmlinuz, /initrd.img (and the *.prev pair this script's "previous" entry
# names, never written here). Built without mounting or partitioning tools: the MBR is
# written here, the FAT with mkfs.fat, mtools and SYSLINUX's mtools installer, all
# three unpacked from Debian packages.
#
# Usage: image-build/local-disk.sh --out FILE [--size MiB] [--boot-size MiB]
#          [--kernel FILE] [--initrd FILE] [--append "ARGS"]
# Defaults: 256 MiB disk, 64 MiB boot partition, build/images/vmlinuz and
# initramfs.img, append "goldcache.mode=cache goldcache.cache=/dev/vda2". The console
# (ttyS0) is always on the command line. Prints the path.
. "$(dirname "$0")/common.sh"
ib_lock
ib_need dd truncate

out="" size=256 bsize=64 kernel=$IB_OUT/vmlinuz initrd=$IB_OUT/initramfs.img
append="goldcache.mode=cache goldcache.cache=/dev/vda2"
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--boot-size) bsize=$2; shift 2 ;;
	--kernel) kernel=$2; shift 2 ;;
	--initrd) initrd=$2; shift 2 ;;
	--append) append=$2; shift 2 ;;
	*) ib_die "usage: $0 --out FILE [--size MiB] [--boot-size MiB] [--kernel F] [--initrd F] [--append ARGS]" ;;
	esac
done
[ -n "$out" ] || ib_die "--out FILE is required"
[ -f "$kernel" ] || ib_die "no kernel at $kernel (run image-build/kernel.sh)"
[ -f "$initrd" ] || ib_die "no initramfs at $initrd (run image-build/initramfs.sh)"
[ "$size" -gt $((bsize + 2)) ] || ib_die "--size must leave room after the ${bsize} MiB boot partition"

tools=$IB_OUT/pkgs/syslinux-tools
for p in syslinux syslinux-common mtools dosfstools; do ib_unpack "$p" "$tools"; done
export PATH="$tools/usr/bin:$tools/sbin:$PATH" MTOOLSRC=/dev/null MTOOLS_SKIP_CHECK=1

work=$(mktemp -d "${TMPDIR:-/tmp}/gc-localdisk.XXXXXX")
trap 'rm -rf "$work"' EXIT

# the boot partition, built as its own file and then placed at 1 MiB
fat=$work/boot.fat
mkfs.fat -C -h 2048 -n GCBOOT "$fat" $((bsize * 1024)) >/dev/null || ib_die "mkfs.fat failed"
syslinux --install "$fat" || ib_die "syslinux --install failed"
cat >"$work/syslinux.cfg" <<CFG
# goldcache local boot (rewritten by goldagent when the netboot kernel changes)
SERIAL 0 115200
PROMPT 0
TIMEOUT 30
DEFAULT goldcache

LABEL goldcache
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0 $append

LABEL previous
  LINUX /vmlinuz.prev
  INITRD /initrd.prev
  APPEND console=ttyS0 $append
CFG
mcopy -i "$fat" "$kernel" ::/vmlinuz || ib_die "cannot copy the kernel to the boot partition"
mcopy -i "$fat" "$initrd" ::/initrd.img || ib_die "cannot copy the initramfs to the boot partition (make --boot-size larger)"
mcopy -i "$fat" "$work/syslinux.cfg" ::/syslinux.cfg

# le32 N: N as four little-endian bytes, as printf escapes
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
# mbr_entry BOOTFLAG TYPE START_SECTOR SECTORS: one 16-byte MBR partition entry (LBA
# only: the CHS fields say "beyond CHS", fe ff ff)
mbr_entry() {
	# shellcheck disable=SC2059 # the format is built from escapes on purpose
	printf "\\x$1\\xfe\\xff\\xff\\x$2\\xfe\\xff\\xff$(le32 "$3")$(le32 "$4")"
}
rm -f "$out.tmp"
truncate -s "${size}M" "$out.tmp"
p1_start=2048 p1_len=$((bsize * 2048))
p2_start=$((p1_start + p1_len)) p2_len=$((size * 2048 - p1_start - p1_len))
{
	head -c 440 "$tools/usr/lib/syslinux/mbr/mbr.bin"
	printf '\x67\x63\x6c\x64\x00\x00' # disk signature "gcld", then 2 zero bytes
	mbr_entry 80 0e "$p1_start" "$p1_len"   # active, FAT16 LBA: GCBOOT
	mbr_entry 00 da "$p2_start" "$p2_len"   # non-filesystem data: goldagent's cache
	head -c 32 /dev/zero
	printf '\x55\xaa'
} | dd of="$out.tmp" conv=notrunc status=none
[ "$(stat -c %s "$out.tmp")" = $((size * 1048576)) ] || ib_die "the MBR write changed the disk size"
dd if="$fat" of="$out.tmp" bs=1M seek=1 conv=notrunc status=none
mv "$out.tmp" "$out"
ib_log "local disk ready: $out (${size} MiB: GCBOOT ${bsize} MiB + cache partition)"
echo "$out"
