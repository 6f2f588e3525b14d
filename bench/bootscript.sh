#!/usr/bin/env bash
# Boot-script throughput: requests/s and p99 latency of GET /boot.ipxe?mac=...
# for 1,000 distinct MACs against a real goldcached (config lookup by group,
# registry write per request, template render), side by side in the same run
# with busybox httpd serving a static file of the same size: the floor any
# per-machine script server pays for HTTP itself. Load: wrk, 2 threads,
# Connection: close (each booting machine opens its own connection), then the
# same with keep-alive for goldcached alone.
#   GC_BUILD=build bash bench/bootscript.sh      (make bench runs it)
# Env: BENCH_SECONDS (default 10), BENCH_CONNS (default 32).
set -euo pipefail
: "${GC_BUILD:?run through make bench (GC_BUILD unset)}"
SRC=$(cd "$(dirname "$0")/.." && pwd)
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-32}
for c in wrk busybox curl sqlite3; do
	command -v "$c" >/dev/null || {
		echo "bootscript: missing '$c' (make deps)" >&2
		exit 1
	}
done
[ "$(id -u)" -eq 0 ] || {
	echo "bootscript: goldcached runs tgtd: run as root" >&2
	exit 1
}

D=$(mktemp -d "${TMPDIR:-/tmp}/gc-bench-boot.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$D"
}
trap cleanup EXIT

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		if ! ss -Htln "sport = :$p" | grep -q .; then
			echo "$p"
			return
		fi
	done
}
HTTP_PORT=$(free_port)
ISCSI_PORT=$(free_port)
BB_PORT=$(free_port)

mkdir -p "$D/tftp" "$D/store" "$D/state" "$D/www"
head -c 4096 /dev/zero >"$D/vmlinuz"
head -c 4096 /dev/zero >"$D/initrd"
cat >"$D/goldcache.yaml" <<YAML
appliance:
  interface: lo
  listen: 127.0.0.1
  http_port: $HTTP_PORT
  dhcp: {mode: off}
  tftp_root: $D/tftp
  iscsi: {portal: 127.0.0.1:$ISCSI_PORT, iqn_prefix: iqn.2026-11.org.example.bench}
  store_dir: $D/store
  state_dir: $D/state
images:
  - {name: deb, version: "1", kernel: $D/vmlinuz, initrd: $D/initrd, cmdline: "console=ttyS0 quiet"}
profiles:
  - {name: desk, image: deb, mode: cache}
groups:
  - {match: "52:54:00:*", profile: desk}
unknown_machines: {policy: refuse}
YAML
"$GC_BUILD/bin/goldcached" -c "$D/goldcache.yaml" --log "$D/goldcached.log" &
PIDS+=($!)
URL=http://127.0.0.1:$HTTP_PORT
for _ in $(seq 100); do
	curl -sf "$URL/api/v1/health" >/dev/null 2>&1 && break
	sleep 0.1
done
if ! curl -sf "$URL/boot.ipxe?mac=52-54-00-b0-00-00" >"$D/www/boot.ipxe"; then
	echo "bootscript: goldcached did not serve a boot script; its log:" >&2
	tail -n 20 "$D/goldcached.log" >&2
	exit 1
fi
busybox httpd -f -p "127.0.0.1:$BB_PORT" -h "$D/www" &
PIDS+=($!)
for _ in $(seq 50); do
	curl -sf "http://127.0.0.1:$BB_PORT/boot.ipxe" >/dev/null 2>&1 && break
	sleep 0.1
done

# run [wrk args...]: prints "requests/s p99_ms" of one wrk run
run() {
	local out rps p99
	out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "$@" 2>&1)
	if printf '%s\n' "$out" | grep -q 'Non-2xx'; then
		printf 'bootscript: non-2xx responses:\n%s\n' "$out" >&2
		exit 1
	fi
	rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec:/ {print $2}')
	p99=$(printf '%s\n' "$out" | awk '$1 == "99%" {
		v = $2
		if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v) }
		else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
		print v }')
	echo "${rps:-0} ${p99:-0}"
}
SIZE=$(stat -c %s "$D/www/boot.ipxe")
echo "bootscript: ${SECS}s per run, $CONNS connections, 2 wrk threads, script $SIZE bytes"
read -r gc_rps gc_p99 < <(run -H "Connection: close" -s "$SRC/bench/bootscript.lua" "$URL")
read -r bb_rps bb_p99 < <(run -H "Connection: close" "http://127.0.0.1:$BB_PORT/boot.ipxe")
read -r ka_rps ka_p99 < <(run -s "$SRC/bench/bootscript.lua" "$URL")
MACS=$(sqlite3 -readonly "$D/state/registry.db" \
	"select count(*) from machines where mac like '52:54:00:b0:%'" 2>/dev/null || echo "?")
printf '%-36s %12s %10s\n' "server (1,000 MACs)" "requests/s" "p99 ms"
printf '%-36s %12.0f %10.2f\n' "goldcached /boot.ipxe (close)" "$gc_rps" "$gc_p99"
printf '%-36s %12.0f %10.2f\n' "busybox httpd static file (close)" "$bb_rps" "$bb_p99"
printf '%-36s %12.0f %10.2f\n' "goldcached /boot.ipxe (keep-alive)" "$ka_rps" "$ka_p99"
awk -v a="$gc_rps" -v b="$bb_rps" -v c="$gc_p99" -v d="$bb_p99" 'BEGIN {
	printf "ratio goldcached/busybox (close): throughput %.2fx, p99 latency %.2fx\n",
		(b > 0 ? a / b : 0), (d > 0 ? c / d : 0) }'
echo "registry rows for the bench MACs: $MACS (want 1000)"
