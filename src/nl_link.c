/* Net link methods that change links: link_add (veth, bridge, dummy, vlan,
 * macvlan, vxlan), link_set, link_del. Requests are built with libnl's
 * message API (RTM_NEWLINK/RTM_DELLINK) and sent with nl_send_sync; the
 * reading side (links, link) is nl_linkinfo.c. */
#include "nl.h"

#include <limits.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/socket.h>

#include <netlink/route/link.h>

static void freemsg(void *p)
{
  nlmsg_free(p);
}

/* String field k of the table at t (nil allowed unless req); raises.
 * The string stays referenced by the table. [-0, +0, v] */
static const char *fstr(lua_State *L, int t, const char *k, int req)
{
  int ty = lua_getfield(L, t, k);
  const char *s = NULL;
  if (ty == LUA_TSTRING)
    s = lua_tostring(L, -1);
  else if (ty != LUA_TNIL || req)
    luaL_error(L,
               "bad argument (field '%s': string expected, got %s)",
               k,
               luaL_typename(L, -1));
  lua_pop(L, 1);
  return s;
}

/* Integer field k in [lo, hi], or dflt when nil; raises. [-0, +0, v] */
static lua_Integer fint(lua_State *L, int t, const char *k, lua_Integer lo,
                        lua_Integer hi, lua_Integer dflt)
{
  int isnum;
  lua_getfield(L, t, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return dflt;
  }
  lua_Integer v = lua_tointegerx(L, -1, &isnum);
  if (!isnum)
    luaL_error(L,
               "bad argument (field '%s': integer expected, got %s)",
               k,
               luaL_typename(L, -1));
  if (v < lo || v > hi)
    luaL_error(
        L, "bad argument (field '%s': out of range [%I, %I])", k, lo, hi);
  lua_pop(L, 1);
  return v;
}

