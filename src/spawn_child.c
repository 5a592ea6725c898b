/* The child side of the spawn engine (see spawn.c for the whole): what the
 * cloned child runs, in order: PR_SET_PDEATHSIG; the joins (setns); a new
 * user namespace, its maps, and becoming 0 there; the cgroup; the other
 * new namespaces; the time namespace; the handoff into a pid namespace
 * (a fork the caller adopts); hostname and domainname; stdio; the plan's
 * STEPS (each with a label and an `optional` flag); the seccomp program;
 * the init (spawn_init.c), which forks the command; then the command's
 * final phase: its session and controlling terminal, the working
 * directory, the user and the capabilities, no_new_privs, descriptor and
 * signal hygiene, exec. Only async-signal-safe C runs here, except the body
 * of fn mode; a failure is reported as {step, index, errno} on the status
 * pipe and the child _exits with 127.
 *
 * A container's child (`harden`) is non-dumpable from its start (from the
 * maps on in a new user namespace), so that its /proc/PID files belong to
 * root of the machine. */
#include "spawn.h"

#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

extern char **environ;

void isle_child_fail(const struct isle_plan *pl, int step, int index, int err)
{
  struct isle_msg m = {MSG_ERROR, step, index, err};
  if (pl->inplace) {
    pl->inplace->msg = m;
    longjmp(pl->inplace->back, 1);
  }
  (void)isle_write_all(pl->status_w, &m, sizeof m);
  _exit(127);
}

#define child_fail isle_child_fail

