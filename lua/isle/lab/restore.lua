--- Undoing an aborted apply (`journal.rollback` → `isle.lab.apply.restore`):
-- each RESTORE kind of record puts back what that step of `apply` changed
-- — from the record's own words (the old address, route, state) or from
-- the model the apply replaced (`model.prev`). Also the helpers the steps
-- and their undoing share.
-- @module isle.lab.restore
local sys = require "isle._sys"
local ns = require "isle.ns"
local net = require "isle.net"
local journal = require "isle.lab.journal"
local state = require "isle.lab.state"
local build = require "isle.lab.build"
local impair = require "isle.lab.impair"
local links = require "isle.lab.links"

local M = {}

local ipairs, pairs, tostring, tonumber, setmetatable =
  ipairs, pairs, tostring, tonumber, setmetatable
local concat = table.concat
local ESRCH, ENOENT, ENODEV, EEXIST, EADDRNOTAVAIL = 3, 2, 19, 17, 99

-- -------------------------------------------------------------------------
-- Net handles by namespace ("-": the switches')

local Nets = {}
Nets.__index = Nets

local function nets_new(name)
  return setmetatable({ name = name, h = {} }, Nets)
end

function Nets:get(where)
  local n = self.h[where]
  if n then return n end
  local msg, e
  n, msg, e = net.open(where == "-" and journal.STATE_DIR .. "/" .. self.name .. "/net" or where)
  if not n then return nil, msg, e end
  self.h[where] = n
  return n
end

function Nets:close()
  for _, n in pairs(self.h) do n:close() end
  self.h = {}
end
Nets.__close = Nets.close

local function where(en)
  return en.netns or "-"
end

-- The triple ok, msg, e, made true when it failed because it is already
-- so (errno e in the list `fine`).
local function tolerate(fine, ok, msg, e)
  if ok then return true end
  for _, x in ipairs(fine) do
    if e == x then return true end
  end
  return nil, msg, e
end

-- The words of state st for a record: k=v (v "-" for none), up=, cut=.
local function state_words(st)
  local w = { "up=" .. (st.down and 0 or 1), "cut=" .. (st.cut and 1 or 0) }
  for _, k in ipairs(impair.FIELDS) do
    w[#w + 1] = k .. "=" .. (st[k] == nil and "-" or tostring(st[k]))
  end
  return concat(w, " ")
end

local function words_state(r, from)
  local st = {}
  for i = from, #r do
    local k, v = r[i]:match("^([%w_]+)=(.*)$")
    if k == "up" then
      st.down = v == "0" or nil
    elseif k == "cut" then
      st.cut = v == "1" or nil
    elseif k and v ~= "-" then
      st[k] = tonumber(v) or v
    end
  end
  return st
end

-- Run fn inside the uts namespace of host `host` of lab `name`.
local function in_uts(name, host, fn)
  local home <close>, msg, e = build._new_home()
  if not home then return nil, msg, e end
  local h
  h, msg, e = ns.open_ns(journal.STATE_DIR .. "/" .. name .. "/ns/" .. host .. ".uts", "uts")
  if not h then return nil, msg, e end
  local ok
  ok, msg, e = ns.setns(h, "uts")
  h:close()
  if ok then
    home.moved.uts = true
    ok, msg, e = fn()
  end
  return ok, msg, e
end

-- -------------------------------------------------------------------------
-- undoing phase A (journal.rollback → apply.restore)

local function prev_plan(name, ctx)
  if ctx.prev == nil then
    ctx.prev = journal.read_model(name, "model.prev") or false
  end
  return ctx.prev or nil
end

local function find_key(p, key)
  for _, l in ipairs(p and p.links or {}) do
    if state.link_key(l) == key then return l end
  end
end

-- Make link l of plan p again (state st), as it was before the apply.
local function relink(p, l, st)
  local nets <close> = nets_new(p.name)
  local a = l[1].host and l[1] or l[2]
  local b = a == l[1] and l[2] or l[1]
  local na, msg, e = nets:get(where(a))
  if not na then return nil, msg, e end
  if not na:link(a.ifname) then
    local spec = { name = a.ifname, kind = "veth", mtu = l.mtu,
      peer = { name = b.ifname, mtu = l.mtu, netns = b.netns or
        journal.STATE_DIR .. "/" .. p.name .. "/net" } }
    local ok
    ok, msg, e = na:link_add(spec)
    if not ok and e == EEXIST then
      -- b's name is held by the end of a link the apply made to a host it
      -- added: that host's namespace is gone, but the kernel tears it
      -- down (and the pair with it) in the background: wait until it has
      -- (deleting the end could race that teardown and fail the same way)
      local settled
      settled, msg, e = require("isle.core").netns_settle()
      if settled then
        local nb = nets:get(where(b))
        if nb and nb:link(b.ifname) then
          nb:link_del(b.ifname)
        end
        ok, msg, e = na:link_add(spec)
      end
    end
    if not ok then return nil, msg, e end
  end
  for _, en in ipairs { a, b } do
    local n
    n, msg, e = nets:get(where(en))
    if not n then return nil, msg, e end
    local ok
    ok, msg, e = n:link_set(en.ifname, { up = true, master = en.switch })
    for _, cidr in ipairs(en.ips) do
      if ok then ok, msg, e = tolerate({ EEXIST }, n:addr_add(en.ifname, cidr)) end
    end
    if not ok then return nil, msg, e end
  end
  local ok
  ok, msg, e = links.act(p, l, nil, st)
  for _, en in ipairs { a, b } do
    for _, h in ipairs(ok and en.host and p.hosts or {}) do
      if h.name == en.host then
        local n = nets:get(en.netns)
        for _, r in ipairs(n and h.routes or {}) do
          n:route_add { dst = r.dst, via = r.via, dev = r.dev, metric = r.metric }
        end
      end
    end
  end
  return ok, msg, e
end

local RESTORE = {}

function RESTORE.model(name)
  local dir = journal.STATE_DIR .. "/" .. name
  if not sys.exists(dir .. "/model.prev") then return true end
  return os.rename(dir .. "/model.prev", dir .. "/model")
end

function RESTORE.bridge(name, r)
  local n, msg, e = net.open(journal.STATE_DIR .. "/" .. name .. "/net")
  if not n then return nil, msg, e end
  local ok
  ok, msg, e = tolerate({ ENODEV }, n:link_del(r[2]))
  n:close()
  return ok, msg, e
end

function RESTORE.veth(name, r)
  local nets <close> = nets_new(name)
  for _, x in ipairs { { r[2], r[3] }, { r[4], r[5] } } do
    local n = x[1] and nets:get(x[1])
    if n then impair.nft_end(n, x[2], nil, "link " .. x[2]) end
  end
  local n, msg, e = nets:get(r[2])
  if not n then return tolerate({ ENOENT }, n, msg, e) end
  return tolerate({ ENODEV }, n:link_del(r[3]))
end

function RESTORE.unlink(name, r, ctx)
  local p = prev_plan(name, ctx)
  local l = find_key(p, r[2])
  if not l then return true end
  return relink(p, l, words_state(r, 3))
end

function RESTORE.impair(name, r, ctx)
  local p = prev_plan(name, ctx)
  local l = find_key(p, r[2])
  if not l then return true end
  return links.act(p, l, nil, words_state(r, 3))
end

local function with_net(name, netns, fn)
  local nets <close> = nets_new(name)
  local n, msg, e = nets:get(netns)
  if not n then return tolerate({ ENOENT }, n, msg, e) end
  return fn(n)
end

function RESTORE.mtu(name, r)
  return with_net(name, r[2], function(n)
    return tolerate({ ENODEV }, n:link_set(r[3], { mtu = tonumber(r[4]) }))
  end)
end

function RESTORE.addr(name, r)
  return with_net(name, r[2], function(n)
    return tolerate({ EADDRNOTAVAIL, ENODEV, ENOENT }, n:addr_del(r[3], r[4]))
  end)
end

function RESTORE.unaddr(name, r)
  return with_net(name, r[2], function(n)
    return tolerate({ EEXIST }, n:addr_add(r[3], r[4]))
  end)
end

local function route_of(r)
  local function opt(v) return v ~= "-" and v or nil end
  return { dst = r[3], via = opt(r[4]), dev = opt(r[5]), metric = tonumber(opt(r[6])) }
end

function RESTORE.route(name, r)
  return with_net(name, r[2], function(n)
    return tolerate({ ESRCH, ENOENT, ENODEV }, n:route_del(route_of(r)))
  end)
end

function RESTORE.unroute(name, r)
  return with_net(name, r[2], function(n)
    return tolerate({ EEXIST }, n:route_add(route_of(r)))
  end)
end

function RESTORE.sysctl(name, r)
  return with_net(name, r[2], function(n) return n:sysctl(r[3], r[4]) end)
end

function RESTORE.hostname(name, r)
  return in_uts(name, r[2], function() return ns.sethostname(r[3]) end)
end

function RESTORE.nat(name, r)
  return with_net(name, r[2], function(n) return n:nat(r[3], nil) end)
end

function RESTORE.unnat(name, r)
  return with_net(name, r[2], function(n)
    return n:nat(r[3], { source = r[4] ~= "-" and r[4] or nil })
  end)
end

function RESTORE.hostsfiles(name, _, ctx)
  local p = prev_plan(name, ctx)
  if not p then return true end
  return require("isle.lab.change_host").write_hosts(p)
end

-- The host plans named `host` in the old model and the current one.
local function both(name, host, ctx)
  local p = prev_plan(name, ctx)
  local cur = journal.read_model(name)
  local function find(x)
    for _, h in ipairs(x and x.hosts or {}) do
      if h.name == host then return h end
    end
  end
  return find(p), find(cur)
end

function RESTORE.hostfiles(name, r, ctx)
  local old, new = both(name, r[2], ctx)
  if not (old and new) then return true end
  return require("isle.lab.change_host").unfiles(name, new, old)
end

function RESTORE.services(name, _, ctx)
  return require("isle.lab.change_host").unservices(name, prev_plan(name, ctx))
end

M.nets, M.where, M.tolerate, M.in_uts = nets_new, where, tolerate, in_uts
M.state_words, M.words_state = state_words, words_state

--- Undo record r of an aborted apply of lab `name` (what it changed back
-- as it was); ctx is shared by the records of one rollback.
function M.restore(name, r, ctx)
  local fn = RESTORE[r[1]]
  if not fn then return true end
  return fn(name, r, ctx)
end

return M
