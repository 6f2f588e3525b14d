#!/usr/bin/env bash
# goldagent bootdisk on the host: on a blank disk image `prepare` writes the goldcache
# layout (MBR with GCBOOT + cache partition, a FAT that fsck.fat accepts, SYSLINUX
# installed), leaves a disk holding anything else untouched (byte for byte) unless
# forced, and a crash before its MBR write leaves a disk that reads as blank; `update`
# against the real goldcached (GET /boot/images/IMAGE/sums) installs the image's
# kernel + initramfs into the free slot with the previous pair kept as the
# "previous" entry, refuses a kernel that is not a bzImage or not the running
# release, and after a crash at every rename and fsync it injects
# (GOLDCACHE_FAULT) syslinux.cfg still names only complete, matching files.
# (vfat itself is not on the host kernel: GCBOOT's files go to a directory here;
# tests/e2e/bootdisk.t runs the same code on the guest's vfat.)
. "$GC_SRC/tests/lib.sh"
need goldagent goldcached curl jq mkfs.fat syslinux mdir fsck.fat fatlabel partx sha256sum

D=$T_DIR
MB=1048576
REL=6.1.0-gctest-amd64

# fake_kernel OUT TAG: a file with a bzImage setup header ("HdrS" at 0x202, the
# kernel_version pointer at 0x20e) naming release $REL (or $3)
fake_kernel() {
	head -c $((MB + 4096)) /dev/urandom >"$1"
	printf 'HdrS' | dd of="$1" bs=1 seek=$((0x202)) conv=notrunc status=none
	printf '\x00\x10' | dd of="$1" bs=1 seek=$((0x20e)) conv=notrunc status=none # 0x1000
	printf '%s (%s@test) #1 SMP\0' "${3:-$REL}" "$2" |
		dd of="$1" bs=1 seek=$((0x1200)) conv=notrunc status=none
}
sha() { sha256sum "$1" | cut -c1-64; }
mbr_type() { od -An -tx1 -j $((446 + 16 * ($2 - 1) + 4)) -N 1 "$1" | tr -d ' '; }

# --- 1. prepare: a blank disk gets the layout
truncate -s 96M "$D/disk.img"
like "$(goldagent bootdisk probe "$D/disk.img")" '^blank: ' "probe: a zeroed image file is blank"
is "$(goldagent bootdisk prepare --boot-size 40M "$D/disk.img" 2>"$D/prep.err")" created \
	"prepare lays a blank disk out" || sed 's/^/#   /' "$D/prep.err"
is "$(mbr_type "$D/disk.img" 1) $(mbr_type "$D/disk.img" 2)" "0e da" \
	"MBR: partition 1 FAT16 LBA (GCBOOT), partition 2 type 0xda (cache)"
is "$(od -An -c -j 440 -N 4 "$D/disk.img" | tr -d ' ')" gcld "MBR: disk signature 'gcld'"
is "$(partx -g -o START,SECTORS "$D/disk.img" | tr -s ' ' | sed 's/^ //' | tr '\n' ' ')" \
	"2048 81920 83968 112640 " "partx reads GCBOOT at 1 MiB (40 MiB) and the cache after it, to the end"
like "$(goldagent bootdisk probe "$D/disk.img")" '^goldcache: the goldcache layout \(GCBOOT 40 MiB, cache 55 MiB\)' \
	"probe: the goldcache layout"
dd if="$D/disk.img" of="$D/p1.img" bs=1M skip=1 count=40 status=none
t_run "fsck.fat accepts GCBOOT" fsck.fat -n "$D/p1.img"
like "$(MTOOLS_SKIP_CHECK=1 mdir -a -i "$D/p1.img" ::/ 2>&1)" "ldlinux +sys" "SYSLINUX is installed on GCBOOT"
is "$(fatlabel "$D/p1.img" 2>/dev/null)" GCBOOT "GCBOOT is its label"
# a large disk (sparse): mkfs.fat must still make the small FAT16 GCBOOT
truncate -s 4G "$D/big.img"
is "$(goldagent bootdisk prepare --boot-size 64M "$D/big.img" 2>"$D/big.err")" created \
	"prepare lays a 4 GiB blank disk out (GCBOOT stays FAT16)" || sed 's/^/#   /' "$D/big.err"
