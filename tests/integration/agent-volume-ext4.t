#!/usr/bin/env bash
# The machine volume as a real block device: ext4 made and written through
# nbdfuse + loop + mount (inside a private mount namespace), goldagent stopped
# and started again, the files are still there; more written and goldagent
# killed with -9: after a restart e2fsck is clean and every file intact;
# every volume block holding data is in the dirty map (what a sync would
# upload), and cache check passes.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-agent.sh"
need goldagent nbdfuse losetup mkfs.ext4 e2fsck mount umount unshare fusermount3 nbdcopy perl sha256sum

d=$T_DIR
mkdir -p "$d/fuse" "$d/mnt"
head -c $((3 << 20)) /dev/urandom >"$d/payload"
goldagent cache init --image deb --version 1 --chunk-size 1M --size 4M --volume-size 64M "$d/c" >/dev/null ||
	bail "cache init"

# in_mountns SCRIPT: runs SCRIPT (bash) in a private mount namespace with the
# volume attached as a loop device at $loop over nbdfuse; detaches at the end.
in_mountns() { nbd_mountns "nbd+unix:///volume?socket=$d/v.sock" "$1"; }

agent_serve "$d/serve.log" --cache "$d/c" --volume-socket "$d/v.sock" || bail "serve"
t_run "mkfs.ext4, mount, write files, sync, umount (nbdfuse + loop)" in_mountns "
mkfs.ext4 -q -F \"\$loop\"
mount \"\$loop\" \"$d/mnt\"
echo 'hello from the machine volume' >\"$d/mnt/hello.txt\"
mkdir \"$d/mnt/dir\"
cp \"$d/payload\" \"$d/mnt/dir/payload\"
sync
umount \"$d/mnt\""
agent_stop
is "$?" 0 "goldagent stopped cleanly"
dirty=$(agent_json_field "$d/c" '.dirty_blocks')
ok "$([ "$dirty" -gt 0 ] && echo 0 || echo 1)" "dirty map records the writes ($dirty blocks)"
is "$(agent_json_field "$d/c" '.volume_open')" false "volume closed cleanly"

agent_serve "$d/serve.log" --cache "$d/c" --volume-socket "$d/v.sock" || bail "serve again"
t_run "after restart: mount, the files are there" in_mountns "
mount -o ro \"\$loop\" \"$d/mnt\"
grep -qx 'hello from the machine volume' \"$d/mnt/hello.txt\"
cmp \"$d/payload\" \"$d/mnt/dir/payload\"
umount \"$d/mnt\""
# more files, then kill -9 instead of a clean stop
head -c $((5 << 20)) /dev/urandom >"$d/payload2"
t_run "write more, sync, umount" in_mountns "
mount \"\$loop\" \"$d/mnt\"
cp \"$d/payload2\" \"$d/mnt/dir/payload2\"
sync
umount \"$d/mnt\""
agent_kill
is "$(agent_json_field "$d/c" '.volume_open')" true "kill -9 left the volume open"
agent_serve "$d/serve.log" --cache "$d/c" --volume-socket "$d/v.sock" || bail "serve after kill"
is "$(agent_json_field "$d/c" '.unclean_stops')" 1 "restart counted the unclean stop"
t_run "after kill -9: e2fsck clean, every file intact" in_mountns "
e2fsck -fn \"\$loop\" >/dev/null
mount -o ro \"\$loop\" \"$d/mnt\"
grep -qx 'hello from the machine volume' \"$d/mnt/hello.txt\"
cmp \"$d/payload\" \"$d/mnt/dir/payload\"
cmp \"$d/payload2\" \"$d/mnt/dir/payload2\"
umount \"$d/mnt\""
t_run "export the volume" nbdcopy "nbd+unix:///volume?socket=$d/v.sock" "$d/vol.img"
agent_kill

# every block holding a non-zero byte must be dirty (the volume began all zero)
missing=$(agent_undirty_data "$d/c" "$d/vol.img")
is "$missing" 0 "every volume block with data is in the dirty map"
t_run "cache check passes" goldagent cache check "$d/c"
done_testing
