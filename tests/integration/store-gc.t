#!/usr/bin/env bash
# gc: after removing a version it frees exactly that version's unshared chunks;
# machine snapshot manifests are roots; gc racing imports (which deduplicate
# against the very chunks gc would sweep) loses nothing.
. "$GC_SRC/tests/lib.sh"
need goldctl cmp jq comm

export GOLDCACHE_STORE=$T_DIR/store
cd "$T_DIR" || bail "no temp dir"
chunks() { (cd "$GOLDCACHE_STORE/chunks" && find . -type f -printf '%f\n' | sort); }
ids() { goldctl image manifest "$1" | grep -E '^[0-9a-f]{64}$' | sort -u; }

head -c $((16 * 1048576)) /dev/urandom >a.img
cp a.img b.img
for c in 2 9 13; do
	head -c 1048576 /dev/urandom | dd of=b.img bs=1M seek=$c conv=notrunc status=none
done
cp b.img c.img
head -c 1048576 /dev/urandom | dd of=c.img bs=1M seek=4 conv=notrunc status=none
goldctl image import img a.img >/dev/null
goldctl image import img b.img >/dev/null
goldctl image import img c.img >/dev/null
is "$(chunks | wc -l)" 20 "16 + 3 + 1 distinct chunks stored"

out=$(goldctl --json store gc)
is "$(jq .chunks_removed <<<"$out")" 0 "gc with every version alive frees nothing"

# img@2's unshared chunks: in v2, in neither v1 nor v3 (c.img keeps v2's 3 changes)
ids img@1 >v1.ids
ids img@2 >v2.ids
ids img@3 >v3.ids
sort -u v1.ids v3.ids >keep.ids
comm -23 v2.ids keep.ids >v2-only.ids
is "$(wc -l <v2-only.ids)" 0 "v2 shares all its chunks with v1 or v3"
chunks >before.list
t_run "rm img@2" goldctl image rm img@2
out=$(goldctl --json store gc)
is "$(jq .chunks_removed <<<"$out")" 0 "gc after rm of a fully shared version frees nothing"

# with v2 gone, img@3's unshared chunks are its 4 changes against v1
comm -23 v3.ids v1.ids >v3-only.ids
is "$(wc -l <v3-only.ids)" 4 "v3 has 4 chunks v1 does not"
t_run "promote img@1" goldctl image promote img@1
t_run "rm img@3" goldctl image rm img@3
bytes=0
while read -r id; do bytes=$((bytes + $(stat -c %s "$GOLDCACHE_STORE/chunks/${id:0:2}/$id"))); done <v3-only.ids
out=$(goldctl --json store gc)
is "$(jq .chunks_removed <<<"$out")" 4 "gc frees exactly img@3's 4 unshared chunks"
is "$(jq .bytes_removed <<<"$out")" "$bytes" "and reports their bytes"
chunks >after.list
is "$(comm -23 before.list after.list)" "$(cat v3-only.ids)" "the freed chunks are those"
t_run "remaining version verifies" goldctl image verify
t_run "img@1 still exports" goldctl image export img@1 a.out
t_run "bit-identical" cmp a.img a.out
rm -f a.out

# machine snapshots are gc roots
mkdir -p "$GOLDCACHE_STORE/machines/pc1/snapshots"
goldctl image import snapsrc c.img >/dev/null
goldctl image manifest snapsrc@1 >"$GOLDCACHE_STORE/machines/pc1/snapshots/1.manifest"
t_run "rm the image (forced: it is current)" goldctl image rm --force snapsrc@1
out=$(goldctl --json store gc)
is "$(jq .chunks_removed <<<"$out")" 0 "chunks named by a machine snapshot are kept"
is "$(goldctl --json store stats | jq .snapshots)" 1 "stats count the snapshot"
t_run "verify covers the snapshot" goldctl image verify
rm "$GOLDCACHE_STORE/machines/pc1/snapshots/1.manifest"
out=$(goldctl --json store gc)
is "$(jq .chunks_removed <<<"$out")" 4 "without the snapshot its 4 unshared chunks go"

# gc racing imports: each round writes a version and removes it, so its chunks
# are exactly what gc sweeps, then imports the same data again (deduplicating
# against those very chunks) while gc loops
export GOLDCACHE_STORE=$T_DIR/race
head -c $((1048576)) /dev/urandom >base.img
goldctl image import keep base.img >/dev/null
stop=$T_DIR/stop
(while [ ! -e "$stop" ]; do goldctl store gc >/dev/null 2>&1; done) &
gcpid=$!
track $gcpid
fail=0
for round in 1 2 3 4 5 6; do
	head -c $((4 * 1048576)) /dev/urandom >r$round.img
	kv=$(goldctl image import --chunk-size 64K keep r$round.img) || fail=1
	goldctl image rm "$kv" || fail=1
	v=$(goldctl image import --chunk-size 64K race r$round.img) || fail=1
	goldctl image export "$v" race.out >/dev/null 2>&1 && cmp -s r$round.img race.out || fail=1
	rm -f race.out
done
touch "$stop"
wait $gcpid
ok $fail "imports and exports while gc loops all succeed, bit-identical"
t_run "verify after the race" goldctl image verify
t_run "a last gc" goldctl store gc
t_run "verify after the last gc" goldctl image verify
fail=0
for v in $(goldctl --json image versions race | jq -r '.[].version'); do
	goldctl image export "race@$v" race.out && cmp -s "r$v.img" race.out || fail=1
	rm -f race.out
done
ok $fail "every race version still exports bit-identical"
done_testing
