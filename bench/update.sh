#!/usr/bin/env bash
# Gold update: bytes fetched to go from version 1 to version 2 of a gold image,
# goldagent against rsync and casync on the same two files, in one run, all in a
# private network namespace on loopback (nftables counts each server's bytes).
#
#   v1  the Debian minbase image (image-build/debian-rootfs.sh, built when missing;
#       BENCH_UPDATE_IMAGE=tiny takes the tiny image, or give a path to an ext4 image)
#   v2  v1 after "installing software": inside `unshare -m` the image is loop-mounted
#       read-write, the packages BENCH_UPDATE_PKGS (default: nano less psmisc, real
#       Debian .debs) are unpacked into it and recorded in /var/lib/dpkg/status, and
#       /etc/issue is edited; unmounted (ext4's journal, bitmaps and inode tables
#       change as they do in a real update)
#
#   goldagent  the real goldcached + tgtd: `goldagent hydrate --appliance` fills
#              slot A with v1 (not counted), v2 is imported with --promote, and the
#              same command fills slot B: chunks whose hash is in slot A are copied
#              locally, the changed ones come as zstd deltas against slot A's chunk
#              over HTTP (docs/update.md), what no delta gave over iSCSI. Counted:
#              the delta bytes and chunk bytes the agent reports, and every byte
#              goldcached's HTTP (manifest, deltas) and tgtd sent ("wire").
#              Once per chunk size in BENCH_UPDATE_CHUNKS (default "1M 64K";
#              every version of an image must have the same chunk size).
#              BENCH_UPDATE_NODELTA=1 adds a run with --no-delta per chunk size
#              (every changed chunk over iSCSI, as before deltas).
#   rsync      rsync daemon serving v2; the client holds v1 under the same name
#              (delta transfer). Counted: rsync's --stats and the daemon's bytes.
#   casync     `casync make` of v2 into a store served over HTTP (busybox httpd);
#              `casync extract --seed=v1` of v2's index from that server. Counted:
#              what the server sent (chunks are compressed) and casync's own
#              count of chunk bytes fetched from the remote store (uncompressed).
# Every result is compared with v2 (cmp). "changed" is what cmp sees: bytes,
# 4 KiB blocks, and each chunk size's chunks that are not in v1.
set -euo pipefail
: "${GC_BUILD:?run through make bench (GC_BUILD=build bash bench/update.sh)}"
PATH="$GC_BUILD/bin:$PATH"
SRC=$(cd "$(dirname "$0")/.." && pwd)
for c in goldcached goldctl goldagent tgtd tgtadm rsync casync busybox nft ip unshare cmp jq curl; do
	command -v "$c" >/dev/null || { echo "bench/update.sh: '$c' not found (make && make deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/update.sh: needs root (netns, loop mount)" >&2; exit 1; }
image=${BENCH_UPDATE_IMAGE:-debian}
pkgs=${BENCH_UPDATE_PKGS:-nano less psmisc}
chunks=${BENCH_UPDATE_CHUNKS:-1M 64K}
runs=""
for cs in $chunks; do
	runs+=" $cs"
	[ "${BENCH_UPDATE_NODELTA:-0}" = 1 ] && runs+=" $cs/nodelta"
done

D=$(mktemp -d "${BENCH_DIR:-/var/tmp}/gc-update-bench.XXXXXX")
NS=gcupd-$$
PIDS=()
cleanup() {
	local p
	set +e
	# only servers still running (never waited for): a reaped PID can be reused
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	ip netns del "$NS" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
say() { echo "# $*" >&2; }
# a function would run in a subshell under `&`: servers are started with
# `ip netns exec` itself (it execs, so $! is the server's PID)
nsx() { ip netns exec "$NS" "$@"; }

# --- the two versions
case "$image" in
debian) v1src=$(bash "$SRC/image-build/debian-rootfs.sh") ;;
tiny) v1src=$(bash "$SRC/image-build/tiny-rootfs.sh") ;;
*) v1src=$image ;;
esac
[ -s "$v1src" ] || { echo "bench/update.sh: no image '$v1src'" >&2; exit 1; }
cp --sparse=always "$v1src" "$D/v1.img"
cp --sparse=always "$v1src" "$D/v2.img"
# the packages, as apt would download them (image-build's .deb cache)
debs=()
for p in $pkgs; do
	debs+=("$(bash -c '. "$1/image-build/common.sh"; ib_deb "$2"' _ "$SRC" "$p")")
