/* The spawn engine: one plan, one clone, one child step runner.
 *
 * The Lua layer (lua/isle/process.lua, and lua/isle/container/plan.lua
 * through it) validates what the user asked for and hands core.spawn a
 * normalised table. Here the parent turns that table into a plain C plan
 * (spawn_plan.c, which also names the child's phases in messages), clones, writes the id maps while the child waits, and learns the fate of
 * the child over a close-on-exec status pipe: EOF means exec succeeded, a
 * {step, index, errno} message means a step failed (the child has then
 * _exited; the parent reaps it and names the step by its label).
 *
 * The child runs only C (spawn_child.c; bubblewrap's setup_newroot is the
 * model): the namespaces, then the plan's STEPS (mount, umount, mkdir,
 * mkfile, symlink, setattr, pivot, chdir, lo_up, write_fd, pty: each with
 * a label and an `optional` flag), the seccomp program, the init
 * (spawn_init.c), then the final phase and exec. No Lua runs in the child
 * except the body of fn mode.
 *
 * A child that must fork to be in its pid namespace (joined, or made after
 * a join) hands off: the fork is the caller's child (CLONE_PARENT), its pid
 * comes on the status pipe, and the Process follows it (the first child's
 * end is reaped here). A container's stdio that it could reopen writable
 * through /proc/self/fd (a regular file, a block device) goes through a
 * pipe and a relay process (tty.c), which the Process waits for too. */
#include "spawn.h"

#include <sys/stat.h>
#include <sys/wait.h>

static int fail_spawn(lua_State *L, const struct isle_plan *pl, int err,
                      const char *what)
{
  return isle_pusherrno(L, err, "%s: %s", pl->prefix, what);
}

/* fail_spawn for a call an older kernel lacks: the message names the
 * feature and the release it needs there. */
static int fail_spawn_since(lua_State *L, const struct isle_plan *pl, int err,
                            enum isle_feature since, const char *what)
{
  return isle_pushkerrno(L, err, since, "%s: %s", pl->prefix, what);
}

/* --- the parent side: clone and watch ------------------------------------ */

/* The descriptor of a stdio value: a Lua file or an fd number. */
static int fileno_of(lua_State *L, int idx)
{
  luaL_Stream *s = luaL_testudata(L, idx, LUA_FILEHANDLE);
  if (s) {
    if (!s->closef) luaL_error(L, "attempt to use a closed file");
    return fileno(s->f);
  }
  lua_Integer fd = lua_tointeger(L, idx);
  if (fd < 0 || fd > INT32_MAX) luaL_error(L, "spawn: bad descriptor");
  return (int)fd;
}

/* The stdio of a spawn: the parent's ends of "pipe" stdio (to become Lua
 * files), the child's ends, and for a container the relay's ends and the
 * caller's descriptors behind them. */
struct stdio_ends {
  int *child[3], *parent[3], *relay[3];
  int caller[3]; /* the relay copies to/from it, or -1 */
};

/* A container's stdio that it could reopen writable through
 * /proc/self/fd/N (a regular file, a block device) goes through a pipe;
 * a directory is refused (CVE-2024-21626's primitive). 0 or pushes 3. */
static int guard_stdio(lua_State *L, struct isle_plan *pl, struct stdio_ends *e,
                       int i, int fd)
{
  static const char *const stdnames[] = {"stdin", "stdout", "stderr"};
  struct stat st;
  if (fstat(fd, &st) < 0) return 0; /* not open: nothing to reopen */
  if (S_ISDIR(st.st_mode))
    return fail_spawn(L, pl, EISDIR, lua_pushfstring(L, "%s", stdnames[i]));
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) return 0;
  struct stat out;
  if (i == 2 && e->caller[1] >= 0 && fstat(e->caller[1], &out) == 0 &&
      out.st_dev == st.st_dev && out.st_ino == st.st_ino) {
    /* stderr to stdout's file (a detached container's log): the same pipe,
     * as 2>&1, so that the lines keep the order they were written in */
    pl->stdio[2] = *e->child[1];
    return 0;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return fail_spawn(L, pl, errno, "pipe");
  *e->child[i] = i == 0 ? fds[0] : fds[1];
  *e->relay[i] = i == 0 ? fds[1] : fds[0];
  pl->stdio[i] = *e->child[i];
  e->caller[i] = fd;
  return 0;
}

