/* Net:_ingress: a link end's receive-side rules (a cut, a loss) in table
 * netdev isle, as one nf_tables transaction written straight to netlink:
 * the same objects `isle.lab.impair.nft_text` has libnftables make, without
 * loading libnftables (its load and first context cost a command like
 * `isle link` several times the rest of its work). */
#include "nl.h"

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ING_BUF   4096
#define ING_DEPTH 8

struct ingmsg {
  unsigned char buf[ING_BUF];
  size_t len;
  int overflow;
  size_t nest[ING_DEPTH]; /* offsets of the open nested attributes */
  int depth;
  uint32_t seq;
  int nmsgs;
};

static void *ing_room(struct ingmsg *m, size_t n)
{
  size_t al = NLMSG_ALIGN(n);
  if (m->overflow || m->len + al > sizeof m->buf) {
    m->overflow = 1;
    return NULL;
  }
  void *p = m->buf + m->len;
  memset(p, 0, al);
  m->len += al;
  return p;
}

static void ing_attr(struct ingmsg *m, uint16_t type, const void *data,
                     size_t n)
{
  struct nlattr *a = ing_room(m, NLA_HDRLEN + n);
  if (!a) return;
  a->nla_type = type;
  a->nla_len = (uint16_t)(NLA_HDRLEN + n);
  if (n) memcpy((unsigned char *)a + NLA_HDRLEN, data, n);
}

static void ing_str(struct ingmsg *m, uint16_t type, const char *s)
{
  ing_attr(m, type, s, strlen(s) + 1);
}

static void ing_u32(struct ingmsg *m, uint16_t type, uint32_t v)
{
  uint32_t be = htonl(v);
  ing_attr(m, type, &be, sizeof be);
}

static void ing_open(struct ingmsg *m, uint16_t type)
{
  size_t at = m->len;
  struct nlattr *a = ing_room(m, NLA_HDRLEN);
  if (!a || m->depth >= ING_DEPTH) {
    m->overflow = 1;
    return;
  }
  a->nla_type = (uint16_t)(type | NLA_F_NESTED);
  m->nest[m->depth++] = at;
}

static void ing_close(struct ingmsg *m)
{
  if (m->overflow || m->depth == 0) return;
  size_t at = m->nest[--m->depth];
  struct nlattr *a = (struct nlattr *)(m->buf + at);
  a->nla_len = (uint16_t)(m->len - at);
}

/* Start a message of nf_tables type `type` (or a batch marker). */
static size_t ing_begin(struct ingmsg *m, uint16_t type, uint16_t flags,
                        uint8_t family, uint16_t res_id)
{
  size_t at = m->len;
  struct nlmsghdr *h = ing_room(m, NLMSG_HDRLEN);
  struct nfgenmsg *g = ing_room(m, sizeof *g);
  if (!h || !g) return at;
  h->nlmsg_type = type;
  h->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
  h->nlmsg_seq = ++m->seq;
  g->nfgen_family = family;
  g->version = NFNETLINK_V0;
  g->res_id = htons(res_id);
  m->nmsgs++;
  return at;
}

static void ing_end(struct ingmsg *m, size_t at)
{
  if (m->overflow) return;
  struct nlmsghdr *h = (struct nlmsghdr *)(m->buf + at);
  h->nlmsg_len = (uint32_t)(m->len - at);
}

static size_t ing_nft(struct ingmsg *m, int msg, uint16_t flags)
{
  return ing_begin(m,
                   (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | msg),
                   (uint16_t)(flags | NLM_F_ACK),
                   NFPROTO_NETDEV,
                   0);
}

static void ing_table(struct ingmsg *m)
{
  size_t at = ing_nft(m, NFT_MSG_NEWTABLE, NLM_F_CREATE);
  ing_str(m, NFTA_TABLE_NAME, "isle");
  ing_u32(m, NFTA_TABLE_FLAGS, 0);
  ing_end(m, at);
}

/* add chain netdev isle NAME [{ type filter hook ingress device DEV
 * priority filter; policy accept; }] */
