--- The links of a running lab, changed in place: up and down (both ends'
-- carrier), cut (nothing passes, carrier kept), impairments set, changed
-- or cleared (`lab:link_set`). Works on a lab any process built: the
-- current state is the lab's model with the journal's `set` records
-- folded in (`isle.lab.state`), and each change writes its `set`
-- record before it acts.
--
-- Taking a link down (admin down on both ends) makes the kernel flush
-- the IPv4 routes through it and the IPv6 addresses on it; bringing it up
-- again puts the lab's own addresses and routes of both ends back.
-- @module isle.lab.links
local check = require "isle._check"
local sys = require "isle._sys"
local net = require "isle.net"
local journal = require "isle.lab.journal"
local state = require "isle.lab.state"
local impair = require "isle.lab.impair"

local M = {}

local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring
local format, concat = string.format, table.concat
local ENOENT, EINVAL, EEXIST, EBUSY, ENETUNREACH, EOPNOTSUPP = 2, 22, 17, 16, 101, 95

local OPTS = check.set { "up", "cut", "delay", "jitter", "loss", "rate" }
M.OPTS = OPTS

-- -------------------------------------------------------------------------
-- finding a link

-- An end given as a node, a node name or "NODE:IFNAME".
local function endspec(fname, arg, v)
  if type(v) == "table" and v.name and v.kind then
    return { node = v.name }
  end
  check.string(fname, arg, v, 4)
  local node, ifname = v:match("^([^:]+):(.+)$")
  return { node = node or v, ifname = ifname }
end

local function matches(en, spec)
  return (en.host or en.switch) == spec.node and (spec.ifname == nil or en.ifname == spec.ifname)
end

local function show(en)
  return (en.host or en.switch) .. ":" .. en.ifname
end

