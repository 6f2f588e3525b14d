PROGRAMS += goldcached
MAIN_SRCS += appliance/goldcached.c
$(O)/bin/goldcached: $(O)/appliance/goldcached.o
