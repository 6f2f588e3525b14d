# Shell helpers for gold-update tests (tests/e2e/gold-update.t). Source after
# tests/lib.sh, lib-lab.sh and lib-story.sh (the story's lab: $LAB_NS, $T_DIR/state).
#
#   update_tiny_v2 IN OUT        OUT = the tiny image IN with an update written by
#                                debugfs (no mount): /etc/goldcache-release says
#                                "tiny v2", /usr/bin/goldcache-v2-tool (384 KiB) is
#                                "installed", /etc/issue is replaced
#   update_new_chunks M1 M2      how many chunks of manifest M2 are neither zero nor
#                                anywhere in manifest M1: what a gold update fetches
#   update_lun_wait MACHINE FILE SECS
#                                0 once tgtd's LUN 1 of MACHINE's target is backed by
#                                STATE/exports/FILE (an import --promote or promote
#                                reaches tgtd by goldcached's reconcile, not at once)
#   update_counter_new           an nftables counter in $LAB_NS of every byte tgtd
#                                (port 3260) sends: the image data a machine fetches
#   update_counter_reset, update_counter_bytes
# shellcheck shell=bash

update_tiny_v2() {
	local in=$1 out=$2 d=$T_DIR/update-v2
	mkdir -p "$d"
	cp "$in" "$out"
	echo "tiny v2" >"$d/release"
	printf 'goldcache tiny gold image, version 2\n' >"$d/issue"
	head -c $((384 * 1024)) /dev/urandom >"$d/tool.bin"
	debugfs -w -f - "$out" >"$d/debugfs.log" 2>&1 <<-CMDS
		write $d/release /etc/goldcache-release
		rm /etc/issue
		write $d/issue /etc/issue
		write $d/tool.bin /usr/bin/goldcache-v2-tool
	CMDS
	# debugfs exits 0 whatever its commands did: read the update back
	if [ "$(debugfs -R 'cat /etc/goldcache-release' "$out" 2>/dev/null)" != "tiny v2" ] ||
		! debugfs -R 'cat /usr/bin/goldcache-v2-tool' "$out" 2>/dev/null | cmp -s - "$d/tool.bin"; then
		sed 's/^/#   debugfs: /' "$d/debugfs.log"
		return 1
	fi
}

update_new_chunks() {
	awk 'FNR == 1 { f++ } /^[0-9a-f]+$/ && length($0) == 64 {
		if (f == 1) seen[$0] = 1; else if (!seen[$0]) n++ } END { print n + 0 }' "$1" "$2"
}

update_lun_wait() {
	local machine=$1 file=$2 i=0
	until TGT_IPC_SOCKET="$T_DIR/state/run/tgtd.sock" tgtadm -C 0 --lld iscsi --op show --mode target 2>/dev/null |
		awk -v t=":m.$machine" '/^Target [0-9]+: / { on = (substr($3, length($3) - length(t) + 1) == t) }
			on && /^ +LUN: / { lun = $2 } on && lun == 1 && /Backing store path:/ { print $4 }' |
		grep -q "/exports/$file\$"; do
		i=$((i + 1))
		[ $i -ge $(($3 * 5)) ] && return 1
		sleep 0.2
	done
}

update_counter_new() {
	ip netns exec "$LAB_NS" nft -f - <<-NFT
		table inet gcupdate {
			counter tgtd_out {}
			chain out {
				type filter hook output priority 0;
				tcp sport 3260 counter name tgtd_out
			}
		}
	NFT
}
update_counter_reset() { ip netns exec "$LAB_NS" nft reset counter inet gcupdate tgtd_out >/dev/null; }
update_counter_bytes() {
	ip netns exec "$LAB_NS" nft list counter inet gcupdate tgtd_out | sed -n 's/.* bytes \([0-9]*\).*/\1/p'
}
