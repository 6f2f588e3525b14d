#!/usr/bin/env bash
# goldcached's HTTP side end to end on loopback, with the real daemon, curl and
# goldctl: boot scripts for each mode and for an unknown MAC (policy), kernel
# bytes, the registry (first sight, assignment effective at the next boot with
# no restart, surviving a restart), agent token + state report + manifest
# download, goldctl machine list/show/assign/unassign/token and its errors,
# SIGHUP applying a new unknown-machine policy, and the access log.
. "$GC_SRC/tests/lib.sh"
need goldcached goldctl curl jq sqlite3 tgtd tgtadm ss

D=$T_DIR
HTTP_PORT=$(free_port)
ISCSI_PORT=$(free_port)
URL=http://127.0.0.1:$HTTP_PORT
mkdir -p "$D/tftp" "$D/store" "$D/state" "$D/secrets"
head -c 100000 /dev/urandom >"$D/vmlinuz"
head -c 50000 /dev/urandom >"$D/initrd"
head -c 1048576 /dev/urandom >"$D/gold.img"
printf 'pc2-chap-secret-0123\n' >"$D/secrets/pc2"
chmod 600 "$D/secrets/pc2"

config() { # $1: the unknown_machines policy
	cat >"$D/goldcache.yaml" <<-YAML
		appliance:
		  interface: lo
		  listen: 127.0.0.1
		  http_port: $HTTP_PORT
		  dhcp: {mode: off}
		  tftp_root: $D/tftp
		  iscsi: {portal: 127.0.0.1:$ISCSI_PORT, iqn_prefix: iqn.2026-11.org.example.httptest}
		  store_dir: $D/store
		  state_dir: $D/state
		images:
		  - {name: deb, version: current, kernel: $D/vmlinuz, initrd: $D/initrd, cmdline: "console=ttyS0 quiet"}
		  - {name: win, version: current}
		profiles:
		  - {name: desk, image: deb, mode: cache}
		  - {name: hpc, image: deb, mode: stream}
		  - {name: exam, image: win, mode: sanboot}
		machines:
		  - {mac: 52:54:00:10:00:01, name: pc1, profile: desk}
		  - {mac: 52:54:00:10:00:02, name: pc2, profile: exam, chap_secret_file: $D/secrets/pc2}
		groups:
		  - {match: "52:54:00:aa:*", profile: hpc}
		unknown_machines: $1
	YAML
}
config "{policy: refuse}"
t_run "import image deb" goldctl --store "$D/store" image import deb "$D/gold.img"
t_run "import image win" goldctl --store "$D/store" image import win "$D/gold.img"

GC_PID=
start() {
	goldcached -c "$D/goldcache.yaml" --log "$D/goldcached.log" &
	GC_PID=$!
	track "$GC_PID"
	wait_for 20 curl -sf "$URL/api/v1/health"
}
stop() {
	kill -TERM "$GC_PID" 2>/dev/null
	local i
	for i in $(seq 100); do
		kill -0 "$GC_PID" 2>/dev/null || break
		sleep 0.1
	done
	wait "$GC_PID" 2>/dev/null
}
# stop_ok DESC: stop, and the daemon must exit 0 (under ASan: no leak reports)
stop_ok() {
	stop
	ok $? "$1"
}
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 30 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
start
ok $? "goldcached serves /api/v1/health" || bail "goldcached did not start"
TOKEN_FILE=$D/state/admin.token
ok "$([ -f "$TOKEN_FILE" ] && stat -c %a "$TOKEN_FILE" | grep -qx 600; echo $?)" \
	"admin token generated, mode 0600"

s=$(curl -sf "$URL/boot.ipxe?mac=52-54-00-10-00-01")
like "$s" '^#!ipxe' "pc1: script starts with #!ipxe"
like "$s" "kernel $URL/boot/images/deb/kernel .*goldcache.url=$URL goldcache.machine=pc1 goldcache.mode=cache goldcache.image=deb goldcache.version=1 console=ttyS0 quiet" \
	"pc1: cache mode kernel line"
like "$s" "initrd --name initrd.img $URL/boot/images/deb/initrd" "pc1: initrd line"
s2=$(curl -sf "$URL/boot.ipxe?mac=52:54:00:10:00:01")
is "$s2" "$s" "colon form gives the same script"
ct=$(curl -s -o /dev/null -w '%{content_type}' "$URL/boot.ipxe?mac=52-54-00-10-00-01")
like "$ct" '^text/plain' "text/plain"

s=$(curl -sf "$URL/boot.ipxe?mac=52-54-00-10-00-02")
like "$s" "set initiator-iqn iqn.2026-11.org.example.httptest:i.pc2" "pc2: initiator name"
like "$s" "set password pc2-chap-secret-0123" "pc2: CHAP secret from its file"
like "$s" "sanboot iscsi:127.0.0.1::$ISCSI_PORT:1:iqn.2026-11.org.example.httptest:m.pc2" \
	"pc2: sanboot URI"