rm -f "$D/big.img"
before=$(sha "$D/disk.img")
is "$(goldagent bootdisk prepare "$D/disk.img")" present "prepare again: the layout is present"
is "$(sha "$D/disk.img")" "$before" "and nothing was written"

# --- 2. a disk that holds something else is never touched, unless forced
truncate -s 96M "$D/ext4.img"
mkfs.ext4 -q -F "$D/ext4.img"
truncate -s 96M "$D/mbr.img"
printf '\x00\xfe\xff\xff\x83\xfe\xff\xff\x00\x08\x00\x00\x00\x00\x01\x00' |
	dd of="$D/mbr.img" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$D/mbr.img" bs=1 seek=510 conv=notrunc status=none
cp "$D/mbr.img" "$D/gpt.img"
printf '\xee' | dd of="$D/gpt.img" bs=1 seek=450 conv=notrunc status=none
for k in ext4:"data in its first MiB \\(no partition table" mbr:"an MBR partition table \(types 0x83\)" gpt:"a GPT"; do
	f=$D/${k%%:*}.img
	before=$(sha "$f")
	goldagent bootdisk prepare "$f" >/dev/null 2>"$D/refuse.err"
	is $? 3 "prepare refuses the ${k%%:*} disk (exit 3)"
	like "$(cat "$D/refuse.err")" "holds ${k#*:}.*not touching it.*disk_init=force" \
		"and says what the disk holds and how to force it"
	is "$(sha "$f")" "$before" "the ${k%%:*} disk is byte for byte unchanged"
done
is "$(goldagent bootdisk prepare --force --boot-size 40M "$D/gpt.img" 2>/dev/null)" created "--force lays the GPT disk out"
like "$(goldagent bootdisk probe "$D/gpt.img")" '^goldcache: ' "it now has the goldcache layout"

# --- 3. crashes in prepare: before the MBR commit the disk is still blank
for f in write:1 fsync:1 fsync:2; do
	truncate -s 0 "$D/c.img"
	truncate -s 96M "$D/c.img"
	GOLDCACHE_FAULT=$f:crash goldagent bootdisk prepare --boot-size 40M "$D/c.img" >/dev/null 2>&1
	rc=$?
	kind=$(goldagent bootdisk probe "$D/c.img" | cut -d: -f1)
	case $f in
	fsync:2) want=goldcache ;; # the MBR is written, its flush crashed: the process's write stands
	*) want=blank ;;
	esac
	is "$rc $kind" "137 $want" "crash at $f in prepare: the disk reads as $want"
	is "$(goldagent bootdisk prepare --boot-size 40M "$D/c.img" 2>/dev/null)" \
		"$([ $want = blank ] && echo created || echo present)" "and the next prepare completes it"
done
# forced over data, crash while clearing: never half of two layouts
truncate -s 0 "$D/c.img"
truncate -s 96M "$D/c.img"
mkfs.ext4 -q -F "$D/c.img"
GOLDCACHE_FAULT=write:2:crash goldagent bootdisk prepare --force "$D/c.img" >/dev/null 2>&1
like "$(goldagent bootdisk probe "$D/c.img")" '^(blank|foreign): ' "crash while clearing a forced disk: not a goldcache layout"
is "$(goldagent bootdisk prepare --force --boot-size 40M "$D/c.img" 2>/dev/null)" created "the next forced prepare completes it"

