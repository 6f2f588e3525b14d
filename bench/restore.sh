#!/usr/bin/env bash
# Restore throughput against iscsi-perf, side by side in one run: the real
# goldcached + tgtd on loopback; pc1's machine volume (BENCH_VOL_MB, default
# 256 MiB of random data: every chunk non-zero) synced as snapshot pc1@1;
# then, per round, `goldctl machine restore pc2 --from pc1` and, on the LUN 3
# goldcached serves for that order, with pc2's own initiator name and CHAP
# login, at the same request size (the snapshot's chunk) and queue
# depth (BENCH_DEPTH, 8):
#   iscsi-perf         sequential READ16s of LUN 3, data thrown away (the peer);
#   gc-fetch           goldagent's transfer engine alone (agent/fetch.c), to
#                      /dev/null;
#   goldagent attach   the restore itself (its own clock, from its log line):
#                      "restore" is the whole order (manifest, marker, every
#                      chunk read, SHA-256 verified against the snapshot's
#                      manifest and written into the machine volume, then
#                      fdatasync, dirty map and header); "copy" is the
#                      read + verify + write phase alone, what iscsi-perf's
#                      transfer compares with; "cpu" is the CPU seconds (user
#                      + system) the agent used per GB restored, which other
#                      work on a shared machine disturbs less than the rates.
# The cache is on BENCH_CACHE_DIR (default /dev/shm), so this measures the
# transfer + verification path as iscsi-perf measures the transfer.
# Rounds: BENCH_ROUNDS (3), each printed, then the best of each side.
# BENCH_KEEP=DIR copies the logs (goldcached, the agents') there at the end.
set -euo pipefail
# shellcheck source=tests/lib-bench.sh
. "$(dirname "$0")/../tests/lib-bench.sh" restore
vol_mb=${BENCH_VOL_MB:-256}
rounds=${BENCH_ROUNDS:-3}
depth=${BENCH_DEPTH:-8}
bench_need goldcached goldctl goldagent gc-fetch iscsi-perf tgtd tgtadm ss nbdcopy curl jq
CD=$(mktemp -d "${BENCH_CACHE_DIR:-/dev/shm}/gc-restore-bench.XXXXXX")
on_exit 'rm -rf "$CD"'
on_exit '[ -z "${BENCH_KEEP:-}" ] || cp "$D"/*.log "$BENCH_KEEP"/'
AP=""
head -c $((4 << 20)) /dev/urandom >"$D/gold.img"
ATTACH_MACHINES="pc1 pc2" ATTACH_VOLUME=${vol_mb}M ATTACH_RETENTION=
ATTACH_PREFIX=iqn.2026-11.org.goldcache.restorebench
bench_lab "$D/gold.img"
on_exit '[ -z "$AP" ] || { kill -TERM "$AP" && wait "$AP"; }'
secret=$(cat "$D/state/secrets/pc2.chap")
attach() { # MACHINE LOG
	rm -rf "$D/run-$1"
	goldagent attach --appliance "$URL" --machine "$1" --mode cache --cache "$CD/$1.img" \
		--state-dir "$D/a" --run-dir "$D/run-$1" --sync-interval 0 --depth "$depth" >"$2" 2>&1 &
	AP=$!
	for _ in $(seq 600); do
		[ -S "$D/run-$1/volume.sock" ] && return 0
		sleep 0.1
	done
	echo "restore: attach of $1 did not come up" >&2
	tail -5 "$2" >&2
	exit 1
}
# agent_cpu: CPU seconds (user + system) the running agent used so far
agent_cpu() {
	awk -v t="$(getconf CLK_TCK)" '{ print ($14 + $15) / t }' "/proc/$AP/stat"
}
stop() {
	kill -TERM "$AP"
	wait "$AP" || true
	AP=""
}

