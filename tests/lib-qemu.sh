# QEMU helpers for the end-to-end tests (source after tests/lib.sh):
#   qemu_images [initramfs|initramfs-plain|tiny|all]
#                                      build what the test boots (downloads .debs once):
#                                      initramfs: $GC_IMAGES/initramfs.img, with goldagent
#                                      when $GC_BUILD/bin/goldagent exists (as make images);
#                                      initramfs-plain: initramfs-plain.img, never an agent
#   qemu_start NAME ARGS...            start a guest (TCG), serial console to a log file
#   qemu_boot_args INITRD APPEND       -kernel/-initrd/-append for a direct kernel boot
#   qemu_wait REGEX [TIMEOUT_S]        wait until the serial log matches REGEX
#   qemu_wait_exit [TIMEOUT_S]         wait until the guest powers off
#   qemu_stop                          stop the guest (by PID)
#   qemu_log                           the serial log so far
#   qemu_agent_initramfs GOLD NAME VOLSIZE OUT
#                                      an initramfs whose "goldagent attach" is the real
#                                      goldagent serving GOLD (the guest's /dev/vda) from
#                                      a cache on /dev/vdb (until attach exists)
# The guest runs as a child of the test, tracked by PID; set QEMU_NETNS to start it
# inside a network namespace (for a tap device made there). Images come from
# GC_IMAGES (default build/images of the source tree), shared by all test runs.
# shellcheck shell=bash

GC_IMAGES=${GC_IMAGES:-$GC_SRC/build/images}
export GC_IMAGES
QEMU_PID=""
QEMU_LOG=""
QEMU_NETNS=${QEMU_NETNS:-}

# qemu_images WHAT: build the images a test needs through image-build (idempotent; a
# fresh machine downloads the packages once). A build failure fails the test.
qemu_images() {
	local what=${1:-initramfs} log=$T_DIR/image-build.log
	case "$what" in
	initramfs)
		if [ -x "$GC_BUILD/bin/goldagent" ]; then
			bash "$GC_SRC/image-build/initramfs.sh" --agent "$GC_BUILD/bin/goldagent"
		else
			bash "$GC_SRC/image-build/initramfs.sh"
		fi >"$log" 2>&1 ;;
	initramfs-plain) bash "$GC_SRC/image-build/initramfs.sh" --out "$GC_IMAGES/initramfs-plain.img" >"$log" 2>&1 ;;
	tiny) bash "$GC_SRC/image-build/tiny-rootfs.sh" >"$log" 2>&1 ;;
	all) bash "$GC_SRC/image-build/build-all.sh" >"$log" 2>&1 ;;
	*) bail "qemu_images: unknown set '$what'" ;;
	esac || {
		sed 's/^/#   /' "$log" | tail -n 30
		bail "image-build ($what) failed"
	}
}

# qemu_boot_args INITRD APPEND: arguments for a direct kernel boot on the serial console.
qemu_boot_args() {
	# shellcheck disable=SC2034 # the caller passes "${QEMU_BOOT_ARGS[@]}"
	QEMU_BOOT_ARGS=(-kernel "$GC_IMAGES/vmlinuz" -initrd "$1"
		-append "console=ttyS0 panic=-1 $2")
}

# qemu_start NAME ARGS...: a guest with the base options (TCG, 512 MiB, no display,
# no reboot), its serial console in $T_DIR/NAME.serial; sets QEMU_PID and QEMU_LOG.
qemu_start() {
	local name=$1
	shift
	need qemu-system-x86_64
	QEMU_LOG=$T_DIR/$name.serial
	: >"$QEMU_LOG"
	local cmd=(qemu-system-x86_64 -accel tcg -cpu max -m "${GC_QEMU_MEM:-512}"
		-display none -monitor none -serial "file:$QEMU_LOG" -no-reboot "$@")
	if [ -n "$QEMU_NETNS" ]; then
		cmd=(ip netns exec "$QEMU_NETNS" "${cmd[@]}")
	fi
	"${cmd[@]}" </dev/null >"$T_DIR/$name.qemu.out" 2>&1 &
	QEMU_PID=$!
	track "$QEMU_PID"
	diag "qemu $name started (pid $QEMU_PID)"
}

qemu_log() { tr -d '\r' <"$QEMU_LOG" 2>/dev/null; }

