/* Net address and route methods, IPv4 and IPv6: addr_add, addr_del, addrs,
 * route_add, route_del, routes. Requests are built with libnl's message
 * API; dumps use the rtnl_addr / rtnl_route caches. */
#include "nl.h"

#include <arpa/inet.h>
#include <limits.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>

#define DUMP_RETRIES 10

static void freemsg(void *p)
{
  nlmsg_free(p);
}

static void freecache(void *p)
{
  nl_cache_free(p);
}

/* An address argument "A[/N]" at arg; raises when malformed. */
static int checkaddr(lua_State *L, int arg, unsigned char *buf, int *plen)
{
  const char *s = luaL_checkstring(L, arg);
  int family = isle_parseaddr(s, buf, plen);
  if (!family)
    luaL_argerror(L, arg, lua_pushfstring(L, "malformed address '%s'", s));
  return family;
}

static const char *familyname(int family)
{
  return family == AF_INET ? "inet" : family == AF_INET6 ? "inet6" : "other";
}

static const char *scopename(int scope)
{
  switch (scope) {
  case RT_SCOPE_UNIVERSE:
    return "global";
  case RT_SCOPE_SITE:
    return "site";
  case RT_SCOPE_LINK:
    return "link";
  case RT_SCOPE_HOST:
    return "host";
  case RT_SCOPE_NOWHERE:
    return "nowhere";
  }
  return "other";
}

