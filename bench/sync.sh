#!/usr/bin/env bash
# Sync back of a machine volume (default 256 MiB) by goldagent itself, through
# the real goldcached + tgtd on loopback, side by side with a peer doing the
# same bytes in the same run:
#   commit: goldagent sync's commit (POST .../commit until done: verify every
#           claimed hash, lay parts over the base, store, publish)  vs
#           `goldctl image import` of a file holding the same dirty bytes
#   wire:   bytes written to LUN 2 / dirty bytes (goal <= 1.05)
# in two write patterns of the same dirty bytes (BENCH_CHANGED_PCT of the
# volume): whole 1 MiB chunks, and scattered 64 KiB blocks (chunks uploaded in
# part, completed from the base on the appliance). Then a live sync: `goldagent
# serve` with a 1 s sync interval while qemu-io keeps writing 4 KiB blocks
# through NBD; prints how long each sync paused the volume's writes.
set -euo pipefail
# shellcheck source=tests/lib-bench.sh
. "$(dirname "$0")/../tests/lib-bench.sh" sync
vol_mb=${BENCH_VOLUME_MB:-256}
pct=${BENCH_CHANGED_PCT:-10}
rounds=${BENCH_ROUNDS:-3}
AG_PID='' W_PID=''
head -c 1048576 /dev/urandom >"$D/gold.img"
ATTACH_MACHINES=pc1 ATTACH_VOLUME=${vol_mb}M ATTACH_RETENTION=100
ATTACH_PREFIX=iqn.2026-11.org.goldcache.syncbench
bench_lab "$D/gold.img"
on_exit '[ -z "$W_PID" ] || kill "$W_PID"; [ -z "$AG_PID" ] || { kill -TERM "$AG_PID" && wait "$AG_PID"; }'
AG=(--cache "$D/a/c.img" --appliance "$URL" --machine pc1 --state-dir "$D/a")
goldagent hydrate "${AG[@]}" >/dev/null 2>&1
VOL="nbd+unix:///volume?socket=$D/v.sock"
serve() {
	rm -f "$D/v.sock"
	goldagent serve "${AG[@]}" --volume-socket "$D/v.sock" "$@" >>"$D/serve.log" 2>&1 &
	AG_PID=$!
	for _ in $(seq 200); do [ -S "$D/v.sock" ] && return 0; sleep 0.05; done
	echo "goldagent serve did not start" >&2
	exit 1
}
stop() { kill -TERM "$AG_PID" && wait "$AG_PID" || true; AG_PID=; }
# write UNIT COUNT: COUNT random regions of UNIT bytes at distinct
# UNIT-aligned offsets, through NBD; the bytes also go to $D/dirty
write_random() {
	local unit=$1 n=$2 args=() i
	: >"$D/dirty"
	for i in $(shuf -i 0-$(((vol_mb << 20) / unit - 1)) -n "$n"); do
		head -c "$unit" /dev/urandom >"$D/w$i"
		cat "$D/w$i" >>"$D/dirty"
		args+=(-c "write -s $D/w$i $((i * unit)) $unit")
	done
	serve
	qemu-io -f raw "${args[@]}" "$VOL" >/dev/null
	stop
	rm -f "$D"/w[0-9]*
}
# field NAME LINE: a figure of goldagent sync's summary line
field() { sed -n "s/.*[ ,(]\\([0-9.]*\\) $1.*/\\1/p" <<<"$2"; }
field_after() { sed -n "s/.*$1 \\([0-9.]*\\).*/\\1/p" <<<"$2"; }

# the base: the whole volume, synced once (not timed)
head -c $((vol_mb << 20)) /dev/urandom >"$D/full"
serve
nbdcopy "$D/full" "$VOL"
stop
goldagent sync "${AG[@]}" >/dev/null
rm -f "$D/full"
nchg=$((vol_mb * pct / 100))
printf 'volume %d MiB, %d MiB dirty per sync (%d%%), %d rounds per pattern\n' \
	"$vol_mb" "$nchg" "$pct" "$rounds"
