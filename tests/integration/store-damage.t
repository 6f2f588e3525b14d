#!/usr/bin/env bash
# Damage and bad input: a flipped byte and a deleted chunk file are reported by
# verify (chunk id and the versions using it, exit 4) and export refuses,
# leaving no output file; bad input (missing or unreadable file, size not a
# multiple of 512, garbage manifest, unknown image/version, bad names) gets a
# clear error and leaves the store unchanged.
. "$GC_SRC/tests/lib.sh"
need goldctl cmp jq sha256sum setpriv

export GOLDCACHE_STORE=$T_DIR/store
cd "$T_DIR" || bail "no temp dir"

# none PATTERN...: no such file (nor temp file) exists
none() { [ -z "$(ls -d "$@" 2>/dev/null)" ]; }
# a listing + hash of every file in the store, to prove "unchanged"
snap() { (cd "$GOLDCACHE_STORE" && find . -path ./lock -prune -o -print0 | sort -z | xargs -0 -r sha256sum 2>/dev/null; find . | sort) | sha256sum; }

head -c $((8 * 1048576)) /dev/urandom >a.img
cp a.img b.img
head -c 1048576 /dev/urandom | dd of=b.img bs=1M seek=5 conv=notrunc status=none
goldctl image import img a.img >/dev/null
goldctl image import img b.img >/dev/null
goldctl image import other a.img >/dev/null
t_run "sound store verifies" goldctl image verify

# ---- bad input: clear error, store unchanged ----
before=$(snap)
t_fails "missing file" goldctl image import img nosuch.img
like "$T_OUT" "cannot open 'nosuch.img': No such file" "names the file and the reason"
is "$(goldctl image import img nosuch.img >/dev/null 2>&1; echo $?)" 1 "a bad input file is exit 1"
t_fails "a directory" goldctl image import img "$T_DIR"
like "$T_OUT" "not a regular file" "says it is not a regular file"
chmod 755 "$T_DIR"
chmod 600 a.img
t_fails "unreadable file (as nobody)" setpriv --reuid=nobody --regid=nogroup --clear-groups \
	env GOLDCACHE_STORE="$GOLDCACHE_STORE" "$GC_BUILD/bin/goldctl" image import img "$T_DIR/a.img"
like "$T_OUT" "cannot open '$T_DIR/a.img': Permission denied" "names the file and the reason"
chmod 700 "$T_DIR"
head -c 1000 /dev/urandom >odd.img
t_fails "size not a multiple of 512" goldctl image import img odd.img
like "$T_OUT" "not a multiple of 512" "says why"
t_fails "name with a slash" goldctl image import a/b a.img
like "$T_OUT" "invalid image reference 'a/b'" "names the bad name"
t_fails "name with a space" goldctl image import "a b" a.img
is "$(goldctl image import 'a b' a.img >/dev/null 2>&1; echo $?)" 2 "bad name is a usage error (2)"
t_fails "unknown image" goldctl image export nosuch x.out
like "$T_OUT" "no image 'nosuch'" "names the image"
is "$(goldctl image export nosuch x.out >/dev/null 2>&1; echo $?)" 3 "not found is exit 3"
t_fails "unknown version" goldctl image export img@9 x.out
like "$T_OUT" "no version 9 of image 'img'" "names the version"
t_fails "bad version syntax" goldctl image export img@x x.out
t_fails "export into a missing folder" goldctl image export img@1 nodir/x.out
like "$T_OUT" "cannot write 'nodir/x.out'" "names the output, not the image"
is "$(goldctl image export img@1 nodir/x.out >/dev/null 2>&1; echo $?)" 1 "exit 1"
mkfifo fifo.img
t_fails "a FIFO is refused (without blocking)" timeout 10 goldctl image import img fifo.img
like "$T_OUT" "not a regular file" "says why"
rm -f fifo.img
t_fails "promote unknown version" goldctl image promote img@9
t_fails "rm unknown version" goldctl image rm img@9
t_fails "verify unknown image" goldctl image verify nosuch
t_fails "unknown command" goldctl image frobnicate
t_fails "unknown option" goldctl image list --frob
t_fails "store that does not exist" goldctl --store "$T_DIR/none" image list
like "$T_OUT" "no store at" "says there is no store"
t_fails "import of a missing file into a new store" goldctl --store "$T_DIR/none" image import x nosuch.img
ok "$([ -e "$T_DIR/none" ] && echo 1 || echo 0)" "creates no store"
none x.out
ok $? "no output file from failed exports"
is "$(snap)" "$before" "store unchanged by all bad input"

