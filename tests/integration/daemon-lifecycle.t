#!/usr/bin/env bash
# goldcached's life cycle with the real dnsmasq and tgtd in a netns: bad configs
# start no child and write no file (exit non-zero); a good one runs tgtd and
# dnsmasq supervised; a second goldcached on the same state dir refuses with a
# clear message; SIGTERM removes the targets, stops every child, removes the
# runtime files and exits 0.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-daemon.sh"
need ip dnsmasq tgtd tgtadm iscsi-inq

lab_new
M1="  - mac: 52:54:00:77:00:01
    name: m1
    profile: p-gold"

# netns_procs: processes left in the lab namespace.
netns_procs() { ip netns pids "$LAB_NS" | wc -l; }

# bad CONFIG_FILE DESC [ENV...]: goldcached refuses it, starts and writes nothing.
bad() {
	local cfg=$1 desc=$2
	shift 2
	t_fails "$desc: refused" env "$@" ip netns exec "$LAB_NS" timeout 20 goldcached -c "$cfg"
	like "$T_OUT" "$BAD_WANT" "$desc: the error says what and where"
	is "$(netns_procs)" 0 "$desc: no child process left"
	ok "$([ ! -e "$GCD_STATE" ] && [ -z "$(ls -A "$LAB_TFTP")" ]; echo $?)" \
		"$desc: no file written"
}

gcd_config "$T_DIR/good.yaml" "$M1"

printf 'appliance: [unclosed\n' >"$T_DIR/bad1.yaml"
BAD_WANT='bad1\.yaml:[0-9]+:[0-9]+'
bad "$T_DIR/bad1.yaml" "malformed YAML"

gcd_config "$T_DIR/bad2.yaml" "$M1
  - mac: 52-54-00-77-00-01
    name: m2
    profile: p-gold"
BAD_WANT='bad2\.yaml:[0-9]+:[0-9]+: .*(duplicate|already)'
bad "$T_DIR/bad2.yaml" "duplicate MAC"

gcd_config "$T_DIR/bad3.yaml" "  - mac: 52:54:00:77:00:01
    name: m1
    profile: nosuch"
BAD_WANT='bad3\.yaml:[0-9]+:[0-9]+: .*nosuch'
bad "$T_DIR/bad3.yaml" "unknown profile"

sed 's/listen: 10.77.0.1\/24/listen: 10.77.0.9\/24/' "$T_DIR/good.yaml" >"$T_DIR/bad4.yaml"
BAD_WANT='bad4\.yaml:[0-9]+:[0-9]+: appliance\.listen'
bad "$T_DIR/bad4.yaml" "address not on the interface"

gcd_config "$T_DIR/bad5.yaml" "$M1
    chap_secret_file: $T_DIR/no-such-secret"
BAD_WANT='bad5\.yaml:[0-9]+:[0-9]+: .*no-such-secret'
bad "$T_DIR/bad5.yaml" "unreadable secret file"

BAD_WANT='dnsmasq not found'
bad "$T_DIR/good.yaml" "no dnsmasq program" GOLDCACHE_DNSMASQ=/nonexistent/dnsmasq

BAD_WANT='tgtd not found'
bad "$T_DIR/good.yaml" "no tgtd program" PATH="$GC_BUILD/bin:/usr/bin:/bin" \
	GOLDCACHE_DNSMASQ="$(command -v dnsmasq)"

# A good config: tgtd and dnsmasq run as goldcached's children.
head -c 1M /dev/urandom >"$T_DIR/gold.img"
gcd_import gold "$T_DIR/gold.img" || bail "cannot import"
gcd_start "$T_DIR/good.yaml"
dns=$(gcd_wait_child dnsmasq 0 10)
ok $? "dnsmasq runs as goldcached's child (pid $dns)"
tgtd=$(gcd_wait_child tgtd 0 10)
ok $? "tgtd runs as goldcached's child (pid $tgtd)"
gcd_wait_lun m1 "$GCD_STATE/exports/gold@1.img" 20
ok $? "m1's target serves the gold export"
is "$(stat -c %a "$GCD_STATE/secrets/m1.chap")" 600 "m1's generated CHAP secret is private"
is "$(cat "$GCD_STATE/goldcached.pid")" "$GCD_PID" "pid file names goldcached"
ok "$([ -s "$GCD_STATE/dhcp/dnsmasq.conf" ] && [ -f "$GCD_STATE/dhcp/hosts.d/52-54-00-77-00-01" ]; echo $?)" \
	"dnsmasq config and the machine's host file written"
t_run "boot files installed in the TFTP root" cmp "$LAB_TFTP/undionly.kpxe" /usr/lib/ipxe/undionly.kpxe

# A second goldcached on the same state dir.
t_fails "a second goldcached on the same state dir refuses" \
	ip netns exec "$LAB_NS" timeout 20 goldcached -c "$T_DIR/good.yaml"
like "$T_OUT" "another goldcached \\(pid $GCD_PID\\) is running with state dir" \
	"it names the running one and the state dir"
is "$(gcd_child dnsmasq) $(gcd_child tgtd)" "$dns $tgtd" "the first one's children are untouched"
t_run "the first one still serves m1's target" gcd_login m1
is "$(cat "$GCD_STATE/goldcached.pid")" "$GCD_PID" "pid file still names the first one"

# The DHCP service works.
c1=$(lab_client c1 52:54:00:77:00:01)
t_run "a DHCP client gets a lease" lab_udhcpc "$c1" "$T_DIR/c1.env"
is "$(lab_env_get "$T_DIR/c1.env" hostname)" m1 "with the machine's name"

# SIGTERM: clean exit.
gcd_stop
is "$GCD_RC" 0 "SIGTERM: goldcached exits 0"
ok "$(kill -0 "$dns" 2>/dev/null && echo 1 || echo 0)" "dnsmasq is gone"
ok "$(kill -0 "$tgtd" 2>/dev/null && echo 1 || echo 0)" "tgtd is gone"
like "$(cat "$GCD_LOG")" 'targets removed; tgtd told to exit' "targets were removed before tgtd stopped"
is "$(netns_procs)" 0 "no process left in the namespace"
ok "$([ ! -e "$GCD_STATE/goldcached.pid" ]; echo $?)" "pid file removed"
ok "$([ ! -e "$GCD_STATE/dhcp/dnsmasq.conf" ] && [ ! -e "$GCD_STATE/dhcp/hosts.d" ]; echo $?)" \
	"dnsmasq's runtime files removed"
ok "$([ ! -e "$GCD_STATE/run" ]; echo $?)" "tgtd's control socket dir removed"
ok "$([ -f "$GCD_STATE/dhcp/dnsmasq.leases" ]; echo $?)" "the lease database is kept"
ok "$([ -f "$GCD_STATE/exports/gold@1.img" ] && [ -f "$GCD_STATE/registry.db" ]; echo $?)" \
	"the export cache and the registry are kept"
like "$(cat "$GCD_LOG")" 'SIGTERM: shutting down' "the log says why it stopped"
like "$(cat "$GCD_LOG")" 'dnsmasq\[[0-9]+\]: dnsmasq.*started, version' \
	"dnsmasq's own output is in goldcached's log"

# The lock is free again.
gcd_start "$T_DIR/good.yaml"
ok $? "goldcached starts again on the same state dir"
gcd_stop
is "$GCD_RC" 0 "and stops cleanly"
done_testing
