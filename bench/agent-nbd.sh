#!/usr/bin/env bash
# goldagent NBD read throughput from a complete cache, side by side with
# reading the same bytes of the cache file directly, in one run: nbdcopy (its
# default connections and requests in flight) from the gold export to null:,
# against dd of the slot's byte range to /dev/null. Measured cold (the cache
# file's pages dropped before each run, as after a boot: the goal, >= 0.7x)
# and warm (page cache: the pure cost of goldagent + NBD over a plain read).
# Size: GC_BENCH_MB (default 1024); repetitions: best of GC_BENCH_REPS (3).
set -euo pipefail
: "${GC_BUILD:?run through make bench (GC_BUILD unset)}"
export PATH="$GC_BUILD/bin:$PATH"
mb=${GC_BENCH_MB:-1024}
reps=${GC_BENCH_REPS:-3}
for c in goldagent nbdcopy dd jq; do
	command -v "$c" >/dev/null || {
		echo "agent-nbd: missing $c (run make deps)" >&2
		exit 1
	}
done
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

# secs CMD...: wall seconds of CMD (3 decimals)
secs() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null 2>&1
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}
best() { sort -n | head -1; }
direct() { dd if="$d/c" of=/dev/null bs=1M iflag=skip_bytes,count_bytes skip="$slot" count=$((mb << 20)); }
nbd() { nbdcopy "nbd+unix:///gold?socket=$d/g.sock" null:; }
# drop: the cache file's pages out of the page cache (this file only)
drop() { dd if="$d/c" iflag=nocache count=0 2>/dev/null; }
cold() { drop; secs "$@"; }
# interleaved, so a busy moment of the machine hits both sides alike
: >"$d/t"
for _ in $(seq "$reps"); do
	echo "cd $(cold direct)" >>"$d/t"
	echo "cn $(cold nbd)" >>"$d/t"
	direct >/dev/null 2>&1
	echo "wd $(secs direct)" >>"$d/t"
	nbd >/dev/null 2>&1
	echo "wn $(secs nbd)" >>"$d/t"
done
pick() { awk -v k="$1" '$1 == k { print $2 }' "$d/t" | best; }
cd_=$(pick cd)
cn=$(pick cn)
wd=$(pick wd)
wn=$(pick wn)
rate() { awk -v m="$mb" -v t="$1" 'BEGIN { printf "%d\n", m / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'; }
printf 'agent-nbd: %d MiB of gold from a complete cache, best of %d (interleaved)\n' "$mb" "$reps"
printf '  %-44s %6s MiB/s\n' "cold: direct read (dd of the slot)" "$(rate "$cd_")" \
	"cold: goldagent NBD (nbdcopy to null:)" "$(rate "$cn")" \
	"warm: direct read (dd of the slot)" "$(rate "$wd")" \
	"warm: goldagent NBD (nbdcopy to null:)" "$(rate "$wn")"
printf '  ratio nbd/direct, cold cache file: %sx (goal >= 0.7x)\n' "$(ratio "$cd_" "$cn")"
printf '  ratio nbd/direct, warm (page cache): %sx\n' "$(ratio "$wd" "$wn")"
