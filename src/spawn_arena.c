/* The plan out of the Lua heap (see spawn.c): its strings and arrays are
 * copied into one mapping of their own, and the caller's brk heap is left
 * out of the child (MADV_DONTFORK for the time of the clone). The heap is
 * what a Lua process writes most (every collection marks its objects):
 * shared copy-on-write with the child, each page it wrote after the clone
 * was a fault, and a copy with a TLB shootdown while the child still
 * held it. The child runs only C on its stack, libc's and the module's
 * data, and this arena; Lua's memory it never reads (but in fn mode, which
 * keeps the whole heap). */
#include "spawn.h"

#include <sys/mman.h>

extern char **environ;

struct arena {
  char *base; /* NULL: count only */
  size_t used;
};

static void *take(struct arena *a, const void *src, size_t n)
{
  char *p = a->base ? a->base + a->used : NULL;
  a->used += (n + 15) & ~(size_t)15;
  if (p && src) memcpy(p, src, n);
  return p;
}

static const char *str(struct arena *a, const char *s)
{
  return s ? take(a, s, strlen(s) + 1) : NULL;
}

static char **strv(struct arena *a, char *const *v)
{
  if (!v) return NULL;
  size_t n = 0;
  while (v[n])
    n++;
  char **out = take(a, NULL, sizeof(char *) * (n + 1));
  for (size_t i = 0; i < n; i++) {
    char *s = (char *)(uintptr_t)str(a, v[i]); /* exec's char *const[] */
    if (out) out[i] = s;
  }
  if (out) out[n] = NULL;
  return out;
}

static struct isle_step *steps(struct arena *a, const struct isle_step *s,
                               int n)
{
  struct isle_step *out = take(a, s, sizeof *s * (size_t)n);
  for (int i = 0; i < n; i++) {
    struct isle_step c = s[i];
    c.what = str(a, s[i].what);
    c.source = str(a, s[i].source);
    c.target = str(a, s[i].target);
    c.fstype = str(a, s[i].fstype);
    c.path = str(a, s[i].path);
    c.put_old = str(a, s[i].put_old);
    if (s[i].data) { /* write_fd's may hold NULs: len bytes and a NUL */
      char *d = take(a, NULL, s[i].len + 1);
      if (d) {
        memcpy(d, s[i].data, s[i].len);
        d[s[i].len] = '\0';
      }
      c.data = d;
    }
    if (out) out[i] = c;
  }
  return out;
}

/* Copy (or, with a->base NULL, count) what the child reads through pl's
 * pointers into *out. */
static void copy_plan(struct arena *a, const struct isle_plan *pl,
                      struct isle_plan *out)
{
  *out = *pl;
  out->prefix = str(a, pl->prefix);
  out->time_offsets = str(a, pl->time_offsets);
  out->cgroup = str(a, pl->cgroup);
  out->hostname = str(a, pl->hostname);
  out->domainname = str(a, pl->domainname);
  out->cwd = str(a, pl->cwd);
  out->argv = strv(a, pl->argv);
  out->envp = strv(a, pl->envp);
  out->caller_env = strv(a, environ); /* the PATH lookup of execvpe reads it */
  out->joins = take(a, pl->joins, sizeof *pl->joins * (size_t)pl->njoins);
  for (int i = 0; out->joins && i < pl->njoins; i++)
    out->joins[i].label = str(a, pl->joins[i].label);
  out->steps = steps(a, pl->steps, pl->nsteps);
  out->groups = take(a, pl->groups, sizeof(gid_t) * (size_t)pl->ngroups);
  out->bpf = pl->bpf ? take(a, pl->bpf, pl->bpf_len) : NULL;
}

int isle_arena_plan(struct isle_plan *pl, struct isle_arena *saved)
{
  struct arena count = {NULL, 0}, a;
  struct isle_plan copy;
  copy_plan(&count, pl, &copy);
  a.used = 0;
  a.base = mmap(NULL,
                count.used,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0);
  if (a.base == MAP_FAILED) return -1;
  copy_plan(&a, pl, &copy);
  saved->base = a.base;
  saved->size = count.used;
  saved->heap = NULL;
  saved->heap_len = 0;
  *pl = copy;
  return 0;
}

void isle_arena_dontfork(struct isle_arena *ar, uintptr_t heap_start)
{
  char *end = sbrk(0);
  if (!heap_start || end == (char *)-1 || (uintptr_t)end <= heap_start) return;
  ar->heap = (char *)heap_start;
  ar->heap_len = (size_t)((uintptr_t)end - heap_start);
  /* a failure may have marked a part: release undoes the whole range */
  (void)madvise(ar->heap, ar->heap_len, MADV_DONTFORK);
}

void isle_arena_dofork(struct isle_arena *ar)
{
  if (ar->heap) (void)madvise(ar->heap, ar->heap_len, MADV_DOFORK);
  ar->heap = NULL;
}

void isle_arena_release(struct isle_arena *ar)
{
  isle_arena_dofork(ar);
  if (ar->base) munmap(ar->base, ar->size);
  ar->base = NULL;
}
