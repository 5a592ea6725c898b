/* isle.Net: a libnl-3 route socket created inside a network namespace
 * (socket made after setns into the target, caller's namespace restored at
 * once), the kernel's errno through an nl_cb_err callback, and the helpers
 * shared by nl_link.c, nl_linkinfo.c, nl_addr.c and nl_tc.c. */
#include "nl.h"

#include <arpa/inet.h>
#include <limits.h>
#include <sys/socket.h>
#include <linux/netlink.h>

#include <netlink/route/link.h>

#define ISLE_NLBOX_T "isle.nlbox"

/* NLE_* -> errno: libnl has no reverse of nl_syserr2nlerr (ipvsadm's
 * nlerr2syserr does the same). */
static const int nle_errno[] = {
    [NLE_SUCCESS] = 0,
    [NLE_FAILURE] = EIO,
    [NLE_INTR] = EINTR,
    [NLE_BAD_SOCK] = EBADF,
    [NLE_AGAIN] = EAGAIN,
    [NLE_NOMEM] = ENOMEM,
    [NLE_EXIST] = EEXIST,
    [NLE_INVAL] = EINVAL,
    [NLE_RANGE] = ERANGE,
    [NLE_MSGSIZE] = EMSGSIZE,
    [NLE_OPNOTSUPP] = EOPNOTSUPP,
    [NLE_AF_NOSUPPORT] = EAFNOSUPPORT,
    [NLE_OBJ_NOTFOUND] = ENOENT,
    [NLE_NOATTR] = ENOENT,
    [NLE_MISSING_ATTR] = EINVAL,
    [NLE_AF_MISMATCH] = EINVAL,
    [NLE_SEQ_MISMATCH] = EILSEQ,
    [NLE_MSG_OVERFLOW] = EOVERFLOW,
    [NLE_MSG_TRUNC] = EMSGSIZE,
    [NLE_NOADDR] = EADDRNOTAVAIL,
    [NLE_SRCRT_NOSUPPORT] = EOPNOTSUPP,
    [NLE_MSG_TOOSHORT] = EINVAL,
    [NLE_MSGTYPE_NOSUPPORT] = EOPNOTSUPP,
    [NLE_OBJ_MISMATCH] = EINVAL,
    [NLE_NOCACHE] = ENOENT,
    [NLE_BUSY] = EBUSY,
    [NLE_PROTO_MISMATCH] = EPROTONOSUPPORT,
    [NLE_NOACCESS] = EACCES,
    [NLE_PERM] = EPERM,
    [NLE_PKTLOC_FILE] = ENOENT,
    [NLE_PARSE_ERR] = EINVAL,
    [NLE_NODEV] = ENODEV,
    [NLE_IMMUTABLE] = EPERM,
    [NLE_DUMP_INTR] = EINTR,
    [NLE_ATTRSIZE] = ERANGE,
};

int isle_nlfail(lua_State *L, struct isle_net *net, int r, const char *fmt, ...)
{
  char buf[512];
  int code = r < 0 ? -r : r;
  int err = net->err;
  const char *text;
  va_list ap;
  if (err) {
    text = strerror(err);
  } else {
    err = code < (int)(sizeof nle_errno / sizeof nle_errno[0]) ? nle_errno[code]
                                                               : EIO;
    if (err == 0) err = EIO;
    text = nl_geterror(code);
  }
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  luaL_pushfail(L);
  if (net->err && net->extack[0])
    lua_pushfstring(L, "%s: %s (%s)", buf, text, net->extack);
  else
    lua_pushfstring(L, "%s: %s", buf, text);
  lua_pushinteger(L, err);
  return 3;
}

