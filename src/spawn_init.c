/* PID 1 of a spawn with `init`: it forks the command once the child's steps
 * are done (so that it sits in the new root, with the seccomp program the
 * command gets too), then reaps every process of its pid namespace,
 * forwards TERM, INT, HUP, QUIT, USR1, USR2 and WINCH to the command, and
 * exits with the command's status (128 + N when signal N killed it).
 *
 * The command is made with clone(CLONE_VM | CLONE_VFORK), posix_spawn's
 * way: no copy of the caller's page tables (the init is a copy of the Lua
 * process), the init resumes once the command has exec'd or failed (the
 * failure is on the status pipe then); fork where that is refused (a Lua
 * `fn`; EINVAL from a kernel that refuses CLONE_VM across time namespaces,
 * which the child never is here, but a probe costs nothing). A container's
 * (`harden`) command is a fork that waits at a gate (a pipe's EOF) until
 * the init has let go of everything below: run before, the command could
 * read the caller's command line in /proc/1/cmdline, and with
 * CAP_SYS_PTRACE open the caller's files through /proc/1/fd or trace the
 * init while it still held every capability.
 *
 * The init keeps nothing of the caller: every descriptor closed, its
 * session of its own, the caller's malloc memory let go; a container's
 * (`harden`) also overwrites the caller's command line and environment in
 * its memory (what /proc/1/cmdline and /proc/1/environ show), and keeps
 * only CAP_KILL (to signal a command that changed its uid), with
 * no_new_privs. Only async-signal-safe C. */
#include "spawn.h"

#include <linux/capability.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static void noop_handler(int sig)
{
  (void)sig;
}

static const int forwarded[] = {
    SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

/* Forward signals to the command, reap every child, exit with the
 * command's status (128 + signal when it was killed). */
static __attribute__((noreturn)) void run_init(pid_t cmd, const sigset_t *mask)
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
      if (p == cmd) _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
  }
}

/* Call each(line, arg) for every line of /proc/self/maps, NUL-terminated
 * without its newline (a line longer than 4 KiB is skipped). The one reader
 * of the maps: async-signal-safe (read into a buffer on the stack). */
static void each_mapping(void (*each)(char *line, void *arg), void *arg)
{
  char buf[4096];
  size_t have = 0;
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
      each(line, arg);
      line = nl + 1;
    }
    have = (size_t)(buf + have - line);
    memmove(buf, line, have);
    if (have == sizeof buf - 1) have = 0; /* a line this long: skip it */
  }
  isle_close(fd);
}

/* The fields of a line of /proc/self/maps: "start-end perms offset dev
 * inode path". 0, or -1 for a line it cannot read. */
struct mapping {
  unsigned long start, end, inode;
  const char *perms; /* "rw-p ..." */
  char *dev;         /* " dev inode ...": the id unmap_file compares */
  char *path;        /* after the inode's spaces: "" for anonymous memory */
};

static int parse_mapping(char *line, struct mapping *m)
{
  char *p;
  m->start = strtoul(line, &p, 16);
  if (*p != '-') return -1;
  m->end = strtoul(p + 1, &p, 16);
  m->perms = p + 1;
  (void)strtoul(p + 6, &p, 16); /* offset */
  m->dev = p;
  p = strchr(p + 1, ' '); /* after the device */
  if (!p) return -1;
  m->inode = strtoul(p, &p, 10);
  while (*p == ' ')
    p++;
  m->path = p;
  return 0;
}

/* What the init's first pass over its maps does: drop the caller's malloc
 * memory (shrink), and find the "dev inode" id of the mapping holding
 * `addr` (the interpreter's, for neutral_exe) when addr is not 0. */
struct first_pass {
  uintptr_t sp;
  unsigned long prev_end;
  int prev_file; /* the previous line is backed by a file: an anonymous
                  * mapping right after it is that file's .bss (a
                  * library's globals), never dropped */
  uintptr_t addr;
  char id[64];
  int found;
};

/* Let go of one mapping when it is the caller's malloc memory: the brk
 * heap, or an anonymous private writable mapping of 1 MiB or more
 * (malloc's large blocks) that is no library's .bss and does not hold the
 * stack at sp. */
static void drop_mapping(const struct mapping *m, struct first_pass *f)
{
  int after_file = f->prev_file && f->prev_end == m->start;
  f->prev_end = m->end;
  f->prev_file = m->inode != 0;
  if (strncmp(m->perms, "rw-p ", 5) != 0 || m->inode != 0 || after_file) return;
  int heap = strncmp(m->path, "[heap]", 6) == 0;
  if (!heap && (*m->path != '\0' || m->end - m->start < (1UL << 20))) return;
  if (f->sp >= m->start && f->sp < m->end) return;
  (void)madvise((void *)m->start, m->end - m->start, MADV_DONTNEED);
}

