--- The steps of `apply` (`isle.lab.apply` computes the diff): phase A,
-- whose every step writes its record first and can be undone (`restore`),
-- then `commit` and phase B, the removals that cannot be undone (a host's
-- namespaces, a switch's bridge), last.
-- @module isle.lab.change
local sys = require "isle._sys"
local ns = require "isle.ns"
local net = require "isle.net"
local journal = require "isle.lab.journal"
local state = require "isle.lab.state"
local build = require "isle.lab.build"
local model = require "isle.lab.model"
local host = require "isle.lab.host"
local impair = require "isle.lab.impair"
local links = require "isle.lab.links"
local restore = require "isle.lab.restore"
local change_host = require "isle.lab.change_host"

local M = {}

local nets_new, where, tolerate = restore.nets, restore.where, restore.tolerate
local state_words, in_uts = restore.state_words, restore.in_uts

local ipairs, pairs, next, tostring, type = ipairs, pairs, next, tostring, type
local format, concat = string.format, table.concat
local ESRCH, ENOENT, ENODEV, EADDRNOTAVAIL = 3, 2, 19, 99

-- Record, then act: `act()` runs only when the record is written.
local function step(j, words, act)
  local ok, msg, e = j:record(concat(words, " "))
  if not ok then return nil, msg, e end
  return act()
end

-- -------------------------------------------------------------------------
-- links

-- Does new plan p1 put an end on `id` ("NODE:IFNAME")?
local function end_ids(p)
  local t = {}
  for _, l in ipairs(p.links) do
    for j = 1, 2 do t[(l[j].host or l[j].switch) .. ":" .. l[j].ifname] = true end
  end
  return t
end

-- Remove link l (of the running plan): its ends' nft chains first (a
-- chain left behind would capture the next link of that name), then the
-- veth, unless it goes with a host removed later and nothing needs its
-- names before.
local function remove_link(d, j, nets, l)
  local st = links.state_of(l)
  return step(j, { "unlink", state.link_key(l), state_words(st) }, function()
    local _, f = impair.split(st, d.p0.backend)
    local doomed, reused = false, false
    for e = 1, 2 do
      local en = l[e]
      if en.host and d.removed[en.host] then
        doomed = true
      else
        if d.new_ids[(en.host or en.switch) .. ":" .. en.ifname] then reused = true end
        if f then
          local n, msg, err = nets:get(where(en))
          if not n then return nil, msg, err end
          local ok
          ok, msg, err = impair.nft_end(n, en.ifname, nil, "link " .. l.name)
          if not ok then return nil, msg, err end
        end
      end
    end
    if doomed and not reused then return true end
    local en = l[1].host and not d.removed[l[1].host] and l[1] or l[2]
    local n, msg, err = nets:get(where(en))
    if not n then return nil, msg, err end
    return tolerate({ ENODEV }, n:link_del(en.ifname))
  end)
end

local function change_link(d, j, nets, c)
  local ok, msg, e
  if c.mtu then
    for k = 1, 2 do
      local en = c.new[k]
      ok, msg, e = step(j, { "mtu", where(en), en.ifname, tostring(c.old.mtu or 1500) },
        function()
          local n, m, err = nets:get(where(en))
          if not n then return nil, m, err end
          return n:link_set(en.ifname, { mtu = c.new.mtu or 1500 })
        end)
      if not ok then return nil, msg, e end
    end
  end
  if c.impair then
    local old, new = links.state_of(c.old), links.state_of(c.new)
    ok, msg, e = step(j, { "impair", state.link_key(c.old), state_words(old) }, function()
      return links.act(d.p1, c.new, old, new)
    end)
    if not ok then return nil, msg, e end
  end
  for _, a in ipairs(c.addrs) do
    local en, cidr = a[2], a[3]
    ok, msg, e = step(j, { a[1] == "-" and "unaddr" or "addr", where(en), en.ifname, cidr },
      function()
        local n, m, err = nets:get(where(en))
        if not n then return nil, m, err end
        if a[1] == "-" then return tolerate({ EADDRNOTAVAIL }, n:addr_del(en.ifname, cidr)) end
        return n:addr_add(en.ifname, cidr)
      end)
    if not ok then return nil, msg, e end
  end
  return true
end

