/* ICMP echo from inside network namespaces, for reachability checks of
 * many host pairs at once (lab:pingall): Net:icmp_socket opens a raw ICMP
 * socket inside the Net's namespace; core.ping sends echo requests on any
 * number of such sockets and collects the replies in one poll loop, so
 * that one process pings every pair of a lab without a process per ping.
 * icmp(7), raw(7), icmpv6(7). */
#include "nl.h"

#include <arpa/inet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#define ISLE_ICMP_FILTER 1  /* linux/icmp.h, which clashes with glibc's */
#define PING_LEN         64 /* header + 56 bytes, as ping(8) sends */
#define PING_MAGIC       "isle-ping"
#define PING_MAX_COUNT   255
#define PING_MAX_PROBES  (1 << 24)

struct sockarg {
  int family;
  int fd;
};

static int icmp_open_inside(void *p)
{
  struct sockarg *a = p;
  int proto = a->family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;
  a->fd = socket(a->family, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, proto);
  return a->fd < 0 ? -1 : 0;
}

/* Let only echo replies through to raw ICMP socket fd. 0 or -1/errno. */
static int echo_reply_filter(int fd, int family)
{
  if (family == AF_INET) {
    uint32_t block = ~(1U << ICMP_ECHOREPLY);
    return setsockopt(fd, SOL_RAW, ISLE_ICMP_FILTER, &block, sizeof block);
  }
  struct icmp6_filter f;
  ICMP6_FILTER_SETBLOCKALL(&f);
  ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &f);
  return setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof f);
}

/***
 * Open a raw ICMP (or ICMPv6) socket inside the Net's namespace: it sends
 * from there and sees the echo replies that arrive there (a filter lets
 * nothing else through). Non-blocking, close-on-exec. Needs CAP_NET_RAW.
 * @function Net:icmp_socket
 * @string[opt="inet"] family "inet" or "inet6"
 * @treturn[1] isle.Fd
 * @return[2] nil
 * @treturn[2] string message ("icmp_socket: Operation not permitted")
 * @treturn[2] int errno
 */
static int net_icmp_socket(lua_State *L)
{
  static const char *const fams[] = {"inet", "inet6", NULL};
  struct isle_net *net = isle_checknet(L, 1);
  int family = luaL_checkoption(L, 2, "inet", fams) ? AF_INET6 : AF_INET;
  const char *where = NULL;
  int *fd = isle_newfd(L);
  struct sockarg a = {family, -1};
  int r = isle_innetns(net, icmp_open_inside, &a, &where);
  int err = errno;
  if (a.fd >= 0) *fd = a.fd; /* the box owns it, also on failure */
  if (r < 0)
    return isle_pusherrno(
        L, err, "icmp_socket%s%s", where ? ": " : "", where ? where : "");
  if (echo_reply_filter(*fd, family) < 0)
    return isle_pusherrno(L, errno, "icmp_socket: filter");
  return 1;
}

/* One target of core.ping: a socket and an address. */
struct probe {
  int fd, family, err;
  union {
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } dst;
  int sent, received;
  double rtt_sum, rtt_min, rtt_max;
};

struct ping {
  struct probe *p;
  double *at; /* per packet (round * n + probe): sent at; -1 replied, -2 lost */
  struct pollfd *pfd;
  int *pfam; /* the family of each pfd's socket */
  int n, count, npfd, window, outstanding;
  long cursor, head, total;
  double t0, interval, timeout;
  uint16_t salt;
};

