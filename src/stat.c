/* Owners and FIFOs: lchown(2), mkfifo(3), a FIFO opened without blocking
 * and read(2) of what it holds: what a lab host's filesystem and a lab's
 * control FIFO need beyond fs.c's file calls. */
#include "isle.h"

#include <limits.h>
#include <sys/stat.h>

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
      {"chown", l_chown},
      {"mkfifo", l_mkfifo},
      {"open_fifo", l_open_fifo},
      {"read_now", l_read_now},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
