/* The plan of the spawn engine, shared by its parent side (spawn.c: reading
 * the plan, clone, watching the child) and its child side (spawn_child.c:
 * the steps, the init, exec). Private to those two files. */
#ifndef ISLE_SPAWN_H
#define ISLE_SPAWN_H

#include "isle.h"

#include <setjmp.h>

/* The phases the child reports on failure; STEP_STEP carries the index of
 * the failing entry of the plan's steps. */
enum {
  STEP_PDEATHSIG = 1,
  STEP_SETNS,
  STEP_UNSHARE_USER,
  STEP_USERSYNC,
  STEP_CGROUP,
  STEP_UNSHARE,
  STEP_TIMENS,
  STEP_FORK,
  STEP_HOSTNAME,
  STEP_DOMAINNAME,
  STEP_STDIO,
  STEP_STEP,
  STEP_CWD,
  STEP_CTTY,
  STEP_CAPS,
  STEP_NNP,
  STEP_EXEC,
  STEP_IDS,      /* become 0 in a new user namespace (index 0 uid, 1 gid) */
  STEP_DUMPABLE, /* prctl PR_SET_DUMPABLE 0 */
  STEP_HANDOFF,  /* the fork into the pid namespace */
  STEP_SECCOMP,
  STEP_USER, /* index: 0 keepcaps, 1 setgroups, 2 setresgid, 3 setresuid */
  STEP_SETSID,
};

/* child -> parent message */
struct isle_msg {
  int32_t type; /* MSG_* */
  int32_t step;
  int32_t index;
  int32_t err;
};
enum {
  MSG_ERROR = 1,
  MSG_READY = 2, /* in a new user ns: write my maps */
  MSG_PID = 3,   /* handoff: the process to watch is pid `index` now */
};

/* The operations of the steps list, by the names the Lua layer uses. */
enum {
  OP_MOUNT,
  OP_UMOUNT,
  OP_MKDIR,
  OP_MKFILE,
  OP_SYMLINK,
  OP_SETATTR,
  OP_PIVOT,
  OP_CHDIR,
  OP_LO_UP,
  OP_WRITE_FD,
  OP_PTY,
};

struct isle_step {
  int op;
  int optional;     /* a failure is ignored */
  const char *what; /* the label in error messages */
  const char *source, *target, *fstype, *data, *path, *put_old;
  unsigned long flags;       /* mount(2) / umount2(2) flags */
  unsigned mode;             /* mkdir */
  unsigned attr;             /* setattr: MOUNT_ATTR_* bits set recursively */
  size_t len;                /* write_fd: length of data */
  int fd;                    /* write_fd, pty */
  unsigned short rows, cols; /* pty */
};

struct isle_join {
  int fd;
  int nstype;
  const char *label;
};

/* Where isle_child_fail goes when the plan runs in the caller itself
 * (core.exec): the failure is kept and the caller jumps back. */
struct isle_inplace {
  jmp_buf back;
  struct isle_msg msg;
};

struct isle_plan {
  const char *prefix;           /* of error messages: "spawn", "container" */
  struct isle_inplace *inplace; /* core.exec: no child, or NULL */
  pid_t ppid;        /* the caller: a child whose parent differs is orphaned */
  int clone_flags;   /* namespaces created by clone3 */
  int unshare_flags; /* created by the child (after joins), user excluded */
  int unshare_user;  /* child unshares the user ns itself (after joins) */
  int userns;        /* a new user ns: the child waits for its maps */
  int parent_time;   /* parent does unshare(time) -> offsets -> clone */
  int child_time;    /* the child does it (after its user ns is mapped) */
  int handoff;       /* the child is not in its pid ns yet: it forks the process
                * to run as the caller's child (CLONE_PARENT) and exits */
  int init;          /* PID 1 forks the command after the steps, then reaps */
  int harden;        /* a container: non-dumpable, a hardened init (its own
                * session, no fds, neutral argv, only CAP_KILL,
                * no_new_privs), the command in its own session, cwd
                * resolved inside the root */
  int procfd;        /* /proc of the start (O_PATH), for setattr's fallback */
  int fn;            /* stack index of a Lua function (fn mode), or 0 */
  const char *time_offsets;
  const char *cgroup;
  const char *hostname, *domainname;
  const char *cwd;
  char **argv;
  char **envp;
  char **caller_env; /* the caller's environ, copied out of its heap */
  struct isle_join *joins;
  int njoins;
  struct isle_step *steps;
  int nsteps;
  int stdio[3]; /* source fd for 0, 1, 2 or -1 (inherit) */
  int no_new_privs;
  int set_caps;
  uint64_t caps, ambient; /* kept; raised as ambient */
  int last_cap;
  int uid0, gid0; /* become 0 in the new user ns once mapped */
  int set_uid, set_gid, set_groups;
  uid_t uid;
  gid_t gid;
  gid_t *groups;
  int ngroups;
  const char *bpf; /* seccomp program (bpf_len bytes) or NULL */
  size_t bpf_len;
  uintptr_t arg_start, arg_end, env_start, env_end; /* the caller's image */
  int status_w;  /* child's end of the status pipe */
  int release_r; /* child's end of the release pipe */
};

