--- Bringing a running lab to a new declaration (`lab:apply`, `lab:diff`,
-- `isle apply`): compare the declaration's plan with the running lab's
-- (its model with the link changes folded in) and make only the
-- differences — hosts, switches, links, addresses, routes, NAT,
-- impairments, host options — journalled like `up`.
--
-- All or nothing. The journal gets `apply PID`, then a record before each
-- step; every step before `commit` can be undone, and what an in-place
-- change replaced is in its record (`unaddr NETNS IF CIDR`, `impair KEY
-- old state`, ...; the model is kept as `model.prev`), so a failure (or a
-- raise) rolls the lab back as it was (`journal.rollback`). What cannot be
-- undone — removing a host's namespaces, a switch's bridge — comes after
-- `commit`, last. A kill at any step leaves records `down` removes
-- completely; the next `apply` or `link_set` rolls a killed apply back (or,
-- after its `commit`, finishes it).
--
-- What is kept: the links that stay keep their state (down, cut: run-time
-- state, not declared); their impairments become the declared ones. A
-- host whose clock offsets change gets a new time namespace: processes
-- started on it afterwards see the new clocks, those running keep theirs
-- (a process cannot change time namespace). A sysctl no longer declared
-- keeps its value. The uplink cannot change (down and up for that).
-- @module isle.lab.apply
local core = require "isle.core"
local journal = require "isle.lab.journal"
local state = require "isle.lab.state"
local impair = require "isle.lab.impair"
local links = require "isle.lab.links"
local model = require "isle.lab.model"
local same = require("isle.lab.same").same

local M = {}

local ipairs, pairs, tostring, next, setmetatable, getmetatable =
  ipairs, pairs, tostring, next, setmetatable, getmetatable
local format = string.format
local EBUSY, EINVAL, ENOENT = 16, 22, 2

-- -------------------------------------------------------------------------
-- identities

local function end_id(en)
  return (en.host or en.switch) .. ":" .. en.ifname
end

--- The identity of a link: its two ends, in either order.
function M.link_id(l)
  local a, b = end_id(l[1]), end_id(l[2])
  if a > b then a, b = b, a end
  return a .. " " .. b
end
local link_id = M.link_id

local function route_id(r)
  return format("%s %s %s %s", r.dst, r.via or "-", r.dev or "-", tostring(r.metric or "-"))
end

local function index(list, key)
  local t = {}
  for i, x in ipairs(list) do t[key(x)] = i end
  return t
end

local function name_of(x) return x.name end

local function set_of(list)
  local t = {}
  for _, v in ipairs(list or {}) do t[v] = true end
  return t
end

-- -------------------------------------------------------------------------
-- the diff

