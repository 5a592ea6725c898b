/* The holder of an unprivileged user's labs: one process per user that owns
 * a user namespace (the caller as root, its subordinate ids when it has
 * some) and, owned by it, a mount, net, uts and time namespace. In its mount
 * namespace /run and /etc are copied up (a tmpfs with a symlink per entry of
 * the original, which moves to .isle-host) so that /run/netns, /run/isle (a
 * bind of STATE/labs) and /etc/netns are the user's. Lab commands join it
 * (isle.lab.context); it ends by itself when no client holds STATE's
 * holder.lock and STATE/labs holds no lab. Also flock(2). */
#include "isle.h"

#include <dirent.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* Inside, tells where it is (isle.lab.context.MARKER). */
#define MARKER "/run/.isle-holder"

/* One message of the holder to its starter (SOCK_SEQPACKET: one datagram). */
enum { HELLO = 1, READY = 2, FAILED = 3 };
struct hmsg {
  int tag;
  int err;
  pid_t pid;
  char text[240];
};

/* What the holder works with; no global state. */
struct holder {
  const char *state; /* the state directory, as the starter named it */
  uid_t uid;         /* the user outside */
  int sock;          /* to the starter while setting up */
  int statefd;       /* STATE, opened before the copy-up */
  int labs;          /* STATE/labs */
  int lock;          /* STATE/holder.lock */
};

static void hsend(int sock, int tag, int err, const char *text)
{
  struct hmsg m = {.tag = tag, .err = err, .pid = getpid()};
  snprintf(m.text, sizeof m.text, "%s", text ? text : "");
  if (send(sock, &m, sizeof m, MSG_NOSIGNAL) < 0) _exit(1);
}

/* Report the failed step with errno and end. */
static void hfail(const struct holder *h, const char *step)
{
  int e = errno;
  char text[200];
  snprintf(text, sizeof text, "%s: %s", step, strerror(e));
  hsend(h->sock, FAILED, e, text);
  _exit(1);
}

/* One symlink in the copy-up of dir for entry name of the original
 * (hidden); symlinks are copied as they are. */
static int linkentry(int hidden, const char *dir, const char *name, int islink)
{
  char link[PATH_MAX], target[PATH_MAX];
  snprintf(link, sizeof link, "%s/%s", dir, name);
  if (islink) {
    ssize_t r = readlinkat(hidden, name, target, sizeof target - 1);
    if (r < 0) return -1;
    target[r] = 0;
  } else {
    snprintf(target, sizeof target, ".isle-host/%s", name);
  }
  return symlink(target, link);
}

/* Copy up dir: its tree moves to DIR/.isle-host (open_tree + move_mount,
 * 5.2+), a tmpfs takes its place, and every entry of the original but the
 * names in skip (NULL-terminated) becomes a symlink into it. Symlinks follow
 * the machine's renames (a bind per file would go stale). */
