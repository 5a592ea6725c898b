/* User namespace ID maps (uid_map, gid_map, setgroups, with newuidmap and
 * newgidmap for ranges the caller may not write) and time namespace
 * offsets. */
#include "isle.h"

#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <linux/capability.h>
#include <sys/wait.h>

/* the kernel's limit on lines in one uid_map/gid_map (since 4.15) */
#define ISLE_MAXLINES 340
/* ids are u32 and (u32)-1 is invalid: first + count must stay below it */
#define ISLE_IDMAX    4294967295LL

extern char **environ;

/* Integer field i of the map entry on top of the stack, range-checked;
 * raises naming map[line]. [-0, +0, v] */
static lua_Integer mapfield(lua_State *L, int arg, lua_Integer line, int i,
                            const char *what, lua_Integer lo, lua_Integer hi)
{
  int isint;
  lua_geti(L, -1, i);
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint)
    luaL_argerror(L,
                  arg,
                  lua_pushfstring(L,
                                  "map[%I]: %s must be an integer, got %s",
                                  line,
                                  what,
                                  luaL_typename(L, -1)));
  if (v < lo)
    luaL_argerror(
        L,
        arg,
        lua_pushfstring(
            L, "map[%I]: %s must be %s", line, what, lo == 1 ? "> 0" : ">= 0"));
  if (v > hi)
    luaL_argerror(
        L,
        arg,
        lua_pushfstring(
            L, "map[%I]: %s out of range (at most %I)", line, what, hi));
  lua_pop(L, 1);
  return v;
}

/* Validate the map at arg into v (n lines of inside, outside, count);
 * raises naming the culprit. Returns n. [-0, +0, v] */
static int checkmap(lua_State *L, int arg, lua_Integer v[][3])
{
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_Integer n = luaL_len(L, arg);
  luaL_argcheck(L, n > 0, arg, "map must not be empty");
  luaL_argcheck(L,
                n <= ISLE_MAXLINES,
                arg,
                "map has more than 340 lines (the kernel's limit)");
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, arg, i) != LUA_TTABLE)
      luaL_argerror(L,
                    arg,
                    lua_pushfstring(L,
                                    "map[%I]: {inside, outside, count} "
                                    "expected, got %s",
                                    i,
                                    luaL_typename(L, -1)));
    lua_Integer *l = v[i - 1];
    l[0] = mapfield(L, arg, i, 1, "inside", 0, ISLE_IDMAX - 1);
    l[1] = mapfield(L, arg, i, 2, "outside", 0, ISLE_IDMAX - 1);
    l[2] = mapfield(L, arg, i, 3, "count", 1, ISLE_IDMAX - 1);
    if (l[0] + l[2] >= ISLE_IDMAX || l[1] + l[2] >= ISLE_IDMAX)
      luaL_argerror(
          L,
          arg,
          lua_pushfstring(
              L, "map[%I]: range goes beyond the last id 4294967294", i));
    lua_pop(L, 1);
  }
  return (int)n;
}

/* posix_spawnp argv[0] with its stderr on errfd and no blocked signal;
 * 0 or an errno. Pure C. */
static int start_helper(char **argv, int errfd, pid_t *child)
{
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none;
  int err = posix_spawn_file_actions_init(&fa);
  if (err) return err;
  if ((err = posix_spawnattr_init(&attr))) {
    posix_spawn_file_actions_destroy(&fa);
    return err;
  }
  sigemptyset(&none);
  if (!(err = posix_spawn_file_actions_adddup2(&fa, errfd, STDERR_FILENO)) &&
      !(err = posix_spawnattr_setsigmask(&attr, &none)) &&
      !(err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK)))
    err = posix_spawnp(child, argv[0], &fa, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  return err;
}

/* What a helper wrote on fd until EOF, on one line, without the final
 * newline, into msg (size bytes); its length. */
