# Shell helpers for goldagent tests: start `goldagent serve` in the background
# (tracked, killed at exit), wait for its sockets, stop it cleanly or kill -9.
# shellcheck shell=bash

AGENT_PID=
# agent_serve LOG ARGS...: starts goldagent serve ARGS, output to LOG; waits
# until every --*-socket it was given accepts connections.
agent_serve() {
	local log=$1 a socks=() prev=
	shift
	for a in "$@"; do
		case "$prev" in --gold-socket | --volume-socket) socks+=("$a") ;; esac
		prev=$a
	done
	for a in "${socks[@]}"; do rm -f "$a"; done
	goldagent serve "$@" >>"$log" 2>&1 &
	AGENT_PID=$!
	track "$AGENT_PID"
	for a in "${socks[@]}"; do
		wait_for 20 test -S "$a" || {
			echo "# goldagent serve did not come up:" && sed 's/^/#   /' "$log" | tail -20
			return 1
		}
	done
}
# agent_stop: SIGTERM (clean stop: maps flushed, volume closed), wait.
agent_stop() {
	[ -n "$AGENT_PID" ] || return 0
	kill -TERM "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID"
	local rc=$?
	AGENT_PID=
	return $rc
}
# agent_kill: kill -9, as a power cut would stop it.
agent_kill() {
	[ -n "$AGENT_PID" ] || return 0
	kill -KILL "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=
}
# agent_store_image DIR CHUNK: imports DIR/src.img as image "deb" into a new
# store DIR/store with CHUNK-sized chunks, writes its manifest to DIR/m.txt
# and goldctl's export (the reference for byte-identity) to DIR/export.img.
agent_store_image() {
	goldctl --store "$1/store" store init >/dev/null || bail "store init"
	goldctl --store "$1/store" image import --chunk-size "$2" deb "$1/src.img" >/dev/null || bail "import"
	goldctl --store "$1/store" image manifest deb >"$1/m.txt" || bail "manifest"
	goldctl --store "$1/store" image export deb "$1/export.img" >/dev/null || bail "export"
}
# agent_json_field CACHE FIELD: one field of `goldagent status --json`.
agent_json_field() {
	goldagent status --json --cache "$1" | jq -r "$2"
}
# agent_undirty_data CACHE IMAGE: prints how many blocks of IMAGE (the volume
# read back, which began all zero) hold data but are not in CACHE's dirty map.
agent_undirty_data() {
	local ranges
	ranges=$(goldagent cache dirty "$1") || return 1
	perl -e '
		my ($bs) = $ARGV[1] =~ /dirty block size (\d+)/ or die "no block size";
		my @r = map { [split] } grep { !/^#/ } split /\n/, $ARGV[1];
		open(my $f, "<", $ARGV[0]) or die; binmode $f;
		my ($b, $buf, $bad) = (0, "", 0);
		while (read($f, $buf, $bs)) {
			if ($buf =~ /[^\0]/) {
				my $off = $b * $bs;
				$bad++ unless grep { $off >= $_->[0] && $off < $_->[0] + $_->[1] } @r;
			}
			$b++;
		}
		print $bad;' "$2" "$ranges"
}

# nbd_mountns URL SCRIPT: runs SCRIPT (bash) in a private mount namespace with the
# NBD export at URL attached as a loop device at $loop over nbdfuse (mount point
# $T_DIR/mnt is free for SCRIPT to use); unmounts and detaches at the end.
nbd_mountns() {
	mkdir -p "$T_DIR/fuse" "$T_DIR/mnt"
	cat >"$T_DIR/ns.sh" <<NS
set -eu
nbdfuse -P "$T_DIR/fuse.pid" "$T_DIR/fuse" "$1" &
fpid=\$!
for i in \$(seq 100); do [ -s "$T_DIR/fuse.pid" ] && break; sleep 0.1; done
loop=\$(losetup -f --show "$T_DIR/fuse/nbd")
cleanup() { umount "$T_DIR/mnt" 2>/dev/null || true; losetup -d "\$loop" 2>/dev/null || true
	fusermount3 -u "$T_DIR/fuse" 2>/dev/null || true; wait \$fpid 2>/dev/null || true; }
trap cleanup EXIT
$2
NS
	rm -f "$T_DIR/fuse.pid"
	unshare -m --propagation private bash "$T_DIR/ns.sh"
}