static double now_s(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint16_t checksum(const unsigned char *b, size_t len)
{
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2)
    sum += (uint32_t)(b[i] << 8 | b[i + 1]);
  if (len & 1) sum += (uint32_t)(b[len - 1] << 8);
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

/* Send packet `item` (round * n + probe). */
static void send_one(struct ping *g, long item, double now)
{
  int i = (int)(item % g->n), k = (int)(item / g->n);
  struct probe *p = &g->p[i];
  unsigned char pkt[PING_LEN] = {0};
  uint16_t id = htons((uint16_t)((i & 0xffff) ^ g->salt));
  uint16_t seq = htons((uint16_t)(((i >> 16) & 0xff) << 8 | k));
  pkt[0] = p->family == AF_INET ? ICMP_ECHO : ICMP6_ECHO_REQUEST;
  memcpy(pkt + 4, &id, 2);
  memcpy(pkt + 6, &seq, 2);
  memcpy(pkt + 8, PING_MAGIC, sizeof PING_MAGIC - 1);
  if (p->family == AF_INET) { /* the kernel sums ICMPv6 itself */
    uint16_t c = htons(checksum(pkt, sizeof pkt));
    memcpy(pkt + 2, &c, 2);
  }
  socklen_t alen = p->family == AF_INET ? sizeof p->dst.v4 : sizeof p->dst.v6;
  ssize_t r;
  do
    r = sendto(p->fd, pkt, sizeof pkt, 0, (struct sockaddr *)&p->dst, alen);
  while (r < 0 && errno == EINTR);
  p->sent++;
  if (r < 0) {
    p->err = errno;
    g->at[item] = -2;
    return;
  }
  g->at[item] = now;
  g->outstanding++;
}

/* A reply (ICMP message msg of len bytes) on fd: match it to its packet. */
static void got_reply(struct ping *g, int fd, const unsigned char *msg,
                      size_t len, double now)
{
  uint16_t id, seq;
  if (len < 8 + sizeof PING_MAGIC - 1 ||
      memcmp(msg + 8, PING_MAGIC, sizeof PING_MAGIC - 1) != 0)
    return;
  memcpy(&id, msg + 4, 2);
  memcpy(&seq, msg + 6, 2);
  id = ntohs(id);
  seq = ntohs(seq);
  long i = (long)((uint16_t)(id ^ g->salt)) | (long)(seq >> 8) << 16;
  int k = seq & 0xff;
  if (i >= g->n || k >= g->count || g->p[i].fd != fd) return;
  long item = (long)k * g->n + i;
  if (item >= g->cursor || g->at[item] < 0) return; /* not ours, or late */
  double rtt = now - g->at[item];
  struct probe *p = &g->p[i];
  g->at[item] = -1;
  g->outstanding--;
  if (p->received == 0 || rtt < p->rtt_min) p->rtt_min = rtt;
  if (rtt > p->rtt_max) p->rtt_max = rtt;
  p->rtt_sum += rtt;
  p->received++;
}

static void drain(struct ping *g, int fd, int family)
{
  unsigned char buf[2048];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return; /* EAGAIN: drained */
    }
    double now = now_s();
    if (family == AF_INET) {
      size_t ihl = r > 0 ? (size_t)(buf[0] & 0x0f) * 4 : 0;
      if ((size_t)r > ihl + 8 && buf[ihl] == ICMP_ECHOREPLY)
        got_reply(g, fd, buf + ihl, (size_t)r - ihl, now);
    } else if (r >= 8 && buf[0] == ICMP6_ECHO_REPLY) {
      got_reply(g, fd, buf, (size_t)r, now);
    }
  }
}

/* Send what is due, expire what timed out; the poll timeout in ms, or -1
 * when everything is settled. */
static int step(struct ping *g, double now)
{
  while (g->cursor < g->total && g->outstanding < g->window &&
         now >= g->t0 + (double)(g->cursor / g->n) * g->interval)
    send_one(g, g->cursor++, now);
  while (g->head < g->cursor &&
         (g->at[g->head] < 0 || g->at[g->head] + g->timeout <= now)) {
    if (g->at[g->head] >= 0) { /* timed out */
      g->at[g->head] = -2;
      g->outstanding--;
    }
    g->head++;
  }
  if (g->head >= g->total) return -1;
  double next = 1e30;
  if (g->head < g->cursor) next = g->at[g->head] + g->timeout;
  if (g->cursor < g->total && g->outstanding < g->window) {
    double due = g->t0 + (double)(g->cursor / g->n) * g->interval;
    if (due < next) next = due;
  }
  double ms = (next - now) * 1000.0 + 1.0;
  return ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
}

/* Read probe i (the table on top) into g. Raises. */
static void read_probe(lua_State *L, struct ping *g, int i)
{
  struct probe *p = &g->p[i];
  memset(p, 0, sizeof *p);
  int isint;
  lua_getfield(L, -1, "fd");
  lua_Integer fd = lua_tointegerx(L, -1, &isint);
  if (!isint || fd < 0 || fd > INT32_MAX)
    luaL_error(L,
               "bad argument #1 to 'ping' (probes[%d].fd: descriptor expected)",
               i + 1);
  p->fd = (int)fd;
  lua_getfield(L, -2, "dst");
  const char *dst = lua_tostring(L, -1);
  if (!dst) {
    luaL_error(L,
               "bad argument #1 to 'ping' (probes[%d].dst: address expected)",
               i + 1);
  } else if (inet_pton(AF_INET, dst, &p->dst.v4.sin_addr) == 1) {
    p->family = p->dst.v4.sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, dst, &p->dst.v6.sin6_addr) == 1) {
    p->family = p->dst.v6.sin6_family = AF_INET6;
  } else {
    luaL_error(L,
               "bad argument #1 to 'ping' (probes[%d].dst: address expected)",
               i + 1);
  }
  lua_pop(L, 2);
}

