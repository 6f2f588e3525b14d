#!/usr/bin/env bash
# Crashes of goldagent: kill -9 of `goldagent serve` while qemu-io writes a
# known pattern (3 times; 50 with GC_FULL=1), and a crash injected at the Nth
# fsync of serve: after a restart every acknowledged write reads back and its
# blocks are dirty, and cache check passes. A crash injected at every fsync
# (and some writes) of seeding: every chunk marked present matches the
# manifest, and the resumed hydration does not fetch those again.
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-agent.sh"
need goldagent goldctl qemu-io jq

d=$T_DIR
iters=3
[ "${GC_FULL:-}" = 1 ] && iters=50
nwrites=400
uri="nbd+unix:///volume?socket=$d/v.sock"
goldagent cache init --image deb --version 1 --chunk-size 64K --size 1M --volume-size 32M "$d/c" >/dev/null ||
	bail "cache init"

# write k of round i: offset k*192K + (i*4K mod 64K) (it may straddle two
# dirty blocks), length 4K..64K, pattern byte (i*31+k) mod 250 + 1
w_set() {
	off=$(($2 * 196608 + ($1 * 4096) % 65536))
	len=$(((($1 + $2) % 16 + 1) * 4096))
	pat=$((($1 * 31 + $2) % 250 + 1))
}

# writer ROUND LOG: qemu-io issuing nwrites writes; each acknowledged one
# prints "wrote LEN/LEN bytes at offset OFF".
writer() {
	local i=$1 k args=() off len pat
	for ((k = 0; k < nwrites; k++)); do
		w_set "$i" $k
		args+=(-c "write -P $pat $off $len")
	done
	qemu-io -f raw "${args[@]}" "$uri" >"$2" 2>&1
}

