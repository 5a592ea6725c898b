/* Processes: spawn (clone3 + a plan of child steps + exec), the small init,
 * and Process objects (pid + pidfd): wait, poll, kill, nsid, close.
 *
 * The Lua layer (lua/isle/process.lua) validates the user's spec and hands
 * core.spawn a normalised table. Here the parent turns that table into a
 * plain C plan (no Lua calls happen in the child except in fn mode), clones,
 * writes id maps while the child waits, and learns the fate of the child
 * over a close-on-exec pipe: EOF means exec succeeded, a message means a
 * step failed (the child has then _exited and is reaped here). */
#include "isle.h"

#include <linux/capability.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

/* Steps the child reports on failure; the parent names them. */
enum {
  STEP_PDEATHSIG = 1,
  STEP_CGROUP,
  STEP_SETNS,
  STEP_UNSHARE_USER,
  STEP_USERSYNC,
  STEP_UNSHARE,
  STEP_TIMENS,
  STEP_FORK,
  STEP_HOSTNAME,
  STEP_DOMAINNAME,
  STEP_MOUNT,
  STEP_ROOTFS,
  STEP_CHDIR,
  STEP_STDIO,
  STEP_CAPS,
  STEP_NNP,
  STEP_EXEC,
};

/* child -> parent message */
struct msg {
  int32_t type; /* MSG_* */
  int32_t step;
  int32_t index;
  int32_t err;
};
enum { MSG_ERROR = 1, MSG_READY = 2 };

struct join {
  int fd;
  int nstype;
  const char *label;
};

struct mstep {
  int umount;
  const char *source, *target, *fstype, *data, *what;
  unsigned long flags;
};

struct plan {
  int clone_flags;   /* namespaces created by clone3 */
  int unshare_flags; /* created by the child (after joins), user excluded */
  int unshare_user;  /* child unshares the user ns itself (after joins) */
  int userns;        /* a new user ns: the child waits for its maps */
  int parent_time;   /* parent does unshare(time) -> offsets -> clone */
  int child_time;    /* the child does it (after its user ns is mapped) */
  int need_fork;     /* a stub/init process forks the command */
  int init;          /* the stub is a real init (PID 1) */
  int fn;            /* stack index of a Lua function (fn mode), or 0 */
  const char *time_offsets;
  const char *cgroup;
  const char *hostname, *domainname;
  const char *rootfs, *cwd;
  char **argv;
  char **envp;
  struct join *joins;
  int njoins;
  struct mstep *mounts;
  int nmounts;
  int stdio[3]; /* source fd for 0, 1, 2 or -1 (inherit) */
  int no_new_privs;
  int set_caps;
  uint64_t caps;
  int last_cap;
  int status_w;  /* child's end of the status pipe */
  int release_r; /* child's end of the release pipe */
};

/* --- the child side: async-signal-safe C only (except fn mode) --------- */

static void child_fail(const struct plan *pl, int step, int index, int err)
{
  struct msg m = {MSG_ERROR, step, index, err};
  (void)isle_write_all(pl->status_w, &m, sizeof m);
  _exit(127);
}

