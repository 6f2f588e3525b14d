# Shell helpers for goldagent-against-goldcached tests: a goldcached with its
# tgtd on loopback ports, one cache machine (pc1) with a machine volume.
# shellcheck shell=bash
# shellcheck disable=SC2034 # URL, PREFIX, ADMIN are for the test that sources this

# attach_lab DIR GOLD_IMAGE: writes DIR/goldcache.yaml, imports GOLD_IMAGE as
# image deb; sets URL, PREFIX, ADMIN.
attach_lab() {
	local d=$1
	HTTP_PORT=$(free_port)
	ISCSI_PORT=$(free_port)
	URL=http://127.0.0.1:$HTTP_PORT
	PREFIX=iqn.2026-11.org.example.attach
	ADMIN=$d/state/admin.token
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
		  - {name: desk, image: deb, mode: cache, volume_size: 64M, retention: 3}
		machines:
		  - {mac: 52:54:00:30:00:01, name: pc1, profile: desk}
		  - {mac: 52:54:00:30:00:02, name: pc2, profile: desk}
		  - {mac: 52:54:00:30:00:03, name: pc3, profile: desk}
	YAML
	goldctl --store "$d/store" image import deb "$2" >/dev/null
}
GC_PID=
# attach_gc_start DIR: starts goldcached, waits for the API, pc1's upload LUN
# and every machine's gold LUN (a login while LUN 1 is being added can hang
# until the agent's time-out).
attach_gc_start() {
	local d=$1
	goldcached -c "$d/goldcache.yaml" --log "$d/goldcached.log" &
	GC_PID=$!
	track "$GC_PID"
	wait_for 20 curl -sf "$URL/api/v1/health" || return 1
	for _ in $(seq 200); do
		[ -n "$(attach_lun_path "$d" pc1 2)" ] && [ -n "$(attach_lun_path "$d" pc1 1)" ] &&
			[ -n "$(attach_lun_path "$d" pc2 1)" ] && [ -n "$(attach_lun_path "$d" pc3 1)" ] &&
			return 0
		sleep 0.1
	done
	return 1
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
