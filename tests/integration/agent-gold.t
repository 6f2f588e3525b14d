#!/usr/bin/env bash
# goldagent's gold export with real NBD clients: a cache seeded from an image
# exported by goldctl (verified against its manifest) reads back through the
# NBD socket byte-identical with nbdcopy and qemu-img; nbdinfo sees the size
# and read-only; writes are refused. An absent chunk with no source fails with
# EIO naming the chunk; with --source-file it is fetched on demand; a chunk
# that does not match the manifest is never stored or served.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-agent.sh"
need goldagent goldctl nbdcopy nbdinfo qemu-img qemu-io jq cmp

d=$T_DIR
# 6 MiB + a zero stretch + random tail: 256 KiB chunks, some zero chunks
{ head -c $((3 << 20)) /dev/urandom; head -c $((2 << 20)) /dev/zero; head -c $((1 << 20)) /dev/urandom; } >"$d/src.img"
agent_store_image "$d" 256K

t_run "cache init from the manifest" goldagent cache init --manifest "$d/m.txt" --volume-size 16M "$d/c"
is "$(agent_json_field "$d/c" '.slots[0].present')" 0 "new cache: nothing present"
t_run "hydrate from goldctl's export, verified against the manifest" \
	goldagent hydrate --cache "$d/c" --source-file "$d/export.img" --manifest "$d/m.txt" --commit-every 1M
is "$(agent_json_field "$d/c" '.slots[0].state')" complete "slot A complete"
is "$(agent_json_field "$d/c" '.mode')" offline-ready "status: offline-ready"
t_run "cache check against the manifest" goldagent cache check --manifest "$d/m.txt" "$d/c"

agent_serve "$d/serve.log" --cache "$d/c" --gold-socket "$d/g.sock" --volume-socket "$d/v.sock" ||
	bail "serve"
uri="nbd+unix:///gold?socket=$d/g.sock"
t_run "nbdcopy reads the gold export" nbdcopy "$uri" "$d/nbdcopy.img"
t_run "  byte-identical to goldctl image export" cmp "$d/export.img" "$d/nbdcopy.img"
t_run "qemu-img convert reads the gold export" qemu-img convert -f raw -O raw "$uri" "$d/qemu.img"
t_run "  byte-identical" cmp "$d/export.img" "$d/qemu.img"
info=$(nbdinfo --json "$uri")
is "$(jq -r '.exports[0]."export-size"' <<<"$info")" "$(stat -c %s "$d/export.img")" "nbdinfo: size"
is "$(jq -r '.exports[0]."is_read_only"' <<<"$info")" true "nbdinfo: read-only"
is "$(nbdinfo --size "nbd+unix:///volume?socket=$d/v.sock")" $((16 << 20)) "nbdinfo: volume size"
is "$(nbdinfo --json "nbd+unix:///volume?socket=$d/v.sock" | jq -r '.exports[0]."is_read_only"')" false \
	"nbdinfo: volume writable"
t_fails "qemu-io cannot open the gold export for writing" qemu-io -f raw -c 'write -P 0x55 0 4096' "$uri"
like "$T_OUT" "Permission denied|read-only" "  the export says read-only (EPERM on write: test-nbdproto)"
t_run "nbdinfo --list shows the socket's export" sh -c "nbdinfo --list 'nbd+unix:///?socket=$d/g.sock' | grep -q 'export=\"gold\"'"
t_run "gold unchanged after the refused write" sh -c "nbdcopy '$uri' - | cmp - '$d/export.img'"
# one goldagent per cache: every other writer is refused while serve holds it
cp "$d/m.txt" "$d/m2.txt"
for cmd in "hydrate --cache $d/c --source-file $d/export.img" "cache assign --slot B --manifest $d/m2.txt $d/c" \
	"cache activate --slot A $d/c" "cache check --repair $d/c" "cache init --force --manifest $d/m.txt --volume-size 16M $d/c"; do
	# shellcheck disable=SC2086 # the words of cmd are its arguments
	t_fails "while serve runs: goldagent ${cmd%% --*} refused" goldagent $cmd
	like "$T_OUT" "cache '$d/c' is in use by another goldagent" "  it says the cache is in use"
done
t_run "  status still reads it" goldagent status --json --cache "$d/c"
t_run "  and the cache is untouched: check against the manifest" goldagent cache check --manifest "$d/m.txt" "$d/c"
t_run "  gold still served, byte-identical" sh -c "nbdcopy '$uri' - | cmp - '$d/export.img'"
agent_stop
is "$?" 0 "SIGTERM: clean stop"

# absent chunks, no source: EIO, the log names the chunk
goldagent cache init --manifest "$d/m.txt" --volume-size 16M "$d/empty" >/dev/null
agent_serve "$d/empty.log" --cache "$d/empty" --gold-socket "$d/g2.sock" || bail "serve empty"
t_fails "reading an absent chunk without a source fails" \
	qemu-io -r -f raw -c 'read 300K 4K' "nbd+unix:///gold?socket=$d/g2.sock"
like "$T_OUT" "Input/output error" "  with EIO"
like "$(cat "$d/empty.log")" "needs chunk 1 \(bytes 262144-524287\).*no source" "  the log names the missing chunk"
agent_stop

# on demand from a source file, verified
agent_serve "$d/od.log" --cache "$d/empty" --gold-socket "$d/g2.sock" --source-file "$d/export.img" \
	--manifest "$d/m.txt" || bail "serve on demand"