# pc1's volume: random data, synced as pc1@1
head -c $((vol_mb << 20)) /dev/urandom >"$D/vol.img"
attach pc1 "$D/pc1.log"
nbdcopy "$D/vol.img" "nbd+unix:///volume?socket=$D/run-pc1/volume.sock"
stop
rm -f "$D/vol.img"
goldagent sync --cache "$CD/pc1.img" --appliance "$URL" --machine pc1 --state-dir "$D/a" --timeout 120 \
	>"$D/sync.log" 2>&1 || {
	echo "restore: sync of pc1 failed" >&2
	cat "$D/sync.log" >&2
	exit 1
}
rm -f "$CD/pc1.img"
cs=$(goldctl --store "$D/store" machine snapshots pc1 --json | jq '.[0].chunk_size // .snapshots[0].chunk_size')
[ "$cs" -gt 0 ] 2>/dev/null || {
	echo "restore: no chunk size for pc1@1" >&2
	exit 1
}

lun_ready() {
	[ "$(curl -sS -H "Authorization: Bearer $(cat "$ADMIN")" "$URL/api/v1/machines/pc2" |
		jq -r .hydrate.lun)" = 3 ]
}
perf_mbs() {
	timeout -s INT 20 iscsi-perf -i "$PREFIX:i.pc2" -m "$depth" -b $((cs / 512)) -t 6 \
		"iscsi://pc2%$secret@127.0.0.1:$ISCSI_PORT/$PREFIX:m.pc2/3" 2>&1 |
		tr '\r' '\n' | sed -n 's/^iops average [0-9]* (\([0-9]*\) MB\/s).*/\1/p' | tail -n 1
}
fetch_mbs() {
	gc-fetch --json -d "$depth" -s "$cs" -i "$PREFIX:i.pc2" -u pc2 \
		--secret-file "$D/state/secrets/pc2.chap" "127.0.0.1:$ISCSI_PORT" "$PREFIX:m.pc2" 3 \
		/dev/null | sed -n 's/.*"mb_per_s": \([0-9.]*\).*/\1/p'
}
restore_mbs() { # LOG: MB/s of the whole restore and of its copy phase, from its log line
	sed -n 's/.*restore: order [0-9]* done: [0-9]* chunks (\([0-9]*\) bytes).*, \([0-9]*\) ms (copy \([0-9]*\) ms)$/\1 \2 \3/p' "$1" |
		awk '{ printf "%.0f %.0f %d\n", $1 / 1e6 / ($2 / 1000), $1 / 1e6 / (($3 ? $3 : 1) / 1000), $1 }'
}

printf 'restore: %d MiB snapshot (random), %d KiB requests (its chunk), depth %d, %d rounds (MB/s)\n' \
	"$vol_mb" $((cs / 1024)) "$depth" "$rounds"
printf '  %-6s %10s %10s %10s %8s %10s %8s %9s\n' "round" "iscsi-perf" "gc-fetch" "restore" "ratio" "copy" "ratio" "cpu s/GB"
: >"$D/t"
for r in $(seq "$rounds"); do
	goldctl machine restore pc2 --from pc1 --url "$URL" --token-file "$ADMIN" >/dev/null
	for _ in $(seq 600); do lun_ready && break; sleep 0.1; done
	cat "$D/state/restore/pc1@1.img" >/dev/null # page cache warm for both sides
	p=$(perf_mbs)
	f=$(fetch_mbs)
	attach pc2 "$D/pc2-$r.log"
	u=$(agent_cpu)
	stop
	read -r h c b < <(restore_mbs "$D/pc2-$r.log")
	[ -n "${b:-}" ] || {
		echo "restore: round $r did not restore" >&2
		tail -5 "$D/pc2-$r.log" >&2
		exit 1
	}
	g=$(echo "$u / ($b / 1000000000)" | bc -l)
	printf '  %-6s %10.0f %10.0f %10.0f %7.2fx %10.0f %7.2fx %9.2f\n' "r$r" "$p" "$f" "$h" \
		"$(echo "$h / $p" | bc -l)" "$c" "$(echo "$c / $p" | bc -l)" "$g"
	echo "$p $f $h $c $g" >>"$D/t"
done
awk -v n="$rounds" '{ if ($1 > p) p = $1; if ($2 > f) f = $2; if ($3 > h) h = $3; if ($4 > c) c = $4
		g += $5 }
	END { printf "  best of %d: iscsi-perf %.0f, gc-fetch %.0f, restore %.0f MB/s: %.2fx; copy %.0f MB/s: %.2fx; agent CPU %.2f s/GB (mean)\n",
		n, p, f, h, h / p, c, c / p, g / n }' "$D/t"
