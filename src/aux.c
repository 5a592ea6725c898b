/* The auxiliary library of isle.core (as lauxlib is Lua's): the error
 * pusher, argument and field checkers, the namespace kinds table, the fd box
 * (isle.Fd with :close and :fd), EINTR-safe I/O, Lua files over descriptors,
 * class registration. */
#include "isle.h"

#include <sys/utsname.h>

const struct isle_kind isle_kinds[] = {
    {"cgroup", CLONE_NEWCGROUP},
    {"ipc", CLONE_NEWIPC},
    {"mnt", CLONE_NEWNS},
    {"net", CLONE_NEWNET},
    {"pid", CLONE_NEWPID},
    {"time", CLONE_NEWTIME},
    {"user", CLONE_NEWUSER},
    {"uts", CLONE_NEWUTS},
    {NULL, 0},
};

int isle_pusherrno(lua_State *L, int err, const char *fmt, ...)
{
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", buf, strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

/* Whether the running kernel is older than major.minor; its release in
 * rel. */
static int kernel_before(int major, int minor, char *rel, size_t size)
{
  struct utsname u;
  int a = 0, b = 0;
  if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &a, &b) < 2) return 0;
  snprintf(rel, size, "%s", u.release);
  return a < major || (a == major && b < minor);
}

/* The release that brought each feature, by enum isle_feature. */
static const struct {
  const char *name;
  int major, minor;
} features[] = {
    [ISLE_NO_FEATURE] = {NULL, 0, 0},
    [ISLE_MOUNT_API] = {"open_tree and move_mount", 5, 2},
    [ISLE_CLONE_PIDFD] = {"clone with CLONE_PIDFD", 5, 2},
    [ISLE_PIDFD] = {"pidfd_open", 5, 3},
    [ISLE_WAITID_PIDFD] = {"waitid P_PIDFD", 5, 4},
    [ISLE_TIMENS] = {"time namespaces", 5, 6},
    [ISLE_OPENAT2] = {"openat2", 5, 6},
    [ISLE_SETNS_PIDFD] = {"setns through a pidfd", 5, 8},
};

int isle_pushkerrno(lua_State *L, int err, enum isle_feature since,
                    const char *fmt, ...)
{
  char buf[512], rel[sizeof((struct utsname *)0)->release];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  luaL_pushfail(L);
  if (since > ISLE_NO_FEATURE &&
      (size_t)since < sizeof features / sizeof features[0] &&
      (err == ENOSYS || err == EINVAL || err == ENOENT || err == EOPNOTSUPP) &&
      kernel_before(
          features[since].major, features[since].minor, rel, sizeof rel))
    lua_pushfstring(L,
                    "%s: %s (%s: needs Linux %d.%d or later, this is %s)",
                    buf,
                    strerror(err),
                    features[since].name,
                    features[since].major,
                    features[since].minor,
                    rel);
  else
    lua_pushfstring(L, "%s: %s", buf, strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

int isle_kindflag(const char *name)
{
  if (strcmp(name, "mount") == 0) return CLONE_NEWNS;
  for (const struct isle_kind *k = isle_kinds; k->name; k++)
    if (strcmp(k->name, name) == 0) return k->flag;
  return 0;
}

const char *isle_kindname(int flag)
{
  for (const struct isle_kind *k = isle_kinds; k->name; k++)
    if (k->flag == flag) return k->name;
  return NULL;
}

static int addkind(lua_State *L, int arg, const char *name, size_t len)
{
  char buf[16];
  int flag = 0;
  if (len > 0 && len < sizeof buf) {
    memcpy(buf, name, len);
    buf[len] = '\0';
    flag = isle_kindflag(buf);
  }
  if (flag == 0) {
    lua_pushlstring(L, name, len);
    return luaL_argerror(
        L,
        arg,
        lua_pushfstring(L,
                        "unknown namespace kind '%s' (expected cgroup, ipc, "
                        "mnt, net, pid, time, user or uts)",
                        lua_tostring(L, -1)));
  }
  return flag;
}

int isle_checkkinds(lua_State *L, int idx)
{
  int flags = 0;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    const char *end = s + len;
    while (s < end) {
      const char *comma = memchr(s, ',', (size_t)(end - s));
      const char *stop = comma ? comma : end;
      const char *a = s, *b = stop;
      while (a < b && (*a == ' '))
        a++;
      while (b > a && (b[-1] == ' '))
        b--;
      flags |= addkind(L, idx, a, (size_t)(b - a));
      s = comma ? comma + 1 : end;
    }
    return flags;
  }
  if (lua_type(L, idx) != LUA_TTABLE)
    return luaL_typeerror(L, idx, "kinds (list or comma string)");
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    size_t len;
    if (lua_geti(L, idx, i) != LUA_TSTRING)
      return luaL_argerror(L, idx, "kinds must be strings");
    const char *s = lua_tolstring(L, -1, &len);
    flags |= addkind(L, idx, s, len);
    lua_pop(L, 1);
  }
  return flags;
}

