/* Net methods that act inside the handle's namespace: queueing disciplines
 * (libnl qdisc: netem, tbf) and sysctl (/proc/sys/net opened from inside
 * the namespace). nftables is nft.c's. */
#include "nl.h"

#include <limits.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>

#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/netem.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/tc.h>

static void freemsg(void *p)
{
  nlmsg_free(p);
}

static void putqdisc(void *p)
{
  rtnl_qdisc_put(p);
}

/* Number field k of the table at t, or -1 when nil; raises. */
static double fnum(lua_State *L, int t, const char *k, double lo, double hi)
{
  int isnum;
  lua_getfield(L, t, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return -1;
  }
  double v = (double)lua_tonumberx(L, -1, &isnum);
  if (!isnum)
    luaL_error(L,
               "bad argument (field '%s': number expected, got %s)",
               k,
               luaL_typename(L, -1));
  if (!(v >= lo && v <= hi)) /* NaN too */
    luaL_error(L, "bad argument (field '%s': out of range)", k);
  lua_pop(L, 1);
  return v;
}

/* Append attribute (type, data, len) inside the TCA_OPTIONS nest of a
 * qdisc request that libnl built (its options span the message's rest):
 * what libnl 3.7 cannot say (netem's rate, tbf's burst and rate64). 0 or a
 * negative NLE code. */
static int opts_put(struct nl_msg *msg, int type, const void *data, int len)
{
  struct nlmsghdr *nlh = nlmsg_hdr(msg);
  struct nlattr *opts = nlmsg_find_attr(nlh, sizeof(struct tcmsg), TCA_OPTIONS);
  if (!opts) return -NLE_MISSING_ATTR;
  ptrdiff_t off = (char *)opts - (char *)nlh;
  uint32_t before = nlh->nlmsg_len;
  int r = nla_put(msg, type, len, data);
  if (r < 0) return r;
  nlh = nlmsg_hdr(msg); /* nla_put may have moved it */
  opts = (struct nlattr *)((char *)nlh + off);
  opts->nla_len = (uint16_t)(opts->nla_len + (nlh->nlmsg_len - before));
  return 0;
}

/* netem keeps delay and jitter as 32-bit counts of psched ticks (64 ns,
 * PSCHED_SHIFT 6; libnl converts microseconds with /proc/net/psched):
 * 2^32 ticks are 274.877906944 s. */
#define NETEM_MAX_US 274877906.0

static uint32_t prob(double pct)
{
  return pct >= 100 ? UINT32_MAX : (uint32_t)(pct / 100.0 * UINT32_MAX);
}

/***
 * Set (replace) a netem root qdisc on a link, or remove it. Numbers only:
 * `isle.net` parses "10ms" and "10mbit".
 * @function Net:_netem
 * @string ifname
 * @tparam table|nil opts `delay_us`, `jitter_us` (at most 274877906: 2^32
 * ticks of 64 ns), `loss`, `corrupt`,
 * `duplicate` (percent), `rate` (bytes per second), `limit` (packets);
 * nil removes the netem qdisc (true when there was none)
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("netem eth0: No such device")
 * @treturn[2] int errno
 */
