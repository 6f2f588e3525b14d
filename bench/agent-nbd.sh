#!/usr/bin/env bash
# goldagent NBD read throughput from a complete cache, side by side with
# reading the same bytes of the cache file directly, in one run. Both sides
# are the same client, `qemu-img bench` (QEMU's block layer, what a VM
# uses), with the same request size, access pattern, queue depth and cache
# mode (qemu-img's default, writeback: the page cache on both sides): the
# peer reads the slot's byte range of the cache file (raw driver with offset
# and size over the file), goldagent serves the gold export over its Unix
# socket (one connection: QEMU 7.2's NBD client has no multi-conn).
#
# Rows (each at queue depth 1 and 8, GC_BENCH_QD):
#   1M   1 MiB requests, sequential over the whole image (streaming reads:
#        a boot reading files, a copy).
#   4K   4 KiB requests 1 MiB + 4 KiB apart, wrapping around the image:
#        scattered like random reads (no readahead helps), GC_BENCH_SMALL
#        (8192) reads per run (a filesystem's metadata and small files).
#   cold: the cache file's pages dropped before each run of each side (as
#        after a boot); warm: every page read is in the page cache on both
#        sides (a pass of each side first), the pure cost of goldagent + NBD.
# The server's peer (GC_BENCH_PEER, "qemu-nbd"; "" skips it): qemu-nbd, QEMU's
# own NBD server, serving the same byte range of the cache file (same driver
# options as the direct side) on a Unix socket, read by the same client in
# the same rounds: what another NBD server gets from this client.
# Client bound: QEMU's NBD client does all its work on one thread, so a
# request through NBD takes at least the client's CPU per request; the
# summary prints direct time per request / NBD client CPU per request, the
# highest ratio any server could reach with this client (a little under it:
# the client's CPU includes its start, which the times do not).
# Multi-connection rows (GC_BENCH_CONNS, "1 2 4"; "" skips them): nbdcopy
# (libnbd) with N connections and N threads, 8 requests of 1 MiB in flight
# each, reading the whole image warm (GC_BENCH_PASSES runs, wall time
# including nbdcopy's start): NBD reads the gold export (it advertises
# multi-conn), direct reads the image file the cache was hydrated from (the
# same bytes on the same filesystem: nbdcopy cannot read a byte range of a
# file), same client settings.
# Warm runs repeat the reads GC_BENCH_PASSES times (4: long enough to time
# at several GB/s), one qemu-img run each. Goal: nbd/direct >= 0.7x.
# Size: GC_BENCH_MB (default 1024). Request sizes: GC_BENCH_REQ ("1M 4K").
# Rounds: GC_BENCH_REPS (5), interleaved, every round printed; the summary
# takes the median time of each side per case (other work on a shared
# machine disturbs single rounds by 2-3x) and their ratio, then the CPU
# each side used per request (client; NBD adds goldagent's).
set -euo pipefail
: "${GC_BUILD:?run through make bench (GC_BUILD unset)}"
export PATH="$GC_BUILD/bin:$PATH"
mb=${GC_BENCH_MB:-1024}
reps=${GC_BENCH_REPS:-5}
qds=${GC_BENCH_QD:-1 8}
reqs=${GC_BENCH_REQ:-1M 4K}
passes=${GC_BENCH_PASSES:-4}
small=${GC_BENCH_SMALL:-8192}
conns=${GC_BENCH_CONNS-1 2 4}
peer=${GC_BENCH_PEER-qemu-nbd}
case $peer in
"" | qemu-nbd) ;;
*)
	echo "agent-nbd: GC_BENCH_PEER must be qemu-nbd or empty, not '$peer'" >&2
	exit 2
	;;
esac
for c in goldagent qemu-img jq numfmt ${conns:+nbdcopy} $peer; do
	command -v "$c" >/dev/null || {
		echo "agent-nbd: missing $c (run make deps)" >&2
		exit 1
	}
done
for req in $reqs; do
	reqb=$(numfmt --from=iec "$req")
	if [ "$reqb" -lt 512 ] || [ $((reqb % 512)) -ne 0 ] || [ $(((mb << 20) % reqb)) -ne 0 ]; then
		echo "agent-nbd: request size $req (GC_BENCH_REQ) must be a multiple of 512 dividing GC_BENCH_MB ($mb MiB)" >&2
		exit 2
	fi
