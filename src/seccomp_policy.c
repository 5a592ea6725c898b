/* isle's default seccomp policy and its builder (see seccomp_policy.h). The table
 * follows docker's default profile on x86_64: each row is a syscall docker
 * denies unless the process keeps a capability; the argument rules cover
 * clone/unshare of new namespaces, clone3 (ENOSYS: its flags are in memory,
 * where BPF cannot look; glibc falls back to clone), personality, AF_ALG
 * and AF_VSOCK sockets, and TIOCSTI/TIOCLINUX. Calls of another ABI (i386,
 * x32) kill the process. Pure C, no Lua: also linked into the generator. */
#define _GNU_SOURCE
#include "seccomp_policy.h"

#include <errno.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif

/* One row: the syscall (its x86_64 number for names libseccomp 2.5.4 does
 * not know, else -1), allowed when one of cap1, cap2 is kept (-1: none). */
struct rule {
  const char *name;
  int nr_x86_64;
  int cap1, cap2;
};

#define NEVER -1, -1

static const struct rule rules[] = {
    /* kernel keyrings are not namespaced */
    {"keyctl", -1, NEVER},
    {"add_key", -1, NEVER},
    {"request_key", -1, NEVER},
    /* kernel code, tracing, memory of other processes */
    {"bpf", -1, CAP_SYS_ADMIN, CAP_BPF},
    {"perf_event_open", -1, CAP_SYS_ADMIN, CAP_PERFMON},
    {"kexec_load", -1, NEVER},
    {"kexec_file_load", -1, NEVER},
    {"init_module", -1, CAP_SYS_MODULE, -1},
    {"finit_module", -1, CAP_SYS_MODULE, -1},
    {"delete_module", -1, CAP_SYS_MODULE, -1},
    {"kcmp", -1, CAP_SYS_PTRACE, -1},
    {"pidfd_getfd", -1, CAP_SYS_PTRACE, -1},
    {"process_madvise", -1, CAP_SYS_PTRACE, -1},
    {"userfaultfd", -1, NEVER},
    {"io_uring_setup", -1, NEVER},
    {"io_uring_enter", -1, NEVER},
    {"io_uring_register", -1, NEVER},
    /* file handles: open_by_handle_at walks from any inode (shocker);
     * name_to_handle_at, its sister, as docker's documentation lists it */
    {"open_by_handle_at", -1, CAP_DAC_READ_SEARCH, -1},
    {"name_to_handle_at", -1, CAP_DAC_READ_SEARCH, -1},
    /* namespaces and mounts (clone, unshare: the CLONE_NEW* flags, below) */
    {"setns", -1, CAP_SYS_ADMIN, -1},
    {"mount", -1, CAP_SYS_ADMIN, -1},
    {"umount2", -1, CAP_SYS_ADMIN, -1},
    {"pivot_root", -1, CAP_SYS_ADMIN, -1},
    {"chroot", -1, CAP_SYS_CHROOT, -1},
    {"mount_setattr", -1, CAP_SYS_ADMIN, -1},
    {"move_mount", -1, CAP_SYS_ADMIN, -1},
    {"open_tree", -1, CAP_SYS_ADMIN, -1},
    {"open_tree_attr", 467, CAP_SYS_ADMIN, -1},
    {"fsopen", -1, CAP_SYS_ADMIN, -1},
    {"fsconfig", -1, CAP_SYS_ADMIN, -1},
    {"fsmount", -1, CAP_SYS_ADMIN, -1},
    {"fspick", -1, CAP_SYS_ADMIN, -1},
    {"quotactl", -1, CAP_SYS_ADMIN, -1},
    {"quotactl_fd", -1, CAP_SYS_ADMIN, -1},
    {"fanotify_init", -1, CAP_SYS_ADMIN, -1},
    {"lookup_dcookie", -1, CAP_SYS_ADMIN, -1},
    {"sethostname", -1, CAP_SYS_ADMIN, -1},
    {"setdomainname", -1, CAP_SYS_ADMIN, -1},
    {"lsm_get_self_attr", 459, CAP_SYS_ADMIN, -1},
    {"lsm_set_self_attr", 460, CAP_SYS_ADMIN, -1},
    {"lsm_list_modules", 461, CAP_SYS_ADMIN, -1},
    /* the machine: time, swap, reboot, accounting, log, I/O ports, NUMA */
    {"settimeofday", -1, CAP_SYS_TIME, -1},
    {"clock_settime", -1, CAP_SYS_TIME, -1},
    {"acct", -1, CAP_SYS_PACCT, -1},
    {"swapon", -1, NEVER},
    {"swapoff", -1, NEVER},
    {"reboot", -1, CAP_SYS_BOOT, -1},
    {"syslog", -1, CAP_SYSLOG, CAP_SYS_ADMIN},
    {"iopl", -1, CAP_SYS_RAWIO, -1},
    {"ioperm", -1, CAP_SYS_RAWIO, -1},
    {"vhangup", -1, CAP_SYS_TTY_CONFIG, -1},
    {"mbind", -1, CAP_SYS_NICE, -1},
    {"set_mempolicy", -1, CAP_SYS_NICE, -1},
    {"get_mempolicy", -1, CAP_SYS_NICE, -1},
    {"set_mempolicy_home_node", -1, CAP_SYS_NICE, -1},
    {"migrate_pages", -1, NEVER},
    {"move_pages", -1, NEVER},
    /* obsolete (most are ENOSYS in the kernel already) */
    {"uselib", -1, NEVER},
    {"ustat", -1, NEVER},
    {"sysfs", -1, NEVER},
    {"_sysctl", -1, NEVER},
    {"nfsservctl", -1, NEVER},
};

