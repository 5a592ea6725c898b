/* Files and directories for the Lua modules: whole-file reads and writes,
 * stat fields, CLOEXEC Lua files, mkdir/rmdir, empty files (mount points),
 * symlinks, chdir. Every descriptor is close-on-exec. */
#include "isle.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

int isle_writefile(const char *path, const char *data, size_t len)
{
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  /* one write(2): proc files such as uid_map take exactly one */
  ssize_t n;
  do
    n = write(fd, data, len);
  while (n < 0 && errno == EINTR);
  if (n >= 0 && (size_t)n != len) {
    n = -1;
    errno = EIO;
  }
  int saved = errno;
  close(fd);
  if (n < 0) {
    errno = saved;
    return -1;
  }
  return 0;
}

ssize_t isle_readfile(const char *path, char *buf, size_t size)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t got = 0;
  while (got + 1 < size) {
    ssize_t n = isle_read_retry(fd, buf + got, size - 1 - got);
    if (n < 0) {
      isle_close(fd);
      return -1;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  buf[got] = '\0';
  close(fd);
  return (ssize_t)got;
}

/***
 * Read a whole file (up to 1 MiB) through a close-on-exec descriptor.
 * @function readfile
 * @string path
 * @treturn[1] string contents
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_readfile(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  luaL_Buffer b;
  int *fd = isle_newfd(L);
  lua_toclose(L, -1);
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) return isle_pusherrno(L, errno, "open %s", path);
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    ssize_t n = isle_read_retry(*fd, p, LUAL_BUFFERSIZE);
    if (n < 0) return isle_pusherrno(L, errno, "read %s", path);
    if (n == 0) break;
    luaL_addsize(&b, (size_t)n);
  }
  luaL_pushresult(&b);
  return 1;
}

/***
 * Write a string to an existing file in one write(2) (proc and sys files).
 * @function writefile
 * @string path
 * @string data
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_writefile(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (isle_writefile(path, data, len) < 0)
    return isle_pusherrno(L, errno, "write %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Modification time of a file, in nanoseconds since the epoch.
 * @function mtime
 * @string path
 * @treturn[1] int nanoseconds
 * @return[2] nil, message, errno
 */
static int l_mtime(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) < 0) return isle_pusherrno(L, errno, "stat %s", path);
  lua_pushinteger(L,
                  (lua_Integer)st.st_mtim.tv_sec * 1000000000 +
                      (lua_Integer)st.st_mtim.tv_nsec);
  return 1;
}

/***
 * chmod(2): set a file's mode exactly (the umask does not apply).
 * @function chmod
 * @string path
 * @int mode e.g. 448 (0700)
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("chmod PATH: ...")
 * @treturn[2] int errno
 */
static int l_chmod(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  lua_Integer m = luaL_checkinteger(L, 2);
  luaL_argcheck(L, m >= 0 && m <= 07777, 2, "mode out of range");
  if (chmod(path, (mode_t)m) < 0)
    return isle_pusherrno(L, errno, "chmod %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Inode number of a file (a namespace id for /proc/PID/ns/KIND).
 * @function ino
 * @string path
 * @treturn[1] int inode
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_ino(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) < 0) return isle_pusherrno(L, errno, "stat %s", path);
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  return 1;
}

/***
 * Whether the filesystem mounted where `path` is, is read-only (the
 * mount's own flag: statvfs(3) ST_RDONLY), without reading mountinfo.
 * @function readonly
 * @string path
 * @treturn[1] boolean
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_readonly(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  struct statvfs sv;
  if (statvfs(path, &sv) < 0)
    return isle_pusherrno(L, errno, "statvfs %s", path);
  lua_pushboolean(L, (sv.f_flag & ST_RDONLY) != 0);
  return 1;
}

/***
 * Open a file as a Lua file whose descriptor is close-on-exec (Lua's own
 * io.open cannot ask for that).
 * @function fopen
 * @string path
 * @string[opt="r"] mode "r", "w", "a", "r+", "w+" or "a+" (a "b" is ignored;
 * an "x" makes creation exclusive: O_EXCL, and no symlink is followed)
 * @int[opt=438] perm permission bits of a new file (0666, less the umask)
 * @treturn[1] file
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_fopen(lua_State *L)
{
  static const char *const modes[] = {"r", "w", "a", "r+", "w+", "a+", NULL};
  static const int flags[] = {O_RDONLY,
                              O_WRONLY | O_CREAT | O_TRUNC,
                              O_WRONLY | O_CREAT | O_APPEND,
                              O_RDWR,
                              O_RDWR | O_CREAT | O_TRUNC,
                              O_RDWR | O_CREAT | O_APPEND};
  const char *path = luaL_checkstring(L, 1);
  char mode[4];
  size_t n = 0;
  int excl = 0;
  for (const char *m = luaL_optstring(L, 2, "r"); *m && n < 3; m++)
    if (*m == 'x')
      excl = O_EXCL | O_NOFOLLOW;
    else if (*m != 'b')
      mode[n++] = *m;
  mode[n] = '\0';
  lua_Integer perm = luaL_optinteger(L, 3, 0666);
  luaL_argcheck(L, perm >= 0 && perm <= 07777, 3, "mode out of range");
  int i = -1;
  for (int k = 0; modes[k]; k++)
    if (strcmp(modes[k], mode) == 0) i = k;
  luaL_argcheck(
      L, i >= 0 && (!excl || (flags[i] & O_CREAT)), 2, "invalid mode");
  int *fd = isle_newfd(L);
  lua_toclose(L, -1);
  *fd = open(path, flags[i] | excl | O_CLOEXEC, (mode_t)perm);
  if (*fd < 0) return isle_pusherrno(L, errno, "open %s", path);
  isle_pushfile(L, fd, mode);
  return 1;
}

/***
 * Is fd a terminal?
 * @function isatty
 * @int fd
 * @treturn boolean
 */