/* Fill e and pl->stdio from the spec's stdin, stdout, stderr. Returns 0 or
 * pushes the fail triple and returns 3. [-0, +(10|13), m] */
static int open_stdio(lua_State *L, struct isle_plan *pl, struct stdio_ends *e)
{
  static const char *const stdnames[] = {"stdin", "stdout", "stderr"};
  int *devnull = isle_newfd(L);
  lua_toclose(L, -1);
  for (int i = 0; i < 3; i++) {
    pl->stdio[i] = e->caller[i] = -1;
    int **slots[] = {&e->child[i], &e->parent[i], &e->relay[i]};
    for (int k = 0; k < 3; k++) {
      *slots[k] = isle_newfd(L);
      lua_toclose(L, -1);
    }
  }
  for (int i = 0; i < 3; i++) {
    int t = lua_getfield(L, 1, stdnames[i]), fd = i;
    if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "pipe") == 0) {
      int fds[2];
      lua_pop(L, 1);
      if (pipe2(fds, O_CLOEXEC) < 0) return fail_spawn(L, pl, errno, "pipe");
      *e->child[i] = i == 0 ? fds[0] : fds[1];
      *e->parent[i] = i == 0 ? fds[1] : fds[0];
      pl->stdio[i] = *e->child[i];
      continue;
    }
    if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "null") == 0) {
      lua_pop(L, 1);
      if (*devnull < 0 &&
          (*devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
        return fail_spawn(L, pl, errno, "open /dev/null");
      pl->stdio[i] = *devnull;
      continue;
    }
    if (t == LUA_TNUMBER || t == LUA_TUSERDATA)
      pl->stdio[i] = fd = fileno_of(L, -1);
    lua_pop(L, 1);
    if (pl->harden && guard_stdio(L, pl, e, i, fd)) return 3;
  }
  return 0;
}

/* Where this process's brk heap starts (field 47 of /proc/self/stat),
 * read once and kept in the registry; 0 when unknown. */
static uintptr_t heap_start(lua_State *L)
{
  static const char key[] = "isle.heap_start";
  if (lua_getfield(L, LUA_REGISTRYINDEX, key) == LUA_TNUMBER) {
    uintptr_t v = (uintptr_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
  }
  lua_pop(L, 1);
  char buf[2048];
  uintptr_t v = 0;
  ssize_t n = isle_readfile("/proc/self/stat", buf, sizeof buf);
  char *t = n > 0 ? strrchr(buf, ')') : NULL; /* the name may hold spaces */
  if (t) t++;
  for (int field = 2; t && *t && field < 47;) {
    while (*t == ' ')
      t++;
    field++;
    char *end;
    unsigned long long x = strtoull(t, &end, 10);
    if (field == 47) v = (uintptr_t)x;
    t = end;
    while (*t && *t != ' ') /* the state letter, field 3 */
      t++;
  }
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, LUA_REGISTRYINDEX, key);
  return v;
}

/* Start the relay of the guarded stdio (if any) for the running child p. 0,
 * or kills and reaps p and pushes 3. */
static int start_relay(lua_State *L, const struct isle_plan *pl,
                       struct isle_proc *p, const struct stdio_ends *e)
{
  int from[3], to[3], any = 0;
  for (int i = 0; i < 3; i++) {
    from[i] = to[i] = -1;
    if (e->caller[i] < 0) continue;
    any = 1;
    from[i] = i == 0 ? e->caller[i] : *e->relay[i];
    to[i] = i == 0 ? *e->relay[i] : e->caller[i];
  }
  if (!any) return 0;
  /* the relay uses only its stack and descriptors: the Lua heap is left
   * out of it, so that the caller's writes to the heap while the container
   * runs are not copy-on-write faults (one page copy each) */
  struct isle_arena heap = {NULL, 0, NULL, 0};
  isle_arena_dontfork(&heap, heap_start(L));
  pid_t pid;
  p->relay = isle_stdio_relay(from, to, &pid);
  int err = errno;
  isle_arena_dofork(&heap);
  if (p->relay < 0) {
    isle_kill_and_reap(p);
    return fail_spawn(L, pl, err, "stdio relay");
  }
  return 0;
}