s=$(curl -sf "$URL/boot.ipxe?mac=52-54-00-AA-00-09")
like "$s" "goldcache.mode=stream" "group member: stream"
s=$(curl -sf "$URL/boot.ipxe?mac=52-54-00-99-00-01")
like "$s" "is not known to this appliance" "unknown MAC: refused by policy"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/boot.ipxe?mac=zz")
is "$code" 400 "bad MAC: 400"

curl -sf -o "$D/k.out" "$URL/boot/images/deb/kernel"
t_run "kernel bytes served" cmp "$D/k.out" "$D/vmlinuz"

export GOLDCACHE_URL=$URL GOLDCACHE_TOKEN_FILE=$TOKEN_FILE
GC=(goldctl)
out=$(goldctl machine list --url "$URL" --token-file "$TOKEN_FILE")
like "$out" 'pc1 +52:54:00:10:00:01 +desk +cache +machine' "machine list shows pc1"
like "$out" '52-54-00-99-00-01 .* refused' "machine list shows the refused MAC"
t_run "assign pc1 to hpc" "${GC[@]}" machine assign pc1 hpc
s=$(curl -sf "$URL/boot.ipxe?mac=52-54-00-10-00-01")
like "$s" "goldcache.mode=stream" "assignment effective at the next boot, no restart"
is "$("${GC[@]}" --json machine show pc1 | jq -r .assigned_profile)" hpc "show --json"
t_fails "assign to an unknown profile fails" "${GC[@]}" machine assign pc1 nosuch
like "$T_OUT" "no profile 'nosuch'" "says which profile"
"${GC[@]}" machine show nosuch >/dev/null 2>&1
is $? 3 "unknown machine: exit 3"
t_fails "a wrong token is refused" goldctl machine list --token-file "$D/secrets/pc2"
like "$T_OUT" "invalid token" "says why"

AGENT=$("${GC[@]}" machine token pc1)
like "$AGENT" '^[0-9a-f]{64}$' "agent token issued"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $AGENT" \
	-d '{"hydrated_pct":37.5,"dirty_bytes":8192,"version":1}' "$URL/api/v1/machines/pc1/state")
is "$code" 200 "agent reports its state"
like "$("${GC[@]}" machine show pc1)" 'hydrated: +38%' "state visible to goldctl"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AGENT" \
	"$URL/api/v1/machines/pc2")
is "$code" 403 "an agent cannot read another machine"
curl -sf -H "Authorization: Bearer $AGENT" -o "$D/m.out" "$URL/api/v1/images/deb/current/manifest"
t_run "agent downloads the manifest (the store's file)" cmp "$D/m.out" "$D/store/images/deb/versions/1.manifest"

# restart: the registry keeps the assignment
stop_ok "clean shutdown"
start
ok $? "goldcached restarted"
s=$(curl -sf "$URL/boot.ipxe?mac=52-54-00-10-00-01")
like "$s" "goldcache.mode=stream" "assignment survives a restart"
t_run "unassign pc1" "${GC[@]}" machine unassign pc1
like "$(curl -sf "$URL/boot.ipxe?mac=52-54-00-10-00-01")" "goldcache.mode=cache" \
	"back to the config's profile"

# SIGHUP: a new unknown-machine policy applies without a restart
config "{policy: profile, profile: hpc}"
kill -HUP "$GC_PID"
wait_for 10 sh -c "curl -sf '$URL/boot.ipxe?mac=52-54-00-99-00-01' | grep -q goldcache.mode=stream"
ok $? "SIGHUP: unknown machines now boot the default profile"
kill -0 "$GC_PID"
ok $? "same process"

rows=$(sqlite3 -readonly "$D/state/registry.db" "select count(*) from machines")
ok "$([ "$rows" -ge 4 ]; echo $?)" "registry holds the machines seen ($rows)"
first=$(sqlite3 -readonly "$D/state/registry.db" "select first_seen < last_boot or first_seen = last_boot from machines where name = 'pc1'")
is "$first" 1 "first_seen <= last_boot"
log=$(cat "$D/state/access.log")
like "$log" ' 127\.0\.0\.1:[0-9]+ GET /boot\.ipxe\?mac=52-54-00-10-00-01 200 [0-9]+ [0-9.]+' \
	"access log line: peer, method, target, status, bytes, ms"
like "$log" ' GET /api/v1/machines/pc2 403 ' "refusals logged"
ok "$(grep -c "$AGENT" "$D/state/access.log" | grep -qx 0; echo $?)" "tokens never logged"
stop_ok "clean shutdown after a reload"
done_testing
