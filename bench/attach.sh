#!/usr/bin/env bash
# goldagent's full paths against the real goldcached + tgtd on loopback, side
# by side in one run:
#   hydrate: `goldagent hydrate --appliance` of an image (default 512 MiB, 1 MiB
#            chunks: token, iSCSI login with CHAP, manifest, every chunk read
#            with READ16, SHA-256 verified, written to the cache, committed)
#            vs iscsi-perf reading the same LUN sequentially as the same
#            initiator with the same CHAP login, same request size (1 MiB) and
#            queue depth. Goal: >= 0.9x. Rows for depth 8 and depth 1 (what a
#            one-chunk-at-a-time hydrator gets).
#            The cache is on BENCH_CACHE_DIR (default /dev/shm): this measures
#            the transfer and verification path, as iscsi-perf measures the
#            transfer; on a disk the disk's write rate bounds both.
#   sync:    scattered writes (4-64 KiB) to the machine volume through NBD,
#            then `goldagent sync`: bytes sent / dirty bytes (goal <= 1.05).
set -euo pipefail
# shellcheck source=tests/lib-bench.sh
. "$(dirname "$0")/../tests/lib-bench.sh" attach
size_mb=${BENCH_IMAGE_MB:-512}
rounds=${BENCH_ROUNDS:-3}
CD=$(mktemp -d "${BENCH_CACHE_DIR:-/dev/shm}/gc-attach-bench.XXXXXX")
on_exit 'rm -rf "$CD"'
AG_PID=""
head -c $((size_mb << 20)) /dev/urandom >"$D/gold.img"
ATTACH_MACHINES=pc1 ATTACH_VOLUME=256M ATTACH_RETENTION=100
ATTACH_PREFIX=iqn.2026-11.org.goldcache.attachbench
bench_lab "$D/gold.img"
rm -f "$D/gold.img"
on_exit '[ -z "$AG_PID" ] || { kill -TERM "$AG_PID" && wait "$AG_PID"; }'
secret=$(cat "$D/state/secrets/pc1.chap")
cat "$D/state/exports/deb@1.img" >/dev/null # page cache warm for both sides

perf_mbs() { # depth
	timeout -s INT 20 iscsi-perf -i "$PREFIX:i.pc1" -m "$1" -b 2048 -t 6 \
		"iscsi://pc1%$secret@127.0.0.1:$ISCSI_PORT/$PREFIX:m.pc1/1" 2>&1 |
		tr '\r' '\n' | sed -n 's/^iops average [0-9]* (\([0-9]*\) MB\/s).*/\1/p' | tail -n 1
}
hyd_mbs() { # depth
	rm -f "$CD/c.img"
	goldagent hydrate --cache "$CD/c.img" --appliance "$URL" --machine pc1 --depth "$1" \
		--token-file "$D/a/pc1.token" --state-dir "$D/a" 2>/dev/null |
		sed -n 's/.*(\([0-9]*\) bytes).* \([0-9]*\) ms$/\1 \2/p' |
		awk '{print $1 / 1048576 / ($2 / 1000)}'
}

printf '%-26s %12s %16s %8s\n' "case (1 MiB requests)" "iscsi-perf" "goldagent hydrate" "ratio"
for depth in 8 1; do
	p=0 h=0
	for _ in $(seq "$rounds"); do
		p=$(awk -v a="$p" -v b="$(perf_mbs "$depth")" 'BEGIN {print a + b}')
		h=$(awk -v a="$h" -v b="$(hyd_mbs "$depth")" 'BEGIN {print a + b}')
	done
	awk -v p="$p" -v h="$h" -v r="$rounds" -v d="$depth" 'BEGIN {
		printf "%-26s %7.0f MB/s %11.0f MB/s %7.2fx\n", "qd" d " " '"$size_mb"' " MiB", p / r, h / r, h / p}'
done

# sync: scattered writes, then goldagent sync
goldagent serve --cache "$CD/c.img" --volume-socket "$D/v.sock" >/dev/null 2>&1 &
AG_PID=$!
for _ in $(seq 100); do [ -S "$D/v.sock" ] && break; sleep 0.1; done
cmds=()
for _ in $(seq 200); do
	cmds+=(-c "write -P $((RANDOM % 250 + 1)) $(((RANDOM % 4000) * 65536)) $(((RANDOM % 16 + 1) * 4096))")
done
qemu-io -f raw "${cmds[@]}" "nbd+unix:///volume?socket=$D/v.sock" >/dev/null
kill -TERM "$AG_PID"
wait "$AG_PID" || true
AG_PID=
line=$(goldagent sync --cache "$CD/c.img" --appliance "$URL" --machine pc1 --token-file "$D/a/pc1.token" \
	--state-dir "$D/a")
echo "$line"
echo "$line" | sed -n 's/.* \([0-9]*\) dirty bytes, \([0-9]*\) bytes sent.*/\1 \2/p' |
	awk '{printf "sync: 200 scattered writes of 4-64 KiB: bytes sent / dirty bytes = %.3f (goal <= 1.05)\n", $2 / $1}'
