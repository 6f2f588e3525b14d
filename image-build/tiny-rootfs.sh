#!/usr/bin/env bash
# The tiny gold image for fast tests: an ext4 filesystem image (built with
# mkfs.ext4 -d, no mounting) holding Debian's static busybox and an /sbin/init that
# prints "goldcache-tiny: up". Byte-identical across rebuilds from the same inputs
# (fixed UUID, hash seed and timestamps), so the store deduplicates it.
#
# Usage: image-build/tiny-rootfs.sh [--out FILE] [--size MiB]    (prints the path)
# Default: build/images/tiny.ext4, 8 MiB.
. "$(dirname "$0")/common.sh"
ib_lock
ib_need mkfs.ext4 debugfs sha256sum

out=$IB_OUT/tiny.ext4
size=8
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	*) ib_die "usage: $0 [--out FILE] [--size MiB]" ;;
	esac
done

bbroot=$IB_OUT/pkgs/busybox-static
ib_unpack busybox-static "$bbroot"
hash=$(ib_inputs_hash "$0" "$IB_DIR/common.sh" "$IB_DIR/tiny" "$size" "$bbroot/.deb-busybox-static")
if ib_up_to_date "$out" "$hash"; then
	echo "$out"
	exit 0
fi

ib_log "tiny gold image -> $out"
tree=$IB_OUT/tiny.root
rm -rf "$tree"
mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,run,tmp,root}
chmod 1777 "$tree/tmp"
cp "$bbroot/bin/busybox" "$tree/bin/busybox"
"$tree/bin/busybox" --list-full | while read -r a; do
	[ -e "$tree/$a" ] || ln -s /bin/busybox "$tree/$a"
done
rm -f "$tree/sbin/init"
install -m 0755 "$IB_DIR/tiny/init" "$tree/sbin/init"
echo goldcache-tiny >"$tree/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$tree/etc/passwd"
printf 'root:x:0:\n' >"$tree/etc/group"
printf 'goldcache tiny gold image\n' >"$tree/etc/issue"
# reproducible: every file's time is the epoch, and mkfs gets fixed ids and clock
find "$tree" -exec touch -h -d @0 {} +

rm -f "$out.tmp"
E2FSPROGS_FAKE_TIME=1 mkfs.ext4 -q -F -L goldcache-tiny \
	-U 6f1d0c2e-8a57-4b1e-9a3c-7a1d2e3f4b5c -E hash_seed=3b0b7e0a-2c1d-4e5f-8a9b-0c1d2e3f4a5b,root_owner=0:0 \
	-d "$tree" "$out.tmp" "${size}M" >/dev/null || ib_die "mkfs.ext4 -d failed"
# mkfs copies each file's ctime, which no one can set: zero it with debugfs
(cd "$tree" && find . -mindepth 1) | sed 's|^\.\(.*\)|sif "\1" ctime 0|' >"$IB_OUT/tiny.debugfs"
echo 'sif / ctime 0' >>"$IB_OUT/tiny.debugfs"
E2FSPROGS_FAKE_TIME=1 debugfs -w -f "$IB_OUT/tiny.debugfs" "$out.tmp" >/dev/null 2>"$IB_OUT/tiny.debugfs.log" ||
	ib_die "debugfs could not normalise the image's times (see $IB_OUT/tiny.debugfs.log)"
mv "$out.tmp" "$out"
ib_mark_built "$out" "$hash"
ib_log "tiny image ready: $out (${size} MiB, sha256 $(sha256sum <"$out" | cut -c1-16))"
echo "$out"
