/* Namespaces: unshare, setns, nsid, nsinfo, Namespace objects (open_ns) and
 * the uts names. The friendly API (targets, Processes, netns names) is in
 * lua/isle/ns.lua; these functions take pids, paths and Namespaces. */
#include "isle.h"

#include <limits.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <linux/nsfs.h>

/* longest uts name the kernel accepts (__NEW_UTS_LEN) */
#define ISLE_UTSLEN 64

/* One open namespace file. fd < 0 once closed. */
struct isle_namespace {
  int fd;
  int flag;       /* CLONE_NEW* of the namespace */
  lua_Integer id; /* its inode */
};

/* Comma list of the kind names in flags ("net,uts") into buf; returns buf. */
static const char *kindstr(int flags, char *buf, size_t size)
{
  size_t n = 0;
  buf[0] = '\0';
  for (const struct isle_kind *k = isle_kinds; k->name; k++) {
    if (!(flags & k->flag)) continue;
    int w = snprintf(buf + n, size - n, "%s%s", n ? "," : "", k->name);
    if (w < 0 || (size_t)w >= size - n) break;
    n += (size_t)w;
  }
  return buf;
}

/* Number of threads of the calling process, or -1/errno. */
static int threadcount(void)
{
  char buf[4096];
  if (isle_readfile("/proc/self/status", buf, sizeof buf) < 0) return -1;
  const char *p = strstr(buf, "\nThreads:");
  if (!p) {
    errno = EIO;
    return -1;
  }
  return (int)strtol(p + 9, NULL, 10);
}

/* Kind of an open namespace fd (its CLONE_NEW* flag), or -1/errno (ENOTTY
 * for a file that is not a namespace). */
static int nstype(int fd)
{
  return ioctl(fd, NS_GET_NSTYPE);
}

/* The Namespace at idx, raising if it is not one or is closed. */
static struct isle_namespace *checkns(lua_State *L, int idx)
{
  struct isle_namespace *ns = luaL_checkudata(L, idx, ISLE_NS_T);
  if (ns->fd < 0) luaL_error(L, "attempt to use a closed " ISLE_NS_T);
  return ns;
}

/* Optional kinds argument: 0 when absent. [-0, +0, v] */
static int optkinds(lua_State *L, int idx)
{
  return lua_isnoneornil(L, idx) ? 0 : isle_checkkinds(L, idx);
}

/* Optional single kind: 0 when absent, raises for several. [-0, +0, v] */
static int optkind(lua_State *L, int idx)
{
  int flag = optkinds(L, idx);
  luaL_argcheck(
      L, (flag & (flag - 1)) == 0, idx, "one namespace kind expected");
  return flag;
}

/***
 * Move the caller into new namespaces (unshare(2)).
 * `time` and `pid` apply to the caller's children only.
 * @function unshare
 * @tparam table|string kinds list or comma string of kinds
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("unshare net,uts: Operation not permitted")
 * @treturn[2] int errno
 * @raise on an unknown kind
 * @see unshare(2)
 * @usage assert(isle.unshare "uts,ipc")
 */
static int l_unshare(lua_State *L)
{
  int flags = isle_checkkinds(L, 1);
  char kinds[128];
  if (unshare(flags) < 0)
    return isle_pushkerrno(L,
                           errno,
                           flags & CLONE_NEWTIME ? ISLE_TIMENS
                                                 : ISLE_NO_FEATURE,
                           "unshare %s",
                           kindstr(flags, kinds, sizeof kinds));
  lua_pushboolean(L, 1);
  return 1;
}

/* The error of a setns into mnt or user from a threaded caller, or 0. */
static int threadcheck(lua_State *L, int flags, const char *what)
{
  if (!(flags & (CLONE_NEWNS | CLONE_NEWUSER))) return 0;
  int n = threadcount();
  if (n < 0) return isle_pusherrno(L, errno, "setns %s: count threads", what);
  if (n > 1)
    return isle_pusherrno(L,
                          EINVAL,
                          "setns %s: the caller has %d threads; mnt and user "
                          "need a single-threaded process",
                          what,
                          n);
  return 0;
}

