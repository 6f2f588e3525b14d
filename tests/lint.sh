#!/usr/bin/env bash
# make lint: cppcheck, clang-tidy (allow-listed checks, .clang-tidy), shellcheck,
# clang-format check and the banned-function grep. `tests/lint.sh quick` runs the
# fast subset CI runs before the suite (banned calls, shellcheck, format).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
fail=0
srcs=$(git ls-files '*.c' '*.h' 2>/dev/null)
shs=$(git ls-files '*.sh' '*.t' .ci/run .ci/install-deps tests/run-one 2>/dev/null)

echo "lint: banned functions"
if grep -nE '\b(strcpy|strcat|sprintf|vsprintf|strtok|atoi|atol|system|popen|gets)\s*\(' $srcs; then
	echo "lint: banned function used (see STYLE.md)"
	fail=1
fi

echo "lint: shellcheck"
# shellcheck disable=SC2086
shellcheck -x -s bash -e SC1090,SC1091,SC2317 $shs || fail=1

echo "lint: clang-format"
# shellcheck disable=SC2086
clang-format --dry-run --Werror $srcs || fail=1

if [ "$mode" = full ]; then
	echo "lint: cppcheck"
	# shellcheck disable=SC2086
	cppcheck -q --error-exitcode=1 --std=c11 --inline-suppr -I. \
		--enable=warning,portability --suppress=missingIncludeSystem $srcs || fail=1
	echo "lint: clang-tidy"
	for f in $(git ls-files '*.c'); do
		clang-tidy -quiet "$f" -- -std=c17 -D_GNU_SOURCE -I. $(pkg-config --cflags libiscsi yaml-0.1 jansson 2>/dev/null) \
			2>/dev/null | grep -E 'warning:|error:' && fail=1
	done
fi
[ $fail -eq 0 ] && echo "lint: clean"
exit $fail
