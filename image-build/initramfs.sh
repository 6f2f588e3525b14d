#!/usr/bin/env bash
# The netboot initramfs: busybox (Debian busybox-static) as the userland, the kernel
# modules goldagent's boot needs (resolved with the kmod .deb's modprobe against the
# netboot kernel's modules.dep), nbd-client and mke2fs with their shared libraries
# (copied by ldd resolution), what goldagent bootdisk lays a machine's own disk out
# with (mkfs.fat, SYSLINUX's unmounted-FAT installer with the mtools it runs, and
# SYSLINUX's mbr.bin), the /init in image-build/initramfs/, and goldagent when
# given. Output: a gzip'd newc cpio the kernel takes as its initrd.
#
# Usage: image-build/initramfs.sh [--agent PATH] [--add SRC[:DEST]]... [--out FILE]
#   --agent PATH   goldagent binary, installed as /sbin/goldagent (with its libraries)
#   --add SRC[:DEST]  any other program, installed at DEST (default: SRC's path), with
#                  its libraries
#   --out FILE     default build/images/initramfs.img
# GC_INITRAMFS_MODULES adds modules to the default set. Rebuilds only when an input
# (kernel, packages, /init, these scripts, the agent's bytes) changed. Prints the path.
. "$(dirname "$0")/common.sh"
ib_lock
ib_need cpio gzip ldd sha256sum unshare

agent=""
adds=()
out=$IB_OUT/initramfs.img
while [ $# -gt 0 ]; do
	case "$1" in
	--agent) agent=$2; shift 2 ;;
	--add) adds+=("$2"); shift 2 ;;
	--out) out=$2; shift 2 ;;
	*) ib_die "usage: $0 [--agent PATH] [--add SRC[:DEST]]... [--out FILE]" ;;
	esac
done
[ -z "$agent" ] || [ -x "$agent" ] || ib_die "--agent '$agent' is not an executable"
add_srcs=()
for a in ${adds[@]+"${adds[@]}"}; do
	[ -x "${a%%:*}" ] || ib_die "--add '${a%%:*}' is not an executable"
	add_srcs+=("${a%%:*}")
done

# What goldagent's boot needs: the virtio NIC and disk, nbd for its exports, ext4 and
# overlayfs for the root, vfat (+ its default codepage and charset) for the local
# disk's GCBOOT partition. af_packet (udhcpc) and unix sockets are built in.
modules=(virtio_pci virtio_net virtio_blk nbd crc32c_generic crc16 mbcache jbd2 ext4 overlay
	vfat nls_cp437 nls_ascii)
read -ra extra <<<"${GC_INITRAMFS_MODULES:-}"
modules+=(${extra[@]+"${extra[@]}"})

release=$(bash "$IB_DIR/kernel.sh")
kroot=$IB_OUT/kernel
bbroot=$IB_OUT/pkgs/busybox-static
ib_resolve busybox-static nbd-client libnl-3-200 libnl-genl-3-200 e2fsprogs libext2fs2 kmod libkmod2 \
	dosfstools syslinux syslinux-common mtools
sysroot=$IB_OUT/sysroot
ib_unpack busybox-static "$bbroot"
# nbd-client (its libnl-genl may be missing on the build host) and mke2fs, unpacked
# into a sysroot whose library directories ldd searches first
for p in nbd-client libnl-3-200 libnl-genl-3-200 e2fsprogs libext2fs2 dosfstools syslinux \
	syslinux-common mtools; do
	ib_unpack "$p" "$sysroot"
done
libdirs=("$sysroot/lib/x86_64-linux-gnu" "$sysroot/usr/lib/x86_64-linux-gnu")

hash=$(ib_inputs_hash "$release" "$0" "$IB_DIR/common.sh" "$IB_DIR/initramfs" \
	"${modules[*]}" "$bbroot/.deb-busybox-static" "$sysroot"/.deb-* \
	${agent:+"$agent"} ${adds[@]+"${adds[@]}"} ${add_srcs[@]+"${add_srcs[@]}"})
if ib_up_to_date "$out" "$hash"; then
	echo "$out"
	exit 0
fi

ib_log "initramfs for $release -> $out"
tree=$IB_OUT/initramfs.root
rm -rf "$tree"
mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,etc/goldcache,lib/goldcache,dev,proc,sys,run,tmp,newroot}

# busybox and its applet links (it is static: nothing else to copy)
cp "$bbroot/bin/busybox" "$tree/bin/busybox"
"$tree/bin/busybox" --list-full | while read -r a; do
	[ -e "$tree/$a" ] || ln -s /bin/busybox "$tree/$a"
done
[ -L "$tree/sbin/modprobe" ] || ib_die "busybox has no modprobe applet"