# --- 4. update against the real goldcached
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
mkdir -p "$D/store" "$D/state" "$D/tftp" "$D/boot"
fake_kernel "$D/k1" one
head -c $((2 * MB)) /dev/urandom >"$D/i1"
cp "$D/k1" "$D/kernel"
cp "$D/i1" "$D/initrd"
cat >"$D/goldcache.yaml" <<YAML
appliance:
  interface: lo
  listen: 127.0.0.1
  http_port: $PORT
  dhcp: {mode: off}
  tftp_root: $D/tftp
  iscsi: {portal: 127.0.0.1:$(free_port), iqn_prefix: iqn.2026-11.org.example.bootdisk}
  store_dir: $D/store
  state_dir: $D/state
images:
  - {name: deb, version: current, kernel: $D/kernel, initrd: $D/initrd}
  - {name: nokernel, version: current}
profiles:
  - {name: desk, image: deb, mode: cache}
YAML
goldcached -c "$D/goldcache.yaml" --log "$D/goldcached.log" &
track $!
wait_for 20 curl -sf "$URL/api/v1/health" || bail "goldcached did not start: $(tail -n 5 "$D/goldcached.log")"
s=$(curl -sf "$URL/boot/images/deb/sums")
is "$(jq -r '.kernel.sha256 + " " + (.kernel.size|tostring) + " " + .kernel.path' <<<"$s")" \
	"$(sha "$D/kernel") $(stat -c %s "$D/kernel") /boot/images/deb/kernel" \
	"GET /boot/images/deb/sums: the kernel's sha256, size and path"
is "$(jq -r .initrd.sha256 <<<"$s")" "$(sha "$D/initrd")" "and the initrd's"
is "$(curl -s -o /dev/null -w '%{http_code}' "$URL/boot/images/nokernel/sums")" 404 "an image with no boot files: 404"

printf 'BOOT_IMAGE=/b/vmlinuz initrd=initrd.img BOOTIF=01-52-54-00-12-34-56 console=ttyS0 goldcache.url=%s goldcache.machine=pc1 goldcache.disk=/dev/vda goldcache.disk_init=force goldcache.local_args=goldcache-tiny.poweroff=1,goldcache-tiny.stay=30\n' \
	"$URL" >"$D/cmdline"
up() { goldagent bootdisk update --dir "$D/boot" --url "$URL" --image deb --kernel-release "$REL" "$@"; }
is "$(up --cmdline "$D/cmdline" 2>"$D/up.err")" "installed slot a" "update on an empty GCBOOT: the pair goes to slot a" ||
	sed 's/^/#   /' "$D/up.err"
is "$(goldagent bootdisk check "$D/boot")" "goldcache a ok" "check: the default entry's files match what syslinux.cfg records"
cfg=$(cat "$D/boot/syslinux.cfg")
like "$cfg" "LABEL goldcache
  LINUX /a/vmlinuz
  INITRD /a/initrd.img
  APPEND console=ttyS0 goldcache.url=$URL goldcache.machine=pc1 goldcache.disk=/dev/vda goldcache-tiny.poweroff=1 goldcache-tiny.stay=30
" "syslinux.cfg: the machine's arguments without the network boot's (BOOTIF, initrd, BOOT_IMAGE, disk_init), goldcache.local_args added"
grep -q "LABEL previous" <<<"$cfg"
is $? 1 "no previous entry yet"
is "$(sha "$D/boot/a/vmlinuz") $(sha "$D/boot/a/initrd.img")" "$(sha "$D/k1") $(sha "$D/i1")" "slot a holds the appliance's kernel and initrd"
is "$(up --cmdline "$D/cmdline")" current "update again: current (nothing written)"
is "$(up --append "console=ttyS0 quiet")" config "other arguments: only syslinux.cfg is rewritten"
like "$(cat "$D/boot/syslinux.cfg")" "APPEND console=ttyS0 quiet" "with them"