done
mkdir -p "$D/mnt"
unshare -m --propagation private bash -euc '
	d=$1 mnt=$1/mnt
	shift
	mount -o loop "$d/v2.img" "$mnt"
	for deb in "$@"; do
		dpkg -x "$deb" "$mnt"
		dpkg-deb -f "$deb" >>"$mnt/var/lib/dpkg/status"
		echo "Status: install ok installed" >>"$mnt/var/lib/dpkg/status"
		echo >>"$mnt/var/lib/dpkg/status"
	done
	[ -e "$mnt/etc/issue" ] && echo "updated by bench/update.sh" >>"$mnt/etc/issue"
	umount "$mnt"' _ "$D" "${debs[@]}"
size=$(stat -c %s "$D/v1.img")
cmp -l "$D/v1.img" "$D/v2.img" >"$D/cmp" || true
changed_bytes=$(wc -l <"$D/cmp")
changed_4k=$(awk '{ print int(($1 - 1) / 4096) }' "$D/cmp" | uniq | sort -u | wc -l)
rm -f "$D/cmp"
printf 'image: %s, %d MiB; v2 = v1 + %s unpacked in a loop mount\n' \
	"$(basename "$v1src")" $((size >> 20)) "$pkgs"
printf 'changed: %d bytes in %d 4 KiB blocks (%d KiB)\n' "$changed_bytes" "$changed_4k" $((changed_4k * 4))

# --- the network namespace and its byte counters (server -> client, client -> server)
ip netns add "$NS"
nsx ip link set lo up
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		nsx ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
}
RSYNC_PORT=$(free_port)
CAS_PORT=$(free_port)
nsx nft -f - <<-NFT
	table inet gcb {
		counter iscsi_down {}
		counter api_down {}
		counter rsync_down {}
		counter rsync_up {}
		counter cas_down {}
		counter cas_up {}
		chain out {
			type filter hook output priority 0;
			tcp sport $RSYNC_PORT counter name rsync_down
			tcp dport $RSYNC_PORT counter name rsync_up
			tcp sport $CAS_PORT counter name cas_down
			tcp dport $CAS_PORT counter name cas_up
		}
	}
NFT
ctr() { nsx nft list counter inet gcb "$1" | sed -n 's/.* bytes \([0-9]*\).*/\1/p'; }
ctr_reset() { local c; for c in "$@"; do nsx nft reset counter inet gcb "$c" >/dev/null; done; }

