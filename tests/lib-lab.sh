# Network-boot lab for integration and e2e tests: everything lives in network
# namespaces this test creates (never on the host's interfaces) and is torn down
# by tests/lib.sh's exit trap. Source after tests/lib.sh:
#   . "$GC_SRC/tests/lib.sh"; . "$GC_SRC/tests/lib-lab.sh"
#
#   lab_new                      netns $LAB_NS with bridge $LAB_BR: 10.77.0.1/24, fd77::1/64
#   lab_client NAME MAC          a client netns (echoed) whose eth0 (MAC) is on the bridge
#   lab_tap NAME                 a tap device on the bridge (for QEMU)
#   lab_addr CIDR                another address on the bridge (a second server)
#   lab_dhcp_config ARGS...      gc-dhcp write with the lab's defaults + ARGS into $LAB_STATE
#   lab_dnsmasq NAME ARGV...     runs the real dnsmasq in $LAB_NS, log $T_DIR/NAME.log,
#                                waits until it serves; sets LAB_PID_<NAME>
#   lab_dnsmasq_ns NS NAME ARGV...  the same in another netns (a site DHCP server)
#   lab_dnsmasq_gc NAME          lab_dnsmasq with the argv gc-dhcp gives for $LAB_STATE
#   lab_udhcpc NS OUT ARGS...    busybox udhcpc in NS (eth0) once; its script appends
#                                the environment of each event to OUT; configures eth0
#   lab_httpd DIR PORT           busybox httpd on 10.77.0.1:PORT serving DIR (cgi-bin works)
#   lab_qemu NAME TAP MAC LOG [QEMU ARGS...]
#                                QEMU (tcg) PXE-booting from virtio-net on TAP, serial
#                                console to LOG; sets LAB_PID_<NAME>. LAB_NIC_OPTS is
#                                appended to the NIC's -device (",romfile=": no iPXE ROM)
#   lab_wait_log LOG REGEX SECS  waits until LOG matches REGEX (0) or SECS pass (1)
#   lab_timeline LOG SECS LABEL=REGEX...
#                                waits for each REGEX in turn in LOG, printing as TAP
#                                comments the seconds since lab_qemu started; 1 if
#                                one does not come within SECS (all together)
#   lab_boot_script DIR          a web root for lab_httpd: cgi-bin/boot.ipxe answers
#                                with an iPXE script echoing GC-MARKER and the query
#                                string it got, then fetching payload.bin (GC-FETCHED)
#   lab_pid NAME                 the PID lab_dnsmasq / lab_qemu started as NAME
# shellcheck shell=bash

LAB_BR=gcbr0
LAB_ADDR=10.77.0.1
LAB_NET=10.77.0.0
LAB_ADDR6=fd77::1
LAB_HTTP_PORT=${LAB_HTTP_PORT:-8077}
export LAB_BR LAB_ADDR LAB_NET LAB_ADDR6 LAB_HTTP_PORT

# dnsmasq drops privileges: the files it serves must be readable by its user.
chmod 755 "$T_DIR"

lab_new() {
	need ip dnsmasq busybox
	LAB_NS=$(netns_new lab)
	ip -n "$LAB_NS" link add "$LAB_BR" type bridge forward_delay 0 stp_state 0 ||
		bail "cannot create bridge in $LAB_NS"
	ip -n "$LAB_NS" addr add "$LAB_ADDR/24" dev "$LAB_BR"
	ip -n "$LAB_NS" addr add "$LAB_ADDR6/64" dev "$LAB_BR" nodad
	ip -n "$LAB_NS" link set "$LAB_BR" up
	LAB_TFTP="$T_DIR/tftp"
	LAB_STATE="$T_DIR/dhcp-state"
	mkdir -p "$LAB_TFTP"
	export LAB_NS LAB_TFTP LAB_STATE
}

lab_addr() { ip -n "$LAB_NS" addr add "$1" dev "$LAB_BR"; }

# lab_client NAME MAC: echoes the client's netns name.
lab_client() {
	local name=$1 mac=$2 ns port
	ns=$(netns_new "$name")
	port="v-$name"
	ip -n "$LAB_NS" link add "$port" type veth peer name eth0 netns "$ns" ||
		bail "cannot create veth for $name"
	ip -n "$LAB_NS" link set "$port" master "$LAB_BR" up
	ip -n "$ns" link set eth0 address "$mac" up
	echo "$ns"
}

lab_tap() {
	ip -n "$LAB_NS" tuntap add dev "$1" mode tap || bail "cannot create tap $1"
	ip -n "$LAB_NS" link set "$1" master "$LAB_BR" up
}

# lab_dhcp_config ARGS...: the lab's dnsmasq config through gc-dhcp (the code
# goldcached uses), full mode unless ARGS say otherwise.
lab_dhcp_config() {
	gc-dhcp write --interface "$LAB_BR" --listen "$LAB_ADDR" \
		--tftp-root "$LAB_TFTP" --http-base "http://$LAB_ADDR:$LAB_HTTP_PORT" \
		--state-dir "$LAB_STATE" "$@"
}

