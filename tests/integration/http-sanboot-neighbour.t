#!/usr/bin/env bash
# A sanboot script carries the machine's CHAP secret, so goldcached serves it only
# to a host whose MAC (in the kernel's neighbour table) is the machine's: two client
# namespaces on the lab bridge ask with curl; the machine itself gets its script,
# another host asking with the machine's MAC gets 403 and no secret, while a
# secret-free cache script is served to anyone.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
need goldcached goldctl curl tgtd
PC=52:54:00:77:00:31
OTHER=52:54:00:77:00:32
PORT=$LAB_HTTP_PORT
URL=http://$LAB_ADDR:$PORT

lab_new
mkdir -p "$T_DIR/store" "$T_DIR/state" "$T_DIR/secrets"
head -c 65536 /dev/zero >"$T_DIR/disk.img"
head -c 4096 /dev/zero >"$T_DIR/vmlinuz"
printf 'exam-secret-0123456789\n' >"$T_DIR/secrets/exam1"
chmod 600 "$T_DIR/secrets/exam1"
t_run "disk image imported" goldctl --store "$T_DIR/store" image import win "$T_DIR/disk.img"
t_run "fs image imported" goldctl --store "$T_DIR/store" image import deb "$T_DIR/disk.img"
cat >"$T_DIR/goldcache.yaml" <<YAML
appliance:
  interface: $LAB_BR
  listen: $LAB_ADDR/24
  http_port: $PORT
  dhcp: {mode: off}
  tftp_root: $LAB_TFTP
  iscsi: {portal: $LAB_ADDR:3260, iqn_prefix: iqn.2026-11.org.example.neigh}
  store_dir: $T_DIR/store
  state_dir: $T_DIR/state
images:
  - {name: win, version: current}
  - {name: deb, version: current, kernel: $T_DIR/vmlinuz, initrd: $T_DIR/vmlinuz}
profiles:
  - {name: exam, image: win, mode: sanboot}
  - {name: desk, image: deb, mode: cache}
machines:
  - {mac: $PC, name: exam1, profile: exam, chap_secret_file: $T_DIR/secrets/exam1}
  - {mac: $OTHER, name: desk1, profile: desk}
YAML
ip netns exec "$LAB_NS" goldcached -c "$T_DIR/goldcache.yaml" --log "$T_DIR/goldcached.log" &
track $!
wait_for 20 ip netns exec "$LAB_NS" curl -sf "$URL/api/v1/health"
ok $? "goldcached serves HTTP on the lab bridge" || {
	sed 's/^/#   /' "$T_DIR/goldcached.log" | tail -n 20
	bail "goldcached did not start"
}
pc=$(lab_client pc "$PC")
other=$(lab_client other "$OTHER")
ip -n "$pc" addr add 10.77.0.31/24 dev eth0
ip -n "$other" addr add 10.77.0.32/24 dev eth0

out=$(ip netns exec "$pc" curl -s -w '\n%{http_code}' "$URL/boot.ipxe?mac=${PC//:/-}")
like "$out" $'set password exam-secret-0123456789\n' "the machine gets its sanboot script"
like "$out" '200$' "200"
out=$(ip netns exec "$other" curl -s -w '\n%{http_code}' "$URL/boot.ipxe?mac=${PC//:/-}")
like "$out" '403$' "another host asking with the machine's MAC: 403"
ok "$(printf '%s' "$out" | grep -c exam-secret | grep -qx 0; echo $?)" "no secret in that answer"
out=$(ip netns exec "$pc" curl -s -w '\n%{http_code}' "$URL/boot.ipxe?mac=${OTHER//:/-}")
like "$out" 'goldcache.mode=cache' "a cache script (no secret) is served to any host"
like "$(cat "$T_DIR/goldcached.log")" "sanboot script of 'exam1' .* refused to 10\\.77\\.0\\.32:[0-9]+, whose MAC is $OTHER" \
	"the refusal is logged with the asking host"
done_testing
