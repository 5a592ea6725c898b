/* Processes: the Process object (pid + pidfd: wait, poll, kill, nsid,
 * close) that isle.spawn returns, and the process-level calls the Lua
 * modules compose: pidfds of other processes, waits with a timeout, signals,
 * sessions, pipes, sleeps and clocks. */
#include "isle.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static struct isle_proc *checkproc(lua_State *L, int idx)
{
  return luaL_checkudata(L, idx, ISLE_PROC_T);
}

static struct isle_proc *openproc(lua_State *L, int idx)
{
  struct isle_proc *p = checkproc(L, idx);
  if (p->pidfd < 0) luaL_error(L, "attempt to use a closed isle.Process");
  return p;
}

struct isle_proc *isle_newproc(lua_State *L)
{
  struct isle_proc *p = lua_newuserdatauv(L, sizeof *p, 3);
  p->pid = -1;
  p->pidfd = -1;
  p->relay = -1;
  p->reaped = 0;
  p->code = 0;
  p->killed = 0;
  luaL_setmetatable(L, ISLE_PROC_T);
  return p;
}

int isle_reap(struct isle_proc *p, int options)
{
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r;
  do
    r = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | options);
  while (r < 0 && errno == EINTR);
  if (r < 0) return -1;
  if (si.si_pid == 0) return 0; /* still running */
  p->reaped = 1;
  p->killed = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED;
  p->code = si.si_status;
  return 1;
}

/* The stdio relay's end (it ends once the container's last writer has):
 * 1 when it ended (then its pidfd is closed), 0 still running, -1/errno. */
static int reap_relay(struct isle_proc *p, int options)
{
  if (p->relay < 0) return 1;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r;
  do
    r = waitid((idtype_t)P_PIDFD, (id_t)p->relay, &si, WEXITED | options);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno != ECHILD) return -1;
  if (r == 0 && si.si_pid == 0) return 0;
  isle_close(isle_steal_fd(&p->relay));
  return 1;
}

void isle_kill_and_reap(struct isle_proc *p)
{
  isle_pidfd_send_signal(p->pidfd, SIGKILL);
  (void)isle_reap(p, 0);
}

/* --- Process methods ----------------------------------------------------- */

static int pushstatus(lua_State *L, const struct isle_proc *p)
{
  if (!p->killed && p->code == 0)
    lua_pushboolean(L, 1);
  else
    luaL_pushfail(L);
  lua_pushstring(L, p->killed ? "signal" : "exit");
  lua_pushinteger(L, p->code);
  return 3;
}

/***
 * Wait for the process to end (reaps it).
 * @function Process:wait
 * @return true|nil, "exit"|"signal", code — as os.execute
 */
static int proc_wait(lua_State *L)
{
  struct isle_proc *p = checkproc(L, 1);
  if (p->reaped && p->relay < 0) return pushstatus(L, p);
  if (p->pidfd < 0 && !p->reaped)
    return luaL_error(L, "attempt to use a closed isle.Process");
  if (!p->reaped && isle_reap(p, 0) < 0)
    return isle_pushkerrno(L, errno, ISLE_WAITID_PIDFD, "wait %d", (int)p->pid);
  if (reap_relay(p, 0) < 0)
    return isle_pusherrno(L, errno, "wait %d (stdio relay)", (int)p->pid);
  return pushstatus(L, p);
}

/***
 * Like wait, without blocking: nil while the process runs.
 * @function Process:poll
 */
static int proc_poll(lua_State *L)
{
  struct isle_proc *p = checkproc(L, 1);
  if (p->reaped && p->relay < 0) return pushstatus(L, p);
  if (p->pidfd < 0 && !p->reaped)
    return luaL_error(L, "attempt to use a closed isle.Process");
  int r = p->reaped ? 1 : isle_reap(p, WNOHANG);
  if (r < 0)
    return isle_pushkerrno(L, errno, ISLE_WAITID_PIDFD, "wait %d", (int)p->pid);
  if (r == 1) r = reap_relay(p, WNOHANG); /* its output is still coming */
  if (r < 0)
    return isle_pushkerrno(L, errno, ISLE_WAITID_PIDFD, "wait %d", (int)p->pid);
  if (r == 0) {
    lua_pushnil(L);
    return 1;
  }
  return pushstatus(L, p);
}

static const struct {
  const char *name;
  int sig;
} signames[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},
    {"ILL", SIGILL},       {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},
    {"BUS", SIGBUS},       {"FPE", SIGFPE},   {"KILL", SIGKILL},
    {"USR1", SIGUSR1},     {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"CHLD", SIGCHLD},     {"CONT", SIGCONT}, {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},
    {"URG", SIGURG},       {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
    {"IO", SIGIO},         {"PWR", SIGPWR},   {"SYS", SIGSYS},
};

