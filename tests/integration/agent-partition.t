#!/usr/bin/env bash
# The cache on a block device (a loop device standing in for the machine's
# cache partition): init refuses a device too small, formats one large
# enough (zeroing maps and volume), hydrates (from a block device source too),
# serves the gold image byte-identical and keeps volume writes across a
# restart.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-agent.sh"
need goldagent losetup nbdcopy qemu-io cmp

d=$T_DIR
head -c $((4 << 20)) /dev/urandom >"$d/img"
truncate -s 8M "$d/small.part"
truncate -s 48M "$d/part"
# old data on the "partition": must not show through the new volume
head -c $((48 << 20)) /dev/urandom | dd of="$d/part" conv=notrunc 2>/dev/null
small=$(losetup -f --show "$d/small.part") || bail "losetup"
on_exit "losetup -d $small"
dev=$(losetup -f --show "$d/part") || bail "losetup"
on_exit "losetup -d $dev"

t_fails "init refuses a device smaller than the layout" \
	goldagent cache init --image deb --version 1 --chunk-size 64K --size 4M --volume-size 16M "$small"
like "$T_OUT" "device has 8388608 bytes, the layout needs" "  saying how much it needs"
t_run "init on a block device" \
	goldagent cache init --image deb --version 1 --chunk-size 64K --size 4M --volume-size 16M "$dev"
srcdev=$(losetup -f --show -r "$d/img") || bail "losetup source"
on_exit "losetup -d $srcdev"
t_run "hydrate it from a block device source" goldagent hydrate --cache "$dev" --source-file "$srcdev"
agent_serve "$d/serve.log" --cache "$dev" --gold-socket "$d/g.sock" --volume-socket "$d/v.sock" ||
	bail "serve"
t_run "gold read back through NBD" nbdcopy "nbd+unix:///gold?socket=$d/g.sock" "$d/out"
t_run "  byte-identical" cmp "$d/img" "$d/out"
t_run "the volume reads as zeros (old partition data wiped)" \
	qemu-io -r -f raw -c 'read -P 0 0 16M' "nbd+unix:///volume?socket=$d/v.sock"
t_run "write the volume" qemu-io -f raw -c 'write -P 0x3c 1M 64K' "nbd+unix:///volume?socket=$d/v.sock"
agent_stop
agent_serve "$d/serve.log" --cache "$dev" --volume-socket "$d/v.sock" || bail "serve again"
t_run "after restart the write is there" \
	qemu-io -r -f raw -c 'read -P 0x3c 1M 64K' "nbd+unix:///volume?socket=$d/v.sock"
agent_stop
is "$(goldagent cache dirty "$dev" | grep -v '^#')" "1048576 65536" "its block is dirty"
t_run "cache check" goldagent cache check "$dev"
done_testing
