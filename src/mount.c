/* mount(2), umount2(2) and pivot_root(2) for Lua; flag tables for the
 * Lua layer (lua/isle/mount.lua), which parses names and shorthands; the
 * recursive mount_setattr(2) of the spawn engine's steps, with its
 * fallback for kernels before 5.12 (a remount per mount). */
#include "isle.h"

#include <sys/mount.h>

/* MS_* of a mount's per-mount options (field 6 of mountinfo: "rw,nosuid,
 * nodev,relatime"): what a remount must keep (in a user namespace a
 * remount that drops a locked flag is EPERM). */
static unsigned long optflags(const char *opts, size_t len)
{
  static const struct {
    const char *name;
    unsigned long flag;
  } map[] = {
      {"ro", MS_RDONLY},
      {"nosuid", MS_NOSUID},
      {"nodev", MS_NODEV},
      {"noexec", MS_NOEXEC},
      {"noatime", MS_NOATIME},
      {"nodiratime", MS_NODIRATIME},
      {"relatime", MS_RELATIME},
      {"strictatime", MS_STRICTATIME},
  };
  unsigned long flags = 0;
  const char *end = opts + len;
  while (opts < end) {
    const char *comma = memchr(opts, ',', (size_t)(end - opts));
    size_t n = (size_t)((comma ? comma : end) - opts);
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
      if (strlen(map[i].name) == n && memcmp(map[i].name, opts, n) == 0)
        flags |= map[i].flag;
    opts += n + 1;
  }
  return flags;
}

/* Unescape mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
  char *out = s;
  for (; *s; s++) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
        s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
      *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 3;
    } else {
      *out++ = *s;
    }
  }
  *out = '\0';
}

/* One line of mountinfo: remount its mount read-only/nodev/... when its
 * mount point is `path` or below it. 0 or -1/errno. */
static int remount_line(char *line, const char *path, size_t plen,
                        unsigned long add)
{
  char *f[6];
  int n = 0;
  for (char *p = line; n < 6 && p; n++) {
    f[n] = p;
    p = strchr(p, ' ');
    if (p) *p++ = '\0';
  }
  if (n < 6) return 0;
  unescape(f[4]);
  const char *mp = f[4];
  if (strncmp(mp, path, plen) != 0 || (mp[plen] != '\0' && mp[plen] != '/'))
    return 0;
  unsigned long flags = optflags(f[5], strlen(f[5])) | add;
  return mount(NULL, mp, NULL, MS_BIND | MS_REMOUNT | flags, NULL);
}

/* setattr without mount_setattr (Linux < 5.12): remount every mount at or
 * under path, keeping its flags; the mounts from procfd's
 * thread-self/mountinfo (opened now: its paths are relative to the
 * caller's root of now). */