uint64_t isle_seccomp_key(uint64_t caps)
{
  uint64_t key = 1ULL << CAP_SYS_ADMIN; /* the argument rules */
  for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
    if (rules[i].cap1 >= 0) key |= 1ULL << rules[i].cap1;
    if (rules[i].cap2 >= 0) key |= 1ULL << rules[i].cap2;
  }
  return caps & key;
}

static int has(uint64_t caps, int cap)
{
  return cap >= 0 && (caps >> cap) & 1;
}

static int add_table(const struct isle_scapi *a, scmp_filter_ctx ctx,
                     uint64_t caps)
{
  for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
    const struct rule *r = &rules[i];
    if (has(caps, r->cap1) || has(caps, r->cap2)) continue;
    int nr = a->resolve(r->name);
#if defined(__x86_64__)
    if (nr == __NR_SCMP_ERROR && r->nr_x86_64 >= 0) nr = r->nr_x86_64;
#endif
    if (nr == __NR_SCMP_ERROR) continue; /* unknown here: nothing to deny */
    int rc = a->rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    if (rc < 0) return rc;
  }
  return 0;
}

/* personality: only what docker allows (the subsets of PER_LINUX32, bit 3,
 * and UNAME26, bit 17, and the query 0xffffffff). libseccomp 2.5 takes one
 * comparison per argument and rule, so "not one of these" becomes: deny
 * when a bit i outside {0, 3, 17} is set while bit 0 is clear (29 rules),
 * or when bit 0 is set while some other bit k is clear (31 rules). */
static int add_personality(const struct isle_scapi *a, scmp_filter_ctx ctx)
{
  for (int i = 1; i < 32; i++) {
    uint32_t m = (1U << i) | 1U;
    int rc = 0;
    if (i != 3 && i != 17)
      rc = a->rule_add(ctx,
                       SCMP_ACT_ERRNO(EPERM),
                       SCMP_SYS(personality),
                       1,
                       SCMP_A0_32(SCMP_CMP_MASKED_EQ, m, 1U << i));
    if (rc == 0)
      rc = a->rule_add(ctx,
                       SCMP_ACT_ERRNO(EPERM),
                       SCMP_SYS(personality),
                       1,
                       SCMP_A0_32(SCMP_CMP_MASKED_EQ, m, 1U));
    if (rc < 0) return rc;
  }
  return 0;
}

/* clone and unshare of a new namespace, clone3 (ENOSYS): without
 * CAP_SYS_ADMIN. One masked-equal rule per flag (clone's low byte is the
 * exit signal: CLONE_NEWTIME, 0x80, can only be asked of unshare there). */
