#!/usr/bin/env bash
# Builds what the tests and the demo boot: the netboot kernel, the initramfs (with
# goldagent when it has been built: $GC_BUILD/bin/goldagent, default build/bin), the
# tiny gold image and the whole-disk image for sanboot profiles. Each step is skipped
# when its inputs did not change.
# The Debian minbase image is separate (image-build/debian-rootfs.sh: minutes).
#
# Usage: image-build/build-all.sh          (GC_IMAGES sets the output folder)
. "$(dirname "$0")/common.sh"
ib_lock
agent=${GC_GOLDAGENT:-${GC_BUILD:-$IB_SRC/build}/bin/goldagent}
start=$(date +%s)
bash "$IB_DIR/kernel.sh" >/dev/null
if [ -x "$agent" ]; then
	bash "$IB_DIR/initramfs.sh" --agent "$agent" >/dev/null
else
	ib_log "no goldagent at $agent: the initramfs will say so at boot"
	bash "$IB_DIR/initramfs.sh" >/dev/null
fi
bash "$IB_DIR/tiny-rootfs.sh" >/dev/null
bash "$IB_DIR/wholedisk.sh" >/dev/null
ib_log "images ready in $IB_OUT ($(($(date +%s) - start)) s): vmlinuz initramfs.img tiny.ext4 wholedisk.img"
