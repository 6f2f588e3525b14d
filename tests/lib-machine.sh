# Helpers for the machine-lifecycle tests (OS swap, reimaging): a machine's
# target as goldcached reconciled it, and (e2e) a machine that PXE-boots again
# and again with its own disk, the iSCSI bytes the appliance sent it counted
# per boot. Source after tests/lib.sh (and, for the e2e part, lib-lab.sh,
# lib-qemu.sh, lib-e2e.sh and lib-story.sh).
#
#   tgt_machine_ready SOCK PREFIX MACHINE   (tests/lib-tgt.sh, sourced here)
#                          LUN 1's backing file of MACHINE's target once the
#                          target admits its logins (CHAP account and initiator
#                          ACL bound), else "" (tgtd's control socket SOCK)
#   machine_wait_lun SOCK PREFIX MACHINE FILE SECS
#                          waits until tgt_machine_ready says FILE
#
# e2e (QEMU through the real goldcached, dnsmasq, iPXE, tgtd; tests/lib-story.sh's
# machine helpers story_qemu/story_wait/story_stop_qemu/story_cache_status):
#   machine_setup          images (kernel, initramfs with goldagent, tiny), the lab,
#                          store and state folders; sets MACHINE_URL, MACHINE_CONF,
#                          MACHINE_GCLOG, MACHINE_ACCESS
#   machine_variant OUT MARKER
#                          the tiny image with /goldcache-image holding MARKER, written
#                          with debugfs -w into a copy (no mount)
#   machine_cmdline        the kernel command line of the lab's images: cache on the
#                          machine's /dev/vda2, agent state on its GCBOOT /dev/vda1, no
#                          periodic sync, the image shows /goldcache-image and goldagent's
#                          log on the console, stays MACHINE_STAY s (20), then powers off
#   machine_disk NAME OUT  the machine's local disk (image-build/local-disk.sh layout)
#   machine_ctl ARGS...    goldctl machine ARGS against the lab's goldcached (admin)
#   machine_show NAME      goldctl --json machine show NAME
#   machine_meter_start    counters in the lab namespace on the iSCSI portal's TCP
#                          port: bytes tgtd sent to machines, and connections opened
#   machine_meter_take     prints "BYTES CONNECTIONS" since the last take, zeroes them
#   machine_pxe NAME MAC DISK SERIAL
#                          PXE-boots the machine (tap st-NAME); waits for the tiny
#                          image's show lines (printing the time it took); 1 (serial
#                          tail shown) if it does not come up within MACHINE_BOOT_S (240)
#   machine_unlike TEXT REGEX DESC
#                          ok when TEXT has no line matching REGEX (the lines that
#                          do are shown otherwise)
#   machine_fetched SERIAL the agent's hydration line of this boot, as "SLOT CHUNKS
#                          BYTES" (from its log shown on the console), "" if none
# shellcheck shell=bash
# shellcheck disable=SC2034 # MACHINE_CONF, MACHINE_GCLOG, MACHINE_ACCESS are for the test that sources this
. "$GC_SRC/tests/lib-tgt.sh"


machine_wait_lun() {
	local i=0
	while [ "$(tgt_machine_ready "$1" "$2" "$3")" != "$4" ]; do
		i=$((i + 1))
		[ $i -ge $(($5 * 5)) ] && return 1
		sleep 0.2
	done
}

MACHINE_BOOT_S=${MACHINE_BOOT_S:-240}

machine_setup() {
	need goldcached goldctl goldagent qemu-system-x86_64 tgtd tgtadm dnsmasq curl jq od dd debugfs nft
	qemu_images initramfs
	qemu_images tiny
	lab_new
	mkdir -p "$T_DIR/store" "$T_DIR/state" "$T_DIR/tftp"
	MACHINE_URL="http://$LAB_ADDR:$LAB_HTTP_PORT"
	MACHINE_CONF=$T_DIR/goldcache.yaml
	MACHINE_GCLOG=$T_DIR/goldcached.log
	MACHINE_ACCESS=$T_DIR/state/access.log
}

machine_variant() {
	local out=$1
	cp "$GC_IMAGES/tiny.ext4" "$out" || return 1
	printf '%s\n' "$2" >"$out.marker"
	debugfs -w -R "write $out.marker goldcache-image" "$out" >"$out.debugfs" 2>&1 &&
		[ "$(debugfs -R "cat /goldcache-image" "$out" 2>/dev/null)" = "$2" ]
}

machine_cmdline() {
	echo "console=ttyS0 panic=-1 goldcache.onfail=poweroff goldcache.cache=/dev/vda2 goldcache.state=/dev/vda1 goldcache.sync=0 goldcache-tiny.show=/goldcache-image goldcache-tiny.show=/run/goldcache/agent.log goldcache-tiny.stay=${MACHINE_STAY:-20} goldcache-tiny.poweroff=1"
}

machine_disk() {
	bash "$GC_SRC/image-build/local-disk.sh" --out "$2" --size 96 --boot-size 32 \
		--kernel "$GC_IMAGES/vmlinuz" --initrd "$GC_IMAGES/initramfs.img" \
		--append "$(machine_cmdline) goldcache.url=$MACHINE_URL goldcache.machine=$1 goldcache.mode=cache" \
		>"$T_DIR/disk-$1.log" 2>&1
}

machine_ctl() {
	ip netns exec "$LAB_NS" goldctl machine "$@" --url "$MACHINE_URL" --token-file "$T_DIR/state/admin.token"
}

machine_show() {
	ip netns exec "$LAB_NS" goldctl --json machine show "$1" --url "$MACHINE_URL" \
		--token-file "$T_DIR/state/admin.token"
}

# (the table lives in the lab namespace and goes with it)
machine_meter_start() {
	ip netns exec "$LAB_NS" nft -f - <<-'NFT'
		table inet gcmeter {
			counter iscsi_bytes {}
			counter iscsi_conns {}
			chain out {
				type filter hook output priority 0;
				tcp sport 3260 counter name iscsi_bytes
			}
			chain in {
				type filter hook input priority 0;
				tcp dport 3260 tcp flags & (syn | ack) == syn counter name iscsi_conns
			}
		}
	NFT
}

machine_meter_take() {
	local b c
	b=$(ip netns exec "$LAB_NS" nft -j reset counter inet gcmeter iscsi_bytes | jq '.nftables[] | select(.counter) | .counter.bytes')
	c=$(ip netns exec "$LAB_NS" nft -j reset counter inet gcmeter iscsi_conns | jq '.nftables[] | select(.counter) | .counter.packets')
	echo "${b:-?} ${c:-?}"
}

machine_pxe() {
	local t0
	t0=$(date +%s%N)
	story_qemu "$1" "$2" "$3" n "$4"
	if ! story_wait "$4" 'goldcache-tiny: show /run/goldcache/agent.log' "$MACHINE_BOOT_S"; then
		story_tail "$4" 30
		return 1
	fi
	diag "$1: power-on to the image's console lines in $(story_secs "$(story_ms "$t0")") s"
}

machine_fetched() {
	tr -d '\r' <"$1" | sed -n 's/.*slot \([AB]\): \([0-9]*\) chunks fetched (\([0-9]*\) bytes).*/\1 \2 \3/p' | tail -n 1
}

machine_unlike() {
	local hits
	hits=$(grep -E -- "$2" <<<"$1")
	[ -z "$hits" ]
	ok $? "$3" || printf '%s\n' "$hits" | head -n 5 | sed 's/^/#   matched: /'
}
