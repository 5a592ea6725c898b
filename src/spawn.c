/* The spawn engine: one plan, one clone, one child step runner.
 *
 * The Lua layer (lua/isle/process.lua, and lua/isle/container/plan.lua
 * through it) validates what the user asked for and hands core.spawn a
 * normalised table. Here the parent turns that table into a plain C plan,
 * clones, writes the id maps while the child waits, and learns the fate of
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

static const char *const opnames[] = {
    "mount",
    "umount",
    "mkdir",
    "mkfile",
    "symlink",
    "setattr",
    "pivot",
    "chdir",
    "lo_up",
    "write_fd",
    "pty",
    NULL,
};

/* --- the parent side: reading the plan ----------------------------------- */

/* Field helpers for the normalised spec table at idx; a string stays alive
 * because the spec table holds it. */
static const char *optstrfield(lua_State *L, int idx, const char *k,
                               size_t *len)
{
  const char *s = NULL;
  if (lua_getfield(L, idx, k) == LUA_TSTRING) s = lua_tolstring(L, -1, len);
  lua_pop(L, 1);
  return s;
}

static const char *strfield(lua_State *L, int idx, const char *k)
{
  return optstrfield(L, idx, k, NULL);
}

static lua_Integer intfield(lua_State *L, int idx, const char *k, lua_Integer d)
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
 * userdata left on the stack (nil and NULL when absent). [-0, +1, m] */
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

/* One entry of the steps list, the table on top of the stack; raises for an
 * unknown op (the Lua layer checks the rest). [-0, +0, v] */
static void readstep(lua_State *L, struct isle_step *s, int i)
{
  const char *op = strfield(L, -1, "op");
  s->op = -1;
  for (int k = 0; op && opnames[k]; k++)
    if (strcmp(op, opnames[k]) == 0) s->op = k;
  if (s->op < 0) luaL_error(L, "spawn: steps[%d]: unknown op", i + 1);
  s->what = strfield(L, -1, "what");
  if (!s->what) s->what = op;
  s->optional = boolfield(L, -1, "optional");
  s->source = strfield(L, -1, "source");
  s->target = strfield(L, -1, "target");
  s->fstype = strfield(L, -1, "fstype");
  s->data = optstrfield(L, -1, "data", &s->len);
  s->path = strfield(L, -1, "path");
  s->put_old = strfield(L, -1, "put_old");
  s->flags = (unsigned long)intfield(L, -1, "flags", 0);
  s->mode = (unsigned)intfield(L, -1, "mode", 0755);
  s->attr = (unsigned)intfield(L, -1, "attr", MOUNT_ATTR_RDONLY);
  s->fd = (int)intfield(L, -1, "fd", -1);
  s->rows = (unsigned short)intfield(L, -1, "rows", 0);
  s->cols = (unsigned short)intfield(L, -1, "cols", 0);
}

/* The list field k as an array of n elements of size sz in a userdata left
 * on the stack; calls each(L, elem, i) with the entry on top. */
static void *readlist(lua_State *L, int idx, const char *k, size_t sz, int *n,
                      void (*each)(lua_State *, void *, int))
{
  *n = 0;
  if (lua_getfield(L, idx, k) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return NULL;
  }
  *n = (int)luaL_len(L, -1);
  char *v = lua_newuserdatauv(L, sz * (size_t)*n + 1, 0);
  for (int i = 0; i < *n; i++) {
    lua_geti(L, -2, i + 1);
    each(L, v + sz * (size_t)i, i);
    lua_pop(L, 1);
  }
  lua_remove(L, -2);
  return v;
}

static void eachstep(lua_State *L, void *elem, int i)
{
  readstep(L, elem, i);
}

static void eachjoin(lua_State *L, void *elem, int i)
{
  struct isle_join *j = elem;
  (void)i;
  j->fd = (int)intfield(L, -1, "fd", -1);
  j->nstype = (int)intfield(L, -1, "nstype", 0);
  j->label = strfield(L, -1, "label");
  if (!j->label) j->label = "?";
}

/* The list of integers of field k as gid_t[] in a userdata left on the
 * stack (nil when absent). [-0, +1, m] */