# the appliance's image gets a new kernel and initramfs: slot b, slot a stays as previous
fake_kernel "$D/k2" two
head -c $((2 * MB)) /dev/urandom >"$D/i2"
cp "$D/k2" "$D/kernel"
cp "$D/i2" "$D/initrd"
is "$(up --cmdline "$D/cmdline" 2>/dev/null)" "installed slot b" "a new pair on the appliance goes to slot b"
is "$(goldagent bootdisk check "$D/boot" | tr '\n' ' ')" "goldcache b ok previous a ok " "default b, previous a, both sound"
is "$(sha "$D/boot/a/vmlinuz")" "$(sha "$D/k1")" "the previous pair is the one that was the default"
like "$(cat "$D/boot/syslinux.cfg")" "LABEL previous
  LINUX /a/vmlinuz
  INITRD /a/initrd.img" "syslinux.cfg: a 'previous' entry boots it"

# refusals: nothing changes
snap() { (cd "$D/boot" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum; }
before=$(snap)
fake_kernel "$D/kernel" three 6.2.0-other-amd64
up --cmdline "$D/cmdline" >/dev/null 2>"$D/up.err"
is $? 1 "a kernel of another release than the running one is refused"
like "$(cat "$D/up.err")" "is release 6.2.0-other-amd64, this boot runs $REL" "and the error says which"
head -c $MB /dev/urandom >"$D/kernel"
up --cmdline "$D/cmdline" >/dev/null 2>"$D/up.err"
like "$? $(cat "$D/up.err")" "^1 .*is not a Linux bzImage" "a kernel that is no bzImage is refused"
is "$(snap)" "$before" "GCBOOT is unchanged by both refusals"

# --- 5. crashes and I/O errors in update: syslinux.cfg names only complete pairs
fake_kernel "$D/k3" three
head -c $((2 * MB)) /dev/urandom >"$D/i3"
cp "$D/k3" "$D/kernel"
cp "$D/i3" "$D/initrd"
cp -a "$D/boot" "$D/boot.saved"
n=0 bad=0 newseen=0 oldseen=0
for f in rename:1 rename:2 rename:3 rename:4 fsync:1 fsync:2 fsync:3 fsync:4 fsync:5 fsync:6 fsync:7 fsync:8 write:1 write:2 write:3; do
	for what in crash EIO; do
		rm -rf "${D:?}/boot"
		cp -a "$D/boot.saved" "$D/boot"
		GOLDCACHE_FAULT=$f:$what up --cmdline "$D/cmdline" >/dev/null 2>&1
		rc=$?
		n=$((n + 1))
		if ! goldagent bootdisk check "$D/boot" >"$D/check.out"; then
			bad=$((bad + 1))
			diag "after $f:$what (exit $rc): $(tr '\n' ' ' <"$D/check.out")"
		fi
		case "$(sed -n 's/^# goldcache-bootdisk entry goldcache \([ab]\) \([0-9a-f]*\) .*/\1 \2/p' "$D/boot/syslinux.cfg")" in
		"a $(sha "$D/k3")") newseen=$((newseen + 1)) ;;
		"b $(sha "$D/k2")") oldseen=$((oldseen + 1)) ;;
		*) bad=$((bad + 1)); diag "after $f:$what: default entry is neither the old nor the new pair" ;;
		esac
		# the next update (no fault) converges on the new pair
		up --cmdline "$D/cmdline" >/dev/null 2>&1 && goldagent bootdisk check "$D/boot" >/dev/null &&
			[ "$(sha "$D/boot/a/vmlinuz")" = "$(sha "$D/k3")" ] || {
			bad=$((bad + 1))
			diag "after $f:$what: the next update did not converge"
		}
		[ -z "$(find "$D/boot" -name '*.tmp.*')" ] || { bad=$((bad + 1)); diag "after $f:$what: temp files left"; }
	done
done
is "$bad" 0 "$n injected crashes and I/O errors in update: the default entry always boots a complete pair (old: $oldseen, new: $newseen), the next update converges, no temp file survives it"
ok $((oldseen > 0 && newseen > 0 ? 0 : 1)) "the faults hit both before and after the commit"

done_testing