static void ing_chain(struct ingmsg *m, const char *name, const char *dev)
{
  size_t at = ing_nft(m, NFT_MSG_NEWCHAIN, NLM_F_CREATE);
  ing_str(m, NFTA_CHAIN_TABLE, "isle");
  ing_str(m, NFTA_CHAIN_NAME, name);
  if (dev) {
    ing_open(m, NFTA_CHAIN_HOOK);
    ing_u32(m, NFTA_HOOK_HOOKNUM, NF_NETDEV_INGRESS);
    ing_u32(m, NFTA_HOOK_PRIORITY, 0);
    ing_str(m, NFTA_HOOK_DEV, dev);
    ing_close(m);
    ing_u32(m, NFTA_CHAIN_POLICY, NF_ACCEPT);
    ing_str(m, NFTA_CHAIN_TYPE, "filter");
  }
  ing_end(m, at);
}

static void ing_chain_op(struct ingmsg *m, int msg, const char *name)
{
  size_t at = ing_nft(m, msg, 0);
  if (msg == NFT_MSG_DELRULE) {
    ing_str(m, NFTA_RULE_TABLE, "isle");
    ing_str(m, NFTA_RULE_CHAIN, name);
  } else {
    ing_str(m, NFTA_CHAIN_TABLE, "isle");
    ing_str(m, NFTA_CHAIN_NAME, name);
  }
  ing_end(m, at);
}

static void ing_expr(struct ingmsg *m, const char *name)
{
  ing_open(m, NFTA_LIST_ELEM);
  ing_str(m, NFTA_EXPR_NAME, name);
  ing_open(m, NFTA_EXPR_DATA);
}

static void ing_expr_end(struct ingmsg *m)
{
  ing_close(m); /* data */
  ing_close(m); /* elem */
}

/* add rule netdev isle CHAIN [numgen random mod 10000 < LOSS] counter
 * drop comment "COMMENT" (libnftables' expressions, its comment as
 * libnftnl's user data: type 0, length, the text and its NUL) */
