#!/usr/bin/env bash
# `goldagent serve --hydrate` killed mid-way (kill -9 at random moments, and
# crashes at its Nth fsync / write through GOLDCACHE_FAULT) while the loop's
# worker threads verify and write the background chunks and its commit
# thread flushes them, with and without readers, or stopped cleanly: every
# chunk left present matches the manifest, a restart resumes without fetching
# a present chunk again (chunks fetched + present before = all), the slot
# completes and the gold export reads back byte-identical to goldctl's export.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-agent.sh"
need goldagent goldctl nbdcopy jq cmp

d=$T_DIR
# 72 MiB, 1 MiB chunks (background commits every 32 MiB), a zero stretch
{ head -c $((40 << 20)) /dev/urandom; head -c $((8 << 20)) /dev/zero; head -c $((24 << 20)) /dev/urandom; } >"$d/src.img"
agent_store_image "$d" 1M
rm -f "$d/src.img"
total=72
state() { agent_json_field "$d/c" '.slots[0].state'; }
present() { agent_json_field "$d/c" '.slots[0].present'; }

# $1: what stopped the first run; the cache holds what it left
resume() {
	local p fetched
	p=$(present)
	t_run "$1: every present chunk ($p) matches the manifest" \
		goldagent cache check --manifest "$d/m.txt" "$d/c"
	: >"$d/resume.log"
	GOLDAGENT_SOURCE_DEFER=$defer agent_serve "$d/resume.log" --cache "$d/c" --gold-socket "$d/g.sock" \
		--source-file "$d/export.img" --manifest "$d/m.txt" --hydrate || bail "$1: restart"
	wait_for 60 grep -q "background hydration" "$d/resume.log"
	fetched=$(sed -n 's/.*background hydration complete: \([0-9]*\) chunks fetched.*/\1/p' "$d/resume.log")
	is "$p+${fetched:-none}" "$p+$((total - p))" "$1: the restart fetches only the $((total - p)) absent chunks"
	t_run "$1: the gold export reads back byte-identical" \
		nbdcopy "nbd+unix:///gold?socket=$d/g.sock" "$d/out.img"
	cmp -s "$d/export.img" "$d/out.img"
	ok $? "$1: byte-identical to goldctl's export"
	agent_stop
	is "$(state)" complete "$1: slot complete"
}

# kill -9 at random moments, synchronous and asynchronous source
kills=3
[ "${GC_FULL:-}" = 1 ] && kills=12
for defer in 0 1; do
	for i in $(seq "$kills"); do
		goldagent cache init --force --manifest "$d/m.txt" --volume-size 1M "$d/c" >/dev/null
		: >"$d/serve.log"
		GOLDAGENT_TEST_CHUNK_DELAY_MS=20 GOLDAGENT_SOURCE_DEFER=$defer agent_serve "$d/serve.log" \
			--cache "$d/c" --gold-socket "$d/g.sock" --source-file "$d/export.img" \
			--manifest "$d/m.txt" --hydrate || bail "serve --hydrate"
		sleep "0.$((RANDOM % 9 + 1))"
		agent_kill
		resume "defer=$defer kill -9 #$i"
	done
done

# readers during the background: two whole-export reads at once hit chunks
# written and not committed yet (a commit starts for them, or they wait for
# the one out on the commit thread); then kill -9
defer=1
goldagent cache init --force --manifest "$d/m.txt" --volume-size 1M "$d/c" >/dev/null
: >"$d/serve.log"
GOLDAGENT_TEST_CHUNK_DELAY_MS=10 GOLDAGENT_SOURCE_DEFER=1 agent_serve "$d/serve.log" \
	--cache "$d/c" --gold-socket "$d/g.sock" --source-file "$d/export.img" \
	--manifest "$d/m.txt" --hydrate || bail "serve --hydrate (readers)"