/* nl_cb_err callback: keep the kernel's exact errno in the Net. */
static int on_error(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg)
{
  struct isle_net *net = arg;
  const struct nlmsghdr *h =
      (const struct nlmsghdr *)((const char *)e - NLMSG_HDRLEN);
  (void)who;
  net->err = e->error < 0 ? -e->error : e->error;
  net->extack[0] = '\0';
  if (h->nlmsg_flags & NLM_F_ACK_TLVS) {
    size_t off = sizeof *e;
    if (!(h->nlmsg_flags & NLM_F_CAPPED))
      off += e->msg.nlmsg_len - NLMSG_HDRLEN;
    if (h->nlmsg_len > NLMSG_HDRLEN + off) {
      const struct nlattr *a;
      int rem, len = (int)(h->nlmsg_len - NLMSG_HDRLEN - off);
      nla_for_each_attr(
          a, (const struct nlattr *)((const char *)e + off), len, rem)
      {
        if (nla_type(a) == NLMSGERR_ATTR_MSG)
          snprintf(net->extack,
                   sizeof net->extack,
                   "%.*s",
                   nla_len(a),
                   (const char *)nla_data(a));
      }
    }
  }
  return NL_STOP;
}

int isle_nlsend(struct isle_net *net, struct nl_msg *msg)
{
  net->err = 0;
  return nl_send_sync(net->sk, msg);
}

struct nlbox {
  void *p;
  void (*fn)(void *);
};

static int nlbox_gc(lua_State *L)
{
  struct nlbox *b = luaL_checkudata(L, 1, ISLE_NLBOX_T);
  void *p = b->p;
  b->p = NULL;
  if (p) b->fn(p);
  return 0;
}

void **isle_nlbox(lua_State *L, void (*fn)(void *))
{
  struct nlbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->p = NULL;
  b->fn = fn;
  luaL_setmetatable(L, ISLE_NLBOX_T);
  return &b->p;
}

void *isle_nlbox_steal(lua_State *L, int idx)
{
  struct nlbox *b = luaL_checkudata(L, idx, ISLE_NLBOX_T);
  void *p = b->p;
  b->p = NULL;
  return p;
}

int isle_nlifindex(struct isle_net *net, const char *name, int *r)
{
  struct rtnl_link *link = NULL;
  net->err = 0;
  *r = rtnl_link_get_kernel(net->sk, 0, name, &link);
  if (*r < 0) return 0;
  int idx = rtnl_link_get_ifindex(link);
  rtnl_link_put(link);
  return idx;
}

int isle_parseaddr(const char *s, unsigned char *buf, int *plen)
{
  char tmp[INET6_ADDRSTRLEN + 8];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  int family = 0, max;
  *plen = -1;
  if (n == 0 || n >= INET6_ADDRSTRLEN) return 0;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  if (inet_pton(AF_INET, tmp, buf) == 1) {
    family = AF_INET;
    max = 32;
  } else if (inet_pton(AF_INET6, tmp, buf) == 1) {
    family = AF_INET6;
    max = 128;
  } else {
    return 0;
  }
  if (slash) {
    const char *p = slash + 1;
    char *end;
    if (*p < '0' || *p > '9') return 0;
    long v = strtol(p, &end, 10);
    if (*end != '\0' || v < 0 || v > max) return 0;
    *plen = (int)v;
  }
  return family;
}

/***
 * Parse an IPv4 or IPv6 address with an optional prefix length, strictly
 * (inet_pton: no leading zeros, no shorthand IPv4): THE address parser of
 * isle (the Lua side's `isle.ip` builds on it).
 * @function parse_ip
 * @string s e.g. "10.0.0.1/24", "2001:db8::1", "192.0.2.7"
 * @treturn[1] int family, 4 or 6
 * @treturn[1] string the address bytes (4 or 16)
 * @treturn[1] ?int the prefix length, or nil when there is none
 * @return[2] nil
 */
