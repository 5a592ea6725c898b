/* CPU affinity: sched_getaffinity(2) and sched_setaffinity(2) of the
 * calling thread. A lab pins itself to one CPU while it binds its hosts'
 * mount namespaces: on Linux 6.18 namespace ids come from per-CPU batches,
 * not in creation order across CPUs, and the kernel refuses to bind a
 * mount namespace whose id is below the caller's (mnt_ns_loop). */
#include "isle.h"

#include <sched.h>

/***
 * The CPUs the calling thread may run on (sched_getaffinity(2)).
 * @function getaffinity
 * @treturn[1] {int,...} CPU numbers, ascending
 * @return[2] nil, message, errno
 */
static int l_getaffinity(lua_State *L)
{
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) < 0)
    return isle_pusherrno(L, errno, "sched_getaffinity");
  lua_newtable(L);
  int n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
    if (CPU_ISSET(cpu, &set)) {
      lua_pushinteger(L, cpu);
      lua_rawseti(L, -2, ++n);
    }
  return 1;
}

/***
 * Let the calling thread run on these CPUs only (sched_setaffinity(2)).
 * @function setaffinity
 * @tparam {int,...} cpus CPU numbers
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_setaffinity(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  cpu_set_t set;
  CPU_ZERO(&set);
  lua_Integer n = luaL_len(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    int isnum;
    lua_Integer cpu = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || cpu < 0 || cpu >= CPU_SETSIZE)
      return luaL_argerror(L, 1, "CPU numbers expected");
    CPU_SET((int)cpu, &set);
  }
  if (sched_setaffinity(0, sizeof set, &set) < 0)
    return isle_pusherrno(L, errno, "sched_setaffinity");
  lua_pushboolean(L, 1);
  return 1;
}

void isle_open_sched(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"getaffinity", l_getaffinity},
      {"setaffinity", l_setaffinity},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
