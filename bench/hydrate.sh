#!/usr/bin/env bash
# Hydration throughput against iscsi-perf, side by side in one run: the real
# goldcached + tgtd on loopback, one image (BENCH_LUN_MB, default 1024 MiB,
# 1 MiB chunks), read by the same initiator with the same CHAP login at the
# same request size (1 MiB: the chunk) and queue depth:
#   iscsi-perf         sequential READ16s, data thrown away (the peer);
#   gc-fetch           goldagent's transfer engine alone (agent/fetch.c), to
#                      /dev/null;
#   goldagent hydrate  the whole path: token, login, manifest, every chunk
#                      read, SHA-256 verified, written to the cache and
#                      committed (fdatasync, present map), from an empty cache.
# The cache is on BENCH_CACHE_DIR (default /dev/shm), so this measures the
# transfer + verification path as iscsi-perf measures the transfer (plus the
# cost of storing each chunk in RAM); on a disk (a directory on one) the
# chunks go with O_DIRECT and the disk's write rate may bound it. Goal:
# hydrate >= 0.9x iscsi-perf.
# Both clients are libiscsi with its default session parameters
# (MaxRecvDataSegmentLength 262144, ImmediateData yes, InitialR2T no, header
# digest none-or-CRC32C: tgtd picks none), READ16s of 2048 blocks, the same
# initiator name and CHAP login on the same LUN, tgtd's page cache warm for
# both. iscsi-perf receives every chunk into one 1 MiB buffer it reuses;
# goldagent receives each into its own buffer (libiscsi reads straight into
# it), verifies it (SHA-256, two chunks at a time) and writes it.
# Rounds: BENCH_ROUNDS (3), interleaved, each printed; then the median of
# each side per depth (other work on a shared machine disturbs single rounds
# by 2-3x) and their ratio, and the CPU each side used per GB.
# Depths: BENCH_DEPTHS ("8 1").
# Placement: BENCH_PLACES ("shared split"). shared: every process may run on
# every core, so tgtd, the client and its threads compete for the box's cores.
# split: the appliance (goldcached, tgtd and all their threads) pinned to the
# first core, the client (iscsi-perf, gc-fetch, goldagent and its workers) to
# the second: two hosts modelled on one box, as in production, where tgtd
# runs on the appliance and goldagent on the machine. Needs 2 cores.
set -euo pipefail
# shellcheck source=tests/lib-bench.sh
. "$(dirname "$0")/../tests/lib-bench.sh" hydrate
size_mb=${BENCH_LUN_MB:-1024}
rounds=${BENCH_ROUNDS:-3}
depths=${BENCH_DEPTHS:-8 1}
places=${BENCH_PLACES:-shared split}
bench_need goldcached goldctl goldagent gc-fetch iscsi-perf tgtd tgtadm ss taskset
ncpu=$(nproc)
case " $places " in *" split "*)
	[ "$ncpu" -ge 2 ] || { echo "hydrate: BENCH_PLACES=split needs 2 cores, this box has $ncpu" >&2; exit 1; } ;;
esac
client=()
CD=$(mktemp -d "${BENCH_CACHE_DIR:-/dev/shm}/gc-hydrate-bench.XXXXXX")
on_exit 'rm -rf "$CD"'
head -c $((size_mb << 20)) /dev/urandom >"$D/gold.img"
ATTACH_MACHINES=pc1 ATTACH_VOLUME=64M ATTACH_RETENTION=
ATTACH_PREFIX=iqn.2026-11.org.goldcache.hydratebench
bench_lab "$D/gold.img"
rm -f "$D/gold.img"
secret=$(cat "$D/state/secrets/pc1.chap")
cat "$D/state/exports/deb@1.img" >/dev/null # page cache warm for every side

