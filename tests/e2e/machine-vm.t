#!/usr/bin/env bash
# Step 5 of the story: `goldctl machine vm NAME` boots a lost machine's last
# snapshot as a QEMU VM on the appliance. A machine volume laid out as cache
# mode lays it out (ext4 holding upper/ and work/) with /upper/root/hello.txt
# is committed as snapshot 1 of `lost-laptop` the way an agent does it (real
# goldcached + tgtd, gc-upload to its upload LUN, POST commit); the tiny image is
# the gold image, and the commit records tiny@1 beside the snapshot. The VM (TCG) boots the netboot kernel + initramfs from the
# config, the tiny image's init prints /root/hello.txt: the marker comes from
# the machine volume (upper) over the gold image (lower). The VM writes to its
# own copy, never to the store. --dry-run prints the qemu argv; unknown
# machine, no snapshot, missing kernel and no known image are clear refusals.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-qemu.sh"
need qemu-system-x86_64 mkfs.ext4 debugfs goldctl goldcached gc-upload tgtd tgtadm curl jq ss cmp

qemu_images initramfs-plain
qemu_images tiny
ok 0 "kernel, initramfs and tiny image built"

D=$T_DIR
HTTP_PORT=$(free_port)
ISCSI_PORT=$(free_port)
URL=http://127.0.0.1:$HTTP_PORT
PREFIX=iqn.2026-11.org.example.vmtest
MARKER="lost-laptop-marker-$RANDOM$RANDOM"
mkdir -p "$D/tftp" "$D/store" "$D/state"
cat >"$D/goldcache.yaml" <<-YAML
	appliance:
	  interface: lo
	  listen: 127.0.0.1
	  http_port: $HTTP_PORT
	  dhcp: {mode: off}
	  tftp_root: $D/tftp
	  iscsi: {portal: 127.0.0.1:$ISCSI_PORT, iqn_prefix: $PREFIX}
	  store_dir: $D/store
	  state_dir: $D/state
	images:
	  - name: tiny
	    version: current
	    kernel: $GC_IMAGES/vmlinuz
	    initrd: $GC_IMAGES/initramfs-plain.img
	    cmdline: "panic=-1 goldcache.onfail=poweroff goldcache-tiny.poweroff=1"
	profiles:
	  - {name: laptop, image: tiny, mode: cache, volume_size: 16M}
	machines:
	  - {mac: 52:54:00:30:00:01, name: lost-laptop, profile: laptop}
	  - {mac: 52:54:00:30:00:02, name: fresh-pc, profile: laptop}
YAML
t_run "import the tiny image as gold image 'tiny'" goldctl --store "$D/store" image import tiny "$GC_IMAGES/tiny.ext4"

# the machine volume: ext4 with the overlay's upper/ and work/ at its root (as the
# initramfs makes it in cache mode); /root/hello.txt lives in the upper layer
mkdir -p "$D/vol.d/upper/root" "$D/vol.d/work"
echo "$MARKER" >"$D/vol.d/upper/root/hello.txt"
t_run "machine volume made with mkfs.ext4 -d" mkfs.ext4 -q -F -L goldcache-volume -d "$D/vol.d" "$D/vol.img" 16M

# commit it as lost-laptop's snapshot, as its agent would
goldcached -c "$D/goldcache.yaml" --log "$D/goldcached.log" &
GC_PID=$!
track "$GC_PID"
# shellcheck disable=SC2016 # expanded when the cleanup runs
on_exit 'tail -n 20 "$D/goldcached.log" 2>/dev/null | sed "s/^/# log: /" >&2'
wait_for 20 curl -sf "$URL/api/v1/health" || bail "goldcached did not start"
wait_for 20 test -e "$D/state/uploads/lost-laptop.img" || bail "no upload file for lost-laptop"
TOKEN=$(goldctl machine token lost-laptop --url "$URL" --token-file "$D/state/admin.token")
like "$TOKEN" '^[0-9a-f]{64}$' "lost-laptop's agent token"
# the target's LUN 2 appears shortly after the upload file: retry the upload
for _ in $(seq 50); do
	gc-upload -c 1M -i "$PREFIX:i.lost-laptop" -u lost-laptop \
		--secret-file "$D/state/secrets/lost-laptop.chap" \
		"127.0.0.1:$ISCSI_PORT" "$PREFIX:m.lost-laptop" 2 "$D/vol.img" >"$D/body.json" 2>"$D/upload.err" && break
	sleep 0.2
done
ok $? "gc-upload wrote the volume to lost-laptop's upload LUN" || sed 's/^/#   /' "$D/upload.err"
is "$(curl -sS -o "$D/post.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
	--data-binary "@$D/body.json" "$URL/api/v1/machines/lost-laptop/commit")" 202 "POST commit accepted"
for _ in $(seq 300); do
	st=$(curl -sS -H "Authorization: Bearer $TOKEN" "$URL/api/v1/machines/lost-laptop/commit")
	[ "$(jq -r .state <<<"$st")" != running ] && break
	sleep 0.1
