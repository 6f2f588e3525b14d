# Issue 5's story, step by step, shared by tests/e2e/story.t and `make demo`
# (image-build/story.sh). Source after tests/lib.sh, lib-lab.sh, lib-qemu.sh and
# lib-e2e.sh. Every step asserts what it shows (TAP through lib.sh) and prints its
# timing; a step that cannot run because a piece of goldcache is missing says
# "step N not available: WHY" and the story stops there (story_unavailable), never
# pretending. Every process is started here (tracked by PID), everything lives in
# the lab's network namespace, and tests/lib.sh's exit trap removes it all.
#
#   story_setup            images (tiny, or Debian minbase with STORY_IMAGE=debian),
#                          the lab (netns, bridge, taps), config/demo.yaml filled in,
#                          goldcached started, the image imported, laptop1's disk
#   story_step1 .. story_step5
#   story_unavailable N WHY
#
# The machines: laptop1 (MAC1) lives the story; laptop2 (MAC2) is restored from
# laptop1's snapshot in step 4. Their disks start blank: at the first (network)
# boot goldagent lays them out (goldcache.disk=/dev/vda, agent/bootdisk.c: GCBOOT
# partition with SYSLINUX, this boot's kernel and initramfs, syslinux.cfg with the
# machine's arguments; partition 2: goldagent's cache, /dev/vda2, created by
# goldagent attach), so the offline reboot runs what goldagent wrote.
# shellcheck shell=bash

STORY_IMAGE=${STORY_IMAGE:-tiny}
# the image's console prefix and file names (image-build/tiny/init,
# image-build/debian/goldcache-image speak the same protocol)
STORY_TAG=goldcache-$STORY_IMAGE
STORY_MAC1=52:54:00:77:05:01
STORY_MAC2=52:54:00:77:05:02
STORY_URL="http://$LAB_ADDR:$LAB_HTTP_PORT"
STORY_GCLOG=$T_DIR/goldcached.log
STORY_ACCESS=$T_DIR/state/access.log
STORY_T0=$(date +%s%N)
STORY_STEP_T0=$STORY_T0
STORY_STEP=0
STORY_TIMES=()
STORY_MISSING=()

story_ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
story_secs() { printf '%d.%d' $(($1 / 1000)) $((($1 % 1000) / 100)); }

# story_begin N TITLE
story_begin() {
	STORY_STEP=$1
	STORY_STEP_T0=$(date +%s%N)
	diag ""
	diag "=== step $1: $2"
}

# story_end: the step's time, kept for the summary
story_end() {
	local ms
	ms=$(story_ms "$STORY_STEP_T0")
	STORY_TIMES+=("step $STORY_STEP: $(story_secs "$ms") s")
	diag "=== step $STORY_STEP done in $(story_secs "$ms") s (story so far $(story_secs "$(story_ms "$STORY_T0")") s)"
}

# story_mark LABEL: a timestamped line inside a step
story_mark() { diag "  [+$(story_secs "$(story_ms "$STORY_STEP_T0")") s] $*"; }

story_unavailable() {
	diag "step $1 not available: $2"
	ok 1 "step $1 not available: $2"
	STORY_MISSING+=("$1")
	# STORY_CONTINUE=1 (image-build/story.sh --continue): go on with the steps that
	# do not need this one's result, to see them run; the story still fails
	[ "${STORY_CONTINUE:-}" = 1 ] && [ "$1" = 4 ] && return 0
	story_summary
	done_testing
	exit 1
}

