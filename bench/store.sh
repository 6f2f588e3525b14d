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
# Each timed command runs BENCH_RUNS times (3), the fastest counts (the machine
# is shared); its CPU time (user + system) is printed too, as it depends less
# on what else runs.
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

# best PRE CMD...: runs CMD BENCH_RUNS times (default 3; PRE, a string, before
# each) and sets B_WALL and B_CPU (user + system seconds) of the fastest run
RUNS=${BENCH_RUNS:-3}
best() {
	local pre=$1 t w c
	shift
	B_WALL="" B_CPU=""
	for ((k = 0; k < RUNS; k++)); do
		eval "$pre"
		t=$({ TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>&1; } 2>&1)
		w=${t%% *}
		c=$(awk -v u="$(cut -d' ' -f2 <<<"$t")" -v s="$(cut -d' ' -f3 <<<"$t")" 'BEGIN { printf "%.2f", u + s }')
		if [ -z "$B_WALL" ] || awk -v a="$w" -v b="$B_WALL" 'BEGIN { exit !(a < b) }'; then
			B_WALL=$w B_CPU=$c
		fi
	done
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

best "" sha256sum src.img
t_sha=$B_WALL c_sha=$B_CPU
best "rm -rf st" "$G" --store st image import img src.img
t_imp=$B_WALL c_imp=$B_CPU
echo "import:  goldctl $t_imp s ($(mbps "$t_imp") MiB/s, cpu $c_imp s)   sha256sum $t_sha s ($(mbps "$t_sha") MiB/s, cpu $c_sha s)   ratio $(ratio "$t_imp" "$t_sha")x  (goal >= 0.8)"

best "rm -f cp.img" cp --sparse=always src.img cp.img
t_cp=$B_WALL c_cp=$B_CPU
best "rm -f out.img" "$G" --store st image export --no-sync img out.img
t_exp=$B_WALL c_exp=$B_CPU
echo "export:  goldctl $t_exp s ($(mbps "$t_exp") MiB/s, cpu $c_exp s)   cp --sparse=always $t_cp s ($(mbps "$t_cp") MiB/s, cpu $c_cp s)   ratio $(ratio "$t_exp" "$t_cp")x  (goal >= 0.8; neither fsyncs)"
cmp src.img out.img || { echo "bench: export differs!" >&2; exit 1; }
cpsync() { cp --sparse=always src.img cp.img && sync cp.img; }
best "rm -f cp.img" cpsync
t_cps=$B_WALL
best "rm -f out.img" "$G" --store st image export img out.img
t_exps=$B_WALL
echo "durable: goldctl export $t_exps s   cp --sparse=always + sync FILE $t_cps s   ratio $(ratio "$t_exps" "$t_cps")x"
echo "sizes:   source $(du -k src.img | cut -f1) KiB allocated, export $(du -k out.img | cut -f1) KiB, cp $(du -k cp.img | cut -f1) KiB"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) on $(nproc) cores"
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
	best "rm -rf s-$cs" "$G" --store "s-$cs" image import --chunk-size "$cs" img src.img
	t=$B_WALL
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