static int checksignal(lua_State *L, int arg)
{
  if (lua_type(L, arg) == LUA_TNUMBER)
    return (int)isle_checkrange(L, arg, 0, 64);
  const char *s = luaL_optstring(L, arg, "TERM");
  if (strncmp(s, "SIG", 3) == 0) s += 3;
  for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
    if (strcmp(signames[i].name, s) == 0) return signames[i].sig;
  return luaL_argerror(
      L, arg, lua_pushfstring(L, "unknown signal '%s'", lua_tostring(L, arg)));
}

/***
 * Send a signal through the pidfd.
 * @function Process:kill
 * @tparam[opt="TERM"] int|string sig a number or a name ("TERM", "SIGKILL")
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int proc_kill(lua_State *L)
{
  struct isle_proc *p = openproc(L, 1);
  int sig = checksignal(L, 2);
  if (p->reaped) return isle_pusherrno(L, ESRCH, "kill %d", (int)p->pid);
  if (isle_pidfd_send_signal(p->pidfd, sig) < 0)
    return isle_pusherrno(L, errno, "kill %d", (int)p->pid);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Namespace id of one kind of the process.
 * @function Process:nsid
 * @string kind
 * @treturn[1] int inode
 * @return[2] nil, message, errno
 */
static int proc_nsid(lua_State *L)
{
  struct isle_proc *p = checkproc(L, 1);
  int flag = isle_kindflag(luaL_checkstring(L, 2));
  if (!flag) return luaL_argerror(L, 2, "unknown namespace kind");
  char path[64];
  struct stat st;
  snprintf(
      path, sizeof path, "/proc/%d/ns/%s", (int)p->pid, isle_kindname(flag));
  if (stat(path, &st) < 0) return isle_pusherrno(L, errno, "stat %s", path);
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  return 1;
}

static int proc_gc(lua_State *L)
{
  struct isle_proc *p = checkproc(L, 1);
  if (p->pidfd >= 0 && !p->reaped) (void)isle_reap(p, WNOHANG);
  isle_close(isle_steal_fd(&p->pidfd));
  isle_close(isle_steal_fd(&p->relay));
  return 0;
}

/***
 * Close the pidfd and the pipes (never signals or waits for the process).
 * @function Process:close
 * @treturn true
 */
static int proc_close(lua_State *L)
{
  struct isle_proc *p = checkproc(L, 1);
  for (int i = 1; i <= 3; i++) {
    if (lua_getiuservalue(L, 1, i) == LUA_TUSERDATA) {
      luaL_Stream *s = luaL_testudata(L, -1, LUA_FILEHANDLE);
      if (s && s->closef) {
        lua_CFunction cf = s->closef;
        s->closef = NULL;
        lua_pushcfunction(L, cf);
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);
      }
    }
    lua_pop(L, 1);
  }
  isle_close(isle_steal_fd(&p->relay));
  int fd = isle_steal_fd(&p->pidfd);
  if (fd >= 0 && close(fd) < 0) return isle_pusherrno(L, errno, "close pidfd");
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_index(lua_State *L)
{
  struct isle_proc *p = checkproc(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "pid") == 0) {
    lua_pushinteger(L, p->pid);
    return 1;
  }
  if (strcmp(k, "stdin") == 0) return lua_getiuservalue(L, 1, 1), 1;
  if (strcmp(k, "stdout") == 0) return lua_getiuservalue(L, 1, 2), 1;
  if (strcmp(k, "stderr") == 0) return lua_getiuservalue(L, 1, 3), 1;
  if (strcmp(k, "pidfd") == 0) {
    lua_pushinteger(L, p->pidfd);
    return 1;
  }
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_getfield(L, -1, k);
  return 1;
}

static int proc_tostring(lua_State *L)
{
  struct isle_proc *p = checkproc(L, 1);
  if (p->pidfd < 0)
    lua_pushfstring(L, "isle.Process (%d, closed)", (int)p->pid);
  else
    lua_pushfstring(L, "isle.Process (%d)", (int)p->pid);
  return 1;
}

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
    sigaddset(set, checksignal(L, lua_gettop(L)));
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

void isle_open_process(lua_State *L)
{
  static const luaL_Reg methods[] = {
      {"wait", proc_wait},
      {"poll", proc_poll},
      {"kill", proc_kill},
      {"nsid", proc_nsid},
      {"close", proc_close},
      {NULL, NULL},
  };
  static const luaL_Reg meta[] = {
      {"__gc", proc_gc},
      {"__close", proc_gc},
      {"__index", proc_index},
      {"__tostring", proc_tostring},
      {NULL, NULL},
  };
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
  luaL_newmetatable(L, ISLE_PROC_T);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "methods");
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