# modules with their dependencies, laid out as in the kernel's tree
ib_kmod_tools
kmods=$tree/lib/modules/$release
mkdir -p "$kmods"
for m in "${modules[@]}"; do
	deps=$("${IB_MODPROBE[@]}" -d "$kroot" -S "$release" --show-depends "$m") ||
		ib_die "module '$m' not found for $release"
	while read -r kind path _; do
		[ "$kind" = insmod ] || continue
		rel=${path#"$kroot/lib/modules/$release/"}
		mkdir -p "$kmods/$(dirname "$rel")"
		cp "$path" "$kmods/$rel"
	done <<<"$deps"
	echo "$m" >>"$tree/etc/goldcache/modules"
done
cp "$kroot/lib/modules/$release"/modules.{order,builtin,builtin.modinfo} "$kmods/"
"${IB_DEPMOD[@]}" -b "$tree" "$release" || ib_die "depmod failed in the initramfs tree"

# shared-library binaries: nbd-client (to connect goldagent's sockets), mke2fs
# (to format a blank machine volume), goldagent, extras
copy_bin() { # SRC DEST
	rm -f "$tree/$2" # may be a busybox applet link: never write through it
	IB_BIN_DEST=$2 ib_copy_binary "$1" "$tree" "${libdirs[@]}"
}
copy_bin "$sysroot/sbin/nbd-client" /sbin/nbd-client
copy_bin "$sysroot/sbin/mke2fs" /sbin/mke2fs
# goldagent bootdisk: the FAT, SYSLINUX (it runs mattrib and mcopy through sh), the
# MBR boot code at the path goldagent looks for it
copy_bin "$sysroot/sbin/mkfs.fat" /sbin/mkfs.fat
copy_bin "$sysroot/usr/bin/syslinux" /usr/bin/syslinux
copy_bin "$sysroot/usr/bin/mtools" /usr/bin/mtools
for a in mcopy mattrib; do
	rm -f "$tree/usr/bin/$a"
	ln -s mtools "$tree/usr/bin/$a"
done
install -D -m 0644 "$sysroot/usr/lib/syslinux/mbr/mbr.bin" "$tree/usr/lib/syslinux/mbr/mbr.bin"
# mtools converts names to the DOS code page 850 through iconv: the C library's
# gconv module for it (from the same host C library the binaries were copied with)
gconv=$(dirname "$(ldd "$sysroot/usr/bin/mtools" | sed -n 's/.*libc\.so\.6 => \([^ ]*\).*/\1/p')")/gconv
[ -f "$gconv/IBM850.so" ] || ib_die "no iconv module IBM850.so in $gconv (mtools needs code page 850)"
mkdir -p "$tree/usr/lib/x86_64-linux-gnu/gconv"
cp "$gconv/IBM850.so" "$gconv/gconv-modules" "$tree/usr/lib/x86_64-linux-gnu/gconv/"
[ -d "$gconv/gconv-modules.d" ] && cp -r "$gconv/gconv-modules.d" "$tree/usr/lib/x86_64-linux-gnu/gconv/"
[ -z "$agent" ] || copy_bin "$agent" /sbin/goldagent
for a in ${adds[@]+"${adds[@]}"}; do
	case "$a" in
	*:*) copy_bin "${a%%:*}" "${a#*:}" ;;
	*) copy_bin "$a" "$a" ;;
	esac
done

install -m 0755 "$IB_DIR/initramfs/init" "$tree/init"
install -m 0755 "$IB_DIR/initramfs/udhcpc.script" "$tree/lib/goldcache/udhcpc.script"
echo "$release" >"$tree/etc/goldcache/kernel-release"
# the kernel opens /dev/console before /init runs
if [ "$(id -u)" = 0 ]; then
	mknod -m 0600 "$tree/dev/console" c 5 1
	# prove the copied binaries find their libraries inside the tree alone
	case "$(chroot "$tree" /sbin/nbd-client -h 2>&1 || true)" in
	*"nbd-client version"*) ;;
	*) ib_die "nbd-client does not run inside the initramfs tree" ;;
	esac
	chroot "$tree" /sbin/mke2fs -V >/dev/null 2>&1 ||
		ib_die "mke2fs does not run inside the initramfs tree"
	# (grep without -q: it reads all, so pipefail never sees the tool's SIGPIPE)
	chroot "$tree" /usr/bin/syslinux --version 2>&1 | grep 'Peter Anvin' >/dev/null ||
		ib_die "syslinux does not run inside the initramfs tree"
	chroot "$tree" /usr/bin/mcopy --version 2>&1 | grep mtools >/dev/null ||
		ib_die "mtools (mcopy) does not run inside the initramfs tree"
	chroot "$tree" /sbin/mkfs.fat --help 2>&1 | grep 'Create FAT filesystem' >/dev/null ||
		ib_die "mkfs.fat does not run inside the initramfs tree"
	# what goldagent bootdisk does, on a small image file: a FAT at 1 MiB, SYSLINUX on
	# it (the installer hands mtools its file as /proc/PID/fd/N: /proc in a private
	# mount namespace; its temp folder is TMPDIR's, which must exist in the tree)
	truncate -s 20M "$tree/tmp/fat.img"
	TMPDIR=/tmp unshare -m --propagation private sh -c 'mount -t proc proc "$1/proc" &&
		chroot "$1" /sbin/mkfs.fat -I -n GCBOOT --offset=2048 /tmp/fat.img 16384 >/dev/null 2>&1 &&
		chroot "$1" /usr/bin/syslinux --install --offset 1048576 /tmp/fat.img' - "$tree" ||
		ib_die "mkfs.fat + syslinux cannot make a bootable FAT inside the initramfs tree"
	rm -f "$tree/tmp/fat.img"
fi

(cd "$tree" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc -R 0:0 --quiet) | gzip -9 >"$out.tmp"
mv "$out.tmp" "$out"
ib_mark_built "$out" "$hash"
ib_log "initramfs ready: $out ($(du -k "$out" | cut -f1) KiB)"
echo "$out"