done
d=$(mktemp -d "${TMPDIR:-/tmp}/gc-bench-agent.XXXXXX")
d=$(cd "$d" && pwd) # qemu-nbd wants an absolute socket path
pid='' qpid=''
cleanup() {
	local p
	for p in $pid $qpid; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$d"
}
trap cleanup EXIT

head -c $((mb << 20)) /dev/urandom >"$d/img"
goldagent cache init --image bench --version 1 --chunk-size 1M --size $((mb << 20)) \
	--volume-size 64M "$d/c" >/dev/null
goldagent hydrate --cache "$d/c" --source-file "$d/img" >/dev/null
[ -n "$conns" ] || rm -f "$d/img" # nbdcopy's direct side reads it
slot=$(goldagent status --json --cache "$d/c" | jq -r .layout.slot_a)
goldagent serve --cache "$d/c" --gold-socket "$d/g.sock" 2>"$d/serve.log" &
pid=$!
for _ in $(seq 100); do [ -S "$d/g.sock" ] && break; sleep 0.1; done
[ -S "$d/g.sock" ] || {
	cat "$d/serve.log" >&2
	exit 1
}
range="driver=raw,offset=$slot,size=$((mb << 20)),file.driver=file,file.filename=$d/c"
if [ -n "$peer" ]; then
	qemu-nbd --read-only --persistent --shared=4 --export-name=gold --socket="$d/q.sock" \
		--image-opts "$range" 2>"$d/qemu-nbd.log" &
	qpid=$!
	for _ in $(seq 100); do [ -S "$d/q.sock" ] && break; sleep 0.1; done
	[ -S "$d/q.sock" ] || {
		cat "$d/qemu-nbd.log" >&2
		exit 1
	}
fi

hz=$(getconf CLK_TCK)
# cpu PID: user + system seconds it used so far
cpu() { awk -v hz="$hz" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
# wakes PID: how often it slept and was woken so far (voluntary context switches)
wakes() { awk '/^voluntary_ctxt_switches/ { print $2 }' "/proc/$1/status"; }
TIMEFORMAT='cpu %U %S'
# qbench PASSES QD TARGET...: "SECONDS CPU": the time qemu-img reports (the
# requests only, not its start) for PASSES runs of the case's reads, and
# the CPU seconds qemu-img used. Case: $req $count $step.
qbench() {
	local passes=$1 qd=$2
	shift 2
	for _ in $(seq "$passes"); do
		{ time qemu-img bench -c "$count" -d "$qd" -s "$req" -S "$step" "$@"; } 2>&1
	done | awk '/^Run completed in/ { t += $4 } /^cpu / { c += $2 + $3 } END { print t, c }'
}
direct() { qbench "$1" "$2" --image-opts "$range"; }
nbd() { qbench "$1" "$2" -f raw "nbd+unix:///gold?socket=$d/g.sock"; }
# qnbd PASSES QD: the same through qemu-nbd ("0 0" without the peer)
qnbd() {
	if [ -n "$peer" ]; then qbench "$1" "$2" -f raw "nbd+unix:///gold?socket=$d/q.sock"; else echo 0 0; fi
}
# drop: the cache file's pages out of the page cache (this file only)
drop() { dd if="$d/c" iflag=nocache count=0 2>/dev/null; }

printf 'agent-nbd: %d MiB of gold from a complete cache, qemu-img bench, %d rounds\n' "$mb" "$reps"
printf '  %-18s %14s %14s %7s %14s %7s\n' "case" "direct MiB/s" "NBD MiB/s" "ratio" "qemu-nbd MiB/s" "ratio"
: >"$d/times"
for r in $(seq "$reps"); do
	for req in $reqs; do
		reqb=$(numfmt --from=iec "$req")
		if [ "$reqb" -ge $((1 << 20)) ]; then
			count=$(((mb << 20) / reqb)) step=$reqb
		else
			count=$small step=$(((1 << 20) + reqb))
		fi
		bytes=$((count * reqb))
		for qd in $qds; do
			for temp in cold warm; do
				if [ "$temp" = cold ]; then
					n=1
					drop
					read -r td cd_ < <(direct 1 "$qd")
					drop
					s0=$(cpu "$pid") w0=$(wakes "$pid")
					read -r tn cn < <(nbd 1 "$qd")
					drop
					read -r tq _ < <(qnbd 1 "$qd")
				else
					n=$passes
					direct 1 "$qd" >/dev/null
					read -r td cd_ < <(direct "$n" "$qd")
					nbd 1 "$qd" >/dev/null
					s0=$(cpu "$pid") w0=$(wakes "$pid")
					read -r tn cn < <(nbd "$n" "$qd")
					qnbd 1 "$qd" >/dev/null
					read -r tq _ < <(qnbd "$n" "$qd")
				fi
				cs=$(awk -v a="$s0" -v b="$(cpu "$pid")" 'BEGIN { print b - a }')
				ws=$(($(wakes "$pid") - w0))
				k="$req qd$qd $temp"
				awk -v k="r$r $k" -v b="$bytes" -v n="$n" -v td="$td" -v tn="$tn" -v tq="$tq" 'BEGIN {
					m = b * n / 1048576
					printf "  %-18s %14d %14d %6.2fx", k, m / td, m / tn, td / tn
					if (tq > 0)
						printf " %14d %6.2fx", m / tq, td / tq
					printf "\n" }'
				echo "$req-qd$qd-$temp $td $tn $n $cd_ $cn $cs $bytes $count $ws $tq" >>"$d/times"
			done
		done
	done
