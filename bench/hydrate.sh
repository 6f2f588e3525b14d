#!/usr/bin/env bash
# Hydration transfer engine vs iscsi-perf, same tgtd, same LUN, same request
# size and queue depth, alternated in one run. Goal: gc-fetch >= 0.9x iscsi-perf.
# gc-fetch reads the whole LUN (what hydration does); iscsi-perf reads sequentially
# for a fixed time; both report MB/s. Output to /dev/null on both sides, so this
# measures the iSCSI path, not the local disk.
set -euo pipefail
: "${GC_BUILD:?run through make bench}"
PATH="$GC_BUILD/bin:$PATH"
size_mb=${BENCH_LUN_MB:-1024}
rounds=${BENCH_ROUNDS:-3}
dir=$(mktemp -d)
C=$((2000 + RANDOM % 20000))
PORT=$((20000 + RANDOM % 20000))
tgtd -f -C "$C" --iscsi portal="127.0.0.1:$PORT" >"$dir/tgtd.log" 2>&1 &
tpid=$!
cleanup() {
	tgtadm -C "$C" --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
	tgtadm -C "$C" --op delete --mode system >/dev/null 2>&1 || true
	sleep 0.5
	kill -KILL "$tpid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 50); do tgtadm -C "$C" --op show --mode system >/dev/null 2>&1 && break; sleep 0.1; done
head -c $((size_mb << 20)) /dev/urandom >"$dir/lun.img"
iqn=iqn.2026-11.org.goldcache.bench:perf
tgtadm -C "$C" --lld iscsi --op new --mode target --tid 1 -T "$iqn"
tgtadm -C "$C" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$dir/lun.img"
tgtadm -C "$C" --lld iscsi --op bind --mode target --tid 1 -I ALL
cat "$dir/lun.img" >/dev/null # page cache warm for both sides

perf_mbs() { # depth blocks-of-512
	timeout -s INT 20 iscsi-perf -m "$1" -b "$2" -t 6 "iscsi://127.0.0.1:$PORT/$iqn/1" 2>&1 |
		tr '\r' '\n' | sed -n 's/^iops average [0-9]* (\([0-9]*\) MB\/s).*/\1/p' | tail -n 1
}
fetch_mbs() { # depth reqsize
	gc-fetch --json -d "$1" -s "$2" "127.0.0.1:$PORT" "$iqn" 1 /dev/null |
		sed -n 's/.*"mb_per_s": \([0-9.]*\).*/\1/p'
}

printf '%-22s %12s %12s %8s\n' "case" "iscsi-perf" "gc-fetch" "ratio"
for c in "8 128K 256" "1 128K 256" "32 1M 2048"; do
	read -r depth req blocks <<<"$c"
	p=0 f=0
	for _ in $(seq "$rounds"); do
		p=$(echo "$p + $(perf_mbs "$depth" "$blocks")" | bc -l)
		f=$(echo "$f + $(fetch_mbs "$depth" "$req")" | bc -l)
	done
	printf '%-22s %9.0f MB/s %9.0f MB/s %7.2fx\n' "qd$depth $req" "$(echo "$p / $rounds" | bc -l)" \
		"$(echo "$f / $rounds" | bc -l)" "$(echo "$f / $p" | bc -l)"
done
