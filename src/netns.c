/* Named network namespaces under /run/netns, compatible with iproute2
 * (ip/ipnetns.c netns_add/netns_delete): the directory is a shared mount,
 * each namespace is a file bind-mounted from /proc/thread-self/ns/net. */
#include "nl.h"

#include <dirent.h>
#include <limits.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>

/* Reason `name` (len bytes) is unusable as one path component (a netns,
 * lab or host name), or NULL. THE name rule of isle. */
const char *isle_badname(const char *name, size_t len)
{
  if (len == 0) return "empty name";
  if (strlen(name) != len) return "name contains a NUL byte";
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return "name must not be '.' or '..'";
  if (strchr(name, '/')) return "name must not contain '/'";
  if (len > NAME_MAX) return "name too long";
  return NULL;
}

/* Reason `name` is unusable as an interface name, or NULL. THE interface
 * name rule of isle: the kernel's dev_valid_name and IFNAMSIZ, and not
 * "all" or "default" (the kernel refuses them: they would clash with
 * /proc/sys/net/ipv4/conf/all and default). */
const char *isle_badifname(const char *name, size_t len)
{
  if (len == 0) return "empty interface name";
  if (len >= IFNAMSIZ) return "interface name longer than 15 bytes";
  if (strlen(name) != len || strcmp(name, ".") == 0 ||
      strcmp(name, "..") == 0 || strpbrk(name, "/: \t\n\r\f\v"))
    return "invalid interface name";
  if (strcmp(name, "all") == 0 || strcmp(name, "default") == 0)
    return "interface name reserved by the kernel (net/*/conf/all, default)";
  return NULL;
}

/* The netns name at arg, raising when it is unusable. [-0, +0, v] */
static const char *checkname(lua_State *L, int arg)
{
  size_t len;
  const char *name = luaL_checklstring(L, arg, &len);
  const char *why = isle_badname(name, len);
  if (why) luaL_argerror(L, arg, lua_pushfstring(L, "%s: '%s'", why, name));
  return name;
}

const char *isle_checkifname(lua_State *L, int idx, const char *field)
{
  size_t len;
  const char *name = lua_tolstring(L, idx, &len);
  const char *why = name ? isle_badifname(name, len) : "string expected";
  if (why) {
    if (name)
      luaL_error(L, "bad argument (%s '%s': %s)", field, name, why);
    else
      luaL_error(L,
                 "bad argument (%s: %s, got %s)",
                 field,
                 why,
                 luaL_typename(L, idx));
  }
  return name;
}

/***
 * Why a string is unusable as a name (netns, lab, host: one path
 * component), or nil when it is fine.
 * @function badname
 * @param name
 * @treturn ?string the reason
 */
static int l_badname(lua_State *L)
{
  size_t len;
  if (lua_type(L, 1) != LUA_TSTRING) { /* before lua_tolstring converts it */
    lua_pushfstring(L, "string expected, got %s", luaL_typename(L, 1));
    return 1;
  }
  const char *name = lua_tolstring(L, 1, &len);
  const char *why = isle_badname(name, len);
  if (why)
    lua_pushstring(L, why);
  else
    lua_pushnil(L);
  return 1;
}

/***
 * Why a string is unusable as an interface name (1 to 15 bytes, no '/',
 * ':' or blanks, not '.', '..', 'all' or 'default'), or nil when it is fine.
 * @function badifname
 * @param name
 * @treturn ?string the reason
 */
static int l_badifname(lua_State *L)
{
  size_t len;
  if (lua_type(L, 1) != LUA_TSTRING) { /* before lua_tolstring converts it */
    lua_pushfstring(L, "interface name expected, got %s", luaL_typename(L, 1));
    return 1;
  }
  const char *name = lua_tolstring(L, 1, &len);
  const char *why = isle_badifname(name, len);
  if (why)
    lua_pushstring(L, why);
  else
    lua_pushnil(L);
  return 1;
}

struct isle_netns *isle_checknetns(lua_State *L, int idx)
{
  struct isle_netns *ns = luaL_checkudata(L, idx, ISLE_NETNS_T);
  if (ns->fd < 0) luaL_error(L, "attempt to use a closed isle.Netns");
  return ns;
}