-- The new links and the new hosts' wiring, through build's steps.
local function add_links(d, j, nets, sw)
  local p1 = d.p1
  local w = { p = p1, sw = sw, swpath = journal.STATE_DIR .. "/" .. p1.name .. "/net",
    created = {}, swnft = {} }
  local sub = { name = p1.name, links = {}, nats = p1.nats }
  local map = {}
  for _, i in ipairs(d.links_add) do
    sub.links[#sub.links + 1] = p1.links[i]
    map[#sub.links] = i
  end
  local ends
  ends, w.nats = build._by_host(sub)
  w.ends = {}
  for h, list in pairs(ends) do
    w.ends[h] = {}
    for k, le in ipairs(list) do w.ends[h][k] = { map[le[1]], le[2] } end
  end
  for _, h in ipairs(d.hosts_add) do
    local hn, msg, e = nets:get(h.netns)
    local ok = hn ~= nil
    if ok then ok, msg, e = build._host_wiring(w, hn, h) end
    if not ok then return nil, "host " .. h.name .. ": " .. tostring(msg), e end
  end
  for _, i in ipairs(d.links_add) do
    local l = p1.links[i]
    local ok, msg, e = true, nil, nil
    if l[1].switch and l[2].switch and not w.created[i] then
      ok, msg, e = step(j, { "veth", "-", l[1].ifname, "-", l[2].ifname }, function()
        local r, m, err = sw:link_add { name = l[1].ifname, kind = "veth",
          peer = { name = l[2].ifname } }
        if r then r, m, err = build.switch_end(w, l, l[1]) end
        if r then r, m, err = build.switch_end(w, l, l[2]) end
        return r, m, err
      end)
      w.created[i] = 1
    end
    for k = 1, 2 do
      local en, other = l[k], l[3 - k]
      if ok and en.host and not d.added[en.host] then
        local hn
        hn, msg, e = nets:get(en.netns)
        ok = hn ~= nil
        if ok and not w.created[i] and not (other.host and d.added[other.host]) then
          ok, msg, e = j:record("veth", en.netns, en.ifname, where(other), other.ifname)
        end
        w.hnft = {}
        if ok then ok, msg, e = build._host_end(w, hn, i, k) end
        if ok and #w.hnft > 0 then ok, msg, e = hn:nft(concat(w.hnft), "impairments") end
      end
    end
    if not ok then return nil, msg, e end
  end
  if #w.swnft > 0 then
    local ok, msg, e = sw:nft(concat(w.swnft), "impairments")
    if not ok then return nil, msg, e end
  end
  return true
end

-- -------------------------------------------------------------------------
-- hosts

local function host_options(d, j, nets, at)
  local ok, msg, e
  for _, x in ipairs(d.hostname) do
    ok, msg, e = step(j, { "hostname", x[2].name, x[1].hostname }, function()
      return in_uts(d.p1.name, x[2].name, function() return ns.sethostname(x[2].hostname) end)
    end)
    if not ok then return nil, msg, e end
  end
  local writes = {}
  for _, h in ipairs(d.forward) do
    writes[#writes + 1] = { h, "ipv4.ip_forward", h.forward and 1 or 0 }
    writes[#writes + 1] = { h, "ipv6.conf.all.forwarding", h.forward and 1 or 0 }
  end
  for _, x in ipairs(d.sysctl) do writes[#writes + 1] = x end
  for _, x in ipairs(writes) do
    local h, key, value = x[1], x[2], x[3]
    local n
    n, msg, e = nets:get(h.netns)
    if not n then return nil, msg, e end
    local old = n:sysctl(key)
    if old then
      ok, msg, e = step(j, { "sysctl", h.netns, key, old }, function()
        return n:sysctl(key, value)
      end)
    else
      ok, msg, e = n:sysctl(key, value)
    end
    if not ok then return nil, format("host %s: %s", h.name, msg), e end
  end
  if #d.clock > 0 then
    local home <close>, m, err = build._new_home()
    if not home then return nil, m, err end
    for _, x in ipairs(d.clock) do
      local h = x[2]
      if h.clock then
        local path = journal.STATE_DIR .. "/" .. d.p1.name .. "/ns/" .. h.name .. ".time." .. at
        ok, msg, e = build._fresh(home, j, "time", path, function()
          return ns.timens_offsets("self", { monotonic = h.clock.monotonic,
            boottime = h.clock.boottime })
        end)
        if not ok then return nil, format("host %s: clock: %s", h.name, msg), e end
      end
    end
  end
  return true
end

local function routes(d, j, nets)
  for _, x in ipairs(d.routes_del) do
    local h, r = x[1], x[2]
    local ok, msg, e = step(j, { "unroute", h.netns, r.dst, r.via or "-", r.dev or "-",
      tostring(r.metric or "-") }, function()
      local n, m, err = nets:get(h.netns)
      if not n then return nil, m, err end
      return tolerate({ ESRCH, ENOENT, ENODEV },
        n:route_del { dst = r.dst, via = r.via, dev = r.dev, metric = r.metric })
    end)
    if not ok then return nil, format("host %s: route %s: %s", h.name, r.dst, msg), e end
  end
  return true
end

local function routes_add(d, j, nets)
  local new = {}
  for _, x in ipairs(d.routes_add) do
    local h, r = x[1], x[2]
    new[r] = true
    local ok, msg, e = step(j, { "route", h.netns, r.dst, r.via or "-", r.dev or "-",
      tostring(r.metric or "-") }, function()
      local n, m, err = nets:get(h.netns)
      if not n then return nil, m, err end
      return n:route_add { dst = r.dst, via = r.via, dev = r.dev, metric = r.metric }
    end)
    if not ok then return nil, format("host %s: route %s: %s", h.name, r.dst, msg), e end
  end
  -- routes the kernel dropped with a link removed or made again
  for name in pairs(d.relinked) do
    local h = d.hosts_kept[name] and d.hosts_kept[name][2]
    for _, r in ipairs(h and h.routes or {}) do
      if not new[r] then
        local n, msg, e = nets:get(h.netns)
        if not n then return nil, msg, e end
        n:route_add { dst = r.dst, via = r.via, dev = r.dev, metric = r.metric }
      end
    end
  end
  return true
end

local function nats(d, j, nets, adding)
  for _, x in ipairs(adding and d.nats_add or d.nats_del) do
    local netns = d.p1.name .. "-" .. x.host
    local ok, msg, e = step(j, { adding and "nat" or "unnat", netns, x.ifname,
      x.source or "-" }, function()
      local n, m, err = nets:get(netns)
      if not n then return nil, m, err end
      return n:nat(x.ifname, adding and { source = x.source } or nil)
    end)
    if not ok then return nil, format("nat on %s: %s", x.host, msg), e end
  end
  return true
end

-- The hosts files (one record for all: the old ones are those of the old
-- plan), written in place: every host's /etc/hosts sees them.
local function hosts_files(d, j)
  if not d.hosts_files then return true end
  return step(j, { "hostsfiles" }, function() return change_host.write_hosts(d.p1, d.p0) end)
end

-- The kept hosts' files (checked before anything: what cannot be placed
-- on a running host fails the apply before it starts), then the services.
local function machines(d, j)
  for _, x in ipairs(d.files) do
    local ok, msg, e = step(j, { "hostfiles", x[2].name }, function()
      return change_host.files(d.p1.name, x[1], x[2])
    end)
    if not ok then return nil, format("host %s: %s", x[2].name, msg), e end
  end
  return change_host.services(d, j, function() return j:record("services") end)
end

-- -------------------------------------------------------------------------
-- phase A

-- The model written first: the new plan, and the hosts it drops kept in
-- its scope (`retired`) until their records are undone.
local function new_model(d, j, at)
  local p1, p0 = d.p1, d.p0
  local keep = {}
  for _, h in ipairs(p1.hosts) do keep[h.name] = true end
  local retired, seen = {}, {}
  for _, list in ipairs { p0.retired or {}, d.hosts_del } do
    for _, h in ipairs(list) do
      local n = type(h) == "table" and h.name or h
      if not keep[n] and not seen[n] then
        retired[#retired + 1], seen[n] = n, true
      end
    end
  end
  p1.retired = #retired > 0 and retired or nil
  local old = {}
  for _, h in ipairs(p0.hosts) do old[h.name] = h end
  for _, h in ipairs(p1.hosts) do
    h.timens = old[h.name] and old[h.name].timens or nil
  end
  for _, x in ipairs(d.clock) do
    x[2].timens = x[2].clock and ("ns/" .. x[2].name .. ".time." .. at) or ""
  end
  local dir = journal.STATE_DIR .. "/" .. p1.name
  return step(j, { "model" }, function()
    local ok, msg, e = os.rename(dir .. "/model", dir .. "/model.prev")
    if not ok then return nil, msg, e end
    return journal.writefile(dir .. "/model", model.text(p1, d.shared))
  end)
end

-- The new hosts' namespaces and filesystems (copies of a template made
-- now from ours), as up makes them.
local function add_hosts(d, j, progress)
  local home <close>, msg, e = build._new_home()
  if not home then return nil, msg, e end
  local fs
  fs, msg, e = host.template_for(j, home)
  if not fs then return nil, "host filesystems: " .. tostring(msg), e end
  local ok = true
  for i, h in ipairs(d.hosts_add) do
    ok, msg, e = build._host_namespaces(d.p1, h, j, home, fs)
    if not ok then msg = "host " .. h.name .. ": " .. tostring(msg) break end
    if progress then progress("namespaces", i, #d.hosts_add) end
  end
  host.finish(fs)
  local closed, cm, ce = home:close()
  if ok and not closed then return nil, cm, ce end
  return ok, msg, e
end

-- What cannot be done on a running host, found before anything is done.
local function precheck(d)
  for _, x in ipairs(d.files) do
    local ok, msg, e = change_host.check_files(x[1], x[2])
    if not ok then return nil, msg, e end
  end
  return true
end

--- Phase A of applying diff d through journal j: everything but the
-- removals of hosts and switches, each step recorded first.
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.phase_a(d, j, progress)
  local name = d.p1.name
  local at = d.at
  d.removed, d.added, d.relinked = {}, {}, {}
  for _, h in ipairs(d.hosts_del) do d.removed[h.name] = true end
  for _, h in ipairs(d.hosts_add) do d.added[h.name] = true end
  for _, i in ipairs(d.links_del) do
    local l = d.p0.links[i]
    for k = 1, 2 do if l[k].host then d.relinked[l[k].host] = true end end
  end
  d.new_ids = end_ids(d.p1)
  local ok, msg, e = precheck(d)
  if ok then ok, msg, e = j:record("apply", tostring(sys.getpid())) end
  if ok then ok, msg, e = new_model(d, j, at) end
  if not ok then return nil, msg, e end
  local nets <close> = nets_new(name)
  local sw
  sw, msg, e = nets:get("-")
  if not sw then return nil, msg, e end
  for _, s in ipairs(d.switches_add) do
    ok, msg, e = step(j, { "bridge", s.name }, function()
      return sw:link_add { name = s.name, kind = "bridge" }
    end)
    if not ok then return nil, "switch " .. s.name .. ": " .. msg, e end
  end
  ok, msg, e = nats(d, j, nets, false)
  if ok then ok, msg, e = routes(d, j, nets) end
  for _, i in ipairs(d.links_del) do
    if not ok then break end
    ok, msg, e = remove_link(d, j, nets, d.p0.links[i])
    if not ok then msg = "link " .. d.p0.links[i].name .. ": " .. tostring(msg) end
  end
  for _, c in ipairs(d.links_change) do
    if not ok then break end
    ok, msg, e = change_link(d, j, nets, c)
    if not ok then msg = "link " .. c.new.name .. ": " .. tostring(msg) end
  end
  if not ok then return nil, msg, e end
  if #d.hosts_add > 0 then
    ok, msg, e = add_hosts(d, j, progress)
    if not ok then return nil, msg, e end
  end
  ok, msg, e = host_options(d, j, nets, at)
  if ok then ok, msg, e = add_links(d, j, nets, sw) end
  if ok then ok, msg, e = routes_add(d, j, nets) end
  if ok then ok, msg, e = nats(d, j, nets, true) end
  for _, s in ipairs(d.switches_add) do
    if not ok then break end
    ok, msg, e = sw:link_set(s.name, { up = true })
  end
  if ok then ok, msg, e = hosts_files(d, j) end
  if ok then ok, msg, e = machines(d, j) end
  return ok, msg, e
end

-- -------------------------------------------------------------------------
-- phase B (and finishing an apply killed after its commit)

-- The far ends of the links of the hosts that go (in the switches' or a
-- host's namespace that stays): down and renamed out of the way. They go
-- with the host's namespace, but the kernel tears that down in the
-- background, tens of milliseconds later: a link made at once under the
-- same name (the next apply adding the host back) would find it there.
local function set_aside(name, prev, cur, gone, now)
  local nets <close> = nets_new(name)
  local taken = end_ids(cur) -- a name a new link has now (the old one went in phase A)
  for _, l in ipairs(prev.links) do
    for k = 1, 2 do
      local en, other = l[k], l[3 - k]
      local stays = en.switch or (en.host and now[en.host])
      if other.host and gone[other.host] and stays
        and not taken[(en.host or en.switch) .. ":" .. en.ifname] then
        local n = nets:get(where(en))
        local dev = n and n:link(en.ifname)
        if dev then
          n:link_set(en.ifname, { up = false })
          n:link_set(en.ifname, { name = "isle-gone" .. dev.index })
        end
      end
    end
  end
end

-- Undo what was made for the hosts that are gone and the time namespaces
-- replaced; delete the bridges of the switches that are gone.
local function removals(name, j, prev, cur)
  local dir = journal.STATE_DIR .. "/" .. name .. "/"
  local etc = journal.ETC_NETNS .. "/" .. name .. "-"
  local gone, now, was, retimed = {}, {}, {}, false
  for _, h in ipairs(cur.hosts) do now[h.name] = h end
  for _, h in ipairs(prev.hosts) do
    was[h.name] = h
    if not now[h.name] then gone[h.name] = true end
  end
  for _, h in ipairs(cur.hosts) do
    retimed = retimed or (was[h.name] and was[h.name].timens ~= h.timens)
  end
  -- the host a record's path or netns name belongs to, if it is gone:
  -- LAB-HOST, /etc/netns/LAB-HOST[/...], or a file of the lab's directory
  local function gone_host(arg)
    local rest = arg:sub(1, #name + 1) == name .. "-" and arg:sub(#name + 2)
      or arg:sub(1, #etc) == etc and arg:sub(#etc + 1):match("^[^/]+")
    if rest and gone[rest] then return true end
    if arg:sub(1, #dir) == dir then
      -- DIR/mnt/HOST, DIR/hosts.HOST, DIR/ns/HOST.KIND[.N], DIR/HOST.KIND
      local base = arg:sub(#dir + 1)
      local h = base:match("^mnt/([^/]+)$") or base:match("^hosts%.([^/]+)$")
      if h then return gone[h] == true end
      base = base:match("^ns/([^/]+)$") or base
      for i in base:gmatch("()%.") do
        if gone[base:sub(1, i - 1)] then return true end
      end
    end
    return false
  end
  local function pick(r)
    local arg = r[2] or ""
    if gone_host(arg) then return true end
    if retimed and r[1] == "bind" then -- a time namespace a clock change replaced
      local h, rest = arg:sub(#dir + 1):match("^ns/([^/]+)%.(time[%.%d]*)$")
      local cu = h and arg:sub(1, #dir) == dir and now[h]
      if cu and cu.timens and cu.timens ~= "ns/" .. h .. "." .. rest then return true end
    end
    return false
  end
  local ok, msg, e = change_host.drop_files(name, prev, cur)
  if next(gone) then
    change_host.sweep(name, gone) -- their processes (their services stopped before)
    set_aside(name, prev, cur, gone, now)
  end
  if next(gone) or retimed then
    local u, um, ue = journal.undo_records(j, pick)
    if ok and not u then ok, msg, e = u, um, ue end
  end
  local sws = {}
  for _, s in ipairs(cur.switches) do sws[s.name] = true end
  local sw
  for _, s in ipairs(prev.switches) do
    if not sws[s.name] then
      sw = sw or net.open(dir .. "net")
      if sw then
        local r, m, err = tolerate({ ENODEV }, sw:link_del(s.name))
        if not r and ok then ok, msg, e = nil, m, err end
      end
    end
  end
  if sw then sw:close() end
  return ok, msg, e
end

local function done(name, j)
  local ok, msg, e = j:record("applied")
  sys.rmfile(journal.STATE_DIR .. "/" .. name .. "/model.prev")
  return ok, msg, e
end

--- Phase B: `commit`, the removals, `applied`.
function M.phase_b(d, j)
  local ok, msg, e = j:record("commit")
  if not ok then return nil, msg, e end
  ok, msg, e = removals(d.p1.name, j, d.p0, d.p1)
  local ok2, msg2, e2 = done(d.p1.name, j)
  if ok then ok, msg, e = ok2, msg2, e2 end
  return ok, msg, e
end

--- Finish an apply of lab `name` killed after its `commit`.
function M.finish(name)
  local prev, cur = journal.read_model(name, "model.prev"), journal.read_model(name)
  local j, msg, e = journal.append(name)
  if not j then return nil, msg, e end
  local ok = true
  if prev and cur then ok, msg, e = removals(name, j, prev, cur) end
  local ok2, msg2, e2 = done(name, j)
  j:close()
  if ok then ok, msg, e = ok2, msg2, e2 end
  return ok, msg, e
end

return M
