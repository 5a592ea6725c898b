/* mount(2), umount2(2) and pivot_root(2) for Lua; flag tables for the
 * Lua layer (lua/isle/mount.lua), which parses names and shorthands; the
 * recursive mount_setattr(2) of the spawn engine's steps, with its
 * fallback for kernels before 5.12 (a remount per mount). */
#include "isle.h"

#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>

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

/* A mount of mountinfo: its id, its parent's, its mount point
 * (unescaped, in the file's buffer) and its per-mount flags. */
struct mnt {
  int id, parent;
  const char *mp;
  unsigned long flags;
  signed char hidden; /* -1 not known yet */
};

/* Memory without malloc (the caller may be a clone's child): mmap. */
static void *mapmem(size_t len)
{
  void *p = mmap(
      NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* The whole of fd in mapped memory, NUL-terminated: *len bytes mapped
 * (*cap), or NULL/errno. */
static char *slurp(int fd, size_t *cap)
{
  size_t have = 0;
  *cap = 65536;
  char *buf = mapmem(*cap);
  while (buf) {
    if (have == *cap - 1) {
      char *more = mremap(buf, *cap, *cap * 2, MREMAP_MAYMOVE);
      if (more == MAP_FAILED) {
        int e = errno;
        munmap(buf, *cap);
        errno = e;
        return NULL;
      }
      buf = more;
      *cap *= 2;
    }
    ssize_t n = isle_read_retry(fd, buf + have, *cap - 1 - have);
    if (n < 0) {
      int e = errno;
      munmap(buf, *cap);
      errno = e;
      return NULL;
    }
    if (n == 0) break;
    have += (size_t)n;
  }
  if (buf) buf[have] = '\0';
  return buf;
}

/* Split mountinfo's text into m (room for max): the number of mounts. */
static int parse_mounts(char *text, struct mnt *m, int max)
{
  int n = 0;
  for (char *line = text; *line && n < max;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    char *f[6];
    int k = 0;
    for (char *p = line; k < 6 && p; k++) {
      f[k] = p;
      p = strchr(p, ' ');
      if (p) *p++ = '\0';
    }
    if (k == 6) {
      unescape(f[4]);
      m[n].id = atoi(f[0]);
      m[n].parent = atoi(f[1]);
      m[n].mp = f[4];
      m[n].flags = optflags(f[5], strlen(f[5]));
      m[n].hidden = -1;
      n++;
    }
    if (!nl) break;
    line = nl + 1;
  }
  return n;
}

/* a is b or a directory above it */
static int covers(const char *a, const char *b)
{
  size_t n = strlen(a);
  if (strncmp(a, b, n) != 0) return 0;
  return b[n] == '\0' || b[n] == '/' || (n > 0 && a[n - 1] == '/');
}

static int find(const struct mnt *m, int n, int id)
{
  for (int i = 0; i < n; i++)
    if (m[i].id == id) return i;
  return -1;
}

/* Whether path no longer reaches m[i]: a mount made later on the same
 * parent covers its mount point (or a directory above it), or its parent
 * is hidden. Shadowed mounts stay in mountinfo (a /sys mounted over the
 * old one leaves the old one's submounts listed under /sys/...), and a
 * remount by path would land on another mount: EINVAL. */
static int hidden(struct mnt *m, int n, int i, int depth)
{
  if (m[i].hidden >= 0) return m[i].hidden;
  int h = 0;
  for (int j = i + 1; j < n && !h; j++)
    h = m[j].parent == m[i].parent && covers(m[j].mp, m[i].mp);
  int p = find(m, n, m[i].parent);
  if (!h && p >= 0 && p != i && depth < 64) h = hidden(m, n, p, depth + 1);
  m[i].hidden = (signed char)h;
  return h;
}

/* Whether m[i] is the mount `top` or below it. */
static int below(const struct mnt *m, int n, int i, int top)
{
  for (int depth = 0; i >= 0 && depth < 64; depth++) {
    if (m[i].id == top) return 1;
    if (m[i].parent == m[i].id) return 0;
    i = find(m, n, m[i].parent);
  }
  return 0;
}

/* Remount, adding `add`, the visible mount at path and every visible
 * mount below it, each keeping its own flags: what mount_setattr
 * AT_RECURSIVE does. EINVAL when path is no mount point, as there. */
static int remount_tree(struct mnt *m, int n, const char *path,
                        unsigned long add)
{
  int top = -1;
  for (int i = 0; i < n; i++)
    if (strcmp(m[i].mp, path) == 0 && !hidden(m, n, i, 0)) top = i;
  if (top < 0) {
    errno = EINVAL;
    return -1;
  }
  for (int i = 0; i < n; i++)
    if (below(m, n, i, m[top].id) && !hidden(m, n, i, 0) &&
        mount(NULL,
              m[i].mp,
              NULL,
              MS_BIND | MS_REMOUNT | m[i].flags | add,
              NULL) < 0)
      return -1;
  return 0;
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
  size_t cap, mcap;
  char *text = slurp(fd, &cap);
  int e = errno;
  isle_close(fd);
  if (!text) {
    errno = e;
    return -1;
  }
  int lines = 1;
  for (const char *p = text; *p; p++)
    lines += *p == '\n';
  mcap = (size_t)lines * sizeof(struct mnt);
  struct mnt *m = mapmem(mcap);
  int r = -1;
  e = errno;
  if (m) {
    char want[PATH_MAX];
    size_t plen = strlen(path);
    while (plen > 1 && path[plen - 1] == '/')
      plen--;
    if (plen < sizeof want) {
      memcpy(want, path, plen);
      want[plen] = '\0';
      r = remount_tree(m, parse_mounts(text, m, lines), want, add);
    } else {
      errno = ENAMETOOLONG;
    }
    e = errno;
    munmap(m, mcap);
  }
  munmap(text, cap);
  errno = e;
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
  if (*fd < 0)
    return isle_pushkerrno(L, errno, ISLE_MOUNT_API, "open_tree %s", path);
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
    return isle_pushkerrno(
        L, errno, ISLE_MOUNT_API, "move_mount on %s", target);
  lua_pushboolean(L, 1);
  return 1;
}

/* What the child of l_sysfs_in does, with the caller's memory. */
struct sysfs_args {
  int netfd, mntfd;
  unsigned long flags;
};

static int sysfs_entry(void *arg)
{
  const struct sysfs_args *a = arg;
  if (setns(a->netfd, CLONE_NEWNET) < 0 || setns(a->mntfd, CLONE_NEWNS) < 0)
    _exit(errno & 0xff);
  if (mount("sysfs", "/sys", "sysfs", a->flags, NULL) < 0) _exit(errno & 0xff);
  _exit(0);
}

/***
 * Mount a sysfs of network namespace `net` on `/sys` of mount namespace
 * `mnt` (nosuid, nodev, noexec; `ro` read-only), over whatever is there
 * (in a user namespace, the sysfs a namespace was copied with may be
 * locked in place): from a child (clone with CLONE_VM | CLONE_VFORK) that enters
 * both, so that the caller's own namespaces, root and working directory
 * are left as they are. A lab host's sysfs is mounted so, at the first
 * entry onto the host: each sysfs mount walks every sysfs superblock of
 * the machine (one per network namespace), quadratic in a lab's `up`.
 * @function sysfs_in
 * @string net a network namespace file
 * @string mnt a mount namespace file
 * @bool[opt] ro
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("sysfs in MNT: ...")
 * @treturn[2] int errno
 */
static int l_sysfs_in(lua_State *L)
{
  const char *net = luaL_checkstring(L, 1);
  const char *mnt = luaL_checkstring(L, 2);
  struct sysfs_args a = {.flags = MS_NOSUID | MS_NODEV | MS_NOEXEC};
  if (lua_toboolean(L, 3)) a.flags |= MS_RDONLY;
  a.netfd = open(net, O_RDONLY | O_CLOEXEC);
  if (a.netfd < 0) return isle_pusherrno(L, errno, "open %s", net);
  a.mntfd = open(mnt, O_RDONLY | O_CLOEXEC);
  if (a.mntfd < 0) {
    int e = errno;
    close(a.netfd);
    return isle_pusherrno(L, e, "open %s", mnt);
  }
  char stack[16 * 1024] __attribute__((aligned(16)));
  pid_t pid = clone(
      sysfs_entry, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
  int e = pid < 0 ? errno : 0, st = 0;
  while (pid > 0 && waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) {
      e = errno;
      break;
    }
  }
  close(a.netfd);
  close(a.mntfd);
  if (!e && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
    e = WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
  if (e) return isle_pusherrno(L, e, "sysfs in %s", mnt);
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
      {"sysfs_in", l_sysfs_in},
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
