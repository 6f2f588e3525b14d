# gc-fetch: reads a whole LUN over iSCSI the way goldagent hydrates (bench, tests)
PROGRAMS += gc-fetch
MAIN_SRCS += agent/gc-fetch.c
$(O)/bin/gc-fetch: $(O)/agent/gc-fetch.o