done
# ncopy PASSES CONNS SOURCE: wall seconds of PASSES nbdcopy runs
ncopy() {
	local t0 t1
	t0=$(date +%s.%N)
	for _ in $(seq "$1"); do
		nbdcopy --no-extents --connections="$2" --threads="$2" --requests=8 \
			--request-size=1048576 "$3" null:
	done
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
for r in $(seq "$reps"); do
	for n in $conns; do
		ncopy 1 "$n" "$d/img" >/dev/null
		td=$(ncopy "$passes" "$n" "$d/img")
		ncopy 1 "$n" "nbd+unix:///gold?socket=$d/g.sock" >/dev/null
		s0=$(cpu "$pid")
		tn=$(ncopy "$passes" "$n" "nbd+unix:///gold?socket=$d/g.sock")
		cs=$(awk -v a="$s0" -v b="$(cpu "$pid")" 'BEGIN { print b - a }')
		awk -v k="r$r nbdcopy x$n" -v m="$((mb * passes))" -v td="$td" -v tn="$tn" 'BEGIN {
			printf "  %-18s %14d %14d %6.2fx\n", k, m / td, m / tn, td / tn }'
		echo "nbdcopy-x$n $td $tn $passes 0 0 $cs $((mb << 20)) $((mb * passes))" >>"$d/times"
	done
done
echo "  median of $reps rounds (direct, goldagent, ratio${peer:+, $peer, ratio}); client bound: direct time per request / NBD client CPU per request;"
echo "  CPU microseconds per request, all rounds: direct (qemu-img) vs NBD (qemu-img + goldagent); goldagent's wake-ups per request:"
# the summaries' awk: med(a, n), the median of a[0..n-1]; n starts at 0 (a
# subscript of an unset n is "", not 0)
med_awk='BEGIN { n = 0 }
function med(a, n,   i, j, t) {
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2
}'
for req in $reqs; do
	for qd in $qds; do
		for temp in cold warm; do
			awk -v k="$req-qd$qd-$temp" "$med_awk"'
				$1 == k { d[n] = $2 + 0; b[n] = $3 + 0; e[n] = $11 + 0; n++; p = $4; m = $8 * $4 / 1048576
					  c = $9; q += $4 * $9; cd += $5; cn += $6; cs += $7; w += $10 }
				END { md = med(d, n); mn = med(b, n); me = med(e, n)
				      printf "  %-18s %14d %14d %6.2fx (goal >= 0.7x)", k, m / md, m / mn, md / mn
				      if (me > 0)
					      printf "   qemu-nbd %d MiB/s %.2fx", m / me, md / me
				      printf "   client bound %.2fx   cpu us/req %.1f vs %.1f + %.1f   wakes/req %.2f\n",
					md / (p * c) * q / cn, cd * 1e6 / q, cn * 1e6 / q, cs * 1e6 / q, w / q }' \
				"$d/times"
		done
	done
done
for n in $conns; do
	awk -v k="nbdcopy-x$n" "$med_awk"'
		$1 == k { d[n] = $2 + 0; b[n] = $3 + 0; n++; m = $8 * $4 / 1048576; q += $9; cs += $7 }
		END { md = med(d, n); mn = med(b, n)
		      printf "  %-18s %14d %14d %6.2fx (1 MiB reads, warm)   goldagent cpu us/req %.1f\n",
			k, m / md, m / mn, md / mn, cs * 1e6 / q }' "$d/times"
done
