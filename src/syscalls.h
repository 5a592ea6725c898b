/* Raw syscalls and constants that older headers may lack (modelled on crun's
 * src/libcrun/syscalls.h). Pure C; every function returns -1 with errno set. */
#ifndef ISLE_SYSCALLS_H
#define ISLE_SYSCALLS_H

#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal 424
#endif
#ifndef __NR_close_range
#define __NR_close_range 436
#endif
#ifndef __NR_open_tree
#define __NR_open_tree 428
#endif
#ifndef __NR_move_mount
#define __NR_move_mount 429
#endif
#define ISLE_OPEN_TREE_CLONE         1
#define ISLE_AT_RECURSIVE            0x8000
#define ISLE_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#ifndef __NR_pivot_root
#define __NR_pivot_root 155
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV  0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef RESOLVE_NO_MAGICLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_IN_ROOT       0x10
#endif

/* struct mount_attr of <linux/mount.h> (5.12), spelled out for older headers */
struct isle_mount_attr {
  uint64_t attr_set;
  uint64_t attr_clr;
  uint64_t propagation;
  uint64_t userns_fd;
};

/* struct open_how of <linux/openat2.h> (5.6) */
struct isle_open_how {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};

static inline int isle_openat2(int dfd, const char *path,
                               struct isle_open_how *how)
{
  return (int)syscall(__NR_openat2, dfd, path, how, sizeof *how);
}

static inline long isle_clone3(struct clone_args *args, size_t size)
{
  return syscall(__NR_clone3, args, size);
}

static inline int isle_pidfd_open(pid_t pid, unsigned int flags)
{
  return (int)syscall(__NR_pidfd_open, pid, flags);
}

static inline int isle_pidfd_send_signal(int pidfd, int sig)
{
  return (int)syscall(__NR_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static inline int isle_close_range(unsigned int first, unsigned int last,
                                   unsigned int flags)
{
  return (int)syscall(__NR_close_range, first, last, flags);
}

static inline int isle_pivot_root(const char *new_root, const char *put_old)
{
  return (int)syscall(__NR_pivot_root, new_root, put_old);
}

static inline int isle_mount_setattr(int dfd, const char *path,
                                     unsigned int flags,
                                     struct isle_mount_attr *attr)
{
  return (int)syscall(__NR_mount_setattr, dfd, path, flags, attr, sizeof *attr);
}

static inline int isle_open_tree(int dfd, const char *path, unsigned int flags)
{
  return (int)syscall(__NR_open_tree, dfd, path, flags);
}

static inline int isle_move_mount(int from_dfd, const char *from_path,
                                  int to_dfd, const char *to_path,
                                  unsigned int flags)
{
  return (int)syscall(
      __NR_move_mount, from_dfd, from_path, to_dfd, to_path, flags);
}

#endif