static void copyup(const struct holder *h, const char *dir,
                   const char *const *skip)
{
  char hidden[PATH_MAX];
  int tree = isle_open_tree(
      AT_FDCWD, dir, ISLE_OPEN_TREE_CLONE | O_CLOEXEC | ISLE_AT_RECURSIVE);
  if (tree < 0) hfail(h, "copy-up: open_tree");
  if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
    hfail(h, "copy-up: mount tmpfs");
  snprintf(hidden, sizeof hidden, "%s/.isle-host", dir);
  if (mkdir(hidden, 0755) < 0) hfail(h, "copy-up: mkdir");
  if (isle_move_mount(
          tree, "", AT_FDCWD, hidden, ISLE_MOVE_MOUNT_F_EMPTY_PATH) < 0)
    hfail(h, "copy-up: move_mount");
  isle_close(tree);
  int fd = open(hidden, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd < 0 ? NULL : fdopendir(fd);
  if (!d) hfail(h, "copy-up: open the original");
  struct dirent *e;
  while ((e = readdir(d))) {
    int skipped = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    for (int i = 0; skip[i]; i++)
      skipped |= !strcmp(skip[i], e->d_name);
    if (!skipped &&
        linkentry(dirfd(d), dir, e->d_name, e->d_type == DT_LNK) < 0)
      hfail(h, "copy-up: symlink");
  }
  closedir(d);
}

/* Labs in STATE/labs: entries but dot files and the reserved names. */
static int labcount(int labs)
{
  int fd = openat(labs, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd < 0 ? NULL : fdopendir(fd);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.' && strcmp(e->d_name, "containers") &&
        strcmp(e->d_name, "made-etc-netns"))
      n++;
  closedir(d);
  return n;
}

/* Field 22 of /proc/self/stat (the start time), 0 when unreadable. */
static unsigned long long starttime(void)
{
  char buf[1024];
  if (isle_readfile("/proc/self/stat", buf, sizeof buf) <= 0) return 0;
  char *p = strrchr(buf, ')'); /* comm may hold spaces */
  if (!p) return 0;
  int field = 2;
  for (p++; *p && field < 22; p++)
    if (*p == ' ') field++;
  return strtoull(p, NULL, 10);
}

/* The pid file, written whole then renamed: "PID START USERNS". */
static void pidfile(const struct holder *h)
{
  char text[96], tmp[64];
  struct stat st;
  if (stat("/proc/self/ns/user", &st) < 0) hfail(h, "stat user namespace");
  int n = snprintf(text,
                   sizeof text,
                   "%d %llu %llu\n",
                   (int)getpid(),
                   starttime(),
                   (unsigned long long)st.st_ino);
  snprintf(tmp, sizeof tmp, "holder.pid.%d", (int)getpid());
  int fd =
      openat(h->statefd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || isle_write_all(fd, text, (size_t)n) < 0)
    hfail(h, "write the pid file");
  isle_close(fd);
  if (renameat(h->statefd, tmp, h->statefd, "holder.pid") < 0)
    hfail(h, "rename the pid file");
}

/* The namespaces owned by the new user namespace; the holder enters its
 * own time namespace (only children are born in it). Without time
 * namespaces (CONFIG_TIME_NS) the lab has no clocks of its own. */
static void namespaces(const struct holder *h)
{
  int kinds = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS;
  if (unshare(kinds | CLONE_NEWTIME) == 0) {
    int t = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
    if (t < 0 || setns(t, CLONE_NEWTIME) < 0) hfail(h, "setns time");
    isle_close(t);
  } else if (errno != EINVAL || unshare(kinds) < 0) {
    hfail(h, "unshare mnt,net,uts,time");
  }
  if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
    hfail(h, "make / a slave");
}

/* The mount namespace's layout: /run and /etc copied up, /run/netns,
 * /run/isle (STATE/labs) and /etc/netns the user's, the marker
 * /run/.isle-holder ("UID STATE", which nobody else has). */
static void layout(struct holder *h)
{
  static const char *const runskip[] = {"netns", "isle", NULL};
  static const char *const etcskip[] = {"netns", NULL};
  char fdpath[64], mark[PATH_MAX + 32];
  h->statefd = open(h->state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (h->statefd < 0) hfail(h, "open the state directory");
  if (mkdirat(h->statefd, "labs", 0700) < 0 && errno != EEXIST)
    hfail(h, "mkdir labs");
  h->labs = openat(h->statefd, "labs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  h->lock =
      openat(h->statefd, "holder.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (h->labs < 0 || h->lock < 0) hfail(h, "open labs, holder.lock");
  copyup(h, "/run", runskip);
  copyup(h, "/etc", etcskip);
  if (mkdir("/run/netns", 0755) < 0 || mkdir("/run/isle", 0700) < 0 ||
      mkdir("/etc/netns", 0755) < 0)
    hfail(h, "mkdir /run/netns, /run/isle, /etc/netns");
  snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", h->labs);
  if (mount(fdpath, "/run/isle", NULL, MS_BIND, NULL) < 0)
    hfail(h, "bind labs on /run/isle");
  int n = snprintf(mark, sizeof mark, "%u %s\n", (unsigned)h->uid, h->state);
  int fd = open(MARKER, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 || isle_write_all(fd, mark, (size_t)n) < 0)
    hfail(h, "write " MARKER);
  isle_close(fd);
}

/* Wait for no client (the exclusive lock), end when no lab is left, else
 * sleep until an entry of /run/isle goes. Never returns. */
static void loop(const struct holder *h, int ino)
{
  char ev[4096];
  for (;;) {
    while (flock(h->lock, LOCK_EX) < 0 && errno == EINTR) {
    }
    if (labcount(h->labs) == 0) {
      unlinkat(h->statefd, "holder.pid", 0);
      _exit(0);
    }
    while (read(ino, ev, sizeof ev) > 0) { /* drain */
    }
    flock(h->lock, LOCK_UN);
    struct pollfd p = {ino, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
  }
}

/* Drop every inherited descriptor but sock: a client's lock would carry
 * its shared flock here (flock locks belong to the open file description)
 * and the holder would wait on itself forever. */
static void closefds(int sock)
{
  if (sock > 3) isle_close_range(3, (unsigned)sock - 1, 0);
  isle_close_range((unsigned)sock + 1, ~0U, 0);
}

static void detach(void)
{
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTSTP, SIG_IGN);
  setsid();
}

static void holder_main(struct holder *h)
{
  char go = 0;
  /* a caller started with 0-2 closed may have got the socket there: the
   * holder's stdio becomes /dev/null */
  if (h->sock < 3 && (h->sock = fcntl(h->sock, F_DUPFD_CLOEXEC, 3)) < 0)
    _exit(1);
  closefds(h->sock);
  detach();
  if (unshare(CLONE_NEWUSER) < 0) hfail(h, "unshare user");
  hsend(h->sock, HELLO, 0, NULL);
  if (recv(h->sock, &go, 1, 0) != 1 || go != 'm') _exit(1);
  /* root in it; setgroups is EPERM when it is denied (no subgid range) */
  if (setresgid(0, 0, 0) < 0) hfail(h, "setresgid 0");
  if (setresuid(0, 0, 0) < 0) hfail(h, "setresuid 0");
  if (setgroups(0, NULL) < 0 && errno != EPERM) hfail(h, "setgroups");
  namespaces(h);
  layout(h);
  int ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (ino < 0 ||
      inotify_add_watch(
          ino, "/run/isle", IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF) < 0)
    hfail(h, "inotify /run/isle");
  pidfile(h);
  if (chdir("/") < 0) hfail(h, "chdir /");
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) hfail(h, "open /dev/null");
  dup2(null, 0);
  dup2(null, 1);
  dup2(null, 2);
  isle_close(null);
  prctl(PR_SET_NAME, "isle-holder", 0, 0, 0);
  hsend(h->sock, READY, 0, NULL);
  isle_close(h->sock);
  loop(h, ino);
}

/* Read one message of the holder: its tag, or -1 with msg/errno pushed. */
static int hrecv(lua_State *L, int sock, struct hmsg *m)
{
  ssize_t r;
  while ((r = recv(sock, m, sizeof *m, 0)) < 0 && errno == EINTR) {
  }
  if (r < 0) return isle_pusherrno(L, errno, "holder: recv"), -1;
  if (r != (ssize_t)sizeof *m) {
    luaL_pushfail(L);
    lua_pushstring(L, "holder: ended while starting");
    lua_pushinteger(L, ECHILD);
    return -1;
  }
  m->text[sizeof m->text - 1] = 0;
  if (m->tag == FAILED) {
    luaL_pushfail(L);
    lua_pushfstring(L, "holder: %s", m->text);
    lua_pushinteger(L, m->err);
    return -1;
  }
  return m->tag;
}

/***
 * Start the holder of an unprivileged user's labs for state directory
 * `state` (the caller checked it): a detached process (double fork,
 * setsid, every inherited descriptor closed) in a new user namespace,
 * waiting for its id maps. Map it (`idmap(pid, ...)`), then call
 * `holder_go`.
 * @function holder_fork
 * @string state the state directory (absolute)
 * @treturn[1] int the holder's pid
 * @treturn[1] userdata the socket to it (fd box)
 * @return[2] nil, message ("holder: unshare user: Operation not permitted"), errno
 */
static int l_holder_fork(lua_State *L)
{
  const char *state = luaL_checkstring(L, 1);
  luaL_argcheck(L, state[0] == '/', 1, "an absolute path expected");
  int *box = isle_newfd(L);
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
    return isle_pusherrno(L, errno, "holder: socketpair");
  struct holder h = {state, getuid(), sp[1], -1, -1, -1};
  pid_t mid = fork();
  if (mid == 0) {
    /* the middle: the holder is reparented, never a client's zombie */
    if (fork() == 0) holder_main(&h);
    _exit(0);
  }
  int e = errno;
  isle_close(sp[1]);
  *box = sp[0];
  if (mid < 0) return isle_pusherrno(L, e, "holder: fork");
  while (waitpid(mid, NULL, 0) < 0 && errno == EINTR) {
  }
  struct hmsg m;
  if (hrecv(L, *box, &m) < 0) return 3;
  lua_pushinteger(L, m.pid);
  lua_insert(L, -2);
  return 2;
}

/***
 * Tell the holder its maps are written (`ok` true) or not (it ends), and
 * wait until it is ready.
 * @function holder_go
 * @tparam userdata sock the socket `holder_fork` returned
 * @bool ok the maps are written
 * @treturn[1] true
 * @return[2] nil, message ("holder: copy-up: open_tree: ..."), errno
 */
static int l_holder_go(lua_State *L)
{
  int *box = isle_checkfdbox(L, 1);
  char go = lua_toboolean(L, 2) ? 'm' : 'x';
  if (send(*box, &go, 1, MSG_NOSIGNAL) != 1)
    return isle_pusherrno(L, errno, "holder: send");
  if (go != 'm') {
    lua_pushboolean(L, 1);
    return 1;
  }
  struct hmsg m;
  int tag = hrecv(L, *box, &m);
  if (tag < 0) return 3;
  if (tag != READY)
    return isle_pusherrno(L, EPROTO, "holder: unexpected message %d", tag);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Map the holder's ids with a range through newuidmap or newgidmap (the
 * user's subordinate ids; setgroups stays allowed, as podman's, so that
 * programs in the labs can drop to other groups).
 * @function holder_map
 * @int pid the holder
 * @string prog "newuidmap" or "newgidmap"
 * @string ranges "inside outside count" triples
 * @treturn[1] true
 * @return[2] nil, message ("newuidmap failed (exit 1): ..."), errno
 */
static int l_holder_map(lua_State *L)
{
  static const char *const progs[] = {"newuidmap", "newgidmap", NULL};
  pid_t pid = (pid_t)isle_checkrange(L, 1, 1, INT_MAX);
  const char *prog = progs[luaL_checkoption(L, 2, NULL, progs)];
  const char *ranges = luaL_checkstring(L, 3);
  char why[640];
  if (isle_maphelper(prog, pid, ranges, why, sizeof why) < 0)
    return isle_pusherrno(L, errno, "%s", why);
  lua_pushboolean(L, 1);
  return 1;
}

/***
 * flock(2) on an fd box: "sh" (shared), "ex" (exclusive), "un"; blocks
 * (retried on EINTR) unless `nb` is true.
 * @function flock
 * @tparam userdata box an fd box (open_fd)
 * @string how "sh", "ex" or "un"
 * @bool[opt] nb fail with EWOULDBLOCK instead of waiting
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int l_flock(lua_State *L)
{
  static const char *const hows[] = {"sh", "ex", "un", NULL};
  static const int ops[] = {LOCK_SH, LOCK_EX, LOCK_UN};
  int *box = isle_checkfdbox(L, 1);
  int op = ops[luaL_checkoption(L, 2, NULL, hows)];
  if (lua_toboolean(L, 3)) op |= LOCK_NB;
  int r;
  while ((r = flock(*box, op)) < 0 && errno == EINTR) {
  }
  if (r < 0) return isle_pusherrno(L, errno, "flock");
  lua_pushboolean(L, 1);
  return 1;
}

void isle_open_holder(lua_State *L)
{
  static const luaL_Reg fns[] = {{"holder_fork", l_holder_fork},
                                 {"holder_go", l_holder_go},
                                 {"holder_map", l_holder_map},
                                 {"flock", l_flock},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
