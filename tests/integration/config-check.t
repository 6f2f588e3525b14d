#!/usr/bin/env bash
# goldcached --check and --print-config on good and bad configs: each bad
# config gives its FILE:LINE:COL: KEY.PATH message on stderr and exit 1, usage
# errors exit 2, a good one prints "FILE: ok (...)" and exits 0. The host
# checks run for real: the listen address against a bridge's addresses inside
# a private network namespace, secret files as root and as nobody.
# gc-test: once
. "$GC_SRC/tests/lib.sh"
need goldcached ip setpriv

GC=$(command -v goldcached)
# gc_run ARGS...: runs goldcached; output (stdout+stderr) in OUT, exit code in RC
gc_run() {
	OUT=$("$@" 2>&1)
	RC=$?
}

# The configs live where nobody can read them (for the setpriv case).
chmod 711 "$T_DIR"
D="$T_DIR/pub"
mkdir -m 755 "$D"
printf 'topsecret-value-1234\n' >"$D/pc01.secret"
chmod 600 "$D/pc01.secret"
printf 'admin-token-abcdefgh\n' >"$D/admin.token"
chmod 600 "$D/admin.token"

# conf NAME: writes $D/NAME.yaml from stdin after the common appliance part
# (listen: $LISTEN, dhcp range $RANGE)
LISTEN=10.77.0.1
RANGE=10.77.0.100-10.77.0.200
IFACE=gcbr0
conf() {
	{
		cat <<-EOT
			appliance:
			  interface: $IFACE
			  listen: $LISTEN
			  dhcp:
			    range: $RANGE
			  admin_token_file: $D/admin.token
			images:
			  - name: debian12
			    kernel: /boot/vmlinuz
			    initrd: /boot/initrd.img
			profiles:
			  - name: desktop
			    image: debian12
			  - name: hpc
			    image: debian12
			    mode: stream
		EOT
		cat
	} >"$D/$1.yaml"
	chmod 644 "$D/$1.yaml"
}

conf good <<EOF2
machines:
  - mac: 52:54:00:12:34:56
    name: pc01
    profile: desktop
    chap_secret_file: $D/pc01.secret
  - mac: 52-54-00-12-34-57
    profile: hpc
groups:
  - match: "52:54:00:*"
    profile: desktop
EOF2

# A boot network: a bridge with the appliance's address, in a private netns.
ns=$(netns_new cfg)
ip -n "$ns" link add gcbr0 type bridge || bail "cannot create a bridge in $ns"
ip -n "$ns" addr add 10.77.0.1/24 dev gcbr0
ip -n "$ns" link set gcbr0 up
inns() { ip netns exec "$ns" "$@"; }

gc_run inns "$GC" --check -c "$D/good.yaml"
is "$RC" 0 "good config: exit 0"
is "$OUT" "$D/good.yaml: ok (2 machines, 2 profiles, 1 images)" "good config: ok line with counts"

gc_run "$GC" --check --no-host-checks -c "$GC_SRC/config/example.yaml"
is "$RC" 0 "config/example.yaml passes --check --no-host-checks"

# --print-config: defaults filled in, secret paths shown, secret contents never
gc_run "$GC" --print-config -c "$D/good.yaml"
is "$RC" 0 "--print-config exits 0"
like "$OUT" 'lease_time: 1h' "--print-config fills in the default lease time"
like "$OUT" 'portal: 10\.77\.0\.1:3260' "--print-config derives the portal from listen"
like "$OUT" "chap_secret_file: $D/pc01.secret" "--print-config shows the secret file's path"
like "$OUT" 'name: 52-54-00-12-34-57' "--print-config shows the default machine name"
if printf '%s' "$OUT" | grep -q -e topsecret -e admin-token-; then
	ok 1 "--print-config prints no secret"
else
	ok 0 "--print-config prints no secret"
fi
printf '%s\n' "$OUT" >"$D/printed.yaml"
gc_run inns "$GC" --check -c "$D/printed.yaml"
is "$RC" 0 "the printed config passes --check again"

# bad NAME REGEX DESC [RUNNER...]: --check on $D/NAME.yaml fails with exit 1
# and a message matching REGEX (the file name is prepended)
bad() {
	local name=$1 re=$2 desc=$3
	shift 3
	gc_run "$@" "$GC" --check -c "$D/$name.yaml"
	is "$RC" 1 "$desc: exit 1"
	like "$OUT" "^$D/$name\\.yaml:$re" "$desc: message"
}

printf 'appliance:\n  interface: gcbr0\n  listen: [10.77.0.1\n' >"$D/malformed.yaml"
bad malformed '4:1: YAML syntax error: did not find expected' "malformed YAML"

conf dupmac <<EOF2
machines:
  - mac: 52:54:00:12:34:56
    profile: desktop
  - mac: 52:54:00:12:34:AB
    profile: desktop
  - mac: 52-54-00-12-34-56
    profile: hpc
