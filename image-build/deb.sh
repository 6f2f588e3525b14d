#!/usr/bin/env bash
# Unpacks a Debian package (apt-get download + dpkg -x, cached) and prints the folder,
# for tests and builders that need one program from Debian without installing it on
# the host, e.g.:  nbd_server=$(image-build/deb.sh nbd-server)/bin/nbd-server
#
# Usage: image-build/deb.sh PKG        (folder: build/images/pkgs/PKG)
. "$(dirname "$0")/common.sh"
[ $# -eq 1 ] || ib_die "usage: $0 PKG"
ib_lock
ib_unpack "$1" "$IB_OUT/pkgs/$1"
echo "$IB_OUT/pkgs/$1"
