/* Containers: the small syscalls lua/isle/container.lua composes in the
 * container's child (mkdir, mkfile, symlink, pivot_root with a put_old,
 * mount_setattr, lo up, the final exec with its hygiene), and the parent's
 * side of a terminal (openpty, the relay loop, pidfd waits).
 *
 * The child-side functions run in `isle.spawn{fn = ...}` mode, in a child
 * that is a copy of the (single-threaded) Lua process. A failure there is
 * reported on an error pipe with `container_fail` (or by `container_exec`
 * itself) as "<errno> <message>", and the child _exits with 127; the parent
 * reads the pipe until EOF (exec closes it). */
#include "isle.h"

#include <linux/capability.h>
#include <linux/mount.h>
#include <net/if.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>

#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif

extern char **environ;

/* --- child side ---------------------------------------------------------- */

/***
 * mkdir(2).
 * @function mkdir
 * @string path
 * @int[opt=493] mode (0755)
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("mkdir PATH: ...")
 * @treturn[2] int errno
 */
static int l_mkdir(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  lua_Integer m = luaL_optinteger(L, 2, 0755);
  luaL_argcheck(L, m >= 0 && m <= 07777, 2, "mode out of range");
  mode_t mode = (mode_t)m;
  if (mkdir(path, mode) < 0) return isle_pusherrno(L, errno, "mkdir %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * rmdir(2).
 * @function rmdir
 * @string path
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_rmdir(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  if (rmdir(path) < 0) return isle_pusherrno(L, errno, "rmdir %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Create an empty file (a bind-mount target); an existing file is kept.
 * @function mkfile
 * @string path
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_mkfile(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return isle_pusherrno(L, errno, "create %s", path);
  close(fd);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * symlink(2).
 * @function symlink
 * @string target what the link points to
 * @string path the link
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_symlink(lua_State *L)
{
  const char *target = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (symlink(target, path) < 0)
    return isle_pusherrno(L, errno, "symlink %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * chdir(2).
 * @function chdir
 * @string path
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_chdir(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  if (chdir(path) < 0) return isle_pusherrno(L, errno, "chdir %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Make a mount and every mount below it read-only (mount_setattr(2) with
 * AT_RECURSIVE and MOUNT_ATTR_RDONLY); other mount flags are kept.
 * @function readonly_tree
 * @string path
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_readonly_tree(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_RDONLY;
  if (syscall(__NR_mount_setattr,
              AT_FDCWD,
              path,
              AT_RECURSIVE,
              &attr,
              sizeof attr) < 0)
    return isle_pusherrno(L, errno, "make %s read-only", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Bring the loopback interface of the caller's network namespace up
 * (SIOCSIFFLAGS; needs CAP_NET_ADMIN there).
 * @function lo_up
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_lo_up(lua_State *L)
{
  struct ifreq ifr;
  int *fd = isle_newfd(L);
  lua_toclose(L, -1);
  *fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (*fd < 0) return isle_pusherrno(L, errno, "socket");
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(*fd, SIOCGIFFLAGS, &ifr) < 0)
    return isle_pusherrno(L, errno, "lo: SIOCGIFFLAGS");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(*fd, SIOCSIFFLAGS, &ifr) < 0)
    return isle_pusherrno(L, errno, "set lo up");
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * setsid(2): the caller leads a new session (no controlling terminal).
 * @function setsid
 * @treturn[1] int the session id
 * @return[2] nil, message, errno
 */
static int l_setsid(lua_State *L)
{
  pid_t sid = setsid();
  if (sid < 0) return isle_pusherrno(L, errno, "setsid");
  lua_pushinteger(L, sid);
  return 1;
}

/* Write "<errno> <msg>: <strerror>" to fd and _exit(127). Never returns. */
static void report_and_exit(int fd, int err, const char *msg)
{
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "%d %s: %s", err, msg, strerror(err));
  if (n > 0) {
    if ((size_t)n >= sizeof buf) n = (int)sizeof buf - 1;
    (void)isle_write_all(fd, buf, (size_t)n);
  }
  _exit(127);
}

/***
 * In a container's child: report a failed setup step on the error pipe and
 * exit with 127. Never returns.
 * @function container_fail
 * @int fd the error pipe's write end
 * @string msg
 * @int errno
 */
static int l_container_fail(lua_State *L)
{
  int fd = (int)isle_checkrange(L, 1, 0, INT32_MAX);
  const char *msg = luaL_checkstring(L, 2);
  int err = (int)luaL_optinteger(L, 3, 0);
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "%d %s", err, msg);
  if (n > 0) {
    if ((size_t)n >= sizeof buf) n = (int)sizeof buf - 1;
    (void)isle_write_all(fd, buf, (size_t)n);
  }
  _exit(127);
  return 0;
}

/* NULL-terminated array of the strings of list field `name` of table idx,
 * in a userdata left on the stack (NULL, nothing pushed, when absent). */
static char **strarray(lua_State *L, int idx, const char *name)
{
  if (lua_getfield(L, idx, name) != LUA_TTABLE) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_Integer n = luaL_len(L, -1);
  char **a = lua_newuserdatauv(L, sizeof *a * (size_t)(n + 1), 1);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, -2, 1); /* keeps the strings alive */
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, -2, i);
    a[i - 1] = (char *)(uintptr_t)luaL_checkstring(L, -1);
    lua_pop(L, 1);
  }
  a[n] = NULL;
  lua_remove(L, -2);
  return a;
}

static int drop_caps(uint64_t caps)
{
  char buf[32];
  int last = 40;
  if (isle_readfile("/proc/sys/kernel/cap_last_cap", buf, sizeof buf) > 0)
    last = atoi(buf);
  if (last > 63) last = 63;
  for (int c = 0; c <= last; c++)
    if (!(caps & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
        errno != EINVAL)
      return -1;
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  for (int i = 0; i < 2; i++) {
    uint32_t bits = (uint32_t)(caps >> (32 * i));
    data[i].effective = data[i].permitted = data[i].inheritable = bits;
  }
  if (syscall(SYS_capset, &hdr, data) < 0) return -1;
  return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

/***
 * In a container's child: the last steps, then exec. Closes every
 * descriptor but 0-2 (and the error pipe, close-on-exec), changes to `cwd`
 * and checks that it lies inside the root, optionally becomes a session
 * leader with fd 0 as controlling terminal, reduces the capabilities, sets
 * no_new_privs, resets the signal mask and dispositions, and execs. Never
 * returns: a failure is reported on the error pipe; exit status 127.
 * @function container_exec
 * @tparam table t `{argv =, env =, cwd =, errfd =, ctty =, caps =, no_new_privs =}`
 */
static int l_container_exec(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "errfd");
  int errfd = (int)luaL_checkinteger(L, -1);
  lua_getfield(L, 1, "cwd");
  const char *cwd = luaL_optstring(L, -1, "/");
  lua_getfield(L, 1, "ctty");
  int ctty = lua_toboolean(L, -1);
  lua_getfield(L, 1, "no_new_privs");
  int nnp = lua_toboolean(L, -1);
  lua_getfield(L, 1, "caps");
  int setcaps = lua_isinteger(L, -1);
  uint64_t caps = (uint64_t)lua_tointeger(L, -1);
  char **argv = strarray(L, 1, "argv");
  char **envp = strarray(L, 1, "env");
  if (!argv || !argv[0]) return luaL_argerror(L, 1, "argv expected");
  char what[512];

  /* only 0-2 and the error pipe (close-on-exec) stay open */
  if (errfd > 3) isle_close_range(3, (unsigned)errfd - 1, 0);
  isle_close_range((unsigned)errfd + 1, ~0U, 0);
  if (fcntl(errfd, F_SETFD, FD_CLOEXEC) < 0)
    report_and_exit(errfd, errno, "error pipe");

  snprintf(what, sizeof what, "chdir %s", cwd);
  if (chdir(cwd) < 0) report_and_exit(errfd, errno, what);
  char buf[4096];
  if (!getcwd(buf, sizeof buf) || buf[0] != '/') {
    snprintf(what, sizeof what, "chdir %s: outside the container root", cwd);
    report_and_exit(errfd, ENOENT, what);
  }
  if (ctty) {
    if (setsid() < 0) report_and_exit(errfd, errno, "setsid");
    if (ioctl(0, TIOCSCTTY, 0) < 0)
      report_and_exit(errfd, errno, "controlling terminal");
  }
  if (setcaps && drop_caps(caps) < 0)
    report_and_exit(errfd, errno, "capabilities");
  if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    report_and_exit(errfd, errno, "no_new_privs");
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execvpe(argv[0], argv, envp ? envp : environ);
  snprintf(what, sizeof what, "exec %s", argv[0]);
  report_and_exit(errfd, errno, what);
  return 0;
}

/* --- parent side ---------------------------------------------------------- */

static int *checkfdbox(lua_State *L, int idx)
{
  int *fd = luaL_checkudata(L, idx, ISLE_FD_T);
  if (*fd < 0) luaL_argerror(L, idx, "closed descriptor");
  return fd;
}

/***
 * A close-on-exec pipe, both ends boxed.
 * @function pipe
 * @treturn[1] userdata read end box
 * @treturn[1] userdata write end box
 * @treturn[1] int read fd
 * @treturn[1] int write fd
 * @return[2] nil, message, errno
 */
static int l_pipe(lua_State *L)
{
  int *r = isle_newfd(L), *w = isle_newfd(L), fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return isle_pusherrno(L, errno, "pipe");
  *r = fds[0];
  *w = fds[1];
  lua_pushinteger(L, fds[0]);
  lua_pushinteger(L, fds[1]);
  return 4;
}

/***
 * Read a descriptor (boxed) to EOF.
 * @function read_all
 * @tparam userdata box
 * @treturn[1] string
 * @return[2] nil, message, errno
 */
static int l_read_all(lua_State *L)
{
  int *fd = checkfdbox(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    ssize_t n = isle_read_retry(*fd, p, LUAL_BUFFERSIZE);
    if (n < 0) return isle_pusherrno(L, errno, "read");
    if (n == 0) break;
    luaL_addsize(&b, (size_t)n);
  }
  luaL_pushresult(&b);
  return 1;
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
  int master = *checkfdbox(L, 1);
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
 * Wait until a pidfd is readable (its process ended) or the timeout passes.
 * @function pidfd_wait
 * @int pidfd
 * @number[opt] timeout seconds (nil: forever)
 * @treturn[1] boolean true when the process ended, false on timeout
 * @return[2] nil, message, errno
 */
static int l_pidfd_wait(lua_State *L)
{
  int pidfd = (int)isle_checkrange(L, 1, 0, INT32_MAX);
  int ms = lua_isnoneornil(L, 2) ? -1 : (int)(luaL_checknumber(L, 2) * 1000);
  if (ms < -1) ms = 0;
  struct pollfd p = {pidfd, POLLIN, 0};
  int r;
  do
    r = poll(&p, 1, ms);
  while (r < 0 && errno == EINTR);
  if (r < 0) return isle_pusherrno(L, errno, "poll pidfd");
  lua_pushboolean(L, r > 0);
  return 1;
}

/***
 * write(2) a whole string to a descriptor number.
 * @function write_fd
 * @int fd
 * @string data
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_write_fd(lua_State *L)
{
  int fd = (int)isle_checkrange(L, 1, 0, INT32_MAX);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (isle_write_all(fd, data, len) < 0)
    return isle_pusherrno(L, errno, "write fd %d", fd);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Sleep (nanosleep(2), restarted after signals).
 * @function sleep
 * @number seconds
 */
static int l_sleep(lua_State *L)
{
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0 && s < 1e6, 1, "out of range");
  struct timespec ts = {(time_t)s, (long)((s - (lua_Number)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
  return 0;
}

/***
 * Send a signal through a pidfd (any process, not only a child).
 * @function pidfd_kill
 * @int pidfd
 * @int sig
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_pidfd_kill(lua_State *L)
{
  int pidfd = (int)isle_checkrange(L, 1, 0, INT32_MAX);
  int sig = (int)isle_checkrange(L, 2, 0, 64);
  if (isle_pidfd_send_signal(pidfd, sig) < 0)
    return isle_pusherrno(L, errno, "kill");
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * In a container's child: open a new terminal of the container's devpts
 * (`/dev/ptmx`), make its slave fds 0-2, and send the master to the parent
 * over a unix socket with SCM_RIGHTS. The window size is set first.
 * @function container_pty
 * @int sock the child's end of a socketpair
 * @int[opt] rows
 * @int[opt] cols
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_container_pty(lua_State *L)
{
  int sock = (int)isle_checkrange(L, 1, 0, INT32_MAX);
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_row = (unsigned short)luaL_optinteger(L, 2, 0);
  ws.ws_col = (unsigned short)luaL_optinteger(L, 3, 0);
  int *m = isle_newfd(L);
  lua_toclose(L, -1);
  int *s = isle_newfd(L);
  lua_toclose(L, -1);
  *m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*m < 0) return isle_pusherrno(L, errno, "open /dev/ptmx");
  int unlock = 0;
  if (ioctl(*m, TIOCSPTLCK, &unlock) < 0)
    return isle_pusherrno(L, errno, "unlock pty");
  *s = ioctl(*m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*s < 0) return isle_pusherrno(L, errno, "open pty slave");
  if (ws.ws_row && ws.ws_col) (void)ioctl(*m, TIOCSWINSZ, &ws);
  for (int i = 0; i < 3; i++)
    if (dup2(*s, i) < 0) return isle_pusherrno(L, errno, "dup2 pty slave");
  char dummy = 'm';
  struct iovec iov = {&dummy, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof u.buf;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), m, sizeof(int));
  ssize_t n;
  do
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return isle_pusherrno(L, errno, "send pty master");
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
  int sock = *checkfdbox(L, 1);
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

void isle_open_container(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"mkdir", l_mkdir},
      {"rmdir", l_rmdir},
      {"mkfile", l_mkfile},
      {"symlink", l_symlink},
      {"chdir", l_chdir},
      {"readonly_tree", l_readonly_tree},
      {"lo_up", l_lo_up},
      {"setsid", l_setsid},
      {"container_fail", l_container_fail},
      {"container_exec", l_container_exec},
      {"pipe", l_pipe},
      {"read_all", l_read_all},
      {"openpty", l_openpty},
      {"pty_relay", l_pty_relay},
      {"pidfd_wait", l_pidfd_wait},
      {"write_fd", l_write_fd},
      {"sleep", l_sleep},
      {"pidfd_kill", l_pidfd_kill},
      {"container_pty", l_container_pty},
      {"socketpair", l_socketpair},
      {"recv_fd", l_recv_fd},
      {"winsize", l_winsize},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
