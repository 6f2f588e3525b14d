# Shell helpers for link-cut tests: goldcached (with its tgtd and HTTP API) in
# one network namespace, goldagent in another, joined by a veth pair; the link
# between them can be taken down, dropped by nftables, or rate-limited. No
# host interface is touched: both namespaces and the veth pair are the test's.
# Source after tests/lib.sh:
#
#   netcut_lab DIR GOLD_IMAGE      namespaces + veth, DIR/goldcache.yaml, image deb
#                                  imported; sets NC_APP NC_AG (netns names),
#                                  NC_APP_IF NC_AG_IF, NC_APP_ADDR, URL, ADMIN, PREFIX
#   netcut_gc_start DIR            goldcached in NC_APP; waits for the API and
#                                  the machines' LUNs; sets GC_PID
#   in_app CMD... / in_ag CMD...   runs CMD in the appliance's / agent's namespace
#                                  (foreground only: in the background $! would be
#                                  a subshell; use ip netns exec "$NC_AG" CMD & there)
#   netcut_link_down / _up         `ip link set` on the agent's end of the veth
#   netcut_drop_on / _off          nftables table inet gctest in the agent's netns:
#                                  every packet to the appliance's address dropped
#   netcut_rate DEV_NS DEV RATE    tbf rate limit on DEV's egress (e.g. 80mbit)
#   netcut_lun_path DIR MACHINE LUN   backing file of that LUN (tgtadm show)
# shellcheck shell=bash
# shellcheck disable=SC2034 # URL, PREFIX, ADMIN are for the test that sources this

NC_APP=
NC_AG=
NC_APP_IF=
NC_AG_IF=
NC_APP_ADDR=
NC_AG_ADDR=

in_app() { ip netns exec "$NC_APP" "$@"; }
in_ag() { ip netns exec "$NC_AG" "$@"; }

# netcut_net: the two namespaces and the veth pair between them, on a private
# 10.78.N.0/24 (N random: the namespaces are private anyway; it only keeps
# logs of parallel runs apart).
netcut_net() {
	local n=$((RANDOM % 200 + 20))
	NC_APP=$(netns_new app) || return 1
	NC_AG=$(netns_new agent) || return 1
	NC_APP_IF=gcapp$n
	NC_AG_IF=gcag$n
	NC_APP_ADDR=10.78.$n.1
	NC_AG_ADDR=10.78.$n.2
	# created inside the appliance's namespace: never visible on the host
	in_app ip link add "$NC_APP_IF" type veth peer name "$NC_AG_IF" netns "$NC_AG" || return 1
	in_app ip addr add "$NC_APP_ADDR/24" dev "$NC_APP_IF" || return 1
	in_ag ip addr add "$NC_AG_ADDR/24" dev "$NC_AG_IF" || return 1
	in_app ip link set "$NC_APP_IF" up || return 1
	in_ag ip link set "$NC_AG_IF" up || return 1
	wait_for 10 netcut_carrier
}
# netcut_carrier: the agent's end of the veth is up with a carrier.
netcut_carrier() { ip -n "$NC_AG" link show "$NC_AG_IF" | grep -q LOWER_UP; }

# netcut_lab DIR GOLD_IMAGE: the network, a config with machines pc1..pc3
# (profile desk: cache mode, 256 MiB volume), GOLD_IMAGE imported as image deb.
netcut_lab() {
	local d=$1
	netcut_net || return 1
	HTTP_PORT=$(free_port)
	ISCSI_PORT=$(free_port)
	URL=http://$NC_APP_ADDR:$HTTP_PORT
	PREFIX=iqn.2026-11.org.example.linkcut
	ADMIN=$d/state/admin.token
	mkdir -p "$d/tftp" "$d/store" "$d/state"
	head -c 1000 /dev/urandom >"$d/vmlinuz"
	head -c 1000 /dev/urandom >"$d/initrd"
	cat >"$d/goldcache.yaml" <<-YAML
		appliance:
		  interface: $NC_APP_IF
		  listen: $NC_APP_ADDR/24
		  http_port: $HTTP_PORT
		  dhcp: {mode: off}
		  tftp_root: $d/tftp
		  iscsi: {portal: $NC_APP_ADDR:$ISCSI_PORT, iqn_prefix: $PREFIX}
		  store_dir: $d/store
		  state_dir: $d/state
		images:
		  - {name: deb, version: current, kernel: $d/vmlinuz, initrd: $d/initrd}
		profiles:
		  - {name: desk, image: deb, mode: cache, volume_size: 256M, retention: 10}
		machines:
		  - {mac: 52:54:00:31:00:01, name: pc1, profile: desk}
		  - {mac: 52:54:00:31:00:02, name: pc2, profile: desk}
		  - {mac: 52:54:00:31:00:03, name: pc3, profile: desk}
	YAML
	goldctl --store "$d/store" image import deb "$2" >/dev/null
}

GC_PID=
# netcut_gc_start DIR: goldcached in the appliance's namespace.
netcut_gc_start() {
	local d=$1
	# not through in_app: $! must be goldcached itself
	ip netns exec "$NC_APP" goldcached -c "$d/goldcache.yaml" --log "$d/goldcached.log" &
	GC_PID=$!
	track "$GC_PID"
	wait_for 20 in_app curl -sf "$URL/api/v1/health" || return 1
	# every machine's gold LUN and upload LUN in place (logins before that
	# are refused with "logical unit not supported")
	for _ in $(seq 300); do
		[ -n "$(netcut_lun_path "$d" pc1 1)" ] && [ -n "$(netcut_lun_path "$d" pc1 2)" ] &&
			[ -n "$(netcut_lun_path "$d" pc2 1)" ] && [ -n "$(netcut_lun_path "$d" pc3 1)" ] &&
			return 0
		sleep 0.1
	done
	return 1
}

# netcut_lun_path DIR MACHINE LUN: the backing file of that LUN
netcut_lun_path() {
	TGT_IPC_SOCKET="$1/state/run/tgtd.sock" tgtadm -C 0 --lld iscsi --op show --mode target 2>/dev/null |
		awk -v iqn="$PREFIX:m.$2" -v want="$3" '
		/^Target [0-9]+: / {t = ($3 == iqn)}
		t && /^ +LUN: / {lun = $2}
		t && lun == want && /Backing store path:/ {print $4}'
}

netcut_link_down() { in_ag ip link set "$NC_AG_IF" down; }
netcut_link_up() {
	in_ag ip link set "$NC_AG_IF" up
	wait_for 10 netcut_carrier
}
netcut_drop_on() {
	in_ag nft -f - <<-NFT
		table inet gctest {
			chain output {
				type filter hook output priority 0; policy accept;
				ip daddr $NC_APP_ADDR drop
			}
		}
	NFT
}
netcut_drop_off() { in_ag nft delete table inet gctest; }
# netcut_rate NS DEV RATE: a token bucket on DEV's egress in namespace NS, so
# a transfer takes long enough to be cut in the middle.
netcut_rate() {
	ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$3" burst 256kb latency 500ms
}