EOF2
bad dupmac '22:10: machines\[2\]\.mac: duplicate MAC 52:54:00:12:34:56 \(already used by machines\[0\] at line 18' \
	"duplicate MAC" inns

conf unkprofile <<EOF2
machines:
  - mac: 52:54:00:12:34:56
    profile: dekstop
EOF2
bad unkprofile '19:14: machines\[0\]\.profile: unknown profile "dekstop" \(defined profiles: desktop, hpc\)' \
	"unknown profile" inns

conf unkimage <<EOF2
  - name: lab
    image: debian11
EOF2
bad unkimage '18:12: profiles\[2\]\.image: unknown image "debian11" \(defined images: debian12\)' \
	"unknown image" inns

conf badmac <<EOF2
machines:
  - mac: 52:54:zz:12:34:56
    profile: desktop
EOF2
bad badmac '18:10: machines\[0\]\.mac: "52:54:zz:12:34:56" is not a MAC address \(expected six hex pairs like 52:54:00:12:34:56\)' \
	"bad MAC" inns

conf unknownkey <<EOF2
machines:
  - mac: 52:54:00:12:34:56
    profile: desktop
    chap_secret: /x
EOF2
bad unknownkey '20:5: machines\[0\]\.chap_secret: unknown key "chap_secret" \(did you mean "chap_secret_file"\?\)' \
	"unknown key with a suggestion" inns

# host checks: the listen address must be on the interface
LISTEN=10.77.0.9 conf notmine </dev/null
bad notmine '3:11: appliance\.listen: 10\.77\.0\.9 is not an address of interface "gcbr0" \(it has 10\.77\.0\.1; ' \
	"listen address not on the interface" inns
gc_run "$GC" --check --no-host-checks -c "$D/notmine.yaml"
is "$RC" 0 "--no-host-checks skips the interface probe"
IFACE=gcbr9 conf noiface </dev/null
bad noiface '2:14: appliance\.interface: no interface "gcbr9" on this host' "missing interface" inns
RANGE=10.77.1.100-10.77.1.200 conf offnet </dev/null
bad offnet '5:12: appliance\.dhcp\.range: "10\.77\.1\.100-10\.77\.1\.200" is not inside 10\.77\.0\.1.s subnet 10\.77\.0\.0 netmask 255\.255\.255\.0 \(from the interface.s netmask' \
	"DHCP range outside the interface's subnet" inns

# secret files: a directory, a missing file, a file nobody may read
conf secretdir <<EOF2
machines:
  - mac: 52:54:00:12:34:56
    profile: desktop
    chap_secret_file: $D
EOF2
bad secretdir "20:23: machines\\[0\\]\\.chap_secret_file: \"$D\" is a directory" "secret file is a directory" inns
conf secretmissing <<EOF2
machines:
  - mac: 52:54:00:12:34:56
    profile: desktop
    chap_secret_file: $D/nope
EOF2
bad secretmissing "20:23: machines\\[0\\]\\.chap_secret_file: cannot read \"$D/nope\": No such file or directory" \
	"secret file missing" inns
bad good "6:21: appliance\\.admin_token_file: cannot read \"$D/admin\\.token\": Permission denied" \
	"unreadable admin token (run as nobody)" inns setpriv --reuid=nobody --regid=nogroup --clear-groups
like "$OUT" "chap_secret_file: cannot read \"$D/pc01\\.secret\": Permission denied" \
	"unreadable CHAP secret (run as nobody)"
if printf '%s' "$OUT" | grep -q topsecret; then ok 1 "no secret in errors"; else ok 0 "no secret in errors"; fi

# several errors at once: all reported, then the count
conf several <<EOF2
machines:
  - mac: nope
    profile: desktop
  - mac: 52:54:00:12:34:56
    profile: nope
EOF2
gc_run "$GC" --check --no-host-checks -c "$D/several.yaml"
is "$RC" 1 "several errors: exit 1"
is "$(printf '%s\n' "$OUT" | grep -c "^$D/several.yaml:")" 3 "both errors and the count line"
like "$OUT" "^$D/several.yaml: 2 errors" "error count line"

# usage errors exit 2
gc_run "$GC" --bogus
is "$RC" 2 "unknown option: exit 2"
gc_run "$GC" --check --print-config -c "$D/good.yaml"
is "$RC" 2 "--check with --print-config: exit 2"
gc_run "$GC" -c
is "$RC" 2 "-c without a file: exit 2"
gc_run "$GC" --check -c "$D/good.yaml" extra
is "$RC" 2 "stray argument: exit 2"
gc_run "$GC" --check -c "$D/absent.yaml"
is "$RC" 1 "missing config file: exit 1"
like "$OUT" "^$D/absent\\.yaml: cannot read the config: No such file or directory" "missing file message"
gc_run "$GC" -h
is "$RC" 0 "-h exits 0"
like "$OUT" 'exit codes: 0 ok, 1 invalid config' "-h documents the exit codes"
done_testing