static int l_isatty(lua_State *L)
{
  int fd = (int)isle_checkrange(L, 1, 0, INT32_MAX);
  lua_pushboolean(L, isatty(fd));
  return 1;
}

/***
 * mkdir(2).
 * @function mkdir
 * @string path
 * @int[opt=493] mode (0755)
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("mkdir PATH: ...")
 * @treturn[2] int errno
 */
static int l_mkdir(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  lua_Integer m = luaL_optinteger(L, 2, 0755);
  luaL_argcheck(L, m >= 0 && m <= 07777, 2, "mode out of range");
  mode_t mode = (mode_t)m;
  if (mkdir(path, mode) < 0) return isle_pusherrno(L, errno, "mkdir %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * rmdir(2).
 * @function rmdir
 * @string path
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_rmdir(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  if (rmdir(path) < 0) return isle_pusherrno(L, errno, "rmdir %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Create an empty file (a bind-mount target); an existing file is kept.
 * @function mkfile
 * @string path
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_mkfile(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return isle_pusherrno(L, errno, "create %s", path);
  close(fd);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * symlink(2).
 * @function symlink
 * @string target what the link points to
 * @string path the link
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_symlink(lua_State *L)
{
  const char *target = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (symlink(target, path) < 0)
    return isle_pusherrno(L, errno, "symlink %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * chdir(2).
 * @function chdir
 * @string path
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_chdir(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  if (chdir(path) < 0) return isle_pusherrno(L, errno, "chdir %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/* Push the lstat (or, following links, stat) table of the path at 1, or
 * the error triple. [-0, +1|3, m] */
static int pushstat(lua_State *L, int follow)
{
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if ((follow ? stat(path, &st) : lstat(path, &st)) < 0)
    return isle_pusherrno(L, errno, "stat %s", path);
  const char *type = S_ISREG(st.st_mode)   ? "file"
                     : S_ISDIR(st.st_mode) ? "dir"
                     : S_ISLNK(st.st_mode) ? "link"
                                           : "other";
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)st.st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)st.st_gid);
  lua_setfield(L, -2, "gid");
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)st.st_dev);
  lua_setfield(L, -2, "dev");
  return 1;
}

/***
 * lstat(2): the owner, permission bits and type of a path (links not
 * followed).
 * @function lstat
 * @string path
 * @treturn[1] table `{uid =, gid =, mode = permission bits, type = "file"|"dir"|"link"|"other", ino =, dev =}`
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_lstat(lua_State *L)
{
  return pushstat(L, 0);
}

/***
 * stat(2): as `lstat`, but a symbolic link is followed (so the namespace of
 * a `/proc/PID/ns/KIND` link: its `dev` and `ino` are the namespace's
 * identity).
 * @function stat
 * @string path
 * @treturn[1] table as `lstat`'s
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_stat(lua_State *L)
{
  return pushstat(L, 1);
}

/***
 * readlink(2): the target of a symbolic link (e.g. /proc/self/exe).
 * @function readlink
 * @string path
 * @treturn[1] string
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_readlink(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  char buf[4096];
  ssize_t n = readlink(path, buf, sizeof buf);
  if (n < 0) return isle_pusherrno(L, errno, "readlink %s", path);
  if ((size_t)n >= sizeof buf)
    return isle_pusherrno(L, ENAMETOOLONG, "readlink %s", path);
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

void isle_open_fs(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"readfile", l_readfile},
      {"writefile", l_writefile},
      {"ino", l_ino},
      {"readonly", l_readonly},
      {"chmod", l_chmod},
      {"mtime", l_mtime},
      {"lstat", l_lstat},
      {"stat", l_stat},
      {"readlink", l_readlink},
      {"isatty", l_isatty},
      {"fopen", l_fopen},
      {"mkdir", l_mkdir},
      {"rmdir", l_rmdir},
      {"mkfile", l_mkfile},
      {"symlink", l_symlink},
      {"chdir", l_chdir},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