story_summary() {
	local t
	diag ""
	diag "story timings ($STORY_IMAGE image):"
	for t in "${STORY_TIMES[@]}"; do diag "  $t"; done
	[ ${#STORY_MISSING[@]} = 0 ] || diag "steps not available: ${STORY_MISSING[*]}"
}

# story_fail WHAT: a step's check did not hold; the story cannot go on
story_fail() {
	diag "step $STORY_STEP failed: $1"
	story_summary
	done_testing
	exit 1
}

# story_qemu NAME MAC DISK BOOT LOG: a machine on its tap (gcst-NAME) with its disk;
# BOOT n (PXE) or c (its own disk). Sets STORY_PID.
story_qemu() {
	local name=$1 mac=$2 disk=$3 boot=$4 log=$5
	: >"$log"
	ip netns exec "$LAB_NS" qemu-system-x86_64 -accel tcg -cpu max -m "${GC_QEMU_MEM:-384}" \
		-display none -no-reboot -boot "$boot" -nodefaults -serial "file:$log" -monitor none \
		-netdev "tap,id=n0,ifname=st-$name,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=n0,mac=$mac" \
		-drive "file=$disk,if=virtio,format=raw" >"$log.qemu" 2>&1 </dev/null &
	STORY_PID=$!
	track "$STORY_PID"
	# shellcheck disable=SC2034 # e2e_timeline reads it
	LAB_QEMU_T0=$(date +%s%N)
}

# story_wait LOG REGEX SECS: 0 when LOG matches (serial logs hold \r)
story_wait() {
	local log=$1 re=$2 secs=$3 i=0
	until tr -d '\r' <"$log" 2>/dev/null | grep -Eq -- "$re"; do
		i=$((i + 1))
		[ $i -ge $((secs * 5)) ] && return 1
		if [ -n "${STORY_PID:-}" ] && ! kill -0 "$STORY_PID" 2>/dev/null; then
			tr -d '\r' <"$log" | grep -Eq -- "$re" && return 0
			return 1
		fi
		sleep 0.2
	done
}

story_tail() { tr -d '\r' <"$1" 2>/dev/null | tail -n "${2:-25}" | awk '{ print "#   serial: " $0 }'; }

# story_stop_qemu: power cut (TERM, then KILL), by PID
story_stop_qemu() {
	[ -n "${STORY_PID:-}" ] || return 0
	kill -TERM "$STORY_PID" 2>/dev/null
	for _ in $(seq 25); do kill -0 "$STORY_PID" 2>/dev/null || break; sleep 0.2; done
	kill -KILL "$STORY_PID" 2>/dev/null
	wait "$STORY_PID" 2>/dev/null
	STORY_PID=""
}

# story_wait_exit SECS: the guest powered itself off in time
story_wait_exit() {
	local i=0
	while kill -0 "$STORY_PID" 2>/dev/null; do
		i=$((i + 1))
		[ $i -ge $(($1 * 5)) ] && return 1
		sleep 0.2
	done
	wait "$STORY_PID" 2>/dev/null
	STORY_PID=""
}

# story_cache_status DISK: goldagent status of the cache on DISK's partition 2, read
# from a copy (the machine may be running: its disk is not touched)
story_cache_status() {
	local disk=$1 start
	start=$(sfdisk_start "$disk")
	dd if="$disk" of="$T_DIR/cache-peek.img" bs=1M skip=$((start / 2048)) status=none conv=sparse
	goldagent status ${2:+"$2"} --cache "$T_DIR/cache-peek.img" 2>&1
}

# sfdisk_start DISK: the start sector of partition 2 (from the MBR, no tools needed)
sfdisk_start() {
	od -An -t u4 -j $((446 + 16 + 8)) -N 4 "$1" | tr -d ' '
}

story_gc_start() {
	e2e_goldcached "$T_DIR/goldcache.yaml" "$STORY_GCLOG"
	STORY_GC_PID=$E2E_GC_PID
}

story_gc_stop() {
	kill -TERM "$STORY_GC_PID" 2>/dev/null
	wait_for 30 sh -c "! kill -0 $STORY_GC_PID 2>/dev/null"
	local r=$?
	wait "$STORY_GC_PID" 2>/dev/null
	return $r
}

# story_disk NAME OUT: the machine's local disk, blank (all zeros, sparse): goldagent
# lays it out at the first network boot
story_disk() {
	rm -f "$2"
	truncate -s "${STORY_DISK_MB}M" "$2"
}

story_setup() {
	local t0 gold
	need goldcached goldctl goldagent qemu-system-x86_64 tgtd tgtadm dnsmasq curl jq od dd
	story_begin 0 "set-up: images, lab, appliance ($STORY_IMAGE image)"
	qemu_images initramfs
	case "$STORY_IMAGE" in
	tiny)
		qemu_images tiny
		gold=$GC_IMAGES/tiny.ext4 STORY_DISK_MB=192 STORY_BOOT_S=180 ;;
	debian)
		[ -s "$GC_IMAGES/debian-minbase.ext4" ] ||
			bash "$GC_SRC/image-build/debian-rootfs.sh" >"$T_DIR/debian.log" 2>&1 ||
			bail "image-build/debian-rootfs.sh failed (log $T_DIR/debian.log)"
		gold=$GC_IMAGES/debian-minbase.ext4 STORY_DISK_MB=$((3 * $(stat -c %s "$gold") / 1048576 + 160)) STORY_BOOT_S=900
		export GC_QEMU_MEM=${GC_QEMU_MEM:-768} ;;
	*) bail "STORY_IMAGE must be tiny or debian" ;;
	esac
	zcat "$GC_IMAGES/initramfs.img" | cpio -t --quiet 2>/dev/null | grep -qx sbin/goldagent ||
		bail "the initramfs has no sbin/goldagent (build goldagent first: make)"
	story_mark "images ready: $(basename "$gold") $(($(stat -c %s "$gold") / 1048576)) MiB, kernel, initramfs with goldagent"
	lab_new
	lab_tap st-laptop1
	lab_tap st-laptop2
	mkdir -p "$T_DIR/store" "$T_DIR/state" "$T_DIR/tftp"
	sed -e "s|@BRIDGE@|$LAB_BR|g; s|@ADDR@|$LAB_ADDR|g; s|@HTTP_PORT@|$LAB_HTTP_PORT|g" \
		-e "s|@RANGE@|10.77.0.100-10.77.0.199|g; s|@DIR@|$T_DIR|g; s|@IMAGES@|$GC_IMAGES|g" \
		-e "s|@IMAGE@|$STORY_IMAGE|g; s|@SYNC@|${STORY_SYNC:-10}s|g; s|@SYNC_S@|${STORY_SYNC:-10}|g" \
		-e "s|@MAC1@|$STORY_MAC1|g; s|@MAC2@|$STORY_MAC2|g; s|@STAY@|${STORY_STAY:-30}|g; s|@TAG@|$STORY_TAG|g" \
		"$GC_SRC/config/demo.yaml" >"$T_DIR/goldcache.yaml"
	t_run "config/demo.yaml filled in for this lab is valid" \
		ip netns exec "$LAB_NS" goldcached --check -c "$T_DIR/goldcache.yaml"
	t0=$(date +%s%N)
	STORY_VER=$(goldctl --store "$T_DIR/store" image import "$STORY_IMAGE" "$gold" 2>&1)
	is "$STORY_VER" "$STORY_IMAGE@1" "goldctl image import $STORY_IMAGE (in $(story_secs "$(story_ms "$t0")") s)"
	story_gc_start
	ok 0 "goldcached runs in the lab namespace (dnsmasq, tgtd, HTTP on $STORY_URL)"
	t_run "laptop1's local disk: blank ($STORY_DISK_MB MiB, goldagent lays it out)" story_disk laptop1 "$T_DIR/laptop1.img"
	story_end
}

