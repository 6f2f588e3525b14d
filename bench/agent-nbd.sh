#!/usr/bin/env bash
# goldagent NBD read throughput from a complete cache, side by side with
# reading the same bytes of the cache file directly, in one run. Both sides
# are the same client, `qemu-img bench` (QEMU's block layer, what a VM
# uses), with the same request size and queue depth: the peer reads the
# slot's byte range of the cache file (raw driver with offset and size over
# the file), goldagent serves the gold export over its Unix socket. Cases:
# queue depth 1 and 8 (GC_BENCH_QD), 1 MiB requests (GC_BENCH_REQ), cold
# (the cache file's pages dropped before each run, as after a boot) and warm
# (page cache: the pure cost of goldagent + NBD over a plain read).
# Warm runs read the image GC_BENCH_PASSES times (4: long enough to time at
# several GB/s), one qemu-img run each. Goal: nbd/direct >= 0.7x.
# Size: GC_BENCH_MB (default 1024). Rounds: GC_BENCH_REPS (5), interleaved,
# every round printed; the summary takes the median time of each side per
# case (other work on a shared machine disturbs single rounds by 2-3x) and
# their ratio.
set -euo pipefail
: "${GC_BUILD:?run through make bench (GC_BUILD unset)}"
export PATH="$GC_BUILD/bin:$PATH"
mb=${GC_BENCH_MB:-1024}
reps=${GC_BENCH_REPS:-5}
qds=${GC_BENCH_QD:-1 8}
req=${GC_BENCH_REQ:-1M}
passes=${GC_BENCH_PASSES:-4}
for c in goldagent qemu-img jq; do
	command -v "$c" >/dev/null || {
		echo "agent-nbd: missing $c (run make deps)" >&2
		exit 1
	}
done
reqb=$(numfmt --from=iec "$req")
[ $(((mb << 20) % reqb)) -eq 0 ] || {
	echo "agent-nbd: GC_BENCH_MB ($mb MiB) is not a multiple of GC_BENCH_REQ ($req)" >&2
	exit 2
}
count=$(((mb << 20) / reqb))
d=$(mktemp -d "${TMPDIR:-/tmp}/gc-bench-agent.XXXXXX")
pid=
cleanup() {
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	[ -z "$pid" ] || wait "$pid" 2>/dev/null || true
	rm -rf "$d"
}
trap cleanup EXIT

head -c $((mb << 20)) /dev/urandom >"$d/img"
goldagent cache init --image bench --version 1 --chunk-size 1M --size $((mb << 20)) \
	--volume-size 64M "$d/c" >/dev/null
goldagent hydrate --cache "$d/c" --source-file "$d/img" >/dev/null
rm -f "$d/img"
slot=$(goldagent status --json --cache "$d/c" | jq -r .layout.slot_a)
goldagent serve --cache "$d/c" --gold-socket "$d/g.sock" 2>"$d/serve.log" &
pid=$!
for _ in $(seq 100); do [ -S "$d/g.sock" ] && break; sleep 0.1; done
[ -S "$d/g.sock" ] || {
	cat "$d/serve.log" >&2
	exit 1
}

hz=$(getconf CLK_TCK)
# cpu PID: user + system seconds it used so far
cpu() { awk -v hz="$hz" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
TIMEFORMAT='cpu %U %S'
# qbench PASSES QD TARGET...: "SECONDS CPU": the time qemu-img reports (the
# requests only, not its start) for reading the image PASSES times, one run
# per pass, and the CPU seconds qemu-img used
qbench() {
	local passes=$1 qd=$2
	shift 2
	for _ in $(seq "$passes"); do
		{ time qemu-img bench -c "$count" -d "$qd" -s "$req" "$@"; } 2>&1
	done | awk '/^Run completed in/ { t += $4 } /^cpu / { c += $2 + $3 } END { print t, c }'
}
direct() { qbench "$1" "$2" --image-opts "driver=raw,offset=$slot,size=$((mb << 20)),file.driver=file,file.filename=$d/c"; }
nbd() { qbench "$1" "$2" -f raw "nbd+unix:///gold?socket=$d/g.sock"; }
# drop: the cache file's pages out of the page cache (this file only)
drop() { dd if="$d/c" iflag=nocache count=0 2>/dev/null; }
rate() { awk -v m="$mb" -v n="$2" -v t="$1" 'BEGIN { printf "%d", m * n / t }'; }

printf 'agent-nbd: %d MiB of gold from a complete cache, qemu-img bench, %s requests, %d rounds\n' \
	"$mb" "$req" "$reps"
printf '  %-14s %14s %14s %7s\n' "case" "direct MiB/s" "NBD MiB/s" "ratio"
: >"$d/times"
for r in $(seq "$reps"); do
	for qd in $qds; do
		for temp in cold warm; do
			if [ "$temp" = cold ]; then
				n=1
				drop
				read -r td cd_ < <(direct 1 "$qd")
				drop
				s0=$(cpu "$pid")
				read -r tn cn < <(nbd 1 "$qd")
			else
				n=$passes
				direct 1 "$qd" >/dev/null
				read -r td cd_ < <(direct "$n" "$qd")
				nbd 1 "$qd" >/dev/null
				s0=$(cpu "$pid")
				read -r tn cn < <(nbd "$n" "$qd")
			fi
			cs=$(awk -v a="$s0" -v b="$(cpu "$pid")" 'BEGIN { print b - a }')
			ratio=$(awk -v a="$td" -v b="$tn" 'BEGIN { printf "%.2f", a / b }')
			printf '  %-14s %14s %14s %6sx\n' "r$r qd$qd $temp" "$(rate "$td" "$n")" "$(rate "$tn" "$n")" "$ratio"
			echo "qd$qd-$temp $td $tn $n $cd_ $cn $cs" >>"$d/times"
		done
	done
done
echo "  median of $reps rounds:"
for qd in $qds; do
	for temp in cold warm; do
		awk -v k="qd$qd-$temp" -v m="$mb" '$1 == k { d[n] = $2; b[n++] = $3; p = $4 }
			function med(a, n,   i, j, t) {
				for (i = 0; i < n; i++)
					for (j = i + 1; j < n; j++)
						if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
				return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2
			}
			END { md = med(d, n); mn = med(b, n)
			      printf "  %-14s %14d %14d %6.2fx (goal >= 0.7x)\n", k, m * p / md, m * p / mn, md / mn }' \
			"$d/times"
	done
done
# CPU per GiB read, summed over the rounds: on a busy machine throughput
# follows these (the NBD side needs the client and the server).
echo "  CPU seconds per GiB read, all rounds: direct (qemu-img) vs NBD (qemu-img + goldagent):"
for qd in $qds; do
	for temp in cold warm; do
		awk -v k="qd$qd-$temp" -v m="$mb" '$1 == k { g += $4 * m / 1024; d += $5; c += $6; s += $7 }
			END { printf "  %-14s direct %.3f   NBD %.3f + %.3f\n", k, d / g, c / g, s / g }' "$d/times"
	done
done
