--- Link emulation of a lab: which kernel mechanism carries each impairment
-- of a link end, and setting an end's impairments (at `up`, by `link_set`,
-- by `apply`).
--
-- Two backends, chosen once per lab when it comes up (a probe of the
-- kernel, recorded in the lab's model):
--
-- * `"netem"` (the kernel has sch_netem): delay, jitter, loss and rate in
--   one netem root qdisc on each end's egress.
-- * `"tbf+nft"` (no sch_netem, as on kernels built without modules): rate
--   in a tbf root qdisc on each end's egress; loss as an nftables rule on
--   each end's ingress (`numgen random mod 10000 < N drop`, table `netdev
--   isle`, one base chain `if_IFNAME` per interface); delay and jitter
--   cannot be emulated and are refused before anything is built.
--
-- Either way an impairment of a lab link applies in each direction (both
-- ends), as netem on both ends does: `loss = 30` drops about 30 % each way.
-- A cut (`link_set{cut = true}`) is an nftables `drop` rule in the same
-- chain on both backends: the carrier stays up, nothing passes.
--
-- Every change of an end's nftables state rewrites its chain in one
-- transaction. The first transaction in a namespace also adds an empty
-- ingress chain on `lo` (`keep`): netfilter patches the kernel's code when
-- the first netdev ingress hook of the machine comes or the last one goes
-- (3 to 11 ms); a hook that stays keeps later changes under a millisecond.
-- Tables and qdiscs live in the lab's namespaces and die with them.
-- @module isle.lab.impair
local core = require "isle.core"
local net = require "isle.net"

local M = {}

local pairs, ipairs, tostring, tonumber, next = pairs, ipairs, tostring, tonumber, next
local format, concat = string.format, table.concat

M.NETEM, M.TBF = "netem", "tbf+nft"
local NETEM = M.NETEM

--- The impairments a link end carries (the fields of `lab:link`).
M.FIELDS = { "delay", "jitter", "loss", "rate" }

-- -------------------------------------------------------------------------
-- the backend

--- Why delay and jitter cannot be had on this kernel (its netem missing).
-- @treturn string
function M.netem_missing()
  local rel = (core.readfile("/proc/sys/kernel/osrelease") or "?"):gsub("%s+$", "")
  if not core.ino("/proc/modules") then
    return format("delay and jitter need sch_netem; this kernel (%s) has no netem and "
      .. "cannot load modules", rel)
  end
  return format("delay and jitter need the kernel module sch_netem, which this kernel (%s) "
    .. "could not load (modprobe sch_netem)", rel)
end

--- The backend of the kernel, asked through Net handle `n` (one netlink
-- message that changes nothing; where modules exist, it loads sch_netem).
-- @treturn[1] string `"netem"` or `"tbf+nft"`
-- @return[2] nil, message, errno (EPERM: not allowed to ask here)
function M.probe(n)
  local ok, msg, e = n:qdisc_probe("netem")
  if ok == nil then
    return nil, msg, e
  end
  return ok and NETEM or M.TBF
end

--- The backend asked from the caller's own network namespace, or nil when
-- it cannot be asked there (then the lab's own namespace is asked).
-- Tests set `ISLE_IMPAIR=tbf+nft` to have that backend where netem exists.
function M.probe_here()
  if os.getenv("ISLE_IMPAIR") == M.TBF then
    return M.TBF
  end
  local n = net.open(nil)
  if not n then
    return nil
  end
  local b = M.probe(n)
  n:close()
  return b
end

--- Why end state `st` cannot be had with `backend` (nil when it can).
function M.refusal(st, backend)
  if backend ~= NETEM and (st.delay or st.jitter) then
    return M.netem_missing()
  end
end

-- -------------------------------------------------------------------------
-- an end's state → qdisc and nft parts

-- What the qdisc carries and what nft carries of state st (nil when nothing).
local function split(st, backend)
  local q, f = {}, {}
  if backend == NETEM then
    q.delay, q.jitter, q.loss, q.rate = st.delay, st.jitter, st.loss, st.rate
  else
    q.rate, f.loss = st.rate, st.loss
  end
  if st.cut then f.cut = true end
  return next(q) and q or nil, next(f) and f or nil
end
M.split = split

local function same(a, b)
  if a == nil or b == nil then
    return a == b
  end
  for k, v in pairs(a) do
    if b[k] ~= v then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- nft 1.0 takes no quoted chain names: what is not [%w] is escaped (_XX)
local function chain(ifname)
  return "if_" .. ifname:gsub("[^%w]", function(c)
    return format("_%02x", c:byte())
  end)
end
M.chain = chain

local KEEP = "add table netdev isle\nadd chain netdev isle keep { type filter hook ingress "
  .. 'device "lo" priority filter; policy accept; }\n'

--- The nft text that gives end `ifname` its receive-side state `f` (`cut`,
-- `loss` in percent), in one transaction; `f` nil clears it (whether or
-- not the chain is there: an `add` makes a missing one first).
function M.nft_text(ifname, f)
  local c = chain(ifname)
  if not f then
    return format("add table netdev isle\nadd chain netdev isle %s\ndelete chain netdev isle %s\n",
      c, c)
  end
  local t = { KEEP, format('add chain netdev isle %s { type filter hook ingress device "%s" '
    .. "priority filter; policy accept; }", c, ifname), "flush chain netdev isle " .. c }
  if f.cut then
    t[#t + 1] = format('add rule netdev isle %s counter drop comment "cut"', c)
  end
  local loss = tonumber(f.loss)
  if loss and loss > 0 then
    local n = math.floor(loss * 100 + 0.5) -- 0.01 % steps
    if n >= 10000 then
      t[#t + 1] = format('add rule netdev isle %s counter drop comment "loss"', c)
    else
      t[#t + 1] = format('add rule netdev isle %s numgen random mod 10000 < %d counter drop '
        .. 'comment "loss"', c, n)
    end
  end
  return concat(t, "\n") .. "\n"
end

--- Give end `ifname` (Net `n`) its receive-side state `f` (as `nft_text`;
-- nil clears it) in one transaction, written to netlink directly
-- (`Net:_ingress`: no libnftables to load, the cost of a command like
-- `isle link`); a loss under 0.01 % goes through `nft_text`.
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.nft_end(n, ifname, f, what)
  local loss = f and tonumber(f.loss)
  local steps = loss and loss > 0 and math.floor(loss * 100 + 0.5) or 0
  if loss and loss > 0 and steps == 0 then
    return n:nft(M.nft_text(ifname, f), what)
  end
  return n:_ingress(chain(ifname), ifname, f and f.cut or false, math.min(steps, 10000), what)
end

--- Give end `ifname` (Net `n`) its qdisc part `q` (nil: none).
local function qdisc(n, ifname, q, backend, mtu)
  if not q then
    local ok, msg, e = n:qdisc_clear(ifname)
    if ok == nil then return nil, msg, e end
    return true
  end
  if backend == NETEM then
    return n:netem(ifname, q)
  end
  local rate = net._tbf_rate(q.rate)
  local burst, limit = net._tbf_size(rate, mtu)
  return n:_tbf(ifname, rate, burst, limit)
end

--- Change end `ifname` (in Net `n`) from state `old` to state `new`
-- (tables of `delay`, `jitter`, `loss`, `rate`, `cut`): only the parts
-- that differ are touched.
-- @tparam Net n
-- @string ifname
-- @tparam table|nil old {} when the end has nothing yet; nil when unknown
-- (everything is set)
-- @tparam table new
-- @string backend
-- @int[opt] mtu the link's MTU (for tbf's bucket)
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.set_end(n, ifname, old, new, backend, mtu)
  local oq, of = split(old or {}, backend)
  local nq, nf = split(new, backend)
  local ok, msg, e = true, nil, nil
  if old == nil or not same(oq, nq) then
    ok, msg, e = qdisc(n, ifname, nq, backend, mtu)
  end
  if ok and (old == nil or not same(of, nf)) then
    ok, msg, e = M.nft_end(n, ifname, nf, "impair " .. ifname)
  end
  if not ok then
    return nil, msg, e
  end
  return true
end

--- At `up`: give a new end its qdisc, and return the nft text of its
-- receive side for the namespace's one transaction (nil when none).
-- @treturn[1] true|string
-- @return[2] nil, message, errno
function M.up_end(n, ifname, st, backend, mtu)
  local q, f = split(st, backend)
  if q then
    local ok, msg, e = qdisc(n, ifname, q, backend, mtu)
    if not ok then return nil, msg, e end
  end
  return f and M.nft_text(ifname, f) or true
end

--- The impairments of state `st` as text: "delay 10ms, loss 30%" ("" when
-- none).
function M.text(st)
  local t = {}
  for _, k in ipairs(M.FIELDS) do
    if st[k] ~= nil then
      t[#t + 1] = k .. " " .. tostring(st[k]) .. (k == "loss" and "%" or "")
    end
  end
  return concat(t, ", ")
end

--- Which mechanisms carry state `st` with `backend`: "netem", "tbf",
-- "nft", "tbf+nft", ... or nil when nothing is set.
function M.carriers(st, backend)
  local q, f = split(st, backend)
  local t = {}
  if q then t[#t + 1] = backend == NETEM and "netem" or "tbf" end
  if f then t[#t + 1] = "nft" end
  return #t > 0 and concat(t, "+") or nil
end

return M