static void ing_rule(struct ingmsg *m, const char *chain, uint32_t loss,
                     const char *comment)
{
  size_t at = ing_nft(m, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
  ing_str(m, NFTA_RULE_TABLE, "isle");
  ing_str(m, NFTA_RULE_CHAIN, chain);
  ing_open(m, NFTA_RULE_EXPRESSIONS);
  if (loss) {
    ing_expr(m, "numgen");
    ing_u32(m, NFTA_NG_DREG, NFT_REG_1);
    ing_u32(m, NFTA_NG_MODULUS, 10000);
    ing_u32(m, NFTA_NG_TYPE, NFT_NG_RANDOM);
    ing_expr_end(m);
    ing_expr(m, "byteorder");
    ing_u32(m, NFTA_BYTEORDER_SREG, NFT_REG_1);
    ing_u32(m, NFTA_BYTEORDER_DREG, NFT_REG_1);
    ing_u32(m, NFTA_BYTEORDER_OP, NFT_BYTEORDER_HTON);
    ing_u32(m, NFTA_BYTEORDER_LEN, 4);
    ing_u32(m, NFTA_BYTEORDER_SIZE, 4);
    ing_expr_end(m);
    ing_expr(m, "cmp");
    ing_u32(m, NFTA_CMP_SREG, NFT_REG_1);
    ing_u32(m, NFTA_CMP_OP, NFT_CMP_LT);
    ing_open(m, NFTA_CMP_DATA);
    uint32_t be = htonl(loss);
    ing_attr(m, NFTA_DATA_VALUE, &be, sizeof be);
    ing_close(m);
    ing_expr_end(m);
  }
  ing_expr(m, "counter");
  uint64_t zero = 0;
  ing_attr(m, NFTA_COUNTER_BYTES, &zero, sizeof zero);
  ing_attr(m, NFTA_COUNTER_PACKETS, &zero, sizeof zero);
  ing_expr_end(m);
  ing_expr(m, "immediate");
  ing_u32(m, NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
  ing_open(m, NFTA_IMMEDIATE_DATA);
  ing_open(m, NFTA_DATA_VERDICT);
  ing_u32(m, NFTA_VERDICT_CODE, NF_DROP);
  ing_close(m);
  ing_close(m);
  ing_expr_end(m);
  ing_close(m); /* expressions */
  unsigned char ud[32];
  size_t n = strlen(comment) + 1;
  if (n > sizeof ud - 2) n = sizeof ud - 2;
  ud[0] = 0; /* NFTNL_UDATA_RULE_COMMENT */
  ud[1] = (unsigned char)n;
  memcpy(ud + 2, comment, n - 1);
  ud[n + 1] = '\0';
  ing_attr(m, NFTA_RULE_USERDATA, ud, n + 2);
  ing_end(m, at);
}

struct ingarg {
  struct ingmsg *m;
  int kerr; /* the kernel's errno for the transaction, or 0 */
};

/* Send the batch from inside the namespace and collect its acks: nfnetlink
 * handles a batch within sendmsg, so every answer is queued on return. */
static int ing_send(void *p)
{
  struct ingarg *a = p;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return -1;
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  ssize_t w =
      sendto(fd, a->m->buf, a->m->len, 0, (struct sockaddr *)&sa, sizeof sa);
  if (w < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  unsigned char rb[8192];
  for (;;) {
    ssize_t r = recv(fd, rb, sizeof rb, MSG_DONTWAIT);
    if (r <= 0) break;
    int len = (int)r;
    for (struct nlmsghdr *h = (struct nlmsghdr *)rb; NLMSG_OK(h, len);
         h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      const struct nlmsgerr *e = NLMSG_DATA(h);
      if (e->error < 0 && a->kerr == 0) a->kerr = -e->error;
    }
  }
  close(fd);
  return 0;
}

/***
 * Give interface `ifname` its receive-side rules in table netdev isle,
 * chain `chain` (a cut, a loss in 0.01 % steps), in one transaction; with
 * neither, remove the chain. The same rules as `isle.lab.impair.nft_text`.
 * @function Net:_ingress
 * @string chain the chain's name (`if_IFNAME`)
 * @string ifname
 * @bool cut
 * @int loss 0 to 10000 (10000: everything)
 * @string[opt] what prefix of error messages ("ingress IFNAME")
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int net_ingress(lua_State *L)
{
  struct isle_net *net = isle_checknet(L, 1);
  const char *chain = luaL_checkstring(L, 2);
  const char *ifname = luaL_checkstring(L, 3);
  int cut = lua_toboolean(L, 4);
  lua_Integer loss = luaL_optinteger(L, 5, 0);
  luaL_argcheck(L, loss >= 0 && loss <= 10000, 5, "0 to 10000 expected");
  const char *what = luaL_optstring(L, 6, NULL);
  luaL_argcheck(L, strlen(chain) < NFT_CHAIN_MAXNAMELEN, 2, "too long");
  struct ingmsg *m = lua_newuserdatauv(L, sizeof *m, 0);
  memset(m, 0, sizeof *m);
  size_t b =
      ing_begin(m, NFNL_MSG_BATCH_BEGIN, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
  ing_end(m, b);
  ing_table(m);
  if (!cut && loss == 0) { /* add the chain (a missing one), delete it */
    ing_chain(m, chain, NULL);
    ing_chain_op(m, NFT_MSG_DELCHAIN, chain);
  } else {
    ing_chain(m, "keep", "lo");
    ing_chain(m, chain, ifname);
    ing_chain_op(m, NFT_MSG_DELRULE, chain);
    if (cut) ing_rule(m, chain, 0, "cut");
    if (loss >= 10000)
      ing_rule(m, chain, 0, "loss");
    else if (loss > 0)
      ing_rule(m, chain, (uint32_t)loss, "loss");
  }
  b = ing_begin(m, NFNL_MSG_BATCH_END, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
  ing_end(m, b);
  if (m->overflow) return luaL_error(L, "_ingress: message too long");
  struct ingarg a = {.m = m, .kerr = 0};
  const char *where;
  if (!what) what = lua_pushfstring(L, "ingress %s", ifname);
  if (isle_innetns(net, ing_send, &a, &where) < 0)
    return isle_pusherrno(
        L, errno, "%s%s%s", what, where ? ": " : "", where ? where : "");
  if (a.kerr) return isle_pusherrno(L, a.kerr, "%s: nf_tables", what);
  lua_pushboolean(L, 1);
  return 1;
}

void isle_open_nft_ingress(lua_State *L, int methods)
{
  static const luaL_Reg funcs[] = {
      {"_ingress", net_ingress},
      {NULL, NULL},
  };
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
