# image-build shared helpers: paths, the .deb cache, input stamps, the lock, and the
# ldd-based copy of a dynamically linked binary into a root tree.
#
# Everything is built under $IB_OUT (default build/images of the source tree, which
# git ignores; GC_IMAGES overrides it). Downloaded packages are kept in $IB_OUT/debs
# under the names apt-get download gives them, so a rerun with the same package
# versions never downloads again. Each product is rebuilt only when the hash of its
# inputs (scripts, package versions, options) differs from the hash stored beside it
# in PRODUCT.inputs. One builder runs at a time per $IB_OUT (flock on $IB_OUT/.lock).
#
# Source it: . "$(dirname "$0")/common.sh"
# shellcheck shell=bash

set -euo pipefail

IB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IB_SRC=$(cd "$IB_DIR/.." && pwd)
IB_OUT=${GC_IMAGES:-$IB_SRC/build/images}
IB_DEBS=$IB_OUT/debs
mkdir -p "$IB_OUT" "$IB_DEBS"

ib_log() { echo "image-build: $*" >&2; }
ib_die() {
	echo "image-build: error: $*" >&2
	exit 1
}

# ib_lock: serialise builders sharing $IB_OUT; nested scripts inherit the lock.
ib_lock() {
	[ -n "${IB_LOCKED:-}" ] && return 0
	exec 9>"$IB_OUT/.lock"
	flock 9
	export IB_LOCKED=1
}

# ib_need CMD...: the host tools a builder runs.
ib_need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || ib_die "'$c' not found (run: make deps)"
	done
}

IB_APT_UPDATED=0
# ib_apt_update: refresh apt's lists once per run (apt-get download needs them; a fresh
# machine or a cleaned /var/lib/apt/lists has none).
ib_apt_update() {
	[ "$IB_APT_UPDATED" = 1 ] && return 0
	[ "$(id -u)" = 0 ] || ib_die "apt's package lists are missing and updating them needs root (run: apt-get update)"
	ib_log "running apt-get update"
	apt-get update -q >&2 || ib_die "apt-get update failed"
	IB_APT_UPDATED=1
}

# Package resolution is cached in $IB_OUT/apt-resolved, keyed by a fingerprint of
# apt's lists and sources: asking apt-cache costs seconds on a loaded machine, and a
# candidate version can only change when those files do.
ib_apt_fingerprint() {
	{
		# some of these may not exist: stat says so and the rest still counts
		stat -c '%n %Y %s' /var/lib/apt/lists/*_Packages* /etc/apt/sources.list \
			/etc/apt/sources.list.d/* /etc/apt/preferences /etc/apt/preferences.d/* 2>/dev/null || true
	} | sha256sum | cut -d' ' -f1
}

# ib_resolve PKG...: make sure each PKG has a line "PKG VERSION ARCH FIRST-DEPENDENCY"
# in the cache, asking apt-cache once for all that are missing.
ib_resolve() {
	local cache=$IB_OUT/apt-resolved fp p recs
	local -a missing=()
	fp=$(ib_apt_fingerprint)
	[ "$(head -n 1 "$cache" 2>/dev/null)" = "$fp" ] || echo "$fp" >"$cache"
	for p in "$@"; do
		grep -q "^$p " "$cache" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	recs=$(apt-cache show --no-all-versions "${missing[@]}" 2>/dev/null || true)
	if [ -z "$recs" ] || [ "$(grep -c '^Package: ' <<<"$recs")" -lt ${#missing[@]} ]; then
		ib_apt_update
		fp=$(ib_apt_fingerprint)
		echo "$fp" >"$cache"
		missing=("$@")
		recs=$(apt-cache show --no-all-versions "${missing[@]}" 2>/dev/null || true)
	fi
	awk '
		/^Package: / { p = $2; v = ""; a = ""; d = "-" }
		/^Version: / { v = $2 }
		/^Architecture: / { a = $2 }
		/^Depends: / { d = $2; sub(/,.*/, "", d) }
		/^$/ { if (p != "") print p, v, a, d; p = "" }
		END { if (p != "") print p, v, a, d }
	' <<<"$recs" >>"$cache"
	for p in "$@"; do
		grep -q "^$p " "$cache" || ib_die "package '$p' is unknown to apt (check the configured Debian mirror)"
	done
}

# ib_apt_field PKG N: field N of PKG's cached resolution (2 version, 3 arch, 4 dependency).
ib_apt_field() {
	ib_resolve "$1"
	awk -v p="$1" -v n="$2" '$1 == p { print $n; exit }' "$IB_OUT/apt-resolved"
}

# ib_deb_version PKG: the candidate version apt would download.
ib_deb_version() { ib_apt_field "$1" 2; }