static int l_parse_ip(lua_State *L)
{
  const char *s = luaL_checkstring(L, 1);
  unsigned char buf[16];
  int plen;
  int family = isle_parseaddr(s, buf, &plen);
  if (!family) {
    luaL_pushfail(L);
    return 1;
  }
  lua_pushinteger(L, family == AF_INET ? 4 : 6);
  lua_pushlstring(L, (const char *)buf, family == AF_INET ? 4 : 16);
  if (plen >= 0)
    lua_pushinteger(L, plen);
  else
    lua_pushnil(L);
  return 3;
}

int isle_innetns(struct isle_net *net, int (*fn)(void *), void *arg,
                 const char **where)
{
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  *where = NULL;
  if (self < 0) {
    *where = "open /proc/thread-self/ns/net";
    return -1;
  }
  if (setns(net->nsfd, CLONE_NEWNET) < 0) {
    *where = "setns";
    isle_close(self);
    return -1;
  }
  int r = fn(arg);
  int e = errno;
  if (setns(self, CLONE_NEWNET) < 0) {
    *where = "restore setns";
    isle_close(self);
    return -1;
  }
  close(self);
  errno = e;
  return r;
}

struct isle_net *isle_checknet(lua_State *L, int idx)
{
  struct isle_net *net = luaL_checkudata(L, idx, ISLE_NET_T);
  if (!net->sk) luaL_error(L, "attempt to use a closed isle.Net");
  return net;
}

/* A route socket in the namespace held by nsfd; -1/errno, *where says which
 * step failed. The caller's namespace is always restored or reported. */
static int socket_in(int nsfd, int *sock, const char **where)
{
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) {
    *where = "open /proc/thread-self/ns/net";
    return -1;
  }
  if (setns(nsfd, CLONE_NEWNET) < 0) {
    *where = "setns";
    isle_close(self);
    return -1;
  }
  *sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  int e = errno;
  if (setns(self, CLONE_NEWNET) < 0) {
    *where = "restore setns";
    isle_close(self);
    return -1;
  }
  close(self);
  if (*sock < 0) {
    *where = "socket";
    errno = e;
    return -1;
  }
  return 0;
}

/***
 * Open a netlink route socket inside a network namespace.
 * @function net_open
 * @param[opt] target nil (the caller's namespace), a Netns, a netns name, a
 * path (/proc/PID/ns/net) or a pid
 * @treturn[1] Net
 * @return[2] nil
 * @treturn[2] string message ("net open /run/netns/x: No such file...")
 * @treturn[2] int errno
 * @raise on a target of the wrong type or an invalid name
 */
static int l_net_open(lua_State *L)
{
  char what[PATH_MAX] = "self";
  const char *where = NULL;
  int one = 4 << 20;
  struct sockaddr_nl addr = {.nl_family = AF_NETLINK};
  int nsarg = lua_isnoneornil(L, 1) ? 0 : 1;
  struct isle_net *net = lua_newuserdatauv(L, sizeof *net, 0);
  net->sk = NULL;
  net->nsfd = -1;
  net->err = 0;
  net->extack[0] = '\0';
  luaL_setmetatable(L, ISLE_NET_T);
  int *sock = isle_newfd(L);
  lua_toclose(L, -1);
  if (nsarg) {
    int r = isle_opennetns(L, 1, &net->nsfd, what, sizeof what);
    if (r) {
      lua_pushfstring(L, "net %s", lua_tostring(L, -2));
      lua_replace(L, -3);
      return r;
    }
  } else {
    net->nsfd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (net->nsfd < 0)
      return isle_pusherrno(L, errno, "net open: /proc/thread-self/ns/net");
  }
  if (nsarg) {
    if (socket_in(net->nsfd, sock, &where) < 0)
      return isle_pusherrno(L, errno, "net open %s: %s", what, where);
  } else {
    *sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (*sock < 0) return isle_pusherrno(L, errno, "net open: socket");
  }
  /* large dumps must not fail with ENOBUFS */
  if (setsockopt(*sock, SOL_SOCKET, SO_RCVBUFFORCE, &one, sizeof one) < 0)
    setsockopt(*sock, SOL_SOCKET, SO_RCVBUF, &one, sizeof one);
  setsockopt(*sock, SOL_SOCKET, SO_SNDBUF, &one, sizeof one);
  int on = 1; /* kernel error text; errors echo only the header */
  setsockopt(*sock, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof on);
  setsockopt(*sock, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof on);
  if (bind(*sock, (struct sockaddr *)&addr, sizeof addr) < 0)
    return isle_pusherrno(L, errno, "net open %s: bind", what);
  net->sk = nl_socket_alloc();
  if (!net->sk) return isle_pusherrno(L, ENOMEM, "net open %s", what);
  int r = nl_socket_set_fd(net->sk, NETLINK_ROUTE, *sock);
  if (r < 0) return isle_nlfail(L, net, r, "net open %s", what);
  isle_steal_fd(sock); /* the nl_sock owns it now */
  nl_socket_modify_err_cb(net->sk, NL_CB_CUSTOM, on_error, net);
  lua_pop(L, 1);
  return 1;
}