static size_t read_complaint(int fd, char *msg, size_t size)
{
  size_t got = 0;
  for (;;) {
    char tmp[256];
    ssize_t r = isle_read_retry(fd, tmp, sizeof tmp);
    if (r <= 0) break;
    size_t take = (size_t)r < size - 1 - got ? (size_t)r : size - 1 - got;
    memcpy(msg + got, tmp, take);
    got += take;
  }
  msg[got] = '\0';
  while (got > 0 && (msg[got - 1] == '\n' || msg[got - 1] == ' '))
    msg[--got] = '\0';
  for (char *nl = msg; (nl = strchr(nl, '\n'));)
    *nl = ' ';
  return got;
}

/* Wait for the helper: 0 when it exited with 0, else an errno and why. */
static int wait_helper(const char *prog, pid_t child, const char *msg,
                       char *why, size_t size)
{
  int status;
  pid_t w;
  do
    w = waitpid(child, &status, 0);
  while (w < 0 && errno == EINTR);
  if (w < 0) {
    int err = errno;
    snprintf(why, size, "wait %s", prog);
    return err;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  char how[48];
  if (WIFEXITED(status))
    snprintf(how, sizeof how, "exit %d", WEXITSTATUS(status));
  else
    snprintf(how, sizeof how, "signal %d", WTERMSIG(status));
  snprintf(why, size, "%s failed (%s)%s%s", prog, how, *msg ? ": " : "", msg);
  return EPERM;
}

int isle_maphelper(const char *prog, pid_t pid, const char *ranges, char *why,
                   size_t size)
{
  enum { MAXARGS = 2 + 3 * ISLE_MAXLINES + 1 };
  char pidbuf[16], msg[512];
  int fds[2] = {-1, -1}, err = 0;
  pid_t child;
  char *buf = strdup(ranges);
  char **argv = malloc(MAXARGS * sizeof *argv);
  snprintf(why, size, "%s", prog);
  if (!buf || !argv) {
    err = ENOMEM;
    goto out;
  }
  snprintf(pidbuf, sizeof pidbuf, "%d", (int)pid);
  int n = 0;
  argv[n++] = (char *)(uintptr_t)prog;
  argv[n++] = pidbuf;
  for (char *save, *t = strtok_r(buf, " \n", &save); t && n < MAXARGS - 1;
       t = strtok_r(NULL, " \n", &save))
    argv[n++] = t;
  argv[n] = NULL;
  if (pipe2(fds, O_CLOEXEC) < 0) {
    err = errno;
    snprintf(why, size, "%s: pipe", prog);
    goto out;
  }
  err = start_helper(argv, fds[1], &child);
  isle_close(isle_steal_fd(&fds[1]));
  if (err == ENOENT)
    snprintf(why, size, "%s not found; install the uidmap package", prog);
  else if (err)
    snprintf(why, size, "spawn %s", prog);
  if (err) goto out;
  /* its complaint, then its status */
  read_complaint(fds[0], msg, sizeof msg);
  err = wait_helper(prog, child, msg, why, size);
out:
  isle_close(fds[0]);
  free(argv);
  free(buf);
  errno = err;
  return err ? -1 : 0;
}

/* Is cap in the caller's effective set? 0 on failure. */
static int hascap(int cap)
{
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
  if (syscall(SYS_capget, &h, d) < 0) return 0;
  return (d[cap / 32].effective >> (cap % 32)) & 1;
}

/* 1 when the process at dir is in another user namespace than the caller,
 * 0 when in the same, -1/errno when its ns/user cannot be read. */
static int otheruserns(const char *dir)
{
  char path[96];
  struct stat self, other;
  snprintf(path, sizeof path, "%s/ns/user", dir);
  if (stat("/proc/self/ns/user", &self) < 0 || stat(path, &other) < 0)
    return -1;
  return self.st_ino != other.st_ino || self.st_dev != other.st_dev;
}

/***
 * Write a uid or gid map of a process in a new user namespace.
 * A privileged caller (CAP_SETUID/CAP_SETGID, outside the target's user
 * namespace) or one mapping a single id of its own writes
 * `/proc/PID/uid_map` itself; otherwise `newuidmap`/`newgidmap` does it.
 * For `gid` an unprivileged caller writes `deny` to `/proc/PID/setgroups`
 * first.
 * @function idmap
 * @tparam int|string pid a pid or "self"
 * @string which "uid" or "gid"
 * @tparam table map list of `{inside, outside, count}` (1 to 340 lines)
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message ("idmap /proc/4242/uid_map: Operation not permitted")
 * @treturn[2] int errno
 * @raise on a malformed map, naming the entry
 * @see user_namespaces(7)
 * @usage assert(isle.idmap(pid, "uid", {{0, 1000, 1}}))
 */
static int l_idmap(lua_State *L)
{
  static const char *const which[] = {"uid", "gid", NULL};
  lua_Integer v[ISLE_MAXLINES][3];
  char dir[64], path[96];
  pid_t pid;
  isle_checkprocdir(L, 1, 0, dir, sizeof dir, &pid);
  int gid = luaL_checkoption(L, 2, NULL, which);
  int n = checkmap(L, 3, v);
  /* A privileged writer has CAP_SET[UG]ID in the parent of the target's
   * user ns, so it is outside that ns; a writer inside it (e.g. "self"
   * after unshare) never is, and sees its own outside ids as unmapped. */
  int other = otheruserns(dir);
  if (other < 0) return isle_pusherrno(L, errno, "idmap %s/ns/user", dir);
  int privileged = other && hascap(gid ? CAP_SETGID : CAP_SETUID);
  lua_Integer own = gid ? (lua_Integer)getegid() : (lua_Integer)geteuid();
  int single = n == 1 && v[0][2] == 1 && (!other || v[0][1] == own);
  snprintf(path, sizeof path, "%s/%s_map", dir, which[gid]);
  /* newuidmap would start in the caller's (the target's) user ns, where
   * its set-user-ID root counts for nothing */
  if (!other && !single)
    return isle_pusherrno(L,
                          EPERM,
                          "idmap %s: a process cannot map ranges for its own "
                          "user namespace (map it from the parent)",
                          path);
  if (gid && !privileged) {
    char sgpath[96];
    snprintf(sgpath, sizeof sgpath, "%s/setgroups", dir);
    if (isle_writefile(sgpath, "deny", 4) < 0)
      return isle_pusherrno(L, errno, "idmap %s", sgpath);
  }
  /* the whole map in one write(2), as the kernel requires */
  size_t size = (size_t)n * 3 * 12, len = 0;
  char *text = lua_newuserdatauv(L, size, 0);
  for (int i = 0; i < n; i++)
    len += (size_t)snprintf(text + len,
                            size - len,
                            "%lld %lld %lld\n",
                            (long long)v[i][0],
                            (long long)v[i][1],
                            (long long)v[i][2]);
  if (!privileged && !single) {
    char why[640];
    if (isle_maphelper(
            gid ? "newgidmap" : "newuidmap", pid, text, why, sizeof why) < 0) {
      int e = errno;
      if (e == ENOENT) return isle_pusherrno(L, e, "idmap: %s", why);
      return isle_pusherrno(L, e, "idmap %s: %s", path, why);
    }
    lua_pushboolean(L, 1);
    return 1;
  }
  if (len >= 4096) /* map_write() takes less than a page */
    return isle_pusherrno(L,
                          EINVAL,
                          "idmap %s: map text is %zu bytes, the kernel takes "
                          "at most 4095",
                          path,
                          len);
  if (isle_writefile(path, text, len) < 0)
    return isle_pusherrno(L, errno, "idmap %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Read a process's uid or gid map.
 * @function read_idmap
 * @tparam int|string pid a pid or "self"
 * @string which "uid" or "gid"
 * @treturn[1] table list of `{inside, outside, count}`
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 * @usage for _, l in ipairs(isle.read_idmap("self", "uid")) do print(table.unpack(l)) end
 */
static int l_read_idmap(lua_State *L)
{
  static const char *const which[] = {"uid", "gid", NULL};
  char dir[64], path[96];
  pid_t pid;
  isle_checkprocdir(L, 1, 0, dir, sizeof dir, &pid);
  int gid = luaL_checkoption(L, 2, NULL, which);
  snprintf(path, sizeof path, "%s/%s_map", dir, which[gid]);
  /* 340 lines of "%10u %10u %10u\n" */
  size_t size = ISLE_MAXLINES * 40;
  char *buf = lua_newuserdatauv(L, size, 0);
  ssize_t n = isle_readfile(path, buf, size);
  if (n < 0) return isle_pusherrno(L, errno, "read_idmap %s", path);
  lua_newtable(L);
  lua_Integer line = 0;
  for (char *p = buf; *p;) {
    unsigned long long v[3];
    int used = 0;
    if (sscanf(p, "%llu %llu %llu%n", &v[0], &v[1], &v[2], &used) != 3) break;
    lua_createtable(L, 3, 0);
    for (int i = 0; i < 3; i++) {
      lua_pushinteger(L, (lua_Integer)v[i]);
      lua_rawseti(L, -2, i + 1);
    }
    lua_rawseti(L, -2, ++line);
    p += used;
    p += strspn(p, " \n");
  }
  return 1;
}

/* Offset of clock `name` in the table at idx as seconds + nanoseconds
 * (nsec in [0, 1e9), seconds rounded down); 0 when absent. [-0, +0, v] */
static int getoffset(lua_State *L, int idx, const char *name, long long *sec,
                     long *nsec)
{
  int isint;
  if (lua_getfield(L, idx, name) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (lua_type(L, -1) != LUA_TNUMBER)
    luaL_argerror(L,
                  2,
                  lua_pushfstring(L,
                                  "offsets.%s: number of seconds expected, got "
                                  "%s",
                                  name,
                                  luaL_typename(L, -1)));
  lua_Integer i = lua_tointegerx(L, -1, &isint);
  if (isint) {
    *sec = (long long)i;
    *nsec = 0;
  } else {
    lua_Number s = lua_tonumber(L, -1);
    /* 2^62: far beyond what the kernel accepts, safely inside long long */
    if (!(s >= -4611686018427387904.0 && s < 4611686018427387904.0))
      luaL_argerror(L, 2, lua_pushfstring(L, "offsets.%s: out of range", name));
    long long whole = (long long)s; /* truncates toward zero */
    if ((lua_Number)whole > s) whole--;
    *sec = whole;
    *nsec = (long)((s - (lua_Number)whole) * 1e9 + 0.5);
    if (*nsec >= 1000000000L) {
      *sec += 1;
      *nsec -= 1000000000L;
    }
  }
  lua_pop(L, 1);
  return 1;
}

/***
 * Set the clock offsets of a new time namespace: `/proc/PID/timens_offsets`
 * of a process that has unshared `time` (the offsets apply to its children),
 * before any process has entered that namespace.
 * @function timens_offsets
 * @tparam int|string pid a pid or "self"
 * @tparam table offsets `{monotonic = seconds, boottime = seconds}`;
 * fractional and negative seconds allowed
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 * @raise on an unknown key or a non-number
 * @see time_namespaces(7)
 * @usage assert(isle.unshare "time")
 * assert(isle.timens_offsets("self", {boottime = 86400}))
 */
static int l_timens_offsets(lua_State *L)
{
  static const char *const fields[] = {"monotonic", "boottime", NULL};
  char dir[64], path[96], text[160];
  pid_t pid;
  long long sec;
  long nsec;
  size_t len = 0;
  isle_checkprocdir(L, 1, 0, dir, sizeof dir, &pid);
  luaL_checktype(L, 2, LUA_TTABLE);
  isle_checkfields(L, 2, fields);
  for (int i = 0; fields[i]; i++)
    if (getoffset(L, 2, fields[i], &sec, &nsec))
      len += (size_t)snprintf(
          text + len, sizeof text - len, "%s %lld %ld\n", fields[i], sec, nsec);
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  snprintf(path, sizeof path, "%s/timens_offsets", dir);
  if (isle_writefile(path, text, len) < 0)
    return isle_pusherrno(L, errno, "timens_offsets %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

void isle_open_idmap(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"idmap", l_idmap},
      {"read_idmap", l_read_idmap},
      {"timens_offsets", l_timens_offsets},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
