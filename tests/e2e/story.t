#!/usr/bin/env bash
# Issue 5's story in QEMU with the real pieces, each step asserted (tests/lib-story.sh,
# shared with `make demo`): laptop1 PXE-boots through goldcached (dnsmasq, iPXE,
# HTTP, tgtd) into its cache-mode gold image served by goldagent attach from the
# initramfs while the cache on its own disk fills; with the appliance stopped it
# reboots from that disk (image-build/local-disk.sh's layout) and writes a file
# offline; then the appliance comes back and it syncs, a second machine is restored
# from the snapshot, and `goldctl machine vm` boots it. A step whose piece is missing
# stops the story with "step N not available: WHY" and fails the test.
# gc-test: slow
# gc-test: once
. "$GC_SRC/tests/lib.sh"
. "$GC_SRC/tests/lib-lab.sh"
. "$GC_SRC/tests/lib-qemu.sh"
. "$GC_SRC/tests/lib-e2e.sh"
. "$GC_SRC/tests/lib-story.sh"

story_setup
story_step1
story_step2
story_step3
story_step4
story_step5
story_summary
# a failed check, or a step that was not available (with STORY_CONTINUE=1), fails
# the story
failed=$T_FAILED
[ ${#STORY_MISSING[@]} = 0 ] && [ "$failed" = 0 ]
ok $? "every step of the story held ($failed failed check(s), ${#STORY_MISSING[@]} step(s) not available)"
done_testing