static int setattr_remount(int procfd, const char *path, unsigned long add)
{
  if (procfd < 0) {
    errno = ENOSYS;
    return -1;
  }
  int fd = openat(procfd, "thread-self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[8192];
  size_t have = 0, plen = strlen(path);
  while (plen > 1 && path[plen - 1] == '/')
    plen--;
  int r = 0;
  for (;;) {
    ssize_t n = isle_read_retry(fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0) {
      if (n < 0) r = -1;
      break;
    }
    have += (size_t)n;
    buf[have] = '\0';
    char *line = buf, *nl;
    while ((nl = strchr(line, '\n'))) {
      *nl = '\0';
      if (r == 0 && remount_line(line, path, plen, add) < 0) r = -1;
      line = nl + 1;
    }
    have = (size_t)(buf + have - line);
    memmove(buf, line, have);
    if (have == sizeof buf - 1) { /* a line this long: no mount of ours */
      errno = E2BIG;
      r = -1;
      break;
    }
  }
  isle_close(fd);
  return r;
}

int isle_setattr(int procfd, const char *path, unsigned attr)
{
  struct isle_mount_attr a;
  memset(&a, 0, sizeof a);
  a.attr_set = attr;
  if (isle_mount_setattr(AT_FDCWD, path, AT_RECURSIVE, &a) == 0) return 0;
  if (errno != ENOSYS) return -1;
  unsigned long add = 0;
  if (attr & MOUNT_ATTR_RDONLY) add |= MS_RDONLY;
  if (attr & MOUNT_ATTR_NOSUID) add |= MS_NOSUID;
  if (attr & MOUNT_ATTR_NODEV) add |= MS_NODEV;
  if (attr & MOUNT_ATTR_NOEXEC) add |= MS_NOEXEC;
  return setattr_remount(procfd, path, add);
}

/***
 * mount(2).
 * @function mount
 * @tparam ?string source
 * @string target
 * @tparam ?string fstype
 * @int flags MS_* bits (see `core.MS`)
 * @tparam ?string data
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("mount SOURCE on TARGET: ...")
 * @treturn[2] int errno
 * @see mount(2)
 */
static int l_mount(lua_State *L)
{
  const char *source = luaL_optstring(L, 1, NULL);
  const char *target = luaL_checkstring(L, 2);
  const char *fstype = luaL_optstring(L, 3, NULL);
  lua_Integer flags = luaL_checkinteger(L, 4);
  const char *data = luaL_optstring(L, 5, NULL);
  if (mount(source, target, fstype, (unsigned long)flags, data) < 0)
    return isle_pusherrno(
        L, errno, "mount %s on %s", source ? source : "none", target);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * umount2(2).
 * @function umount
 * @string target
 * @int[opt=0] flags MNT_* bits (see `core.MNT`)
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 * @see umount2(2)
 */
static int l_umount(lua_State *L)
{
  const char *target = luaL_checkstring(L, 1);
  int flags = (int)luaL_optinteger(L, 2, 0);
  if (umount2(target, flags) < 0)
    return isle_pusherrno(L, errno, "umount %s", target);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Make new_root the root of the caller's mount namespace: pivot_root(".", ".")
 * inside it, then detach the old root (no put_old directory needed). With
 * put_old, the plain pivot_root(2): the old root stays at put_old.
 * @function pivot_root
 * @string new_root a mount point
 * @string[opt] put_old a directory under new_root
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 * @see pivot_root(2)
 */
static int l_pivot_root(lua_State *L)
{
  const char *root = luaL_checkstring(L, 1);
  const char *put_old = luaL_optstring(L, 2, NULL);
  if (put_old) {
    if (isle_pivot_root(root, put_old) < 0)
      return isle_pusherrno(L, errno, "pivot_root %s", root);
    lua_pushboolean(L, 1);
    return 1;
  }
  int *old = isle_newfd(L);
  lua_toclose(L, -1);
  *old = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (*old < 0) return isle_pusherrno(L, errno, "open /");
  if (chdir(root) < 0) return isle_pusherrno(L, errno, "chdir %s", root);
  if (isle_pivot_root(".", ".") < 0) {
    int e = errno;
    if (fchdir(*old) < 0) { /* best effort: stay where we were */
    }
    return isle_pusherrno(L, e, "pivot_root %s", root);
  }
  if (umount2(".", MNT_DETACH) < 0)
    return isle_pusherrno(L, errno, "umount old root");
  if (chdir("/") < 0) return isle_pusherrno(L, errno, "chdir /");
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * A detached copy of the mount tree at `path` (open_tree(2) with
 * OPEN_TREE_CLONE): resolved in the caller's mount namespace now, it can
 * be attached later with `move_mount` in another one (Linux 5.2).
 * @function open_tree
 * @string path
 * @bool[opt] recursive with the mounts below it (AT_RECURSIVE)
 * @treturn[1] Fd the box that owns the descriptor
 * @treturn[1] int the descriptor
 * @return[2] nil
 * @treturn[2] string message ("open_tree PATH: ...")
 * @treturn[2] int errno
 * @see open_tree(2)
 */
static int l_open_tree(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  unsigned flags = ISLE_OPEN_TREE_CLONE | O_CLOEXEC;
  if (lua_toboolean(L, 2)) flags |= ISLE_AT_RECURSIVE;
  int *fd = isle_newfd(L);
  *fd = isle_open_tree(AT_FDCWD, path, flags);
  if (*fd < 0) return isle_pusherrno(L, errno, "open_tree %s", path);
  lua_pushinteger(L, *fd);
  return 2;
}

/***
 * Attach the detached tree of `open_tree` on `target` (move_mount(2)),
 * `target` resolved in the caller's mount namespace.
 * @function move_mount
 * @int fd from `open_tree`
 * @string target
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("move_mount on TARGET: ...")
 * @treturn[2] int errno
 * @see move_mount(2)
 */
static int l_move_mount(lua_State *L)
{
  int fd = (int)isle_checkrange(L, 1, 0, INT32_MAX);
  const char *target = luaL_checkstring(L, 2);
  if (isle_move_mount(fd, "", AT_FDCWD, target, ISLE_MOVE_MOUNT_F_EMPTY_PATH) <
      0)
    return isle_pusherrno(L, errno, "move_mount on %s", target);
  lua_pushboolean(L, 1);
  return 1;
}

void isle_open_mount(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"mount", l_mount},
      {"umount", l_umount},
      {"pivot_root", l_pivot_root},
      {"open_tree", l_open_tree},
      {"move_mount", l_move_mount},
      {NULL, NULL},
  };
  static const struct {
    const char *name;
    unsigned long flag;
  } ms[] = {
      {"ro", MS_RDONLY},
      {"nosuid", MS_NOSUID},
      {"nodev", MS_NODEV},
      {"noexec", MS_NOEXEC},
      {"sync", MS_SYNCHRONOUS},
      {"remount", MS_REMOUNT},
      {"bind", MS_BIND},
      {"move", MS_MOVE},
      {"rec", MS_REC},
      {"private", MS_PRIVATE},
      {"slave", MS_SLAVE},
      {"shared", MS_SHARED},
      {"unbindable", MS_UNBINDABLE},
      {"noatime", MS_NOATIME},
      {"nodiratime", MS_NODIRATIME},
      {"relatime", MS_RELATIME},
      {"strictatime", MS_STRICTATIME},
      {"silent", MS_SILENT},
  };
  static const struct {
    const char *name;
    int flag;
  } mnt[] = {
      {"force", MNT_FORCE},
      {"detach", MNT_DETACH},
      {"expire", MNT_EXPIRE},
      {"nofollow", UMOUNT_NOFOLLOW},
  };
  luaL_setfuncs(L, funcs, 0);
  lua_createtable(L, 0, (int)(sizeof ms / sizeof ms[0]));
  for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
    lua_pushinteger(L, (lua_Integer)ms[i].flag);
    lua_setfield(L, -2, ms[i].name);
  }
  lua_setfield(L, -2, "MS");
  lua_createtable(L, 0, (int)(sizeof mnt / sizeof mnt[0]));
  for (size_t i = 0; i < sizeof mnt / sizeof mnt[0]; i++) {
    lua_pushinteger(L, mnt[i].flag);
    lua_setfield(L, -2, mnt[i].name);
  }
  lua_setfield(L, -2, "MNT");
  static const struct {
    const char *name;
    unsigned attr;
  } attrs[] = {
      {"rdonly", MOUNT_ATTR_RDONLY},
      {"nosuid", MOUNT_ATTR_NOSUID},
      {"nodev", MOUNT_ATTR_NODEV},
      {"noexec", MOUNT_ATTR_NOEXEC},
  };
  lua_createtable(L, 0, (int)(sizeof attrs / sizeof attrs[0]));
  for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
    lua_pushinteger(L, attrs[i].attr);
    lua_setfield(L, -2, attrs[i].name);
  }
  lua_setfield(L, -2, "MOUNT_ATTR");
}
