/* goldagent's appliance-facing commands: hydrate/serve --appliance, sync,
 * attach (see attach.c). */
#ifndef GC_AGENT_ATTACH_H
#define GC_AGENT_ATTACH_H

/* 1 when argv asks for one of these (goldagent.c dispatches to attach_main). */
int attach_wants(int argc, char **argv);
int attach_main(int argc, char **argv);

#endif
