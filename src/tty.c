/* Terminals: a pty pair for the caller, the relay between the caller's
 * terminal and a pty master, window sizes, descriptors passed over unix
 * sockets (SCM_RIGHTS); for the spawn engine's child, the container's own
 * terminal (isle_child_pty); and the stdio relay of containers, a process
 * that copies between the caller's files and pipes (isle_stdio_relay). */
#include "isle.h"

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <termios.h>

/* Send fd over the unix socket sock (one byte of data, SCM_RIGHTS);
 * -1/errno on failure. Async-signal-safe. */
static int send_fd(int sock, int fd)
{
  char dummy = 'm';
  struct iovec iov = {&dummy, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof u.buf;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t n;
  do
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -1 : 0;
}

int isle_child_pty(int sock, unsigned short rows, unsigned short cols)
{
  int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) return -1;
  int unlock = 0, s = -1;
  if (ioctl(m, TIOCSPTLCK, &unlock) < 0 ||
      (s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
    goto fail;
  if (rows && cols) {
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    ws.ws_row = rows;
    ws.ws_col = cols;
    (void)ioctl(m, TIOCSWINSZ, &ws);
  }
  for (int i = 0; i < 3; i++)
    if (dup2(s, i) < 0) goto fail;
  if (send_fd(sock, m) < 0) goto fail;
  isle_close(s);
  isle_close(m);
  return 0;
fail:
  isle_close(s);
  isle_close(m);
  return -1;
}

/* --- the stdio relay of containers ------------------------------------ */

/* One direction: copy `in` to `out` through buf. */
struct chan {
  int in, out;
  int out_is_pipe; /* closed at the end (the container's stdin: its EOF); a
                    * caller's file may be the target of two channels */
  size_t len, off; /* buffered bytes; off: written so far */
  char buf[16384];
};

/* Keep only the descriptors of `keep` (n of them): close the others. */
static void keep_only(int *keep, int n)
{
  for (int i = 1; i < n; i++) /* sort */
    for (int j = i; j > 0 && keep[j] < keep[j - 1]; j--) {
      int t = keep[j];
      keep[j] = keep[j - 1];
      keep[j - 1] = t;
    }
  unsigned lo = 0;
  for (int i = 0; i <= n; i++) {
    unsigned hi = i < n ? (unsigned)keep[i] : ~0U;
    if (hi > lo && isle_close_range(lo, hi - 1, 0) < 0 && errno == ENOSYS)
      for (unsigned fd = lo; fd < hi && fd < 1024; fd++)
        isle_close((int)fd);
    if (i < n) lo = (unsigned)keep[i] + 1;
  }
}

/* One step of channel c after poll said `revents`: 0 while it goes on. */
static int chan_step(struct chan *c, short revents)
{
  ssize_t n;
  if (!revents) return 0;
  if (c->off == c->len) {
    n = read(c->in, c->buf, sizeof c->buf);
    if (n > 0) {
      c->len = (size_t)n;
      c->off = 0;
      return 0;
    }
  } else {
    n = write(c->out, c->buf + c->off, c->len - c->off);
    if (n > 0) {
      c->off += (size_t)n;
      if (c->off == c->len) c->off = c->len = 0;
      return 0;
    }
  }
  return !(n < 0 && (errno == EINTR || errno == EAGAIN));
}

/* The relay process: until every channel has seen the end. */
static __attribute__((noreturn)) void relay_loop(struct chan *c, int n)
{
  int done[3] = {0, 0, 0};
  for (;;) {
    struct pollfd p[3];
    int live = 0;
    for (int i = 0; i < n; i++) {
      p[i].fd = done[i] ? -1 : c[i].off == c[i].len ? c[i].in : c[i].out;
      p[i].events = c[i].off == c[i].len ? POLLIN : POLLOUT;
      p[i].revents = 0;
      live += !done[i];
    }
    if (!live) _exit(0);
    if (poll(p, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    for (int i = 0; i < n; i++)
      if (!done[i] && chan_step(&c[i], p[i].revents)) {
        done[i] = 1;
        isle_close(c[i].in);
        if (c[i].out_is_pipe) isle_close(c[i].out);
      }
  }
}

int isle_stdio_relay(const int from[3], const int to[3], pid_t *pid)
{
  int pidfd = -1;
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = CLONE_PIDFD;
  ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
  ca.exit_signal = SIGCHLD;
  long r = isle_clone3(&ca, sizeof ca);
  if (r < 0) return -1;
  if (r > 0) {
    *pid = (pid_t)r;
    return pidfd;
  }
  /* the relay: out of the caller's session (its terminal's signals), no
   * SIGPIPE, nothing of the caller's open but its channels; the pipe ends
   * (the container's side) non-blocking */
  struct chan c[3];
  int keep[6], nkeep = 0, n = 0;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_IGN);
  (void)setsid();
  for (int i = 0; i < 3; i++) {
    if (from[i] < 0) continue;
    c[n].in = keep[nkeep++] = from[i];
    c[n].out = keep[nkeep++] = to[i];
    c[n].len = c[n].off = 0;
    c[n].out_is_pipe = i == 0;
    int pipe_end = i == 0 ? to[i] : from[i];
    (void)fcntl(pipe_end, F_SETFL, fcntl(pipe_end, F_GETFL) | O_NONBLOCK);
    n++;
  }
  keep_only(keep, nkeep);
  relay_loop(c, n);
}

/***
 * A pseudo-terminal pair (close-on-exec, not the caller's controlling
 * terminal); the slave gets the window size of `from` when it is a terminal.
 * @function openpty
 * @int[opt] from a descriptor to copy the window size from (e.g. 0)
 * @treturn[1] userdata master box
 * @treturn[1] userdata slave box
 * @treturn[1] int master fd
 * @treturn[1] int slave fd
 * @return[2] nil, message, errno
 */
static int l_openpty(lua_State *L)
{
  int from = (int)luaL_optinteger(L, 1, -1);
  int *m = isle_newfd(L), *s = isle_newfd(L);
  *m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*m < 0) return isle_pusherrno(L, errno, "open /dev/ptmx");
  if (grantpt(*m) < 0 || unlockpt(*m) < 0)
    return isle_pusherrno(L, errno, "unlockpt");
  char name[64];
  if (ptsname_r(*m, name, sizeof name) != 0)
    return isle_pusherrno(L, errno, "ptsname");
  *s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*s < 0) return isle_pusherrno(L, errno, "open %s", name);
  struct winsize ws;
  if (from >= 0 && ioctl(from, TIOCGWINSZ, &ws) == 0)
    (void)ioctl(*m, TIOCSWINSZ, &ws);
  lua_pushinteger(L, *m);
  lua_pushinteger(L, *s);
  return 4;
}

/* Copy what is readable on `from` to `to`; 0 at EOF/EIO, 1 otherwise. */
static int pump(int from, int to)
{
  char buf[8192];
  ssize_t n = isle_read_retry(from, buf, sizeof buf);
  if (n <= 0) return (n < 0 && errno == EAGAIN) ? 1 : 0;
  (void)isle_write_all(to, buf, (size_t)n);
  return 1;
}

/***
 * Relay a terminal between the caller's stdin/stdout and a pty master until
 * the process behind pidfd has ended: stdin is put in raw mode (when it is
 * a terminal) and restored, window size changes follow (SIGWINCH through a
 * signalfd, the signal mask restored afterwards), and end of input on
 * stdin sends the terminal's EOF character.
 * @function pty_relay
 * @tparam userdata master the master's box
 * @int pidfd the process's pidfd
 * @tparam[opt=true] boolean forward relay stdin (false: only the output)
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_pty_relay(lua_State *L)
{
  int master = *isle_checkfdbox(L, 1);
  int pidfd = (int)isle_checkrange(L, 2, 0, INT32_MAX);
  int forward = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);
  int *sfd = isle_newfd(L);
  lua_toclose(L, -1);
  sigset_t winch, oldmask;
  sigemptyset(&winch);
  sigaddset(&winch, SIGWINCH);
  if (sigprocmask(SIG_BLOCK, &winch, &oldmask) < 0)
    return isle_pusherrno(L, errno, "sigprocmask");
  *sfd = signalfd(-1, &winch, SFD_CLOEXEC | SFD_NONBLOCK);
  int err = *sfd < 0 ? errno : 0;
  struct termios saved;
  int raw = !err && forward && isatty(0) && tcgetattr(0, &saved) == 0;
  if (raw) {
    struct termios t = saved;
    cfmakeraw(&t);
    tcsetattr(0, TCSANOW, &t);
  }
  int in_open = forward, done = 0;
  while (!err && !done) {
    struct pollfd p[4] = {
        {master, POLLIN, 0},
        {pidfd, POLLIN, 0},
        {*sfd, POLLIN, 0},
        {in_open ? 0 : -1, POLLIN, 0},
    };
    if (poll(p, 4, -1) < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (p[2].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(*sfd, &si, sizeof si) > 0) {
      }
      struct winsize ws;
      if (ioctl(0, TIOCGWINSZ, &ws) == 0) (void)ioctl(master, TIOCSWINSZ, &ws);
    }
    if (p[3].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[4096];
      ssize_t n = isle_read_retry(0, buf, sizeof buf);
      if (n > 0) {
        (void)isle_write_all(master, buf, (size_t)n);
      } else {
        /* end of input: the terminal's EOF character, once */
        struct termios t;
        char eof = 4;
        if (tcgetattr(master, &t) == 0) eof = (char)t.c_cc[VEOF];
        (void)isle_write_all(master, &eof, 1);
        in_open = 0;
      }
    }
    if ((p[0].revents & POLLIN) && !pump(master, 1)) done = 1;
    if (p[0].revents & (POLLHUP | POLLERR) && !(p[0].revents & POLLIN))
      done = 1;
    if (p[1].revents & POLLIN) {
      /* the process ended: drain what is left in the terminal */
      int fl = fcntl(master, F_GETFL);
      if (fl >= 0) fcntl(master, F_SETFL, fl | O_NONBLOCK);
      while (pump(master, 1)) {
        struct pollfd q = {master, POLLIN, 0};
        if (poll(&q, 1, 0) <= 0 || !(q.revents & POLLIN)) break;
      }
      done = 1;
    }
  }
  if (raw) tcsetattr(0, TCSANOW, &saved);
  sigprocmask(SIG_SETMASK, &oldmask, NULL);
  if (err) return isle_pusherrno(L, err, "terminal relay");
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * A close-on-exec unix socketpair (SOCK_SEQPACKET), both ends boxed.
 * @function socketpair
 * @treturn[1] userdata box of one end
 * @treturn[1] userdata box of the other
 * @treturn[1] int fd of one end
 * @treturn[1] int fd of the other
 * @return[2] nil, message, errno
 */