/* addr_add / addr_del */
static int addr_change(lua_State *L, int cmd, const char *op)
{
  struct isle_net *net = isle_checknet(L, 1);
  const char *ifname = isle_checkifname(L, 2, "ifname");
  const char *cidr = luaL_checkstring(L, 3);
  unsigned char addr[16];
  int plen, r;
  int family = checkaddr(L, 3, addr, &plen);
  int nodad = 0;
  if (!lua_isnoneornil(L, 4)) {
    static const char *const fields[] = {"nodad", NULL};
    luaL_checktype(L, 4, LUA_TTABLE);
    isle_checkfields(L, 4, fields);
    lua_getfield(L, 4, "nodad");
    nodad = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (plen < 0) plen = family == AF_INET ? 32 : 128;
  int index = isle_nlifindex(net, ifname, &r);
  if (!index) return isle_nlfail(L, net, r, "%s %s %s", op, ifname, cidr);
  void **box = isle_nlbox(L, freemsg);
  lua_toclose(L, -1);
  struct nl_msg *msg = *box = nlmsg_alloc_simple(
      cmd,
      NLM_F_REQUEST | (cmd == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_EXCL : 0));
  if (!msg) return isle_pusherrno(L, ENOMEM, "%s %s %s", op, ifname, cidr);
  struct ifaddrmsg ifa = {
      .ifa_family = (unsigned char)family,
      .ifa_prefixlen = (unsigned char)plen,
      .ifa_flags = nodad ? IFA_F_NODAD : 0,
      .ifa_scope = (family == AF_INET && addr[0] == 127) ? RT_SCOPE_HOST
                                                         : RT_SCOPE_UNIVERSE,
      .ifa_index = (unsigned)index,
  };
  size_t alen = family == AF_INET ? 4 : 16;
  r = nlmsg_append(msg, &ifa, sizeof ifa, NLMSG_ALIGNTO);
  r |= nla_put(msg, IFA_LOCAL, (int)alen, addr);
  r |= nla_put(msg, IFA_ADDRESS, (int)alen, addr);
  if (r < 0) {
    net->err = 0;
    return isle_nlfail(L, net, -NLE_MSGSIZE, "%s %s %s", op, ifname, cidr);
  }
  r = isle_nlsend(net, isle_nlbox_steal(L, -1));
  if (r < 0) return isle_nlfail(L, net, r, "%s %s %s", op, ifname, cidr);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Add an address to a link, as `ip addr add CIDR dev IFNAME`.
 * @function Net:addr_add
 * @string ifname
 * @string cidr "10.0.0.1/24" or "2001:db8::1/64" (no prefix: /32, /128)
 * @tparam[opt] table opts `nodad = true` (IPv6: usable at once, no DAD)
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("addr_add eth0 10.0.0.1/24: File exists")
 * @treturn[2] int errno
 * @raise on a malformed address
 */
static int net_addr_add(lua_State *L)
{
  return addr_change(L, RTM_NEWADDR, "addr_add");
}

/***
 * Remove an address from a link.
 * @function Net:addr_del
 * @string ifname
 * @string cidr
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int net_addr_del(lua_State *L)
{
  return addr_change(L, RTM_DELADDR, "addr_del");
}

/* Push the text of the binary address a (no prefix). [-0, +1, m] */
static void puship(lua_State *L, struct nl_addr *a)
{
  char buf[INET6_ADDRSTRLEN];
  int family = nl_addr_get_family(a);
  if ((family == AF_INET || family == AF_INET6) &&
      inet_ntop(family, nl_addr_get_binary_addr(a), buf, sizeof buf))
    lua_pushstring(L, buf);
  else
    lua_pushnil(L);
}

/***
 * Addresses as plain tables `{address =, prefixlen =, cidr =, family =
 * "inet"|"inet6", scope =, dev =, index =}`, of one link or of all.
 * @function Net:addrs
 * @string[opt] ifname
 * @treturn[1] {table,...}
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int net_addrs(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  const char *ifname = NULL;
  char name[IFNAMSIZ + 1];
  int r, index = 0;
  if (!lua_isnoneornil(L, 2)) ifname = isle_checkifname(L, 2, "ifname");
  if (ifname && !(index = isle_nlifindex(net, ifname, &r)))
    return isle_nlfail(L, net, r, "addrs %s", ifname);
  void **lbox = isle_nlbox(L, freecache);
  lua_toclose(L, -1);
  void **abox = isle_nlbox(L, freecache);
  lua_toclose(L, -1);
  struct nl_cache *links = NULL, *addrs = NULL;
  r = -NLE_DUMP_INTR;
  for (int i = 0; i < DUMP_RETRIES && r == -NLE_DUMP_INTR; i++) {
    net->err = 0;
    r = rtnl_link_alloc_cache(net->sk, AF_UNSPEC, &links);
  }
  if (r < 0) return isle_nlfail(L, net, r, "addrs");
  *lbox = links;
  r = -NLE_DUMP_INTR;
  for (int i = 0; i < DUMP_RETRIES && r == -NLE_DUMP_INTR; i++) {
    net->err = 0;
    r = rtnl_addr_alloc_cache(net->sk, &addrs);
  }
  if (r < 0) return isle_nlfail(L, net, r, "addrs");
  *abox = addrs;
  lua_newtable(L);
  lua_Integer n = 0;
  for (struct nl_object *o = nl_cache_get_first(addrs); o;
       o = nl_cache_get_next(o)) {
    struct rtnl_addr *a = (struct rtnl_addr *)o;
    int idx = rtnl_addr_get_ifindex(a);
    if (index && idx != index) continue;
    struct nl_addr *local = rtnl_addr_get_local(a);
    if (!local) continue;
    lua_createtable(L, 0, 7);
    puship(L, local);
    const char *ip = lua_tostring(L, -1);
    int plen = rtnl_addr_get_prefixlen(a);
    lua_pushfstring(L, "%s/%d", ip ? ip : "?", plen);
    lua_setfield(L, -3, "cidr");
    lua_setfield(L, -2, "address");
    lua_pushinteger(L, plen);
    lua_setfield(L, -2, "prefixlen");
    lua_pushstring(L, familyname(rtnl_addr_get_family(a)));
    lua_setfield(L, -2, "family");
    lua_pushstring(L, scopename(rtnl_addr_get_scope(a)));
    lua_setfield(L, -2, "scope");
    lua_pushinteger(L, idx);
    lua_setfield(L, -2, "index");
    if (rtnl_link_i2name(links, idx, name, sizeof name)) {
      lua_pushstring(L, name);
      lua_setfield(L, -2, "dev");
    }
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* A parsed route request. */
struct routespec {
  int family, dst_len, via_af, src_af, oif;
  int has_dst;
  uint32_t table; /* 1 .. UINT32_MAX - 1: not an int */
  lua_Integer metric;
  unsigned char dst[16], via[16], src[16];
  const char *dev, *text;
};

/* Read the route table at 2 into s; raises on malformed fields. */
static void checkroute(lua_State *L, struct routespec *s)
{
  static const char *const fields[] = {
      "dst", "via", "dev", "metric", "table", "src", "family", NULL};
  int plen;
  luaL_checktype(L, 2, LUA_TTABLE);
  isle_checkfields(L, 2, fields);
  memset(s, 0, sizeof *s);
  s->metric = -1;
  s->table = RT_TABLE_MAIN;
  lua_getfield(L, 2, "dst");
  const char *dst = luaL_optstring(L, -1, "default");
  s->text = dst;
  if (strcmp(dst, "default") != 0) {
    s->family = isle_parseaddr(dst, s->dst, &plen);
    if (!s->family)
      luaL_error(L, "bad argument (field 'dst': malformed prefix '%s')", dst);
    s->dst_len = plen < 0 ? (s->family == AF_INET ? 32 : 128) : plen;
    s->has_dst = s->dst_len > 0;
  }
  lua_pop(L, 1);
  lua_getfield(L, 2, "via");
  if (!lua_isnil(L, -1)) {
    const char *via = luaL_checkstring(L, -1);
    s->via_af = isle_parseaddr(via, s->via, &plen);
    if (!s->via_af || plen >= 0)
      luaL_error(L, "bad argument (field 'via': malformed address '%s')", via);
  }
  lua_pop(L, 1);
  lua_getfield(L, 2, "src");
  if (!lua_isnil(L, -1)) {
    const char *src = luaL_checkstring(L, -1);
    s->src_af = isle_parseaddr(src, s->src, &plen);
    if (!s->src_af || plen >= 0)
      luaL_error(L, "bad argument (field 'src': malformed address '%s')", src);
  }
  lua_pop(L, 1);
  lua_getfield(L, 2, "family");
  if (!lua_isnil(L, -1)) {
    static const char *const fams[] = {"inet", "inet6", NULL};
    const char *f = luaL_checkstring(L, -1);
    int fam = strcmp(f, "inet") == 0    ? AF_INET
              : strcmp(f, "inet6") == 0 ? AF_INET6
                                        : 0;
    if (!fam)
      luaL_error(L,
                 "bad argument (field 'family': '%s', expected %s or %s)",
                 f,
                 fams[0],
                 fams[1]);
    if (s->family && s->family != fam)
      luaL_error(L, "bad argument (field 'family' does not match dst)");
    s->family = fam;
  }
  lua_pop(L, 1);
  if (!s->family) s->family = s->via_af ? s->via_af : AF_INET;
  if (s->via_af && s->via_af != s->family)
    luaL_error(L,
               "bad argument (field 'via': address family differs from dst)");
  if (s->src_af && s->src_af != s->family)
    luaL_error(L,
               "bad argument (field 'src': address family differs from dst)");
  lua_getfield(L, 2, "dev");
  if (!lua_isnil(L, -1)) s->dev = isle_checkifname(L, -1, "dev");
  lua_pop(L, 1);
  lua_getfield(L, 2, "metric");
  if (!lua_isnil(L, -1)) {
    s->metric = luaL_checkinteger(L, -1);
    if (s->metric < 0 || s->metric > UINT32_MAX)
      luaL_error(L, "bad argument (field 'metric': out of range)");
  }
  lua_pop(L, 1);
  lua_getfield(L, 2, "table");
  if (!lua_isnil(L, -1)) {
    lua_Integer t = luaL_checkinteger(L, -1);
    if (t < 1 || t > UINT32_MAX - 1)
      luaL_error(L, "bad argument (field 'table': out of range)");
    s->table = (uint32_t)t;
  }
  lua_pop(L, 1);
  if (!s->via_af && !s->dev)
    luaL_error(L, "bad argument (route needs 'via' or 'dev')");
}

static int route_change(lua_State *L, int cmd, const char *op)
{
  struct isle_net *net = isle_checknet(L, 1);
  struct routespec s;
  int r;
  checkroute(L, &s);
  if (s.dev && !(s.oif = isle_nlifindex(net, s.dev, &r)))
    return isle_nlfail(L, net, r, "%s %s: dev %s", op, s.text, s.dev);
  void **box = isle_nlbox(L, freemsg);
  lua_toclose(L, -1);
  struct nl_msg *msg = *box = nlmsg_alloc_simple(
      cmd,
      NLM_F_REQUEST | (cmd == RTM_NEWROUTE ? NLM_F_CREATE | NLM_F_EXCL : 0));
  if (!msg) return isle_pusherrno(L, ENOMEM, "%s %s", op, s.text);
  struct rtmsg rtm = {
      .rtm_family = (unsigned char)s.family,
      .rtm_dst_len = (unsigned char)s.dst_len,
      .rtm_table = s.table < 256 ? (unsigned char)s.table : RT_TABLE_UNSPEC,
  };
  if (cmd == RTM_NEWROUTE) {
    /* as iproute2 */
    rtm.rtm_protocol = RTPROT_BOOT;
    rtm.rtm_type = RTN_UNICAST;
    rtm.rtm_scope =
        (s.family == AF_INET && !s.via_af) ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  } else {
    rtm.rtm_scope = RT_SCOPE_NOWHERE;
  }
  size_t alen = s.family == AF_INET ? 4 : 16;
  r = nlmsg_append(msg, &rtm, sizeof rtm, NLMSG_ALIGNTO);
  if (s.has_dst) r |= nla_put(msg, RTA_DST, (int)alen, s.dst);
  if (s.via_af) r |= nla_put(msg, RTA_GATEWAY, (int)alen, s.via);
  if (s.src_af) r |= nla_put(msg, RTA_PREFSRC, (int)alen, s.src);
  if (s.oif) r |= nla_put_u32(msg, RTA_OIF, (uint32_t)s.oif);
  if (s.metric >= 0) r |= nla_put_u32(msg, RTA_PRIORITY, (uint32_t)s.metric);
  if (s.table >= 256) r |= nla_put_u32(msg, RTA_TABLE, s.table);
  if (r < 0) {
    net->err = 0;
    return isle_nlfail(L, net, -NLE_MSGSIZE, "%s %s", op, s.text);
  }
  r = isle_nlsend(net, isle_nlbox_steal(L, -1));
  if (r < 0) return isle_nlfail(L, net, r, "%s %s", op, s.text);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Add a route, as `ip route add`.
 * @function Net:route_add
 * @tparam table route `dst` ("default" (the default) or a prefix), `via`,
 * `dev`, `metric`, `table` (number, default main), `src`, `family`
 * ("inet"/"inet6", for a default route without `via`)
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("route_add default: Network is unreachable")
 * @treturn[2] int errno
 * @raise on malformed addresses, neither via nor dev, mixed families
 */
static int net_route_add(lua_State *L)
{
  return route_change(L, RTM_NEWROUTE, "route_add");
}

/***
 * Delete a route (same fields as route_add).
 * @function Net:route_del
 * @tparam table route
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int net_route_del(lua_State *L)
{
  return route_change(L, RTM_DELROUTE, "route_del");
}

/* Push route rt as the plain table Net:routes gives (interface names from
 * the links cache). */
static void pushroute(lua_State *L, struct rtnl_route *rt,
                      struct nl_cache *links)
{
  char name[IFNAMSIZ + 1];
  uint32_t tab = rtnl_route_get_table(rt);
  lua_createtable(L, 0, 9);
  struct nl_addr *dst = rtnl_route_get_dst(rt);
  int plen = dst ? (int)nl_addr_get_prefixlen(dst) : 0;
  if (!dst || plen == 0) {
    lua_pushliteral(L, "default");
  } else {
    puship(L, dst);
    lua_pushfstring(L, "%s/%d", lua_tostring(L, -1), plen);
    lua_remove(L, -2);
  }
  lua_setfield(L, -2, "dst");
  lua_pushstring(L, familyname(rtnl_route_get_family(rt)));
  lua_setfield(L, -2, "family");
  lua_pushinteger(L, tab);
  lua_setfield(L, -2, "table");
  lua_pushinteger(L, rtnl_route_get_priority(rt));
  lua_setfield(L, -2, "metric");
  lua_pushstring(L, scopename(rtnl_route_get_scope(rt)));
  lua_setfield(L, -2, "scope");
  lua_pushinteger(L, rtnl_route_get_protocol(rt));
  lua_setfield(L, -2, "protocol");
  lua_pushinteger(L, rtnl_route_get_type(rt));
  lua_setfield(L, -2, "type");
  struct nl_addr *src = rtnl_route_get_pref_src(rt);
  if (src) {
    puship(L, src);
    lua_setfield(L, -2, "src");
  }
  if (rtnl_route_get_nnexthops(rt) > 0) {
    struct rtnl_nexthop *nh = rtnl_route_nexthop_n(rt, 0);
    struct nl_addr *gw = rtnl_route_nh_get_gateway(nh);
    if (gw) {
      puship(L, gw);
      lua_setfield(L, -2, "via");
    }
    int oif = rtnl_route_nh_get_ifindex(nh);
    if (oif > 0 && rtnl_link_i2name(links, oif, name, sizeof name)) {
      lua_pushstring(L, name);
      lua_setfield(L, -2, "dev");
    }
  }
}

/***
 * Routes as plain tables `{dst =, family =, via =, dev =, metric =, table
 * =, scope =, protocol =, src =}`; by default those of the main table.
 * @function Net:routes
 * @tparam[opt] table opts `table` (a number, or "all"), `family`
 * @treturn[1] {table,...}
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int net_routes(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  lua_Integer table = RT_TABLE_MAIN;
  int family = AF_UNSPEC, r;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const fields[] = {"table", "family", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    isle_checkfields(L, 2, fields);
    lua_getfield(L, 2, "table");
    if (lua_type(L, -1) == LUA_TSTRING &&
        strcmp(lua_tostring(L, -1), "all") == 0)
      table = -1;
    else if (!lua_isnil(L, -1))
      table = luaL_checkinteger(L, -1);
    lua_getfield(L, 2, "family");
    if (!lua_isnil(L, -1)) {
      const char *f = luaL_checkstring(L, -1);
      family = strcmp(f, "inet") == 0 ? AF_INET : AF_INET6;
      if (strcmp(f, "inet") && strcmp(f, "inet6"))
        luaL_error(L, "bad argument (field 'family': '%s')", f);
    }
    lua_pop(L, 2);
  }
  void **lbox = isle_nlbox(L, freecache);
  lua_toclose(L, -1);
  void **rbox = isle_nlbox(L, freecache);
  lua_toclose(L, -1);
  struct nl_cache *links = NULL, *routes = NULL;
  r = -NLE_DUMP_INTR;
  for (int i = 0; i < DUMP_RETRIES && r == -NLE_DUMP_INTR; i++) {
    net->err = 0;
    r = rtnl_link_alloc_cache(net->sk, AF_UNSPEC, &links);
  }
  if (r < 0) return isle_nlfail(L, net, r, "routes");
  *lbox = links;
  r = -NLE_DUMP_INTR;
  for (int i = 0; i < DUMP_RETRIES && r == -NLE_DUMP_INTR; i++) {
    net->err = 0;
    r = rtnl_route_alloc_cache(net->sk, family, 0, &routes);
  }
  if (r < 0) return isle_nlfail(L, net, r, "routes");
  *rbox = routes;
  lua_newtable(L);
  lua_Integer n = 0;
  for (struct nl_object *o = nl_cache_get_first(routes); o;
       o = nl_cache_get_next(o)) {
    struct rtnl_route *rt = (struct rtnl_route *)o;
    uint32_t tab = rtnl_route_get_table(rt);
    if (table >= 0 && (lua_Integer)tab != table) continue;
    pushroute(L, rt, links);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

void isle_open_nl_addr(lua_State *L, int methods)
{
  static const luaL_Reg funcs[] = {
      {"addr_add", net_addr_add},
      {"addr_del", net_addr_del},
      {"addrs", net_addrs},
      {"route_add", net_route_add},
      {"route_del", net_route_del},
      {"routes", net_routes},
      {NULL, NULL},
  };
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
