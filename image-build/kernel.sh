#!/usr/bin/env bash
# The netboot kernel: Debian's linux-image that linux-image-amd64 currently depends on,
# downloaded with apt-get download and unpacked with dpkg -x (no install on the host).
#
# Produces, under build/images (GC_IMAGES overrides):
#   vmlinuz              the kernel
#   kernel-version       its release string (e.g. 6.1.0-56-amd64)
#   kernel/lib/modules/RELEASE/   the full modules tree, with depmod's indexes
# Reruns do nothing unless the package version changed.
#
# Usage: image-build/kernel.sh            (prints the release)
. "$(dirname "$0")/common.sh"
ib_lock
ib_need apt-get apt-cache dpkg sha256sum

# linux-image-amd64 Depends: linux-image-6.1.0-NN-amd64 (= VERSION)
kpkg=${GC_KERNEL_PACKAGE:-$(ib_apt_field linux-image-amd64 4)}
case "$kpkg" in linux-image-*) ;; *) kpkg="" ;; esac
[ -n "$kpkg" ] || ib_die "cannot tell which kernel linux-image-amd64 depends on"
kver=$(ib_deb_version "$kpkg")
release=${kpkg#linux-image-}
vmlinuz=$IB_OUT/vmlinuz
hash=$(ib_inputs_hash "$kpkg" "$kver" "$0")

if ib_up_to_date "$vmlinuz" "$hash" && [ -f "$IB_OUT/kernel/lib/modules/$release/modules.dep" ]; then
	echo "$release"
	exit 0
fi

ib_log "kernel $kpkg $kver"
rm -rf "$IB_OUT/kernel.new"
deb=$(ib_deb "$kpkg")
dpkg -x "$deb" "$IB_OUT/kernel.new"
[ -f "$IB_OUT/kernel.new/boot/vmlinuz-$release" ] || ib_die "$deb holds no boot/vmlinuz-$release"
ib_kmod_tools
"${IB_DEPMOD[@]}" -b "$IB_OUT/kernel.new" "$release" || ib_die "depmod failed on $release"
rm -rf "$IB_OUT/kernel"
mv "$IB_OUT/kernel.new" "$IB_OUT/kernel"
cp "$IB_OUT/kernel/boot/vmlinuz-$release" "$vmlinuz.tmp"
mv "$vmlinuz.tmp" "$vmlinuz"
echo "$release" >"$IB_OUT/kernel-version"
ib_mark_built "$vmlinuz" "$hash"
ib_log "kernel ready: $vmlinuz ($release)"
echo "$release"
