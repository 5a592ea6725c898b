/* Net methods that act inside the handle's namespace: netem (libnl qdisc,
 * rtnl_netem_*), sysctl (/proc/sys/net opened from inside the namespace)
 * and nftables (libnftables run inside the namespace). */
#include "nl.h"

#include <dlfcn.h>
#include <limits.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <nftables/libnftables.h>

#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/netem.h>
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
    /* libnl 3.7 has no netem rate: append TCA_NETEM_RATE inside the
     * TCA_OPTIONS that netem_msg_fill_raw made span the message's rest */
    struct nlmsghdr *nlh = nlmsg_hdr(msg);
    struct nlattr *opts =
        nlmsg_find_attr(nlh, sizeof(struct tcmsg), TCA_OPTIONS);
    struct tc_netem_rate tr = {.rate = (uint32_t)rate};
    if (!opts) {
      r = -NLE_MISSING_ATTR;
    } else {
      ptrdiff_t off = (char *)opts - (char *)nlh;
      uint32_t before = nlh->nlmsg_len;
      r = nla_put(msg, TCA_NETEM_RATE, sizeof tr, &tr);
      nlh = nlmsg_hdr(msg); /* nla_put may have moved it */
      opts = (struct nlattr *)((char *)nlh + off);
      opts->nla_len = (uint16_t)(opts->nla_len + (nlh->nlmsg_len - before));
    }
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

/* libnftables is loaded when first needed, not linked: it and its
 * dependencies (libnftnl, libmnl, libxtables, libjansson, libgmp) would
 * cost every isle process ~1.3 ms at start. RTLD_NODELETE keeps it loaded,
 * so later dlopen calls are a lookup; nothing is cached in a global. */
#define NFT_LIB "libnftables.so.1"

struct nftapi {
  __typeof__(nft_ctx_new) *ctx_new;
  __typeof__(nft_ctx_buffer_output) *buffer_output;
  __typeof__(nft_ctx_buffer_error) *buffer_error;
  __typeof__(nft_run_cmd_from_buffer) *run;
  __typeof__(nft_ctx_get_output_buffer) *get_output;
  __typeof__(nft_ctx_get_error_buffer) *get_error;
  __typeof__(nft_ctx_free) *ctx_free;
};

/* Fill api from libnftables; NULL or dlerror()'s message. */
static const char *nft_load(struct nftapi *api)
{
  void *h = dlopen(NFT_LIB, RTLD_NOW | RTLD_NODELETE);
  if (!h) return dlerror();
  static const char *const names[] = {"nft_ctx_new",
                                      "nft_ctx_buffer_output",
                                      "nft_ctx_buffer_error",
                                      "nft_run_cmd_from_buffer",
                                      "nft_ctx_get_output_buffer",
                                      "nft_ctx_get_error_buffer",
                                      "nft_ctx_free"};
  void **slots[] = {(void **)&api->ctx_new,
                    (void **)&api->buffer_output,
                    (void **)&api->buffer_error,
                    (void **)&api->run,
                    (void **)&api->get_output,
                    (void **)&api->get_error,
                    (void **)&api->ctx_free};
  const char *err = NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    *slots[i] = dlsym(h, names[i]);
    if (!*slots[i]) {
      err = dlerror();
      break;
    }
  }
  dlclose(h); /* RTLD_NODELETE: stays mapped */
  return err;
}

struct nftarg {
  const struct nftapi *api;
  const char *cmds;
  char out[8192];
  char errbuf[1024];
  int rc;
};

static int nft_inside(void *p)
{
  struct nftarg *a = p;
  const struct nftapi *api = a->api;
  struct nft_ctx *ctx = api->ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) {
    errno = ENOMEM;
    return -1;
  }
  api->buffer_output(ctx);
  api->buffer_error(ctx);
  a->rc = api->run(ctx, a->cmds);
  snprintf(a->out, sizeof a->out, "%s", api->get_output(ctx));
  snprintf(a->errbuf, sizeof a->errbuf, "%s", api->get_error(ctx));
  api->ctx_free(ctx);
  return 0;
}

/***
 * Run nftables commands through libnftables inside the Net's namespace.
 * @function Net:_nft
 * @string cmds nft syntax, e.g. "list table inet isle"
 * @string[opt] what prefix of error messages
 * @treturn[1] string output
 * @return[2] nil
 * @treturn[2] string message (the first line of nft's error)
 * @treturn[2] int errno (EINVAL for a refused ruleset, ELIBACC when
 * libnftables cannot be loaded)
 */
static int net_nft(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  const char *cmds = luaL_checkstring(L, 2);
  const char *what = luaL_optstring(L, 3, "nft");
  const char *where;
  struct nftapi api;
  const char *lerr = nft_load(&api);
  if (lerr) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", what, lerr);
    lua_pushinteger(L, ELIBACC);
    return 3;
  }
  struct nftarg *a = lua_newuserdatauv(L, sizeof *a, 0);
  a->api = &api;
  a->cmds = cmds;
  a->out[0] = a->errbuf[0] = '\0';
  a->rc = 0;
  if (isle_innetns(net, nft_inside, a, &where) < 0)
    return isle_pusherrno(
        L, errno, "%s%s%s", what, where ? ": " : "", where ? where : "");
  if (a->rc != 0) {
    char *nl = strchr(a->errbuf, '\n');
    if (nl) *nl = '\0';
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", what, a->errbuf[0] ? a->errbuf : "failed");
    lua_pushinteger(L, strstr(a->errbuf, "No such file") ? ENOENT : EINVAL);
    return 3;
  }
  lua_pushstring(L, a->out);
  return 1;
}

void isle_open_nl_tc(lua_State *L, int methods)
{
  static const luaL_Reg funcs[] = {
      {"_netem", net_netem},
      {"sysctl_file", net_sysctl_file},
      {"_nft", net_nft},
      {NULL, NULL},
  };
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
