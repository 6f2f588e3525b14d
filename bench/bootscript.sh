#!/usr/bin/env bash
# Boot-script throughput: requests/s and p99 latency of GET /boot.ipxe?mac=...
# for 1,000 distinct MACs against a real goldcached (config lookup by group,
# registry write per request, template render), side by side in the same run
# with busybox httpd serving a static file of the same size: the floor any
# per-machine script server pays for HTTP itself. Load: wrk, 2 threads,
# Connection: close (each booting machine opens its own connection), then the
# same with keep-alive for goldcached alone. Everything runs in a private network
# namespace (its own loopback, TIME_WAIT table and port range), so neither the
# rest of the machine nor the previous run's closed connections skew a run.
#   GC_BUILD=build bash bench/bootscript.sh      (make bench runs it)
# First, 1,000 new MACs are served one at a time (first sight: goldcached gives
# each machine its own iSCSI target); the runs start once tgtd has them all.
# Env: BENCH_SECONDS (default 10), BENCH_CONNS (default 32), BENCH_SYNC_LIMIT
# (seconds to wait for the targets, default 180), BENCH_KEEP (keep the temp dir).
set -euo pipefail
: "${GC_BUILD:?run through make bench (GC_BUILD unset)}"
SRC=$(cd "$(dirname "$0")/.." && pwd)
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-32}
for c in wrk busybox curl sqlite3 ip; do
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
NS=gcbench$$
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	# goldcached removes its 1,000 targets on the way out: give it time
	for p in "${PIDS[@]}"; do
		for _ in $(seq 600); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	# anything still in our namespace (a tgtd whose goldcached was killed)
	ip netns pids "$NS" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	[ -z "${BENCH_KEEP:-}" ] && rm -rf "$D" || echo "bootscript: kept $D" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$NS"
ip -n "$NS" link set lo up
# closed connections' ports come back at once: a run measures the servers, not
# the client's supply of ephemeral ports
ip netns exec "$NS" sysctl -q -w net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="10000 65000"
X=(ip netns exec "$NS")

# a private namespace: fixed ports are free
HTTP_PORT=8080
ISCSI_PORT=3260
BB_PORT=8081

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
"${X[@]}" "$GC_BUILD/bin/goldcached" -c "$D/goldcache.yaml" --log "$D/goldcached.log" &
PIDS+=($!)
URL=http://127.0.0.1:$HTTP_PORT
for _ in $(seq 100); do
	"${X[@]}" curl -sf "$URL/api/v1/health" >/dev/null 2>&1 && break
	sleep 0.1
done
if ! "${X[@]}" curl -sf "$URL/boot.ipxe?mac=52-54-00-b0-00-00" >"$D/www/boot.ipxe"; then
	echo "bootscript: goldcached did not serve a boot script; its log:" >&2
	tail -n 20 "$D/goldcached.log" >&2
	exit 1
fi
"${X[@]}" busybox httpd -f -p "127.0.0.1:$BB_PORT" -h "$D/www" &
PIDS+=($!)
for _ in $(seq 50); do
	"${X[@]}" curl -sf "http://127.0.0.1:$BB_PORT/boot.ipxe" >/dev/null 2>&1 && break
	sleep 0.1
done

# run [wrk args...]: prints "requests/s p99_ms errors" of one wrk run
run() {
	local out rps p99 err
	out=$("${X[@]}" wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s --latency "$@" 2>&1)
	printf "%s\n" "$out" >>"${BENCH_WRK_LOG:-/dev/null}"
	rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec:/ {print $2}')
	p99=$(printf '%s\n' "$out" | awk '$1 == "99%" {
		v = $2
		if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v) }
		else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
		print v }')
	err=$(printf '%s\n' "$out" | awk '/Non-2xx/ {n += $NF} /Socket errors/ {
		for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { sub(",", "", $i); n += $i } }
		END { print n + 0 }')
	echo "${rps:-0} ${p99:-0} $err"
}
health() { "${X[@]}" curl -sf "$URL/api/v1/health"; }
SIZE=$(stat -c %s "$D/www/boot.ipxe")
echo "bootscript: ${SECS}s per run, $CONNS connections, 2 wrk threads, script $SIZE bytes"

# First sight: 1,000 new MACs, one connection, in order. goldcached records each
# and gives each machine its own iSCSI target (tgtadm); the runs below measure
# the steady state (machines that boot again), once the targets are in place.
t0=$(date +%s%N)
"${X[@]}" wrk -t1 -c1 -d120s --timeout 10s -s "$SRC/bench/bootscript.lua" "$URL" >"$D/warm.out" 2>&1 &
WRK=$!
for _ in $(seq 1200); do
	[ "$(sqlite3 -readonly "$D/state/registry.db" \
		"select count(*) from machines where mac like '52:54:00:b0:%'" 2>/dev/null)" = 1000 ] &&
		break
	sleep 0.05
done
kill -INT "$WRK" 2>/dev/null
wait "$WRK" 2>/dev/null || true
t1=$(date +%s%N)
# goldcached notices new machines within DESIRED_POLL_MS (2 s) and reconciles
# tgtd; meanwhile health answers late: the longest answer is the loop's stall
sleep 2.5
stall=0
synced=no
deadline=$(($(date +%s) + ${BENCH_SYNC_LIMIT:-180}))
while [ "$(date +%s)" -lt "$deadline" ]; do
	out=$("${X[@]}" curl -s --max-time 60 -w ' %{time_total}' "$URL/api/v1/health" || true)
	stall=$(awk -v a="$stall" -v b="${out##* }" 'BEGIN { print (b > a ? b : a) }')
	case "$out" in *'"targets_in_sync":true'*)
		synced=yes
		break
		;;
	esac
	sleep 0.2
done
t2=$(date +%s%N)
printf 'first sight of 1,000 MACs: %.1f s to serve them one at a time; targets in tgtd: %s after %.1f s more; longest health answer meanwhile %.1f s\n' \
	"$(((t1 - t0) / 1000000))e-3" "$synced" "$(((t2 - t1) / 1000000))e-3" "$stall"

read -r gc_rps gc_p99 gc_err < <(run -H "Connection: close" -s "$SRC/bench/bootscript.lua" "$URL")
read -r bb_rps bb_p99 bb_err < <(run -H "Connection: close" "http://127.0.0.1:$BB_PORT/boot.ipxe")
read -r ka_rps ka_p99 ka_err < <(run -s "$SRC/bench/bootscript.lua" "$URL")
printf '%-36s %12s %10s %8s\n' "server (1,000 MACs, steady state)" "requests/s" "p99 ms" "errors"
printf '%-36s %12.0f %10.2f %8d\n' "goldcached /boot.ipxe (close)" "$gc_rps" "$gc_p99" "$gc_err"
printf '%-36s %12.0f %10.2f %8d\n' "busybox httpd static file (close)" "$bb_rps" "$bb_p99" "$bb_err"
printf '%-36s %12.0f %10.2f %8d\n' "goldcached /boot.ipxe (keep-alive)" "$ka_rps" "$ka_p99" "$ka_err"
awk -v a="$gc_rps" -v b="$bb_rps" -v c="$gc_p99" -v d="$bb_p99" 'BEGIN {
	printf "ratio goldcached/busybox (close): throughput %.2fx, p99 latency %.2fx\n",
		(b > 0 ? a / b : 0), (d > 0 ? c / d : 0) }'
