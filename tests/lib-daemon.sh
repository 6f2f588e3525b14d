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
#   gcd_gone PID                     PID has exited (gone or a zombie)
#   (tgt helpers further down)
# shellcheck shell=bash
. "$GC_SRC/tests/lib-tgt.sh"

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

# gcd_gone PID: 0 when PID has exited (gone, or a zombie its new parent has not
# reaped yet: orphans of a killed goldcached are reparented).
gcd_gone() {
	[ ! -e "/proc/$1/stat" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

gcd_log_count() {
	grep -cE -- "$1" "$GCD_LOG"
}

# ---- tgt helpers (goldcached's private tgtd) ----
#   gcd_import NAME FILE             goldctl image import into $GCD_STORE
#   gcd_tgtadm ARGS...               tgtadm against goldcached's tgtd
#   gcd_tid MACHINE                  tid of MACHINE's target ("" when absent)
#   gcd_lun MACHINE                  backing file of LUN 1 of MACHINE's target
#   gcd_wait_lun MACHINE PATH SECS   waits until MACHINE's target is complete (account,
#                                    ACL) with LUN 1 = PATH
#   gcd_login MACHINE [SECRET] [INITIATOR_MACHINE]
#                                    libiscsi login + INQUIRY on LUN 1 as MACHINE
#                                    (its initiator name and CHAP secret by default)
#   gcd_read MACHINE OUT             LUN 1's bytes (qemu-img through libiscsi) into OUT
GCD_PREFIX=iqn.2026-11.test.goldcache

gcd_import() { goldctl --store "$GCD_STORE" -q image import "$1" "$2" >/dev/null; }
gcd_tgtadm() { TGT_IPC_SOCKET="$GCD_STATE/run/tgtd.sock" tgtadm -C 0 --lld iscsi "$@"; }

gcd_tid() {
	gcd_tgtadm --op show --mode target 2>/dev/null |
		awk -v iqn="$GCD_PREFIX:m.$1" '/^Target [0-9]+: / && $3 == iqn {sub(":", "", $2); print $2}'
}

gcd_lun() {
	gcd_tgtadm --op show --mode target 2>/dev/null | awk -v iqn="$GCD_PREFIX:m.$1" '
		/^Target [0-9]+: / {t = ($3 == iqn)}
		t && /^ +LUN: / {lun = $2}
		t && lun == 1 && /Backing store path:/ {print $4}'
}

# gcd_ready MACHINE: its target as reconciled: "LUN1-PATH" once its account and
# its initiator ACL are bound too (logins are admitted only then), else "".
gcd_ready() { tgt_machine_ready "$GCD_STATE/run/tgtd.sock" "$GCD_PREFIX" "$1"; }

gcd_wait_lun() {
	local i=0
	while [ "$(gcd_ready "$1")" != "$2" ]; do
		i=$((i + 1))
		[ $i -ge $(($3 * 10)) ] && return 1
		sleep 0.1
	done
}

gcd_login() {
	local m=$1 secret=${2:-} who=${3:-$1}
	[ -n "$secret" ] || secret=$(cat "$GCD_STATE/secrets/$m.chap")
	ip netns exec "$LAB_NS" timeout 20 iscsi-inq -i "$GCD_PREFIX:i.$who" \
		"iscsi://$m%$secret@$LAB_ADDR:$GCD_ISCSI_PORT/$GCD_PREFIX:m.$m/1"
}

gcd_read() {
	local m=$1 out=$2 secret opts
	secret=$(cat "$GCD_STATE/secrets/$m.chap")
	printf '%s' "$secret" >"$T_DIR/$m.secret"
	opts="driver=iscsi,transport=tcp,portal=$LAB_ADDR:$GCD_ISCSI_PORT,target=$GCD_PREFIX:m.$m"
	opts="$opts,lun=1,initiator-name=$GCD_PREFIX:i.$m,user=$m,password-secret=chap0"
	ip netns exec "$LAB_NS" timeout 60 qemu-img convert -O raw \
		--object "secret,id=chap0,file=$T_DIR/$m.secret" --image-opts "$opts" "$out"
}
