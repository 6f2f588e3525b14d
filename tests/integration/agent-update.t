#!/usr/bin/env bash
# Gold update in the cache's other slot: version 2 (three chunks changed, two
# appended) is assigned to slot B and hydrated with v1's manifest at hand:
# only the chunks whose hash is not already in slot A are fetched, the rest
# are copied locally (verified). Switching to B serves v2 byte-identical with
# the machine volume untouched; switching back to A (rollback) serves v1.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-agent.sh"
need goldagent goldctl nbdcopy qemu-io cmp sha256sum awk

d=$T_DIR
cs=262144
{ head -c $((6 << 20)) /dev/urandom; head -c $((1 << 20)) /dev/zero; head -c $((1 << 20)) /dev/urandom; } >"$d/v1.img"
cp "$d/v1.img" "$d/v2.img"
for c in 3 10 30; do
	head -c 4096 /dev/urandom | dd of="$d/v2.img" bs=4096 seek=$((c * cs / 4096 + 5)) conv=notrunc 2>/dev/null
done
head -c $((2 * cs)) /dev/urandom >>"$d/v2.img"
goldctl --store "$d/store" store init >/dev/null || bail "store"
goldctl --store "$d/store" image import --chunk-size 256K deb "$d/v1.img" >/dev/null || bail "import v1"
goldctl --store "$d/store" image import --chunk-size 256K deb "$d/v2.img" >/dev/null || bail "import v2"
goldctl --store "$d/store" image manifest deb@1 >"$d/m1" || bail "manifest 1"
goldctl --store "$d/store" image manifest deb@2 >"$d/m2" || bail "manifest 2"
goldctl --store "$d/store" image export deb@1 "$d/e1" >/dev/null || bail "export 1"
goldctl --store "$d/store" image export deb@2 "$d/e2" >/dev/null || bail "export 2"
# chunks of v2 that are neither zero nor anywhere in v1
differ=$(awk 'FNR == 1 { f++ } /^[0-9a-f]+$/ && length($0) == 64 {
	if (f == 1) seen[$0] = 1; else if (!seen[$0]) n++ } END { print n + 0 }' "$d/m1" "$d/m2")

t_run "cache for v1 with room for a larger version" \
	goldagent cache init --manifest "$d/m1" --capacity 16M --volume-size 16M "$d/c"
t_run "hydrate v1 into slot A" goldagent hydrate --cache "$d/c" --source-file "$d/e1" --manifest "$d/m1"
agent_serve "$d/s.log" --cache "$d/c" --volume-socket "$d/v.sock" || bail "serve"
t_run "write the machine volume" \
	qemu-io -f raw -c 'write -P 0x77 0 128K' -c 'write -P 0x78 5M 64K' "nbd+unix:///volume?socket=$d/v.sock"
nbdcopy "nbd+unix:///volume?socket=$d/v.sock" "$d/vol-before"
agent_stop
dirty_before=$(goldagent cache dirty "$d/c")

t_fails "the active slot cannot be re-assigned" goldagent cache assign --slot A --manifest "$d/m2" "$d/c"
t_run "assign v2 to slot B" goldagent cache assign --slot B --manifest "$d/m2" "$d/c"
t_fails "an incomplete slot is not activated" goldagent cache activate --slot B "$d/c"
out=$(goldagent hydrate --cache "$d/c" --slot B --source-file "$d/e2" --manifest "$d/m2" \
	--other-manifest "$d/m1")
diag "$out"
like "$out" "^slot B: $differ chunks fetched \($((differ * cs)) bytes\)" \
	"only the $differ chunks not in v1 are fetched"
like "$out" " [1-9][0-9]* copied from slot A" "  the others are copied locally"
is "$(agent_json_field "$d/c" '.slots[1].state')" complete "slot B complete"
t_run "slot B checks against v2's manifest" goldagent cache check --slot B --manifest "$d/m2" "$d/c"
t_run "activate slot B" goldagent cache activate --slot B "$d/c"

agent_serve "$d/s.log" --cache "$d/c" --gold-socket "$d/g.sock" --volume-socket "$d/v.sock" || bail "serve v2"
t_run "gold is v2" sh -c "nbdcopy 'nbd+unix:///gold?socket=$d/g.sock' - | cmp - '$d/e2'"
t_run "the volume is untouched" sh -c "nbdcopy 'nbd+unix:///volume?socket=$d/v.sock' - | cmp - '$d/vol-before'"
agent_stop
is "$(goldagent cache dirty "$d/c")" "$dirty_before" "  and so is its dirty map"

t_run "roll back: activate slot A" goldagent cache activate --slot A "$d/c"
agent_serve "$d/s.log" --cache "$d/c" --gold-socket "$d/g.sock" || bail "serve v1"
t_run "gold is v1 again" sh -c "nbdcopy 'nbd+unix:///gold?socket=$d/g.sock' - | cmp - '$d/e1'"
agent_stop
t_run "cache check" goldagent cache check --manifest "$d/m1" "$d/c"
done_testing