done
is "$(jq -r '.state + " " + (.snapshot|tostring)' <<<"$st")" "done 1" "snapshot 1 of lost-laptop committed"
jq '.gold = "tiny"' "$D/body.json" >"$D/bad-gold.json"
is "$(curl -sS -o "$D/post.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
	--data-binary "@$D/bad-gold.json" "$URL/api/v1/machines/lost-laptop/commit")" 400 \
	"a commit whose \"gold\" is not IMAGE@VERSION is refused"
kill -TERM "$GC_PID"
wait "$GC_PID" 2>/dev/null
t_run "the snapshot is the volume" bash -c "goldctl --store '$D/store' machine export lost-laptop '$D/snap1.img' && cmp '$D/vol.img' '$D/snap1.img'"
is "$(goldctl --store "$D/store" --json machine snapshots lost-laptop | jq -r '.[0].gold')" "tiny@1" \
	"the snapshot records its gold image@version (what goldcached assigned at commit)"
like "$(goldctl --store "$D/store" machine snapshots lost-laptop)" "GOLD.*"$'\n'"1 .* tiny@1" "and the table shows it"
store_before=$(find "$D/store" -type f -newer "$D/snap1.img" | wc -l)

vm() { goldctl machine vm -c "$D/goldcache.yaml" --work-dir "$D/vm" "$@"; }

# --dry-run: the argv, nothing written
out=$(vm --dry-run lost-laptop)
is $? 0 "--dry-run exits 0"
like "$out" "^qemu-system-x86_64 " "prints the qemu command line"
like "$out" "-accel (kvm|tcg) " "with an accelerator"
like "$out" "-kernel $GC_IMAGES/vmlinuz -initrd $GC_IMAGES/initramfs-plain.img " "the config image's kernel and initramfs"
like "$out" "-append 'console=ttyS0 goldcache.root=/dev/vda goldcache.volume=/dev/vdb panic=-1 goldcache.onfail=poweroff goldcache-tiny.poweroff=1'" \
	"cmdline: gold as root, the volume as upper, then the image's cmdline"
like "$out" "-drive file=$D/vm/gold-tiny@1.img,if=virtio,format=raw,readonly=on -drive file=$D/vm/lost-laptop@1.img,if=virtio,format=raw " \
	"the gold export read-only, the snapshot copy writable"
like "$out" " -nographic$" "serial console by default"
ok "$([ ! -e "$D/vm" ]; echo $?)" "--dry-run writes nothing"
out=$(vm --dry-run --vnc :7 -m 768 --no-net lost-laptop@1)
like "$out" "-m 768 " "-m sets the memory"
like "$out" "-vnc 127.0.0.1:7 -serial mon:stdio$" "--vnc :N listens on loopback"
t_fails "--vnc with a bad display" vm --dry-run --vnc 7 lost-laptop
like "$T_OUT" "is not a display" "says so"
like "$out" "-nic none" "--no-net: no NIC"
j=$(vm --json --dry-run --accel tcg lost-laptop)
is "$(jq -r '[.machine, .snapshot, .image, .image_version, .accel, .dry_run] | join(" ")' <<<"$j")" \
	"lost-laptop 1 tiny 1 tcg true" "--json: machine, snapshot, gold image@version, accel"
is "$(jq -r '.argv[0]' <<<"$j")" qemu-system-x86_64 "--json: the argv"
out=$(goldctl --store "$D/store" machine vm --image tiny@1 --kernel "$GC_IMAGES/vmlinuz" \
	--initrd "$GC_IMAGES/initramfs-plain.img" --work-dir "$D/vm" --dry-run lost-laptop)
like "$out" "-append 'console=ttyS0 goldcache.root=/dev/vda goldcache.volume=/dev/vdb'" \
	"without a config: --image, --kernel and --initrd"
out=$(goldctl --store "$D/store" machine vm --kernel "$GC_IMAGES/vmlinuz" \
	--initrd "$GC_IMAGES/initramfs-plain.img" --work-dir "$D/vm" --dry-run lost-laptop)
like "$out" "file=$D/vm/gold-tiny@1.img," "without --image: the gold version the snapshot recorded"

# the boot: the marker from the machine volume over the gold image
T0=$(date +%s)
timeout 600 goldctl machine vm -c "$D/goldcache.yaml" --work-dir "$D/vm" --accel tcg -m 512 --no-net \
	--append "goldcache-tiny.show=/root/hello.txt" lost-laptop </dev/null >"$D/console.log" 2>"$D/vm.err"
