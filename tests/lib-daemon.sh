# Helpers for tests of the whole goldcached: a config in the lab (tests/lib-lab.sh),
# the daemon started in the lab's netns with its own state dir, log and pid, and
# the pids of its children. Source after tests/lib.sh and tests/lib-lab.sh:
#
#   gcd_config FILE [MACHINES_YAML]  a lab config (full DHCP on the bridge) into FILE;
#                                    MACHINES_YAML is the text of the machines: list
#   gcd_start CONFIG [ARGS...]       runs goldcached -c CONFIG in $LAB_NS, logging to
#                                    $GCD_LOG; waits until it says it runs; sets GCD_PID
#   gcd_child NAME                   pid of goldcached's child NAME (dnsmasq, tgtd) or ""
#   gcd_wait_child NAME OLDPID SECS  waits until child NAME runs with a pid != OLDPID
#   gcd_stop                         SIGTERM, waits for the exit; sets GCD_RC
#   gcd_log_count REGEX              lines of $GCD_LOG matching REGEX
# shellcheck shell=bash

GCD_STATE="$T_DIR/state"
GCD_STORE="$T_DIR/store"
GCD_LOG="$T_DIR/goldcached.log"
GCD_HTTP_PORT=$LAB_HTTP_PORT
GCD_ISCSI_PORT=${GCD_ISCSI_PORT:-3261}
GCD_PID=
GCD_RC=
export GCD_STATE GCD_STORE GCD_LOG GCD_PID GCD_RC

gcd_config() {
	local file=$1 machines=${2:-}
	{
		cat <<-EOF
			appliance:
			  interface: $LAB_BR
			  listen: $LAB_ADDR/24
			  http_port: $GCD_HTTP_PORT
			  dhcp:
			    mode: full
			    range: 10.77.0.100-10.77.0.199
			    lease_time: 10m
			  tftp_root: $LAB_TFTP
			  iscsi:
			    portal: $LAB_ADDR:$GCD_ISCSI_PORT
			    iqn_prefix: iqn.2026-11.test.goldcache
			  store_dir: $GCD_STORE
			  state_dir: $GCD_STATE
			images:
			  - name: gold
			    version: current
			  - name: silver
			    version: current
			profiles:
			  - name: p-gold
			    image: gold
			    mode: sanboot
			  - name: p-silver
			    image: silver
			    mode: sanboot
		EOF
		if [ -n "$machines" ]; then
			echo "machines:"
			printf '%s\n' "$machines"
		fi
	} >"$file"
}

# gcd_start CONFIG [ARGS...]
gcd_start() {
	local cfg=$1
	shift
	: >>"$GCD_LOG"
	ip netns exec "$LAB_NS" goldcached -c "$cfg" --log "$GCD_LOG" "$@" 2>>"$GCD_LOG.stderr" &
	GCD_PID=$!
	track "$GCD_PID"
	if ! wait_for 20 grep -q "goldcached running (pid $GCD_PID)" "$GCD_LOG"; then
		sed 's/^/#   goldcached: /' "$GCD_LOG" "$GCD_LOG.stderr" | tail -n 30
		bail "goldcached did not start"
	fi
}

# gcd_child NAME: the pid of goldcached's running child NAME.
gcd_child() {
	local p kids
	kids=$(cat "/proc/$GCD_PID/task/"*/children 2>/dev/null)
	for p in $kids; do
		if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$1" ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

gcd_wait_child() {
	local name=$1 old=$2 secs=$3 i=0 p
	while :; do
		p=$(gcd_child "$name")
		if [ -n "$p" ] && [ "$p" != "$old" ]; then
			echo "$p"
			return 0
		fi
		i=$((i + 1))
		[ $i -ge $((secs * 10)) ] && return 1
		sleep 0.1
	done
}

gcd_stop() {
	kill -TERM "$GCD_PID" 2>/dev/null
	wait "$GCD_PID"
	GCD_RC=$?
}

gcd_log_count() {
	grep -cE -- "$1" "$GCD_LOG"
}