void isle_checkfields(lua_State *L, int idx, const char *const fields[])
{
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int ok = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      for (const char *const *f = fields; *f; f++)
        if (strcmp(*f, k) == 0) ok = 1;
    }
    if (!ok) {
      lua_pop(L, 1);
      luaL_argerror(L,
                    idx,
                    lua_pushfstring(
                        L, "unknown option '%s'", luaL_tolstring(L, -1, NULL)));
    }
    lua_pop(L, 1);
  }
}

static int fd_gc(lua_State *L)
{
  int *fd = luaL_checkudata(L, 1, ISLE_FD_T);
  isle_close(isle_steal_fd(fd));
  return 0;
}

/***
 * Close a descriptor box (idempotent).
 * @function Fd:close
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int fd_close(lua_State *L)
{
  int *box = luaL_checkudata(L, 1, ISLE_FD_T);
  int fd = isle_steal_fd(box);
  if (fd >= 0 && close(fd) < 0) return isle_pusherrno(L, errno, "close");
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * The descriptor number of an open box.
 * @function Fd:fd
 * @treturn int
 * @raise on a closed box
 */
static int fd_fd(lua_State *L)
{
  int *box = luaL_checkudata(L, 1, ISLE_FD_T);
  if (*box < 0) return luaL_error(L, "attempt to use a closed isle.Fd");
  lua_pushinteger(L, *box);
  return 1;
}

static int fd_tostring(lua_State *L)
{
  int *box = luaL_checkudata(L, 1, ISLE_FD_T);
  if (*box < 0)
    lua_pushliteral(L, "isle.Fd (closed)");
  else
    lua_pushfstring(L, "isle.Fd (%d)", *box);
  return 1;
}

int *isle_checkfdbox(lua_State *L, int idx)
{
  int *fd = luaL_checkudata(L, idx, ISLE_FD_T);
  if (*fd < 0) luaL_argerror(L, idx, "closed descriptor");
  return fd;
}

int *isle_newfd(lua_State *L)
{
  int *fd = lua_newuserdatauv(L, sizeof *fd, 0);
  *fd = -1;
  luaL_setmetatable(L, ISLE_FD_T);
  return fd;
}

int isle_steal_fd(int *fd)
{
  int r = *fd;
  *fd = -1;
  return r;
}

void isle_close(int fd)
{
  if (fd >= 0) {
    int saved = errno;
    close(fd);
    errno = saved;
  }
}