# --- goldagent through goldcached + tgtd, once per chunk size (fresh ports each time)
PREFIX=iqn.2026-11.org.goldcache.updatebench
declare -A ga_bytes ga_wire ga_chunks ga_differ ga_dn ga_dbytes ga_iscsi ga_api ga_ms
for run in $runs; do
	cs=${run%/*}
	flags=()
	[ "$run" != "$cs" ] && flags=(--no-delta)
	G=$D/ga-${run/\//-}
	HTTP_PORT=$(free_port)
	ISCSI_PORT=$(free_port)
	URL=http://127.0.0.1:$HTTP_PORT
	nsx nft add rule inet gcb out tcp sport "$ISCSI_PORT" counter name iscsi_down
	nsx nft add rule inet gcb out tcp sport "$HTTP_PORT" counter name api_down
	mkdir -p "$G/tftp" "$G/store" "$G/state" "$G/a"
	head -c 4096 /dev/urandom >"$G/k"
	cat >"$G/gc.yaml" <<-YAML
		appliance:
		  interface: lo
		  listen: 127.0.0.1
		  http_port: $HTTP_PORT
		  dhcp: {mode: off}
		  tftp_root: $G/tftp
		  iscsi: {portal: 127.0.0.1:$ISCSI_PORT, iqn_prefix: $PREFIX}
		  store_dir: $G/store
		  state_dir: $G/state
		images:
		  - {name: gold, version: current, kernel: $G/k, initrd: $G/k}
		profiles:
		  - {name: desk, image: gold, mode: cache, volume_size: 64M, retention: 3}
		machines:
		  - {mac: 52:54:00:31:00:01, name: pc1, profile: desk}
	YAML
	goldctl --store "$G/store" -q image import --chunk-size "$cs" gold "$D/v1.img" >/dev/null
	ip netns exec "$NS" goldcached -c "$G/gc.yaml" --log "$G/gc.log" &
	gc_pid=$!
	PIDS+=("$gc_pid")
	lun1() {
		TGT_IPC_SOCKET="$G/state/run/tgtd.sock" tgtadm -C 0 --lld iscsi --op show --mode target 2>/dev/null |
			awk -v iqn="$PREFIX:m.pc1" '/^Target [0-9]+: / {t = ($3 == iqn)}
				t && /^ +LUN: / {lun = $2} t && lun == 1 && /Backing store path:/ {print $4}'
	}
	for _ in $(seq 300); do [[ "$(lun1)" == */gold@1.img ]] && break; sleep 0.1; done
	[[ "$(lun1)" == */gold@1.img ]] || { tail "$G/gc.log" >&2; echo "bench/update.sh: goldcached did not serve gold@1" >&2; exit 1; }
	nsx goldctl machine token pc1 --url "$URL" --token-file "$G/state/admin.token" >"$G/a/pc1.token"
	hyd() {
		nsx goldagent hydrate --cache "$G/cache.img" --appliance "$URL" --machine pc1 \
			--token-file "$G/a/pc1.token" --state-dir "$G/a" "$@" 2>>"$G/agent.log"
	}
	hyd >"$G/h1" || { cat "$G/h1" "$G/agent.log" >&2; exit 1; }
	# no --chunk-size: a new version keeps the current one's
	goldctl --store "$G/store" -q image import --promote gold "$D/v2.img" >/dev/null
	for _ in $(seq 300); do [[ "$(lun1)" == */gold@2.img ]] && break; sleep 0.1; done
	[[ "$(lun1)" == */gold@2.img ]] || { echo "bench/update.sh: goldcached did not serve gold@2" >&2; exit 1; }
	ctr_reset iscsi_down api_down
	t0=$(date +%s%N)
	hyd "${flags[@]}" >"$G/h2" || { cat "$G/h2" "$G/agent.log" >&2; exit 1; }
	ga_ms[$run]=$((($(date +%s%N) - t0) / 1000000))
	say "goldagent ($run chunks): $(cat "$G/h2")"
	ga_iscsi[$run]=$(sed -n 's/^slot B: [0-9]* chunks fetched (\([0-9]*\) bytes).*/\1/p' "$G/h2")
	ga_chunks[$run]=$(sed -n 's/^slot B: \([0-9]*\) chunks fetched.*/\1/p' "$G/h2")
	[ -n "${ga_iscsi[$run]}" ] || { echo "bench/update.sh: no 'slot B' line from goldagent" >&2; exit 1; }
	ga_dn[$run]=$(sed -n 's/^slot B: \([0-9]*\) chunks as deltas.*/\1/p' "$G/h2")
	ga_dbytes[$run]=$(sed -n 's/^slot B: [0-9]* chunks as deltas (\([0-9]*\) bytes on the wire.*/\1/p' "$G/h2")
	ga_dn[$run]=${ga_dn[$run]:-0}
	ga_dbytes[$run]=${ga_dbytes[$run]:-0}
	ga_bytes[$run]=$((ga_iscsi[$run] + ga_dbytes[$run]))
	ga_api[$run]=$(ctr api_down)
	ga_wire[$run]=$(($(ctr iscsi_down) + ga_api[$run]))
	goldctl --store "$G/store" image manifest gold@1 >"$G/m1"
	goldctl --store "$G/store" image manifest gold@2 >"$G/m2"
	ga_differ[$run]=$(awk 'FNR == 1 { f++ } /^[0-9a-f]+$/ && length($0) == 64 {
		if (f == 1) seen[$0] = 1; else if (!seen[$0]) n++ } END { print n + 0 }' "$G/m1" "$G/m2")
	goldagent cache check --slot B --manifest "$G/m2" "$G/cache.img" >/dev/null ||
		{ echo "bench/update.sh: slot B does not check against v2 ($run)" >&2; exit 1; }
	kill -TERM "$gc_pid"
	wait "$gc_pid" 2>/dev/null || true
	PIDS=("${PIDS[@]:0:${#PIDS[@]}-1}") # waited for: its PID may be reused
	rm -rf "$G/cache.img" "$G/store" "$G/state/exports"
done

# --- rsync: daemon with v2, the client has v1 under the same name
mkdir -p "$D/rsrc" "$D/rdst"
ln "$D/v2.img" "$D/rsrc/gold.img"
cp --sparse=always "$D/v1.img" "$D/rdst/gold.img"
cat >"$D/rsyncd.conf" <<-CONF
	use chroot = no
	uid = root
	gid = root
	pid file = $D/rsyncd.pid
	[gold]
	path = $D/rsrc
	read only = yes
CONF
ip netns exec "$NS" rsync --daemon --no-detach --config="$D/rsyncd.conf" --address=127.0.0.1 --port="$RSYNC_PORT" \
	--log-file="$D/rsyncd.log" &
