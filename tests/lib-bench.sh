# Shell helpers for bench/*.sh: the lab of tests/lib-attach.sh (goldcached +
# its tgtd on loopback ports, machines with machine volumes) and the cleanup of
# tests/lib.sh (processes by PID, the temp dir), so a benchmark measures the
# same appliance the tests prove. A bench sources it first thing:
#   . "$(dirname "$0")/../tests/lib-bench.sh" NAME
# It sets D (the temp dir, removed at exit) and PATH (GC_BUILD/bin first).
# shellcheck shell=bash
: "${GC_BUILD:?run through make bench}"
BENCH_NAME=${1:?lib-bench.sh NAME}
# shellcheck source=tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/lib-attach.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib-attach.sh"
D=$T_DIR

# bench_need CMD...: exits naming the first missing command
bench_need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || {
			echo "$BENCH_NAME: missing $c (run make deps)" >&2
			exit 1
		}
	done
}

# bench_lab GOLD_IMAGE: attach_lab in $D with GOLD_IMAGE as image deb (the
# ATTACH_* settings apply), goldcached started and serving every LUN, each
# machine's API token in $D/a/MACHINE.token; goldcached is stopped at exit.
bench_lab() {
	mkdir -p "$D/a"
	attach_lab "$D" "$1" || {
		echo "$BENCH_NAME: import of $1 failed" >&2
		exit 1
	}
	on_exit attach_gc_stop
	attach_gc_start "$D" || {
		tail -n 5 "$D/goldcached.log" >&2
		echo "$BENCH_NAME: goldcached did not serve its LUNs (log above)" >&2
		exit 1
	}
	local m
	for m in $ATTACH_MACHINES; do
		attach_token "$D/a" "$m"
	done
}