--- The link of plan `p` between ends `a` and `b` (nodes, names, or
-- `NODE:IFNAME`), or with name `a` (`"h1-s1"`) when `b` is nil.
-- @treturn[1] int its index
-- @treturn[1] table the link
-- @return[2] nil, message, errno
function M.find(p, a, b, fname)
  fname = fname or "link_set"
  local found, what = {}
  if b == nil then
    if type(a) ~= "string" then
      check.argerror(fname, "a", "a link name or two ends expected, got " .. type(a), 3)
    end
    what = "named " .. a
    for i, l in ipairs(p.links) do
      if l.name == a then found[#found + 1] = i end
    end
  else
    local sa, sb = endspec(fname, "a", a), endspec(fname, "b", b)
    what = format("between %s and %s", sa.node, sb.node)
    for i, l in ipairs(p.links) do
      if (matches(l[1], sa) and matches(l[2], sb)) or (matches(l[1], sb) and matches(l[2], sa)) then
        found[#found + 1] = i
      end
    end
  end
  if #found == 0 then
    return nil, format("lab %s: no link %s", p.name, what), ENOENT
  elseif #found > 1 then
    local ends = {}
    for _, i in ipairs(found) do
      ends[#ends + 1] = show(p.links[i][1]) .. "-" .. show(p.links[i][2])
    end
    return nil, format("lab %s: %d links %s (%s): give the ends as NODE:IFNAME", p.name,
      #found, what, concat(ends, ", ")), EINVAL
  end
  return found[1], p.links[found[1]]
end

-- -------------------------------------------------------------------------
-- the state of a link

-- A link's state: impairments, `down`, `cut`.
local function state_of(l)
  return { delay = l.delay, jitter = l.jitter, loss = l.loss, rate = l.rate,
    down = l.down or nil, cut = l.cut or nil }
end
M.state_of = state_of

-- Check options (raises) and return the new state from `old`.
local function next_state(fname, old, opts)
  check.fields(fname, "opts", opts, OPTS, 4)
  local new = {}
  for k, v in pairs(old) do new[k] = v end
  for _, k in ipairs { "up", "cut" } do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      check.argerror(fname, "opts." .. k, "boolean expected, got " .. type(opts[k]), 4)
    end
  end
  if opts.up ~= nil then new.down = not opts.up or nil end
  if opts.cut ~= nil then new.cut = opts.cut or nil end
  for _, k in ipairs(impair.FIELDS) do
    local v = opts[k]
    if v == false then
      new[k] = nil
    elseif v ~= nil then
      local _, field, why = net._netem_args { [k] = v }
      if field then check.argerror(fname, "opts." .. field, why, 4) end
      new[k] = v
    end
  end
  if opts.delay == false and opts.jitter == nil then
    new.jitter = nil -- no jitter without a delay
  end
  if new.jitter ~= nil and new.delay == nil then
    check.argerror(fname, "opts.jitter", "jitter needs a delay", 4)
  end
  return new
end
M.next_state = next_state

-- The `set` record's words for the change old → new (nil when none).
local function change_words(old, new)
  local w = {}
  if (old.down or false) ~= (new.down or false) then w[#w + 1] = new.down and "up=0" or "up=1" end
  if (old.cut or false) ~= (new.cut or false) then w[#w + 1] = new.cut and "cut=1" or "cut=0" end
  for _, k in ipairs(impair.FIELDS) do
    if old[k] ~= new[k] then
      w[#w + 1] = k .. "=" .. (new[k] == nil and "-" or tostring(new[k]))
    end
  end
  return #w > 0 and w or nil
end
M.change_words = change_words

-- -------------------------------------------------------------------------
-- acting on both ends

-- A Net handle on each end of link l: {net, ifname, host} x 2; closes
-- with `close_ends`.
local function open_ends(name, l)
  local ends, sw = {}, nil
  for j = 1, 2 do
    local en, n, msg, e = l[j]
    if en.host then
      n, msg, e = net.open(en.netns)
    else
      if not sw then
        sw, msg, e = net.open(journal.STATE_DIR .. "/" .. name .. "/net")
      end
      n = sw
    end
    if not n then
      for _, x in ipairs(ends) do x.net:close() end
      return nil, msg, e
    end
    ends[j] = { net = n, ifname = en.ifname, host = en.host, ips = en.ips }
  end
  return ends
end
M.open_ends = open_ends

local function close_ends(ends)
  for _, x in ipairs(ends) do x.net:close() end
end

-- Put back what a link's down made the kernel flush on host end x: its
-- addresses (IPv6 ones go) and the host's routes (IPv4 ones through it go).
local function restore_end(p, x)
  for _, a in ipairs(x.ips) do
    local ok, msg, e = x.net:addr_add(x.ifname, a)
    if not ok and e ~= EEXIST then return nil, msg, e end
  end
  for _, h in ipairs(p.hosts) do
    if h.name == x.host then
      for _, r in ipairs(h.routes) do
        local ok, msg, e = x.net:route_add { dst = r.dst, via = r.via, dev = r.dev,
          metric = r.metric }
        if not ok and e ~= EEXIST and e ~= ENETUNREACH then
          return nil, "route " .. r.dst .. ": " .. msg, e
        end
      end
    end
  end
  return true
end

--- Bring link l of plan p from state `old` to state `new` (both ends);
-- `old` nil: unknown, set everything.
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.act(p, l, old, new)
  local ends, msg, e = open_ends(p.name, l)
  if not ends then return nil, msg, e end
  local ok = true
  local down_now = new.down and not (old and old.down)
  local up_now = not new.down and (old == nil or old.down)
  for _, x in ipairs(ends) do
    if ok and down_now then ok, msg, e = x.net:link_set(x.ifname, { up = false }) end
  end
  for _, x in ipairs(ends) do
    if ok then ok, msg, e = impair.set_end(x.net, x.ifname, old, new, p.backend, l.mtu) end
  end
  for _, x in ipairs(ends) do
    if ok and up_now then ok, msg, e = x.net:link_set(x.ifname, { up = true }) end
  end
  for _, x in ipairs(ends) do
    if ok and up_now and x.host and old then ok, msg, e = restore_end(p, x) end
  end
  close_ends(ends)
  if not ok then return nil, msg, e end
  return true
end

-- -------------------------------------------------------------------------
-- link_set

M.current = state.current

-- An apply of another process that is still running: busy; one whose
-- process died: rolled back (or finished) first.
function M.settle(name, st)
  if not st.apply then return true end
  if st.apply.pid and sys.exists("/proc/" .. st.apply.pid) then
    return nil, format("lab %s: an apply (pid %d) is changing it", name, st.apply.pid), EBUSY
  end
  return require("isle.lab.apply").recover(name, st)
end

--- Change a link of running lab `name` (see `lab:link_set`).
-- @string name
-- @tparam table|nil holder caches the model (`M.current`); nil: only
-- what the link needs is read (`isle.lab.state.current_link`)
-- @param a an end, or the link's name
-- @param b the other end, or nil
-- @tparam table opts
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.set(name, holder, a, b, opts)
  if type(opts) ~= "table" then
    check.argerror("link_set", "opts", "table expected, got " .. type(opts), 3)
  end
  local function current()
    if holder then return M.current(name, holder) end
    return state.current_link(name, a, b)
  end
  local p, st, e = current()
  if not p then return nil, st, e end
  local ok, msg
  ok, msg, e = M.settle(name, st)
  if not ok then return nil, msg, e end
  if st.apply then p = current() end
  local i, l, err = M.find(p, a, b)
  if not i then return nil, l, err end
  local old = state_of(l)
  local new = next_state("link_set", old, opts)
  local words = change_words(old, new)
  if not words then return true end
  if not p.backend then
    return nil, format("lab %s: built without a link emulation backend (isle down, isle up)",
      name), EOPNOTSUPP
  end
  local why = impair.refusal(new, p.backend)
  if why then
    return nil, format("lab %s: link %s: %s", name, l.name, why), EOPNOTSUPP
  end
  local j
  j, msg, e = journal.append(name)
  if not j then return nil, msg, e end
  local key = state.link_key(l)
  ok, msg, e = j:record("set", key, concat(words, " "))
  if ok then
    ok, msg, e = M.act(p, l, old, new)
    if not ok then -- put it back as it was, as far as it goes
      M.act(p, l, new, old)
      j:record("set", key, concat(change_words(new, old), " "))
      msg = format("lab %s: link %s: %s", name, l.name, msg)
    end
  end
  j:close()
  if not ok then return nil, msg, e end
  return true
end

return M