PIDS+=($!)
for _ in $(seq 100); do nsx ss -Htln "sport = :$RSYNC_PORT" | grep -q . && break; sleep 0.1; done
ctr_reset rsync_down rsync_up
nsx rsync --stats "rsync://127.0.0.1:$RSYNC_PORT/gold/gold.img" "$D/rdst/gold.img" >"$D/rsync.out"
cmp "$D/rdst/gold.img" "$D/v2.img" || { echo "bench/update.sh: rsync's result differs from v2" >&2; exit 1; }
rs_recv=$(sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' "$D/rsync.out" | tr -d ,)
rs_sent=$(sed -n 's/^Total bytes sent: \([0-9,]*\).*/\1/p' "$D/rsync.out" | tr -d ,)
rs_down=$(ctr rsync_down) rs_up=$(ctr rsync_up)
say "rsync: $(grep -E '^(Matched|Literal) data' "$D/rsync.out" | paste -sd, -)"
rm -rf "$D/rdst"

# --- casync: v2's store and index over HTTP, v1 as the seed
mkdir -p "$D/www"
casync make --store="$D/www/gold.castr" "$D/www/v2.caibx" "$D/v2.img" >/dev/null
ip netns exec "$NS" busybox httpd -f -p "127.0.0.1:$CAS_PORT" -h "$D/www" &
PIDS+=($!)
for _ in $(seq 100); do nsx ss -Htln "sport = :$CAS_PORT" | grep -q . && break; sleep 0.1; done
ctr_reset cas_down cas_up
nsx casync -v extract --store="http://127.0.0.1:$CAS_PORT/gold.castr" --seed="$D/v1.img" \
	--seed-output=no "http://127.0.0.1:$CAS_PORT/v2.caibx" "$D/cas-out.img" 2>"$D/casync.out"
cmp "$D/cas-out.img" "$D/v2.img" || { echo "bench/update.sh: casync's result differs from v2" >&2; exit 1; }
cas_down=$(ctr cas_down) cas_up=$(ctr cas_up)
cas_req=$(sed -n 's/^Chunk requests fulfilled from remote store: \([0-9]*\).*/\1/p' "$D/casync.out")
cas_raw=$(sed -n 's/^Bytes used from remote store: \([^ ]*\).*/\1/p' "$D/casync.out")
say "casync: $(grep -E 'remote store|local seed' "$D/casync.out" | paste -sd, -)"

# --- the table
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
base=$((changed_4k * 4096))
echo
printf '%-44s %14s %10s %12s %10s\n' "" "fetched" "MiB" "wire MiB" "/changed"
for run in $runs; do
	printf '%-44s %14d %10s %12s %10s\n' "goldagent, $run chunks (${ga_differ[$run]} new)" \
		"${ga_bytes[$run]}" "$(mib "${ga_bytes[$run]}")" "$(mib "${ga_wire[$run]}")" "$(ratio "${ga_bytes[$run]}" "$base")"
	printf '%-44s %14d %10s\n' "   ${ga_dn[$run]} as deltas over HTTP" "${ga_dbytes[$run]}" "$(mib "${ga_dbytes[$run]}")"
	printf '%-44s %14d %10s %12s\n' "   ${ga_chunks[$run]} chunks over iSCSI" "${ga_iscsi[$run]}" "$(mib "${ga_iscsi[$run]}")" \
		"$(mib "$((ga_wire[$run] - ga_api[$run]))")"
	printf '%-44s %14s %10s %12s\n' "   HTTP (manifest, deltas; took ${ga_ms[$run]} ms)" "" "" "$(mib "${ga_api[$run]}")"
done
printf '%-44s %14d %10s %12s %10s\n' "rsync (received)" "$rs_recv" "$(mib "$rs_recv")" "$(mib "$rs_down")" \
	"$(ratio "$rs_recv" "$base")"
printf '%-44s %14d %10s %12s %10s\n' "casync ($cas_req chunks, $cas_raw raw)" "$cas_down" "$(mib "$cas_down")" \
	"$(mib "$cas_down")" "$(ratio "$cas_down" "$base")"
echo "(changed = $changed_4k differing 4 KiB blocks = $base bytes; wire = IP bytes the server sent)"
echo "(upstream: rsync sent $rs_sent bytes of block checksums (wire $(mib "$rs_up") MiB), casync's requests $(mib "$cas_up") MiB)"
for run in $runs; do
	printf 'goldagent %s / rsync: %sx (wire %sx)   / casync: %sx (wire %sx)\n' "$run" \
		"$(ratio "${ga_bytes[$run]}" "$rs_recv")" "$(ratio "${ga_wire[$run]}" "$rs_down")" \
		"$(ratio "${ga_bytes[$run]}" "$cas_down")" "$(ratio "${ga_wire[$run]}" "$cas_down")"
done