# qemu_wait REGEX [TIMEOUT_S]: 0 when the serial log matches; 1 on timeout or when the
# guest ended first (then the log tail goes to the test output).
qemu_wait() {
	local re=$1 limit=${2:-90} i=0
	while ! tr -d '\r' <"$QEMU_LOG" | grep -Eq -- "$re"; do
		if ! kill -0 "$QEMU_PID" 2>/dev/null; then
			# one more look: the guest may have written the line and powered off
			tr -d '\r' <"$QEMU_LOG" | grep -Eq -- "$re" && return 0
			diag "guest ended before '$re'"
			qemu_tail
			return 1
		fi
		i=$((i + 1))
		if [ $i -ge $((limit * 5)) ]; then
			diag "no '$re' within ${limit}s"
			qemu_tail
			return 1
		fi
		sleep 0.2
	done
}

qemu_tail() {
	tr -d '\r' <"$QEMU_LOG" 2>/dev/null | tail -n 25 | sed 's/^/#   serial: /'
	sed 's/^/#   qemu: /' "$T_DIR"/*.qemu.out 2>/dev/null | tail -n 5
}

# qemu_wait_exit [TIMEOUT_S]: 0 when the guest process ended (poweroff) in time.
qemu_wait_exit() {
	local limit=${1:-30} i=0
	while kill -0 "$QEMU_PID" 2>/dev/null; do
		i=$((i + 1))
		[ $i -ge $((limit * 5)) ] && return 1
		sleep 0.2
	done
	wait "$QEMU_PID" 2>/dev/null || true
}

# qemu_stop: TERM, then KILL after 5 s; only the PID this test started.
qemu_stop() {
	[ -n "$QEMU_PID" ] || return 0
	kill -TERM "$QEMU_PID" 2>/dev/null || return 0
	qemu_wait_exit 5 || kill -KILL "$QEMU_PID" 2>/dev/null
	wait "$QEMU_PID" 2>/dev/null || true
}

# qemu_stage_time NAME: the guest uptime (s) at which /init announced stage NAME.
qemu_stage_time() {
	qemu_log | sed -n "s/^goldcache: stage $1 .*t=\([0-9.]*\).*/\1/p; s/^goldcache: stage $1 t=\([0-9.]*\).*/\1/p" | head -n 1
}

# qemu_agent_initramfs GOLD NAME VOLSIZE OUT: an initramfs (OUT) with the real goldagent
# behind a stand-in for "goldagent attach" (not written yet): it initialises the cache
# on the guest's /dev/vdb when it has none (image NAME@1, 1 MiB chunks, a VOLSIZE
# machine volume), then runs "goldagent serve" with the bytes of /dev/vda (the gold
# image GOLD, standing in for the appliance's LUN) as chunk source, checked against
# GOLD's SHA-256 list computed here. GOLD's size must be a multiple of 1 MiB.
qemu_agent_initramfs() {
	local gold=$1 name=$2 volsize=$3 out=$4 chunks i hashes script
	need goldagent
	chunks=$(($(stat -c %s "$gold") / 1048576))
	hashes=$(for ((i = 0; i < chunks; i++)); do
		dd if="$gold" bs=1M skip=$i count=1 status=none | sha256sum | cut -c1-64
	done)
	script=$T_DIR/goldagent-attach
	cat >"$script" <<STANDIN
#!/bin/sh
# stand-in for "goldagent attach": cache on /dev/vdb, gold hydrated from /dev/vda
[ "\$1" = attach ] || exec /sbin/goldagent.bin "\$@"
shift
rundir=/run/goldcache/agent
while [ \$# -gt 1 ]; do
	[ "\$1" = --run-dir ] && rundir=\$2
	shift 2
done
cache=/dev/vdb
if ! /sbin/goldagent.bin status --cache "\$cache" >/dev/null 2>&1; then
	echo "goldagent-attach: initialising the cache on \$cache"
	/sbin/goldagent.bin cache init --image $name --version 1 --chunk-size 1M \\
		--size "\$(blockdev --getsize64 /dev/vda)" --volume-size $volsize "\$cache" || exit 1
fi
cat >/run/goldcache/gold.hashes <<HASHES
$hashes
HASHES
# the file source takes regular files: the stand-in LUN's bytes, in RAM
cat /dev/vda >/run/goldcache/gold.src
exec -a @goldagent /sbin/goldagent.bin serve --cache "\$cache" --gold-socket "\$rundir/gold.sock" \\
	--volume-socket "\$rundir/volume.sock" --source-file /run/goldcache/gold.src \\
	--hashes /run/goldcache/gold.hashes
STANDIN
	chmod +x "$script"
	bash "$GC_SRC/image-build/initramfs.sh" --agent "$script" \
		--add "$(command -v goldagent):/sbin/goldagent.bin" --out "$out"
}