static int l_socketpair(lua_State *L)
{
  int *a = isle_newfd(L), *b = isle_newfd(L), fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0)
    return isle_pusherrno(L, errno, "socketpair");
  *a = fds[0];
  *b = fds[1];
  lua_pushinteger(L, fds[0]);
  lua_pushinteger(L, fds[1]);
  return 4;
}

/***
 * Receive one descriptor (SCM_RIGHTS, close-on-exec) from a unix socket.
 * @function recv_fd
 * @tparam userdata box the socket's box
 * @treturn[1] userdata box of the received descriptor
 * @return[2] nil, message, errno (EOF: ENODATA)
 */
static int l_recv_fd(lua_State *L)
{
  int sock = *isle_checkfdbox(L, 1);
  int *fd = isle_newfd(L);
  char dummy;
  struct iovec iov = {&dummy, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof u.buf;
  ssize_t n;
  do
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return isle_pusherrno(L, errno, "receive descriptor");
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (n == 0 || !c || c->cmsg_type != SCM_RIGHTS)
    return isle_pusherrno(L, ENODATA, "receive descriptor");
  memcpy(fd, CMSG_DATA(c), sizeof(int));
  return 1;
}

/***
 * The window size of a terminal.
 * @function winsize
 * @int fd
 * @treturn[1] int rows
 * @treturn[1] int cols
 * @return[2] nil, message, errno
 */
static int l_winsize(lua_State *L)
{
  int fd = (int)isle_checkrange(L, 1, 0, INT32_MAX);
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) < 0)
    return isle_pusherrno(L, errno, "TIOCGWINSZ");
  lua_pushinteger(L, ws.ws_row);
  lua_pushinteger(L, ws.ws_col);
  return 2;
}

void isle_open_tty(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"openpty", l_openpty},
      {"pty_relay", l_pty_relay},
      {"socketpair", l_socketpair},
      {"recv_fd", l_recv_fd},
      {"winsize", l_winsize},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