rc=$?
is $rc 0 "goldctl machine vm: the VM ran and powered off" || { tail -n 30 "$D/console.log" "$D/vm.err" | sed 's/^/#   /'; }
console=$(tr -d '\r' <"$D/console.log")
like "$console" "goldcache: stage cmdline .*root=/dev/vda volume=/dev/vdb" "the initramfs took goldcache.volume"
like "$console" "goldcache: stage root lower=/dev/vda upper=volume /dev/vdb" "overlay: gold below, the machine volume above"
like "$console" "goldcache-tiny: up" "the gold image's init runs"
like "$console" "goldcache-tiny: show /root/hello.txt: $MARKER" "the machine's file is there (marker from the snapshot)"
like "$(cat "$D/vm.err")" "booting lost-laptop@1 on tiny@1" "goldctl says what it boots"
diag "boot to poweroff under TCG: $(($(date +%s) - T0)) s"
like "$(debugfs -R 'cat /upper/goldcache-tiny.written' "$D/vm/lost-laptop@1.img" 2>/dev/null)" "^written at" \
	"the VM's writes land in its copy of the volume"
t_run "the store's snapshot is unchanged" bash -c "goldctl --store '$D/store' machine export --force lost-laptop '$D/snap1b.img' && cmp '$D/vol.img' '$D/snap1b.img'"
is "$(find "$D/store" -type f -newer "$D/snap1.img" | wc -l)" "$store_before" "no file in the store was written"
is "$(stat -c %a "$D/vm/gold-tiny@1.img")" 444 "the gold export is read-only"

# --resume: the next run keeps the previous run's volume copy (a VM used as a desktop)
timeout 600 goldctl --json machine vm -c "$D/goldcache.yaml" --work-dir "$D/vm" --accel tcg -m 512 --no-net \
	--resume lost-laptop </dev/null >"$D/console2.log" 2>"$D/vm2.err"
is $? 0 "second run with --resume"
console=$(tr -d '\r' <"$D/console2.log")
like "$console" "goldcache-tiny: previous boot's write present" "the first run's write is still there"
is "$(sed -n '/^{/,$p' "$D/console2.log" | jq -r '[.resumed, .exit_code] | join(" ")')" "true 0" \
	"--json after the run: resumed, QEMU's exit code"
# by default every run starts from the snapshot; a gold export of the wrong size
# (another store's, a damaged one) is exported again
chmod u+w "$D/vm/gold-tiny@1.img"
truncate -s 1M "$D/vm/gold-tiny@1.img"
timeout 600 goldctl machine vm -c "$D/goldcache.yaml" --work-dir "$D/vm" --accel tcg -m 512 --no-net \
	--append "goldcache-tiny.show=/root/hello.txt" lost-laptop </dev/null >"$D/console3.log" 2>"$D/vm3.err"
is $? 0 "third run, without --resume"
console=$(tr -d '\r' <"$D/console3.log")
ok "$(grep -q "previous boot's write present" <<<"$console"; [ $? = 1 ]; echo $?)" \
	"it starts from the snapshot again (no earlier run's write)"
like "$console" "goldcache-tiny: show /root/hello.txt: $MARKER" "with the machine's file"
is "$(stat -c %s "$D/vm/gold-tiny@1.img")" "$(stat -c %s "$GC_IMAGES/tiny.ext4")" \
	"the wrong-size gold export was replaced"

# refusals
t_fails "unknown machine" vm --dry-run ghost
like "$T_OUT" "unknown machine 'ghost'" "names the machine"
vm --dry-run ghost >/dev/null 2>&1
is $? 3 "unknown machine: exit 3"
t_fails "a machine without snapshots" vm --dry-run fresh-pc
like "$T_OUT" "machine 'fresh-pc' has no snapshot" "says it has no snapshot"
vm --dry-run fresh-pc >/dev/null 2>&1
is $? 3 "no snapshot: exit 3"
vm --dry-run lost-laptop@9 >/dev/null 2>&1
is $? 3 "unknown snapshot id: exit 3"
t_fails "a missing kernel file" vm --dry-run --kernel "$D/no-such-vmlinuz" lost-laptop
like "$T_OUT" "kernel '$D/no-such-vmlinuz': No such file" "names the kernel file"
vm --dry-run --kernel "$D/no-such-vmlinuz" lost-laptop >/dev/null 2>&1
is $? 1 "missing kernel: exit 1"
t_fails "no kernel at all" goldctl --store "$D/store" machine vm --image tiny --dry-run lost-laptop
like "$T_OUT" "no netboot kernel .*--kernel FILE" "says how to give one"
rm "$D/store/machines/lost-laptop/snapshots/1.gold"
t_fails "no config, no --image and no record" goldctl --store "$D/store" machine vm --kernel "$GC_IMAGES/vmlinuz" \
	--initrd "$GC_IMAGES/initramfs-plain.img" --dry-run lost-laptop
like "$T_OUT" "which gold image .*--image NAME\[@VERSION\]" "asks for --image or -c"
out=$(vm --dry-run lost-laptop)
like "$out" "file=$D/vm/gold-tiny@1.img," "no record: the config's profile image"
goldctl --store "$D/store" machine vm --image nosuch --kernel "$GC_IMAGES/vmlinuz" \
	--initrd "$GC_IMAGES/initramfs-plain.img" --dry-run lost-laptop 2>"$D/err"
is $? 3 "unknown gold image: exit 3"
like "$(cat "$D/err")" "gold image 'nosuch'" "names the image"

done_testing
