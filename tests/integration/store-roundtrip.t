#!/usr/bin/env bash
# goldctl image import/export round trips (random, sparse, qcow2) are bit-identical,
# two versions sharing 90% of their chunks take ~1.1x the space of one, and
# versions, promote, rm and --json behave as documented.
. "$GC_SRC/tests/lib.sh"
need goldctl cmp qemu-img jq

export GOLDCACHE_STORE=$T_DIR/store
cd "$T_DIR" || bail "no temp dir"

# random image, not a multiple of the chunk size (1 MiB) but of 512
head -c $((20 * 1048576 + 3584)) /dev/urandom >rand.img
out=$(goldctl image import rnd rand.img)
is "$out" "rnd@1" "import prints the new version id"
t_run "export current" goldctl image export rnd rnd.out
t_run "random image round trip is bit-identical" cmp rand.img rnd.out

# sparse image: data islands in a 64 MiB hole, plus written zeros
truncate -s 64M sparse.img
head -c 300000 /dev/urandom | dd of=sparse.img bs=4096 seek=1000 conv=notrunc status=none
head -c 1048576 /dev/zero | dd of=sparse.img bs=1M seek=20 conv=notrunc status=none
head -c 4096 /dev/urandom | dd of=sparse.img bs=512 seek=$((64 * 2048 - 8)) conv=notrunc status=none
goldctl image import --kind disk sp sparse.img >/dev/null
t_run "export sparse image" goldctl image export sp@1 sp.out
t_run "sparse image round trip is bit-identical" cmp sparse.img sp.out
blocks=$(stat -c %b sp.out)
ok $((blocks * 512 <= 4 * 1048576 ? 0 : 1)) "export is sparse ($((blocks / 2)) KiB allocated of 64 MiB)"
kind=$(goldctl --json image versions sp | jq -r '.[0].kind')
is "$kind" "disk" "--kind disk recorded"

# qcow2 goes through qemu-img
qemu-img convert -f raw -O qcow2 sparse.img sparse.qcow2
out=$(goldctl image import sp sparse.qcow2)
is "$out" "sp@2" "qcow2 imported as a new version"
t_run "qcow2 import exports the raw bytes" goldctl image export sp@2 sp2.out
t_run "qcow2 round trip is bit-identical" cmp sparse.img sp2.out

# edge sizes: empty, one 512-byte sector, fewer chunks than the export ring
: >empty.img
head -c 512 /dev/urandom >sector.img
head -c $((3 * 1048576 + 512)) /dev/urandom >three.img
for f in empty sector three; do
	goldctl image import "$f" "$f.img" >/dev/null && goldctl image export "$f" "$f.out" && cmp "$f.img" "$f.out"
	ok $? "$f image round trip is bit-identical"
done

# export refuses to replace a file unless --force
t_fails "export refuses an existing file" goldctl image export sp@2 sp2.out
like "$T_OUT" "exists" "and says why"
t_run "export --force replaces it" goldctl image export --force sp@1 sp2.out

# dedup: v2 shares 18 of 20 chunks with v1 -> ~1.1x the space of one
head -c $((20 * 1048576)) /dev/urandom >d1.img
cp d1.img d2.img
head -c 1048576 /dev/urandom | dd of=d2.img bs=1M seek=3 conv=notrunc status=none
head -c 1048576 /dev/urandom | dd of=d2.img bs=1M seek=17 conv=notrunc status=none
export GOLDCACHE_STORE=$T_DIR/dedup
goldctl image import d d1.img >/dev/null
one=$(goldctl --json store stats | jq .stored_bytes)
out=$(goldctl --json image import d d2.img)
is "$(jq .version <<<"$out")" "2" "--json import gives the version"
is "$(jq .new_chunks <<<"$out")" "2" "only the 2 changed chunks are new"
two=$(goldctl --json store stats | jq .stored_bytes)
ratio=$(awk -v a="$two" -v b="$one" 'BEGIN { printf "%.3f", a / b }')
diag "stored bytes: one version $one, two versions $two, ratio $ratio"
ok "$(awk -v r="$ratio" 'BEGIN { print (r >= 1.05 && r <= 1.15) ? 0 : 1 }')" \
	"two versions sharing 90% take ~1.1x the space of one ($ratio)"
is "$(goldctl --json store stats | jq .logical_bytes)" "$((40 * 1048576))" "logical bytes = both versions"
t_run "v2 round trip" goldctl image export d@2 d2.out
t_run "v2 bit-identical" cmp d2.img d2.out

# versions, promote, rm
cur=$(goldctl --json image list | jq '.[0].current')
is "$cur" "1" "first version became current; later imports do not"
t_run "promote d@2" goldctl image promote d@2
is "$(goldctl --json image versions d | jq -c '[.[] | select(.current) | .version]')" "[2]" "d@2 current"
t_run "export current = v2" goldctl image export d d.cur
t_run "current export is v2" cmp d2.img d.cur
t_run "roll back: promote d@1" goldctl image promote d@1
t_fails "rm of the current version refused" goldctl image rm d@1
like "$T_OUT" "current" "says it is current"
t_run "rm d@2" goldctl image rm d@2
is "$(goldctl --json image versions d | jq -c '[.[].version]')" "[1]" "d@2 gone"
out=$(goldctl image import --promote d d2.img)
is "$out" "d@3" "ids are not reused after rm"
is "$(goldctl --json image list | jq '.[0].current')" "3" "--promote made it current"
t_run "verify the whole store" goldctl image verify
t_run "verify one version" goldctl image verify d@3
t_run "manifest prints" goldctl image manifest d@3
like "$(goldctl image manifest d@3)" "^goldcache-manifest 1" "manifest text"
t_run "help" goldctl --help
done_testing