static gid_t *gidlist(lua_State *L, int idx, const char *k, int *n)
{
  *n = 0;
  if (lua_getfield(L, idx, k) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return NULL;
  }
  *n = (int)luaL_len(L, -1);
  gid_t *v = lua_newuserdatauv(L, sizeof(gid_t) * (size_t)*n + 1, 0);
  for (int i = 0; i < *n; i++) {
    lua_geti(L, -2, i + 1);
    v[i] = (gid_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_remove(L, -2);
  return v;
}

/* The user, capabilities and seccomp program of the plan. */
static void readcreds(lua_State *L, int spec, struct isle_plan *pl)
{
  pl->uid0 = boolfield(L, spec, "uid0");
  pl->gid0 = boolfield(L, spec, "gid0");
  pl->set_uid = intfield(L, spec, "uid", -1) >= 0;
  pl->uid = (uid_t)intfield(L, spec, "uid", 0);
  pl->set_gid = intfield(L, spec, "gid", -1) >= 0;
  pl->gid = (gid_t)intfield(L, spec, "gid", 0);
  pl->bpf = optstrfield(L, spec, "seccomp", &pl->bpf_len);
  pl->arg_start = (uintptr_t)intfield(L, spec, "arg_start", 0);
  pl->arg_end = (uintptr_t)intfield(L, spec, "arg_end", 0);
  pl->env_start = (uintptr_t)intfield(L, spec, "env_start", 0);
  pl->env_end = (uintptr_t)intfield(L, spec, "env_end", 0);
  pl->last_cap = 40;
  char buf[32];
  if (isle_readfile("/proc/sys/kernel/cap_last_cap", buf, sizeof buf) > 0)
    pl->last_cap = atoi(buf);
  if (pl->last_cap > 63) pl->last_cap = 63;
  if (lua_getfield(L, spec, "caps") == LUA_TNUMBER) {
    pl->set_caps = 1;
    pl->caps = (uint64_t)lua_tointeger(L, -1);
    pl->ambient = (uint64_t)intfield(L, spec, "ambient", (lua_Integer)pl->caps);
  }
  lua_pop(L, 1);
}

/* The plan of the spec at index 1; leaves its arrays on the stack (they
 * live until l_spawn returns). [-0, +5, v] */
static void readplan(lua_State *L, struct isle_plan *pl)
{
  const int spec = 1;
  memset(pl, 0, sizeof *pl);
  pl->prefix = strfield(L, spec, "prefix");
  if (!pl->prefix) pl->prefix = "spawn";
  pl->ppid = getpid();
  pl->clone_flags = (int)intfield(L, spec, "clone_flags", 0);
  pl->unshare_flags = (int)intfield(L, spec, "unshare_flags", 0);
  pl->unshare_user = boolfield(L, spec, "unshare_user");
  pl->userns = (pl->clone_flags & CLONE_NEWUSER) || pl->unshare_user;
  pl->time_offsets = strfield(L, spec, "time_offsets");
  int want_time = boolfield(L, spec, "time");
  pl->child_time = want_time && pl->userns;
  pl->parent_time = want_time && !pl->userns;
  pl->handoff = boolfield(L, spec, "handoff");
  pl->init = boolfield(L, spec, "init");
  pl->harden = boolfield(L, spec, "harden");
  pl->procfd = -1;
  pl->cgroup = strfield(L, spec, "cgroup");
  pl->hostname = strfield(L, spec, "hostname");
  pl->domainname = strfield(L, spec, "domainname");
  pl->cwd = strfield(L, spec, "cwd");
  pl->no_new_privs = boolfield(L, spec, "no_new_privs");
  pl->status_w = pl->release_r = -1;
  pl->argv = strlist(L, spec, "argv");
  pl->envp = strlist(L, spec, "env");
  pl->joins =
      readlist(L, spec, "joins", sizeof *pl->joins, &pl->njoins, eachjoin);
  pl->steps =
      readlist(L, spec, "steps", sizeof *pl->steps, &pl->nsteps, eachstep);
  pl->groups = gidlist(L, spec, "groups", &pl->ngroups);
  pl->set_groups = pl->groups != NULL;
  readcreds(L, spec, pl);
}

/* --- the parent side: failure reports ------------------------------------ */

/* The label of the failing phase m. [-0, +(0|1), m] */
static const char *stepname(lua_State *L, const struct isle_plan *pl,
                            const struct isle_msg *m)
{
  static const char *const timens[] = {
      "unshare time", "timens_offsets", "setns time"};
  switch (m->step) {
  case STEP_PDEATHSIG:
    return "prctl PR_SET_PDEATHSIG";
  case STEP_SETNS:
    if (m->index >= 0 && m->index < pl->njoins)
      return lua_pushfstring(L, "setns %s", pl->joins[m->index].label);
    return "setns";
  case STEP_UNSHARE_USER:
    return "unshare user";
  case STEP_USERSYNC:
    return "sync";
  case STEP_CGROUP:
    return lua_pushfstring(L, "cgroup %s", pl->cgroup);
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
    return timens[m->index >= 0 && m->index < 3 ? m->index : 0];
  case STEP_FORK:
    return "fork";
  case STEP_HOSTNAME:
    return lua_pushfstring(L, "sethostname %s", pl->hostname);
  case STEP_DOMAINNAME:
    return lua_pushfstring(L, "setdomainname %s", pl->domainname);
  case STEP_STDIO:
    return lua_pushfstring(L, "stdio %d", m->index);
  case STEP_STEP:
    if (m->index >= 0 && m->index < pl->nsteps) return pl->steps[m->index].what;
    return "step";
  case STEP_CWD:
    if (m->index == 1)
      return lua_pushfstring(L, "chdir %s (outside the root)", pl->cwd);
    return lua_pushfstring(L, "chdir %s", pl->cwd);
  case STEP_CTTY:
    return "controlling terminal";
  case STEP_CAPS:
    return "capabilities";
  case STEP_NNP:
    return "no_new_privs";
  case STEP_EXEC:
    if (m->index == 1) return "close descriptors";
    return lua_pushfstring(L, "exec %s", pl->fn ? "fn" : pl->argv[0]);
  case STEP_IDS:
    return m->index ? "setresgid 0" : "setresuid 0";
  case STEP_DUMPABLE:
    return "prctl PR_SET_DUMPABLE";
  case STEP_HANDOFF:
    return "fork into the pid namespace";
  case STEP_SECCOMP:
    return "seccomp";
  case STEP_SETSID:
    return "setsid";
  case STEP_USER:
    if (m->index == 2) return lua_pushfstring(L, "setresgid %d", (int)pl->gid);
    if (m->index == 3) return lua_pushfstring(L, "setresuid %d", (int)pl->uid);
    return m->index ? "setgroups" : "prctl PR_SET_KEEPCAPS";
  }
  return "?";
}

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

/* The kernel feature a failing phase of the child depends on, or NULL. */
static enum isle_feature stepsince(const struct isle_plan *pl,
                                   const struct isle_msg *m)
{
  if (m->step == STEP_TIMENS ||
      (m->step == STEP_UNSHARE && (pl->unshare_flags & CLONE_NEWTIME)))
    return ISLE_TIMENS;
  if (m->step == STEP_CWD && pl->harden) return ISLE_OPENAT2;
  return ISLE_NO_FEATURE;
}

/* Write the id maps of the child's new user ns; -1/errno and why set. */
static int write_maps(lua_State *L, pid_t pid, char *why, size_t size)
{
  static const char *const which[] = {"gid", "uid"};
  char path[64];
  const char *setgroups = strfield(L, 1, "setgroups");
  int helper = boolfield(L, 1, "map_helper");
  snprintf(why, size, "maps");
  if (setgroups) {
    snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
    snprintf(why, size, "setgroups");
    if (isle_writefile(path, setgroups, strlen(setgroups)) < 0) return -1;
  }
  for (int i = 0; i < 2; i++) {
    char field[16], prog[16];
    snprintf(field, sizeof field, "%s_map", which[i]);
    const char *map = strfield(L, 1, field);
    if (!map) continue;
    if (helper) {
      char msg[640];
      snprintf(prog, sizeof prog, "new%smap", which[i]);
      if (isle_maphelper(prog, pid, map, msg, sizeof msg) < 0) {
        snprintf(why, size, "%s: %s", field, msg);
        return -1;
      }
      continue;
    }
    snprintf(why, size, "%s", field);
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, field);
    if (isle_writefile(path, map, strlen(map)) < 0) return -1;
  }
  return 0;
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
  pid_t pid;
  p->relay = isle_stdio_relay(from, to, &pid);
  if (p->relay < 0) {
    int err = errno;
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
      if (write_maps(L, p->pid, why, sizeof why) < 0) {
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
    return fail_spawn_since(
        L, pl, m.err, stepsince(pl, &m), stepname(L, pl, &m));
  }
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
  readplan(L, &pl); /* +5: argv, env, joins, steps, groups */
  if (lua_getfield(L, 1, "fn") == LUA_TFUNCTION)
    pl.fn = lua_gettop(L); /* stays on the stack */
  if (!pl.fn && !pl.argv) return luaL_error(L, "spawn: argv or fn required");

  struct isle_proc *p = isle_newproc(L);
  int proc_idx = lua_gettop(L);
  struct stdio_ends ends;
  if (open_stdio(L, &pl, &ends)) return 3;

  /* sync pipes: status (child -> parent), release (maps written) */
  int *status_r = isle_newfd(L), *status_w, *release_r, *release_w, fds[2];
  lua_toclose(L, -1);
  status_w = isle_newfd(L);
  lua_toclose(L, -1);
  release_r = isle_newfd(L);
  lua_toclose(L, -1);
  release_w = isle_newfd(L);
  lua_toclose(L, -1);
  if (pipe2(fds, O_CLOEXEC) < 0) return fail_spawn(L, &pl, errno, "pipe");
  *status_r = fds[0];
  *status_w = fds[1];
  if (pl.userns) {
    if (pipe2(fds, O_CLOEXEC) < 0) return fail_spawn(L, &pl, errno, "pipe");
    *release_r = fds[0];
    *release_w = fds[1];
  }
  pl.status_w = *status_w;
  pl.release_r = *release_r;
  /* /proc as it is now, for setattr's fallback on kernels before 5.12 */
  int *procfd = isle_newfd(L);
  lua_toclose(L, -1);
  for (int i = 0; i < pl.nsteps && *procfd < 0; i++)
    if (pl.steps[i].op == OP_SETATTR)
      *procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
  pl.procfd = *procfd;

  /* time namespace, parent side: unshare -> offsets -> clone -> restore */
  int *savedtime = isle_newfd(L);
  lua_toclose(L, -1);
  if (pl.parent_time && enter_time(L, &pl, savedtime)) return 3;

  if (pl.fn) fflush(NULL);
  int pidfd = -1;
  long pid = clone_child(&pl, &pidfd);
  int clone_errno = errno;
  if (pid == 0) isle_spawn_child(L, &pl); /* never returns */
  if (pid > 0) {
    p->pid = (pid_t)pid;
    p->pidfd = pidfd;
  }
  if (pl.parent_time && setns(*savedtime, CLONE_NEWTIME) < 0) {
    int e = errno;
    if (pid > 0) isle_kill_and_reap(p);
    return fail_spawn(L, &pl, e, "restore time namespace");
  }
  if (pid < 0)
    return fail_spawn_since(L, &pl, clone_errno, ISLE_CLONE_PIDFD, "clone");

  isle_close(isle_steal_fd(status_w));
  isle_close(isle_steal_fd(release_r));
  for (int i = 0; i < 3; i++)
    isle_close(isle_steal_fd(ends.child[i]));
  if (watch(L, &pl, p, *status_r, release_w)) return 3;
  if (start_relay(L, &pl, p, &ends)) return 3;

  for (int i = 0; i < 3; i++) {
    if (*ends.parent[i] < 0) continue;
    isle_pushfile(L, ends.parent[i], i == 0 ? "w" : "r");
    lua_setiuservalue(L, proc_idx, i + 1);
  }
  lua_pushvalue(L, proc_idx);
  return 1;
}

void isle_open_spawn(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"spawn", l_spawn},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
