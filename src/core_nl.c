/* isle.core_nl: the netlink part of isle.core (nl*.c, icmp.c) in a module
 * of its own, linked with libnl-3 and libnl-route-3: isle.core loads it
 * when one of its functions is first asked for (core.c's __index), so a
 * command that needs no netlink (`isle exec`, `isle shell`, containers
 * without a network) does not load libnl. */
#include "isle.h"

ISLE_EXPORT int luaopen_isle_core_nl(lua_State *L);

/* install(core): add the netlink functions and the Net class to core. */
static int install(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  isle_open_nl(L);
  isle_open_icmp(L); /* after nl: adds Net:icmp_socket */
  return 0;
}

ISLE_EXPORT int luaopen_isle_core_nl(lua_State *L)
{
  lua_pushcfunction(L, install);
  return 1;
}
