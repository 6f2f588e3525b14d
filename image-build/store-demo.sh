#!/usr/bin/env bash
# `make demo-store`: the store on its own, in seconds, with no QEMU and no network.
# Builds two versions of a small ext4 gold image from a folder (mkfs.ext4 -d, no mounting), imports both
# into a fresh store, and shows the versions, the dedup stats, a verified
# export and a rollback. Everything it makes is under $GC_BUILD/demo-store.
set -euo pipefail
: "${GC_BUILD:=$(cd "$(dirname "$0")/.." && pwd)/build}"
G=$GC_BUILD/bin/goldctl
[ -x "$G" ] || { echo "demo: build first (make)" >&2; exit 1; }
for c in mkfs.ext4 openssl jq; do
	command -v $c >/dev/null || { echo "demo: $c missing (make deps)" >&2; exit 1; }
done
OUT=$GC_BUILD/demo-store
rm -rf "$OUT"
mkdir -p "$OUT"
export GOLDCACHE_STORE=$OUT/store
# deterministic filesystems: fixed UUID, hash seed and time
export E2FSPROGS_FAKE_TIME=1700000000
mkfs() { truncate -s 96M "$2"; mkfs.ext4 -q -F -b 4096 -L gold -U 6f1c1d2e-0000-4000-8000-000000000001 \
	-E hash_seed=6f1c1d2e-0000-4000-8000-000000000002,root_owner=0:0 -d "$1" "$2" 96M; }
# pseudo-random "package" content from a name (repeatable)
blob() { { openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -pbkdf2 </dev/zero 2>/dev/null || true; } | head -c "$2"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building gold image v1: a small root filesystem (ext4, 96 MiB)"
r=$OUT/rootfs
mkdir -p "$r/etc" "$r/usr/bin" "$r/usr/lib" "$r/home/lab"
printf 'NAME="goldcache demo"\nVERSION_ID=1\n' >"$r/etc/os-release"
echo "lab-pc" >"$r/etc/hostname"
for p in libc coreutils python3 gcc; do blob "$p-1" $((6 * 1048576)) >"$r/usr/lib/$p.so"; done
blob shell-1 $((2 * 1048576)) >"$r/usr/bin/sh"
echo "welcome to the lab" >"$r/home/lab/README"
mkfs "$r" "$OUT/gold-v1.img"

step "building gold image v2: one package updated, one added, a config edited"
blob python3-2 $((6 * 1048576)) >"$r/usr/lib/python3.so"
blob rust-2 $((3 * 1048576)) >"$r/usr/lib/rust.so"
printf 'NAME="goldcache demo"\nVERSION_ID=2\n' >"$r/etc/os-release"
mkfs "$r" "$OUT/gold-v2.img"
rm -rf "$r"
ls -ls "$OUT"/gold-v*.img

step "goldctl image import lab gold-v1.img   (v1 becomes current)"
"$G" image import lab "$OUT/gold-v1.img"
step "goldctl image import lab gold-v2.img"
j=$("$G" --json image import lab "$OUT/gold-v2.img")
n=$(jq .chunks <<<"$j") z=$(jq .zero_chunks <<<"$j") new=$(jq .new_chunks <<<"$j")
echo "lab@$(jq .version <<<"$j"): $n chunks of 1 MiB: $z zero (not stored), $new new, $((n - z - new)) already in the store"
step "goldctl image versions lab"
"$G" image versions lab
step "goldctl store stats   (two 96 MiB versions, stored once, zeros not at all)"
"$G" store stats
step "goldctl image promote lab@2, then export it and compare with the source"
"$G" image promote lab@2
"$G" image export lab "$OUT/exported.img"
cmp "$OUT/gold-v2.img" "$OUT/exported.img" && echo "exported lab (current = v2) is bit-identical to gold-v2.img"
echo "allocated: source $(du -k "$OUT/gold-v2.img" | cut -f1) KiB, export $(du -k "$OUT/exported.img" | cut -f1) KiB (holes kept)"
step "roll back: goldctl image promote lab@1; goldctl image list"
"$G" image promote lab@1
"$G" image list
step "goldctl image verify   (every chunk re-hashed)"
"$G" image verify
echo
echo "demo done; everything is in $OUT (store: --store $OUT/store)"