# verify ROUND LOG WHAT: every acknowledged write of LOG reads back (qemu-io
# read -P) and lies in dirty ranges; cache check passes.
verify() {
	local i=$1 log=$2 what=$3 k off len pat args=() acked=0 bad spans='' line
	local -A wrote=()
	while read -r line; do wrote[$line]=1; done < <(grep '^wrote ' "$log")
	for ((k = 0; k < nwrites; k++)); do
		w_set "$i" $k
		[ -n "${wrote["wrote $len/$len bytes at offset $off"]:-}" ] || continue
		acked=$((acked + 1))
		args+=(-c "read -P $pat $off $len")
		spans+="$off $len"$'\n'
	done
	# first and last byte of each acknowledged write inside a dirty range
	bad=$( (goldagent cache dirty "$d/c" | grep -v '^#' | sed 's/^/R /'; printf '%s' "$spans" | sed 's/^/W /') |
		awk '$1 == "R" { s[n] = $2; e[n++] = $2 + $3; next }
		     $1 == "W" { for (j = 0; j < 2; j++) { b = j ? $2 + $3 - 1 : $2; f = 0
				for (x = 0; x < n; x++) if (s[x] <= b && b < e[x]) f = 1
				bad += !f } }
		     END { print bad + 0 }')
	diag "$what: $acked of $nwrites writes acknowledged before the crash"
	is "$bad" 0 "$what: every acknowledged write is in the dirty map"
	agent_serve "$d/serve.log" --cache "$d/c" --volume-socket "$d/v.sock" || bail "restart"
	if [ $acked -gt 0 ]; then
		qemu-io -r -f raw "${args[@]}" "$uri" >"$d/read.log" 2>&1
		is "$(grep -c '^read ' "$d/read.log")/$(grep -c 'Pattern verification failed' "$d/read.log")" \
			"$acked/0" "$what: every acknowledged write reads back"
	else
		ok 0 "$what: (nothing acknowledged)"
	fi
	agent_stop
	t_run "$what: cache check passes" goldagent cache check "$d/c"
}

for ((i = 1; i <= iters; i++)); do
	agent_serve "$d/serve.log" --cache "$d/c" --volume-socket "$d/v.sock" || bail "serve"
	rm -f "$d/w.log"
	writer "$i" "$d/w.log" &
	wpid=$!
	# once writes flow, at a random moment
	wait_for 30 grep -q '^wrote' "$d/w.log"
	sleep "$(printf '0.%03d' $((RANDOM % 60)))"
	agent_kill
	wait "$wpid"
	verify "$i" "$d/w.log" "kill -9 #$i"
done
is "$(agent_json_field "$d/c" '.unclean_stops')" "$iters" "each kill counted as an unclean stop"

# a crash injected at the Nth fsync or write of serve (fsync 1 is the header
# at start), each on a fresh cache: besides the acknowledged writes, no block
# holds data that is not dirty (the dirty bit goes to disk before the data)
need nbdcopy perl
for f in fsync:2 fsync:3 fsync:7 fsync:20 write:2 write:3 write:8 write:31; do
	i=$((100 + ${f#*:}))
	goldagent cache init --force --image deb --version 1 --chunk-size 64K --size 1M \
		--volume-size 32M "$d/c" >/dev/null
	rm -f "$d/v.sock"
	GOLDCACHE_FAULT="$f:crash" goldagent serve --cache "$d/c" --volume-socket "$d/v.sock" \
		>>"$d/serve.log" 2>&1 &
	spid=$!
	track $spid
	wait_for 20 test -S "$d/v.sock" || bail "serve with fault"
	writer "$i" "$d/w.log"
	wait $spid
	is "$?" 137 "serve crashed at $f"
	verify "$i" "$d/w.log" "crash at $f"
	agent_serve "$d/serve.log" --cache "$d/c" --volume-socket "$d/v.sock" || bail "restart"
	nbdcopy "$uri" "$d/vol.img"
	agent_stop
	is "$(agent_undirty_data "$d/c" "$d/vol.img")" 0 "crash at $f: no block holds data without its dirty bit"
done

# seeding: crash at the Nth fsync / write, present bits checked against the manifest
{ head -c $((1 << 20)) /dev/urandom; head -c $((256 << 10)) /dev/zero; head -c $((768 << 10)) /dev/urandom; } >"$d/src.img"
goldctl --store "$d/store" store init >/dev/null || bail "store"
goldctl --store "$d/store" image import --chunk-size 64K deb "$d/src.img" >/dev/null || bail "import"
goldctl --store "$d/store" image manifest deb >"$d/m.txt" || bail "manifest"
faults="fsync:1 fsync:2 fsync:3 fsync:4 fsync:7 write:3 write:20"
[ "${GC_FULL:-}" = 1 ] && faults="$(for n in $(seq 1 18); do printf 'fsync:%d ' "$n"; done) write:1 write:3 write:10 write:20 write:31 write:33"
for f in $faults; do
	goldagent cache init --force --manifest "$d/m.txt" --volume-size 1M "$d/s" >/dev/null
	GOLDCACHE_FAULT="$f:crash" goldagent hydrate --cache "$d/s" --source-file "$d/src.img" \
		--manifest "$d/m.txt" --commit-every 256K >/dev/null 2>&1
	rc=$?
	p=$(agent_json_field "$d/s" '.slots[0].present')
	if [ $rc -ne 137 ]; then
		# the fault lies past the end of this run: it completed
		is "$rc/$p" "0/32" "$f: no crash (run completed first)"
		continue
	fi
	t_run "$f crash: every present chunk ($p) matches the manifest" \
		goldagent cache check --manifest "$d/m.txt" "$d/s"
	out=$(goldagent hydrate --cache "$d/s" --source-file "$d/src.img" --manifest "$d/m.txt")
	like "$out" " $p already present" "$f crash: resume does not fetch the $p verified chunks again"
	is "$(agent_json_field "$d/s" '.slots[0].state')" complete "$f crash: resume completes"
done
done_testing
