/* Net link methods that read links: links (one RTM_GETLINK dump through the
 * rtnl_link cache, retried when the dump was interrupted) and link (one
 * RTM_GETLINK by name), as plain tables. */
#include "nl.h"

#include <linux/if.h>

#include <netlink/route/link.h>

#define DUMP_RETRIES 10

static void freecache(void *p)
{
  nl_cache_free(p);
}

static void putlink(void *p)
{
  rtnl_link_put(p);
}

static const char *const operstates[] = {"UNKNOWN",
                                         "NOTPRESENT",
                                         "DOWN",
                                         "LOWERLAYERDOWN",
                                         "TESTING",
                                         "DORMANT",
                                         "UP"};

/* Push the plain table of one link; master is its master's name or NULL.
 * [-0, +1, m] */
static void pushlink(lua_State *L, struct rtnl_link *l, const char *master)
{
  char buf[64];
  lua_createtable(L, 0, 12);
  lua_pushinteger(L, rtnl_link_get_ifindex(l));
  lua_setfield(L, -2, "index");
  lua_pushstring(L, rtnl_link_get_name(l));
  lua_setfield(L, -2, "name");
  const char *kind = rtnl_link_get_type(l);
  if (kind) {
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
  }
  unsigned int flags = rtnl_link_get_flags(l);
  lua_pushboolean(L, (flags & IFF_UP) != 0);
  lua_setfield(L, -2, "up");
  lua_pushboolean(L, (flags & IFF_LOWER_UP) != 0);
  lua_setfield(L, -2, "carrier");
  uint8_t op = rtnl_link_get_operstate(l);
  lua_pushstring(L,
                 op < sizeof operstates / sizeof *operstates ? operstates[op]
                                                             : "UNKNOWN");
  lua_setfield(L, -2, "operstate");
  lua_pushinteger(L, rtnl_link_get_mtu(l));
  lua_setfield(L, -2, "mtu");
  struct nl_addr *a = rtnl_link_get_addr(l);
  if (a && nl_addr_get_len(a) > 0) {
    const unsigned char *b = nl_addr_get_binary_addr(a);
    unsigned int n = nl_addr_get_len(a), o = 0;
    for (unsigned int i = 0; i < n && o + 3 < sizeof buf; i++)
      o += (unsigned)snprintf(
          buf + o, sizeof buf - o, i ? ":%02x" : "%02x", b[i]);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "address");
  }
  int midx = rtnl_link_get_master(l);
  if (midx > 0) {
    lua_pushinteger(L, midx);
    lua_setfield(L, -2, "master_index");
    if (master) {
      lua_pushstring(L, master);
      lua_setfield(L, -2, "master");
    }
  }
  int lidx = rtnl_link_get_link(l);
  if (lidx > 0) {
    lua_pushinteger(L, lidx);
    lua_setfield(L, -2, "link_index");
    if (kind && strcmp(kind, "veth") == 0) {
      lua_pushinteger(L, lidx);
      lua_setfield(L, -2, "peer");
    }
  }
  int32_t nsid;
  if (rtnl_link_get_link_netnsid(l, &nsid) == 0) {
    lua_pushinteger(L, nsid);
    lua_setfield(L, -2, "link_netnsid");
  }
}

/***
 * All links of the namespace as plain tables: `index`, `name`, `kind`,
 * `up`, `carrier`, `operstate` ("UP", "DOWN", ... as ip), `mtu`,
 * `address`, `master` (name), `master_index`, `link_index`, `peer` (the
 * veth peer's index, in `link_netnsid`'s namespace when that is set).
 * @function Net:links
 * @treturn[1] {table,...}
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int net_links(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  char mname[IFNAMSIZ + 1];
  void **box = isle_nlbox(L, freecache);
  lua_toclose(L, -1);
  struct nl_cache *cache = NULL;
  int r = -NLE_DUMP_INTR;
  for (int i = 0; i < DUMP_RETRIES && r == -NLE_DUMP_INTR; i++) {
    net->err = 0;
    r = rtnl_link_alloc_cache(net->sk, AF_UNSPEC, &cache);
  }
  if (r < 0) return isle_nlfail(L, net, r, "links");
  *box = cache;
  lua_newtable(L);
  lua_Integer n = 0;
  for (struct nl_object *o = nl_cache_get_first(cache); o;
       o = nl_cache_get_next(o)) {
    struct rtnl_link *l = (struct rtnl_link *)o;
    int midx = rtnl_link_get_master(l);
    const char *m = NULL;
    if (midx > 0) m = rtnl_link_i2name(cache, midx, mname, sizeof mname);
    pushlink(L, l, m);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/***
 * One link as a plain table (see links), or nil when there is none.
 * @function Net:link
 * @string name
 * @treturn[1] table|nil
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int net_link(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  const char *name = isle_checkifname(L, 2, "name");
  char mname[IFNAMSIZ + 1] = "";
  void **box = isle_nlbox(L, putlink);
  lua_toclose(L, -1);
  struct rtnl_link *l = NULL;
  net->err = 0;
  int r = rtnl_link_get_kernel(net->sk, 0, name, &l);
  if (r < 0) {
    if (net->err == ENODEV || r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV) {
      lua_pushnil(L);
      return 1;
    }
    return isle_nlfail(L, net, r, "link %s", name);
  }
  *box = l;
  int midx = rtnl_link_get_master(l);
  if (midx > 0) {
    struct rtnl_link *m = NULL;
    net->err = 0;
    if (rtnl_link_get_kernel(net->sk, midx, NULL, &m) == 0) {
      snprintf(mname, sizeof mname, "%s", rtnl_link_get_name(m));
      rtnl_link_put(m);
    }
  }
  pushlink(L, l, mname[0] ? mname : NULL);
  return 1;
}

void isle_open_nl_linkinfo(lua_State *L, int methods)
{
  static const luaL_Reg funcs[] = {
      {"links", net_links},
      {"link", net_link},
      {NULL, NULL},
  };
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
