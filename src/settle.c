/* Waiting for the kernel to finish tearing down network namespaces. A
 * namespace whose last reference goes is queued; one kernel worker
 * (netns_wq, single-threaded) takes the whole queue at a time and
 * dismantles it (cleanup_net): its devices unregistered, its memory freed,
 * seconds after `isle down` returned for thousands of hosts. Nothing tells
 * when a given namespace is gone, but a namespace with an id in ours
 * (RTM_NEWNSID) is announced by RTM_DELNSID when its batch begins: a
 * sentinel namespace dropped after the others begins in their batch or a
 * later one, so a second sentinel dropped once the first is announced
 * begins after that batch has ended. */
#include "isle.h"

#include <linux/net_namespace.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#define SETTLE_BUF 8192

/* A new network namespace given id `*id` in the caller's (the caller
 * stays in its own): its fd, or -1/errno. */
static int sentinel(int sock, int *id, unsigned seq)
{
  int saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (saved < 0) return -1;
  int fd = -1, e = 0;
  if (unshare(CLONE_NEWNET) < 0) {
    e = errno;
  } else {
    fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) e = errno;
    if (setns(saved, CLONE_NEWNET) < 0) abort(); /* cannot stay elsewhere */
  }
  isle_close(saved);
  if (fd < 0) {
    errno = e;
    return -1;
  }
  struct {
    struct nlmsghdr h;
    struct rtgenmsg g;
    char attrs[64];
  } req;
  memset(&req, 0, sizeof req);
  req.h.nlmsg_type = RTM_NEWNSID;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.h.nlmsg_seq = seq;
  req.g.rtgen_family = AF_UNSPEC;
  size_t len = NLMSG_LENGTH(sizeof req.g);
  struct {
    unsigned short type;
    int value;
  } attr[2] = {{NETNSA_FD, fd}, {NETNSA_NSID, *id}};
  for (int i = 0; i < 2; i++) {
    struct nlattr *a = (struct nlattr *)((char *)&req + NLMSG_ALIGN(len));
    a->nla_type = attr[i].type;
    a->nla_len = NLA_HDRLEN + sizeof(int);
    memcpy((char *)a + NLA_HDRLEN, &attr[i].value, sizeof(int));
    len = NLMSG_ALIGN(len) + NLA_ALIGN(a->nla_len);
  }
  req.h.nlmsg_len = (unsigned)len;
  if (send(sock, &req, len, 0) < 0) {
    e = errno;
    isle_close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* Read until RTM_DELNSID of `id` (or a failed ack of request seq). */
static int await_del(int sock, int id, unsigned seq)
{
  char *buf = malloc(SETTLE_BUF);
  if (!buf) return -1;
  for (;;) {
    ssize_t n = recv(sock, buf, SETTLE_BUF, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_seq == seq) {
        const struct nlmsgerr *err = NLMSG_DATA(h);
        if (err->error == 0) continue;
        free(buf);
        errno = -err->error;
        return -1;
      }
      if (h->nlmsg_type != RTM_DELNSID) continue;
      struct nlattr *a =
          (struct nlattr *)((char *)NLMSG_DATA(h) +
                            NLMSG_ALIGN(sizeof(struct rtgenmsg)));
      int left = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof(struct rtgenmsg));
      for (;
           left >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= left;
           left -= NLA_ALIGN(a->nla_len),
           a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len))) {
        int v;
        memcpy(&v, (char *)a + NLA_HDRLEN, sizeof v);
        if (a->nla_type == NETNSA_NSID && v == id) {
          free(buf);
          return 0;
        }
      }
    }
  }
  int e = errno;
  free(buf);
  errno = e;
  return -1;
}

/***
 * Wait until the kernel has dismantled every network namespace whose last
 * reference went before this call (see the file's comment): two sentinel
 * namespaces, the second dropped once the first's batch began.
 * @function netns_settle
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_netns_settle(lua_State *L)
{
  int *sock = isle_newfd(L);
  lua_toclose(L, -1);
  *sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (*sock < 0) return isle_pusherrno(L, errno, "netns settle: socket");
  unsigned group = RTNLGRP_NSID;
  if (setsockopt(
          *sock, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0)
    return isle_pusherrno(L, errno, "netns settle: join RTNLGRP_NSID");
  /* ids far from those ip netns set hands out, one per sentinel */
  int base = 0x40000000 | (int)(getpid() & 0xffff) << 8;
  for (unsigned round = 1; round <= 2; round++) {
    int id = base + (int)round;
    int fd = sentinel(*sock, &id, round);
    if (fd < 0) return isle_pusherrno(L, errno, "netns settle: sentinel");
    isle_close(fd); /* its last reference: queued behind the others */
    if (await_del(*sock, id, round) < 0)
      return isle_pusherrno(L, errno, "netns settle: wait");
  }
  lua_pushboolean(L, 1);
  return 1;
}

void isle_open_settle(lua_State *L)
{
  static const luaL_Reg fns[] = {
      {"netns_settle", l_netns_settle},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
