/* Private header shared by the networking files (netns.c, nl*.c). */
#ifndef ISLE_NL_H
#define ISLE_NL_H

#include "isle.h"

#include <sys/stat.h>

#define ISLE_NETNS_DIR "/run/netns"

/* A network namespace held open by fd (isle.Netns). User value 1 is a table
 * with the fields name and path. */
struct isle_netns {
  int fd;
  dev_t dev;
  ino_t ino;
};

/* The Netns at idx, raising if it is not one or is closed. [-0, +0, v] */
struct isle_netns *isle_checknetns(lua_State *L, int idx);

/* Open the network namespace named by the target at idx: an isle.Netns
 * (its fd is duplicated), a netns name, a path, or a pid. The new fd is
 * close-on-exec and stored in *fd (a boxed slot owned by the caller).
 * Returns 0, or pushes the fail triple and returns 3. `what` receives a
 * printable name of the target for messages. [-0, +0|3, v] */
int isle_opennetns(lua_State *L, int idx, int *fd, char *what, size_t size);

/* Raise unless the string at idx is a valid interface name (1..15 bytes, no
 * '/', no whitespace, not "." or ".."). [-0, +0, v] */
const char *isle_checkifname(lua_State *L, int idx, const char *field);
/* Why name (len bytes) is no good as a path component / an interface name,
 * or NULL (netns.c: THE name rules). */
const char *isle_badname(const char *name, size_t len);
const char *isle_badifname(const char *name, size_t len);

/* libnl-3 */
#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/socket.h>
#include <netlink/errno.h>
#include <netlink/cache.h>

/* A netlink route socket living in one network namespace (isle.Net). */
struct isle_net {
  struct nl_sock *sk; /* owns the socket fd; NULL when closed */
  int nsfd;           /* the namespace the socket was made in */
  int err;            /* kernel errno of the last NLMSG_ERROR, or 0 */
  char extack[160];   /* its extended-ack message, or "" */
};

/* The Net at idx, raising if it is not one or is closed. [-0, +0, v] */
struct isle_net *isle_checknet(lua_State *L, int idx);

/* Push fail, "<fmt...>: <text>", errno for the libnl result r (< 0): the
 * kernel's errno when the error callback saw one, else the NLE code mapped
 * to an errno with the text of nl_geterror. Returns 3. [-0, +3, m] */
int isle_nlfail(lua_State *L, struct isle_net *net, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Send msg (ownership taken, freed) and wait for the ACK; 0 or a negative
 * NLE code (net->err then holds the kernel errno, if any). */
int isle_nlsend(struct isle_net *net, struct nl_msg *msg);

/* A boxed pointer freed by fn on __close/__gc: caches, objects, messages.
 * Push a new empty box; returns the slot. [-0, +1, m] */
void **isle_nlbox(lua_State *L, void (*fn)(void *));
/* Take the pointer out of the box at idx (the box no longer frees it). */
void *isle_nlbox_steal(lua_State *L, int idx);

/* ifindex of link `name` in the Net's namespace (one RTM_GETLINK); 0 and
 * a negative NLE code in *r when it fails. */
int isle_nlifindex(struct isle_net *net, const char *name, int *r);

/* Parse an IPv4/IPv6 address with optional /prefix. Returns the family
 * (AF_INET/AF_INET6) or 0 when malformed; *plen is -1 without a prefix. */
int isle_parseaddr(const char *s, unsigned char *buf, int *plen);

/* Run fn(arg) with the calling thread inside the Net's namespace; the
 * caller's namespace is restored after. Returns fn's result (0 or -1 with
 * errno); a failed entry or restore sets *where to "setns" or "restore". */
int isle_innetns(struct isle_net *net, int (*fn)(void *), void *arg,
                 const char **where);

void isle_open_nl_link(lua_State *L, int methods);
void isle_open_nl_linkinfo(lua_State *L, int methods);
void isle_open_nl_addr(lua_State *L, int methods);
void isle_open_nl_tc(lua_State *L, int methods);
void isle_open_nft(lua_State *L, int methods);
void isle_open_nft_ingress(lua_State *L, int methods);

#endif