static void child_signal_defaults(void)
{
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

static int write_cgroup(const char *dir)
{
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/cgroup.procs", dir);
  if (n < 0 || (size_t)n >= sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return isle_writefile(path, "0\n", 2);
}

static int apply_caps(const struct plan *pl)
{
  for (int c = 0; c <= pl->last_cap; c++)
    if (!(pl->caps & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
        errno != EINVAL)
      return -1;
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  for (int i = 0; i < 2; i++) {
    uint32_t bits = (uint32_t)(pl->caps >> (32 * i));
    data[i].effective = data[i].permitted = data[i].inheritable = bits;
  }
  if (syscall(SYS_capset, &hdr, data) < 0) return -1;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) return -1;
  for (int c = 0; c <= pl->last_cap; c++)
    if ((pl->caps & (1ULL << c)) &&
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
      return -1;
  return 0;
}

static void noop_handler(int sig)
{
  (void)sig;
}

static const int forwarded[] = {
    SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

/* The stub/init: forward signals to the command, reap every child, exit with
 * the command's status (128 + signal when it was killed). */
static void run_init(pid_t cmd, const sigset_t *mask)
{
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(mask, &si);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      kill(cmd, sig);
      continue;
    }
    for (;;) {
      int st;
      pid_t p = waitpid(-1, &st, WNOHANG);
      if (p <= 0) break;
      if (p == cmd) {
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        _exit(code);
      }
    }
  }
}

static void child_main(lua_State *L, const struct plan *pl)
{
  int in_grandchild = 0;
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
    child_fail(pl, STEP_PDEATHSIG, 0, errno);
  for (int i = 0; i < pl->njoins; i++)
    if (setns(pl->joins[i].fd, pl->joins[i].nstype) < 0)
      child_fail(pl, STEP_SETNS, i, errno);
  if (pl->unshare_user && unshare(CLONE_NEWUSER) < 0)
    child_fail(pl, STEP_UNSHARE_USER, 0, errno);
  if (pl->userns) {
    struct msg m = {MSG_READY, 0, 0, 0};
    char c;
    if (isle_write_all(pl->status_w, &m, sizeof m) < 0)
      child_fail(pl, STEP_USERSYNC, 0, errno);
    if (isle_read_retry(pl->release_r, &c, 1) != 1) _exit(127);
  }
  if (pl->cgroup && write_cgroup(pl->cgroup) < 0)
    child_fail(pl, STEP_CGROUP, 0, errno);
  if (pl->unshare_flags && unshare(pl->unshare_flags) < 0)
    child_fail(pl, STEP_UNSHARE, 0, errno);
  if (pl->child_time) {
    /* unshare -> offsets -> enter it ourselves (no process has yet) */
    if (unshare(CLONE_NEWTIME) < 0) child_fail(pl, STEP_TIMENS, 0, errno);
    if (pl->time_offsets && isle_writefile("/proc/self/timens_offsets",
                                           pl->time_offsets,
                                           strlen(pl->time_offsets)) < 0)
      child_fail(pl, STEP_TIMENS, 1, errno);
    int tfd = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
    if (tfd < 0 || setns(tfd, CLONE_NEWTIME) < 0)
      child_fail(pl, STEP_TIMENS, 2, errno);
    close(tfd);
  }
  if (pl->need_fork) {
    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
      sigaddset(&mask, forwarded[i]);
    sigprocmask(SIG_BLOCK, &mask, &old);
    pid_t pid = fork();
    if (pid < 0) child_fail(pl, STEP_FORK, 0, errno);
    if (pid > 0) {
      /* the stub: nothing of the caller's stays open in it */
      struct sigaction sa;
      memset(&sa, 0, sizeof sa);
      sa.sa_handler = noop_handler;
      for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaction(forwarded[i], &sa, NULL);
      isle_close_range(3, ~0U, 0);
      prctl(PR_SET_NAME, "isle-init", 0, 0, 0); /* what ps shows for it */
      run_init(pid, &mask);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
      child_fail(pl, STEP_PDEATHSIG, 0, errno);
    in_grandchild = 1;
  }
  if (pl->hostname && sethostname(pl->hostname, strlen(pl->hostname)) < 0)
    child_fail(pl, STEP_HOSTNAME, 0, errno);
  if (pl->domainname &&
      setdomainname(pl->domainname, strlen(pl->domainname)) < 0)
    child_fail(pl, STEP_DOMAINNAME, 0, errno);
  for (int i = 0; i < pl->nmounts; i++) {
    const struct mstep *m = &pl->mounts[i];
    int r = m->umount
                ? umount2(m->target, (int)m->flags)
                : mount(m->source, m->target, m->fstype, m->flags, m->data);
    if (r < 0) child_fail(pl, STEP_MOUNT, i, errno);
  }
  if (pl->rootfs) {
    if (mount(pl->rootfs, pl->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
      child_fail(pl, STEP_ROOTFS, 0, errno);
    if (chdir(pl->rootfs) < 0) child_fail(pl, STEP_ROOTFS, 1, errno);
    if (isle_pivot_root(".", ".") < 0) child_fail(pl, STEP_ROOTFS, 2, errno);
    if (umount2(".", MNT_DETACH) < 0) child_fail(pl, STEP_ROOTFS, 3, errno);
    if (chdir("/") < 0) child_fail(pl, STEP_ROOTFS, 4, errno);
  }
  if (pl->cwd && chdir(pl->cwd) < 0) child_fail(pl, STEP_CHDIR, 0, errno);
  /* stdio: move every source out of the way first, then place it */
  int src[3];
  for (int i = 0; i < 3; i++) {
    src[i] = -1;
    if (pl->stdio[i] >= 0 &&
        (src[i] = fcntl(pl->stdio[i], F_DUPFD_CLOEXEC, 3)) < 0)
      child_fail(pl, STEP_STDIO, i, errno);
  }
  for (int i = 0; i < 3; i++)
    if (src[i] >= 0 && dup2(src[i], i) < 0)
      child_fail(pl, STEP_STDIO, i, errno);
  if (pl->set_caps && apply_caps(pl) < 0) child_fail(pl, STEP_CAPS, 0, errno);
  if (pl->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    child_fail(pl, STEP_NNP, 0, errno);
  if (!in_grandchild) prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  if (pl->fn) {
    /* fn mode: the parent learns "started" from EOF on the status pipe */
    close(pl->status_w);
    if (pl->release_r >= 0) close(pl->release_r);
    lua_pushvalue(L, pl->fn);
    int code;
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
      size_t len;
      const char *m = luaL_tolstring(L, -1, &len);
      (void)isle_write_all(2, m, len);
      (void)isle_write_all(2, "\n", 1);
      code = 1;
    } else if (lua_isinteger(L, -1)) {
      code = (int)(lua_tointeger(L, -1) & 0xff);
    } else if (lua_isboolean(L, -1)) {
      code = lua_toboolean(L, -1) ? 0 : 1;
    } else {
      code = 0;
    }
    fflush(NULL);
    _exit(code);
  }
  isle_close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  child_signal_defaults();
  execvpe(pl->argv[0], pl->argv, pl->envp ? pl->envp : environ);
  child_fail(pl, STEP_EXEC, 0, errno);
}

/* --- the parent side ----------------------------------------------------- */

/* Process object */
struct isle_proc {
  pid_t pid;
  int pidfd;
  int reaped;
  int code;   /* exit code or signal number */
  int killed; /* 1 when terminated by a signal */
};

static struct isle_proc *checkproc(lua_State *L, int idx)
{
  struct isle_proc *p = luaL_checkudata(L, idx, ISLE_PROC_T);
  return p;
}

static struct isle_proc *openproc(lua_State *L, int idx)
{
  struct isle_proc *p = checkproc(L, idx);
  if (p->pidfd < 0) luaL_error(L, "attempt to use a closed isle.Process");
  return p;
}

static const char *stepname(lua_State *L, const struct plan *pl,
                            const struct msg *m)
{
  static const char *const rootfs_steps[] = {
      "bind", "chdir", "pivot_root", "umount old root", "chdir /"};
  switch (m->step) {
  case STEP_PDEATHSIG:
    return "prctl PR_SET_PDEATHSIG";
  case STEP_CGROUP:
    return lua_pushfstring(L, "cgroup %s", pl->cgroup);
  case STEP_SETNS:
    if (m->index >= 0 && m->index < pl->njoins)
      return lua_pushfstring(L, "setns %s", pl->joins[m->index].label);
    return "setns";
  case STEP_UNSHARE_USER:
    return "unshare user";
  case STEP_USERSYNC:
    return "sync";
  case STEP_UNSHARE: {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "unshare ");
    const char *sep = "";
    for (const struct isle_kind *k = isle_kinds; k->name; k++)
      if (pl->unshare_flags & k->flag) {
        luaL_addstring(&b, sep);
        luaL_addstring(&b, k->name);
        sep = ",";
      }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
  }
  case STEP_TIMENS:
    if (m->index == 0) return "unshare time";
    return m->index == 1 ? "timens_offsets" : "setns time";
  case STEP_FORK:
    return "fork";
  case STEP_HOSTNAME:
    return lua_pushfstring(L, "sethostname %s", pl->hostname);
  case STEP_DOMAINNAME:
    return lua_pushfstring(L, "setdomainname %s", pl->domainname);
  case STEP_MOUNT:
    if (m->index >= 0 && m->index < pl->nmounts)
      return pl->mounts[m->index].what;
    return "mount";
  case STEP_ROOTFS:
    if (m->index >= 0 && m->index < 5)
      return lua_pushfstring(
          L, "rootfs %s: %s", pl->rootfs, rootfs_steps[m->index]);
    return "rootfs";
  case STEP_CHDIR:
    return lua_pushfstring(L, "chdir %s", pl->cwd);
  case STEP_STDIO:
    return lua_pushfstring(L, "stdio %d", m->index);
  case STEP_CAPS:
    return "capabilities";
  case STEP_NNP:
    return "no_new_privs";
  case STEP_EXEC:
    return lua_pushfstring(L, "exec %s", pl->fn ? "fn" : pl->argv[0]);
  }
  return "?";
}

/* Field helpers for the normalised spec table at idx. */
static const char *optstrfield(lua_State *L, int idx, const char *k)
{
  const char *s = NULL;
  if (lua_getfield(L, idx, k) == LUA_TSTRING) s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the string stays alive: the spec table holds it */
  return s;
}

static lua_Integer optintfield(lua_State *L, int idx, const char *k,
                               lua_Integer d)
{
  lua_Integer v = d;
  if (lua_getfield(L, idx, k) == LUA_TNUMBER) v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int boolfield(lua_State *L, int idx, const char *k)
{
  lua_getfield(L, idx, k);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* An array of the strings of the list field k, NULL-terminated, in a
 * userdata left on the stack (anchored until return). */
static char **strlist(lua_State *L, int idx, const char *k)
{
  if (lua_getfield(L, idx, k) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return NULL;
  }
  lua_Integer n = luaL_len(L, -1);
  char **v = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, -2, i);
    /* exec takes char *const[]; the strings are never written */
    v[i - 1] = (char *)(uintptr_t)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  v[n] = NULL;
  lua_remove(L, -2);
  return v;
}

static int fileno_of(lua_State *L, int idx)
{
  luaL_Stream *s = luaL_testudata(L, idx, LUA_FILEHANDLE);
  if (s) {
    if (!s->closef) luaL_error(L, "attempt to use a closed file");
    return fileno(s->f);
  }
  return (int)lua_tointeger(L, idx);
}

static int reap(struct isle_proc *p, int options)
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

static void kill_and_reap(struct isle_proc *p)
{
  isle_pidfd_send_signal(p->pidfd, SIGKILL);
  (void)reap(p, 0);
}

static int run_map_helper(const char *prog, pid_t pid, const char *ranges)
{
  /* prog PID inside outside count ... : at most 340 ranges */
  char buf[4096], pidbuf[16];
  char *argv[1 + 1 + 3 * 340 + 1];
  int n = 0;
  snprintf(pidbuf, sizeof pidbuf, "%d", (int)pid);
  if (strlen(ranges) >= sizeof buf) {
    errno = E2BIG;
    return -1;
  }
  strcpy(buf, ranges);
  argv[n++] = (char *)(uintptr_t)prog;
  argv[n++] = pidbuf;
  for (char *save, *t = strtok_r(buf, " \n", &save);
       t && n < (int)(sizeof argv / sizeof argv[0]) - 1;
       t = strtok_r(NULL, " \n", &save))
    argv[n++] = t;
  argv[n] = NULL;
  pid_t h;
  int err = posix_spawnp(&h, prog, NULL, NULL, argv, environ);
  if (err) {
    errno = err;
    return -1;
  }
  int st;
  while (waitpid(h, &st, 0) < 0)
    if (errno != EINTR) return -1;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    errno = EPERM;
    return -1;
  }
  return 0;
}

/* Write the id maps of the child's new user ns; -1/errno and *what set. */
static int write_maps(lua_State *L, int spec, pid_t pid, const char **what)
{
  char path[64];
  const char *setgroups = optstrfield(L, spec, "setgroups");
  const char *uid_map = optstrfield(L, spec, "uid_map");
  const char *gid_map = optstrfield(L, spec, "gid_map");
  int helper = boolfield(L, spec, "map_helper");
  if (setgroups) {
    snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
    *what = "setgroups";
    if (isle_writefile(path, setgroups, strlen(setgroups)) < 0) return -1;
  }
  if (gid_map) {
    *what = "gid_map";
    if (helper) {
      if (run_map_helper("newgidmap", pid, gid_map) < 0) return -1;
    } else {
      snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
      if (isle_writefile(path, gid_map, strlen(gid_map)) < 0) return -1;
    }
  }
  if (uid_map) {
    *what = "uid_map";
    if (helper) {
      if (run_map_helper("newuidmap", pid, uid_map) < 0) return -1;
    } else {
      snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
      if (isle_writefile(path, uid_map, strlen(uid_map)) < 0) return -1;
    }
  }
  return 0;
}

static int fail_spawn(lua_State *L, int err, const char *what)
{
  return isle_pusherrno(L, err, "spawn: %s", what);
}

/***
 * Clone a child that runs a plan of steps, then execs (or runs fn).
 * Takes the table normalised by `isle.spawn` (lua/isle/process.lua).
 * @function spawn
 * @tparam table plan
 * @treturn[1] Process
 * @return[2] nil
 * @treturn[2] string message "spawn: <step>: <strerror>"
 * @treturn[2] int errno
 */
static int l_spawn(lua_State *L)
{
  struct plan pl;
  memset(&pl, 0, sizeof pl);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  const int spec = 1;

  pl.clone_flags = (int)optintfield(L, spec, "clone_flags", 0);
  pl.unshare_flags = (int)optintfield(L, spec, "unshare_flags", 0);
  pl.unshare_user = boolfield(L, spec, "unshare_user");
  pl.userns = (pl.clone_flags & CLONE_NEWUSER) || pl.unshare_user;
  pl.time_offsets = optstrfield(L, spec, "time_offsets");
  int want_time = boolfield(L, spec, "time");
  pl.child_time = want_time && pl.userns;
  pl.parent_time = want_time && !pl.userns;
  pl.init = boolfield(L, spec, "init");
  pl.need_fork = pl.init || boolfield(L, spec, "fork");
  pl.cgroup = optstrfield(L, spec, "cgroup");
  pl.hostname = optstrfield(L, spec, "hostname");
  pl.domainname = optstrfield(L, spec, "domainname");
  pl.rootfs = optstrfield(L, spec, "rootfs");
  pl.cwd = optstrfield(L, spec, "cwd");
  pl.no_new_privs = boolfield(L, spec, "no_new_privs");
  pl.status_w = pl.release_r = -1;

  /* argv / fn */
  if (lua_getfield(L, spec, "fn") == LUA_TFUNCTION) {
    pl.fn = lua_gettop(L); /* stays on the stack */
  } else {
    lua_pop(L, 1);
  }
  pl.argv = strlist(L, spec, "argv"); /* +1 */
  if (!pl.fn && !pl.argv) return luaL_error(L, "spawn: argv or fn required");
  pl.envp = strlist(L, spec, "env"); /* +1 */

  /* joins */
  if (lua_getfield(L, spec, "joins") == LUA_TTABLE) {
    pl.njoins = (int)luaL_len(L, -1);
    pl.joins =
        lua_newuserdatauv(L, sizeof *pl.joins * (size_t)pl.njoins + 1, 0);
    for (int i = 0; i < pl.njoins; i++) {
      lua_geti(L, -2, i + 1);
      pl.joins[i].fd = (int)optintfield(L, -1, "fd", -1);
      pl.joins[i].nstype = (int)optintfield(L, -1, "nstype", 0);
      pl.joins[i].label = optstrfield(L, -1, "label");
      if (!pl.joins[i].label) pl.joins[i].label = "?";
      lua_pop(L, 1);
    }
    lua_remove(L, -2);
  }

  /* mounts */
  if (lua_getfield(L, spec, "mounts") == LUA_TTABLE) {
    pl.nmounts = (int)luaL_len(L, -1);
    pl.mounts =
        lua_newuserdatauv(L, sizeof *pl.mounts * (size_t)pl.nmounts + 1, 0);
    for (int i = 0; i < pl.nmounts; i++) {
      struct mstep *m = &pl.mounts[i];
      lua_geti(L, -2, i + 1);
      const char *op = optstrfield(L, -1, "op");
      m->umount = op && strcmp(op, "umount") == 0;
      m->source = optstrfield(L, -1, "source");
      m->target = optstrfield(L, -1, "target");
      m->fstype = optstrfield(L, -1, "fstype");
      m->data = optstrfield(L, -1, "data");
      m->what = optstrfield(L, -1, "what");
      if (!m->what) m->what = "mount";
      m->flags = (unsigned long)optintfield(L, -1, "flags", 0);
      lua_pop(L, 1);
    }
    lua_remove(L, -2);
  }

  /* capabilities */
  if (lua_getfield(L, spec, "caps") == LUA_TNUMBER) {
    pl.set_caps = 1;
    pl.caps = (uint64_t)lua_tointeger(L, -1);
    char buf[32];
    pl.last_cap = 40;
    if (isle_readfile("/proc/sys/kernel/cap_last_cap", buf, sizeof buf) > 0)
      pl.last_cap = atoi(buf);
    if (pl.last_cap > 63) pl.last_cap = 63;
  }
  lua_pop(L, 1);

  /* Process object, created closed; user values 1..3 = stdin/out/err */
  struct isle_proc *p = lua_newuserdatauv(L, sizeof *p, 3);
  p->pid = -1;
  p->pidfd = -1;
  p->reaped = 0;
  p->code = 0;
  p->killed = 0;
  luaL_setmetatable(L, ISLE_PROC_T);
  int proc_idx = lua_gettop(L);

  /* stdio: the parent's ends become Lua files; child ends are boxed */
  static const char *const stdnames[] = {"stdin", "stdout", "stderr"};
  int *childend[3], *parentend[3];
  int *devnull = isle_newfd(L);
  lua_toclose(L, -1);
  for (int i = 0; i < 3; i++) {
    pl.stdio[i] = -1;
    childend[i] = isle_newfd(L);
    lua_toclose(L, -1);
    parentend[i] = isle_newfd(L);
    lua_toclose(L, -1);
    int t = lua_getfield(L, spec, stdnames[i]);
    if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "pipe") == 0) {
      int fds[2];
      if (pipe2(fds, O_CLOEXEC) < 0)
        return isle_pusherrno(L, errno, "spawn: pipe");
      *childend[i] = i == 0 ? fds[0] : fds[1];
      *parentend[i] = i == 0 ? fds[1] : fds[0];
      pl.stdio[i] = *childend[i];
    } else if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "null") == 0) {
      if (*devnull < 0 &&
          (*devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
        return isle_pusherrno(L, errno, "spawn: open /dev/null");
      pl.stdio[i] = *devnull;
    } else if (t == LUA_TNUMBER || t == LUA_TUSERDATA) {
      pl.stdio[i] = fileno_of(L, -1);
    }
    lua_pop(L, 1);
  }

  /* sync pipes */
  int *status_r = isle_newfd(L), *status_w;
  lua_toclose(L, -1);
  status_w = isle_newfd(L);
  lua_toclose(L, -1);
  int *release_r = isle_newfd(L), *release_w;
  lua_toclose(L, -1);
  release_w = isle_newfd(L);
  lua_toclose(L, -1);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return isle_pusherrno(L, errno, "spawn: pipe");
  *status_r = fds[0];
  *status_w = fds[1];
  if (pl.userns) {
    if (pipe2(fds, O_CLOEXEC) < 0)
      return isle_pusherrno(L, errno, "spawn: pipe");
    *release_r = fds[0];
    *release_w = fds[1];
  }
  pl.status_w = *status_w;
  pl.release_r = *release_r;

  /* time namespace, parent side: unshare -> offsets -> clone -> restore */
  int *savedtime = isle_newfd(L);
  lua_toclose(L, -1);
  if (pl.parent_time) {
    *savedtime = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
    if (*savedtime < 0)
      return isle_pusherrno(
          L, errno, "spawn: open /proc/self/ns/time_for_children");
    if (unshare(CLONE_NEWTIME) < 0)
      return isle_pusherrno(L, errno, "spawn: unshare time");
    if (pl.time_offsets && isle_writefile("/proc/self/timens_offsets",
                                          pl.time_offsets,
                                          strlen(pl.time_offsets)) < 0) {
      int e = errno;
      if (setns(*savedtime, CLONE_NEWTIME) < 0)
        return isle_pusherrno(L, errno, "spawn: restore time namespace");
      return isle_pusherrno(L, e, "spawn: timens_offsets");
    }
  }

  if (pl.fn) fflush(NULL);
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  int pidfd = -1;
  ca.flags = (uint64_t)pl.clone_flags | CLONE_PIDFD;
  ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
  ca.exit_signal = SIGCHLD;
  long pid = isle_clone3(&ca, sizeof ca);
  if (pid < 0 && errno == ENOSYS)
    pid = syscall(SYS_clone,
                  (unsigned long)pl.clone_flags | CLONE_PIDFD | SIGCHLD,
                  0,
                  &pidfd,
                  0,
                  0);
  int clone_errno = errno;
  if (pid == 0) child_main(L, &pl); /* never returns */

  /* parent */
  if (pl.parent_time && setns(*savedtime, CLONE_NEWTIME) < 0) {
    int e = errno;
    if (pid > 0) {
      p->pid = (pid_t)pid;
      p->pidfd = pidfd;
      kill_and_reap(p);
    }
    return isle_pusherrno(L, e, "spawn: restore time namespace");
  }
  if (pid < 0) return isle_pusherrno(L, clone_errno, "spawn: clone");
  p->pid = (pid_t)pid;
  p->pidfd = pidfd;

  isle_close(isle_steal_fd(status_w));
  isle_close(isle_steal_fd(release_r));
  for (int i = 0; i < 3; i++)
    isle_close(isle_steal_fd(childend[i]));

  for (;;) {
    struct msg m;
    ssize_t n = isle_read_retry(*status_r, &m, sizeof m);
    if (n == 0) break; /* exec'd (or fn started) */
    if (n != (ssize_t)sizeof m) {
      int e = n < 0 ? errno : EPROTO;
      kill_and_reap(p);
      return fail_spawn(L, e, "status pipe");
    }
    if (m.type == MSG_READY) {
      const char *what = "maps";
      if (write_maps(L, spec, p->pid, &what) < 0) {
        int e = errno;
        kill_and_reap(p);
        return fail_spawn(L, e, what);
      }
      if (isle_write_all(*release_w, "1", 1) < 0) {
        int e = errno;
        kill_and_reap(p);
        return fail_spawn(L, e, "release");
      }
      isle_close(isle_steal_fd(release_w));
      continue;
    }
    kill_and_reap(p);
    return fail_spawn(L, m.err, stepname(L, &pl, &m));
  }

  for (int i = 0; i < 3; i++) {
    if (*parentend[i] < 0) continue;
    isle_pushfile(L, parentend[i], i == 0 ? "w" : "r");
    lua_setiuservalue(L, proc_idx, i + 1);
  }
  lua_pushvalue(L, proc_idx);
  return 1;
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
  if (p->reaped) return pushstatus(L, p);
  if (p->pidfd < 0)
    return luaL_error(L, "attempt to use a closed isle.Process");
  if (reap(p, 0) < 0) return isle_pusherrno(L, errno, "wait %d", (int)p->pid);
  return pushstatus(L, p);
}

/***
 * Like wait, without blocking: nil while the process runs.
 * @function Process:poll
 */
static int proc_poll(lua_State *L)
{
  struct isle_proc *p = checkproc(L, 1);
  if (p->reaped) return pushstatus(L, p);
  if (p->pidfd < 0)
    return luaL_error(L, "attempt to use a closed isle.Process");
  int r = reap(p, WNOHANG);
  if (r < 0) return isle_pusherrno(L, errno, "wait %d", (int)p->pid);
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
  if (p->pidfd >= 0 && !p->reaped) (void)reap(p, WNOHANG);
  isle_close(isle_steal_fd(&p->pidfd));
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
  if (*fd < 0) return isle_pusherrno(L, errno, "pidfd_open %d", (int)pid);
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

void isle_open_proc(lua_State *L)
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
      {"spawn", l_spawn},
      {"pidfd_open", l_pidfd_open},
      {"open_fd", l_open_fd},
      {"ids", l_ids},
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