/* The "dev inode" field of the mapping holding f->addr into f->id. */
static void find_id(const struct mapping *m, struct first_pass *f)
{
  if (f->found || !f->addr || f->addr < m->start || f->addr >= m->end) return;
  char *e = strchr(m->dev + 1, ' ');
  e = e ? strchr(e + 1, ' ') : NULL;
  if (e && (size_t)(e - m->dev) < sizeof f->id) {
    memcpy(f->id, m->dev, (size_t)(e - m->dev));
    f->id[e - m->dev] = '\0';
    f->found = 1;
  }
}

static void first_pass_line(char *line, void *arg)
{
  struct mapping m;
  if (parse_mapping(line, &m) < 0) return;
  find_id(&m, arg);
  drop_mapping(&m, arg);
}

/* The init is a copy of the caller, whose pages count in its RSS: the OOM
 * killer of the container's memory cgroup would pick it (and with it the
 * whole container) over the real hog. It never touches the caller's malloc
 * memory again: let go of it; and, where it may (CAP_SYS_RESOURCE), keep
 * the OOM killer away from itself (after the fork: the command keeps the
 * caller's score). With `exe_addr`, f->id is the id of its mapping. */
static void shrink(struct first_pass *f, uintptr_t exe_addr)
{
  char here;
  memset(f, 0, sizeof *f);
  f->sp = (uintptr_t)&here;
  f->addr = exe_addr;
  (void)isle_writefile("/proc/self/oom_score_adj", "-1000", 5);
  each_mapping(first_pass_line, f);
}

/* Overwrite the caller's command line and environment in the init's memory
 * (the kernel shows them as /proc/1/cmdline and environ). The last byte of
 * the argument area stays non-NUL: the kernel then reads up to the first
 * NUL ("setproctitle" rule of get_mm_cmdline). */
static void neutral_argv(const struct isle_plan *pl)
{
  static const char name[] = "isle-init";
  if (pl->arg_end > pl->arg_start) {
    char *a = (char *)pl->arg_start;
    size_t n = pl->arg_end - pl->arg_start;
    memset(a, 0, n);
    memcpy(a, name, n > sizeof name ? sizeof name : n - 1);
    if (n > sizeof name) a[n - 1] = ' ';
  }
  if (pl->env_end > pl->env_start)
    memset((char *)pl->env_start, 0, pl->env_end - pl->env_start);
}

/* Unmap every mapping whose "dev inode" field is id. */
static void unmap_line(char *line, void *arg)
{
  const char *id = arg;
  size_t idlen = strlen(id);
  struct mapping m;
  if (parse_mapping(line, &m) < 0 || m.end <= m.start) return;
  if (strncmp(m.dev, id, idlen) == 0 &&
      (m.dev[idlen] == ' ' || m.dev[idlen] == '\0'))
    (void)munmap((void *)m.start, m.end - m.start);
}

/* /proc/1/exe is the caller's interpreter (the init is a copy of it): with
 * CAP_SYS_PTRACE a container could open it for writing. From 5.15 the
 * kernel refuses that (ETXTBSY) while a process runs the file; before, the
 * refusal came from the executable's mappings, and on overlayfs (a live
 * system, a VM's root) the open copies the file up and succeeds: the
 * machine's interpreter, changed for its next run (CVE-2019-5736). So the
 * init, which never runs the interpreter's own code again (it runs here,
 * in the library and libc), unmaps it and makes its exe an empty memfd
 * (PR_SET_MM_EXE_FILE: CAP_SYS_RESOURCE; best effort, as docker's runc
 * runs a memfd copy of itself). f: shrink's pass, which found the id of
 * the interpreter's mappings. */
static void neutral_exe(struct first_pass *f)
{
  if (!f->found || strcmp(f->id, " 00:00 0") == 0) return;
  int mfd = memfd_create("isle-init", MFD_CLOEXEC);
  if (mfd < 0) return;
  each_mapping(unmap_line, f->id);
  (void)prctl(PR_SET_MM, PR_SET_MM_EXE_FILE, mfd, 0, 0);
  isle_close(mfd);
}

/* Only CAP_KILL (bounding set too), no_new_privs: the pid namespace limits
 * kill(2) to the container. Best effort: the init has no one to tell. */
