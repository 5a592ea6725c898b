/* seccomp for containers: the BPF program of a capability set (the default
 * one generated at build time, any other built with libseccomp, dlopen'ed
 * like libnftables: a process that never asks for another set never loads
 * it), and the load in the spawned child. The policy is
 * src/seccomp_policy.c; the spawn plan carries the program's bytes. */
#include "isle.h"
#include "seccomp_policy.h"

#include <dlfcn.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "seccomp_default.h"

#ifndef SECCOMP_FILTER_FLAG_SPEC_ALLOW
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW (1UL << 2)
#endif

#define SECCOMP_LIB "libseccomp.so.2"

int isle_seccomp_load(const void *code, size_t len)
{
  struct sock_fprog prog = {(unsigned short)(len / 8),
                            (struct sock_filter *)(uintptr_t)code};
  /* SPEC_ALLOW: no forced speculative-store-bypass mitigation (crun's
   * default); EINVAL from an older kernel: without flags */
  if (syscall(SYS_seccomp,
              SECCOMP_SET_MODE_FILTER,
              SECCOMP_FILTER_FLAG_SPEC_ALLOW,
              &prog) == 0)
    return 0;
  if (errno != EINVAL) return -1;
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* Look libseccomp's functions up (RTLD_NODELETE: later dlopen calls are a
 * lookup; nothing is cached in a global). NULL, or dlerror's text. */
static const char *api_load(struct isle_scapi *a)
{
  void *h = dlopen(SECCOMP_LIB, RTLD_NOW | RTLD_NODELETE);
  if (!h) return dlerror();
  static const char *const names[] = {"seccomp_init",
                                      "seccomp_attr_set",
                                      "seccomp_arch_add",
                                      "seccomp_syscall_resolve_name",
                                      "seccomp_rule_add",
                                      "seccomp_export_bpf",
                                      "seccomp_release"};
  void **slots[] = {(void **)&a->init,
                    (void **)&a->attr_set,
                    (void **)&a->arch_add,
                    (void **)&a->resolve,
                    (void **)&a->rule_add,
                    (void **)&a->export_bpf,
                    (void **)&a->release};
  const char *err = NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0] && !err; i++)
    if (!(*slots[i] = dlsym(h, names[i]))) err = dlerror();
  dlclose(h);
  return err;
}

static uint64_t checkcaps(lua_State *L, int arg)
{
  return (uint64_t)luaL_checkinteger(L, arg);
}

/***
 * The cache key of the seccomp program of a capability set: the bits the
 * policy depends on.
 * @function seccomp_key
 * @int caps capability bits
 * @treturn int
 */
static int l_seccomp_key(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)isle_seccomp_key(checkcaps(L, 1)));
  return 1;
}

/***
 * The seccomp program (BPF bytes) of a capability set: docker's default
 * profile minus what the capabilities allow. The default set's program is
 * built into isle.core; any other is built with libseccomp.
 * @function seccomp_bpf
 * @int caps capability bits
 * @treturn[1] string the program (struct sock_filter[])
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int l_seccomp_bpf(lua_State *L)
{
  uint64_t caps = checkcaps(L, 1);
  if (isle_seccomp_key(caps) == ISLE_BPF_DEFAULT_KEY) {
    lua_pushlstring(L, (const char *)isle_bpf_default, sizeof isle_bpf_default);
    return 1;
  }
  struct isle_scapi api;
  const char *err = api_load(&api);
  if (err)
    return isle_pusherrno(
        L,
        ELIBACC,
        "seccomp: %s (install libseccomp2, or keep the default "
        "capabilities, or run privileged)",
        err);
  int *fd = isle_newfd(L);
  lua_toclose(L, -1);
  if ((*fd = memfd_create("isle-seccomp", MFD_CLOEXEC)) < 0)
    return isle_pusherrno(L, errno, "seccomp: memfd_create");
  const char *what;
  int rc = isle_seccomp_build(&api, caps, *fd, &what);
  if (rc < 0) return isle_pusherrno(L, -rc, "seccomp: %s", what);
  struct stat st;
  if (fstat(*fd, &st) < 0) return isle_pusherrno(L, errno, "seccomp: fstat");
  if (st.st_size <= 0 || st.st_size % 8 || st.st_size > 65536)
    return isle_pusherrno(L, EPROTO, "seccomp: export");
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)st.st_size);
  if (pread(*fd, p, (size_t)st.st_size, 0) != st.st_size)
    return isle_pusherrno(L, errno ? errno : EIO, "seccomp: read");
  luaL_pushresultsize(&b, (size_t)st.st_size);
  return 1;
}

void isle_open_seccomp(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"seccomp_key", l_seccomp_key},
      {"seccomp_bpf", l_seccomp_bpf},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