lab_dnsmasq() { lab_dnsmasq_ns "$LAB_NS" "$@"; }
lab_dnsmasq_ns() {
	local ns=$1 name=$2 log="$T_DIR/$2.log" pid
	shift 2
	ip netns exec "$ns" "$@" 2>"$log" &
	pid=$!
	track $pid
	printf -v "LAB_PID_$name" '%s' "$pid"
	if ! wait_for 10 grep -q 'started, version' "$log" || ! kill -0 $pid 2>/dev/null; then
		sed 's/^/#   dnsmasq: /' "$log"
		bail "dnsmasq $name did not start"
	fi
}

lab_pid() {
	local v="LAB_PID_$1"
	echo "${!v:-}"
}

lab_dnsmasq_gc() {
	local -a argv
	mapfile -t argv < <(gc-dhcp argv --interface "$LAB_BR" --listen "$LAB_ADDR" \
		--range 10.77.0.100,10.77.0.199 --tftp-root "$LAB_TFTP" \
		--http-base "http://$LAB_ADDR:$LAB_HTTP_PORT" --state-dir "$LAB_STATE")
	lab_dnsmasq "$1" "${argv[@]}"
}

lab_udhcpc() {
	local ns=$1 out=$2 script="$T_DIR/udhcpc-script"
	shift 2
	if [ ! -x "$script" ]; then
		cat >"$script" <<-'EOF'
			#!/bin/sh
			# udhcpc event script for tests: record the environment, configure eth0.
			{
				echo "event=$1"
				env | grep -E '^(ip|mask|subnet|router|siaddr|sname|boot_file|bootfile|serverid|lease|hostname|opt[0-9]+)='
			} >>"$UDHCPC_OUT"
			case "$1" in
			bound | renew)
				ip addr flush dev "$interface"
				ip addr add "$ip/${mask:-24}" dev "$interface"
				;;
			esac
		EOF
		chmod 755 "$script"
	fi
	UDHCPC_OUT=$out ip netns exec "$ns" timeout 20 busybox udhcpc -f -q -n -i eth0 \
		-t 4 -T 2 -A 1 -s "$script" "$@" >>"$out.log" 2>&1
}

# lab_env_get FILE KEY: the value of KEY in the last "bound" block of a udhcpc dump.
lab_env_get() {
	awk -v k="$2" -F= '/^event=/{b=($2=="bound")} b && $1==k {v=substr($0,length(k)+2)} END{print v}' "$1"
}

lab_httpd() {
	local dir=$1 port=$2 pid
	ip netns exec "$LAB_NS" busybox httpd -f -vv -p "$LAB_ADDR:$port" -h "$dir" \
		2>>"$T_DIR/httpd.log" &
	pid=$!
	track $pid
	wait_for 5 ip netns exec "$LAB_NS" sh -c "ss -ltn | grep -q ':$port '" ||
		bail "busybox httpd did not start"
}

lab_qemu() {
	local name=$1 tap=$2 mac=$3 log=$4 pid
	shift 4
	need qemu-system-x86_64
	: >"$log"
	ip netns exec "$LAB_NS" qemu-system-x86_64 -accel tcg -cpu max -m 256 -nographic \
		-no-reboot -boot n -nodefaults -serial "file:$log" -monitor none \
		-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=n0,mac=$mac${LAB_NIC_OPTS:-}" "$@" >"$log.qemu" 2>&1 &
	pid=$!
	track $pid
	printf -v "LAB_PID_$name" '%s' "$pid"
	LAB_QEMU_T0=$(date +%s%N)
}

lab_timeline() {
	local log=$1 secs=$2 item label re deadline now
	shift 2
	deadline=$(($(date +%s) + secs))
	for item in "$@"; do
		label=${item%%=*}
		re=${item#*=}
		until grep -Eq -- "$re" "$log" 2>/dev/null; do
			now=$(date +%s)
			if [ "$now" -ge "$deadline" ]; then
				echo "# timeline: no '$label' within ${secs}s"
				return 1
			fi
			sleep 0.1
		done
		now=$(date +%s%N)
		printf '# timeline: %-12s %6.1f s\n' "$label" \
			"$(((now - ${LAB_QEMU_T0:-now}) / 1000000))e-3"
	done
}

lab_boot_script() {
	local www=$1
	mkdir -p "$www/cgi-bin"
	cat >"$www/cgi-bin/boot.ipxe" <<-EOF
		#!/bin/sh
		# CGI for busybox httpd: an iPXE script naming the query it was asked with.
		printf 'Content-Type: text/plain\r\n\r\n'
		printf '#!ipxe\necho GC-MARKER query=%s\n' "\$QUERY_STRING"
		printf 'imgfetch http://$LAB_ADDR:$LAB_HTTP_PORT/payload.bin\necho GC-FETCHED\n'
	EOF
	chmod 755 "$www/cgi-bin/boot.ipxe"
	head -c 65536 /dev/urandom >"$www/payload.bin"
}

lab_wait_log() {
	local log=$1 re=$2 secs=$3 i=0
	while ! grep -Eq -- "$re" "$log" 2>/dev/null; do
		i=$((i + 1))
		[ $i -ge $((secs * 5)) ] && return 1
		sleep 0.2
	done
}
