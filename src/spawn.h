/* The plan of the spawn engine, shared by its parent side (spawn.c: reading
 * the plan, clone, watching the child) and its child side (spawn_child.c:
 * the steps, the init, exec). Private to those two files. */
#ifndef ISLE_SPAWN_H
#define ISLE_SPAWN_H

#include "isle.h"

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
};

/* child -> parent message */
struct isle_msg {
  int32_t type; /* MSG_* */
  int32_t step;
  int32_t index;
  int32_t err;
};
enum { MSG_ERROR = 1, MSG_READY = 2 };

/* The operations of the steps list, by the names the Lua layer uses. */
enum {
  OP_MOUNT,
  OP_UMOUNT,
  OP_MKDIR,
  OP_MKFILE,
  OP_SYMLINK,
  OP_SETATTR_RO,
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
  size_t len;                /* write_fd: length of data */
  int fd;                    /* write_fd, pty */
  unsigned short rows, cols; /* pty */
};

struct isle_join {
  int fd;
  int nstype;
  const char *label;
};

struct isle_plan {
  const char *prefix; /* of error messages: "spawn", "container" */
  int clone_flags;    /* namespaces created by clone3 */
  int unshare_flags;  /* created by the child (after joins), user excluded */
  int unshare_user;   /* child unshares the user ns itself (after joins) */
  int userns;         /* a new user ns: the child waits for its maps */
  int parent_time;    /* parent does unshare(time) -> offsets -> clone */
  int child_time;     /* the child does it (after its user ns is mapped) */
  int need_fork;      /* a stub/init process forks the command */
  int fn;             /* stack index of a Lua function (fn mode), or 0 */
  const char *time_offsets;
  const char *cgroup;
  const char *hostname, *domainname;
  const char *cwd;
  char **argv;
  char **envp;
  struct isle_join *joins;
  int njoins;
  struct isle_step *steps;
  int nsteps;
  int stdio[3]; /* source fd for 0, 1, 2 or -1 (inherit) */
  int no_new_privs;
  int set_caps;
  uint64_t caps;
  int last_cap;
  int status_w;  /* child's end of the status pipe */
  int release_r; /* child's end of the release pipe */
};

/* The child: run the plan, then exec (or fn, the Lua function at stack
 * index pl->fn of L). Never returns: a failure is reported on the status
 * pipe and the child _exits. Async-signal-safe C only, except fn. */
void isle_spawn_child(lua_State *L, const struct isle_plan *pl)
    __attribute__((noreturn));

#endif