int isle_opennetns(lua_State *L, int idx, int *fd, char *what, size_t size)
{
  char path[PATH_MAX];
  struct isle_netns *ns = luaL_testudata(L, idx, ISLE_NETNS_T);
  if (ns) {
    if (ns->fd < 0) luaL_error(L, "attempt to use a closed isle.Netns");
    lua_getiuservalue(L, idx, 1);
    lua_getfield(L, -1, "path");
    snprintf(what, size, "%s", luaL_optstring(L, -1, "netns"));
    lua_pop(L, 2);
    *fd = fcntl(ns->fd, F_DUPFD_CLOEXEC, 0);
    if (*fd < 0) return isle_pusherrno(L, errno, "dup %s", what);
    return 0;
  }
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer pid = luaL_checkinteger(L, idx);
    if (pid <= 0 || pid > INT_MAX) luaL_argerror(L, idx, "pid must be > 0");
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
  } else if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    if (strchr(s, '/'))
      snprintf(path, sizeof path, "%s", s);
    else
      snprintf(path, sizeof path, ISLE_NETNS_DIR "/%s", checkname(L, idx));
  } else {
    return luaL_typeerror(L, idx, "netns target (Netns, name, path or pid)");
  }
  snprintf(what, size, "%s", path);
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) return isle_pusherrno(L, errno, "open %s", path);
  return 0;
}

/* Make /run/netns exist and be a shared mount, as ip netns add does, under
 * an flock on the directory (Debian #949235). Not recursively, unlike ip:
 * each namespace file bound there since is shared already, and MS_REC
 * walked all of them at every add (O(N^2) for a lab of N hosts); only a
 * directory made a mount just now is done recursively. [-0, +0|3, m] */
