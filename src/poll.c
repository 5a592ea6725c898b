/* Waiting for events: poll(2) over a list of descriptors, and whether a TCP
 * port accepts a connection (connect(2) from a socket made in another
 * network namespace). What a lab's supervisor needs to watch its services
 * (pidfds, its control FIFO) and their readiness. */
#include "isle.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#define ISLE_POLL_MAX 4096

/***
 * Wait until at least one of `fds` is readable or hung up (poll(2)), or
 * `timeout` seconds pass; restarted after signals.
 * @function poll
 * @tparam {int,...} fds descriptor numbers (at most 4096)
 * @number[opt] timeout seconds (nil: no limit)
 * @treturn[1] {int,...} the descriptors that are ready (empty on timeout)
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 * @see poll(2)
 */
static int l_poll(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n >= 0 && n <= ISLE_POLL_MAX, 1, "too many descriptors");
  double t = luaL_optnumber(L, 2, -1);
  luaL_argcheck(L, t < 0 || t < 1e6, 2, "out of range");
  int ms = t < 0 ? -1 : (int)(t * 1000 + 0.999);
  struct pollfd *p = lua_newuserdatauv(L, sizeof *p * (size_t)(n ? n : 1), 0);
  for (lua_Integer i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    int isnum;
    lua_Integer fd = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || fd < 0 || fd > INT32_MAX)
      return luaL_argerror(L, 1, "descriptor numbers expected");
    p[i].fd = (int)fd;
    p[i].events = POLLIN;
    p[i].revents = 0;
  }
  int r;
  do
    r = poll(p, (nfds_t)n, ms);
  while (r < 0 && errno == EINTR);
  if (r < 0) return isle_pusherrno(L, errno, "poll");
  lua_createtable(L, r, 0);
  int k = 0;
  for (lua_Integer i = 0; i < n; i++)
    if (p[i].revents) {
      lua_pushinteger(L, p[i].fd);
      lua_rawseti(L, -2, ++k);
    }
  return 1;
}

/* A TCP socket made in the network namespace open on nsfd (-1: the
 * caller's); the caller's thread is back in its own one after. -1/errno. */
static int socket_in(int nsfd, int family)
{
  int saved = -1, s, e;
  if (nsfd >= 0) {
    saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (saved < 0) return -1;
    if (setns(nsfd, CLONE_NEWNET) < 0) {
      isle_close(saved);
      return -1;
    }
  }
  s = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  e = errno;
  if (saved >= 0) {
    if (setns(saved, CLONE_NEWNET) < 0) abort(); /* no way to stay sane */
    isle_close(saved);
  }
  errno = e;
  return s;
}

/***
 * Does `addr`:`port` accept a TCP connection? The socket is made in the
 * network namespace at `netns` (a path; nil: the caller's), the caller
 * stays in its own; the connection is closed at once.
 * @function tcp_probe
 * @tparam ?string netns e.g. "/run/netns/demo-h1"
 * @string addr an IPv4 or IPv6 address
 * @int port
 * @number[opt=1] timeout seconds to wait for the handshake
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("connect 127.0.0.1:80: Connection refused")
 * @treturn[2] int errno
 */
static int l_tcp_probe(lua_State *L)
{
  const char *netns = luaL_optstring(L, 1, NULL);
  const char *addr = luaL_checkstring(L, 2);
  int port = (int)isle_checkrange(L, 3, 1, 65535);
  double t = luaL_optnumber(L, 4, 1);
  luaL_argcheck(L, t >= 0 && t < 1e6, 4, "out of range");
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    len = sizeof *in4;
  } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    len = sizeof *in6;
  } else {
    return luaL_argerror(L, 2, "IPv4 or IPv6 address expected");
  }
  int *nsfd = isle_newfd(L);
  lua_toclose(L, -1);
  if (netns) {
    *nsfd = open(netns, O_RDONLY | O_CLOEXEC);
    if (*nsfd < 0) return isle_pusherrno(L, errno, "open %s", netns);
  }
  int *s = isle_newfd(L);
  lua_toclose(L, -1);
  *s = socket_in(*nsfd, ss.ss_family);
  if (*s < 0) return isle_pusherrno(L, errno, "socket in %s", netns);
  int r = connect(*s, (struct sockaddr *)&ss, len);
  if (r < 0 && errno == EINPROGRESS) {
    struct pollfd p = {*s, POLLOUT, 0};
    do
      r = poll(&p, 1, (int)(t * 1000));
    while (r < 0 && errno == EINTR);
    if (r == 0) errno = ETIMEDOUT;
    if (r > 0) {
      int err = 0;
      socklen_t elen = sizeof err;
      r = getsockopt(*s, SOL_SOCKET, SO_ERROR, &err, &elen);
      if (r == 0 && err) {
        errno = err;
        r = -1;
      }
    } else {
      r = -1;
    }
  }
  if (r < 0) return isle_pusherrno(L, errno, "connect %s port %d", addr, port);
  lua_pushboolean(L, 1);
  return 1;
}

void isle_open_poll(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"poll", l_poll},
      {"tcp_probe", l_tcp_probe},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