# ib_deb PKG: prints the path of PKG's .deb in the cache, downloading it when absent.
ib_deb() {
	local pkg=$1 ver arch file
	ver=$(ib_deb_version "$pkg")
	arch=$(ib_apt_field "$pkg" 3)
	file=$IB_DEBS/${pkg}_${ver//:/%3a}_${arch}.deb
	if [ ! -s "$file" ]; then
		ib_log "downloading $pkg $ver"
		# apt-get download writes into the current directory; as root it warns that
		# the _apt user cannot write there: harmless, and quiet it.
		if ! (cd "$IB_DEBS" && apt-get download -q "$pkg=$ver" 2>&1 | grep -v 'unsandboxed as root' >&2; exit "${PIPESTATUS[0]}"); then
			ib_apt_update
			(cd "$IB_DEBS" && apt-get download -q "$pkg=$ver" >&2) || ib_die "cannot download $pkg $ver"
		fi
		[ -s "$file" ] || ib_die "apt-get download $pkg did not produce $file"
	fi
	echo "$file"
}

# ib_unpack PKG DIR: the package's files unpacked into DIR (once per version).
ib_unpack() {
	local pkg=$1 dir=$2 deb
	deb=$(ib_deb "$pkg")
	if [ "$(cat "$dir/.deb-$pkg" 2>/dev/null)" != "$(basename "$deb")" ]; then
		mkdir -p "$dir"
		dpkg -x "$deb" "$dir"
		basename "$deb" >"$dir/.deb-$pkg"
	fi
}

# ib_inputs_hash WORDS...: a hash of strings and, for existing files, their contents.
ib_inputs_hash() {
	local w
	for w in "$@"; do
		if [ -f "$w" ]; then
			printf 'file %s ' "$(basename "$w")"
			sha256sum <"$w"
		elif [ -d "$w" ]; then
			printf 'dir %s\n' "$(basename "$w")"
			(cd "$w" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
		else
			printf 'word %s\n' "$w"
		fi
	done | sha256sum | cut -d' ' -f1
}

# ib_up_to_date PRODUCT HASH: true when PRODUCT exists and was built from HASH.
ib_up_to_date() {
	[ -e "$1" ] && [ "$(cat "$1.inputs" 2>/dev/null)" = "$2" ]
}
ib_mark_built() { echo "$2" >"$1.inputs"; }

# ib_kmod_tools: depmod/modprobe for building, from the kmod .deb (the build host may
# have no kmod installed). Sets IB_DEPMOD and IB_MODPROBE (commands as arrays).
ib_kmod_tools() {
	local t=$IB_OUT/tools
	ib_unpack kmod "$t"
	ib_unpack libkmod2 "$t"
	IB_KMOD_ENV=(env "LD_LIBRARY_PATH=$t/lib/x86_64-linux-gnu:$t/usr/lib/x86_64-linux-gnu")
	# kmod dispatches on argv[0]; the .deb's symlinks are absolute (/bin/kmod), so
	# make relative ones that reach the unpacked binary.
	mkdir -p "$t/kbin"
	ln -sf ../bin/kmod "$t/kbin/depmod"
	ln -sf ../bin/kmod "$t/kbin/modprobe"
	IB_DEPMOD=("${IB_KMOD_ENV[@]}" "$t/kbin/depmod")
	# shellcheck disable=SC2034 # used by the builders that source this file
	IB_MODPROBE=("${IB_KMOD_ENV[@]}" "$t/kbin/modprobe")
	"${IB_DEPMOD[@]}" --version >/dev/null 2>&1 || ib_die "the unpacked kmod does not run ($t/kbin/depmod)"
}

# ib_copy_binary BIN ROOT [LIBDIR...]: copy BIN to the same path under ROOT with every
# shared library ldd resolves for it (and the dynamic loader), so it runs in ROOT.
# LIBDIRs are searched first (libraries unpacked from .debs that the host lacks).
# A library ldd cannot find is an error, never a binary that fails at boot.
ib_copy_binary() {
	local bin=$1 root=$2 dest libpath="" d line lib
	shift 2
	for d in "$@"; do libpath=${libpath:+$libpath:}$d; done
	[ -x "$bin" ] || ib_die "'$bin' is not an executable"
	dest=$root/${IB_BIN_DEST:-$bin}
	mkdir -p "$(dirname "$dest")"
	cp -L "$bin" "$dest"
	local out
	out=$(LD_LIBRARY_PATH=$libpath ldd "$bin" 2>&1) || {
		# "not a dynamic executable": static, nothing else to copy.
		case "$out" in *"not a dynamic executable"*) return 0 ;; esac
		ib_die "ldd '$bin' failed: $out"
	}
	while IFS= read -r line; do
		case "$line" in
		*"not found"*) ib_die "'$bin' needs a library that is not available: ${line%% =>*}" ;;
		*"=> "/*) lib=${line#*=> }; lib=${lib%% (*} ;;
		*/ld-linux*) lib=${line%% (*}; lib=${lib//[[:space:]]/} ;;
		*) continue ;;
		esac
		# keep the library's name as the loader looks it up, under the standard
		# multiarch directory (the loader's default search path in the initramfs)
		case "$lib" in
		*/ld-linux*) mkdir -p "$root/lib64" "$root/lib/x86_64-linux-gnu"
			cp -L "$lib" "$root/lib/x86_64-linux-gnu/$(basename "$lib")"
			ln -sf "/lib/x86_64-linux-gnu/$(basename "$lib")" "$root/lib64/$(basename "$lib")" ;;
		*) mkdir -p "$root/lib/x86_64-linux-gnu"
			cp -L "$lib" "$root/lib/x86_64-linux-gnu/$(basename "$lib")" ;;
		esac
	done <<<"$out"
}