/***
 * Enter existing namespaces (setns(2)).
 * With a pid the kinds are entered at once through a pidfd; with a path or
 * a Namespace the file's namespace is entered (kinds, when given, must
 * name its kind). Entering `mnt` or `user` needs a single-threaded caller.
 * @function setns
 * @tparam int|string|Namespace target pid, namespace file path or Namespace
 * @tparam[opt] table|string kinds required with a pid
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("setns /proc/4242/ns/net: No such file or directory")
 * @treturn[2] int errno
 * @raise on a bad target, an unknown kind, or a pid without kinds
 * @see setns(2)
 * @usage assert(isle.core.setns(pid, "net,uts"))
 */
static int l_setns(lua_State *L)
{
  char what[PATH_MAX + 160];
  int flags, r;
  int *fd;
  switch (lua_type(L, 1)) {
  case LUA_TNUMBER: {
    lua_Integer pid = isle_checkrange(L, 1, 1, INT_MAX);
    char kinds[128];
    flags = isle_checkkinds(L, 2);
    luaL_argcheck(L, flags != 0, 2, "kinds expected with a pid");
    snprintf(what,
             sizeof what,
             "pid %d %s",
             (int)pid,
             kindstr(flags, kinds, sizeof kinds));
    if ((r = threadcheck(L, flags, what))) return r;
    fd = isle_newfd(L);
    lua_toclose(L, -1);
    *fd = isle_pidfd_open((pid_t)pid, 0); /* always O_CLOEXEC */
    if (*fd < 0) return isle_pushkerrno(L, errno, ISLE_PIDFD, "setns %s", what);
    if (setns(*fd, flags) < 0)
      return isle_pushkerrno(L, errno, ISLE_SETNS_PIDFD, "setns %s", what);
    break;
  }
  case LUA_TSTRING: {
    const char *path = lua_tostring(L, 1);
    flags = optkind(L, 2);
    snprintf(what, sizeof what, "%s", path);
    fd = isle_newfd(L);
    lua_toclose(L, -1);
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (*fd < 0) return isle_pusherrno(L, errno, "setns %s", what);
    int type = nstype(*fd);
    if (type < 0) type = flags; /* not nsfs: let setns(2) say what it is */
    if ((r = threadcheck(L, type, what))) return r;
    if (setns(*fd, flags) < 0)
      return isle_pusherrno(L, errno, "setns %s", what);
    break;
  }
  default: {
    struct isle_namespace *ns = checkns(L, 1);
    flags = optkind(L, 2);
    snprintf(what,
             sizeof what,
             "%s:[%lld]",
             isle_kindname(ns->flag),
             (long long)ns->id);
    if ((r = threadcheck(L, ns->flag, what))) return r;
    if (setns(ns->fd, flags) < 0)
      return isle_pusherrno(L, errno, "setns %s", what);
    break;
  }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Identity of the namespace in a namespace file: its inode.
 * The file is opened and checked to be a namespace (of `kind` if given).
 * @function nsid
 * @string path e.g. "/proc/self/ns/net"
 * @tparam[opt] string kind the kind the file must be
 * @treturn[1] int the inode, the number in `net:[4026531840]`
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 * @raise on an unknown kind
 * @usage print(isle.core.nsid("/proc/self/ns/net", "net"))
 */
static int l_nsid(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int flag = optkind(L, 2);
  struct stat st;
  int *fd = isle_newfd(L);
  lua_toclose(L, -1);
  *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (*fd < 0) return isle_pusherrno(L, errno, "nsid %s", path);
  int type = nstype(*fd);
  if (type < 0)
    return isle_pusherrno(L, errno, "nsid %s: not a namespace", path);
  if (flag && type != flag)
    return isle_pusherrno(L,
                          EINVAL,
                          "nsid %s: %s namespace, not %s",
                          path,
                          isle_kindname(type),
                          isle_kindname(flag));
  if (fstat(*fd, &st) < 0) return isle_pusherrno(L, errno, "nsid %s", path);
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  return 1;
}

/***
 * Namespace ids of a process, one per kind present in /proc/PID/ns.
 * @function nsinfo
 * @tparam[opt="self"] int|string pid a pid or "self"
 * @treturn[1] table `{mnt = id, net = id, ...}`
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 * @usage for kind, id in pairs(isle.nsinfo()) do print(kind, id) end
 */
static int l_nsinfo(lua_State *L)
{
  char dir[64], path[96];
  struct stat st;
  pid_t pid;
  isle_checkprocdir(L, 1, 1, dir, sizeof dir, &pid);
  snprintf(path, sizeof path, "%s/ns", dir);
  if (stat(path, &st) < 0) return isle_pusherrno(L, errno, "nsinfo %s", path);
  lua_newtable(L);
  for (const struct isle_kind *k = isle_kinds; k->name; k++) {
    snprintf(path, sizeof path, "%s/ns/%s", dir, k->name);
    if (stat(path, &st) < 0) {
      if (errno == ENOENT) continue; /* kind not built into this kernel */
      return isle_pusherrno(L, errno, "nsinfo %s", path);
    }
    lua_pushinteger(L, (lua_Integer)st.st_ino);
    lua_setfield(L, -2, k->name);
  }
  return 1;
}

/***
 * Open a namespace file as a Namespace object.
 * The file must be a namespace (of `kind` when given). The object holds a
 * close-on-exec descriptor; closing it never destroys the namespace.
 * @function open_ns
 * @string path e.g. "/proc/4242/ns/net" or "/run/netns/NAME"
 * @tparam[opt] string kind the kind the file must be
 * @treturn[1] Namespace
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 * @raise on an unknown kind
 * @usage local ns <close> = assert(isle.core.open_ns("/proc/self/ns/net", "net"))
 */
static int l_open_ns(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int flag = optkind(L, 2);
  struct stat st;
  struct isle_namespace *ns = lua_newuserdatauv(L, sizeof *ns, 0);
  ns->fd = -1;
  ns->flag = 0;
  ns->id = 0;
  luaL_setmetatable(L, ISLE_NS_T);
  ns->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (ns->fd < 0) return isle_pusherrno(L, errno, "open_ns %s", path);
  int type = nstype(ns->fd);
  if (type < 0) {
    isle_close(isle_steal_fd(&ns->fd)); /* keeps errno */
    return isle_pusherrno(L, errno, "open_ns %s: not a namespace", path);
  }
  if (flag && type != flag) {
    isle_close(isle_steal_fd(&ns->fd));
    return isle_pusherrno(L,
                          EINVAL,
                          "open_ns %s: %s namespace, not %s",
                          path,
                          isle_kindname(type),
                          isle_kindname(flag));
  }
  if (fstat(ns->fd, &st) < 0) {
    isle_close(isle_steal_fd(&ns->fd));
    return isle_pusherrno(L, errno, "open_ns %s", path);
  }
  ns->flag = type;
  ns->id = (lua_Integer)st.st_ino;
  return 1;
}

/***
 * The namespace's file descriptor (owned by the object; close-on-exec).
 * @function Namespace:fd
 * @treturn int fd
 * @raise when closed
 */
static int ns_fd(lua_State *L)
{
  lua_pushinteger(L, checkns(L, 1)->fd);
  return 1;
}

/***
 * Keep the namespace alive on a file, as `ip netns add` does: create
 * `path` (mode 0) when missing, then bind-mount the namespace onto it.
 * A file this call created is removed again if the mount fails.
 * @function Namespace:bind
 * @string path
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("bind /run/netns/x: Permission denied")
 * @treturn[2] int errno
 * @raise when closed
 * @see mount(2)
 * @usage assert(ns:bind("/run/netns/lab1"))
 */
static int ns_bind(lua_State *L)
{
  struct isle_namespace *ns = checkns(L, 1);
  const char *path = luaL_checkstring(L, 2);
  char src[64];
  int created = 0;
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0);
  if (fd >= 0) {
    created = 1;
    isle_close(fd);
  } else if (errno != EEXIST) {
    return isle_pusherrno(L, errno, "bind %s", path);
  }
  snprintf(src, sizeof src, "/proc/self/fd/%d", ns->fd);
  if (mount(src, path, NULL, MS_BIND, NULL) < 0) {
    int err = errno;
    if (created) unlink(path);
    return isle_pusherrno(L, err, "bind %s", path);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Close the descriptor (idempotent). The namespace lives on while anything
 * else refers to it.
 * @function Namespace:close
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int ns_close(lua_State *L)
{
  struct isle_namespace *ns = luaL_checkudata(L, 1, ISLE_NS_T);
  int fd = isle_steal_fd(&ns->fd);
  if (fd >= 0 && close(fd) < 0 && errno != EINTR)
    return isle_pusherrno(
        L, errno, "close %s namespace", isle_kindname(ns->flag));
  lua_pushboolean(L, 1);
  return 1;
}

/* __gc and __close: close, ignoring errors. */
static int ns_gc(lua_State *L)
{
  struct isle_namespace *ns = luaL_checkudata(L, 1, ISLE_NS_T);
  isle_close(isle_steal_fd(&ns->fd));
  return 0;
}

static int ns_tostring(lua_State *L)
{
  struct isle_namespace *ns = luaL_checkudata(L, 1, ISLE_NS_T);
  if (ns->fd < 0)
    lua_pushliteral(L, ISLE_NS_T " (closed)");
  else
    lua_pushfstring(L, ISLE_NS_T " (%s:[%I])", isle_kindname(ns->flag), ns->id);
  return 1;
}

/* __index: the fields `kind` and `id`, else the methods (upvalue 1). */
static int ns_index(lua_State *L)
{
  struct isle_namespace *ns = luaL_checkudata(L, 1, ISLE_NS_T);
  const char *key = lua_tostring(L, 2);
  if (key && lua_type(L, 2) == LUA_TSTRING) {
    if (strcmp(key, "kind") == 0) {
      lua_pushstring(L, isle_kindname(ns->flag));
      return 1;
    }
    if (strcmp(key, "id") == 0) {
      lua_pushinteger(L, ns->id);
      return 1;
    }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

/* Check a uts name argument: no NUL, at most 64 bytes. [-0, +0, v] */
static const char *checkutsname(lua_State *L, int arg, size_t *len)
{
  const char *s = luaL_checklstring(L, arg, len);
  luaL_argcheck(L, strlen(s) == *len, arg, "name contains a NUL byte");
  luaL_argcheck(L, *len <= ISLE_UTSLEN, arg, "name longer than 64 bytes");
  return s;
}

/***
 * Set the host name of the caller's uts namespace.
 * @function sethostname
 * @string name at most 64 bytes
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("sethostname box: Operation not permitted")
 * @treturn[2] int errno
 * @raise on a name over 64 bytes or with a NUL byte
 * @see sethostname(2)
 * @usage assert(isle.unshare "uts"); assert(isle.sethostname "box")
 */
static int l_sethostname(lua_State *L)
{
  size_t len;
  const char *name = checkutsname(L, 1, &len);
  if (sethostname(name, len) < 0)
    return isle_pusherrno(L, errno, "sethostname %s", name);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Set the NIS domain name of the caller's uts namespace.
 * @function setdomainname
 * @string name at most 64 bytes
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 * @raise on a name over 64 bytes or with a NUL byte
 * @see setdomainname(2)
 */
static int l_setdomainname(lua_State *L)
{
  size_t len;
  const char *name = checkutsname(L, 1, &len);
  if (setdomainname(name, len) < 0)
    return isle_pusherrno(L, errno, "setdomainname %s", name);
  lua_pushboolean(L, 1);
  return 1;
}

/* uname(2) field selected by upvalue-less flag: 0 node, 1 domain. */
static int pushuts(lua_State *L, int domain)
{
  struct utsname u;
  if (uname(&u) < 0) return isle_pusherrno(L, errno, "uname");
  lua_pushstring(L, domain ? u.domainname : u.nodename);
  return 1;
}

/***
 * The host name of the caller's uts namespace.
 * @function gethostname
 * @treturn string
 */
static int l_gethostname(lua_State *L)
{
  return pushuts(L, 0);
}

/***
 * The NIS domain name of the caller's uts namespace ("(none)" when unset).
 * @function getdomainname
 * @treturn string
 */
static int l_getdomainname(lua_State *L)
{
  return pushuts(L, 1);
}

void isle_open_ns(lua_State *L)
{
  static const luaL_Reg meta[] = {
      {"__gc", ns_gc},
      {"__close", ns_gc},
      {"__tostring", ns_tostring},
      {NULL, NULL},
  };
  static const luaL_Reg methods[] = {
      {"fd", ns_fd},
      {"bind", ns_bind},
      {"close", ns_close},
      {NULL, NULL},
  };
  static const luaL_Reg funcs[] = {
      {"unshare", l_unshare},
      {"setns", l_setns},
      {"nsid", l_nsid},
      {"nsinfo", l_nsinfo},
      {"open_ns", l_open_ns},
      {"sethostname", l_sethostname},
      {"gethostname", l_gethostname},
      {"setdomainname", l_setdomainname},
      {"getdomainname", l_getdomainname},
      {NULL, NULL},
  };
  isle_newclass(L, ISLE_NS_T, NULL, meta);
  luaL_getmetatable(L, ISLE_NS_T);
  luaL_newlib(L, methods);
  lua_pushcclosure(L, ns_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
