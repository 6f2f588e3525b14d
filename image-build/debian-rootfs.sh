#!/usr/bin/env bash
# The Debian gold image for the demo: a debootstrap minbase root of the host's Debian
# release (plus systemd as init, udev, iproute2), from the Debian mirror apt is
# configured with, turned into an ext4 filesystem image with mkfs.ext4 -d (no
# mounting). Its console: root logs in on ttyS0 without a password, and a unit
# (debian/goldcache-image) prints "goldcache-debian: up" when multi-user is reached,
# logs the boot and powers off on request, as the tiny image's init does. Takes several minutes: it is not
# part of make check (make image-debian).
#
# Usage: image-build/debian-rootfs.sh [--out FILE] [--suite NAME]   (prints the path)
# Default: build/images/debian-minbase.ext4, suite = the host's VERSION_CODENAME.
. "$(dirname "$0")/common.sh"
ib_lock
ib_need debootstrap mkfs.ext4 apt-get
[ "$(id -u)" = 0 ] || ib_die "debootstrap needs root"

out=$IB_OUT/debian-minbase.ext4
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--suite) suite=$2; shift 2 ;;
	*) ib_die "usage: $0 [--out FILE] [--suite NAME]" ;;
	esac
done
[ -n "$suite" ] || ib_die "cannot tell the Debian release (give --suite)"

# the mirror apt uses for that suite (no host name written down here)
apt_site() {
	# shellcheck disable=SC2016 # apt's own $(FIELD) template, not the shell's
	apt-get indextargets --format '$(SITE) $(RELEASE)' 2>/dev/null |
		awk -v s="$suite" '$2 == s { print $1; exit }'
}
mirror=$(apt_site)
if [ -z "$mirror" ]; then
	ib_apt_update
	mirror=$(apt_site)
fi
[ -n "$mirror" ] || ib_die "apt has no source for suite '$suite' (see /etc/apt/sources.list*)"

include=systemd-sysv,udev,iproute2,procps,kmod,e2fsprogs
hash=$(ib_inputs_hash "$0" "$IB_DIR/debian" "$suite" "$mirror" "$include")
if ib_up_to_date "$out" "$hash"; then
	echo "$out"
	exit 0
fi

tree=$IB_OUT/debian.root
cache=$IB_OUT/debootstrap-cache
rm -rf "$tree"
mkdir -p "$tree" "$cache"
ib_log "debootstrap minbase $suite from $mirror (several minutes)"
start=$(date +%s)
debootstrap --variant=minbase --include="$include" --cache-dir="$cache" \
	"$suite" "$tree" "$mirror" >"$IB_OUT/debootstrap.log" 2>&1 ||
	ib_die "debootstrap failed: see $IB_OUT/debootstrap.log ($(tail -n 1 "$IB_OUT/debootstrap.log"))"
ib_log "debootstrap done in $(($(date +%s) - start)) s"

# configure: hostname, an empty fstab (root is the overlay the initramfs set up),
# root without password on the serial console, the marker unit
echo goldcache-debian >"$tree/etc/hostname"
printf '127.0.1.1\tgoldcache-debian\n' >>"$tree/etc/hosts"
printf '# root is the overlay the goldcache initramfs mounts\n' >"$tree/etc/fstab"
chroot "$tree" passwd -d root >/dev/null
mkdir -p "$tree/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$tree/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
UNIT
install -m 0755 "$IB_DIR/debian/goldcache-image" "$tree/usr/local/sbin/"
install -m 0644 "$IB_DIR/debian/goldcache-image.service" "$tree/etc/systemd/system/"
mkdir -p "$tree/etc/systemd/system/multi-user.target.wants"
ln -sf ../goldcache-image.service "$tree/etc/systemd/system/multi-user.target.wants/"
# nothing the first boot must do over the network, and no stale machine identity
: >"$tree/etc/machine-id"
rm -rf "$tree/var/cache/apt/archives"/*.deb "$tree/var/lib/apt/lists"/*_Packages*

used=$(du -sm "$tree" | cut -f1)
size=$((used + used / 4 + 64))
rm -f "$out.tmp"
mkfs.ext4 -q -F -L goldcache-debian -d "$tree" "$out.tmp" "${size}M" >/dev/null ||
	ib_die "mkfs.ext4 -d failed"
mv "$out.tmp" "$out"
ib_mark_built "$out" "$hash"
rm -rf "$tree"
ib_log "Debian gold image ready: $out (${size} MiB, $(($(date +%s) - start)) s)"
echo "$out"
