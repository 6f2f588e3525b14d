# Shell helpers for goldagent-against-goldcached tests: a goldcached with its
# tgtd on loopback ports, cache machines (pc1, pc2, pc3) with machine volumes.
# tests/lib-bench.sh builds on it, so bench/*.sh run the same lab.
# shellcheck shell=bash
# shellcheck disable=SC2034 # URL, PREFIX, ADMIN are for the test that sources this

# attach_lab DIR GOLD_IMAGE: writes DIR/goldcache.yaml, imports GOLD_IMAGE as
# image deb; sets URL, PREFIX, ADMIN, HTTP_PORT, ISCSI_PORT. Set before the
# call to change the defaults:
#   ATTACH_MACHINES   machine names, MACs 52:54:00:30:00:01.. in order
#                     ("pc1 pc2 pc3")
#   ATTACH_VOLUME     the profile's volume_size (64M)
#   ATTACH_RETENTION  the profile's retention (3; empty: none, the default)
#   ATTACH_PREFIX     the IQN prefix (iqn.2026-11.org.example.attach)
attach_lab() {
	local d=$1 m i=0 machines="" retention=${ATTACH_RETENTION-3}
	ATTACH_MACHINES=${ATTACH_MACHINES:-pc1 pc2 pc3}
	HTTP_PORT=$(free_port)
	ISCSI_PORT=$(free_port)
	URL=http://127.0.0.1:$HTTP_PORT
	PREFIX=${ATTACH_PREFIX:-iqn.2026-11.org.example.attach}
	ADMIN=$d/state/admin.token
	for m in $ATTACH_MACHINES; do
		i=$((i + 1))
		machines+=$(printf '\n  - {mac: 52:54:00:30:00:%02x, name: %s, profile: desk}' "$i" "$m")
	done
	mkdir -p "$d/tftp" "$d/store" "$d/state"
	head -c 1000 /dev/urandom >"$d/vmlinuz"
	head -c 1000 /dev/urandom >"$d/initrd"
	cat >"$d/goldcache.yaml" <<-YAML
		appliance:
		  interface: lo
		  listen: 127.0.0.1
		  http_port: $HTTP_PORT
		  dhcp: {mode: off}
		  tftp_root: $d/tftp
		  iscsi: {portal: 127.0.0.1:$ISCSI_PORT, iqn_prefix: $PREFIX}
		  store_dir: $d/store
		  state_dir: $d/state
		images:
		  - {name: deb, version: current, kernel: $d/vmlinuz, initrd: $d/initrd}
		profiles:
		  - {name: desk, image: deb, mode: cache, volume_size: ${ATTACH_VOLUME:-64M}${retention:+, retention: $retention}}
		machines:$machines
	YAML
	goldctl --store "$d/store" -q image import deb "$2" >/dev/null
}
GC_PID=
# attach_gc_start DIR: starts goldcached, waits for the API, the first
# machine's upload LUN and every machine's gold LUN (a login while LUN 1 is
# being added can hang until the agent's time-out).
attach_gc_start() {
	local d=$1
	goldcached -c "$d/goldcache.yaml" --log "$d/goldcached.log" &
	GC_PID=$!
	track "$GC_PID"
	wait_for 20 curl -sf "$URL/api/v1/health" || return 1
	for _ in $(seq 200); do
		attach_luns_ready "$d" && return 0
		sleep 0.1
	done
	return 1
}
# attach_luns_ready DIR: 0 once the first machine has LUN 2 and every one LUN 1
attach_luns_ready() {
	local m first=1
	for m in ${ATTACH_MACHINES:-pc1 pc2 pc3}; do
		if [ -n "$first" ]; then
			[ -n "$(attach_lun_path "$1" "$m" 2)" ] || return 1
			first=
		fi
		[ -n "$(attach_lun_path "$1" "$m" 1)" ] || return 1
	done
}
# attach_token DIR MACHINE: writes MACHINE's API token to DIR/MACHINE.token
attach_token() {
	goldctl machine token "$2" --url "$URL" --token-file "$ADMIN" >"$1/$2.token"
}
attach_gc_stop() {
	[ -n "$GC_PID" ] || return 0
	kill -TERM "$GC_PID" 2>/dev/null
	wait "$GC_PID" 2>/dev/null
	GC_PID=
}
# attach_lun_path DIR MACHINE LUN: the backing file of that LUN
attach_lun_path() {
	TGT_IPC_SOCKET="$1/state/run/tgtd.sock" tgtadm -C 0 --lld iscsi --op show --mode target 2>/dev/null |
		awk -v iqn="$PREFIX:m.$2" -v want="$3" '
		/^Target [0-9]+: / {t = ($3 == iqn)}
		t && /^ +LUN: / {lun = $2}
		t && lun == want && /Backing store path:/ {print $4}'
}
