#!/usr/bin/env bash
# Known machines live in dnsmasq's hosts dir, one file each: adding a machine
# takes effect without restarting dnsmasq (its inotify reads the new file);
# removing one takes a SIGHUP, still no restart. With known-only, an unlisted
# machine gets no answer at all.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
PXE=(-V PXEClient:Arch:00000:UNDI:002001 -x 0x5d:0000)
M1=52:54:00:77:00:01
M2=52:54:00:77:00:02
cfg() { lab_dhcp_config --mode full --range 10.77.0.100,10.77.0.199 --known-only "$@"; }

lab_new
gc-dhcp install-boot "$LAB_TFTP" >/dev/null
out=$(cfg --host "$M2,other")
is "$out" "changed conf hosts-add" "first write: config and one host"
lab_dnsmasq_gc dhcp
pid=$(lab_pid dhcp)
c1=$(lab_client c1 "$M1")

t_fails "an unknown machine gets no lease" lab_udhcpc "$c1" "$T_DIR/c1-before.env" "${PXE[@]}" -t 2 -T 1
like "$(cat "$T_DIR/dhcp.log")" "DHCPDISCOVER\\(gcbr0\\) $M1 ignored" "dnsmasq logs it as ignored"

out=$(cfg --host "$M2,other" --host "${M1^^},pc01")
is "$out" "changed hosts-add" "adding a machine only adds a host file"
t_run "dnsmasq picks up the new file by itself" \
	lab_wait_log "$T_DIR/dhcp.log" 'inotify: .*/hosts\.d/52-54-00-77-00-01 new or modified' 10
t_run "the machine now gets a lease" lab_udhcpc "$c1" "$T_DIR/c1.env" "${PXE[@]}"
is "$(lab_env_get "$T_DIR/c1.env" boot_file)" undionly.kpxe "and its boot file"
like "$(cat "$LAB_STATE/dnsmasq.leases")" "$M1 10\\.77\\.0\\.[0-9]+ pc01 " "the lease carries its name"
is "$(lab_pid dhcp)" "$pid" "same dnsmasq process (no restart)"
t_run "dnsmasq still running" kill -0 "$pid"

out=$(cfg --host "$M2,other")
is "$out" "changed hosts-del" "removing a machine: a SIGHUP is due"
t_run "SIGHUP dnsmasq" kill -HUP "$pid"
reread() { [ "$(grep -c 'read .*/hosts\.d/52-54-00-77-00-02$' "$T_DIR/dhcp.log")" -ge 2 ]; }
t_run "dnsmasq re-reads its hosts dir" wait_for 10 reread
t_fails "the removed machine gets no lease" lab_udhcpc "$c1" "$T_DIR/c1-after.env" "${PXE[@]}" -t 2 -T 1
t_run "dnsmasq still running, same process" kill -0 "$pid"
out=$(cfg --host "$M2,other")
is "$out" "changed nothing" "rewriting the same config changes nothing"
done_testing
