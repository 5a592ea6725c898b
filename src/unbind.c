/* Many bind-mounted namespace files removed at once: umount2(MNT_DETACH)
 * and unlink(2) of each, spread over a few threads. Each unmount waits for
 * an RCU grace period in the kernel (namespace_unlock ->
 * synchronize_rcu_expedited; dropping a mount namespace's last reference
 * waits for another): one after the other, a 1,000-host lab's `down` spent
 * seconds asleep there. Concurrent waiters share one grace period, so a
 * few threads remove the files in a fraction of the time. The threads
 * share the caller's mount namespace and working directory (CLONE_FS); no
 * Lua runs in them. */
#include "isle.h"

#include <pthread.h>
#include <sys/mount.h>

#define UNBIND_THREADS_MAX 64

struct unbind_job {
  const char **paths;
  int *errs; /* errno of each path's unlink (0: gone, or never there) */
  size_t n;
  size_t next; /* the next path to take */
  pthread_mutex_t lock;
};

static void unbind_one(struct unbind_job *job, size_t i)
{
  umount2(job->paths[i],
          MNT_DETACH); /* a plain file (no mount) still unlinks */
  if (unlink(job->paths[i]) < 0 && errno != ENOENT) job->errs[i] = errno;
}

static void *unbind_worker(void *arg)
{
  struct unbind_job *job = arg;
  for (;;) {
    pthread_mutex_lock(&job->lock);
    size_t i = job->next++;
    pthread_mutex_unlock(&job->lock);
    if (i >= job->n) return NULL;
    unbind_one(job, i);
  }
}

/***
 * Unmount (MNT_DETACH) and unlink each of many files at once: the
 * namespace files a lab bound (`/run/netns/LAB-*`, its uts and mount
 * namespaces), in `threads` threads sharing the kernel's grace periods.
 * A file already gone counts as removed.
 * @function unbind_many
 * @tparam {string,...} paths
 * @int[opt=16] threads at most 64
 * @treturn table the failures: path → message (empty when all went)
 * @raise on a path that is no string
 */
static int l_unbind_many(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer nthreads = luaL_optinteger(L, 2, 16);
  luaL_argcheck(L,
                nthreads >= 1 && nthreads <= UNBIND_THREADS_MAX,
                2,
                "threads out of range");
  size_t n = (size_t)luaL_len(L, 1);
  struct unbind_job job = {.n = n};
  job.paths = lua_newuserdatauv(L, (n + 1) * sizeof *job.paths, 0);
  job.errs = lua_newuserdatauv(L, (n + 1) * sizeof *job.errs, 0);
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_argerror(L, 1, "list of paths expected");
    job.paths[i] = lua_tostring(L, -1); /* kept alive by the table at 1 */
    job.errs[i] = 0;
    lua_pop(L, 1);
  }
  pthread_mutex_init(&job.lock, NULL);
  pthread_t tids[UNBIND_THREADS_MAX];
  size_t started = 0;
  if ((size_t)nthreads > n) nthreads = (lua_Integer)n;
  for (lua_Integer t = 1; t < nthreads; t++) /* the caller is one of them */
    if (pthread_create(&tids[started], NULL, unbind_worker, &job) == 0)
      started++;
  unbind_worker(&job);
  for (size_t t = 0; t < started; t++)
    pthread_join(tids[t], NULL);
  pthread_mutex_destroy(&job.lock);
  lua_newtable(L);
  for (size_t i = 0; i < n; i++) {
    if (job.errs[i] == 0) continue;
    lua_pushfstring(L, "unlink %s: %s", job.paths[i], strerror(job.errs[i]));
    lua_setfield(L, -2, job.paths[i]);
  }
  return 1;
}

void isle_open_unbind(lua_State *L)
{
  static const luaL_Reg fns[] = {
      {"unbind_many", l_unbind_many},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
