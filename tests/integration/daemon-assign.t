#!/usr/bin/env bash
# `goldctl machine assign NAME PROFILE` takes effect at the machine's next boot
# with no restart: the next /boot.ipxe for its MAC renders the new profile's
# image, and its target's LUN follows to that image's export (same tid, nothing
# restarted); libiscsi reads the new image's bytes as the machine. Unassign
# brings the config's profile back. A machine matched by a group gets its own
# target (and CHAP secret) by the time its first sanboot script is served.
# /api/v1/health reports the children.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-daemon.sh"
need ip dnsmasq tgtd tgtadm curl qemu-img cmp jq

lab_new
head -c 1M /dev/urandom >"$T_DIR/gold.img"
head -c 2M /dev/urandom >"$T_DIR/silver.img"
if ! gcd_import gold "$T_DIR/gold.img" || ! gcd_import silver "$T_DIR/silver.img"; then
	bail "cannot import the images"
fi
GOLD="$GCD_STATE/exports/gold@1.img"
SILVER="$GCD_STATE/exports/silver@1.img"
gcd_config "$T_DIR/gc.yaml" "  - mac: 52:54:00:77:00:01
    name: m1
    profile: p-gold"
printf 'groups:\n  - match: "52:54:00:88:*"\n    profile: p-gold\n' >>"$T_DIR/gc.yaml"
gcd_start "$T_DIR/gc.yaml"
URL="http://$LAB_ADDR:$GCD_HTTP_PORT"
in_lab() { ip netns exec "$LAB_NS" "$@"; }
script() { in_lab curl -sS --max-time 10 "$URL/boot.ipxe?mac=52-54-00-77-00-01"; }
ctl() { in_lab goldctl machine "$@" --url "$URL" --token-file "$GCD_STATE/admin.token"; }

gcd_wait_lun m1 "$GOLD" 20
ok $? "m1 serves gold"
like "$(script)" 'image gold@1' "m1's boot script boots gold@1"
tid=$(gcd_tid m1)
pids="$GCD_PID $(gcd_child tgtd) $(gcd_child dnsmasq)"
health=$(in_lab curl -sS --max-time 10 "$URL/api/v1/health")
is "$(printf '%s' "$health" | jq -r '.tgtd + " " + .dnsmasq')" "running running" \
	"health reports tgtd and dnsmasq running"

t_run "goldctl machine assign m1 p-silver" ctl assign m1 p-silver
like "$(script)" 'image silver@1' "the next boot script boots silver@1"
gcd_wait_lun m1 "$SILVER" 30
ok $? "m1's LUN follows to silver's export"
is "$(gcd_tid m1)" "$tid" "same target (tid $tid)"
is "$GCD_PID $(gcd_child tgtd) $(gcd_child dnsmasq)" "$pids" "nothing was restarted"
t_run "reading m1's LUN as m1" gcd_read m1 "$T_DIR/read.img"
t_run "it holds silver's bytes" cmp "$T_DIR/read.img" "$T_DIR/silver.img"
like "$(ctl show m1)" 'assigned profile: +p-silver' "goldctl shows the assignment"

t_run "goldctl machine unassign m1" ctl unassign m1
like "$(script)" 'image gold@1' "the config's profile applies again"
gcd_wait_lun m1 "$GOLD" 30
ok $? "m1's LUN is gold's export again"
is "$(gcd_tid m1)" "$tid" "still the same target"

# A group machine, never seen before: the script names its target and secret,
# and the target is there when iPXE logs in.
g=$(in_lab curl -sS --max-time 10 "$URL/boot.ipxe?mac=52-54-00-88-00-05")
like "$g" 'sanboot iscsi:10\.77\.0\.1::[0-9]+:1:iqn\.2026-11\.test\.goldcache:m\.52-54-00-88-00-05' \
	"the group machine's script names its own target"
gsecret=$(printf '%s\n' "$g" | awk '$1 == "set" && $2 == "password" {print $3}')
is "$gsecret" "$(cat "$GCD_STATE/secrets/52-54-00-88-00-05.chap")" "with its generated CHAP secret"
t_run "its target admits it at once (libiscsi login, its initiator, CHAP)" \
	gcd_login 52-54-00-88-00-05 "$gsecret"
t_run "another machine's initiator name is refused there" \
	bash -c "! gcd_login 52-54-00-88-00-05 '$gsecret' m1 2>/dev/null"

gcd_stop
is "$GCD_RC" 0 "clean shutdown"
done_testing
