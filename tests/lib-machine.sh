# Helpers for the machine-lifecycle tests (OS swap, reimaging): a machine's
# target as goldcached reconciled it, and (e2e) a machine that PXE-boots again
# and again with its own disk, the iSCSI bytes the appliance sent it counted
# per boot. Source after tests/lib.sh (and, for the e2e part, lib-lab.sh,
# lib-qemu.sh, lib-e2e.sh and lib-story.sh).
#
#   machine_target_ready SOCK PREFIX MACHINE
#                          LUN 1's backing file of MACHINE's target once the
#                          target admits its logins (CHAP account and initiator
#                          ACL bound), else "" (tgtd's control socket SOCK)
#   machine_wait_lun SOCK PREFIX MACHINE FILE SECS
#                          waits until machine_target_ready says FILE
# shellcheck shell=bash

machine_target_ready() {
	TGT_IPC_SOCKET=$1 tgtadm -C 0 --lld iscsi --op show --mode target 2>/dev/null |
		awk -v iqn="$2:m.$3" -v ini="$2:i.$3" -v user="$3" '
		/^Target [0-9]+: / {t = ($3 == iqn)}
		t && /^ +LUN: / {lun = $2}
		t && lun == 1 && /Backing store path:/ {path = $4}
		t && /^    Account information:/ {sect = "acct"; next}
		t && /^    ACL information:/ {sect = "acl"; next}
		t && sect == "acct" && $1 == user {acct = 1}
		t && sect == "acl" && $1 == ini {acl = 1}
		END {if (acct && acl) print path}'
}

machine_wait_lun() {
	local i=0
	while [ "$(machine_target_ready "$1" "$2" "$3")" != "$4" ]; do
		i=$((i + 1))
		[ $i -ge $(($5 * 5)) ] && return 1
		sleep 0.2
	done
}
