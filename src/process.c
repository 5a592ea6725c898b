/* Processes: the Process object (pid + pidfd: wait, poll, kill, nsid,
 * close) that isle.spawn returns. The process-level calls the Lua modules
 * compose are in proc_calls.c. */
#include "process.h"

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

int isle_checksignal(lua_State *L, int arg)
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
  int sig = isle_checksignal(L, 2);
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
  luaL_newmetatable(L, ISLE_PROC_T);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "methods");
  lua_pop(L, 1);
  isle_open_proc_calls(L);
}
