#!/usr/bin/env bash
# Crashes during import: kill -9 at random moments and injected power cuts at
# the Nth fsync/rename (GOLDCACHE_FAULT=...:crash) never leave a partial
# version visible; verify passes after each; a re-import then completes and is
# bit-identical. GC_FULL=1 kills 25 imports (4 otherwise).
. "$GC_SRC/tests/lib.sh"
need goldctl cmp jq

export GOLDCACHE_STORE=$T_DIR/store
cd "$T_DIR" || bail "no temp dir"

head -c $((48 * 1048576)) /dev/urandom >src.img
truncate -s 56M src.img
goldctl image import img src.img >/dev/null # version 1: the baseline

# every visible version must be whole: verify passes and each one has the full size
check_store() {
	local what=$1 size=${2:-58720256} v bad=0
	goldctl image verify >verify.out 2>&1 || bad=1
	for v in $(goldctl --json image versions img 2>/dev/null | jq -r ".[] | select(.size != $size) | .version"); do
		echo "# partial version img@$v visible" >>verify.out
		bad=1
	done
	ok $bad "$what: no partial version, verify passes" || sed 's/^/#   /' verify.out
}

want=4
[ "${GC_FULL:-}" = 1 ] && want=25
killed=0
ln src.img ver-1.img # the source of each complete version, to compare exports
latest() { goldctl --json image versions img | jq '[.[].version] | max'; }
# until want imports were killed while running (an import that finished before
# its kill counts as a plain import; at most 3 * want tries). Fresh data each
# time, so every import really writes its ~770 chunks.
for ((i = 1; killed < want && i <= 3 * want; i++)); do
	head -c $((48 * 1048576)) /dev/urandom >it.img
	truncate -s 56M it.img
	before=$(latest)
	goldctl image import --chunk-size 64K img it.img >/dev/null 2>&1 &
	pid=$!
	track $pid
	sleep "0.$((RANDOM % 40))"
	kill -KILL $pid 2>/dev/null && killed=$((killed + 1))
	wait $pid 2>/dev/null
	check_store "kill -9 #$i"
	after=$(latest)
	if [ "$after" != "$before" ]; then mv it.img "ver-$after.img"; fi
done
rm -f it.img
iters=$((i - 1))
ok $((killed >= want ? 0 : 1)) "$killed imports killed while running (wanted $want)"
diag "killed $killed of $iters imports while running"

# Injected power cuts, each into a fresh store so the counts mean the same
# thing. A fresh 64K-chunk import of small.img makes, in order: 96 chunk
# fdatasyncs (and renames), one fsync per fan-out directory used (D), the new
# image's two directories, the manifest (fsync, link = rename 769, dir fsync),
# the current pointer (fsync, rename 770, dir fsync). D comes from a reference
# import's manifest.
export GOLDCACHE_STORE=$T_DIR/ref
head -c $((6 * 1048576)) /dev/urandom >small.img
truncate -s 8M small.img
goldctl image import --chunk-size 64K img small.img >/dev/null
D=$(goldctl image manifest img@1 | grep -E '^[0-9a-f]{64}$' | cut -c1-2 | sort -u | wc -l)
data=96
last=$((data + D + 6))
diag "fresh import: $data chunk fsyncs, $D directory fsyncs, $last fsyncs in all"
for f in fsync:1 fsync:50 fsync:$data fsync:$((data + 1)) fsync:$((data + D)) \
	fsync:$((data + D + 1)) fsync:$((data + D + 2)) fsync:$((data + D + 3)) \
	fsync:$((data + D + 4)) fsync:$((data + D + 5)) fsync:$last \
	rename:1 rename:$data rename:$((data + 1)) rename:$((data + 2)); do
	export GOLDCACHE_STORE=$T_DIR/crash-${f//:/-}
	goldctl store init >/dev/null
	GOLDCACHE_FAULT=$f:crash goldctl image import --chunk-size 64K img small.img >/dev/null 2>&1
	rc=$?
	v=$(goldctl --json image list | jq -c '[.[] | .versions]')
	ok $((rc == 137 ? 0 : 1)) "crash injected at $f"
	check_store "crash at $f (versions per image: $v)" 8388608
	out=$(goldctl image import --chunk-size 64K img small.img 2>&1)
	goldctl image export "$out" out.img >/dev/null 2>&1 && cmp -s small.img out.img
	ok $? "after crash at $f: re-import completes ($out) and is bit-identical"
	rm -f out.img
done
export GOLDCACHE_STORE=$T_DIR/store

# an injected EIO/ENOSPC fails the import cleanly (fresh store: nothing to dedup)
export GOLDCACHE_STORE=$T_DIR/eio
goldctl store init >/dev/null
GOLDCACHE_FAULT=write:50:EIO goldctl image import --chunk-size 64K img small.img >/dev/null 2>err.out
is $? 1 "EIO on a chunk write: exit 1"
like "$(cat err.out)" "Input/output error" "error names the reason"
GOLDCACHE_FAULT=fsync:3:ENOSPC goldctl image import img small.img >/dev/null 2>err.out
is $? 1 "ENOSPC on fsync: exit 1"
like "$(cat err.out)" "No space left" "error names the reason"
is "$(goldctl --json image list | jq length)" 0 "no image appeared"
export GOLDCACHE_STORE=$T_DIR/store
check_store "main store still sound"

t_run "gc after the crashes" goldctl store gc
left=$(find "$GOLDCACHE_STORE/tmp" "$GOLDCACHE_STORE/images" -type f -name '*tmp*' | wc -l)
is "$left" 0 "gc removed the crashed imports' temp files"
check_store "after gc"
out=$(goldctl image import --chunk-size 64K img src.img)
like "$out" "^img@[0-9]+$" "re-import completes ($out)"
ln src.img "ver-${out#img@}.img"
t_run "re-imported version exports" goldctl image export "$out" out.img
t_run "and is bit-identical" cmp src.img out.img
rm -f out.img
fail=0
for v in $(goldctl --json image versions img | jq -r '.[].version'); do
	if ! goldctl image export "img@$v" out.img || ! cmp -s "ver-$v.img" out.img; then
		diag "img@$v differs"
		fail=1
	fi
	rm -f out.img
done
ok $fail "every surviving version exports bit-identical"
done_testing