# --- 1. PXE boot: running from the streamed gold image while the cache fills
story_step1() {
	local S=$T_DIR/laptop1-boot1.serial st pct first="" api
	story_begin 1 "laptop1 PXE-boots and runs from the streamed gold image (cache mode)"
	story_qemu laptop1 "$STORY_MAC1" "$T_DIR/laptop1.img" n "$S"
	e2e_timeline "$STORY_BOOT_S" \
		"dhcp@$STORY_GCLOG=DHCPACK\\($LAB_BR\\) [0-9.]+ $STORY_MAC1" \
		"script@$STORY_ACCESS=GET /boot\\.ipxe\\?mac=52-54-00-77-05-01 " \
		"initrd@$STORY_ACCESS=GET /boot/images/$STORY_IMAGE/initrd " \
		"initramfs@$S=goldcache: stage cmdline url=$STORY_URL machine=laptop1 mode=cache cache=/dev/vda2" \
		"appliance@$S=goldcache: stage appliance reachable" \
		"agent@$S=goldcache: stage agent pid" \
		"nbd@$S=goldcache: stage nbd gold=/dev/nbd0 volume=/dev/nbd1" \
		"root@$S=goldcache: stage root lower=/dev/nbd0 upper=volume" \
		"image-up@$S=$STORY_TAG: up"
	ok $? "firmware -> dnsmasq -> iPXE -> goldcached -> initramfs -> goldagent attach -> overlay root" ||
		{ story_tail "$S"; story_fail "laptop1 did not boot from the appliance"; }
	story_mark "laptop1 runs from the gold image over NBD from goldagent"
	like "$(grep "GET /api/v1/machines/laptop1/enroll\\|POST /api/v1/machines/laptop1/enroll" "$STORY_ACCESS")" " 200 " \
		"access log: laptop1's goldagent enrolled"
	like "$(grep -E ' /api/v1/machines/laptop1/iscsi ' "$STORY_ACCESS")" " 200 " \
		"access log: goldagent fetched its iSCSI login"
	like "$(grep -E ' /api/v1/images/[^ ]*manifest' "$STORY_ACCESS")" " 200 " \
		"access log: goldagent fetched the manifest"
	# the cache on laptop1's disk fills while it runs
	for _ in $(seq "$STORY_BOOT_S"); do
		st=$(story_cache_status "$T_DIR/laptop1.img" --json)
		pct=$(jq -r '.active_slot as $a | .slots[] | select(.slot == $a) |
			"\(.hydrated_pct)% (\(.present)/\(.chunks) chunks)"' <<<"$st" 2>/dev/null)
		[ -n "$pct" ] && [ -z "$first" ] && first=$pct && story_mark "goldagent status: cache on /dev/vda2 ${pct} hydrated"
		[ "$(jq -r '.mode // empty' <<<"$st" 2>/dev/null)" = offline-ready ] && break
		sleep 1
	done
	story_mark "goldagent status: cache on /dev/vda2 ${pct:-?} hydrated, mode $(jq -r '.mode' <<<"$st" 2>/dev/null)"
	is "$(jq -r .mode <<<"$st" 2>/dev/null)" offline-ready "goldagent status: the cache is complete (offline-ready)" ||
		{ diag "$st"; story_fail "the cache did not fill"; }
	story_wait "$S" "$STORY_TAG: goldagent alive" 120
	ok $? "goldagent keeps running under the booted image"
	[ "$STORY_IMAGE" = tiny ] ||
		like "$(tr -d '\r' <"$S")" "$STORY_TAG: up overlay" "the Debian image reached multi-user on the overlay root"
	# what the appliance knows: goldagent reports its state when it attaches
	api=$(ip netns exec "$LAB_NS" goldctl --json machine show laptop1 --url "$STORY_URL" \
		--token-file "$T_DIR/state/admin.token" 2>/dev/null)
	story_mark "goldctl machine show laptop1: state $(jq -c '.state | {hydrated_pct, cache_complete, mode}' <<<"$api" 2>/dev/null)"
	like "$(jq -r '.state.mode' <<<"$api" 2>/dev/null)" '^cache$' \
		"goldctl machine show (API): goldagent reported its state (hydrated % at attach, mode cache)"
	story_end
}

# --- 2. appliance unreachable; reboot from the own disk; offline; a file written
story_step2() {
	local S=$T_DIR/laptop1-boot2.serial
	story_begin 2 "cache complete; appliance stopped; laptop1 reboots from its own disk and works offline"
	story_stop_qemu
	story_mark "laptop1 powered off (power cut)"
	story_gc_stop
	ok $? "goldcached stopped: the appliance is unreachable"
	is "$(ip netns pids "$LAB_NS" | xargs -r ps -o comm= -p | grep -c -E 'dnsmasq|tgtd|goldcached')" 0 \
		"no dnsmasq, tgtd or goldcached left in the lab"
	story_qemu laptop1 "$STORY_MAC1" "$T_DIR/laptop1.img" c "$S"
	e2e_timeline 240 \
		"syslinux@$S=SYSLINUX" \
		"initramfs@$S=goldcache: stage cmdline url=$STORY_URL machine=laptop1 mode=cache cache=/dev/vda2" \
		"unreachable@$S=goldcache: stage appliance unreachable" \
		"agent@$S=goldcache: stage agent pid" \
		"root@$S=goldcache: stage root lower=/dev/nbd0 upper=volume" \
		"image-up@$S=$STORY_TAG: up" \
		"wrote@$S=$STORY_TAG: logged boot"
	ok $? "offline boot from the local disk: SYSLINUX -> initramfs -> goldagent from the cache -> overlay root" ||
		{ story_tail "$S"; story_fail "laptop1 did not boot offline"; }
	STORY_OFFLINE_LINE=$(tr -d '\r' <"$S" | sed -n "s/^$STORY_TAG: logged boot \\([0-9]*\\)\$/boot \\1/p" | tail -n 1)
	like "$STORY_OFFLINE_LINE" '^boot [0-9]+$' "laptop1 logged its offline boot in /$STORY_TAG.boots"
	story_mark "laptop1 wrote a file offline: '$STORY_OFFLINE_LINE' in /$STORY_TAG.boots"
	story_wait "$S" "$STORY_TAG: powering off" 90
	story_wait_exit 60
	ok $? "laptop1 powered off after writing (sync first)"
	STORY_WRITTEN=$(story_cache_status "$T_DIR/laptop1.img" --json | jq -r .dirty_blocks)
	like "$STORY_WRITTEN" '^[1-9][0-9]*$' "goldagent status: the offline writes are dirty blocks ($STORY_WRITTEN) waiting for sync"
	story_end
}

# --- 3. appliance back; the machine syncs; goldctl shows the snapshot with the file
story_step3() {
	local S=$T_DIR/laptop1-boot3.serial snaps n=0 n0 snap files t3 st
	story_begin 3 "appliance back; laptop1 boots from its disk and syncs; the snapshot holds the file"
	t3=$(date +%s)
	# snapshots from step 1's online syncs, if any: step 3 needs a newer one (by id:
	# the profile's retention caps their number)
	n0=$(goldctl --store "$T_DIR/store" --json machine snapshots laptop1 2>/dev/null |
		jq 'map(.snapshot) | max // 0' 2>/dev/null)
	n0=${n0:-0}
	story_mark "laptop1's newest snapshot before the offline boot: ${n0/#0/none}"
	story_gc_start
	ok 0 "goldcached running again"
	story_qemu laptop1 "$STORY_MAC1" "$T_DIR/laptop1.img" c "$S"
	e2e_timeline 240 \
		"syslinux@$S=SYSLINUX" \
		"appliance@$S=goldcache: stage appliance reachable" \
		"agent@$S=goldcache: stage agent pid|goldagent attach exited" \
		"image-up@$S=$STORY_TAG: up"
	if [ $? != 0 ] || tr -d '\r' <"$S" | grep -q 'goldagent attach exited'; then
		story_tail "$S" 12
		story_stop_qemu
		story_unavailable 3 "laptop1's goldagent could not attach online after the offline reboot (serial above)"
	fi
	ok 0 "laptop1 boots from its own disk, online again"
	story_mark "waiting for goldagent's periodic sync (every ${STORY_SYNC:-10} s)"
	for _ in $(seq 120); do
		snaps=$(goldctl --store "$T_DIR/store" --json machine snapshots laptop1 2>/dev/null)
		n=$(jq 'map(.snapshot) | max // 0' <<<"$snaps" 2>/dev/null || echo 0)
		[ "${n:-0}" -gt "$n0" ] && break
		sleep 1
	done
	if [ "${n:-0}" -le "$n0" ]; then
		story_stop_qemu
		story_unavailable 3 "laptop1's goldagent did not sync within 120 s of booting online"
	fi
	story_mark "snapshot committed"
	like "$(grep -E ' /api/v1/machines/laptop1/commit ' "$STORY_ACCESS")" "POST .* 202 " \
		"access log: laptop1's goldagent committed its upload"
	goldctl --store "$T_DIR/store" machine snapshots laptop1 | sed 's/^/#   /'
	ok 0 "goldctl machine snapshots laptop1 shows a new snapshot (laptop1@$n)"
	story_wait "$S" "$STORY_TAG: powering off" 90
	story_wait_exit 60 || story_stop_qemu
	# the agent, running on after switch_root, recorded the acknowledged commit:
	# dirty bits cleared and the base kept for the next, incremental, sync
	st=$(story_cache_status "$T_DIR/laptop1.img" --json)
	like "$(jq -r .last_sync <<<"$st")" '^[0-9]+$' "goldagent status: last sync recorded in the cache" &&
		ok "$([ "$(jq -r .last_sync <<<"$st")" -ge "$t3" ] && echo 0 || echo 1)" \
			"the cache records this boot's acknowledged sync (dirty bits cleared after the commit)"
	like "$(goldctl --store "$T_DIR/store" --json machine snapshots laptop1 | jq -r 'max_by(.snapshot) | .parent')" \
		'^[1-9][0-9]*$' "the newest snapshot is incremental: it has a parent (the agent kept its sync base)"
	# the latest snapshot: the file the offline boot (step 2) logged must be in it
	snap=$(goldctl --store "$T_DIR/store" --json machine snapshots laptop1 | jq -r 'max_by(.snapshot) | .snapshot')
	t_run "goldctl machine export laptop1@$snap" goldctl --store "$T_DIR/store" machine export "laptop1@$snap" "$T_DIR/laptop1-snap.img"
	mkdir -p "$T_DIR/mnt"
	files=$(unshare -m --propagation private sh -c \
		"mount -o ro,noload,loop '$T_DIR/laptop1-snap.img' '$T_DIR/mnt' && cat '$T_DIR/mnt/upper/$STORY_TAG.boots'" 2>&1)
	printf '%s\n' "$files" | sed "s|^|#   snapshot upper/$STORY_TAG.boots: |"
	like "$files" "^$STORY_OFFLINE_LINE at " \
		"the snapshot (mounted read-only) holds the line laptop1 wrote offline: '$STORY_OFFLINE_LINE'"
	STORY_SNAP=$snap
	story_end
}

# --- 4. a second machine restored from that snapshot sees the file
story_step4() {
	local S=$T_DIR/laptop2-boot1.serial api
	story_begin 4 "laptop2 is restored from laptop1's snapshot and sees the file"
	t_run "goldctl machine restore laptop2 --from laptop1@$STORY_SNAP" \
		ip netns exec "$LAB_NS" goldctl machine restore laptop2 --from "laptop1@$STORY_SNAP" --url "$STORY_URL" \
		--token-file "$T_DIR/state/admin.token"
	t_run "laptop2's local disk: blank ($STORY_DISK_MB MiB, goldagent lays it out)" story_disk laptop2 "$T_DIR/laptop2.img"
	story_qemu laptop2 "$STORY_MAC2" "$T_DIR/laptop2.img" n "$S"
	e2e_timeline 240 \
		"script@$STORY_ACCESS=GET /boot\\.ipxe\\?mac=52-54-00-77-05-02 " \
		"agent@$S=goldcache: stage agent pid|goldagent attach exited" \
		"image-up@$S=$STORY_TAG: logged boot"
	ok $? "laptop2 PXE-boots into the gold image" ||
		{ story_tail "$S"; story_stop_qemu; story_fail "laptop2 did not boot"; }
	story_stop_qemu
	story_mark "$(grep -a -m1 -o "restore LUN file laptop1@$STORY_SNAP ready.*" "$T_DIR/goldcached.log")"
	story_mark "$(grep -a -m1 -o "machine 'laptop2': order [0-9]* carried out.*" "$T_DIR/goldcached.log")"
	tr -d '\r' <"$S" | grep -q "$STORY_TAG: logged boot [2-9]"
	ok $? "laptop2's volume continues laptop1's boot log (restored by goldagent attach from LUN 3)" ||
		{ story_tail "$S" 12; story_fail "laptop2 came up without laptop1's volume"; }
	# goldagent acknowledged the order: cleared, and LUN 3 is no longer asked for
	api=$(ip netns exec "$LAB_NS" goldctl --json machine show laptop2 --url "$STORY_URL" \
		--token-file "$T_DIR/state/admin.token" 2>/dev/null)
	is "$(jq -c .hydrate <<<"$api" 2>/dev/null)" null "the restore order is acknowledged and cleared"
	story_end
}

# --- 5. goldctl machine vm boots the snapshot as a VM on the appliance
story_step5() {
	local out
	story_begin 5 "goldctl machine vm laptop1 boots the snapshot as a VM"
	timeout 600 goldctl machine vm -c "$T_DIR/goldcache.yaml" --work-dir "$T_DIR/vm" --accel tcg -m "${GC_QEMU_MEM:-384}" --no-net \
		--append "$STORY_TAG.show=/$STORY_TAG.boots $STORY_TAG.poweroff=1" "laptop1@$STORY_SNAP" \
		</dev/null >"$T_DIR/vm.console" 2>"$T_DIR/vm.err"
	is $? 0 "goldctl machine vm: the VM ran and powered off" || sed 's/^/#   /' "$T_DIR/vm.err"
	out=$(tr -d '\r' <"$T_DIR/vm.console")
	like "$out" "$STORY_TAG: show /$STORY_TAG.boots: " "the VM's image shows the snapshot's boot log" ||
		{ story_tail "$T_DIR/vm.console"; sed 's/^/#   vm.err: /' "$T_DIR/vm.err"; }
	# the file's lines: the first on the show line, the others on their own
	like "$out" "(^|$STORY_TAG: show /$STORY_TAG.boots: )$STORY_OFFLINE_LINE at " \
		"the VM sees the file laptop1 wrote offline"
	story_mark "$(grep -a 'booting' "$T_DIR/vm.err" | head -n 1)"
	story_mark "VM console: $(printf '%s\n' "$out" | grep -a -m1 "$STORY_TAG: show")"
	story_end
}