static void init_caps(const struct isle_plan *pl)
{
  const uint64_t kill = 1ULL << CAP_KILL;
  (void)isle_caps_bounding(kill, pl->last_cap);
  (void)isle_caps_set(kill, 0, pl->last_cap);
  (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* Close the descriptors lo..hi. */
static void close_fds(unsigned lo, unsigned hi)
{
  if (lo > hi) return;
  if (isle_close_range(lo, hi, 0) < 0)
    for (unsigned fd = lo; fd <= hi && fd < 1024; fd++)
      isle_close((int)fd);
}

/* Everything of the caller goes: descriptors (the status pipe too, so EOF
 * still means "the command exec'd"), session, memory; for a container the
 * command line, environment and capabilities; then the gate (>= 0) opens:
 * its write end is the last descriptor closed. */
static void become_init(const struct isle_plan *pl, int gate)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = noop_handler; /* PID 1 gets only handled signals */
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
    sigaction(forwarded[i], &sa, NULL);
  /* the memory first, while the caller still waits for the status pipe's
   * end: each page of its heap it writes once it runs on is then its own
   * again (a fault that keeps the page), not a copy for the init's sake
   * with a TLB shootdown on the other CPUs */
  struct first_pass f;
  shrink(&f, pl->harden ? (uintptr_t)getauxval(AT_PHDR) : 0);
  if (gate > 0) {
    close_fds(0, (unsigned)gate - 1);
    close_fds((unsigned)gate + 1, ~0U);
  } else {
    close_fds(0, ~0U);
  }
  (void)setsid();
  prctl(PR_SET_NAME, "isle-init", 0, 0, 0); /* what ps shows for it */
  if (pl->harden) {
    neutral_argv(pl);
    neutral_exe(&f);
    init_caps(pl);
  }
  if (gate >= 0) isle_close(gate);
}

struct command_args {
  lua_State *L;
  const struct isle_plan *pl;
  int tty;
  isle_command_fn *run;
  int gate[2]; /* the gate's read and write ends, or -1 */
};

/* The command's side of the clone (on the init's stack, which waits), or
 * of the fork: through the gate (its EOF) first. */
static int command_entry(void *arg)
{
  const struct command_args *a = arg;
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
    isle_child_fail(a->pl, STEP_PDEATHSIG, 0, errno);
  if (a->gate[0] >= 0) {
    char c;
    isle_close(a->gate[1]); /* (this copy of the descriptors has it) */
    while (read(a->gate[0], &c, 1) < 0 && errno == EINTR)
      ;
    isle_close(a->gate[0]);
  }
  a->run(a->L, a->pl, a->tty);
  return 127;
}

/* Make the command: vfork-style, or a fork (then it returns 0). */
static pid_t fork_command(const struct command_args *a)
{
  if (!a->pl->fn && a->gate[0] < 0) {
    /* the command borrows the init's memory (its own stack, here) until
     * exec; the init waits (CLONE_VFORK) */
    char stack[64 * 1024] __attribute__((aligned(16)));
    pid_t pid = clone(command_entry,
                      stack + sizeof stack,
                      CLONE_VM | CLONE_VFORK | SIGCHLD,
                      (void *)(uintptr_t)a);
    if (pid > 0 || errno != EINVAL) return pid;
  } else if (!a->pl->fn) {
    /* behind the gate: a copy of the init's memory (this stack region
     * too), made by clone, not fork(3): no atfork handler of a library the
     * caller loaded runs in the init, whose copy of the caller lacks the
     * malloc heap (the child's clone left it out) */
    char stack[64 * 1024] __attribute__((aligned(16)));
    return clone(
        command_entry, stack + sizeof stack, SIGCHLD, (void *)(uintptr_t)a);
  }
  return fork();
}

void isle_spawn_init(lua_State *L, const struct isle_plan *pl, int tty,
                     isle_command_fn *run)
{
  sigset_t mask, old;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
    sigaddset(&mask, forwarded[i]);
  sigprocmask(SIG_BLOCK, &mask, &old);
  int gate[2] = {-1, -1};
  if (pl->harden && pipe2(gate, O_CLOEXEC) < 0)
    isle_child_fail(pl, STEP_FORK, 0, errno);
  struct command_args a = {L, pl, tty, run, {gate[0], gate[1]}};
  pid_t pid = fork_command(&a);
  if (pid < 0) isle_child_fail(pl, STEP_FORK, 0, errno);
  if (pid == 0) { /* fork: the command */
    sigprocmask(SIG_SETMASK, &old, NULL);
    command_entry(&a);
  }
  if (gate[0] >= 0) isle_close(gate[0]);
  become_init(pl, gate[1]);
  run_init(pid, &mask);
}
