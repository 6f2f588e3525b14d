# goldagent: the machine-side agent (local cache, NBD exports, chunk sources)
PROGRAMS += goldagent
MAIN_SRCS += agent/goldagent.c
$(O)/bin/goldagent: $(O)/agent/goldagent.o