t_run "one read fetches on demand" qemu-io -r -f raw -c 'read 300K 4K' "nbd+unix:///gold?socket=$d/g2.sock"
is "$(goldagent status --json --cache "$d/empty" | jq -r '.slots[0].present')" 1 "  exactly that chunk is present"
t_run "nbdcopy of an empty cache fetches everything" nbdcopy "nbd+unix:///gold?socket=$d/g2.sock" "$d/od.img"
t_run "  byte-identical" cmp "$d/export.img" "$d/od.img"
agent_stop
is "$(agent_json_field "$d/empty" '.slots[0].state')" complete "  and the cache is complete"

# the same through the loop's asynchronous path: fetches complete later, from
# the source's fd (as iSCSI ones will); three clients at once wait on them
goldagent cache init --force --manifest "$d/m.txt" --volume-size 16M "$d/empty" >/dev/null
GOLDAGENT_SOURCE_DEFER=1 agent_serve "$d/async.log" --cache "$d/empty" --gold-socket "$d/g4.sock" \
	--source-file "$d/export.img" --manifest "$d/m.txt" || bail "serve async"
u4="nbd+unix:///gold?socket=$d/g4.sock"
nbdcopy "$u4" "$d/a1.img" 2>"$d/a1.err" &
p1=$!
qemu-img convert -f raw -O raw "$u4" "$d/a2.img" 2>"$d/a2.err" &
p2=$!
qemu-io -r -f raw -c 'read 0 6M' "$u4" >"$d/a3.out" 2>&1 &
p3=$!
wait $p1
r1=$?
wait $p2
r2=$?
wait $p3
r3=$?
is "$r1/$r2/$r3" 0/0/0 "async source: nbdcopy, qemu-img and qemu-io at once on an empty cache"
t_run "  nbdcopy's copy byte-identical" cmp "$d/export.img" "$d/a1.img"
t_run "  qemu-img's copy byte-identical" cmp "$d/export.img" "$d/a2.img"
agent_stop
is "$(agent_json_field "$d/empty" '.slots[0].state')" complete "  cache complete"
t_run "  cache check against the manifest" goldagent cache check --manifest "$d/m.txt" "$d/empty"

# background hydration while a client reads, synchronous and asynchronous source
state_complete() { [ "$(agent_json_field "$1" '.slots[0].state')" = complete ]; }
for mode in sync async; do
	goldagent cache init --force --manifest "$d/m.txt" --volume-size 16M "$d/bg" >/dev/null
	defer=0
	[ $mode = async ] && defer=1
	GOLDAGENT_SOURCE_DEFER=$defer agent_serve "$d/bg.log" --cache "$d/bg" --gold-socket "$d/g5.sock" \
		--source-file "$d/export.img" --manifest "$d/m.txt" --hydrate || bail "serve --hydrate"
	t_run "$mode: a client reads while the background hydrates" \
		nbdcopy "nbd+unix:///gold?socket=$d/g5.sock" "$d/bg.img"
	t_run "  byte-identical" cmp "$d/export.img" "$d/bg.img"
	t_run "  background hydration completes" wait_for 60 state_complete "$d/bg"
	agent_stop
	like "$(cat "$d/bg.log")" "background hydration complete" "  and says so"
	t_run "  cache check against the manifest" goldagent cache check --manifest "$d/m.txt" "$d/bg"
done

# tampered source: chunk 4 altered; the manifest rejects it
cp "$d/export.img" "$d/bad.img"
printf 'TAMPERED' | dd of="$d/bad.img" bs=1 seek=$((4 * 262144 + 1000)) conv=notrunc 2>/dev/null
goldagent cache init --manifest "$d/m.txt" --volume-size 16M "$d/t" >/dev/null
t_fails "hydrate from a tampered source fails" \
	goldagent hydrate --cache "$d/t" --source-file "$d/bad.img" --manifest "$d/m.txt"
like "$T_OUT" "chunk 4 .*does not match its hash" "  naming the tampered chunk"
is "$(agent_json_field "$d/t" '.slots[0].present')" 23 "  23 of 24 chunks present, not the tampered one"
goldagent cache init --force --manifest "$d/m.txt" --volume-size 16M "$d/t" >/dev/null
agent_serve "$d/t.log" --cache "$d/t" --gold-socket "$d/g3.sock" --source-file "$d/bad.img" \
	--manifest "$d/m.txt" || bail "serve tampered"
t_fails "serving: the tampered chunk reads as EIO" \
	qemu-io -r -f raw -c 'read 1M 4K' "nbd+unix:///gold?socket=$d/g3.sock"
like "$(cat "$d/t.log")" "chunk 4 from file .* does not match its hash: not stored" "  and the log says why"
t_run "serving: a good chunk reads" qemu-io -r -f raw -c 'read -P 0 3M 4K' "nbd+unix:///gold?socket=$d/g3.sock"
agent_stop
is "$(agent_json_field "$d/t" '.slots[0].present')" 1 "  only the good chunk stored"
agent_serve "$d/t.log" --cache "$d/t" --gold-socket "$d/g3.sock" --source-file "$d/bad.img" \
	--manifest "$d/m.txt" --hydrate || bail "serve tampered --hydrate"
t_run "background hydration from the tampered source ends" \
	wait_for 60 grep -q 'background hydration ended with 23 of 24' "$d/t.log"
agent_stop
is "$(agent_json_field "$d/t" '.slots[0].present')" 23 "  23 chunks present, not the tampered one"
t_run "cache check against the manifest passes" goldagent cache check --manifest "$d/m.txt" "$d/t"
done_testing
