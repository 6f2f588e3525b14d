#!/usr/bin/env bash
# SCSI conformance of goldcache's per-machine targets (libiscsi iscsi-test-cu,
# family ALL) against stock tgt measured in the same run on the same LUN
# settings: a machine's read-only gold LUN and its read-write upload LUN vs a
# plain target made directly with tgtadm (ACL ALL, no CHAP) with the same two
# LUN settings. Prints pass/skip/fail per suite; goldcache must fail no more
# tests than stock. CUnit counts skips as passes: verdicts are parsed per test.
# The four runs go in parallel (about a minute in all); a LUN where goldcache
# fails more is measured again one run at a time before it is judged.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-targets.sh"
need iscsi-test-cu

gct_lab_start
d=$T_DIR
STOCK=iqn.2001-04.com.example:stock
truncate -s 100M "$d/gold.img" "$d/up-cu.img" "$d/up-stock.img"
gct_secret "$d/cu.secret" 'cu-secret-0000001'
read -r M_T M_I <<<"$(gct_machine cu)"
gct_desired "$d/want.json" "cu:$d/cu.secret:$d/gold.img:$d/up-cu.img"
t_run "reconcile the machine's target" gct reconcile --desired "$d/want.json"

# stock tgt, same LUN settings, created the plain way (outside the managed prefix)
t_run "stock target created with tgtadm" bash -c "
	set -e
	$(declare -f gct_adm); GCT_SOCK='$GCT_SOCK'
	gct_adm --op new --mode target --tid 100 -T $STOCK
	gct_adm --op new --mode logicalunit --tid 100 --lun 1 -b '$d/gold.img'
	gct_adm --op update --mode logicalunit --tid 100 --lun 1 --params readonly=1
	gct_adm --op new --mode logicalunit --tid 100 --lun 2 -b '$d/up-stock.img'
	gct_adm --op bind --mode target --tid 100 -I ALL"

# goldcache admits exactly one initiator name per target (by design), so its
# runs use the machine's name for both of the suite's initiators.
gc_cu() {
	gct_ns env LIBISCSI_CHAP_PASSWORD="$(cat "$d/cu.secret")" timeout 300 \
		iscsi-test-cu -d -t ALL -i "$M_I" -I "$M_I" "iscsi://cu@$GCT_PORTAL/$M_T/$1"
}
stock_cu() { gct_ns timeout 300 iscsi-test-cu -d -t ALL "iscsi://$GCT_PORTAL/$STOCK/$1"; }
gc_cu 1 >"$d/gc-ro.log" 2>&1 &
p1=$!
stock_cu 1 >"$d/stock-ro.log" 2>&1 &
p2=$!
gc_cu 2 >"$d/gc-rw.log" 2>&1 &
p3=$!
stock_cu 2 >"$d/stock-rw.log" 2>&1 &
p4=$!
track $p1
track $p2
track $p3
track $p4
for p in "$p1" "$p2" "$p3" "$p4"; do wait "$p"; done

# iscsi-test-cu text -> "SUITE TEST pass|skip|fail" per test. A test's verdict
# is CUnit's closing "passed"/"FAILED"; "[SKIPPED]" inside a passed test is a skip.
verdicts() {
	awk '
	function flush() {
		if (test != "") print suite, test, (failed ? "fail" : (skipped ? "skip" : "pass"))
		test = ""; failed = 0; skipped = 0
	}
	/^Suite: / { flush(); suite = $2; next }
	/^  Test: / { flush(); test = $2 }
	/^Run Summary:/ { flush(); exit }
	test != "" && /\[SKIPPED\]/ { skipped = 1 }
	test != "" && (/^FAILED$/ || /\.\.\.FAILED$/) { failed = 1 }
	END { flush() }' "$1"
}
# CUnit's own summary: "tests TOTAL RAN PASSED FAILED INACTIVE"
cunit_failed() { awk '$1 == "tests" { print $5; exit }' "$1"; }
count() { verdicts "$1" | awk -v v="$2" '$3 == v { n++ } END { print n + 0 }'; }

for lun in ro rw; do
	# the four runs share two cores: should goldcache's run show more failures,
	# measure that LUN again with one run at a time before judging
	if [ "$(count "$d/gc-$lun.log" fail)" -gt "$(count "$d/stock-$lun.log" fail)" ]; then
		diag "LUN $lun: more failures on goldcache under parallel load; re-running one at a time"
		n=1
		[ $lun = rw ] && n=2
		gc_cu $n >"$d/gc-$lun.log" 2>&1
		stock_cu $n >"$d/stock-$lun.log" 2>&1
	fi
	for who in gc stock; do
		f="$d/$who-$lun.log"
		n=$(verdicts "$f" | wc -l)
		if [ "$n" -lt 200 ]; then
			ok 1 "$who $lun: iscsi-test-cu ran ($n tests parsed)"
			tail -n 20 "$f" | sed 's/^/#   /'
			continue
		fi
		ok 0 "$who $lun: iscsi-test-cu ran $n tests"
		is "$(count "$f" fail)" "$(cunit_failed "$f")" "$who $lun: parsed failures match CUnit's summary"
	done
	diag ""
	diag "LUN $lun: pass/skip/fail per suite, goldcache vs stock tgt"
	printf '# %-24s %14s %14s\n' suite goldcache stock
	join -a1 -a2 -e - -o 0,1.2,2.2 \
		<(verdicts "$d/gc-$lun.log" | awk '{ k[$1] = 1; c[$1, $3]++ }
			END { for (s in k) printf "%s %d/%d/%d\n", s, c[s, "pass"], c[s, "skip"], c[s, "fail"] }' | sort) \
		<(verdicts "$d/stock-$lun.log" | awk '{ k[$1] = 1; c[$1, $3]++ }
			END { for (s in k) printf "%s %d/%d/%d\n", s, c[s, "pass"], c[s, "skip"], c[s, "fail"] }' | sort) |
		awk '{ printf "# %-24s %14s %14s%s\n", $1, $2, $3, ($2 != $3 ? "   <- differs" : "") }'
	gp=$(count "$d/gc-$lun.log" pass) gs=$(count "$d/gc-$lun.log" skip) gf=$(count "$d/gc-$lun.log" fail)
	sp=$(count "$d/stock-$lun.log" pass) ss=$(count "$d/stock-$lun.log" skip) sf=$(count "$d/stock-$lun.log" fail)
	printf '# %-24s %14s %14s\n' TOTAL "$gp/$gs/$gf" "$sp/$ss/$sf"
	worse=$(join -j1 <(verdicts "$d/gc-$lun.log" | awk '{ print $1 "." $2, $3 }' | sort) \
		<(verdicts "$d/stock-$lun.log" | awk '{ print $1 "." $2, $3 }' | sort) |
		awk '$2 == "fail" && $3 != "fail" { print $1 }')
	[ -n "$worse" ] && diag "fails only on goldcache ($lun): $(tr '\n' ' ' <<<"$worse")"
	ok $((gf > sf)) "LUN $lun: goldcache fails $gf tests, stock tgt $sf: no worse"
done
if grep -q 'cu-secret-0000001' "$T_DIR/tgtd.log"; then ok 1 "secret in tgtd's log"; else
	ok 0 "CHAP secret not in tgtd's log"; fi

done_testing