/* Boolean field k: -1 when nil; raises on other types. [-0, +0, v] */
static int fbool(lua_State *L, int t, const char *k)
{
  int ty = lua_getfield(L, t, k);
  int v = -1;
  if (ty == LUA_TBOOLEAN)
    v = lua_toboolean(L, -1);
  else if (ty != LUA_TNIL)
    luaL_error(L,
               "bad argument (field '%s': boolean expected, got %s)",
               k,
               luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

/* Interface-name field k (nil allowed unless req); raises. */
static const char *fifname(lua_State *L, int t, const char *k, int req)
{
  int ty = lua_getfield(L, t, k);
  const char *s = NULL;
  if (ty != LUA_TNIL || req) s = isle_checkifname(L, -1, k);
  lua_pop(L, 1);
  return s;
}

/* MAC address field k into mac; 1 when present; raises when malformed. */
static int fmac(lua_State *L, int t, const char *k, unsigned char mac[6])
{
  const char *s = fstr(L, t, k, 0);
  char extra;
  if (!s) return 0;
  if (sscanf(s,
             "%2hhx:%2hhx:%2hhx:%2hhx:%2hhx:%2hhx%c",
             &mac[0],
             &mac[1],
             &mac[2],
             &mac[3],
             &mac[4],
             &mac[5],
             &extra) != 6 ||
      strlen(s) != 17)
    luaL_error(
        L, "bad argument (field '%s': malformed MAC address '%s')", k, s);
  return 1;
}

/* IP address field k into buf; its family, or 0 when absent; raises. */
static int fip(lua_State *L, int t, const char *k, unsigned char *buf)
{
  const char *s = fstr(L, t, k, 0);
  int plen;
  if (!s) return 0;
  int family = isle_parseaddr(s, buf, &plen);
  if (!family || plen >= 0)
    luaL_error(L, "bad argument (field '%s': malformed IP address '%s')", k, s);
  return family;
}

/* Option field k: index in list, dflt's index when nil; raises. */
static int fopt(lua_State *L, int t, const char *k, const char *dflt,
                const char *const list[])
{
  const char *s = fstr(L, t, k, dflt == NULL);
  if (!s) s = dflt;
  for (int i = 0; list[i]; i++)
    if (strcmp(list[i], s) == 0) return i;
  return luaL_error(L, "bad argument (field '%s': invalid option '%s')", k, s);
}

static const char *const kinds[] = {
    "veth", "bridge", "dummy", "vlan", "macvlan", "vxlan", NULL};
enum { K_VETH, K_BRIDGE, K_DUMMY, K_VLAN, K_MACVLAN, K_VXLAN };

static const char *const macvlan_modes[] = {
    "private", "vepa", "bridge", "passthru", "source", NULL};
static const uint32_t macvlan_mode_val[] = {
    MACVLAN_MODE_PRIVATE,
    MACVLAN_MODE_VEPA,
    MACVLAN_MODE_BRIDGE,
    MACVLAN_MODE_PASSTHRU,
    MACVLAN_MODE_SOURCE,
};

struct linkspec {
  const char *name, *master, *parent, *peer_name, *dev;
  int kind, up, mtu, has_mac, peer_mtu, peer_has_mac, peer_nsfd;
  unsigned char mac[6], peer_mac[6];
  int stp, vlan_filtering, learning, vlan_id, dstport;
  uint32_t macvlan_mode, vni;
  int remote_af, local_af;
  unsigned char remote[16], local[16];
};

/* One transmit and one receive queue, asked for: a veth made without them
 * gets one per CPU and then drops to one real queue (veth_init_queues),
 * which waits for an RCU grace period (synchronize_net) for each end; at a
 * lab's thousands of veths that sleep was most of `up`. Either way the
 * device has one real queue of each. */
static int put_one_queue(struct nl_msg *msg)
{
  return nla_put_u32(msg, IFLA_NUM_TX_QUEUES, 1) |
         nla_put_u32(msg, IFLA_NUM_RX_QUEUES, 1);
}

/* Append the attributes of one link's IFLA_LINKINFO. */
static int put_linkinfo(struct nl_msg *msg, const struct linkspec *s,
                        int dev_idx)
{
  struct nlattr *info = nla_nest_start(msg, IFLA_LINKINFO);
  if (!info) return -NLE_MSGSIZE;
  if (nla_put_string(msg, IFLA_INFO_KIND, kinds[s->kind]) < 0)
    return -NLE_MSGSIZE;
  struct nlattr *data = nla_nest_start(msg, IFLA_INFO_DATA);
  if (!data) return -NLE_MSGSIZE;
  int r = 0;
  switch (s->kind) {
  case K_VETH: {
    struct ifinfomsg pi = {.ifi_family = AF_UNSPEC};
    struct nlattr *peer = nla_nest_start(msg, VETH_INFO_PEER);
    if (!peer) return -NLE_MSGSIZE;
    r |= nlmsg_append(msg, &pi, sizeof pi, NLMSG_ALIGNTO);
    if (s->peer_name) r |= nla_put_string(msg, IFLA_IFNAME, s->peer_name);
    if (s->peer_nsfd >= 0)
      r |= nla_put_u32(msg, IFLA_NET_NS_FD, (uint32_t)s->peer_nsfd);
    if (s->peer_mtu) r |= nla_put_u32(msg, IFLA_MTU, (uint32_t)s->peer_mtu);
    if (s->peer_has_mac) r |= nla_put(msg, IFLA_ADDRESS, 6, s->peer_mac);
    r |= put_one_queue(msg);
    nla_nest_end(msg, peer);
    break;
  }
  case K_BRIDGE:
    if (s->stp >= 0) r |= nla_put_u32(msg, IFLA_BR_STP_STATE, (uint32_t)s->stp);
    if (s->vlan_filtering >= 0)
      r |= nla_put_u8(msg, IFLA_BR_VLAN_FILTERING, (uint8_t)s->vlan_filtering);
    break;
  case K_VLAN:
    r |= nla_put_u16(msg, IFLA_VLAN_ID, (uint16_t)s->vlan_id);
    break;
  case K_MACVLAN:
    r |= nla_put_u32(msg, IFLA_MACVLAN_MODE, s->macvlan_mode);
    break;
  case K_VXLAN:
    r |= nla_put_u32(msg, IFLA_VXLAN_ID, s->vni);
    if (s->remote_af == AF_INET)
      r |= nla_put(msg, IFLA_VXLAN_GROUP, 4, s->remote);
    else if (s->remote_af == AF_INET6)
      r |= nla_put(msg, IFLA_VXLAN_GROUP6, 16, s->remote);
    if (s->local_af == AF_INET)
      r |= nla_put(msg, IFLA_VXLAN_LOCAL, 4, s->local);
    else if (s->local_af == AF_INET6)
      r |= nla_put(msg, IFLA_VXLAN_LOCAL6, 16, s->local);
    if (dev_idx) r |= nla_put_u32(msg, IFLA_VXLAN_LINK, (uint32_t)dev_idx);
    r |= nla_put_u16(msg, IFLA_VXLAN_PORT, htons((uint16_t)s->dstport));
    if (s->learning >= 0)
      r |= nla_put_u8(msg, IFLA_VXLAN_LEARNING, (uint8_t)s->learning);
    break;
  default:
    break;
  }
  nla_nest_end(msg, data);
  nla_nest_end(msg, info);
  return r < 0 ? -NLE_MSGSIZE : 0;
}

/* Read and check link_add's spec (the table at 2) into s, before any side
 * effect; returns the stack index of its `peer` table, or 0. */
static int read_linkspec(lua_State *L, struct linkspec *s)
{
  static const char *const fields[] = {"name",
                                       "kind",
                                       "up",
                                       "mtu",
                                       "address",
                                       "master",
                                       "peer",
                                       "stp",
                                       "vlan_filtering",
                                       "id",
                                       "link",
                                       "mode",
                                       "vni",
                                       "remote",
                                       "local",
                                       "dev",
                                       "dstport",
                                       "learning",
                                       NULL};
  static const char *const peerfields[] = {
      "name", "netns", "mtu", "address", NULL};
  memset(s, 0, sizeof *s);
  s->peer_nsfd = -1;
  luaL_checktype(L, 2, LUA_TTABLE);
  isle_checkfields(L, 2, fields);
  s->name = fifname(L, 2, "name", 1);
  s->kind = fopt(L, 2, "kind", NULL, kinds);
  s->up = fbool(L, 2, "up");
  s->mtu = (int)fint(L, 2, "mtu", 0, INT_MAX, 0);
  s->has_mac = fmac(L, 2, "address", s->mac);
  s->master = fifname(L, 2, "master", 0);
  s->stp = fbool(L, 2, "stp");
  s->vlan_filtering = fbool(L, 2, "vlan_filtering");
  s->learning = fbool(L, 2, "learning");
  s->parent = fifname(L, 2, "link", s->kind == K_VLAN || s->kind == K_MACVLAN);
  s->dev = fifname(L, 2, "dev", 0);
  if (s->kind == K_VLAN) s->vlan_id = (int)fint(L, 2, "id", 0, 4094, -1);
  if (s->kind == K_VLAN && s->vlan_id < 0)
    luaL_error(L, "bad argument (field 'id': required for a vlan)");
  s->macvlan_mode =
      macvlan_mode_val[fopt(L, 2, "mode", "bridge", macvlan_modes)];
  if (s->kind == K_VXLAN) {
    lua_Integer vni = fint(L, 2, "vni", 0, 0xffffff, -1);
    if (vni < 0) luaL_error(L, "bad argument (field 'vni': required)");
    s->vni = (uint32_t)vni;
  }
  s->dstport = (int)fint(L, 2, "dstport", 0, 65535, 4789);
  s->remote_af = fip(L, 2, "remote", s->remote);
  s->local_af = fip(L, 2, "local", s->local);
  int peeridx = 0;
  if (lua_getfield(L, 2, "peer") != LUA_TNIL) {
    luaL_argcheck(L, lua_istable(L, -1), 2, "field 'peer': table expected");
    peeridx = lua_absindex(L, -1);
    isle_checkfields(L, peeridx, peerfields);
    s->peer_name = fifname(L, peeridx, "name", 0);
    s->peer_mtu = (int)fint(L, peeridx, "mtu", 0, INT_MAX, 0);
    s->peer_has_mac = fmac(L, peeridx, "address", s->peer_mac);
  }
  return peeridx;
}

/***
 * Create a link (RTM_NEWLINK with NLM_F_CREATE|NLM_F_EXCL).
 * @function Net:_link_add
 * @tparam table spec `name`, `kind` ("veth", "bridge", "dummy", "vlan",
 * "macvlan", "vxlan"), `up`, `mtu`, `address`, `master`; veth: `peer =
 * {name =, netns =, mtu =, address =}` (netns: Netns, name, path or pid;
 * the peer is created directly inside it); bridge: `stp`,
 * `vlan_filtering`; vlan: `id`, `link`; macvlan: `mode`, `link`; vxlan:
 * `vni`, `remote`, `local`, `dev`, `dstport` (4789), `learning`
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("link_add veth0: File exists")
 * @treturn[2] int errno
 * @raise on a missing or malformed field, an interface name over 15 bytes
 */
static int net_link_add(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  struct linkspec s;
  char what[PATH_MAX];
  int r;
  int peeridx = read_linkspec(L, &s);
  /* all checked: now the side effects */
  int *nsfd = isle_newfd(L);
  lua_toclose(L, -1);
  if (peeridx && lua_getfield(L, peeridx, "netns") != LUA_TNIL) {
    r = isle_opennetns(L, lua_absindex(L, -1), nsfd, what, sizeof what);
    if (r) {
      lua_pushfstring(L, "link_add %s: peer %s", s.name, lua_tostring(L, -2));
      lua_replace(L, -3);
      return r;
    }
    s.peer_nsfd = *nsfd;
  }
  int master = 0, parent = 0, dev = 0;
  if (s.master && !(master = isle_nlifindex(net, s.master, &r)))
    return isle_nlfail(L, net, r, "link_add %s: master %s", s.name, s.master);
  if (s.parent && !(parent = isle_nlifindex(net, s.parent, &r)))
    return isle_nlfail(L, net, r, "link_add %s: link %s", s.name, s.parent);
  if (s.dev && !(dev = isle_nlifindex(net, s.dev, &r)))
    return isle_nlfail(L, net, r, "link_add %s: dev %s", s.name, s.dev);

  void **box = isle_nlbox(L, freemsg);
  lua_toclose(L, -1);
  struct nl_msg *msg = *box = nlmsg_alloc_simple(
      RTM_NEWLINK, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL);
  if (!msg) return isle_pusherrno(L, ENOMEM, "link_add %s", s.name);
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  if (s.up >= 0) {
    ifi.ifi_flags = s.up ? IFF_UP : 0;
    ifi.ifi_change = IFF_UP;
  }
  r = nlmsg_append(msg, &ifi, sizeof ifi, NLMSG_ALIGNTO);
  r |= nla_put_string(msg, IFLA_IFNAME, s.name);
  if (s.mtu) r |= nla_put_u32(msg, IFLA_MTU, (uint32_t)s.mtu);
  if (s.has_mac) r |= nla_put(msg, IFLA_ADDRESS, 6, s.mac);
  if (master) r |= nla_put_u32(msg, IFLA_MASTER, (uint32_t)master);
  if (parent) r |= nla_put_u32(msg, IFLA_LINK, (uint32_t)parent);
  if (s.kind == K_VETH) r |= put_one_queue(msg);
  if (r < 0) r = -NLE_MSGSIZE;
  if (r == 0) r = put_linkinfo(msg, &s, dev);
  if (r < 0) {
    net->err = 0;
    return isle_nlfail(L, net, r, "link_add %s", s.name);
  }
  r = isle_nlsend(net, isle_nlbox_steal(L, -1));
  if (r < 0) return isle_nlfail(L, net, r, "link_add %s", s.name);
  lua_pushboolean(L, 1);
  return 1;
}

/* One RTM_NEWLINK of link_set, compiled: the link by index, or by name
 * when index is 0 (then name is IFLA_IFNAME; with an index it is the new
 * name, or NULL); up -1 (leave), 0 or 1; master -1 (leave), else the
 * master's index (0: nomaster); nsfd -1 or the namespace to move it into. */
struct setreq {
  int index, up, mtu, has_mac, master, nsfd;
  const char *name;
  unsigned char mac[6];
};

/* Send q; 0 or a negative NLE code (net->err: the kernel's errno). */
static int send_set(struct isle_net *net, const struct setreq *q)
{
  net->err = 0;
  struct nl_msg *msg = nlmsg_alloc_simple(RTM_NEWLINK, NLM_F_REQUEST);
  if (!msg) return -NLE_NOMEM;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = q->index};
  if (q->up >= 0) {
    ifi.ifi_flags = q->up ? IFF_UP : 0;
    ifi.ifi_change = IFF_UP;
  }
  int r = nlmsg_append(msg, &ifi, sizeof ifi, NLMSG_ALIGNTO);
  if (q->name) r |= nla_put_string(msg, IFLA_IFNAME, q->name);
  if (q->mtu) r |= nla_put_u32(msg, IFLA_MTU, (uint32_t)q->mtu);
  if (q->has_mac) r |= nla_put(msg, IFLA_ADDRESS, 6, q->mac);
  if (q->master >= 0) r |= nla_put_u32(msg, IFLA_MASTER, (uint32_t)q->master);
  if (q->nsfd >= 0) r |= nla_put_u32(msg, IFLA_NET_NS_FD, (uint32_t)q->nsfd);
  if (r < 0) {
    nlmsg_free(msg);
    return -NLE_MSGSIZE;
  }
  return isle_nlsend(net, msg);
}

/* The kernel's error of a failed request, kept across the requests that
 * undo it. */
struct nlerr {
  int err;
  char extack[sizeof((struct isle_net *)0)->extack];
};

static struct nlerr keep_error(const struct isle_net *net)
{
  struct nlerr e;
  e.err = net->err;
  memcpy(e.extack, net->extack, sizeof e.extack);
  return e;
}

static void put_error(struct isle_net *net, const struct nlerr *e)
{
  net->err = e->err;
  memcpy(net->extack, e->extack, sizeof e->extack);
}

/* Set link index up or down alone. */
static int set_up(struct isle_net *net, int index, int up)
{
  struct setreq q = {.index = index, .up = up, .master = -1, .nsfd = -1};
  return send_set(net, &q);
}

/* Rename link index to `to` alone. Linux before 6.2 refuses to rename a
 * link that is up (dev_change_name: EBUSY): then down, rename, and up
 * again when the rename fails; *downed tells that the link, up before, is
 * down now. 0 or a negative NLE code (net->err: the rename's errno). */
static int rename_link(struct isle_net *net, int index, const char *to,
                       int *downed)
{
  struct setreq q = {
      .index = index, .name = to, .up = -1, .master = -1, .nsfd = -1};
  *downed = 0;
  int r = send_set(net, &q);
  if (r == 0 || net->err != EBUSY) return r;
  if ((r = set_up(net, index, 0)) < 0) return r;
  if ((r = send_set(net, &q)) == 0) {
    *downed = 1;
    return 0;
  }
  struct nlerr e = keep_error(net);
  set_up(net, index, 1);
  put_error(net, &e);
  return r;
}

/* The rest of q after its rename (q->name is the new name), by index: so
 * that every kernel renames a link that is up, and a rename that fails
 * changes nothing. When the rest fails, the link gets its old name back and
 * is up again if it was. */
static int set_renamed(struct isle_net *net, struct setreq *q, const char *old)
{
  int downed, again;
  int r = rename_link(net, q->index, q->name, &downed);
  if (r < 0) return r;
  q->name = NULL;
  if (downed && q->up < 0) q->up = 1;
  if (q->up < 0 && !q->mtu && !q->has_mac && q->master < 0) return 0;
  if ((r = send_set(net, q)) == 0) return 0;
  struct nlerr e = keep_error(net);
  if (rename_link(net, q->index, old, &again) == 0 && downed)
    set_up(net, q->index, 1);
  put_error(net, &e);
  return r;
}

/***
 * Change a link (RTM_NEWLINK without NLM_F_CREATE). A rename (without a
 * move) is a request of its own, made first; on Linux before 6.2, which
 * cannot rename a link that is up, the link is taken down for it and
 * brought up again. When the rest of the request fails, the rename is
 * undone.
 * @function Net:_link_set
 * @string name
 * @tparam table opts `up`, `mtu`, `master` (a bridge name, or false for
 * nomaster), `name` (rename), `address` (MAC), `netns` (move it: Netns,
 * name, path or pid)
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("link_set eth9: No such device",
 * "link_set v1: name v2: File exists")
 * @treturn[2] int errno
 */
static int net_link_set(lua_State *L)
{
  static const char *const fields[] = {
      "up", "mtu", "master", "name", "address", "netns", NULL};
  struct isle_net *net = isle_checknet(L, 1);
  const char *name = isle_checkifname(L, 2, "name");
  struct setreq q = {.master = -1, .nsfd = -1};
  char what[PATH_MAX];
  int r;
  luaL_checktype(L, 3, LUA_TTABLE);
  isle_checkfields(L, 3, fields);
  q.up = fbool(L, 3, "up");
  q.mtu = (int)fint(L, 3, "mtu", 1, INT_MAX, 0);
  q.has_mac = fmac(L, 3, "address", q.mac);
  const char *rename = fifname(L, 3, "name", 0);
  const char *master = NULL;
  int ty = lua_getfield(L, 3, "master");
  if (ty == LUA_TBOOLEAN && !lua_toboolean(L, -1))
    q.master = 0;
  else if (ty != LUA_TNIL)
    master = isle_checkifname(L, -1, "master");
  lua_pop(L, 1);

  int *nsfd = isle_newfd(L);
  lua_toclose(L, -1);
  if (lua_getfield(L, 3, "netns") != LUA_TNIL) {
    r = isle_opennetns(L, lua_absindex(L, -1), nsfd, what, sizeof what);
    if (r) {
      lua_pushfstring(L, "link_set %s: netns %s", name, lua_tostring(L, -2));
      lua_replace(L, -3);
      return r;
    }
  }
  lua_pop(L, 1);
  q.nsfd = *nsfd;
  if (rename && !(q.index = isle_nlifindex(net, name, &r)))
    return isle_nlfail(L, net, r, "link_set %s", name);
  if (master && !(q.master = isle_nlifindex(net, master, &r)))
    return isle_nlfail(L, net, r, "link_set %s: master %s", name, master);
  q.name = rename ? rename : name;
  if (rename && q.nsfd < 0 && strcmp(rename, name) != 0) {
    /* (with a move, one request: the kernel downs the link to move it and
     * renames it after) */
    r = set_renamed(net, &q, name);
    if (r < 0 && q.name) /* the rename itself failed */
      return isle_nlfail(L, net, r, "link_set %s: name %s", name, rename);
  } else {
    r = send_set(net, &q);
  }
  if (r < 0) return isle_nlfail(L, net, r, "link_set %s", name);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Delete a link (RTM_DELLINK by name). Deleting one end of a veth pair
 * removes both.
 * @function Net:link_del
 * @string name
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("link_del eth9: No such device")
 * @treturn[2] int errno
 */
static int net_link_del(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  const char *name = isle_checkifname(L, 2, "name");
  void **box = isle_nlbox(L, freemsg);
  lua_toclose(L, -1);
  struct nl_msg *msg = *box = nlmsg_alloc_simple(RTM_DELLINK, NLM_F_REQUEST);
  if (!msg) return isle_pusherrno(L, ENOMEM, "link_del %s", name);
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  int r = nlmsg_append(msg, &ifi, sizeof ifi, NLMSG_ALIGNTO);
  r |= nla_put_string(msg, IFLA_IFNAME, name);
  if (r < 0) {
    net->err = 0;
    return isle_nlfail(L, net, -NLE_MSGSIZE, "link_del %s", name);
  }
  r = isle_nlsend(net, isle_nlbox_steal(L, -1));
  if (r < 0) return isle_nlfail(L, net, r, "link_del %s", name);
  lua_pushboolean(L, 1);
  return 1;
}

void isle_open_nl_link(lua_State *L, int methods)
{
  static const luaL_Reg funcs[] = {
      {"_link_add", net_link_add},
      {"_link_set", net_link_set},
      {"link_del", net_link_del},
      {NULL, NULL},
  };
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