static int add_namespaces(const struct isle_scapi *a, scmp_filter_ctx ctx)
{
  static const uint64_t newns[] = {CLONE_NEWNS,
                                   CLONE_NEWUTS,
                                   CLONE_NEWIPC,
                                   CLONE_NEWUSER,
                                   CLONE_NEWPID,
                                   CLONE_NEWNET,
                                   CLONE_NEWCGROUP,
                                   CLONE_NEWTIME};
  for (size_t i = 0; i < sizeof newns / sizeof newns[0]; i++) {
    uint64_t f = newns[i];
    int rc = 0;
    if (f != CLONE_NEWTIME)
      rc = a->rule_add(ctx,
                       SCMP_ACT_ERRNO(EPERM),
                       SCMP_SYS(clone),
                       1,
                       SCMP_A0_64(SCMP_CMP_MASKED_EQ, f, f));
    if (rc == 0)
      rc = a->rule_add(ctx,
                       SCMP_ACT_ERRNO(EPERM),
                       SCMP_SYS(unshare),
                       1,
                       SCMP_A0_64(SCMP_CMP_MASKED_EQ, f, f));
    if (rc < 0) return rc;
  }
  return a->rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

/* Integer arguments: the kernel ignores the upper 32 bits of the register,
 * so only the low 32 are compared (an EQ, even SCMP_A0_32's, also demands
 * hi32 == 0: a socket call with the family (1 << 32) | AF_VSOCK would
 * pass; flatpak's CVE-2019-10063 was this with TIOCSTI). TIOCSTI/TIOCLINUX:
 * typing into a terminal the container shares with its caller, even with
 * CAP_SYS_ADMIN, which passes the kernel's own controlling-terminal check. */
static int add_args(const struct isle_scapi *a, scmp_filter_ctx ctx)
{
  static const struct {
    int sys, arg;
    uint64_t value;
  } low32[] = {
      {SCMP_SYS(socket), 0, AF_ALG},
      {SCMP_SYS(socket), 0, AF_VSOCK},
      {SCMP_SYS(ioctl), 1, TIOCSTI},
      {SCMP_SYS(ioctl), 1, TIOCLINUX},
  };
  for (size_t i = 0; i < sizeof low32 / sizeof low32[0]; i++) {
    struct scmp_arg_cmp cmp = {(unsigned)low32[i].arg,
                               SCMP_CMP_MASKED_EQ,
                               0xffffffffULL,
                               low32[i].value};
    int rc = a->rule_add(ctx, SCMP_ACT_ERRNO(EPERM), low32[i].sys, 1, cmp);
    if (rc < 0) return rc;
  }
  return 0;
}

int isle_seccomp_build(const struct isle_scapi *a, uint64_t caps, int fd,
                       const char **what)
{
  *what = "seccomp_init";
  scmp_filter_ctx ctx = a->init(SCMP_ACT_ALLOW);
  if (!ctx) return -ENOMEM;
  /* the child sets no_new_privs itself (or not: it holds CAP_SYS_ADMIN) */
  int rc = a->attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  if (rc == 0) { /* i386 and x32 calls of an x86_64 process */
    *what = "bad-arch action";
    rc = a->attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  }
  if (rc == 0) { /* a binary tree: O(log n) for the syscalls with rules */
    *what = "optimize";
    rc = a->attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  }
  if (rc == 0) {
    *what = "deny table";
    rc = add_table(a, ctx, caps);
  }
  if (rc == 0 && !has(caps, CAP_SYS_ADMIN)) {
    *what = "namespace rules";
    rc = add_namespaces(a, ctx);
  }
  if (rc == 0) {
    *what = "personality rules";
    rc = add_personality(a, ctx);
  }
  if (rc == 0) {
    *what = "argument rules";
    rc = add_args(a, ctx);
  }
  if (rc == 0) {
    *what = "seccomp_export_bpf";
    rc = a->export_bpf(ctx, fd);
  }
  a->release(ctx);
  return rc;
}
