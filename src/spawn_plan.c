/* The parent side of the spawn engine (see spawn.c): the plan read from
 * the table the Lua layer normalised, the names of the child's phases in
 * failure messages, and the id maps the parent writes for the child. */
#include "spawn.h"

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
  if (lua_getfield(L, spec, "caps") == LUA_TNUMBER) {
    pl->set_caps = 1;
    pl->caps = (uint64_t)lua_tointeger(L, -1);
    pl->ambient = (uint64_t)intfield(L, spec, "ambient", (lua_Integer)pl->caps);
  }
  lua_pop(L, 1);
  /* the kernel's last capability: the caller's (a container's plan knows
   * it), else read when capabilities are set (always by the init of a
   * hardened plan) */
  pl->last_cap = (int)intfield(L, spec, "last_cap", -1);
  char buf[32];
  if (pl->last_cap < 0 && (pl->set_caps || pl->harden)) {
    pl->last_cap = 40;
    if (isle_readfile("/proc/sys/kernel/cap_last_cap", buf, sizeof buf) > 0)
      pl->last_cap = atoi(buf);
  }
  if (pl->last_cap > 63) pl->last_cap = 63;
}

/* The plan of the spec at index 1; leaves its arrays on the stack (they
 * live until l_spawn returns). [-0, +5, v] */
void isle_spawn_readplan(lua_State *L, struct isle_plan *pl)
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

/* The label of the failing phase m. [-0, +(0|1), m] */
const char *isle_spawn_stepname(lua_State *L, const struct isle_plan *pl,
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

/* The kernel feature a failing phase of the child depends on, or NULL. */
enum isle_feature isle_spawn_stepsince(const struct isle_plan *pl,
                                       const struct isle_msg *m)
{
  if (m->step == STEP_TIMENS ||
      (m->step == STEP_UNSHARE && (pl->unshare_flags & CLONE_NEWTIME)))
    return ISLE_TIMENS;
  if (m->step == STEP_CWD && pl->harden) return ISLE_OPENAT2;
  return ISLE_NO_FEATURE;
}

/* Write the id maps of the child's new user ns; -1/errno and why set. */
int isle_spawn_write_maps(lua_State *L, pid_t pid, char *why, size_t size)
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
