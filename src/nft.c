/* Net:_nft: nftables commands run through libnftables inside the handle's
 * namespace (libnftables loaded on first use, not linked). */
#include "nl.h"

#include <dlfcn.h>
#include <nftables/libnftables.h>

/* libnftables is loaded when first needed, not linked: it and its
 * dependencies (libnftnl, libmnl, libxtables, libjansson, libgmp) would
 * cost every isle process ~1.3 ms at start. RTLD_NODELETE keeps it loaded,
 * so later dlopen calls are a lookup; nothing is cached in a global. */
#define NFT_LIB "libnftables.so.1"

struct nftapi {
  __typeof__(nft_ctx_new) *ctx_new;
  __typeof__(nft_ctx_buffer_output) *buffer_output;
  __typeof__(nft_ctx_buffer_error) *buffer_error;
  __typeof__(nft_run_cmd_from_buffer) *run;
  __typeof__(nft_ctx_get_output_buffer) *get_output;
  __typeof__(nft_ctx_get_error_buffer) *get_error;
  __typeof__(nft_ctx_free) *ctx_free;
};

/* Fill api from libnftables; NULL or dlerror()'s message. */
static const char *nft_load(struct nftapi *api)
{
  void *h = dlopen(NFT_LIB, RTLD_NOW | RTLD_NODELETE);
  if (!h) return dlerror();
  static const char *const names[] = {"nft_ctx_new",
                                      "nft_ctx_buffer_output",
                                      "nft_ctx_buffer_error",
                                      "nft_run_cmd_from_buffer",
                                      "nft_ctx_get_output_buffer",
                                      "nft_ctx_get_error_buffer",
                                      "nft_ctx_free"};
  void **slots[] = {(void **)&api->ctx_new,
                    (void **)&api->buffer_output,
                    (void **)&api->buffer_error,
                    (void **)&api->run,
                    (void **)&api->get_output,
                    (void **)&api->get_error,
                    (void **)&api->ctx_free};
  const char *err = NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    *slots[i] = dlsym(h, names[i]);
    if (!*slots[i]) {
      err = dlerror();
      break;
    }
  }
  dlclose(h); /* RTLD_NODELETE: stays mapped */
  return err;
}

struct nftarg {
  const struct nftapi *api;
  const char *cmds;
  char out[8192];
  char errbuf[1024];
  int rc;
};

static int nft_inside(void *p)
{
  struct nftarg *a = p;
  const struct nftapi *api = a->api;
  struct nft_ctx *ctx = api->ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) {
    errno = ENOMEM;
    return -1;
  }
  api->buffer_output(ctx);
  api->buffer_error(ctx);
  a->rc = api->run(ctx, a->cmds);
  snprintf(a->out, sizeof a->out, "%s", api->get_output(ctx));
  snprintf(a->errbuf, sizeof a->errbuf, "%s", api->get_error(ctx));
  api->ctx_free(ctx);
  return 0;
}

/***
 * Run nftables commands through libnftables inside the Net's namespace.
 * @function Net:_nft
 * @string cmds nft syntax, e.g. "list table inet isle"
 * @string[opt] what prefix of error messages
 * @treturn[1] string output
 * @return[2] nil
 * @treturn[2] string message (the first line of nft's error)
 * @treturn[2] int errno (EINVAL for a refused ruleset, ELIBACC when
 * libnftables cannot be loaded)
 */
static int net_nft(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  const char *cmds = luaL_checkstring(L, 2);
  const char *what = luaL_optstring(L, 3, "nft");
  const char *where;
  struct nftapi api;
  const char *lerr = nft_load(&api);
  if (lerr) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", what, lerr);
    lua_pushinteger(L, ELIBACC);
    return 3;
  }
  struct nftarg *a = lua_newuserdatauv(L, sizeof *a, 0);
  a->api = &api;
  a->cmds = cmds;
  a->out[0] = a->errbuf[0] = '\0';
  a->rc = 0;
  if (isle_innetns(net, nft_inside, a, &where) < 0)
    return isle_pusherrno(
        L, errno, "%s%s%s", what, where ? ": " : "", where ? where : "");
  if (a->rc != 0) {
    char *nl = strchr(a->errbuf, '\n');
    if (nl) *nl = '\0';
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", what, a->errbuf[0] ? a->errbuf : "failed");
    lua_pushinteger(L, strstr(a->errbuf, "No such file") ? ENOENT : EINVAL);
    return 3;
  }
  lua_pushstring(L, a->out);
  return 1;
}

void isle_open_nft(lua_State *L, int methods)
{
  static const luaL_Reg funcs[] = {
      {"_nft", net_nft},
      {NULL, NULL},
  };
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