/* Enter a new time namespace for the next child (offsets written while no
 * process is in it); *saved keeps the caller's. 0 or pushes 3. */
static int enter_time(lua_State *L, const struct isle_plan *pl, int *saved)
{
  *saved = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
  if (*saved < 0)
    return fail_spawn_since(
        L, pl, errno, ISLE_TIMENS, "open /proc/self/ns/time_for_children");
  if (unshare(CLONE_NEWTIME) < 0)
    return fail_spawn_since(L, pl, errno, ISLE_TIMENS, "unshare time");
  if (pl->time_offsets && isle_writefile("/proc/self/timens_offsets",
                                         pl->time_offsets,
                                         strlen(pl->time_offsets)) < 0) {
    int e = errno;
    if (setns(*saved, CLONE_NEWTIME) < 0)
      return fail_spawn(L, pl, errno, "restore time namespace");
    return fail_spawn(L, pl, e, "timens_offsets");
  }
  return 0;
}

static long clone_child(const struct isle_plan *pl, int *pidfd)
{
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = (uint64_t)pl->clone_flags | CLONE_PIDFD;
  ca.pidfd = (uint64_t)(uintptr_t)pidfd;
  ca.exit_signal = SIGCHLD;
  long pid = isle_clone3(&ca, sizeof ca);
  if (pid < 0 && errno == ENOSYS)
    pid = syscall(SYS_clone,
                  (unsigned long)pl->clone_flags | CLONE_PIDFD | SIGCHLD,
                  0,
                  pidfd,
                  0,
                  0);
  return pid;
}

/* The child handed off to pid (its fork, our child too): reap the first,
 * follow the second. 0, or kills and reaps what lives and pushes 3. */
static int handoff(lua_State *L, const struct isle_plan *pl,
                   struct isle_proc *p, pid_t pid)
{
  (void)isle_reap(p, 0); /* it exits right after saying so */
  isle_close(isle_steal_fd(&p->pidfd));
  p->pid = pid;
  p->reaped = 0;
  p->pidfd = isle_pidfd_open(pid, 0);
  if (p->pidfd >= 0) return 0;
  int e = errno;
  kill(pid, SIGKILL); /* our unreaped child: the pid cannot be reused */
  (void)waitpid(pid, NULL, 0);
  return fail_spawn_since(L, pl, e, ISLE_PIDFD, "pidfd_open");
}

/* Read the child's reports until EOF (exec'd, or fn started): write its
 * maps when it asks. 0, or kills and reaps it and pushes 3. */
static int watch(lua_State *L, const struct isle_plan *pl, struct isle_proc *p,
                 int status_r, int *release_w)
{
  for (;;) {
    struct isle_msg m;
    ssize_t n = isle_read_retry(status_r, &m, sizeof m);
    if (n == 0) return 0;
    if (n != (ssize_t)sizeof m) {
      int e = n < 0 ? errno : EPROTO;
      isle_kill_and_reap(p);
      return fail_spawn(L, pl, e, "status pipe");
    }
    if (m.type == MSG_READY) {
      char why[768];
      if (isle_spawn_write_maps(L, p->pid, why, sizeof why) < 0) {
        int e = errno;
        isle_kill_and_reap(p);
        return fail_spawn(L, pl, e, lua_pushstring(L, why));
      }
      if (isle_write_all(*release_w, "1", 1) < 0) {
        int e = errno;
        isle_kill_and_reap(p);
        return fail_spawn(L, pl, e, "release");
      }
      isle_close(isle_steal_fd(release_w));
      continue;
    }
    if (m.type == MSG_PID && handoff(L, pl, p, m.index)) return 3;
    if (m.type == MSG_PID) continue;
    isle_kill_and_reap(p);
    return fail_spawn_since(L,
                            pl,
                            m.err,
                            isle_spawn_stepsince(pl, &m),
                            isle_spawn_stepname(L, pl, &m));
  }
}

