# End-to-end helpers on top of tests/lib-lab.sh (source after lib.sh and lib-lab.sh):
#   e2e_goldcached CONF LOG         the real goldcached in $LAB_NS (tracked by PID), waits
#                                   until its /api/v1/health answers on $LAB_HTTP_PORT;
#                                   sets E2E_GC_PID; bails with its log tail otherwise
#   e2e_timeline SECS LABEL@FILE=REGEX...
#                                   like lab_timeline, but each step names the log it
#                                   appears in (serial console, goldcached's log, access
#                                   log): waits for each in turn, prints "# timeline:"
#                                   lines (seconds since lab_qemu); 1 if a step does not
#                                   come within SECS (all together)
#   e2e_access LOG ADDR METHOD PATH-REGEX
#                                   the access-log lines (ts peer:port method target
#                                   status bytes ms) from ADDR for a target matching
#                                   PATH-REGEX
#   e2e_dhcp_xact LOG MAC           dnsmasq's log lines (log-dhcp) of the first DHCP
#                                   transaction MAC started (its DHCPDISCOVER's xid)
#   e2e_lease LOG MAC               the address dnsmasq's DHCPACK gave MAC (from the
#                                   "dnsmasq[PID]: ..." lines goldcached logs)
#   e2e_appliance_yaml IQN_PREFIX   prints the appliance: section of a lab config:
#                                   goldcached on $LAB_BR, full DHCP, TFTP root
#                                   $LAB_TFTP, iSCSI portal $LAB_ADDR:3260 with that
#                                   prefix, store and state in $T_DIR (the test adds
#                                   images, profiles, machines)
# shellcheck shell=bash

e2e_goldcached() {
	local conf=$1 log=$2
	ip netns exec "$LAB_NS" goldcached -c "$conf" --log "$log" &
	E2E_GC_PID=$!
	track "$E2E_GC_PID"
	if ! wait_for 30 ip netns exec "$LAB_NS" curl -sf "http://$LAB_ADDR:$LAB_HTTP_PORT/api/v1/health"; then
		tail -n 30 "$log" 2>/dev/null | sed 's/^/#   goldcached: /'
		bail "goldcached did not serve /api/v1/health within 30 s"
	fi
}

e2e_timeline() {
	local secs=$1 item label rest file re deadline now
	shift
	deadline=$(($(date +%s) + secs))
	for item in "$@"; do
		label=${item%%@*}
		rest=${item#*@}
		file=${rest%%=*}
		re=${rest#*=}
		until tr -d '\r' <"$file" 2>/dev/null | grep -Eq -- "$re"; do
			now=$(date +%s)
			if [ "$now" -ge "$deadline" ]; then
				echo "# timeline: no '$label' (/$re/ in ${file##*/}) within ${secs}s"
				return 1
			fi
			sleep 0.1
		done
		now=$(date +%s%N)
		printf '# timeline: %-16s %6.1f s\n' "$label" \
			"$(((now - ${LAB_QEMU_T0:-now}) / 1000000))e-3"
	done
}

e2e_access() {
	# the regex goes through the environment: awk -v would eat its backslashes
	E2E_RE=$4 awk -v addr="$2" -v m="$3" \
		'{ p = $2; sub(/:[0-9]+$/, "", p) } p == addr && $3 == m && $4 ~ ENVIRON["E2E_RE"]' \
		"$1" 2>/dev/null
}

e2e_dhcp_xact() {
	local xid
	xid=$(sed -n "s/.*dnsmasq-dhcp\[[0-9]*\]: \([0-9]*\) DHCPDISCOVER([^)]*) $2 .*/\1/p" "$1" |
		head -n 1)
	[ -n "$xid" ] || return 1
	grep -E "dnsmasq-dhcp\[[0-9]+\]: $xid " "$1"
}

e2e_lease() {
	sed -n "s/.*dnsmasq[^:]*: .*DHCPACK([^)]*) \([0-9.]*\) $2.*/\1/p" "$1" 2>/dev/null | tail -n 1
}

e2e_appliance_yaml() {
	cat <<-YAML
		appliance:
		  interface: $LAB_BR
		  listen: $LAB_ADDR/24
		  http_port: $LAB_HTTP_PORT
		  dhcp: {mode: full, range: 10.77.0.100-10.77.0.199}
		  tftp_root: $LAB_TFTP
		  iscsi: {portal: $LAB_ADDR:3260, iqn_prefix: $1}
		  store_dir: $T_DIR/store
		  state_dir: $T_DIR/state
	YAML
}