-- Hosts and switches: added, removed, changed options.
local function diff_nodes(p0, p1, d)
  local h0, h1 = index(p0.hosts, name_of), index(p1.hosts, name_of)
  local s0, s1 = index(p0.switches, name_of), index(p1.switches, name_of)
  for _, h in ipairs(p1.hosts) do
    if s0[h.name] then
      return nil, format("%s changes from a switch to a host: remove it in one apply, "
        .. "add it in another", h.name)
    end
    local old = h0[h.name] and p0.hosts[h0[h.name]]
    if not old then
      d.hosts_add[#d.hosts_add + 1] = h
    elseif old == h then -- the same line in the model: unchanged
      d.hosts_kept[h.name] = { old, h }
    else
      d.hosts_kept[h.name] = { old, h }
      if old.hostname ~= h.hostname then d.hostname[#d.hostname + 1] = { old, h } end
      if not same(old.clock, h.clock) then d.clock[#d.clock + 1] = { old, h } end
      if (old.forward or false) ~= (h.forward or false) then d.forward[#d.forward + 1] = h end
      for k, v in pairs(h.sysctl or {}) do
        if not old.sysctl or old.sysctl[k] ~= v then d.sysctl[#d.sysctl + 1] = { h, k, v } end
      end
      for _, k in ipairs { "private", "mounts" } do
        if not same(old[k] or {}, h[k] or {}) then
          return nil, format("host %s: its %s cannot change while it runs: remove the host in "
            .. "one apply and add it in another (or isle down, then up)", h.name, k)
        end
      end
      if not same(old.files or {}, h.files or {}) then d.files[#d.files + 1] = { old, h } end
    end
  end
  for _, h in ipairs(p0.hosts) do
    if not h1[h.name] then d.hosts_del[#d.hosts_del + 1] = h end
  end
  for _, s in ipairs(p1.switches) do
    if h0[s.name] then
      return nil, format("%s changes from a host to a switch: remove it in one apply, "
        .. "add it in another", s.name)
    end
    if not s0[s.name] then d.switches_add[#d.switches_add + 1] = s end
  end
  for _, s in ipairs(p0.switches) do
    if not s1[s.name] then d.switches_del[#d.switches_del + 1] = s end
  end
  return true
end

-- Links: added, removed, changed (MTU, impairments, addresses).
local function diff_links(p0, p1, d)
  local l0 = index(p0.links, link_id)
  local seen = {}
  for i, l in ipairs(p1.links) do
    local id = link_id(l)
    local j = l0[id]
    if j and not seen[id] and p0.links[j] == l then -- the same line in the model: unchanged
      seen[id] = true
    elseif j and not seen[id] then
      seen[id] = true
      local old = p0.links[j]
      l.down, l.cut = old.down, old.cut -- run-time state stays
      local c = { i0 = j, i1 = i, old = old, new = l }
      c.mtu = old.mtu ~= l.mtu
      local so, sn = links.state_of(old), links.state_of(l)
      c.impair = not same(so, sn)
      c.addrs = {}
      for e = 1, 2 do
        -- the ends of old and new in the same order
        local eo = end_id(old[1]) == end_id(l[e]) and old[1] or old[2]
        local was, now = set_of(eo.ips), set_of(l[e].ips)
        for _, a in ipairs(eo.ips) do
          if not now[a] then c.addrs[#c.addrs + 1] = { "-", l[e], a } end
        end
        for _, a in ipairs(l[e].ips) do
          if not was[a] then c.addrs[#c.addrs + 1] = { "+", l[e], a } end
        end
      end
      if c.mtu or c.impair or #c.addrs > 0 then d.links_change[#d.links_change + 1] = c end
    else
      d.links_add[#d.links_add + 1] = i
    end
  end
  for j, l in ipairs(p0.links) do
    if not seen[link_id(l)] then d.links_del[#d.links_del + 1] = j end
  end
end

-- Services: added, removed (those of hosts that go too), changed.
local function diff_services(p0, p1, d)
  local function sid(x) return x.host .. "/" .. x.name end
  local s0, s1 = index(p0.services or {}, sid), index(p1.services or {}, sid)
  for _, x in ipairs(p1.services or {}) do
    local i = s0[sid(x)]
    if not i then
      d.services_add[#d.services_add + 1] = x
    elseif not same(p0.services[i], x) then
      d.services_change[#d.services_change + 1] = x
    end
  end
  for _, x in ipairs(p0.services or {}) do
    if not s1[sid(x)] then d.services_del[#d.services_del + 1] = x end
  end
end

-- Routes and NATs of the hosts that stay.
local function diff_routes_nats(p0, p1, d)
  for _, pair in pairs(d.hosts_kept) do
    if pair[1] == pair[2] then goto next end -- unchanged
    local was, now = index(pair[1].routes, route_id), index(pair[2].routes, route_id)
    for _, r in ipairs(pair[1].routes) do
      if not now[route_id(r)] then d.routes_del[#d.routes_del + 1] = { pair[1], r } end
    end
    for _, r in ipairs(pair[2].routes) do
      if not was[route_id(r)] then d.routes_add[#d.routes_add + 1] = { pair[2], r } end
    end
    ::next::
  end
  local function nat_id(x) return x.host .. " " .. x.ifname .. " " .. (x.source or "-") end
  local n0, n1 = index(p0.nats, nat_id), index(p1.nats, nat_id)
  for _, x in ipairs(p0.nats) do
    if not n1[nat_id(x)] and d.hosts_kept[x.host] then d.nats_del[#d.nats_del + 1] = x end
  end
  for _, x in ipairs(p1.nats) do
    if not n0[nat_id(x)] and d.hosts_kept[x.host] then d.nats_add[#d.nats_add + 1] = x end
  end
end

--- The differences between running plan `p0` and declared plan `p1`.
-- @treturn[1] table the diff (see `M.changes` for its text)
-- @return[2] nil, message, errno (what apply cannot change)
function M.diff(p0, p1)
  local d = { hosts_add = {}, hosts_del = {}, hosts_kept = {}, switches_add = {},
    switches_del = {}, links_add = {}, links_del = {}, links_change = {}, routes_add = {},
    routes_del = {}, nats_add = {}, nats_del = {}, hostname = {}, clock = {}, forward = {},
    sysctl = {}, files = {}, services_add = {}, services_del = {}, services_change = {},
    p0 = p0, p1 = p1 }
  if not same(p0.uplink, p1.uplink) then
    return nil, format("lab %s: the uplink cannot change in a running lab (isle down, then up)",
      p1.name), EINVAL
  end
  local ok, msg = diff_nodes(p0, p1, d)
  if not ok then return nil, format("lab %s: %s", p1.name, msg), EINVAL end
  diff_links(p0, p1, d)
  diff_routes_nats(p0, p1, d)
  diff_services(p0, p1, d)
  d.hosts_files = not same(p0.etc_hosts, p1.etc_hosts) or #d.hostname > 0
  return d
end

local function route_text(r)
  return r.dst .. (r.via and " via " .. r.via or "") .. (r.dev and " dev " .. r.dev or "")
    .. (r.metric and " metric " .. r.metric or "")
end

local function link_text(l)
  return format("%s (%s -- %s)", l.name, end_id(l[1]), end_id(l[2]))
end

local function state_text(st)
  local t = impair.text(st)
  return t ~= "" and t or "none"
end

--- The diff as a list of changes, one line each (`+` added, `-` removed,
-- `~` changed).
-- @treturn {string,...}
function M.changes(d)
  local out = {}
  local function add(fmt, ...) out[#out + 1] = format(fmt, ...) end
  for _, s in ipairs(d.switches_add) do add("+ switch %s", s.name) end
  for _, h in ipairs(d.hosts_add) do add("+ host %s", h.name) end
  for _, i in ipairs(d.links_add) do add("+ link %s", link_text(d.p1.links[i])) end
  for _, c in ipairs(d.links_change) do
    if c.mtu then add("~ link %s: mtu %s -> %s", c.new.name, tostring(c.old.mtu or "default"),
      tostring(c.new.mtu or "default")) end
    if c.impair then add("~ link %s: impairments %s -> %s", c.new.name,
      state_text(links.state_of(c.old)), state_text(links.state_of(c.new))) end
    for _, a in ipairs(c.addrs) do
      add("%s address %s on %s", a[1], a[3], end_id(a[2]))
    end
  end
  for _, x in ipairs(d.hostname) do add("~ host %s: hostname %s -> %s", x[2].name,
    x[1].hostname, x[2].hostname) end
  for _, x in ipairs(d.clock) do add("~ host %s: clock offsets (a new time namespace: "
    .. "processes started from now on see them)", x[2].name) end
  for _, h in ipairs(d.forward) do add("~ host %s: forward %s", h.name,
    tostring(h.forward or false)) end
  for _, x in ipairs(d.sysctl) do add("~ host %s: sysctl %s = %s", x[1].name, x[2],
    tostring(x[3])) end
  for _, x in ipairs(d.files) do
    local was, now = {}, {}
    for _, f in ipairs(x[1].files or {}) do was[f.path] = f end
    for _, f in ipairs(x[2].files or {}) do
      now[f.path] = true
      local o = was[f.path]
      if not o then
        add("+ file %s:%s", x[2].name, f.path)
      elseif o.text ~= f.text or o.mode ~= f.mode then
        add("~ file %s:%s", x[2].name, f.path)
      end
    end
    for _, f in ipairs(x[1].files or {}) do
      if not now[f.path] then add("- file %s:%s", x[2].name, f.path) end
    end
  end
  for _, x in ipairs(d.services_del) do add("- service %s/%s", x.host, x.name) end
  for _, x in ipairs(d.services_add) do add("+ service %s/%s", x.host, x.name) end
  for _, x in ipairs(d.services_change) do add("~ service %s/%s (restarted)", x.host, x.name) end
  for _, x in ipairs(d.routes_del) do add("- route %s: %s", x[1].name, route_text(x[2])) end
  for _, x in ipairs(d.routes_add) do add("+ route %s: %s", x[1].name, route_text(x[2])) end
  for _, x in ipairs(d.nats_del) do add("- nat %s out of %s", x.host, x.ifname) end
  for _, x in ipairs(d.nats_add) do add("+ nat %s out of %s", x.host, x.ifname) end
  for _, i in ipairs(d.links_del) do add("- link %s", link_text(d.p0.links[i])) end
  for _, h in ipairs(d.hosts_del) do add("- host %s", h.name) end
  for _, s in ipairs(d.switches_del) do add("- switch %s", s.name) end
  if d.hosts_files and #out == 0 then add("~ hosts files") end
  return out
end

--- Is there nothing to change?
function M.empty(d)
  for _, k in ipairs { "hosts_add", "hosts_del", "switches_add", "switches_del", "links_add",
    "links_del", "links_change", "routes_add", "routes_del", "nats_add", "nats_del",
    "hostname", "clock", "forward", "sysctl", "files", "services_add", "services_del",
    "services_change" } do
    if next(d[k]) then return false end
  end
  return not d.hosts_files
end

-- -------------------------------------------------------------------------
-- apply

--- The running lab's plan and the declaration's, planned for the lab's
-- backend; false when the lab is not running. The running lab's model is
-- read by lines (`isle.lab.model`): the objects whose line is the
-- declared one's are the declared objects (the diff passes them at a
-- glance) and only the other lines are parsed; then the journal's link
-- changes are folded in.
-- @treturn[1] table p0 (false: not running)
-- @treturn[1] table p1
-- @treturn[1] table the journal state
-- @treturn[1] table the lines of the objects p0 and p1 share (`model.text`'s cache)
-- @return[2] nil, message, errno
function M.plans(decl, holder, checked)
  local name = decl.name
  local dir = journal.STATE_DIR .. "/" .. name
  local st = state.state(name, holder)
  if not st then return false end
  local ok, msg, e = links.settle(name, st)
  if not ok then return nil, msg, e end
  if st.apply then st = state.state(name, holder) end
  local text = core.readfile(dir .. "/model")
  local sp = model.split(text)
  local p0 = not sp and journal.read_model(name) -- a model of an older isle: whole
  if not (sp or p0) then
    return nil, format("lab %s: its description is missing (isle down %s removes it)", name,
      name), ENOENT
  end
  local backend = (sp and model.value(sp, "backend") or p0 and p0.backend)
    or impair.probe_here() -- a lab from before backends
  local p1
  p1, msg, e = checked(backend)
  if not p1 then return nil, msg, e end
  ok, msg, e = require("isle.lab.host").read_sources(p1)
  if not ok then return nil, format("lab %s: %s", name, msg), e end
  p1.backend = backend
  local shared = {}
  if sp then p0, shared = model.assemble(text, sp, p1) end
  if not p0 then
    return nil, format("lab %s: its description is unreadable (isle down %s removes it)", name,
      name), EINVAL
  end
  p0.backend = backend
  local cur = state.fold(p0, st.sets)
  for i, l in ipairs(cur.links) do
    if l ~= p0.links[i] then shared[p0.links[i]] = nil end -- changed since: its state goes to p1
  end
  return cur, p1, st, shared
end

--- Bring running lab p0 to plan p1 (diff d), all or nothing.
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.run(d, st, progress)
  local change = require "isle.lab.change"
  local name = d.p1.name
  local j, msg, e = journal.append(name, "apply")
  if not j then return nil, msg, e end
  local at = st.lines + 1 -- the index of the apply record
  d.at = at
  local okc, ok, m, err = pcall(change.phase_a, d, j, progress)
  if okc and ok then
    okc, ok, m, err = pcall(change.phase_b, d, j)
    j:close()
    if not okc then error(ok, 0) end
    if not ok then
      return nil, format("lab %s: apply: %s (the rest was applied; isle down removes all)",
        name, tostring(m)), err
    end
    return true
  end
  j:close()
  local undone, umsg = journal.rollback(name, at)
  if not okc then error(ok, 0) end
  m = format("lab %s: apply: %s", name, tostring(m))
  if not undone then m = m .. " (and rolling back: " .. tostring(umsg) .. ")" end
  return nil, m, err
end

--- Settle an apply whose process died (`links.settle`): rolled back
-- before its `commit`, finished after.
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.recover(name, st)
  local ok, msg, e
  if st.apply.committed then
    ok, msg, e = require("isle.lab.change").finish(name)
  else
    ok, msg, e = journal.rollback(name, st.apply.at)
  end
  if not ok then
    return nil, format("lab %s: an interrupted apply: %s", name, tostring(msg)), e
  end
  return true
end

-- No garbage collection while an apply or a diff runs: what it makes it
-- keeps to its end (plans of the whole lab, their lines), and at thousands
-- of hosts the collector's passes over them cost more than the rest of the
-- work together; restarted (when it ran) on the way out, also on a raise.
local GcPause = { __close = function(self)
  if self.running then collectgarbage("restart") end
end }
local function gc_pause()
  local running = collectgarbage("isrunning")
  collectgarbage("stop")
  return setmetatable({ running = running }, GcPause)
end

--- `lab:diff()`: the changes, as text; `checked(backend)` plans the
-- declaration `lab` (raising its mistakes).
local function plan_only(checked) -- as deep as M.plans: the same error level
  return (checked(nil))
end

function M.lab_diff(lab, checked)
  local _ <close> = gc_pause()
  local p0, p1, e = M.plans(lab, lab, checked)
  if p0 == false then
    p1 = plan_only(checked)
    p0 = { name = lab.name, hosts = {}, switches = {}, links = {}, nats = {},
      etc_hosts = {}, uplink = p1.uplink, services = {} }
  elseif not p0 then
    return nil, p1, e
  end
  local d, msg
  d, msg, e = M.diff(p0, p1)
  if not d then return nil, msg, e end
  return M.changes(d)
end

--- `lab:apply(opts)`: up when the lab is not running, else the diff made.
function M.lab_apply(lab, opts, checked)
  local gc <close> = gc_pause()
  local p0, p1, st, shared = M.plans(lab, lab, checked)
  if p0 == false then
    getmetatable(gc).__close(gc) -- (up collects as it goes)
    gc.running = false
    lab.built = false
    return lab:up(opts)
  elseif not p0 then
    return nil, p1, st
  end
  local d, msg, e = M.diff(p0, p1)
  if not d then return nil, msg, e end
  d.shared = shared
  lab._changes = M.changes(d) -- for isle apply's summary
  if not M.empty(d) then
    local ok
    ok, msg, e = M.run(d, st, opts.progress)
    if not ok then return nil, msg, e end
  end
  lab.plan, lab.built, lab._model = p1, p1.name, nil
  return true
end

--- Undo record r of an aborted apply (`journal`'s RESTORE kinds).
function M.restore(name, r, ctx)
  return require("isle.lab.restore").restore(name, r, ctx)
end

M.EBUSY = EBUSY
return M