int isle_write_all(int fd, const void *buf, size_t len)
{
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

ssize_t isle_read_retry(int fd, void *buf, size_t len)
{
  ssize_t n;
  do
    n = read(fd, buf, len);
  while (n < 0 && errno == EINTR);
  return n;
}

/* "/proc/PID" or "/proc/self" for the pid argument at arg (an integer > 0,
 * a Process, or "self"; nil too when nil_is_self) into buf; *pid gets the
 * number (getpid() for "self"). [-0, +0, v] */
const char *isle_checkprocdir(lua_State *L, int arg, int nil_is_self, char *buf,
                              size_t size, pid_t *pid)
{
  int t = lua_type(L, arg);
  if ((t == LUA_TSTRING && strcmp(lua_tostring(L, arg), "self") == 0) ||
      (nil_is_self && t <= LUA_TNIL)) {
    snprintf(buf, size, "/proc/self");
    *pid = getpid();
    return buf;
  }
  if (t == LUA_TNUMBER) {
    *pid = (pid_t)isle_checkrange(L, arg, 1, INT_MAX);
  } else {
    int mt = luaL_getmetafield(L, arg, "__name");
    int isproc =
        mt == LUA_TSTRING && strcmp(lua_tostring(L, -1), ISLE_PROC_T) == 0;
    if (mt != LUA_TNIL) lua_pop(L, 1);
    if (!isproc) luaL_typeerror(L, arg, "pid, " ISLE_PROC_T " or \"self\"");
    int isint;
    lua_getfield(L, arg, "pid");
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    lua_pop(L, 1);
    luaL_argcheck(L, isint && v > 0 && v <= INT_MAX, arg, "bad Process pid");
    *pid = (pid_t)v;
  }
  snprintf(buf, size, "/proc/%d", (int)*pid);
  return buf;
}

static int io_fclose(lua_State *L)
{
  luaL_Stream *p = luaL_checkudata(L, 1, LUA_FILEHANDLE);
  int res = fclose(p->f);
  return luaL_fileresult(L, (res == 0), NULL);
}

void isle_pushfile(lua_State *L, int *slot, const char *mode)
{
  luaL_Stream *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->closef = NULL;
  s->f = NULL;
  luaL_setmetatable(L, LUA_FILEHANDLE);
  s->f = fdopen(*slot, mode);
  if (!s->f) luaL_error(L, "fdopen: %s", strerror(errno));
  *slot = -1;
  s->closef = io_fclose;
}

lua_Integer isle_checkrange(lua_State *L, int arg, lua_Integer lo,
                            lua_Integer hi)
{
  lua_Integer v = luaL_checkinteger(L, arg);
  if (v < lo || v > hi)
    luaL_argerror(L, arg, lua_pushfstring(L, "out of range [%I, %I]", lo, hi));
  return v;
}

void isle_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                   const luaL_Reg *metamethods)
{
  luaL_newmetatable(L, tname);
  if (metamethods) luaL_setfuncs(L, metamethods, 0);
  if (methods) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

/***
 * CLONE_NEW* flags of a kinds argument (list or comma string).
 * @function kinds
 * @tparam table|string kinds
 * @treturn int flags
 * @raise on an unknown kind
 */
static int l_kinds(lua_State *L)
{
  lua_pushinteger(L, isle_checkkinds(L, 1));
  return 1;
}

void isle_open_aux(lua_State *L)
{
  static const luaL_Reg fdmeta[] = {
      {"__gc", fd_gc},
      {"__close", fd_gc},
      {"__tostring", fd_tostring},
      {NULL, NULL},
  };
  static const luaL_Reg fdmethods[] = {
      {"close", fd_close},
      {"fd", fd_fd},
      {NULL, NULL},
  };
  static const luaL_Reg funcs[] = {
      {"kinds", l_kinds},
      {NULL, NULL},
  };
  isle_newclass(L, ISLE_FD_T, fdmethods, fdmeta);
  luaL_setfuncs(L, funcs, 0);
  /* kind name -> CLONE_NEW* flag, for the Lua modules */
  lua_newtable(L);
  for (const struct isle_kind *k = isle_kinds; k->name; k++) {
    lua_pushinteger(L, k->flag);
    lua_setfield(L, -2, k->name);
  }
  lua_setfield(L, -2, "KINDS");
}