/***
 * Close the socket and the namespace descriptor. Kernel state is kept.
 * @function Net:close
 * @treturn true
 */
static int net_close(lua_State *L)
{
  struct isle_net *net = luaL_checkudata(L, 1, ISLE_NET_T);
  struct nl_sock *sk = net->sk;
  net->sk = NULL;
  if (sk) nl_socket_free(sk);
  isle_close(isle_steal_fd(&net->nsfd));
  lua_pushboolean(L, 1);
  return 1;
}

static int net_gc(lua_State *L)
{
  net_close(L);
  return 0;
}

static int net_tostring(lua_State *L)
{
  struct isle_net *net = luaL_checkudata(L, 1, ISLE_NET_T);
  struct stat st;
  if (!net->sk || fstat(net->nsfd, &st) < 0)
    lua_pushliteral(L, "isle.Net (closed)");
  else
    lua_pushfstring(L, "isle.Net (net:[%I])", (lua_Integer)st.st_ino);
  return 1;
}

/***
 * The id (inode) of the handle's network namespace.
 * @function Net:nsid
 * @treturn int
 */
static int net_nsid(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  struct stat st;
  if (fstat(net->nsfd, &st) < 0) return isle_pusherrno(L, errno, "fstat");
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  return 1;
}

/***
 * The descriptor of the handle's network namespace (owned by the Net).
 * @function Net:nsfd
 * @treturn int
 */
static int net_nsfd(lua_State *L)
{
  lua_pushinteger(L, isle_checknet(L, 1)->nsfd);
  return 1;
}

void isle_open_nl(lua_State *L)
{
  static const luaL_Reg methods[] = {
      {"close", net_close},
      {"nsid", net_nsid},
      {"nsfd", net_nsfd},
      {NULL, NULL},
  };
  static const luaL_Reg meta[] = {
      {"__gc", net_gc},
      {"__close", net_gc},
      {"__tostring", net_tostring},
      {NULL, NULL},
  };
  static const luaL_Reg boxmeta[] = {
      {"__gc", nlbox_gc},
      {"__close", nlbox_gc},
      {NULL, NULL},
  };
  isle_newclass(L, ISLE_NLBOX_T, NULL, boxmeta);
  luaL_newmetatable(L, ISLE_NET_T);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  int m = lua_absindex(L, -1);
  isle_open_nl_link(L, m);
  isle_open_nl_linkinfo(L, m);
  isle_open_nl_addr(L, m);
  isle_open_nl_tc(L, m);
  isle_open_nft(L, m);
  isle_open_nft_ingress(L, m);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Net"); /* methods, extended by net.lua */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_net_open);
  lua_setfield(L, -2, "net_open");
  lua_pushcfunction(L, l_parse_ip);
  lua_setfield(L, -2, "parse_ip");
}