/* The descriptors of the parent's side of a spawn, boxed on the stack. */
struct sync {
  int *status_r, *status_w;   /* child -> parent: reports, EOF at exec */
  int *release_r, *release_w; /* parent -> child: maps written */
  int *procfd;                /* /proc, for setattr's fallback */
  int *savedtime;             /* the caller's time namespace */
};

static int *tbcfd(lua_State *L)
{
  int *fd = isle_newfd(L);
  lua_toclose(L, -1);
  return fd;
}

/* The sync pipes and /proc as it is now (for setattr's fallback on kernels
 * before 5.12); 0 or pushes 3. [-0, +(6|9), m] */
static int open_sync(lua_State *L, struct isle_plan *pl, struct sync *s)
{
  int fds[2];
  s->status_r = tbcfd(L);
  s->status_w = tbcfd(L);
  s->release_r = tbcfd(L);
  s->release_w = tbcfd(L);
  s->procfd = tbcfd(L);
  s->savedtime = tbcfd(L);
  if (pipe2(fds, O_CLOEXEC) < 0) return fail_spawn(L, pl, errno, "pipe");
  *s->status_r = fds[0];
  *s->status_w = fds[1];
  if (pl->userns) {
    if (pipe2(fds, O_CLOEXEC) < 0) return fail_spawn(L, pl, errno, "pipe");
    *s->release_r = fds[0];
    *s->release_w = fds[1];
  }
  pl->status_w = *s->status_w;
  pl->release_r = *s->release_r;
  for (int i = 0; i < pl->nsteps && *s->procfd < 0; i++)
    if (pl->steps[i].op == OP_SETATTR)
      *s->procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
  pl->procfd = *s->procfd;
  return 0;
}

/* Clone the child and watch it until it exec'd, then start the relay.
 * Until the child let go of the caller's memory (the EOF watch waits for),
 * the caller writes only its stack: each page of the Lua heap it wrote now
 * would be copied for the child's sake (see shrink in spawn_init.c). So
 * the child is followed in `child`, the boxes of the descriptors closed
 * here are emptied after watch, and the plan is read from its arena copy
 * with the heap out of the child (spawn_arena.c). 0, or pushes 3. */
