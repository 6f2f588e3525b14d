# Helpers to run a private tgtd (the real one) for tests: its own control port
# (tgtadm -C N) and its own portal on 127.0.0.1, killed by PID at test end.
# shellcheck shell=bash

# tgt_start: sets TGT_C (control port number), TGT_PORT (iSCSI port), TGT_PID
tgt_start() {
	need tgtd tgtadm
	local try
	for try in 1 2 3 4 5; do
		TGT_C=$((2000 + RANDOM % 20000))
		TGT_PORT=$((20000 + RANDOM % 20000))
		tgtd -f -C "$TGT_C" --iscsi portal="127.0.0.1:$TGT_PORT" >"$T_DIR/tgtd.$TGT_C.log" 2>&1 &
		TGT_PID=$!
		track "$TGT_PID"
		if wait_for 10 tgtadm -C "$TGT_C" --op show --mode system; then
			on_exit "tgt_stop"
			return 0
		fi
		kill -KILL "$TGT_PID" 2>/dev/null
		wait "$TGT_PID" 2>/dev/null
		[ "$try" -lt 5 ] || true
	done
	bail "tgtd did not start (see $T_DIR/tgtd.*.log)"
}

# tgt_stop: tgtd ignores SIGTERM while targets exist (LAB.md): delete them first.
tgt_stop() {
	local tid
	for tid in $(tgtadm -C "$TGT_C" --op show --mode target 2>/dev/null |
		sed -n 's/^Target \([0-9]*\):.*/\1/p'); do
		tgtadm -C "$TGT_C" --op delete --mode target --tid "$tid" --force
	done
	tgtadm -C "$TGT_C" --op delete --mode system >/dev/null 2>&1
	wait_for 5 sh -c "! kill -0 $TGT_PID 2>/dev/null" || kill -KILL "$TGT_PID" 2>/dev/null
}

# tgt_target TID IQN FILE [readonly] : a target with LUN 1 backed by FILE
tgt_target() {
	tgtadm -C "$TGT_C" --lld iscsi --op new --mode target --tid "$1" -T "$2" &&
		tgtadm -C "$TGT_C" --lld iscsi --op new --mode logicalunit --tid "$1" --lun 1 -b "$3" &&
		if [ "${4:-}" = readonly ]; then
			tgtadm -C "$TGT_C" --lld iscsi --op update --mode logicalunit --tid "$1" --lun 1 \
				--params readonly=1
		fi
}

# tgt_machine_ready SOCK PREFIX MACHINE: the LUN 1 path of MACHINE's target in the
# tgtd on control socket SOCK (goldcached's naming: targets/iqn.c), once
# its CHAP account and its initiator ACL are bound too (logins are admitted only
# then), else "".
tgt_machine_ready() {
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