tgtd_pid=$(pgrep -P "$GC_PID" -x tgtd | head -n 1)
hz=$(getconf CLK_TCK)
# cpu PID: user + system seconds it used so far
cpu() { awk -v hz="$hz" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
TIMEFORMAT='cpu %U %S'
# each runner prints "MiB/s CPU-seconds-of-the-client MiB-read": MiB, because
# iscsi-perf's "MB/s" is MiB/s (bytes >> 20)
perf_run() { # depth
	local out
	out=$({ time "${client[@]}" timeout -s INT 20 iscsi-perf -i "$PREFIX:i.pc1" -m "$1" -b 2048 -t 6 \
		"iscsi://pc1%$secret@127.0.0.1:$ISCSI_PORT/$PREFIX:m.pc1/1" 2>&1; } 2>&1 | tr '\r' '\n')
	awk '/^iops average/ { gsub(/[(]/, "", $4); m = $4 } /^cpu / { c = $2 + $3 }
		END { printf "%d %.2f %d\n", m, c, m * 6 }' <<<"$out" # iscsi-perf's "MB/s" is MiB/s
}
fetch_run() { # depth
	local out
	out=$({ time "${client[@]}" gc-fetch --json -d "$1" -s 1M -i "$PREFIX:i.pc1" -u pc1 \
		--secret-file "$D/state/secrets/pc1.chap" "127.0.0.1:$ISCSI_PORT" "$PREFIX:m.pc1" 1 \
		/dev/null; } 2>&1)
	awk -F'[ ,}]+' '/"seconds"/ { for (i = 1; i < NF; i++) {
			if ($i == "{\"bytes\":") b = $(i + 1); if ($i == "\"seconds\":") s = $(i + 1) } }
		/^cpu / { c = $2 + $3 } END { printf "%d %.2f %d\n", b / 1048576 / s, c, b / 1048576 }' <<<"$out"
}
hyd_run() { # depth: MiB/s of the hydration itself (its own clock: after login and manifest)
	local out
	rm -f "$CD/c.img"
	out=$({ time "${client[@]}" goldagent hydrate --cache "$CD/c.img" --appliance "$URL" --machine pc1 \
		--depth "$1" --token-file "$D/a/pc1.token" --state-dir "$D/a" 2>/dev/null; } 2>&1)
	awk '/ ms$/ { b = $0; sub(/.*[(]/, "", b); sub(/ bytes.*/, "", b); t = $(NF - 1) }
		/^cpu / { c = $2 + $3 } END { printf "%d %.2f %d\n", b / 1048576 / (t / 1000), c, b / 1048576 }' <<<"$out"
}
# run NAME FN DEPTH: appends "NAME depth MiB/s client-CPU tgtd-CPU MiB" to $D/t, prints MiB/s
run() {
	local t0 res
	t0=$(cpu "$tgtd_pid")
	res=$("$2" "$3")
	echo "$1 $3 ${res% *} $(awk -v a="$t0" -v b="$(cpu "$tgtd_pid")" 'BEGIN { print b - a }') ${res##* }" >>"$D/t"
	echo "${res%% *}"
}

# place shared|split: where the appliance's and the client's processes may run
place() {
	local app_cpus=0-$((ncpu - 1))
	client=()
	if [ "$1" = split ]; then
		app_cpus=0
		client=(taskset -c 1)
	fi
	taskset -apc "$app_cpus" "$GC_PID" >/dev/null
	taskset -apc "$app_cpus" "$tgtd_pid" >/dev/null
}

printf 'hydrate: %d MiB image, 1 MiB requests, %d rounds (MiB/s); cache on %s (%s); load %s\n' \
	"$size_mb" "$rounds" "${BENCH_CACHE_DIR:-/dev/shm}" "$(stat -f -c %T "$CD")" \
	"$(cut -d' ' -f1-3 /proc/loadavg)"
for pl in $places; do
	place "$pl"
	case $pl in
	shared) echo "placement shared: appliance and client on any of the $ncpu cores" ;;
	split) echo "placement split: appliance (goldcached, tgtd) on core 0, client on core 1" ;;
	*) echo "hydrate: BENCH_PLACES: '$pl' is neither shared nor split" >&2; exit 1 ;;
	esac
	printf '  %-10s %10s %10s %10s %8s\n' "case" "iscsi-perf" "gc-fetch" "hydrate" "ratio"
	: >"$D/t"
	for r in $(seq "$rounds"); do
		for depth in $depths; do
			p=$(run perf perf_run "$depth")
			f=$(run fetch fetch_run "$depth")
			h=$(run hyd hyd_run "$depth")
			printf '  %-10s %10.0f %10.0f %10.0f %7.2fx\n' "r$r qd$depth" "$p" "$f" "$h" \
				"$(echo "$h / $p" | bc -l)"
		done
	done
	echo "  median of $rounds rounds (hydrate / iscsi-perf; goal >= 0.9x):"
	for depth in $depths; do
		awk -v d="$depth" '$2 == d { v[$1, n[$1]++] = $3 }
			function med(k,   i, j, t, c, a) {
				c = n[k]
				for (i = 0; i < c; i++) a[i] = v[k, i]
				for (i = 0; i < c; i++)
					for (j = i + 1; j < c; j++)
						if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
				return c % 2 ? a[(c - 1) / 2] : (a[c / 2 - 1] + a[c / 2]) / 2
			}
			END { p = med("perf"); h = med("hyd")
			      printf "  %-10s %10.0f %10.0f %10.0f %7.2fx\n", "qd" d, p, med("fetch"), h, h / p }' "$D/t"
	done
	# CPU per GiB read, summed over the rounds: where the two cores go. When the
	# machine is busy, throughput follows these (tgtd shares the box with the client).
	echo "  CPU seconds per GiB read (client, tgtd), all rounds:"
	for depth in $depths; do
		awk -v d="$depth" '$2 == d { c[$1] += $4; g[$1] += $5; m[$1] += $6 }
			END { printf "  %-10s iscsi-perf %.2f + tgtd %.2f   gc-fetch %.2f + tgtd %.2f   hydrate %.2f + tgtd %.2f\n",
			      "qd" d, c["perf"] * 1024 / m["perf"], g["perf"] * 1024 / m["perf"],
			      c["fetch"] * 1024 / m["fetch"], g["fetch"] * 1024 / m["fetch"],
			      c["hyd"] * 1024 / m["hyd"], g["hyd"] * 1024 / m["hyd"] }' "$D/t"
	done
done
place shared
echo "  load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
