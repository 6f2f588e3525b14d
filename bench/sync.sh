#!/usr/bin/env bash
# Sync back of a machine volume (default 256 MiB, 10% of its 1 MiB chunks
# changed, scattered) through the real goldcached + tgtd on loopback, side by
# side with peers doing the same bytes in the same run:
#   upload: gc-upload (goldagent's engine, WRITE16 qd8) of the changed chunks to
#           LUN 2  vs  qemu-img (libiscsi) writing as many bytes to the same LUN
#   commit: POST .../commit until done (verify every claimed hash, store the
#           chunks, publish)  vs  `goldctl image import` of a file holding the
#           same changed chunks (hash + store + publish, no verification pass)
# Also prints sync's wire efficiency: bytes uploaded / dirty bytes.
set -euo pipefail
: "${GC_BUILD:?run through make bench}"
PATH="$GC_BUILD/bin:$PATH"
vol_mb=${BENCH_VOLUME_MB:-256}
pct=${BENCH_CHANGED_PCT:-10}
rounds=${BENCH_ROUNDS:-3}
D=$(mktemp -d)
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
}
HTTP_PORT=$(free_port)
ISCSI_PORT=$(free_port)
URL=http://127.0.0.1:$HTTP_PORT
PREFIX=iqn.2026-11.org.goldcache.syncbench
GC_PID=
cleanup() {
	[ -n "$GC_PID" ] && kill -TERM "$GC_PID" 2>/dev/null && wait "$GC_PID" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
mkdir -p "$D/tftp" "$D/store" "$D/state"
head -c 4096 /dev/urandom >"$D/k"
head -c 1048576 /dev/urandom >"$D/gold.img"
cat >"$D/gc.yaml" <<-YAML
	appliance:
	  interface: lo
	  listen: 127.0.0.1
	  http_port: $HTTP_PORT
	  dhcp: {mode: off}
	  tftp_root: $D/tftp
	  iscsi: {portal: 127.0.0.1:$ISCSI_PORT, iqn_prefix: $PREFIX}
	  store_dir: $D/store
	  state_dir: $D/state
	images:
	  - {name: deb, version: current, kernel: $D/k, initrd: $D/k}
	profiles:
	  - {name: desk, image: deb, mode: cache, volume_size: ${vol_mb}M, retention: 100}
	machines:
	  - {mac: 52:54:00:30:00:01, name: pc1, profile: desk}
YAML
goldctl --store "$D/store" -q image import deb "$D/gold.img" >/dev/null
goldcached -c "$D/gc.yaml" --log "$D/gc.log" &
GC_PID=$!
for _ in $(seq 200); do
	TGT_IPC_SOCKET="$D/state/run/tgtd.sock" tgtadm -C 0 --lld iscsi --op show --mode target 2>/dev/null |
		grep -q "uploads/pc1.img" && break
	sleep 0.1
done
AGENT=$(goldctl machine token pc1 --url "$URL" --token-file "$D/state/admin.token")
SECRET=$D/state/secrets/pc1.chap
upload() { # VOL BASE BASESNAP -> body on stdout, stats on stderr
	gc-upload --stats -c 1M -i "$PREFIX:i.pc1" -u pc1 --secret-file "$SECRET" \
		${2:+--base "$2"} ${3:+--base-snapshot "$3"} "127.0.0.1:$ISCSI_PORT" "$PREFIX:m.pc1" 2 "$1"
}
commit() { # BODY -> seconds until done
	local t0 t1 s
	t0=$(date +%s.%N)
	curl -sS -o /dev/null -X POST -H "Authorization: Bearer $AGENT" --data-binary "@$1" \
		"$URL/api/v1/machines/pc1/commit"
	while :; do
		s=$(curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1/commit" | jq -r .state)
		[ "$s" != running ] && break
		sleep 0.02
	done
	t1=$(date +%s.%N)
	[ "$s" = "done" ] || { echo "commit $s" >&2; exit 1; }
	curl -sS -H "Authorization: Bearer $AGENT" "$URL/api/v1/machines/pc1/commit" | jq .elapsed_ms >>"$D/elapsed"
	echo "$t1 - $t0" | bc -l
}
qemu_write() { # FILE -> seconds to write it to LUN 2 at offset 0
	local opts t0 t1
	printf '%s' "$(cat "$SECRET")" >"$D/secret"
	opts="driver=iscsi,transport=tcp,portal=127.0.0.1:$ISCSI_PORT,target=$PREFIX:m.pc1,lun=2"
	opts="$opts,initiator-name=$PREFIX:i.pc1,user=pc1,password-secret=s0"
	t0=$(date +%s.%N)
	qemu-img convert -n -f raw --object "secret,id=s0,file=$D/secret" \
		--target-image-opts "$1" "$opts"
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

# the base: a full volume, committed once (not timed)
head -c $((vol_mb << 20)) /dev/urandom >"$D/v0"
upload "$D/v0" >"$D/b0" 2>/dev/null
commit "$D/b0" >/dev/null
nchg=$((vol_mb * pct / 100))
printf 'volume %d MiB, %d changed 1 MiB chunks (%d%%), %d rounds\n' "$vol_mb" "$nchg" "$pct" "$rounds"
up=0 qe=0 co=0 im=0 sent=0
prev=$D/v0
for r in $(seq "$rounds"); do
	cp "$prev" "$D/v$r"
	: >"$D/chg$r"
	for i in $(shuf -i 0-$((vol_mb - 1)) -n "$nchg"); do
		head -c 1048576 /dev/urandom | tee -a "$D/chg$r" |
			dd of="$D/v$r" bs=1M seek="$i" conv=notrunc status=none
	done
	t=$( { upload "$D/v$r" "$prev" "$r" >"$D/b$r"; } 2>&1 | sed -n 's/.* in \([0-9.]*\) s$/\1/p')
	up=$(echo "$up + $t" | bc -l)
	sent=$((sent + $(jq '.chunks | length' "$D/b$r") * 1048576))
	co=$(echo "$co + $(commit "$D/b$r")" | bc -l)
	qe=$(echo "$qe + $(qemu_write "$D/chg$r")" | bc -l)
	t0=$(date +%s.%N)
	goldctl --store "$D/store" -q image import "peer$r" "$D/chg$r" >/dev/null
	t1=$(date +%s.%N)
	im=$(echo "$im + $t1 - $t0" | bc -l)
	rm -f "$prev"
	prev=$D/v$r
done
mb=$(echo "$nchg * $rounds * 1.048576" | bc -l)
printf '%-34s %10s %10s %8s\n' "" "ours" "peer" "ratio"
printf '%-34s %6.0f MB/s %6.0f MB/s %7.2fx\n' "upload (gc-upload vs qemu-img)" \
	"$(echo "$mb / $up" | bc -l)" "$(echo "$mb / $qe" | bc -l)" "$(echo "$qe / $up" | bc -l)"
printf '%-34s %6.0f MB/s %6.0f MB/s %7.2fx\n' "commit (vs goldctl image import)" \
	"$(echo "$mb / $co" | bc -l)" "$(echo "$mb / $im" | bc -l)" "$(echo "$im / $co" | bc -l)"
printf '%-34s %6.3f s\n' "commit of one sync (mean)" "$(echo "$co / $rounds" | bc -l)"
printf '%-34s %6.0f ms\n' "  of which in snapshot_commit" "$(echo "($(tail -n "$rounds" "$D/elapsed" | paste -sd+)) / $rounds" | bc -l)"
printf '%-34s %6.2f\n' "bytes sent / dirty bytes" "$(echo "$sent / ($nchg * $rounds * 1048576)" | bc -l)"
