/* The process-level calls the Lua modules compose (isle.core): pidfds of
 * other processes, waits with a timeout, signals, sessions, pipes, sleeps
 * and clocks, the caller's argument area. The Process object is in
 * process.c. */
#include "process.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

/***
 * Open a pidfd for pid (close-on-exec), boxed.
 * @function pidfd_open
 * @int pid
 * @treturn[1] userdata fd box (closes on __close/__gc) and the fd number
 * @return[2] nil, message, errno
 */
static int l_pidfd_open(lua_State *L)
{
  pid_t pid = (pid_t)isle_checkrange(L, 1, 1, INT32_MAX);
  int *fd = isle_newfd(L);
  *fd = isle_pidfd_open(pid, 0);
  if (*fd < 0)
    return isle_pushkerrno(L, errno, ISLE_PIDFD, "pidfd_open %d", (int)pid);
  lua_pushinteger(L, *fd);
  return 2;
}

/***
 * Open a file read-only or write-only (close-on-exec), boxed: e.g. a
 * cgroup.procs to write to later from a child that no longer sees the path.
 * @function open_fd
 * @string path
 * @string[opt="r"] mode "r" or "w"
 * @treturn[1] userdata fd box and the fd number
 * @return[2] nil, message, errno
 */
static int l_open_fd(lua_State *L)
{
  static const char *const modes[] = {"r", "w", NULL};
  const char *path = luaL_checkstring(L, 1);
  int flags = luaL_checkoption(L, 2, "r", modes) ? O_WRONLY : O_RDONLY;
  int *fd = isle_newfd(L);
  *fd = open(path, flags | O_CLOEXEC);
  if (*fd < 0) return isle_pusherrno(L, errno, "open %s", path);
  lua_pushinteger(L, *fd);
  return 2;
}

/***
 * The caller's effective uid and gid.
 * @function ids
 * @treturn int euid
 * @treturn int egid
 */
static int l_ids(lua_State *L)
{
  lua_pushinteger(L, geteuid());
  lua_pushinteger(L, getegid());
  return 2;
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
  int *fd = isle_checkfdbox(L, 1);
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
 * clock_gettime(2) of "monotonic", "boottime" or "realtime", in seconds.
 * @function clock
 * @string[opt="monotonic"] name
 * @treturn number seconds
 */
static int l_clock(lua_State *L)
{
  static const char *const names[] = {
      "monotonic", "boottime", "realtime", NULL};
  static const clockid_t ids[] = {
      CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME};
  int i = luaL_checkoption(L, 1, "monotonic", names);
  struct timespec ts;
  clock_gettime(ids[i], &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}


/* The signals of the list at arg (numbers or names) as a set. [-0, +0, v] */
static void checksigset(lua_State *L, int arg, sigset_t *set)
{
  luaL_checktype(L, arg, LUA_TTABLE);
  sigemptyset(set);
  lua_Integer n = luaL_len(L, arg);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, arg, i);
    sigaddset(set, isle_checksignal(L, lua_gettop(L)));
    lua_pop(L, 1);
  }
}

/***
 * Block or unblock signals (sigprocmask): blocked, they stay pending until
 * `forward_signals` takes them, instead of their default action or Lua's
 * handler (SIGINT: "interrupted!"). A child that execs starts with nothing
 * blocked.
 * @function sigmask
 * @string how "block" or "unblock"
 * @tparam {int|string,...} signals
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_sigmask(lua_State *L)
{
  static const char *const hows[] = {"block", "unblock", NULL};
  int how = luaL_checkoption(L, 1, NULL, hows) ? SIG_UNBLOCK : SIG_BLOCK;
  sigset_t set;
  checksigset(L, 2, &set);
  if (sigprocmask(how, &set, NULL) < 0)
    return isle_pusherrno(L, errno, "sigprocmask");
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Until the process behind pidfd has ended, send it each of these signals
 * the caller gets (blocked meanwhile, through a signalfd; those pending
 * from `sigmask("block", ...)` first); then unblock them. What `isle run` does
 * with Ctrl-C: the container's init passes it on to the command.
 * @function forward_signals
 * @int pidfd
 * @tparam {int|string,...} signals
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_forward_signals(lua_State *L)
{
  int pidfd = (int)isle_checkrange(L, 1, 0, INT32_MAX);
  sigset_t set;
  checksigset(L, 2, &set);
  int *sfd = isle_newfd(L);
  lua_toclose(L, -1);
  if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
    return isle_pusherrno(L, errno, "sigprocmask");
  *sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  int err = *sfd < 0 ? errno : 0, ended = 0;
  while (!err && !ended) {
    struct pollfd p[2] = {{pidfd, POLLIN, 0}, {*sfd, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno != EINTR) err = errno;
      continue;
    }
    ended = p[0].revents != 0;
    struct signalfd_siginfo si; /* after the end: taken, not passed on */
    while (isle_read_retry(*sfd, &si, sizeof si) == (ssize_t)sizeof si)
      if (!ended) (void)isle_pidfd_send_signal(pidfd, (int)si.ssi_signo);
  }
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  if (err) return isle_pusherrno(L, err, "forward signals");
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Where the caller's command line and environment lie in its memory
 * (fields 48-51 of /proc/self/stat): a container's init, a copy of the
 * caller, overwrites them.
 * @function argarea
 * @treturn[1] int arg_start
 * @treturn[1] int arg_end
 * @treturn[1] int env_start
 * @treturn[1] int env_end
 * @return[2] nil, message, errno
 */
static int l_argarea(lua_State *L)
{
  char buf[2048];
  ssize_t n = isle_readfile("/proc/self/stat", buf, sizeof buf);
  if (n < 0) return isle_pusherrno(L, errno, "read /proc/self/stat");
  char *p = strrchr(buf, ')'); /* the command's name may hold spaces */
  unsigned long long v[4];
  int field = 2;
  for (char *t = p ? p + 1 : buf; *t && field < 51;) {
    while (*t == ' ')
      t++;
    field++;
    char *end;
    unsigned long long x = strtoull(t, &end, 10);
    if (field >= 48) v[field - 48] = x;
    t = end;
    while (*t && *t != ' ')
      t++;
  }
  if (field < 51)
    return isle_pusherrno(L, EPROTO, "/proc/self/stat: fields 48-51");
  for (int i = 0; i < 4; i++)
    lua_pushinteger(L, (lua_Integer)v[i]);
  return 4;
}

void isle_open_proc_calls(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"pidfd_open", l_pidfd_open},
      {"open_fd", l_open_fd},
      {"ids", l_ids},
      {"pidfd_wait", l_pidfd_wait},
      {"pidfd_kill", l_pidfd_kill},
      {"setsid", l_setsid},
      {"write_fd", l_write_fd},
      {"pipe", l_pipe},
      {"read_all", l_read_all},
      {"sleep", l_sleep},
      {"clock", l_clock},
      {"argarea", l_argarea},
      {"sigmask", l_sigmask},
      {"forward_signals", l_forward_signals},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