/* spawn_plan.c: the plan of the spec table at index 1; leaves its arrays
 * on the stack (they live until the caller returns). [-0, +5, v] */
void isle_spawn_readplan(lua_State *L, struct isle_plan *pl);
/* The label of the child's failing phase m. [-0, +(0|1), m] */
const char *isle_spawn_stepname(lua_State *L, const struct isle_plan *pl,
                                const struct isle_msg *m);
/* The kernel feature a failing phase of the child depends on, or none. */
enum isle_feature isle_spawn_stepsince(const struct isle_plan *pl,
                                       const struct isle_msg *m);
/* Write the id maps of pid's new user ns (the spec table at index 1);
 * -1/errno and why set. */
int isle_spawn_write_maps(lua_State *L, pid_t pid, char *why, size_t size);

/* spawn_arena.c: the plan copied out of the Lua heap, and the heap left
 * out of the child. */
struct isle_arena {
  char *base; /* the copy of the plan's strings and arrays */
  size_t size;
  char *heap; /* the brk heap while it is MADV_DONTFORK, or NULL */
  size_t heap_len;
};
/* Point pl's strings and arrays at a copy in a mapping of their own; 0, or
 * -1/errno (pl unchanged). */
int isle_arena_plan(struct isle_plan *pl, struct isle_arena *ar);
/* MADV_DONTFORK the brk heap from heap_start (0: unknown, nothing done)
 * to its end, until isle_arena_dofork; right before the clone. */
void isle_arena_dontfork(struct isle_arena *ar, uintptr_t heap_start);
/* The heap back in the next fork (right after the clone). */
void isle_arena_dofork(struct isle_arena *ar);
/* isle_arena_dofork, and the copy unmapped (once the child exec'd). */
void isle_arena_release(struct isle_arena *ar);

/* The child: run the plan, then exec (or fn, the Lua function at stack
 * index pl->fn of L). Never returns: a failure is reported on the status
 * pipe and the child _exits. Async-signal-safe C only, except fn. */
void isle_spawn_child(lua_State *L, const struct isle_plan *pl)
    __attribute__((noreturn));

/* core.exec: run the plan (joins, names, stdio, then the command's final
 * phase) in the caller and exec; a failure longjmps to pl->inplace. */
void isle_exec_inplace(lua_State *L, const struct isle_plan *pl)
    __attribute__((noreturn));

/* The command's final phase (spawn_child.c); never returns. */
typedef void isle_command_fn(lua_State *L, const struct isle_plan *pl, int tty);

/* spawn_init.c: PID 1 forks the command, which runs `run`, and becomes the
 * init: reaps, forwards signals, exits with the command's status. Never
 * returns. */
void isle_spawn_init(lua_State *L, const struct isle_plan *pl, int tty,
                     isle_command_fn *run) __attribute__((noreturn));
/* Keep exactly `caps` in the bounding set; -1/errno. */
int isle_caps_bounding(uint64_t caps, int last_cap);
/* Exactly `caps` in the effective, permitted and inheritable sets,
 * `caps & ambient` raised as ambient (the others cleared); -1/errno. */
int isle_caps_set(uint64_t caps, uint64_t ambient, int last_cap);
/* The close-on-exec mark (or, where the kernel lacks it, the closing) of
 * every descriptor from 3 but keep; 0 or -1/errno. */
int isle_cloexec_from3(int keep);
/* Report a failure of phase `step` on the status pipe and _exit(127). */
void isle_child_fail(const struct isle_plan *pl, int step, int index, int err)
    __attribute__((noreturn));

#endif
