#!/usr/bin/env bash
# A full disk (a 24 MiB tmpfs, mounted in a private mount namespace): an import
# that does not fit fails with a clear error, publishes no version, and after
# gc the store is exactly as before; an export that does not fit leaves no
# output or temp file; the store stays sound and usable.
[ -n "${GC_IN_MNTNS:-}" ] || exec unshare -m --propagation private env GC_IN_MNTNS=1 bash "$0" "$@"
. "$GC_SRC/tests/lib.sh"
need goldctl cmp jq mount

small=$T_DIR/small
mkdir -p "$small"
mount -t tmpfs -o size=24m tmpfs "$small" || bail "cannot mount a tmpfs"
on_exit "umount -l '$small'"
export GOLDCACHE_STORE=$small/store
cd "$T_DIR" || bail "no temp dir"
snap() { (cd "$GOLDCACHE_STORE" && find . -path ./lock -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum; find . | sort) | sha256sum; }

head -c $((8 * 1048576)) /dev/urandom >fits.img
head -c $((32 * 1048576)) /dev/urandom >big.img
t_run "an 8 MiB image fits" goldctl image import img fits.img
before=$(snap)
t_fails "a 32 MiB image does not fit" goldctl image import img big.img
like "$T_OUT" "No space left on device" "the error says the disk is full"
is "$(goldctl --json image versions img | jq -c '[.[].version]')" "[1]" "no new version visible"
t_run "the store verifies" goldctl image verify
t_run "gc removes the failed import's chunks" goldctl store gc
is "$(snap)" "$before" "after gc the store is exactly as before"

# export into a full filesystem
head -c $((12 * 1048576)) /dev/zero | tr '\0' 'x' >"$small/filler"
t_fails "export into a full filesystem fails" goldctl image export img@1 "$small/out.img"
like "$T_OUT" "No space left on device" "and says why"
is "$(find "$small" -maxdepth 1 -name 'out.img*' | wc -l)" 0 "no output or temp file left"
rm -f "$small/filler"
t_run "with room again, export works" goldctl image export img@1 "$small/out.img"
t_run "bit-identical" cmp fits.img "$small/out.img"
done_testing
