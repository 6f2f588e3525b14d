#!/usr/bin/env bash
# Store benchmark, side by side with peers in one run on the same file:
#   goldctl image import  vs  sha256sum                 (goal: >= 0.8x)
#   goldctl image export  vs  cp --sparse=always        (goal: >= 0.8x)
# then a chunk-size sweep (import speed, dedup of a scattered update, metadata)
# and the stored-bytes table for the dedup cases.
#
# The test file: BENCH_MIB (default 1024) MiB, random data with every 4th MiB a
# hole (so 1/4 zero chunks), in BENCH_DIR (default: a directory on /dev/shm,
# tmpfs, so the figures are CPU and memory bound; set BENCH_DIR to a disk
# folder to include the disk: imports then pay real fdatasyncs).
# Each timed command runs twice, the better time counts (the machine is shared).
set -euo pipefail
: "${GC_BUILD:=$(cd "$(dirname "$0")/.." && pwd)/build}"
G=$GC_BUILD/bin/goldctl
[ -x "$G" ] || { echo "bench/store.sh: build first (make)" >&2; exit 1; }
for c in sha256sum cp openssl fallocate awk; do
	command -v $c >/dev/null || { echo "bench/store.sh: missing $c" >&2; exit 1; }
done
MIB=${BENCH_MIB:-1024}
base=${BENCH_DIR:-/dev/shm}
W=$(mktemp -d "$base/goldcache-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W"
fs=$(stat -f -c %T .)

# seconds (3 decimals) of the better of two runs of CMD...; PRE (a string) runs before each
best2() {
	local pre=$1 b="" t0 t1 d
	shift
	for _ in 1 2; do
		eval "$pre"
		t0=$(date +%s%N)
		"$@" >/dev/null
		t1=$(date +%s%N)
		d=$(((t1 - t0) / 1000000))
		[ -z "$b" ] || [ "$d" -lt "$b" ] && b=$d
	done
	awk -v ms="$b" 'BEGIN { printf "%.3f", ms / 1000 }'
}
mbps() { awk -v s="$1" -v m="$MIB" 'BEGIN { printf "%.0f", m / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

# random bytes fast (AES-CTR keystream), then a hole every 4th MiB
{ openssl enc -aes-128-ctr -nosalt -pass pass:goldcache -pbkdf2 </dev/zero 2>/dev/null || true; } |
	head -c $((MIB * 1048576)) >src.img
for ((i = 3; i < MIB; i += 4)); do
	fallocate --punch-hole -o $((i * 1048576)) -l 1048576 src.img
done
echo "store bench: $MIB MiB file (3/4 random, 1/4 holes) on $fs ($base), goldctl default chunk 1 MiB"
echo

t_sha=$(best2 "" sha256sum src.img)
t_imp=$(best2 "rm -rf st" "$G" --store st image import img src.img)
echo "import:  goldctl $t_imp s ($(mbps "$t_imp") MiB/s)   sha256sum $t_sha s ($(mbps "$t_sha") MiB/s)   ratio $(ratio "$t_imp" "$t_sha")x  (goal >= 0.8)"

t_cp=$(best2 "rm -f cp.img" cp --sparse=always src.img cp.img)
t_exp=$(best2 "rm -f out.img" "$G" --store st image export --no-sync img out.img)
echo "export:  goldctl $t_exp s ($(mbps "$t_exp") MiB/s)   cp --sparse=always $t_cp s ($(mbps "$t_cp") MiB/s)   ratio $(ratio "$t_exp" "$t_cp")x  (goal >= 0.8; both without fsync)"
cmp src.img out.img || { echo "bench: export differs!" >&2; exit 1; }
cpsync() { cp --sparse=always src.img cp.img && sync cp.img; }
t_cps=$(best2 "rm -f cp.img" cpsync)
t_exps=$(best2 "rm -f out.img" "$G" --store st image export img out.img)
echo "durable: goldctl export $t_exps s   cp --sparse=always + sync FILE $t_cps s   ratio $(ratio "$t_exps" "$t_cps")x"
echo "sizes:   source $(du -k src.img | cut -f1) KiB allocated, export $(du -k out.img | cut -f1) KiB, cp $(du -k cp.img | cut -f1) KiB"
rm -rf st out.img cp.img
echo

# chunk-size sweep: v2 = v1 with 64 scattered 4 KiB writes (a typical small update)
cp --sparse=always src.img upd.img
for ((i = 0; i < 64; i++)); do
	off=$(((i * 2654435761 % (MIB * 256)) * 4096))
	head -c 4096 /dev/urandom | dd of=upd.img bs=4096 seek=$((off / 4096)) conv=notrunc status=none
done
stored() { "$G" --store "$1" --json store stats | awk -F'[:,]' '/"stored_bytes"/ { gsub(/ /, "", $2); print $2 }'; }
printf '%-6s %10s %9s %12s %14s %10s %12s\n' chunk "import s" "MiB/s" "v1 stored" "+v2 (update)" "v2/v1" "manifest B"
for cs in 64K 256K 1M 4M; do
	t=$(best2 "rm -rf s-$cs" "$G" --store "s-$cs" image import --chunk-size "$cs" img src.img)
	one=$(stored "s-$cs")
	"$G" --store "s-$cs" image import --chunk-size "$cs" img upd.img >/dev/null
	two=$(stored "s-$cs")
	msize=$(stat -c %s "s-$cs/images/img/versions/1.manifest")
	printf '%-6s %10s %9s %12s %14s %10s %12s\n' "$cs" "$t" "$(mbps "$t")" "$one" "$((two - one))" \
		"$(awk -v a="$two" -v b="$one" 'BEGIN { printf "%.3f", a / b }')" "$msize"
	rm -rf "s-$cs"
done
echo

# dedup cases (1 MiB chunks): two versions sharing 90% of their chunks
cp --sparse=always src.img v90.img
n=0
for ((i = 0; i < MIB; i++)); do
	[ $((i % 4)) -eq 3 ] && continue # holes stay holes
	if [ $((n % 10)) -eq 0 ]; then
		head -c 1048576 /dev/urandom | dd of=v90.img bs=1M seek=$i conv=notrunc status=none
	fi
	n=$((n + 1))
done
"$G" --store d image import img src.img >/dev/null
one=$(stored d)
"$G" --store d image import img v90.img >/dev/null
two=$(stored d)
"$G" --store d image import img src.img >/dev/null
three=$(stored d)
printf '%-44s %14s %8s\n' "dedup case (1 MiB chunks)" "stored bytes" "x one"
printf '%-44s %14s %8s\n' "one version" "$one" "1.000"
printf '%-44s %14s %8s\n' "+ a version sharing 90% of its chunks" "$two" "$(awk -v a="$two" -v b="$one" 'BEGIN { printf "%.3f", a / b }')"
printf '%-44s %14s %8s\n' "+ the first version imported again" "$three" "$(awk -v a="$three" -v b="$one" 'BEGIN { printf "%.3f", a / b }')"
"$G" --store d store stats | sed 's/^/  /'
