PROGRAMS += goldcached
MAIN_SRCS += appliance/goldcached.c
$(O)/bin/goldcached: $(O)/appliance/goldcached.o

# gc-dhcp: appliance/dhcp.c from the command line (tests, lab, operators)
PROGRAMS += gc-dhcp
MAIN_SRCS += appliance/gc-dhcp.c
$(O)/bin/gc-dhcp: $(O)/appliance/gc-dhcp.o

# goldctl: the admin CLI (image and store commands: appliance/ctl-image.c)
PROGRAMS += goldctl
MAIN_SRCS += appliance/goldctl.c
$(O)/bin/goldctl: $(O)/appliance/goldctl.o