# ---- garbage manifest ----
mdir=$GOLDCACHE_STORE/images/img/versions
cp "$mdir/2.manifest" m2.save
chmod u+w "$mdir/2.manifest"
sed -i 's/^size /size 1/' "$mdir/2.manifest"
t_fails "verify reports a garbage manifest" goldctl image verify
like "$T_OUT" "damaged manifest: img@2 .*line 6" "names the version and the line"
t_fails "export of the damaged version refused" goldctl image export img@2 g.out
none g.out*
ok $? "no output file"
before=$(snap)
t_fails "gc refuses to sweep with a damaged manifest" goldctl store gc
is "$(snap)" "$before" "gc changed nothing"
t_run "the other version still exports" goldctl image export img@1 g1.out
rm g1.out
cp m2.save "$mdir/2.manifest"

# ---- a flipped byte in a chunk shared by img@1, img@2, other@1 ----
id=$(goldctl image manifest img@1 | sed -n 10p)
f=$GOLDCACHE_STORE/chunks/${id:0:2}/$id
chmod u+w "$f"
cp "$f" chunk.save
printf '\x5a' | dd of="$f" bs=1 seek=4000 conv=notrunc status=none
t_fails "verify finds the flipped byte" goldctl image verify
like "$T_OUT" "damaged chunk $id used by img@1 img@2 other@1" "names the chunk and every version using it"
is "$(goldctl image verify >/dev/null 2>&1; echo $?)" 4 "damage is exit 4"
t_fails "export refuses damaged data" goldctl image export img@2 e.out
like "$T_OUT" "chunk 0 \($id\) at offset 0 is damaged" "names the chunk and offset"
none e.out*
ok $? "and leaves no output (nor temp) file"

cp chunk.save "$f"
t_run "restored chunk verifies" goldctl image verify

# ---- a deleted chunk used only by img@2 ----
id2=$(goldctl image manifest img@2 | sed -n 15p)
rm -f "$GOLDCACHE_STORE/chunks/${id2:0:2}/$id2"
t_fails "verify finds the missing chunk" goldctl image verify img
like "$T_OUT" "missing chunk $id2 used by img@2" "names the missing chunk and its version"
out=$(goldctl --json image verify)
is "$(jq .sound <<<"$out")" "false" "--json verify: sound false"
is "$(jq -c '[.bad_chunks[] | [.problem, .used_by]]' <<<"$out")" '[["missing","img@2"]]' "--json verify lists it"
t_fails "export refuses a missing chunk" goldctl image export img@2 e.out
like "$T_OUT" "chunk 5 \($id2\) at offset 5242880 is missing" "names chunk and offset"
none e.out*
ok $? "no output file"
t_run "verify of a version not using it passes" goldctl image verify other@1
printf '\x5a' | dd of="$f" bs=1 seek=4000 conv=notrunc status=none

# repair: re-importing the same data rewrites nothing (dedup) but the damaged chunk
# stays damaged; removing the chunk file and re-importing heals the store
rm -f "$f"
goldctl image import img a.img >/dev/null
goldctl image import img b.img >/dev/null
t_run "re-import heals the missing chunks" goldctl image verify
t_run "healed img@2 exports" goldctl image export img@2 h.out
t_run "healed export bit-identical" cmp b.img h.out
done_testing
