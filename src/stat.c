/* File metadata and special files: lstat(2), readlink(2), lchown(2),
 * mkfifo(3). What a lab host's filesystem and a lab's control FIFO need
 * beyond the basic file calls. */
#include "isle.h"

#include <limits.h>
#include <sys/stat.h>

static const char *typename(mode_t m)
{
  switch (m & S_IFMT) {
  case S_IFREG:
    return "file";
  case S_IFDIR:
    return "directory";
  case S_IFLNK:
    return "link";
  case S_IFIFO:
    return "fifo";
  case S_IFSOCK:
    return "socket";
  case S_IFCHR:
    return "char";
  case S_IFBLK:
    return "block";
  default:
    return "unknown";
  }
}

/* Push the stat (or lstat) table of the path at 1, or the error triple. */
static int pushstat(lua_State *L, int follow)
{
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if ((follow ? stat(path, &st) : lstat(path, &st)) < 0)
    return isle_pusherrno(L, errno, "%s %s", follow ? "stat" : "lstat", path);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, typename(st.st_mode));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, st.st_mode & 07777);
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, st.st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, st.st_gid);
  lua_setfield(L, -2, "gid");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)st.st_dev);
  lua_setfield(L, -2, "dev");
  lua_pushinteger(L,
                  (lua_Integer)st.st_mtim.tv_sec * 1000000000 +
                      (lua_Integer)st.st_mtim.tv_nsec);
  lua_setfield(L, -2, "mtime");
  return 1;
}

/***
 * lstat(2): a file's type and metadata (a symbolic link is not followed).
 * @function lstat
 * @string path
 * @treturn[1] table `{type =, mode =, uid =, gid =, size =, ino =, dev =,
 * mtime =}`: type "file", "directory", "link", "fifo", "socket", "char",
 * "block"; mode the permission bits (07777); mtime in nanoseconds
 * @return[2] nil
 * @treturn[2] string message ("lstat PATH: ...")
 * @treturn[2] int errno
 */
static int l_lstat(lua_State *L)
{
  return pushstat(L, 0);
}

/***
 * stat(2): as `lstat`, but a symbolic link is followed (so the namespace
 * of a `/proc/PID/ns/KIND` link: its `dev` and `ino` are the namespace's
 * identity).
 * @function stat
 * @string path
 * @treturn[1] table as `lstat`'s
 * @return[2] nil, message, errno
 */
static int l_stat(lua_State *L)
{
  return pushstat(L, 1);
}

/***
 * readlink(2): the target of a symbolic link.
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
  char buf[PATH_MAX];
  ssize_t n = readlink(path, buf, sizeof buf);
  if (n < 0) return isle_pusherrno(L, errno, "readlink %s", path);
  if ((size_t)n >= sizeof buf)
    return isle_pusherrno(L, ENAMETOOLONG, "readlink %s", path);
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

/***
 * lchown(2): set a file's owner and group (a link itself, not followed).
 * @function chown
 * @string path
 * @int uid
 * @int gid
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_chown(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  uid_t uid = (uid_t)isle_checkrange(L, 2, 0, UINT32_MAX - 1);
  gid_t gid = (gid_t)isle_checkrange(L, 3, 0, UINT32_MAX - 1);
  if (lchown(path, uid, gid) < 0)
    return isle_pusherrno(L, errno, "chown %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * mkfifo(3) with exactly `mode` (the umask does not apply).
 * @function mkfifo
 * @string path
 * @int mode e.g. 384 (0600)
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_mkfifo(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  lua_Integer m = luaL_checkinteger(L, 2);
  luaL_argcheck(L, m >= 0 && m <= 0777, 2, "mode out of range");
  if (mkfifo(path, (mode_t)m) < 0 || chmod(path, (mode_t)m) < 0)
    return isle_pusherrno(L, errno, "mkfifo %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Open a FIFO without blocking (O_NONBLOCK, close-on-exec): "r" as a
 * reader that never sees end-of-file (O_RDWR), "w" as a writer (fails
 * with ENXIO when nobody reads).
 * @function open_fifo
 * @string path
 * @string mode "r" or "w"
 * @treturn[1] Fd the box that owns the descriptor
 * @treturn[1] int the descriptor
 * @return[2] nil, message, errno
 */
static int l_open_fifo(lua_State *L)
{
  static const char *const modes[] = {"r", "w", NULL};
  const char *path = luaL_checkstring(L, 1);
  int w = luaL_checkoption(L, 2, NULL, modes);
  int *fd = isle_newfd(L);
  *fd = open(path, (w ? O_WRONLY : O_RDWR) | O_NONBLOCK | O_CLOEXEC);
  if (*fd < 0) return isle_pusherrno(L, errno, "open %s", path);
  lua_pushinteger(L, *fd);
  return 2;
}

/***
 * read(2) what a non-blocking descriptor has now (at most 64 KiB).
 * @function read_now
 * @int fd
 * @treturn[1] string the data ("" when nothing is there, or at the end)
 * @return[2] nil, message, errno
 */
static int l_read_now(lua_State *L)
{
  int fd = (int)isle_checkrange(L, 1, 0, INT32_MAX);
  char buf[65536];
  ssize_t n = isle_read_retry(fd, buf, sizeof buf);
  if (n < 0 && errno == EAGAIN) n = 0;
  if (n < 0) return isle_pusherrno(L, errno, "read fd %d", fd);
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

void isle_open_stat(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"lstat", l_lstat},
      {"stat", l_stat},
      {"readlink", l_readlink},
      {"chown", l_chown},
      {"mkfifo", l_mkfifo},
      {"open_fifo", l_open_fifo},
      {"read_now", l_read_now},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
