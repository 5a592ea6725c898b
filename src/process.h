/* Shared by process.c (the Process object) and proc_calls.c (the
 * process-level calls of isle.core). */
#ifndef ISLE_PROCESS_H
#define ISLE_PROCESS_H

#include "isle.h"

/* A signal argument at arg: a number, or a name ("TERM", "SIGKILL");
 * default TERM. Raises for an unknown one. */
int isle_checksignal(lua_State *L, int arg);
/* Add the process-level calls to the table on top of the stack. */
void isle_open_proc_calls(lua_State *L);

#endif
