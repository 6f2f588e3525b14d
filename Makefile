# goldcache: one non-recursive GNU Makefile.
#
#   make              all binaries into $(O)/bin (O defaults to build)
#   make check        deps, then unit + integration + fuzz-corpus replay, twice:
#                     plain build and ASan+UBSan build (O=build-asan)
#   make check-full   check, plus the slow tiers (tests listed in tests/slow.list)
#   make lint         cppcheck, clang-tidy allow-list, shellcheck, clang-format, banned calls
#   make bench        side-by-side benchmarks (bench/*.sh), printing ratios
#   make demo         the main job on the embedded default config: issue 5's story in
#                     QEMU on the Debian image (DEMO_IMAGE=tiny: the quick one)
#   make demo-store   the store alone (two versions, dedup, export, rollback), seconds
#
# Each folder owns fragments (<folder>/*.mk) that add its programs;
# every other .c file in the source folders is library code linked into all.

O        ?= build
SAN      ?=
CC       ?= gcc
PKGS     := libcrypto libzstd yaml-0.1 sqlite3 libmicrohttpd jansson libiscsi
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
            -Wformat=2 -Wno-format-nonliteral
CFLAGS   ?= -O2 -g
ifneq ($(CI),)
WARN     += -Werror
endif
ifeq ($(SAN),1)
CFLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif
ALL_CFLAGS := -std=c17 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(WARN) $(CFLAGS) -I. \
              $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -MMD -MP
LIBS     := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread

SRC_DIRS := lib config targets bootscripts appliance agent
MAIN_SRCS :=
PROGRAMS :=

# module fragments add to MAIN_SRCS and PROGRAMS (their rules must not become the default)
.DEFAULT_GOAL := all
-include $(wildcard $(addsuffix /*.mk,$(SRC_DIRS)))

LIB_SRCS := $(filter-out $(MAIN_SRCS),$(wildcard $(addsuffix /*.c,$(SRC_DIRS))))
LIB_OBJS := $(LIB_SRCS:%.c=$(O)/%.o)
LIBA     := $(O)/libgoldcache.a

UNIT_SRCS := $(wildcard tests/unit/test-*.c)
UNIT_BINS := $(UNIT_SRCS:%.c=$(O)/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BINS := $(FUZZ_SRCS:%.c=$(O)/%)
BINS      := $(addprefix $(O)/bin/,$(PROGRAMS))

# keep objects: the pattern chains would otherwise delete them and rebuild
.SECONDARY:

.PHONY: lint-quick all deps check check-one check-full lint bench demo demo-store clean fuzz format
all: $(BINS) $(UNIT_BINS) $(FUZZ_BINS) $(FUZZ_BINS:%=%.replay)

deps:
	@bash .ci/install-deps

$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBA): $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(O)/tests/unit/%: $(O)/tests/unit/%.o $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Fuzz harnesses: linked with a replay driver (plain main over corpus files) so the
# corpus runs in make check with gcc; `make fuzz` builds libFuzzer binaries with clang.
FUZZ_DRIVER := $(if $(FUZZ_LIBFUZZER),,$(O)/tests/fuzz/replay.o)
$(O)/tests/fuzz/%: $(O)/tests/fuzz/%.o $(FUZZ_DRIVER) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# each harness's corpus replays as one TAP test
$(O)/tests/fuzz/%.replay: $(O)/tests/fuzz/%
	@printf '#!/bin/sh\nexec "%s" "%s"\n' "$(abspath $<)" "$(CURDIR)/tests/fuzz/corpus/$*" >$@
	@chmod +x $@

$(O)/tests/fuzz/replay.o: tests/fuzz/replay.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(O)/bin/%: $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIBA) $(LIBS)

# Tests see the build through GC_BUILD (absolute), GC_SRC, GC_SAN and GC_FULL.
# A test script marks its tier in a comment line:
#   # gc-test: slow   only in check-full
#   # gc-test: once   only in the plain pass (not repeated under ASan: QEMU, peers only)
SCRIPT_TESTS := $(wildcard tests/integration/*.t tests/e2e/*.t)
SLOW_TESTS   := $(shell grep -l '^\# gc-test: slow' $(SCRIPT_TESTS) /dev/null 2>/dev/null)
UNIT_TESTS   := $(UNIT_BINS) $(FUZZ_BINS:%=%.replay)
TESTS ?= $(UNIT_TESTS) $(filter-out $(SLOW_TESTS),$(SCRIPT_TESTS))
PROVE_J ?= 1
check-one: all
	@GC_BUILD=$(abspath $(O)) GC_SAN=$(SAN) GC_SRC=$(CURDIR) GC_FULL=$(GC_FULL) \
	  prove -j$(PROVE_J) --exec '$(CURDIR)/tests/run-one' --timer $(TESTS)

check: deps
	@$(MAKE) --no-print-directory check-one O=build
	@$(MAKE) --no-print-directory check-one O=build-asan SAN=1

check-full: deps
	@$(MAKE) --no-print-directory check-one O=build GC_FULL=1 TESTS="$(UNIT_TESTS) $(SCRIPT_TESTS)"

fuzz:
	@$(MAKE) --no-print-directory O=build-fuzz CC=clang \
	  CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" \
	  LDFLAGS="-fsanitize=fuzzer,address,undefined" FUZZ_LIBFUZZER=1 $(FUZZ_SRCS:%.c=build-fuzz/%)

lint:
	@bash tests/lint.sh

bench: all
	@for b in bench/*.sh; do GC_BUILD=$(abspath $(O)) bash $$b || exit 1; done

demo: deps all
	@GC_BUILD=$(abspath $(O)) bash image-build/demo.sh

demo-store: deps all
	@GC_BUILD=$(abspath $(O)) bash image-build/store-demo.sh

format:
	clang-format -i $(LIB_SRCS) $(MAIN_SRCS) $(wildcard */*.h tests/*/*.c)

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(O) -path $(O)/images -prune -o -name '*.d' -type f -print 2>/dev/null)

lint-quick:
	@bash tests/lint.sh quick

-include image-build/images.mk
