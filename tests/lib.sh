# Shell test library: TAP output for prove, a private temp dir, and cleanup of
# everything a test started (processes by PID, network namespaces, mounts) even
# when it fails or is killed. Source it first thing in every tests/*/*.t script:
#   . "$GC_SRC/tests/lib.sh"
# shellcheck shell=bash

set -u
: "${GC_BUILD:?run tests through make check (GC_BUILD unset)}"
: "${GC_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export PATH="$GC_BUILD/bin:$PATH"

T_N=0
T_FAILED=0
T_PIDS=()
T_NETNS=()
T_CLEANUP=()
T_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gc-test.XXXXXX")
export TMPDIR="$T_DIR"

t_cleanup() {
	local i
	for ((i = ${#T_CLEANUP[@]} - 1; i >= 0; i--)); do
		eval "${T_CLEANUP[$i]}" >/dev/null 2>&1 || true
	done
	for p in "${T_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	for p in "${T_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [ -f "$T_DIR/.netns" ]; then
		mapfile -t -O "${#T_NETNS[@]}" T_NETNS <"$T_DIR/.netns"
	fi
	for n in "${T_NETNS[@]}"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
		ip netns del "$n" 2>/dev/null || true
	done
	if [ -z "${GC_KEEP:-}" ]; then
		rm -rf "$T_DIR"
	else
		echo "# kept $T_DIR" >&2
	fi
}
trap t_cleanup EXIT
trap 'exit 130' INT TERM

# on_exit CMD: run CMD (a string) at exit, last registered first.
on_exit() { T_CLEANUP+=("$1"); }
# track PID: kill it at exit.
track() { T_PIDS+=("$1"); }

ok() {
	local rc=$1
	shift
	T_N=$((T_N + 1))
	if [ "$rc" -eq 0 ]; then
		echo "ok $T_N - $*"
	else
		echo "not ok $T_N - $*"
		T_FAILED=$((T_FAILED + 1))
	fi
	return "$rc"
}
# t_run DESC CMD...: ok when CMD exits 0; its output goes to the test log on failure.
t_run() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	ok $rc "$desc" || printf '%s\n' "$out" | sed 's/^/#   /' | tail -n 30
	return $rc
}
# t_fails DESC CMD...: ok when CMD exits non-zero; its output is kept in T_OUT.
t_fails() {
	local desc=$1 rc
	shift
	T_OUT=$("$@" 2>&1)
	rc=$?
	if [ $rc -ne 0 ]; then ok 0 "$desc"; else
		ok 1 "$desc (exited 0)"
		printf '%s\n' "$T_OUT" | sed 's/^/#   /' | tail -n 20
	fi
}
# is GOT WANT DESC
is() {
	if [ "$1" = "$2" ]; then ok 0 "$3"; else
		ok 1 "$3"
		echo "#   got '$1', want '$2'"
	fi
}
# like TEXT REGEX DESC
like() {
	if printf '%s' "$1" | grep -Eq -- "$2"; then ok 0 "$3"; else
		ok 1 "$3"
		printf '%s\n' "$1" | head -n 20 | sed 's/^/#   got: /'
		echo "#   want match: $2"
	fi
}
diag() { echo "# $*"; }
bail() {
	echo "Bail out! $*"
	exit 1
}
# need CMD...: a missing prerequisite is a failure, never a silent skip.
need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || bail "missing prerequisite '$c' (run make deps)"
	done
}
done_testing() {
	echo "1..$T_N"
	[ "$T_FAILED" -eq 0 ]
}

# wait_for TIMEOUT_S CMD...: poll until CMD succeeds; non-zero on timeout.
wait_for() {
	local limit=$1 i=0
	shift
	while ! "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -ge $((limit * 10)) ] && return 1
		sleep 0.1
	done
}

# free_port: a TCP port no socket on this host listens on (for private
# goldcached, tgtd and HTTP instances on loopback).
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		if ! ss -Htln "sport = :$p" | grep -q .; then
			echo "$p"
			return
		fi
	done
}

# netns_new NAME: a private network namespace, removed at exit. Prints its name;
# usually called as ns=$(netns_new lab), i.e. in a subshell, so the name is
# recorded in a file the exit trap reads, not in a variable.
netns_new() {
	local n="gc$$-$1"
	if [ -e "/run/netns/$n" ]; then
		n="gc$$-$RANDOM-$1"
	fi
	ip netns add "$n" || bail "cannot create network namespace $n"
	echo "$n" >>"$T_DIR/.netns"
	ip -n "$n" link set lo up
	echo "$n"
}