static int write_cgroup(const char *dir)
{
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/cgroup.procs", dir);
  if (n < 0 || (size_t)n >= sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return isle_writefile(path, "0\n", 2);
}

/* Bring lo of the caller's network namespace up (SIOCSIFFLAGS). */
static int lo_up(void)
{
  struct ifreq ifr;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
  if (r == 0) {
    ifr.ifr_flags |= IFF_UP;
    r = ioctl(fd, SIOCSIFFLAGS, &ifr);
  }
  isle_close(fd);
  return r;
}

/* Make path the root: with put_old, pivot_root(2) itself; without, the
 * chdir + pivot_root(".", ".") + detach trick (no put_old needed). */
static int pivot(const char *path, const char *put_old)
{
  if (put_old) return isle_pivot_root(path, put_old);
  if (chdir(path) < 0 || isle_pivot_root(".", ".") < 0 ||
      umount2(".", MNT_DETACH) < 0)
    return -1;
  return chdir("/");
}

static int run_step(const struct isle_plan *pl, const struct isle_step *s,
                    int *tty)
{
  int fd;
  switch (s->op) {
  case OP_MOUNT:
    return mount(s->source, s->target, s->fstype, s->flags, s->data);
  case OP_UMOUNT:
    return umount2(s->target, (int)s->flags);
  case OP_MKDIR:
    return mkdir(s->path, (mode_t)s->mode);
  case OP_MKFILE: /* an empty file (a mount point); an existing one is kept */
    fd = open(s->path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    isle_close(fd);
    return 0;
  case OP_SYMLINK:
    return symlink(s->target, s->path);
  case OP_SETATTR:
    return isle_setattr(pl->procfd, s->path, s->attr);
  case OP_PIVOT:
    return pivot(s->path, s->put_old);
  case OP_CHDIR:
    return chdir(s->path);
  case OP_LO_UP:
    return lo_up();
  case OP_WRITE_FD:
    return isle_write_all(s->fd, s->data, s->len);
  case OP_PTY:
    *tty = 1;
    return isle_child_pty(s->fd, s->rows, s->cols);
  }
  errno = EINVAL;
  return -1;
}

/* After the maps of a new user namespace: become 0 there where the maps
 * have an inside 0 (uid0, gid0), else the process stays the overflow id. */
static void become_root(const struct isle_plan *pl)
{
  if (pl->gid0 && setresgid(0, 0, 0) < 0) child_fail(pl, STEP_IDS, 1, errno);
  if (pl->uid0 && setresuid(0, 0, 0) < 0) child_fail(pl, STEP_IDS, 0, errno);
}

static void nondumpable(const struct isle_plan *pl)
{
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
    child_fail(pl, STEP_DUMPABLE, 0, errno);
}

/* Joins, the user namespace and its maps, the cgroup, new namespaces, the
 * time namespace. */
static void child_namespaces(const struct isle_plan *pl)
{
  for (int i = 0; i < pl->njoins; i++)
    if (setns(pl->joins[i].fd, pl->joins[i].nstype) < 0)
      child_fail(pl, STEP_SETNS, i, errno);
  if (pl->unshare_user && unshare(CLONE_NEWUSER) < 0)
    child_fail(pl, STEP_UNSHARE_USER, 0, errno);
  if (pl->userns) {
    struct isle_msg m = {MSG_READY, 0, 0, 0};
    char c;
    if (isle_write_all(pl->status_w, &m, sizeof m) < 0)
      child_fail(pl, STEP_USERSYNC, 0, errno);
    if (isle_read_retry(pl->release_r, &c, 1) != 1) _exit(127);
    become_root(pl);
    /* not before: the parent (unprivileged) wrote /proc/PID/uid_map */
    if (pl->harden) nondumpable(pl);
  }
  if (pl->cgroup && write_cgroup(pl->cgroup) < 0)
    child_fail(pl, STEP_CGROUP, 0, errno);
  if (pl->unshare_flags && unshare(pl->unshare_flags) < 0)
    child_fail(pl, STEP_UNSHARE, 0, errno);
  if (pl->child_time) {
    /* unshare -> offsets -> enter it ourselves (no process has yet) */
    if (unshare(CLONE_NEWTIME) < 0) child_fail(pl, STEP_TIMENS, 0, errno);
    if (pl->time_offsets && isle_writefile("/proc/self/timens_offsets",
                                           pl->time_offsets,
                                           strlen(pl->time_offsets)) < 0)
      child_fail(pl, STEP_TIMENS, 1, errno);
    int tfd = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
    if (tfd < 0 || setns(tfd, CLONE_NEWTIME) < 0)
      child_fail(pl, STEP_TIMENS, 2, errno);
    isle_close(tfd);
  }
}

/* Parent death: the signal, and the race of a parent that died before it
 * was set (PITFALLS 17; seen only from the parent's pid namespace: in a
 * new one getppid() is 0). */
static void deathsig(const struct isle_plan *pl, int same_pidns)
{
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
    child_fail(pl, STEP_PDEATHSIG, 0, errno);
  if (same_pidns && getppid() != pl->ppid) _exit(127);
}

/* The handoff: the child is not in the pid namespace it joined or made
 * (those take effect for its children), so it forks the process to run
 * there as its parent's child (CLONE_PARENT), says its pid, and exits;
 * returns in that process. */
static void child_handoff(const struct isle_plan *pl)
{
  long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
  if (pid < 0) child_fail(pl, STEP_HANDOFF, 0, errno);
  if (pid > 0) {
    struct isle_msg m = {MSG_PID, 0, (int32_t)pid, 0};
    (void)isle_write_all(pl->status_w, &m, sizeof m);
    _exit(0);
  }
  deathsig(pl, 0);
}

/* Place stdio: move every source out of the way first, then dup2. */
static void child_stdio(const struct isle_plan *pl)
{
  int src[3];
  for (int i = 0; i < 3; i++) {
    src[i] = -1;
    if (pl->stdio[i] >= 0 &&
        (src[i] = fcntl(pl->stdio[i], F_DUPFD_CLOEXEC, 3)) < 0)
      child_fail(pl, STEP_STDIO, i, errno);
  }
  for (int i = 0; i < 3; i++)
    if (src[i] >= 0 && dup2(src[i], i) < 0)
      child_fail(pl, STEP_STDIO, i, errno);
}

/* The working directory. A container's is resolved inside its root, with
 * no magic link followed (/proc/1/cwd, /proc/self/fd/N: ELOOP; `..` stays
 * at the root); otherwise chdir, refused when it leads out of the root
 * (getcwd says "(unreachable)"). */
static void child_cwd(const struct isle_plan *pl)
{
  if (pl->harden) {
    struct isle_open_how how = {O_PATH | O_DIRECTORY | O_CLOEXEC,
                                0,
                                RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int fd = isle_openat2(AT_FDCWD, pl->cwd, &how);
    if (fd < 0 || fchdir(fd) < 0) child_fail(pl, STEP_CWD, 0, errno);
    isle_close(fd);
    return;
  }
  char buf[4096];
  if (chdir(pl->cwd) < 0) child_fail(pl, STEP_CWD, 0, errno);
  if (!getcwd(buf, sizeof buf) || buf[0] != '/')
    child_fail(pl, STEP_CWD, 1, ENOENT);
}

/* Keep exactly `caps` in the bounding set. */
int isle_caps_bounding(uint64_t caps, int last_cap)
{
  for (int c = 0; c <= last_cap; c++)
    if (!(caps & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
        errno != EINVAL)
      return -1;
  return 0;
}

/* THE capability function: exactly `caps` in the effective, permitted and
 * inheritable sets, `ambient` raised (cleared first). */
int isle_caps_set(uint64_t caps, uint64_t ambient, int last_cap)
{
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  for (int i = 0; i < 2; i++) {
    uint32_t bits = (uint32_t)(caps >> (32 * i));
    data[i].effective = data[i].permitted = data[i].inheritable = bits;
  }
  if (syscall(SYS_capset, &hdr, data) < 0) return -1;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) return -1;
  for (int c = 0; c <= last_cap; c++)
    if ((caps & ambient & (1ULL << c)) &&
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
      return -1;
  return 0;
}

/* The user and the capabilities, in the only order that works: the
 * bounding set (needs CAP_SETPCAP, so while still root), KEEPCAPS (a
 * change to a non-0 uid clears the permitted set otherwise), the groups,
 * gid, uid, then the sets and the ambient ones. */
static void child_credentials(const struct isle_plan *pl)
{
  if (pl->set_caps && isle_caps_bounding(pl->caps, pl->last_cap) < 0)
    child_fail(pl, STEP_CAPS, 0, errno);
  if (pl->set_caps && pl->set_uid && pl->uid != 0 &&
      prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
    child_fail(pl, STEP_USER, 0, errno);
  if (pl->set_groups &&
      setgroups((size_t)pl->ngroups, pl->ngroups ? pl->groups : NULL) < 0)
    child_fail(pl, STEP_USER, 1, errno);
  if (pl->set_gid && setresgid(pl->gid, pl->gid, pl->gid) < 0)
    child_fail(pl, STEP_USER, 2, errno);
  if (pl->set_uid && setresuid(pl->uid, pl->uid, pl->uid) < 0)
    child_fail(pl, STEP_USER, 3, errno);
  if (pl->set_caps && isle_caps_set(pl->caps, pl->ambient, pl->last_cap) < 0)
    child_fail(pl, STEP_CAPS, 1, errno);
  if (pl->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    child_fail(pl, STEP_NNP, 0, errno);
}

static __attribute__((noreturn)) void child_fn(lua_State *L,
                                               const struct isle_plan *pl)
{
  /* the parent learns "started" from EOF on the status pipe */
  isle_close(pl->status_w);
  isle_close(pl->release_r);
  lua_pushvalue(L, pl->fn);
  int code;
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    size_t len;
    const char *m = luaL_tolstring(L, -1, &len);
    (void)isle_write_all(2, m, len);
    (void)isle_write_all(2, "\n", 1);
    code = 1;
  } else if (lua_isinteger(L, -1)) {
    code = (int)(lua_tointeger(L, -1) & 0xff);
  } else if (lua_isboolean(L, -1)) {
    code = lua_toboolean(L, -1) ? 0 : 1;
  } else {
    code = 0;
  }
  fflush(NULL);
  _exit(code);
}

int isle_cloexec_from3(int keep)
{
  if (isle_close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return 0;
  if (errno == EINVAL && keep >= 3) { /* 5.9, 5.10: close them instead */
    if ((keep == 3 || isle_close_range(3, (unsigned)keep - 1, 0) == 0) &&
        isle_close_range((unsigned)keep + 1, ~0U, 0) == 0)
      return 0;
  } else if (errno == EINVAL && isle_close_range(3, ~0U, 0) == 0) {
    return 0;
  }
  if (errno != ENOSYS && errno != EINVAL) return -1;
  /* before 5.9: one by one */
  struct rlimit rl;
  int top = 65536;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur < (rlim_t)1 << 20)
    top = (int)rl.rlim_cur;
  for (int fd = 3; fd < top; fd++)
    if (fd != keep) (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
  return 0;
}

/* Signals the caller ignores stay ignored across exec (handlers do not):
 * set the standard ones back to SIG_DFL (SIGPIPE, SIGINT, SIGCHLD ...; a
 * real-time signal ignored across exec is rare enough not to pay 32 more
 * syscalls on every spawn; reading /proc/self/status for the SigIgn mask
 * costs more than these). */
static void default_signals(void)
{
  for (int s = 1; s < 32; s++)
    if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
}

/* The command's final phase: its session (a container's command has its
 * own, so it cannot type into the caller's terminal, TIOCSTI), the
 * controlling terminal, cwd, credentials; then exec hygiene (only 0-2
 * cross exec; the status pipe closes on it, which tells the parent; no
 * blocked or ignored signal) and exec (or fn). */
static __attribute__((noreturn)) void
child_command(lua_State *L, const struct isle_plan *pl, int tty)
{
  if ((tty || pl->harden) && setsid() < 0)
    child_fail(pl, STEP_SETSID, 0, errno);
  if (tty && ioctl(0, TIOCSCTTY, 0) < 0) child_fail(pl, STEP_CTTY, 0, errno);
  if (pl->cwd) child_cwd(pl);
  child_credentials(pl);
  if (pl->fn) child_fn(L, pl);
  if (isle_cloexec_from3(pl->status_w) < 0) child_fail(pl, STEP_EXEC, 1, errno);
  default_signals();
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (pl->caller_env)
    environ = pl->caller_env; /* the caller's heap is not
                                                 * the child's */
  execvpe(pl->argv[0], pl->argv, pl->envp ? pl->envp : environ);
  child_fail(pl, STEP_EXEC, 0, errno);
}

/* The names of the uts namespace the process is in now. */
static void child_names(const struct isle_plan *pl)
{
  if (pl->hostname && sethostname(pl->hostname, strlen(pl->hostname)) < 0)
    child_fail(pl, STEP_HOSTNAME, 0, errno);
  if (pl->domainname &&
      setdomainname(pl->domainname, strlen(pl->domainname)) < 0)
    child_fail(pl, STEP_DOMAINNAME, 0, errno);
}

void isle_exec_inplace(lua_State *L, const struct isle_plan *pl)
{
  child_namespaces(pl); /* the joins only: core.exec refuses the rest */
  child_names(pl);
  child_stdio(pl);
  child_command(L, pl, 0);
}

void isle_spawn_child(lua_State *L, const struct isle_plan *pl)
{
  int tty = 0;
  deathsig(pl, !(pl->clone_flags & CLONE_NEWPID));
  if (pl->harden && !pl->userns) nondumpable(pl); /* before any join */
  child_namespaces(pl);
  if (pl->handoff) child_handoff(pl);
  child_names(pl);
  child_stdio(pl);
  for (int i = 0; i < pl->nsteps; i++)
    if (run_step(pl, &pl->steps[i], &tty) < 0 && !pl->steps[i].optional)
      child_fail(pl, STEP_STEP, i, errno);
  if (pl->procfd >= 0) isle_close(pl->procfd);
  /* once, for the init and the command: after the last mount, hostname
   * and lo up, while the child still holds CAP_SYS_ADMIN (no need of
   * no_new_privs to load it) */
  if (pl->bpf && isle_seccomp_load(pl->bpf, pl->bpf_len) < 0)
    child_fail(pl, STEP_SECCOMP, 0, errno);
  if (pl->init) isle_spawn_init(L, pl, tty, child_command);
  if (!pl->init) prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0); /* the caller's child */
  child_command(L, pl, tty);
}