static int prepare_dir(lua_State *L, const char *name)
{
  int made = 0;
  if (mkdir(ISLE_NETNS_DIR, 0755) < 0 && errno != EEXIST)
    return isle_pusherrno(
        L, errno, "netns add %s: mkdir " ISLE_NETNS_DIR, name);
  int *lock = isle_newfd(L);
  lua_toclose(L, -1);
  *lock = open(ISLE_NETNS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (*lock < 0)
    return isle_pusherrno(L, errno, "netns add %s: open " ISLE_NETNS_DIR, name);
  if (flock(*lock, LOCK_EX) < 0)
    return isle_pusherrno(
        L, errno, "netns add %s: flock " ISLE_NETNS_DIR, name);
  while (
      mount("", ISLE_NETNS_DIR, "none", MS_SHARED | (made ? MS_REC : 0), NULL) <
      0) {
    if (errno != EINVAL || made)
      return isle_pusherrno(
          L, errno, "netns add %s: make-rshared " ISLE_NETNS_DIR, name);
    if (mount(ISLE_NETNS_DIR, ISLE_NETNS_DIR, "none", MS_BIND | MS_REC, NULL) <
        0)
      return isle_pusherrno(
          L, errno, "netns add %s: bind " ISLE_NETNS_DIR, name);
    made = 1;
  }
  isle_close(isle_steal_fd(lock)); /* releases the lock */
  lua_pop(L, 1);
  return 0;
}

/***
 * Create a named network namespace, as `ip netns add NAME`: /run/netns is
 * made a shared mount, the file /run/netns/NAME is created and the new
 * namespace bind-mounted on it. The caller's namespace is restored (and a
 * failed restore is reported).
 * @function netns_add
 * @string name one path component
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("netns add NAME: File exists")
 * @treturn[2] int errno
 * @raise on an invalid name (empty, ".", "..", with "/")
 * @usage assert(core.netns_add("blue"))
 */
static int l_netns_add(lua_State *L)
{
  const char *name = checkname(L, 1);
  char path[PATH_MAX];
  int e;
  snprintf(path, sizeof path, ISLE_NETNS_DIR "/%s", name);
  int r = prepare_dir(L, name);
  if (r) return r;
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) return isle_pusherrno(L, errno, "netns add %s", name);
  close(fd);
  int *saved = isle_newfd(L);
  lua_toclose(L, -1);
  *saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (*saved < 0) {
    e = errno;
    unlink(path);
    return isle_pusherrno(
        L, e, "netns add %s: open /proc/thread-self/ns/net", name);
  }
  if (unshare(CLONE_NEWNET) < 0) {
    e = errno;
    unlink(path);
    return isle_pusherrno(L, e, "netns add %s: unshare", name);
  }
  if (mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL) < 0) {
    e = errno;
    if (setns(*saved, CLONE_NEWNET) < 0) {
      int e2 = errno;
      unlink(path);
      return isle_pusherrno(L, e2, "netns add %s: restore setns", name);
    }
    unlink(path);
    return isle_pusherrno(L, e, "netns add %s: bind %s", name, path);
  }
  if (setns(*saved, CLONE_NEWNET) < 0) {
    e = errno;
    umount2(path, MNT_DETACH);
    unlink(path);
    return isle_pusherrno(L, e, "netns add %s: restore setns", name);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Delete a named network namespace, as `ip netns del NAME`: detach-unmount
 * and unlink /run/netns/NAME. The namespace itself lives on while processes
 * or descriptors still hold it.
 * @function netns_del
 * @string name
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("netns del NAME: No such file or directory")
 * @treturn[2] int errno
 * @raise on an invalid name
 */
static int l_netns_del(lua_State *L)
{
  const char *name = checkname(L, 1);
  char path[PATH_MAX];
  snprintf(path, sizeof path, ISLE_NETNS_DIR "/%s", name);
  umount2(path, MNT_DETACH); /* as iproute2: a stale file still unlinks */
  if (unlink(path) < 0) return isle_pusherrno(L, errno, "netns del %s", name);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Names in /run/netns (unsorted; empty when the directory is missing).
 * @function netns_list
 * @string[opt="/run/netns"] dir another directory (e.g. /etc/netns/NAME)
 * @treturn[1] {string,...}
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_netns_list(lua_State *L)
{
  const char *dir = luaL_optstring(L, 1, ISLE_NETNS_DIR);
  lua_newtable(L);
  DIR *d = opendir(dir); /* O_CLOEXEC in glibc */
  if (!d) {
    if (errno == ENOENT) return 1;
    return isle_pusherrno(L, errno, "netns list: opendir %s", dir);
  }
  lua_Integer n = 0;
  struct dirent *de;
  int e = 0;
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (!de) {
      e = errno;
      break;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    lua_pushstring(L, de->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  if (e) return isle_pusherrno(L, e, "netns list: readdir %s", dir);
  return 1;
}

/* Push a new Netns for fd (ownership taken), with name and path.
 * [-0, +1, m] */
static int pushnetns(lua_State *L, int *box, const char *name, const char *path)
{
  struct stat st;
  struct isle_netns *ns = lua_newuserdatauv(L, sizeof *ns, 1);
  ns->fd = -1;
  luaL_setmetatable(L, ISLE_NETNS_T);
  if (fstat(*box, &st) < 0)
    return isle_pusherrno(L, errno, "netns open %s: fstat", path);
  int type = ioctl(*box, NS_GET_NSTYPE);
  if (type != CLONE_NEWNET) {
    int e = type < 0 && errno != ENOTTY ? errno : EINVAL;
    return isle_pusherrno(L, e, "netns open %s: not a network namespace", path);
  }
  ns->dev = st.st_dev;
  ns->ino = st.st_ino;
  ns->fd = isle_steal_fd(box);
  lua_createtable(L, 0, 2);
  if (name) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
  }
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_setiuservalue(L, -2, 1);
  return 1;
}

/***
 * Open a named network namespace (or any nsfs path) as a Netns.
 * @function netns_open
 * @string path the file to open: /run/netns/NAME, /proc/PID/ns/net
 * @string[opt] name the netns name to record
 * @treturn[1] Netns
 * @return[2] nil
 * @treturn[2] string message ("netns open /run/netns/x: No such file...")
 * @treturn[2] int errno
 */
static int l_netns_open(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  const char *name = luaL_optstring(L, 2, NULL);
  int *fd = isle_newfd(L);
  lua_toclose(L, -1);
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) return isle_pusherrno(L, errno, "netns open %s", path);
  return pushnetns(L, fd, name, path);
}

/***
 * The caller's (this thread's) network namespace as a Netns; its name is
 * the /run/netns entry bound to it, as `ip netns identify`, or nil.
 * @function netns_current
 * @treturn[1] Netns
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_netns_current(lua_State *L)
{
  char path[PATH_MAX], found[NAME_MAX + 1] = "";
  struct stat self, st;
  int *fd = isle_newfd(L);
  lua_toclose(L, -1);
  *fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (*fd < 0)
    return isle_pusherrno(L, errno, "netns current: open /proc/thread-self");
  if (fstat(*fd, &self) < 0)
    return isle_pusherrno(L, errno, "netns current: fstat");
  DIR *d = opendir(ISLE_NETNS_DIR);
  if (d) {
    struct dirent *de;
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.') continue;
      snprintf(path, sizeof path, ISLE_NETNS_DIR "/%s", de->d_name);
      if (stat(path, &st) == 0 && st.st_dev == self.st_dev &&
          st.st_ino == self.st_ino) {
        snprintf(found, sizeof found, "%s", de->d_name);
        break;
      }
    }
    closedir(d);
  }
  if (found[0])
    snprintf(path, sizeof path, ISLE_NETNS_DIR "/%s", found);
  else
    snprintf(path, sizeof path, "/proc/%d/task/%d/ns/net", getpid(), gettid());
  return pushnetns(L, fd, found[0] ? found : NULL, path);
}

/***
 * The namespace's descriptor (owned by the Netns; close-on-exec).
 * @function Netns:fd
 * @treturn int
 */
static int netns_fd(lua_State *L)
{
  lua_pushinteger(L, isle_checknetns(L, 1)->fd);
  return 1;
}

/***
 * Close the descriptor. The namespace itself is not deleted.
 * @function Netns:close
 * @treturn true
 */
static int netns_close(lua_State *L)
{
  struct isle_netns *ns = luaL_checkudata(L, 1, ISLE_NETNS_T);
  int fd = isle_steal_fd(&ns->fd);
  if (fd >= 0 && close(fd) < 0 && errno != EINTR)
    return isle_pusherrno(L, errno, "close netns");
  lua_pushboolean(L, 1);
  return 1;
}

static int netns_gc(lua_State *L)
{
  struct isle_netns *ns = luaL_checkudata(L, 1, ISLE_NETNS_T);
  isle_close(isle_steal_fd(&ns->fd));
  return 0;
}

static int netns_tostring(lua_State *L)
{
  struct isle_netns *ns = luaL_checkudata(L, 1, ISLE_NETNS_T);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "name");
  const char *name = lua_tostring(L, -1);
  if (ns->fd < 0)
    lua_pushfstring(L, "isle.Netns %s (closed)", name ? name : "");
  else
    lua_pushfstring(
        L, "isle.Netns %s (net:[%I])", name ? name : "-", (lua_Integer)ns->ino);
  return 1;
}

/* __index: the fields id, name, path, then the methods (upvalue 1). */
static int netns_index(lua_State *L)
{
  struct isle_netns *ns = luaL_checkudata(L, 1, ISLE_NETNS_T);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "id") == 0) {
    lua_pushinteger(L, (lua_Integer)ns->ino);
    return 1;
  }
  if (k && (strcmp(k, "name") == 0 || strcmp(k, "path") == 0)) {
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, k);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_gettable(L, lua_upvalueindex(1));
  return 1;
}

void isle_open_netns(lua_State *L)
{
  static const luaL_Reg methods[] = {
      {"fd", netns_fd},
      {"close", netns_close},
      {NULL, NULL},
  };
  static const luaL_Reg meta[] = {
      {"__gc", netns_gc},
      {"__close", netns_gc},
      {"__tostring", netns_tostring},
      {NULL, NULL},
  };
  static const luaL_Reg funcs[] = {
      {"netns_add", l_netns_add},
      {"netns_del", l_netns_del},
      {"netns_list", l_netns_list},
      {"netns_open", l_netns_open},
      {"netns_current", l_netns_current},
      {"badname", l_badname},
      {"badifname", l_badifname},
      {NULL, NULL},
  };
  luaL_newmetatable(L, ISLE_NETNS_T);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Netns"); /* methods table, extended by netns.lua */
  lua_pushcclosure(L, netns_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