nbdcopy "nbd+unix:///gold?socket=$d/g.sock" "$d/r1.img" &
r1=$!
nbdcopy "nbd+unix:///gold?socket=$d/g.sock" "$d/r2.img"
is "$?" 0 "reader 2 done during the background"
wait "$r1"
is "$?" 0 "reader 1 done"
cmp -s "$d/export.img" "$d/r1.img" && cmp -s "$d/export.img" "$d/r2.img"
ok $? "both readers byte-identical to goldctl's export"
rm -f "$d/r1.img" "$d/r2.img"
agent_kill
resume "readers, then kill -9"

# a clean stop (SIGTERM) at random moments of the background: the commit out
# on the thread ends before the cache's close commits the rest
for i in 1 2; do
	goldagent cache init --force --manifest "$d/m.txt" --volume-size 1M "$d/c" >/dev/null
	: >"$d/serve.log"
	GOLDAGENT_TEST_CHUNK_DELAY_MS=20 GOLDAGENT_SOURCE_DEFER=1 agent_serve "$d/serve.log" \
		--cache "$d/c" --gold-socket "$d/g.sock" --source-file "$d/export.img" \
		--manifest "$d/m.txt" --hydrate || bail "serve --hydrate (stop)"
	sleep "0.$((RANDOM % 9 + 1))"
	agent_stop
	is "$?" 0 "clean stop #$i during the background"
	resume "clean stop #$i"
done

# a data flush that fails (EIO) on the commit thread: the batch is forgotten
# (never marked on disk), the background ends short, a reader fetches the
# rest on demand and the slot completes
goldagent cache init --force --manifest "$d/m.txt" --volume-size 1M "$d/c" >/dev/null
: >"$d/eio.log"
GOLDCACHE_FAULT=fsync:1:EIO GOLDAGENT_SOURCE_DEFER=1 agent_serve "$d/eio.log" --cache "$d/c" \
	--gold-socket "$d/g.sock" --source-file "$d/export.img" --manifest "$d/m.txt" \
	--hydrate || bail "serve --hydrate (EIO)"
wait_for 60 grep -q "background hydration" "$d/eio.log"
like "$(cat "$d/eio.log")" "fdatasync of [0-9]+ written chunks failed" "EIO: the failed data flush is logged"
like "$(cat "$d/eio.log")" "background hydration ended with [0-9]+ of $total chunks present" \
	"EIO: the background ends short of the forgotten chunks"
t_run "EIO: a reader gets the whole export" nbdcopy "nbd+unix:///gold?socket=$d/g.sock" "$d/out.img"
cmp -s "$d/export.img" "$d/out.img"
ok $? "EIO: byte-identical to goldctl's export"
agent_stop
is "$?" 0 "EIO: clean stop"
is "$(present)+$(state)" "$total+complete" "EIO: the forgotten chunks fetched again: complete"
t_run "EIO: every present chunk matches the manifest" goldagent cache check --manifest "$d/m.txt" "$d/c"

# crashes at the Nth fsync (a commit's data or map flush, on the commit
# thread) or write
defer=1
faults="fsync:1 fsync:2 fsync:3 fsync:4 write:40"
[ "${GC_FULL:-}" = 1 ] && faults="$(for n in $(seq 1 8); do printf 'fsync:%d ' "$n"; done) write:2 write:20 write:40 write:60"
for f in $faults; do
	goldagent cache init --force --manifest "$d/m.txt" --volume-size 1M "$d/c" >/dev/null
	GOLDCACHE_FAULT="$f:crash" GOLDAGENT_SOURCE_DEFER=1 goldagent serve --cache "$d/c" \
		--gold-socket "$d/g.sock" --source-file "$d/export.img" --manifest "$d/m.txt" \
		--hydrate >"$d/fault.log" 2>&1 &
	spid=$!
	track "$spid"
	wait_for 30 sh -c "! kill -0 $spid 2>/dev/null || grep -q 'background hydration' '$d/fault.log'"
	if grep -q "background hydration" "$d/fault.log"; then
		kill -TERM "$spid"
		wait "$spid"
		is "$(present)" "$total" "$f: no crash (the fault lies past this run): complete"
		continue
	fi
	wait "$spid"
	is "$?" 137 "serve --hydrate crashed at $f"
	resume "crash at $f"
done
done_testing
