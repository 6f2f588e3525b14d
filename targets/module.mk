# targets/: tgt reconciler library; gc-targets is its operator and test tool.
PROGRAMS += gc-targets
MAIN_SRCS += targets/gc-targets.c
$(O)/bin/gc-targets: $(O)/targets/gc-targets.o