printf '%-26s %9s %11s %11s %11s %7s %9s\n' "pattern" "sent/dirty" "upload" "commit" \
	"import" "ratio" "requests"
for pattern in chunks scattered; do
	dirty=0 sent=0 up=0 co=0 im=0 req=0 chunks=0 part=0 el=0
	for r in $(seq "$rounds"); do
		if [ "$pattern" = chunks ]; then
			write_random 1048576 "$nchg"
		else
			write_random 65536 $((nchg * 16))
		fi
		line=$(goldagent sync "${AG[@]}" 2>/dev/null)
		dirty=$((dirty + $(field "dirty bytes" "$line")))
		sent=$((sent + $(field "bytes sent" "$line")))
		up=$((up + $(field_after upload "$line")))
		co=$((co + $(field_after commit "$line")))
		req=$((req + $(sed -n 's/.* \([0-9]*\) requests.*/\1/p' <<<"$line")))
		chunks=$((chunks + $(sed -n 's/.* \([0-9]*\) chunks (.*/\1/p' <<<"$line")))
		part=$((part + $(sed -n 's/.*chunks (\([0-9]*\) in part).*/\1/p' <<<"$line")))
		el=$((el + $(curl -sS -H "Authorization: Bearer $(cat "$D/a/pc1.token")" \
			"$URL/api/v1/machines/pc1/commit" | jq .elapsed_ms)))
		t0=$(date +%s%N)
		goldctl --store "$D/store" -q image import "peer-$pattern-$r" "$D/dirty" >/dev/null
		t1=$(date +%s%N)
		im=$((im + (t1 - t0) / 1000000))
	done
	mb=$(echo "$dirty / 1000000" | bc -l)
	printf '%-26s %9.3f %6.0f MB/s %6.0f MB/s %6.0f MB/s %6.2fx %9d\n' \
		"$pattern ($((chunks / rounds)) chunks, $((part / rounds)) in part)" \
		"$(echo "$sent / $dirty" | bc -l)" "$(echo "$mb * 1000 / $up" | bc -l)" \
		"$(echo "$mb * 1000 / $co" | bc -l)" "$(echo "$mb * 1000 / $im" | bc -l)" \
		"$(echo "$im / $co" | bc -l)" "$((req / rounds))"
	printf '%-26s commit %d ms per sync, %d ms of it in snapshot_commit\n' "" \
		"$((co / rounds))" "$((el / rounds))"
done
echo "(upload and commit: goldagent sync; import: goldctl image import of the same dirty bytes;"
echo " ratio: commit throughput / import throughput; requests: commit POSTs per sync)"

# live: writes keep flowing through NBD while syncs run every second
: >"$D/serve.log"
serve --sync-interval 1
while :; do
	echo "write -P $((RANDOM % 250 + 1)) $(((RANDOM * 32768 + RANDOM) % ((vol_mb << 20) / 4096) * 4096)) 4k"
	sleep 0.002
done | qemu-io -f raw "$VOL" >/dev/null 2>&1 &
W_PID=$!
for _ in $(seq 600); do
	[ "$(grep -c 'committed:' "$D/serve.log")" -ge 5 ] && break
	sleep 0.1
done
kill "$W_PID" 2>/dev/null || true
wait "$W_PID" 2>/dev/null || true
W_PID=
stop
grep 'committed:' "$D/serve.log" | sed -n 's/.* in \([0-9]*\) passes, writes paused \([0-9]*\) ms.*/\1 \2/p' >"$D/pauses"
printf 'live sync with a writer (4 KiB random writes): %d syncs, passes %s, writes paused ms: %s\n' \
	"$(wc -l <"$D/pauses")" "$(cut -d' ' -f1 "$D/pauses" | paste -sd,)" \
	"$(cut -d' ' -f2 "$D/pauses" | paste -sd,)"
