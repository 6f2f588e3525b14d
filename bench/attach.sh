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
#   background: what `goldagent attach` does at a machine's first boot:
#            `goldagent serve --appliance` (the same NBD loop) hydrating the
#            gold slot in the background, vs `goldagent hydrate` vs
#            iscsi-perf on the same LUN, depth BENCH_BG_DEPTH (8; attach: 4),
#            the cache on a disk (BENCH_DISK_DIR, default /var/tmp: first
#            boot writes to a disk). serve's rate is from its log's
#            timestamps (loop start to "background hydration complete"),
#            hydrate's its own (after login and manifest). Then the NBD read
#            latency a booting machine feels: 4 KiB reads of present chunks
#            (qemu-io, one at a time, random offsets in the first 16 MiB,
#            fetched first) while serve hydrates, and after: mean, p99, max.
#   sync:    scattered writes (4-64 KiB) to the machine volume through NBD,
#            then `goldagent sync`: bytes sent / dirty bytes (goal <= 1.05).
# BENCH_ROWS ("hydrate background sync") selects rows.
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

rows=${BENCH_ROWS:-hydrate background sync}
has_row() { case " $rows " in *" $1 "*) return 0 ;; esac; return 1; }

has_row hydrate && printf '%-26s %12s %16s %8s\n' "case (1 MiB requests)" "iscsi-perf" "goldagent hydrate" "ratio"
has_row hydrate && for depth in 8 1; do
	p=0 h=0
	for _ in $(seq "$rounds"); do
		p=$(awk -v a="$p" -v b="$(perf_mbs "$depth")" 'BEGIN {print a + b}')
		h=$(awk -v a="$h" -v b="$(hyd_mbs "$depth")" 'BEGIN {print a + b}')
	done
	awk -v p="$p" -v h="$h" -v r="$rounds" -v d="$depth" 'BEGIN {
		printf "%-26s %7.0f MB/s %11.0f MB/s %7.2fx\n", "qd" d " " '"$size_mb"' " MiB", p / r, h / r, h / p}'
done

# background: serve --appliance hydrating vs hydrate vs iscsi-perf, cache on disk
bg_depth=${BENCH_BG_DEPTH:-8}
BD=$(mktemp -d "${BENCH_DISK_DIR:-/var/tmp}/gc-attach-bg.XXXXXX")
on_exit 'rm -rf "$BD"'
BG=(--appliance "$URL" --machine pc1 --token-file "$D/a/pc1.token" --state-dir "$D/a" --depth "$bg_depth")
ms_of() { # log line -> ms since the epoch, from its timestamp
	sed -n 's/^\([0-9T:.-]*\)Z .*/\1/p' <<<"$1" | { read -r t && date -d "${t}Z" +%s%3N; }
}
bg_serve() { # with-reads: starts serve --appliance into an empty cache; waits for the end of
	# its background hydration (reading meanwhile with 1); prints MiB/s and its CPU
	# seconds per GiB (user + system, all threads, from its start)
	local a b cpu
	rm -f "$BD/c.img" "$BD/during"
	: >"$BD/during"
	goldagent serve --cache "$BD/c.img" "${BG[@]}" --gold-socket "$BD/g.sock" >"$BD/serve.log" 2>&1 &
	AG_PID=$!
	while [ ! -S "$BD/g.sock" ]; do sleep 0.02; done
	[ "$1" = 1 ] && qemu-io -f raw -r -c "read 0 16M" "nbd+unix:///gold?socket=$BD/g.sock" >/dev/null
	while ! grep -q "background hydration" "$BD/serve.log"; do
		if [ "$1" = 1 ]; then bg_reads 100 >>"$BD/during"; else sleep 0.05; fi
	done
	cpu=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$AG_PID/stat")
	[ "$1" = 1 ] && bg_reads 1000 >"$BD/after"
	kill -TERM "$AG_PID"
	wait "$AG_PID" || true
	AG_PID=
	grep -q "background hydration complete" "$BD/serve.log" || {
		echo "background: serve's hydration did not complete:" >&2
		tail -n 5 "$BD/serve.log" >&2
		exit 1
	}
	a=$(ms_of "$(grep -m 1 ": serving gold on" "$BD/serve.log")")
	b=$(ms_of "$(grep -m 1 "background hydration complete" "$BD/serve.log")")
	awk -v s="$size_mb" -v ms="$((b - a))" -v c="$cpu" 'BEGIN {print s / (ms / 1000), c * 1024 / s}'
}
bg_reads() { # N: N single 4 KiB reads of present chunks; prints microseconds per read
	local cmds=()
	for _ in $(seq "$1"); do cmds+=(-c "read $(((RANDOM % 4096) * 4096)) 4k"); done
	qemu-io -f raw -r "${cmds[@]}" "nbd+unix:///gold?socket=$BD/g.sock" |
		sed -n 's/.* and \([0-9.]*\) ops\/sec.*/\1/p' | awk '{printf "%.0f\n", 1e6 / $1}'
}
lat_stats() { sort -n | awk '{a[NR] = $1; s += $1} END {
	printf "mean %5.0f us, p99 %6d us, max %6d us (%d reads)", s / NR, a[int(NR * 0.99)], a[NR], NR}'; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
if has_row background; then
	echo "background hydration, cache on disk, depth $bg_depth, $size_mb MiB (MiB/s; rounds, then medians):"
	: >"$BD/p" ; : >"$BD/h" ; : >"$BD/s" ; : >"$BD/hc" ; : >"$BD/sc"
	TIMEFORMAT='cpu %U %S'
	for r in $(seq "$rounds"); do
		p=$(perf_mbs "$bg_depth")
		rm -f "$BD/c.img"
		# "MiB/s CPU-s-per-GiB": its own clock (after login and manifest), all its CPU
		h=$({ time goldagent hydrate --cache "$BD/c.img" "${BG[@]}" 2>/dev/null; } 2>&1 |
			awk -v mb="$size_mb" '/ms$/ { sub(/.*[(]/, ""); b = $1; ms = $(NF - 1) }
				/^cpu / { c = $2 + $3 } END { print b / 1048576 / (ms / 1000), c * 1024 / mb }')
		read -r sv svc <<<"$(bg_serve 0)"
		read -r h hc <<<"$h"
		echo "$p" >>"$BD/p"; echo "$h" >>"$BD/h"; echo "$sv" >>"$BD/s"
		echo "$hc" >>"$BD/hc"; echo "$svc" >>"$BD/sc"
		printf '  round %d: iscsi-perf %4.0f, goldagent hydrate %4.0f, serve (attach) background %4.0f; CPU s/GiB hydrate %.2f, serve %.2f\n' \
			"$r" "$p" "$h" "$sv" "$hc" "$svc"
	done
	p=$(median <"$BD/p") h=$(median <"$BD/h") sv=$(median <"$BD/s")
	awk -v p="$p" -v h="$h" -v s="$sv" -v hc="$(median <"$BD/hc")" -v sc="$(median <"$BD/sc")" 'BEGIN {
		printf "  medians: iscsi-perf %.0f, hydrate %.0f, serve %.0f: serve/hydrate %.2fx, serve/iscsi-perf %.2fx, hydrate/iscsi-perf %.2fx; CPU s/GiB hydrate %.2f, serve %.2f\n",
			p, h, s, s / h, s / p, h / p, hc, sc }'
	bg_serve 1 >/dev/null
	echo "  4 KiB NBD reads of present chunks, qd1, during the background hydration: $(lat_stats <"$BD/during")"
	echo "                                                       after it: $(lat_stats <"$BD/after")"
fi
has_row sync || exit 0

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
