/* isle.core: the C module. Each file adds its functions to one table;
 * those of netlink (nl*.c, icmp.c: libnl) live in isle.core_nl, loaded by
 * the table's __index when one of them is first asked for. */
#include "isle.h"

ISLE_EXPORT int luaopen_isle_core(lua_State *L);

/* The names isle.core_nl adds to the table. */
static const char *const nl_names[] = {
    "net_open", "parse_ip", "Net", "ping", NULL};

/* __index(core, key): one of nl_names loads isle.core_nl into core. */
static int core_index(lua_State *L)
{
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  int i = 0;
  while (k && nl_names[i] && strcmp(nl_names[i], k) != 0)
    i++;
  if (!k || !nl_names[i]) return 0;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "isle.core_nl");
  lua_call(L, 1, 1);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 0);
  lua_settop(L, 2);
  lua_rawget(L, 1);
  return 1;
}

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
  isle_open_poll(L);
  isle_open_stat(L);
  isle_open_sched(L);
  isle_open_seccomp(L);
  isle_open_unbind(L);
  isle_open_settle(L);
  isle_open_holder(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, core_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  return 1;
}
