#!/usr/bin/env bash
# make lint: cppcheck, clang-tidy (allow-listed checks, .clang-tidy), shellcheck,
# clang-format check and the banned-function grep. `tests/lint.sh quick` runs the
# fast subset CI runs before the suite (banned calls, shellcheck, format).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
mode=${1:-full}
fail=0
mapfile -t srcs < <(git ls-files '*.c' '*.h')
mapfile -t shs < <(git ls-files '*.sh' '*.t' .ci/run .ci/install-deps tests/run-one)
mapfile -t cfiles < <(git ls-files '*.c')
read -ra pkgflags < <(pkg-config --cflags libiscsi yaml-0.1 jansson libmicrohttpd 2>/dev/null)

echo "lint: banned functions"
if grep -nE '\b(strcpy|strcat|sprintf|vsprintf|strtok|atoi|atol|system|popen|gets)\s*\(' "${srcs[@]}"; then
	echo "lint: banned function used (see STYLE.md)"
	fail=1
fi

echo "lint: shellcheck"
shellcheck -x -s bash -S warning "${shs[@]}" || fail=1

echo "lint: clang-format"
clang-format --dry-run --Werror "${srcs[@]}" || fail=1

if [ "$mode" = full ]; then
	echo "lint: cppcheck"
	cppcheck -q --error-exitcode=1 --std=c11 --inline-suppr -I. \
		--enable=warning,portability --suppress=missingIncludeSystem "${cfiles[@]}" || fail=1
	echo "lint: clang-tidy"
	for f in "${cfiles[@]}"; do
		if clang-tidy -quiet "$f" -- -std=c17 -D_GNU_SOURCE -I. "${pkgflags[@]}" 2>/dev/null |
			grep -E 'warning:|error:'; then
			fail=1
		fi
	done
fi
[ $fail -eq 0 ] && echo "lint: clean"
exit $fail