static int net_netem(lua_State *L)
{
  static const char *const fields[] = {"delay_us",
                                       "jitter_us",
                                       "loss",
                                       "corrupt",
                                       "duplicate",
                                       "rate",
                                       "limit",
                                       NULL};
  struct isle_net *net = isle_checknet(L, 1);
  const char *ifname = isle_checkifname(L, 2, "ifname");
  int remove = lua_isnoneornil(L, 3);
  double delay = -1, jitter = -1, loss = -1, corrupt = -1, dup = -1, rate = -1,
         limit = -1;
  int r;
  if (!remove) {
    luaL_checktype(L, 3, LUA_TTABLE);
    isle_checkfields(L, 3, fields);
    delay = fnum(L, 3, "delay_us", 0, NETEM_MAX_US);
    jitter = fnum(L, 3, "jitter_us", 0, NETEM_MAX_US);
    loss = fnum(L, 3, "loss", 0, 100);
    corrupt = fnum(L, 3, "corrupt", 0, 100);
    dup = fnum(L, 3, "duplicate", 0, 100);
    rate = fnum(L, 3, "rate", 1, (double)UINT32_MAX);
    limit = fnum(L, 3, "limit", 1, INT_MAX);
  }
  int index = isle_nlifindex(net, ifname, &r);
  if (!index) return isle_nlfail(L, net, r, "netem %s", ifname);
  void **qbox = isle_nlbox(L, putqdisc);
  lua_toclose(L, -1);
  void **mbox = isle_nlbox(L, freemsg);
  lua_toclose(L, -1);
  struct rtnl_qdisc *q = *qbox = rtnl_qdisc_alloc();
  if (!q) return isle_pusherrno(L, ENOMEM, "netem %s", ifname);
  rtnl_tc_set_ifindex(TC_CAST(q), index);
  rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
  if ((r = rtnl_tc_set_kind(TC_CAST(q), "netem")) < 0) {
    net->err = 0;
    return isle_nlfail(L, net, r, "netem %s", ifname);
  }
  struct nl_msg *msg = NULL;
  if (remove) {
    r = rtnl_qdisc_build_delete_request(q, &msg);
  } else {
    if (delay >= 0) rtnl_netem_set_delay(q, (int)delay);
    if (jitter >= 0) rtnl_netem_set_jitter(q, (int)jitter);
    if (loss >= 0) rtnl_netem_set_loss(q, (int)prob(loss));
    if (corrupt >= 0)
      rtnl_netem_set_corruption_probability(q, (int)prob(corrupt));
    if (dup >= 0) rtnl_netem_set_duplicate(q, (int)prob(dup));
    if (limit >= 0) rtnl_netem_set_limit(q, (int)limit);
    r = rtnl_qdisc_build_add_request(q, NLM_F_CREATE | NLM_F_REPLACE, &msg);
  }
  *mbox = msg;
  if (r >= 0 && rate > 0) {
    /* libnl 3.7 has no netem rate */
    struct tc_netem_rate tr = {.rate = (uint32_t)rate};
    r = opts_put(msg, TCA_NETEM_RATE, &tr, sizeof tr);
  }
  if (r < 0) {
    net->err = 0;
    return isle_nlfail(L, net, r, "netem %s", ifname);
  }
  r = isle_nlsend(net, isle_nlbox_steal(L, -1));
  if (r < 0) {
    if (remove && (net->err == ENOENT || net->err == EINVAL)) {
      lua_pushboolean(L, 1); /* no netem there */
      return 1;
    }
    return isle_nlfail(L, net, r, "netem %s", ifname);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* A root qdisc request for link index of kind (NULL: any kind). [-0, +0] */
static struct rtnl_qdisc *root_qdisc(int index, const char *kind, int *r)
{
  struct rtnl_qdisc *q = rtnl_qdisc_alloc();
  *r = 0;
  if (!q) {
    *r = -NLE_NOMEM;
    return NULL;
  }
  rtnl_tc_set_ifindex(TC_CAST(q), index);
  rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
  if (kind && (*r = rtnl_tc_set_kind(TC_CAST(q), kind)) < 0) {
    rtnl_qdisc_put(q);
    return NULL;
  }
  return q;
}

/***
 * Set (create or change) a tbf root qdisc: rate shaping without netem.
 * Numbers only: `isle.net` parses "10mbit" and sizes the bucket and the
 * queue. TCA_TBF_BURST is always sent (libnl 3.7 sends the bucket only as
 * a time, which the kernel caps at 4.29 s: full frames would be dropped
 * below ~2.8 kbit/s) and TCA_TBF_RATE64 above 2^31-1 bytes/s.
 * @function Net:_tbf
 * @string ifname
 * @int rate bytes per second (at least 1)
 * @int burst bucket in bytes (at least one frame)
 * @int limit queue in bytes
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("tbf eth0: No such device")
 * @treturn[2] int errno
 */
static int net_tbf(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  const char *ifname = isle_checkifname(L, 2, "ifname");
  lua_Integer rate = luaL_checkinteger(L, 3);
  lua_Integer burst = luaL_checkinteger(L, 4);
  lua_Integer limit = luaL_checkinteger(L, 5);
  int r;
  luaL_argcheck(L, rate >= 1, 3, "rate must be >= 1 byte/s");
  luaL_argcheck(L, burst >= 1 && burst <= INT_MAX, 4, "burst out of range");
  luaL_argcheck(L, limit >= 1 && limit <= INT_MAX, 5, "limit out of range");
  int index = isle_nlifindex(net, ifname, &r);
  if (!index) return isle_nlfail(L, net, r, "tbf %s", ifname);
  void **qbox = isle_nlbox(L, putqdisc);
  lua_toclose(L, -1);
  void **mbox = isle_nlbox(L, freemsg);
  lua_toclose(L, -1);
  struct rtnl_qdisc *q = *qbox = root_qdisc(index, "tbf", &r);
  struct nl_msg *msg = NULL;
  if (q) {
    /* no handle: the kernel picks one, and a change keeps it (and the
     * queue); another root kind is replaced at once */
    rtnl_qdisc_tbf_set_rate(
        q, rate > INT_MAX ? INT_MAX : (int)rate, (int)burst, 0);
    rtnl_qdisc_tbf_set_limit(q, (int)limit);
    r = rtnl_qdisc_build_add_request(q, NLM_F_CREATE | NLM_F_REPLACE, &msg);
    *mbox = msg;
  }
  if (r >= 0) {
    uint32_t b = (uint32_t)burst;
    r = opts_put(msg, TCA_TBF_BURST, &b, sizeof b);
  }
  if (r >= 0 && rate > INT_MAX) {
    uint64_t r64 = (uint64_t)rate;
    r = opts_put(msg, TCA_TBF_RATE64, &r64, sizeof r64);
  }
  if (r < 0) {
    net->err = 0;
    return isle_nlfail(L, net, r, "tbf %s", ifname);
  }
  r = isle_nlsend(net, isle_nlbox_steal(L, -1));
  if (r < 0) return isle_nlfail(L, net, r, "tbf %s", ifname);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Remove a link's root qdisc, whatever its kind (netem, tbf, htb, ...):
 * the link falls back to its default. Nothing to remove is no failure.
 * @function Net:qdisc_clear
 * @string ifname
 * @treturn[1] boolean true when one was removed, false when there was none
 * @return[2] nil
 * @treturn[2] string message ("qdisc_clear eth9: No such device")
 * @treturn[2] int errno
 */
static int net_qdisc_clear(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  const char *ifname = isle_checkifname(L, 2, "ifname");
  int r;
  int index = isle_nlifindex(net, ifname, &r);
  if (!index) return isle_nlfail(L, net, r, "qdisc_clear %s", ifname);
  void **qbox = isle_nlbox(L, putqdisc);
  lua_toclose(L, -1);
  struct rtnl_qdisc *q = *qbox = root_qdisc(index, NULL, &r);
  if (q) {
    net->err = 0;
    r = rtnl_qdisc_delete(net->sk, q);
  }
  if (r < 0) {
    /* ENOENT "Cannot delete qdisc with handle of zero.": the default */
    if (net->err == ENOENT) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return isle_nlfail(L, net, r, "qdisc_clear %s", ifname);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Does this kernel have qdisc `kind`? One RTM_NEWQDISC that can change
 * nothing: the kind on `lo` (ifindex 1 in every namespace) with a handle no
 * one uses and no options. The kernel looks the kind up first (and, where
 * modules exist, loads it), then the kind's init refuses the missing
 * options (EINVAL): present; ENOENT: absent. Only for kinds whose init
 * needs options (netem, tbf, htb).
 * @function Net:qdisc_probe
 * @string kind "netem", "tbf" or "htb"
 * @treturn[1] boolean
 * @return[2] nil
 * @treturn[2] string message ("qdisc_probe netem: Operation not permitted")
 * @treturn[2] int errno (EPERM: no CAP_NET_ADMIN here, which says nothing)
 */
static int net_qdisc_probe(lua_State *L)
{
  static const char *const kinds[] = {"netem", "tbf", "htb", NULL};
  struct isle_net *net = isle_checknet(L, 1);
  const char *kind = kinds[luaL_checkoption(L, 2, NULL, kinds)];
  struct tcmsg tcm = {.tcm_family = AF_UNSPEC,
                      .tcm_ifindex = 1,
                      .tcm_parent = TC_H_ROOT,
                      .tcm_handle = TC_HANDLE(0xfffe, 0)};
  void **mbox = isle_nlbox(L, freemsg);
  lua_toclose(L, -1);
  struct nl_msg *msg = *mbox = nlmsg_alloc_simple(
      RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_EXCL);
  if (!msg) return isle_pusherrno(L, ENOMEM, "qdisc_probe %s", kind);
  if (nlmsg_append(msg, &tcm, sizeof tcm, NLMSG_ALIGNTO) < 0 ||
      nla_put_string(msg, TCA_KIND, kind) < 0)
    return isle_pusherrno(L, ENOMEM, "qdisc_probe %s", kind);
  int r = isle_nlsend(net, isle_nlbox_steal(L, -1));
  if (r >= 0 || net->err == EINVAL || net->err == ENOENT) {
    lua_pushboolean(L, r >= 0 || net->err == EINVAL);
    return 1;
  }
  return isle_nlfail(L, net, r, "qdisc_probe %s", kind);
}

/* Push the fields of root qdisc q as a table. [-0, +1, m] */
static void push_qdisc(lua_State *L, struct rtnl_qdisc *q)
{
  const char *kind = rtnl_tc_get_kind(TC_CAST(q));
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, rtnl_tc_get_ifindex(TC_CAST(q)));
  lua_setfield(L, -2, "index");
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  char handle[16];
  snprintf(handle,
           sizeof handle,
           "%x:",
           (unsigned)(rtnl_tc_get_handle(TC_CAST(q)) >> 16));
  lua_pushstring(L, handle);
  lua_setfield(L, -2, "handle");
  if (strcmp(kind, "tbf") == 0) {
    lua_pushinteger(L, (uint32_t)rtnl_qdisc_tbf_get_rate(q));
    lua_setfield(L, -2, "rate");
    lua_pushinteger(L, rtnl_qdisc_tbf_get_limit(q));
    lua_setfield(L, -2, "limit");
  } else if (strcmp(kind, "netem") == 0) {
    lua_pushinteger(L, rtnl_netem_get_delay(q));
    lua_setfield(L, -2, "delay_us");
    lua_pushinteger(L, rtnl_netem_get_jitter(q));
    lua_setfield(L, -2, "jitter_us");
    lua_pushnumber(
        L, (double)(uint32_t)rtnl_netem_get_loss(q) / UINT32_MAX * 100.0);
    lua_setfield(L, -2, "loss");
  }
}

static void freecache(void *p)
{
  nl_cache_free(p);
}

/***
 * The root qdiscs of every link in the namespace that has one set (links
 * with only their default qdisc are left out).
 * @function Net:qdiscs
 * @treturn[1] table list of `{index =, kind =, handle = "8001:"}`, plus
 * `rate` (bytes/s) and `limit` for tbf, `delay_us`, `jitter_us`, `loss`
 * (percent) for netem
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int net_qdiscs(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  void **cbox = isle_nlbox(L, freecache);
  lua_toclose(L, -1);
  struct nl_cache *cache = NULL;
  net->err = 0;
  int r = rtnl_qdisc_alloc_cache(net->sk, &cache);
  *cbox = cache;
  if (r < 0) return isle_nlfail(L, net, r, "qdiscs");
  lua_newtable(L);
  int n = 0;
  for (struct nl_object *o = nl_cache_get_first(cache); o;
       o = nl_cache_get_next(o)) {
    struct rtnl_qdisc *q = (struct rtnl_qdisc *)o;
    /* the default ones have handle 0: (noqueue) or are not root */
    if (rtnl_tc_get_parent(TC_CAST(q)) != TC_H_ROOT ||
        rtnl_tc_get_handle(TC_CAST(q)) == 0)
      continue;
    push_qdisc(L, q);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

struct openarg {
  const char *path;
  int flags;
  int fd;
};

static int open_inside(void *p)
{
  struct openarg *a = p;
  a->fd = open(a->path, a->flags | O_CLOEXEC);
  return a->fd < 0 ? -1 : 0;
}

/***
 * Read or write a file under /proc/sys/net as seen from inside the Net's
 * namespace (the file is opened from there, then used from here).
 * @function Net:sysctl_file
 * @string path absolute, under /proc/sys/net/
 * @string[opt] value written when given
 * @treturn[1] string the value read (trailing newline removed), or true
 * @return[2] nil
 * @treturn[2] string message ("sysctl ipv4.ip_forward: ...")
 * @treturn[2] int errno
 */
static int net_sysctl_file(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  const char *path = luaL_checkstring(L, 2);
  size_t vlen = 0;
  const char *value = luaL_optlstring(L, 3, NULL, &vlen);
  const char *key = luaL_optstring(L, 4, path);
  const char *where;
  char buf[4096];
  luaL_argcheck(L,
                strncmp(path, "/proc/sys/net/", 14) == 0 && !strstr(path, ".."),
                2,
                "path under /proc/sys/net expected");
  struct openarg a = {path, value ? O_WRONLY : O_RDONLY, -1};
  int *fd = isle_newfd(L);
  lua_toclose(L, -1);
  if (isle_innetns(net, open_inside, &a, &where) < 0) {
    if (a.fd >= 0) *fd = a.fd;
    return isle_pusherrno(
        L, errno, "sysctl %s%s%s", key, where ? ": " : "", where ? where : "");
  }
  *fd = a.fd;
  if (value) {
    ssize_t n;
    do
      n = write(*fd, value, vlen);
    while (n < 0 && errno == EINTR);
    if (n < 0) return isle_pusherrno(L, errno, "sysctl %s", key);
    lua_pushboolean(L, 1);
    return 1;
  }
  ssize_t n = isle_read_retry(*fd, buf, sizeof buf - 1);
  if (n < 0) return isle_pusherrno(L, errno, "sysctl %s", key);
  while (n > 0 && buf[n - 1] == '\n')
    n--;
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

void isle_open_nl_tc(lua_State *L, int methods)
{
  static const luaL_Reg funcs[] = {
      {"_netem", net_netem},
      {"_tbf", net_tbf},
      {"qdisc_clear", net_qdisc_clear},
      {"qdisc_probe", net_qdisc_probe},
      {"qdiscs", net_qdiscs},
      {"sysctl_file", net_sysctl_file},
      {NULL, NULL},
  };
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
