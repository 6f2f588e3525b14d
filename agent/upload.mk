# gc-upload: writes a volume's changed chunks to an upload LUN and prints the commit body (tests, bench)
PROGRAMS += gc-upload
MAIN_SRCS += agent/gc-upload.c
$(O)/bin/gc-upload: $(O)/agent/gc-upload.o
