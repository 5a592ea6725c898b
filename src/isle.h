/* isle private header: included first by every file of isle.core. */
#ifndef ISLE_H
#define ISLE_H

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "syscalls.h"

#define ISLE_EXPORT __attribute__((visibility("default")))

/* Metatable names (also the objects' __name). */
#define ISLE_FD_T    "isle.Fd"
#define ISLE_NS_T    "isle.Namespace"
#define ISLE_PROC_T  "isle.Process"
#define ISLE_NET_T   "isle.Net"
#define ISLE_NETNS_T "isle.Netns"

/* One namespace kind: its /proc/PID/ns name and its CLONE_NEW* flag. */
struct isle_kind {
  const char *name;
  int flag;
};

/* The kinds in the order isle reports them (nsinfo, CLI); NULL-terminated. */
extern const struct isle_kind isle_kinds[];

/* aux.c: the auxiliary library */
/* Push fail, "<fmt...>: strerror(err)", err; returns 3. [-0, +3, m] */
int isle_pusherrno(lua_State *L, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The kernel features isle needs that older kernels lack (aux.c has the
 * release that brought each; README "Kernels" has the table). */
enum isle_feature {
  ISLE_NO_FEATURE,
  ISLE_MOUNT_API,    /* open_tree, move_mount: 5.2 */
  ISLE_CLONE_PIDFD,  /* clone with CLONE_PIDFD: 5.2 */
  ISLE_PIDFD,        /* pidfd_open: 5.3 */
  ISLE_WAITID_PIDFD, /* waitid P_PIDFD: 5.4 */
  ISLE_TIMENS,       /* time namespaces: 5.6 */
  ISLE_OPENAT2,      /* openat2: 5.6 */
  ISLE_SETNS_PIDFD,  /* setns through a pidfd: 5.8 */
};
/* isle_pusherrno, and when err is what an older kernel gives (ENOSYS,
 * EINVAL, ENOENT, EOPNOTSUPP) and the running one is older than the
 * release that brought `since`:
 * " (FEATURE: needs Linux M.N or later, this is RELEASE)" after the
 * message. [-0, +3, m] */
int isle_pushkerrno(lua_State *L, int err, enum isle_feature since,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* CLONE_NEW* flag of a kind name (alias "mount"), or 0 when unknown. */
int isle_kindflag(const char *name);
/* Kind name of one CLONE_NEW* flag, or NULL. */
const char *isle_kindname(int flag);
/* Kinds at idx (list or comma string) as CLONE_NEW* flags; raises naming
 * argument idx on an unknown kind. Empty is allowed (0). [-0, +0, v] */
int isle_checkkinds(lua_State *L, int idx);
/* Raise if the table at idx has a key not in fields (NULL-terminated).
 * [-0, +0, v] */
void isle_checkfields(lua_State *L, int idx, const char *const fields[]);
/* New closed fd box (closes on __close/__gc); returns its slot. [-0, +1, m] */
int *isle_newfd(lua_State *L);
/* The slot of the open fd box at idx; raises for a closed one. [-0, +0, v] */
int *isle_checkfdbox(lua_State *L, int idx);
/* Return *fd and set it to -1 (hand ownership out). */
int isle_steal_fd(int *fd);
/* close() that keeps errno; ignores fd < 0. */
void isle_close(int fd);
/* EINTR-safe full write; -1/errno on failure. */
int isle_write_all(int fd, const void *buf, size_t len);
/* EINTR-safe read; -1/errno on failure. */
ssize_t isle_read_retry(int fd, void *buf, size_t len);
/* Check an integer argument within [lo, hi]; raises naming arg. */
lua_Integer isle_checkrange(lua_State *L, int arg, lua_Integer lo,
                            lua_Integer hi);
/* "/proc/PID" (or "/proc/self") for a pid argument at arg: an integer > 0,
 * a Process, or "self" (nil too when nil_is_self); *pid gets the number.
 * Raises naming arg. [-0, +0, v] */
const char *isle_checkprocdir(lua_State *L, int arg, int nil_is_self, char *buf,
                              size_t size, pid_t *pid);
/* Wrap the fd in *slot as a Lua file; on success the file owns it and
 * *slot is -1. [-0, +1, m] */
void isle_pushfile(lua_State *L, int *slot, const char *mode);
/* Register a metatable with __index = methods, __gc = __close = gc,
 * __name; leaves nothing on the stack. */
void isle_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                   const luaL_Reg *metamethods);

/* fs.c */
/* Write len bytes to path (O_WRONLY|O_CLOEXEC) in one write(2); -1/errno. */
int isle_writefile(const char *path, const char *data, size_t len);
/* Read up to size-1 bytes of path into buf, NUL-terminated; length or
 * -1/errno. */
ssize_t isle_readfile(const char *path, char *buf, size_t size);

/* mount.c */
/* Set MOUNT_ATTR_* bits on the mount at path and every mount below it
 * (mount_setattr(2), AT_RECURSIVE); before Linux 5.12, a remount of each
 * (MS_BIND|MS_REMOUNT keeping its flags) listed by procfd's (a /proc
 * directory) thread-self/mountinfo. -1/errno. Async-signal-safe. */
int isle_setattr(int procfd, const char *path, unsigned attr);

/* idmap.c */
/* THE newuidmap/newgidmap runner: `prog pid ranges...` (ranges: the text of
 * a map, "inside outside count" lines), its stderr captured. 0, or -1/errno
 * with why (size bytes) saying what failed ("newuidmap failed (exit 1):
 * <its complaint>", "... not found; install the uidmap package"). Pure C. */
int isle_maphelper(const char *prog, pid_t pid, const char *ranges, char *why,
                   size_t size);

/* process.c: the Process object isle.spawn returns */
struct isle_proc {
  pid_t pid;
  int pidfd;
  int relay; /* pidfd of the stdio relay (isle_stdio_relay), or -1 */
  int reaped;
  int code;   /* exit code or signal number */
  int killed; /* 1 when terminated by a signal */
};
/* New closed Process (pid -1, pidfd -1; user values 1..3 for stdin, stdout,
 * stderr). [-0, +1, m] */
struct isle_proc *isle_newproc(lua_State *L);
/* waitid on the pidfd: 1 when reaped, 0 still running (WNOHANG), -1/errno. */
int isle_reap(struct isle_proc *p, int options);
/* SIGKILL through the pidfd, then reap. */
void isle_kill_and_reap(struct isle_proc *p);

/* tty.c */
/* In a spawned child: open a terminal of the devpts at /dev/ptmx, make its
 * slave fds 0-2 (window size rows x cols when not 0) and send the master
 * over the unix socket sock (SCM_RIGHTS). -1/errno. Async-signal-safe. */
int isle_child_pty(int sock, unsigned short rows, unsigned short cols);
/* A process that copies from[i] to to[i] (i = 0..2, from[i] < 0: none)
 * until each source ends or its target goes, then exits: between a
 * container and the caller's files it must not reopen (a regular file
 * through /proc/self/fd/1 opens writable). Its pidfd (and *pid), or
 * -1/errno. */
int isle_stdio_relay(const int from[3], const int to[3], pid_t *pid);

/* seccomp.c */
/* In a spawned child: attach the BPF program (len bytes, struct
 * sock_filter[]); needs no_new_privs or CAP_SYS_ADMIN in the current user
 * namespace. -1/errno. Async-signal-safe. */
int isle_seccomp_load(const void *code, size_t len);

/* One entry point per file (core.c calls each). */
void isle_open_aux(lua_State *L);
void isle_open_fs(lua_State *L);
void isle_open_ns(lua_State *L);
void isle_open_spawn(lua_State *L);
void isle_open_process(lua_State *L);
void isle_open_tty(lua_State *L);
void isle_open_idmap(lua_State *L);
void isle_open_mount(lua_State *L);
void isle_open_netns(lua_State *L);
void isle_open_nl(lua_State *L);
void isle_open_icmp(lua_State *L);
void isle_open_poll(lua_State *L);
void isle_open_stat(lua_State *L);
void isle_open_sched(lua_State *L);
void isle_open_seccomp(lua_State *L);
void isle_open_unbind(lua_State *L);
void isle_open_settle(lua_State *L);
void isle_open_holder(lua_State *L);

#endif