static void push_result(lua_State *L, const struct probe *p)
{
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, p->sent);
  lua_setfield(L, -2, "sent");
  lua_pushinteger(L, p->received);
  lua_setfield(L, -2, "received");
  if (p->received > 0) {
    lua_pushnumber(L, p->rtt_sum / p->received * 1000.0);
    lua_setfield(L, -2, "rtt_ms");
    lua_pushnumber(L, p->rtt_min * 1000.0);
    lua_setfield(L, -2, "rtt_min_ms");
    lua_pushnumber(L, p->rtt_max * 1000.0);
    lua_setfield(L, -2, "rtt_max_ms");
  }
  if (p->err) {
    lua_pushstring(L, strerror(p->err));
    lua_setfield(L, -2, "error");
  }
}

/***
 * Send ICMP echo requests to many targets at once and wait for the
 * replies: each probe is a socket from `Net:icmp_socket` and an address;
 * `count` rounds `interval` apart, at most `window` requests unanswered
 * at a time, each waited for `timeout` seconds.
 * @function ping
 * @tparam table probes list of `{fd = int, dst = "10.0.0.2"}`
 * @tparam[opt] table opts `count` (1..255, default 1), `timeout` (s,
 * default 1), `interval` (s, default 0.2), `window` (default 256)
 * @treturn table per probe, in order: `{sent =, received =, rtt_ms =
 * (average), rtt_min_ms =, rtt_max_ms =, error = (a send failed)}`
 */
static int l_ping(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  int count = 1, window = 256;
  double timeout = 1, interval = 0.2;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const fields[] = {
        "count", "timeout", "interval", "window", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    isle_checkfields(L, 2, fields);
    lua_getfield(L, 2, "count");
    count = (int)luaL_optinteger(L, -1, 1);
    lua_getfield(L, 2, "timeout");
    timeout = luaL_optnumber(L, -1, 1);
    lua_getfield(L, 2, "interval");
    interval = luaL_optnumber(L, -1, 0.2);
    lua_getfield(L, 2, "window");
    window = (int)luaL_optinteger(L, -1, 256);
    lua_pop(L, 4);
  }
  luaL_argcheck(L, n <= PING_MAX_PROBES, 1, "too many probes");
  luaL_argcheck(
      L, count >= 1 && count <= PING_MAX_COUNT, 2, "count: 1..255 expected");
  luaL_argcheck(
      L, timeout > 0 && timeout <= 3600, 2, "timeout: (0, 3600] expected");
  luaL_argcheck(
      L, interval >= 0 && interval <= 3600, 2, "interval: [0, 3600] expected");
  luaL_argcheck(L, window >= 1, 2, "window: >= 1 expected");
  lua_newtable(L); /* the results */
  if (n == 0) return 1;
  struct ping g = {.n = (int)n,
                   .count = count,
                   .window = window,
                   .timeout = timeout,
                   .interval = interval};
  g.total = (long)n * count;
  g.p = lua_newuserdatauv(L, sizeof *g.p * (size_t)n, 0);
  g.at = lua_newuserdatauv(L, sizeof *g.at * (size_t)g.total, 0);
  g.pfd = lua_newuserdatauv(L, sizeof *g.pfd * (size_t)n, 0);
  g.pfam = lua_newuserdatauv(L, sizeof *g.pfam * (size_t)n, 0);
  for (int i = 0; i < g.n; i++) {
    lua_rawgeti(L, 1, i + 1);
    luaL_checktype(L, -1, LUA_TTABLE);
    read_probe(L, &g, i);
    lua_pop(L, 1);
    int seen = 0;
    for (int j = 0; j < g.npfd && !seen; j++)
      seen = g.pfd[j].fd == g.p[i].fd;
    if (!seen) {
      g.pfam[g.npfd] = g.p[i].family;
      g.pfd[g.npfd++] = (struct pollfd){g.p[i].fd, POLLIN, 0};
    }
  }
  g.t0 = now_s();
  g.salt = (uint16_t)((long)(g.t0 * 1e6) ^ (long)getpid());
  for (;;) {
    int ms = step(&g, now_s());
    if (ms < 0) break;
    int r = poll(g.pfd, (nfds_t)g.npfd, ms);
    if (r < 0 && errno != EINTR) return isle_pusherrno(L, errno, "ping: poll");
    for (int j = 0; r > 0 && j < g.npfd; j++)
      if (g.pfd[j].revents & POLLIN) drain(&g, g.pfd[j].fd, g.pfam[j]);
  }
  lua_pop(L, 4);
  for (int i = 0; i < g.n; i++) {
    push_result(L, &g.p[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

void isle_open_icmp(lua_State *L)
{
  lua_pushcfunction(L, l_ping);
  lua_setfield(L, -2, "ping");
  /* Net:icmp_socket, next to the netlink methods */
  luaL_getmetatable(L, ISLE_NET_T);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, net_icmp_socket);
  lua_setfield(L, -2, "icmp_socket");
  lua_pop(L, 2);
}