static int start(lua_State *L, struct isle_plan *pl, struct isle_proc *p,
                 const struct stdio_ends *ends, const struct sync *s)
{
  struct isle_proc child = *p;
  struct isle_arena ar = {NULL, 0, NULL, 0};
  if (!pl->fn && isle_arena_plan(pl, &ar) == 0)
    isle_arena_dontfork(&ar, heap_start(L));
  int pidfd = -1;
  long pid = clone_child(pl, &pidfd);
  int clone_errno = errno;
  if (pid == 0) isle_spawn_child(L, pl); /* never returns */
  isle_arena_dofork(&ar);
  if (pid > 0) {
    child.pid = (pid_t)pid;
    child.pidfd = pidfd;
  }
  int failed = 0;
  if (pl->parent_time && setns(*s->savedtime, CLONE_NEWTIME) < 0) {
    int e = errno;
    if (pid > 0) isle_kill_and_reap(&child);
    failed = fail_spawn(L, pl, e, "restore time namespace");
  } else if (pid < 0) {
    failed = fail_spawn_since(L, pl, clone_errno, ISLE_CLONE_PIDFD, "clone");
  } else {
    isle_close(*s->status_w);
    isle_close(*s->release_r);
    for (int i = 0; i < 3; i++)
      isle_close(*ends->child[i]);
    failed = watch(L, pl, &child, *s->status_r, s->release_w);
    *s->status_w = *s->release_r = -1;
    for (int i = 0; i < 3; i++)
      *ends->child[i] = -1;
  }
  *p = child;
  if (!failed && pid > 0) failed = start_relay(L, pl, p, ends);
  isle_arena_release(&ar); /* pl's strings (its prefix): not after this */
  return failed;
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
  struct isle_plan pl;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  isle_spawn_readplan(L, &pl); /* +5: argv, env, joins, steps, groups */
  if (lua_getfield(L, 1, "fn") == LUA_TFUNCTION)
    pl.fn = lua_gettop(L); /* stays on the stack */
  if (!pl.fn && !pl.argv) return luaL_error(L, "spawn: argv or fn required");

  struct isle_proc *p = isle_newproc(L);
  int proc_idx = lua_gettop(L);
  struct stdio_ends ends;
  struct sync s;
  if (open_stdio(L, &pl, &ends) || open_sync(L, &pl, &s)) return 3;
  /* time namespace, parent side: unshare -> offsets -> clone -> restore */
  if (pl.parent_time && enter_time(L, &pl, s.savedtime)) return 3;
  if (pl.fn) fflush(NULL);
  if (start(L, &pl, p, &ends, &s)) return 3;
  for (int i = 0; i < 3; i++) {
    if (*ends.parent[i] < 0) continue;
    isle_pushfile(L, ends.parent[i], i == 0 ? "w" : "r");
    lua_setiuservalue(L, proc_idx, i + 1);
  }
  lua_pushvalue(L, proc_idx);
  return 1;
}

/* Why core.exec cannot run plan pl in the caller, or NULL. */
static const char *not_inplace(const struct isle_plan *pl)
{
  if (pl->fn) return "fn";
  if (pl->clone_flags || pl->unshare_flags || pl->unshare_user)
    return "new namespaces";
  if (pl->parent_time || pl->child_time) return "a new time namespace";
  if (pl->handoff) return "a pid namespace";
  if (pl->init || pl->harden || pl->bpf) return "a container";
  if (pl->cgroup) return "cgroup";
  if (pl->nsteps) return "steps";
  return NULL;
}

/***
 * Run a plan in this process instead of a child, and exec: the joins,
 * hostname, stdio, cwd, user, capabilities, then exec (as `ip netns exec`
 * and `nsenter` do). For a plan that creates nothing: a mistake raises
 * for new namespaces, `steps`, `init`, `cgroup`, `fn` or a `pipe`. Returns
 * only on failure, and then the process may already be in the joined
 * namespaces, its signals reset and its descriptors close-on-exec: the
 * caller should report and exit.
 * @function exec
 * @tparam table plan as `spawn`'s
 * @return nil
 * @treturn string message "spawn: <step>: <strerror>"
 * @treturn int errno
 */
static int l_exec(lua_State *L)
{
  struct isle_plan pl;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  isle_spawn_readplan(L, &pl); /* +5 */
  lua_getfield(L, 1, "fn");
  if (lua_isfunction(L, -1)) pl.fn = lua_gettop(L);
  if (!pl.argv) return luaL_error(L, "exec: argv required");
  const char *why = not_inplace(&pl);
  if (why) return luaL_error(L, "exec: %s needs a child (spawn)", why);
  struct stdio_ends ends;
  if (open_stdio(L, &pl, &ends)) return 3;
  for (int i = 0; i < 3; i++)
    if (*ends.parent[i] >= 0)
      return luaL_error(L, "exec: a pipe needs a child (spawn)");
  struct isle_inplace in;
  pl.inplace = &in;
  fflush(NULL);
  if (setjmp(in.back) == 0) isle_exec_inplace(L, &pl); /* never returns */
  return fail_spawn_since(L,
                          &pl,
                          in.msg.err,
                          isle_spawn_stepsince(&pl, &in.msg),
                          isle_spawn_stepname(L, &pl, &in.msg));
}

void isle_open_spawn(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"spawn", l_spawn},
      {"exec", l_exec},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
