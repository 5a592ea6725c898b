/* isle's default seccomp policy: default ALLOW and a deny list derived from
 * docker's default profile (moby/profiles seccomp/default.json). A syscall
 * of the table is denied unless the process keeps one of the listed
 * capabilities. Shared by the C module (seccomp.c: libseccomp dlopen'ed,
 * the load in the spawned child) and the build-time generator
 * (gen/seccomp_gen.c: libseccomp linked, the default program as a C array).
 * Pure C: no Lua here. */
#ifndef ISLE_SECCOMP_POLICY_H
#define ISLE_SECCOMP_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include <seccomp.h>

/* The libseccomp functions the builder uses, looked up by the caller
 * (linked in the generator, dlopen'ed in isle.core); lives on the stack. */
struct isle_scapi {
  scmp_filter_ctx (*init)(uint32_t);
  int (*attr_set)(scmp_filter_ctx, enum scmp_filter_attr, uint32_t);
  int (*arch_add)(scmp_filter_ctx, uint32_t);
  int (*resolve)(const char *);
  int (*rule_add)(scmp_filter_ctx, uint32_t, int, unsigned int, ...);
  int (*export_bpf)(const scmp_filter_ctx, int);
  void (*release)(scmp_filter_ctx);
};

/* The capabilities the filter depends on: the cache key of a program is
 * caps & this mask (docker's default set, with or without e.g. net_admin,
 * is one key). */
uint64_t isle_seccomp_key(uint64_t caps);

/* Build the filter for `caps` (bit N = capability N kept) with the API `a`
 * and write its BPF program (struct sock_filter[]) to fd (libseccomp 2.5
 * exports to a descriptor; the callers use a memfd). 0, or -errno with
 * *what naming the step. */
int isle_seccomp_build(const struct isle_scapi *a, uint64_t caps, int fd,
                       const char **what);

/* The capability set the default program is generated for: docker's
 * default set without mknod (the container's default). */
#define ISLE_SECCOMP_DEFAULT_CAPS 0xa00425fbULL

#endif
