# bootscripts/: the iPXE templates are embedded into bootscript.o with .incbin,
# so the object depends on them.
$(O)/bootscripts/bootscript.o: $(wildcard bootscripts/*.ipxe)
