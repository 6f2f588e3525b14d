# Shell helpers for tests that need a real tgtd: a private instance in its own
# network namespace (so its portal 127.0.0.1:3260 collides with nothing), its
# control socket under the test's temp dir (TGT_IPC_SOCKET), started and
# stopped through gc-targets (the targets/ library), killed by PID at exit.
# Clients (qemu-img, qemu-io, libiscsi tools) run inside the namespace via gct_ns.
# Source after tests/lib.sh:
#   . "$GC_SRC/tests/lib-targets.sh"
# shellcheck shell=bash

GCT_PREFIX=iqn.2026-11.test.goldcache
GCT_PORTAL=127.0.0.1:3260
GCT_NS=
GCT_SOCK=
GCT_PID=

# gct_lab_start: namespace + tgtd; sets GCT_NS, GCT_SOCK, GCT_PID.
gct_lab_start() {
	need tgtd tgtadm qemu-img qemu-io gc-targets
	GCT_NS=$(netns_new tgt)
	GCT_SOCK="$T_DIR/tgtipc"
	gct_start
}

# gct_start: (re)start tgtd in the lab namespace; its log goes to $T_DIR/tgtd.log.
gct_start() {
	GCT_PID=$(ip netns exec "$GCT_NS" gc-targets --socket "$GCT_SOCK" start \
		--portal "$GCT_PORTAL" --log "$T_DIR/tgtd.log") || {
		tail -n 20 "$T_DIR/tgtd.log" | sed 's/^/#   tgtd: /'
		bail "cannot start tgtd"
	}
	track "$GCT_PID"
}

# gct_kill9: kill -9 our tgtd and wait until it is gone.
gct_kill9() {
	kill -KILL "$GCT_PID" 2>/dev/null
	wait_for 10 bash -c "! kill -0 $GCT_PID 2>/dev/null"
}

# gct ARGS...: gc-targets against the lab tgtd.
gct() { gc-targets --socket "$GCT_SOCK" "$@"; }
# gct_adm ARGS...: raw tgtadm against the lab tgtd.
gct_adm() { TGT_IPC_SOCKET="$GCT_SOCK" tgtadm -C 0 --lld iscsi "$@"; }
# gct_ns CMD...: run a client inside the lab namespace.
gct_ns() { ip netns exec "$GCT_NS" "$@"; }

# gct_machine NAME: prints "TARGET_IQN INITIATOR_IQN" of a machine.
gct_machine() { gc-targets iqn "$GCT_PREFIX" "$1" | tr '\n' ' '; }

# gct_secret FILE SECRET: write a CHAP secret file (0600, no newline).
gct_secret() {
	(umask 077 && printf '%s' "$2" >"$1")
}

# gct_opts TARGET LUN INITIATOR [USER SECRETFILE]: qemu --image-opts string;
# the secret goes through a qemu secret object (see gct_qemu), not the argv.
gct_opts() {
	local o="driver=iscsi,transport=tcp,portal=$GCT_PORTAL,target=$1,lun=$2,initiator-name=$3"
	[ $# -ge 5 ] && o="$o,user=$4,password-secret=chap0"
	printf '%s' "$o"
}

# gct_qemu TOOL SECRETFILE ARGS...: run qemu-io or "qemu-img SUBCOMMAND" in the
# namespace with the CHAP secret object (SECRETFILE may be "-" for none).
gct_qemu() {
	local tool=$1 sf=$2 sub=()
	shift 2
	if [ "$tool" = qemu-img ]; then
		sub=("$1")
		shift
	fi
	if [ "$sf" = - ]; then
		gct_ns timeout 60 "$tool" "${sub[@]}" "$@"
	else
		gct_ns timeout 60 "$tool" "${sub[@]}" --object "secret,id=chap0,file=$sf" "$@"
	fi
}

# gct_login TARGET LUN INITIATOR [USER SECRETFILE]: 0 when login + open works.
gct_login() {
	local sf=-
	[ $# -ge 5 ] && sf=$5
	gct_qemu qemu-img "$sf" info --image-opts "$(gct_opts "$@")"
}

# gct_read OUT TARGET LUN INITIATOR USER SECRETFILE: the LUN's bytes into OUT.
gct_read() {
	local out=$1
	shift
	gct_qemu qemu-img "$5" convert -O raw --image-opts "$(gct_opts "$@")" "$out"
}

# gct_write TARGET LUN INITIATOR USER SECRETFILE: write 4 KiB of 0x5a at 0.
gct_write() {
	gct_qemu qemu-io "$5" -c 'write -P 0x5a 0 4096' --image-opts "$(gct_opts "$@")"
}

# gct_desired FILE MACHINE:SECRETFILE:GOLD[:UPLOAD] ...: desired-state JSON.
gct_desired() {
	local f=$1 sep="" m name sf gold up
	shift
	{
		printf '{"prefix": "%s", "targets": [\n' "$GCT_PREFIX"
		for m in "$@"; do
			IFS=: read -r name sf gold up <<<"$m"
			printf '%s {"machine": "%s", "chap_secret_file": "%s", "luns": [' \
				"$sep" "$name" "$sf"
			printf '{"lun": 1, "path": "%s", "readonly": true}' "$gold"
			[ -n "$up" ] && printf ', {"lun": 2, "path": "%s", "readonly": false}' "$up"
			printf ']}\n'
			sep=,
		done
		printf ']}\n'
	} >"$f"
}

# gct_stat JSON KEY: a field of gc-targets reconcile --json output.
gct_stat() { printf '%s' "$1" | jq -r ".$2"; }
