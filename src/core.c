/* isle.core: the C module. Each file adds its functions to one table. */
#include "isle.h"

ISLE_EXPORT int luaopen_isle_core(lua_State *L);

ISLE_EXPORT int luaopen_isle_core(lua_State *L)
{
  lua_newtable(L);
  isle_open_aux(L);
  isle_open_fs(L);
  isle_open_ns(L);
  isle_open_spawn(L);
  isle_open_process(L);
  isle_open_tty(L);
  isle_open_idmap(L);
  isle_open_mount(L);
  isle_open_netns(L);
  isle_open_nl(L);
  isle_open_icmp(L); /* after nl: adds Net:icmp_socket */
  isle_open_poll(L);
  isle_open_stat(L);
  isle_open_sched(L);
  isle_open_seccomp(L);
  isle_open_holder(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
