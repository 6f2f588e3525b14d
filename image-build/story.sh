#!/usr/bin/env bash
# Issue 5's story as a demo: runs tests/e2e/story.t (the same steps the e2e test
# asserts, tests/lib-story.sh) and prints each step, its checks and its timing.
# Exit 0 only if every step held; everything it started is stopped and the lab's
# network namespaces removed on exit (tests/lib.sh's trap), whatever happens.
#
# Usage: image-build/story.sh [--debian] [--keep] [--continue]
#   --debian  the Debian minbase gold image instead of the tiny one (built with
#             debootstrap when missing: several minutes)
#   --keep    keep the run's folder (logs, serial consoles, store) for a look
#   --continue  when step 4 is not available, go on to step 5 (it needs only step
#             3's snapshot) to see it run; the story still exits non-zero
# Needs root (network namespaces, taps); `make demo` builds and installs the rest.
set -u
: "${GC_SRC:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${GC_BUILD:=$GC_SRC/build}"
export GC_SRC GC_BUILD
while [ $# -gt 0 ]; do
	case "$1" in
	--debian) export STORY_IMAGE=debian ;;
	--keep) export GC_KEEP=1 ;;
	--continue) export STORY_CONTINUE=1 ;;
	*) echo "usage: $0 [--debian] [--keep] [--continue]" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || { echo "story: needs root (network namespaces, tap devices)" >&2; exit 1; }
[ -x "$GC_BUILD/bin/goldcached" ] || { echo "story: build first (make)" >&2; exit 1; }
export PATH="$GC_BUILD/bin:$PATH"
exec timeout -k 10 "${STORY_TIMEOUT:-1800}" bash "$GC_SRC/tests/e2e/story.t"
