#!/usr/bin/env bash
# `make demo`: issue 5's story on the embedded default (config/demo.yaml), in QEMU,
# on this one machine: builds what is missing (netboot kernel, initramfs with
# goldagent, the gold image: Debian minbase by default, the tiny busybox image with
# DEMO_IMAGE=tiny), then image-build/story.sh brings up the lab (network namespace,
# bridge, taps), starts goldcached (its own dnsmasq and tgtd) and drives two QEMU
# laptops through the five steps, printing each step, its checks and its timing.
# Exit 0 only if every step held; nothing is left running (story.sh's trap).
#
# Usage: image-build/demo.sh   (DEMO_IMAGE=debian|tiny, DEMO_KEEP=1 keeps the run's
#        folder: logs, serial consoles, the store)
set -u
: "${GC_BUILD:=$(cd "$(dirname "$0")/.." && pwd)/build}"
src=$(cd "$(dirname "$0")/.." && pwd)
image=${DEMO_IMAGE:-debian}
[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces, tap devices, debootstrap)" >&2; exit 1; }
[ -x "$GC_BUILD/bin/goldagent" ] || { echo "demo: build first (make)" >&2; exit 1; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

t0=$(date +%s)
say "images: netboot kernel, initramfs with goldagent, $image gold image (built when missing)"
GC_BUILD=$GC_BUILD bash "$src/image-build/build-all.sh" || exit 1
case "$image" in
debian) bash "$src/image-build/debian-rootfs.sh" >/dev/null || exit 1 ;;
tiny) ;;
*) echo "demo: DEMO_IMAGE must be debian or tiny" >&2; exit 2 ;;
esac
echo "images ready in $(($(date +%s) - t0)) s"

args=()
[ "$image" = debian ] && args+=(--debian)
[ -n "${DEMO_KEEP:-}" ] && args+=(--keep)
say "the story: PXE boot, offline, sync, restore, VM (tests/lib-story.sh)"
GC_BUILD=$GC_BUILD bash "$src/image-build/story.sh" "${args[@]}"
rc=$?
say "demo $([ $rc = 0 ] && echo passed || echo FAILED) in $(($(date +%s) - t0)) s"
exit $rc
