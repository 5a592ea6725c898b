/* The child side of the spawn engine (see spawn.c for the whole): what the
 * cloned child runs, in order: PR_SET_PDEATHSIG; the joins (setns); a new
 * user namespace and its maps; the cgroup; the other new namespaces; the
 * time namespace; the fork of the init (pid namespaces); hostname and
 * domainname; stdio; the plan's STEPS (each with a label and an `optional`
 * flag); then the final phase: the working directory (inside the root), the
 * controlling terminal, the capabilities, no_new_privs, descriptor and
 * signal hygiene, exec. Only async-signal-safe C runs here, except the body
 * of fn mode; a failure is reported as {step, index, errno} on the status
 * pipe and the child _exits with 127.
 *
 * The final phase is where the ids of a user switch (setresgid, setgroups,
 * setresuid) and a seccomp program handed over by the parent belong, after
 * the capabilities and before exec. */
#include "spawn.h"

#include <linux/capability.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

static __attribute__((noreturn)) void child_fail(const struct isle_plan *pl,
                                                 int step, int index, int err)
{
  struct isle_msg m = {MSG_ERROR, step, index, err};
  (void)isle_write_all(pl->status_w, &m, sizeof m);
  _exit(127);
}

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

/* THE capability function: keep exactly `caps` in the bounding, effective,
 * permitted, inheritable and ambient sets. */
static int set_caps(uint64_t caps, int last_cap)
{
  for (int c = 0; c <= last_cap; c++)
    if (!(caps & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
        errno != EINVAL)
      return -1;
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
    if ((caps & (1ULL << c)) &&
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
      return -1;
  return 0;
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

static int run_step(const struct isle_step *s, int *tty)
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
  case OP_SETATTR_RO:
    return isle_setattr_ro(s->path);
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

static void noop_handler(int sig)
{
  (void)sig;
}

static const int forwarded[] = {
    SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

/* The stub/init: forward signals to the command, reap every child, exit with
 * the command's status (128 + signal when it was killed). */
static void run_init(pid_t cmd, const sigset_t *mask)
{
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(mask, &si);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      kill(cmd, sig);
      continue;
    }
    for (;;) {
      int st;
      pid_t p = waitpid(-1, &st, WNOHANG);
      if (p <= 0) break;
      if (p == cmd) {
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        _exit(code);
      }
    }
  }
}

/* The previous line of /proc/self/maps, for drop_mapping. */
struct prev_map {
  unsigned long end;
  int file; /* backed by a file: an anonymous mapping right after it is
             * that file's .bss (a library's globals), never dropped */
};

/* Let go of one mapping of /proc/self/maps (a line, NUL-terminated) when
 * it is the caller's malloc memory: the brk heap, or an anonymous private
 * writable mapping of 1 MiB or more (malloc's large blocks) that is no
 * library's .bss and does not hold the stack at sp. */
static void drop_mapping(char *line, uintptr_t sp, struct prev_map *prev)
{
  char *p;
  unsigned long start = strtoul(line, &p, 16);
  if (*p != '-') return;
  unsigned long end = strtoul(p + 1, &p, 16);
  int rw = strncmp(p, " rw-p ", 6) == 0;
  (void)strtoul(p + 6, &p, 16); /* offset */
  p = strchr(p + 1, ' ');       /* after the device */
  if (!p) return;
  unsigned long inode = strtoul(p, &p, 10);
  int after_file = prev->file && prev->end == start;
  prev->end = end;
  prev->file = inode != 0;
  if (!rw || inode != 0 || after_file) return;
  while (*p == ' ')
    p++;
  int heap = strncmp(p, "[heap]", 6) == 0;
  if (!heap && (*p != '\0' || end - start < (1UL << 20))) return;
  if (sp >= start && sp < end) return;
  (void)madvise((void *)start, end - start, MADV_DONTNEED);
}

/* The stub init is a copy of the caller, whose pages count in its RSS: the
 * OOM killer of the container's memory cgroup would pick it (and with it
 * the whole container) over the real hog. It never touches the caller's
 * malloc memory again: let go of it; and, where the caller may
 * (CAP_SYS_RESOURCE), keep the OOM killer away from the init. */
static void shrink_stub(void)
{
  char buf[4096], here;
  size_t have = 0;
  struct prev_map prev = {0, 0};
  (void)isle_writefile("/proc/self/oom_score_adj", "-1000", 5);
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  for (;;) {
    ssize_t n = isle_read_retry(fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0) break;
    have += (size_t)n;
    buf[have] = '\0';
    char *line = buf, *nl;
    while ((nl = strchr(line, '\n'))) {
      *nl = '\0';
      drop_mapping(line, (uintptr_t)&here, &prev);
      line = nl + 1;
    }
    have = (size_t)(buf + have - line);
    memmove(buf, line, have);
    if (have == sizeof buf - 1) have = 0; /* a line this long: skip it */
  }
  isle_close(fd);
}

/* Fork the command off a stub that becomes its init; returns in the
 * command's process only. */
static void child_fork(const struct isle_plan *pl)
{
  sigset_t mask, old;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
    sigaddset(&mask, forwarded[i]);
  sigprocmask(SIG_BLOCK, &mask, &old);
  pid_t pid = fork();
  if (pid < 0) child_fail(pl, STEP_FORK, 0, errno);
  if (pid > 0) {
    /* the stub: nothing of the caller's stays open in it */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = noop_handler;
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
      sigaction(forwarded[i], &sa, NULL);
    isle_close_range(3, ~0U, 0);
    prctl(PR_SET_NAME, "isle-init", 0, 0, 0); /* what ps shows for it */
    shrink_stub();
    run_init(pid, &mask);
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
    child_fail(pl, STEP_PDEATHSIG, 0, errno);
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

/* The working directory, inside the root: a path that leads out of it
 * (getcwd says "(unreachable)") is refused. */
static void child_cwd(const struct isle_plan *pl)
{
  char buf[4096];
  if (chdir(pl->cwd) < 0) child_fail(pl, STEP_CWD, 0, errno);
  if (!getcwd(buf, sizeof buf) || buf[0] != '/')
    child_fail(pl, STEP_CWD, 1, ENOENT);
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

/* Exec hygiene: only 0-2 cross exec (the status pipe closes on it, which
 * tells the parent), no blocked or ignored signal. */
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

static __attribute__((noreturn)) void child_exec(const struct isle_plan *pl)
{
  isle_close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  default_signals();
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execvpe(pl->argv[0], pl->argv, pl->envp ? pl->envp : environ);
  child_fail(pl, STEP_EXEC, 0, errno);
}

void isle_spawn_child(lua_State *L, const struct isle_plan *pl)
{
  int tty = 0;
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
    child_fail(pl, STEP_PDEATHSIG, 0, errno);
  child_namespaces(pl);
  if (pl->need_fork) child_fork(pl);
  if (pl->hostname && sethostname(pl->hostname, strlen(pl->hostname)) < 0)
    child_fail(pl, STEP_HOSTNAME, 0, errno);
  if (pl->domainname &&
      setdomainname(pl->domainname, strlen(pl->domainname)) < 0)
    child_fail(pl, STEP_DOMAINNAME, 0, errno);
  child_stdio(pl);
  for (int i = 0; i < pl->nsteps; i++)
    if (run_step(&pl->steps[i], &tty) < 0 && !pl->steps[i].optional)
      child_fail(pl, STEP_STEP, i, errno);
  /* the final phase */
  if (pl->cwd) child_cwd(pl);
  if (tty && (setsid() < 0 || ioctl(0, TIOCSCTTY, 0) < 0))
    child_fail(pl, STEP_CTTY, 0, errno);
  if (pl->set_caps && set_caps(pl->caps, pl->last_cap) < 0)
    child_fail(pl, STEP_CAPS, 0, errno);
  if (pl->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    child_fail(pl, STEP_NNP, 0, errno);
  if (!pl->need_fork) prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  if (pl->fn) child_fn(L, pl);
  child_exec(pl);
}
