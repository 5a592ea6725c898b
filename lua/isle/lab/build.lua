--- Building a lab from its plan: the namespaces (each host's net, uts and
-- time namespace, kept on files), the wiring (bridges, veths, addresses,
-- routes, netem, NAT, over netlink) and the uplink. Each step writes its
-- journal record before it acts; a failure or a raise replays the journal
-- (`isle.lab.journal.replay`), so nothing of the lab remains.
--
-- The calling process enters each new uts and time namespace to set it
-- up; it is always back in its own ones when `up` returns or raises.
-- @module isle.lab.build
local core = require "isle.core"
local sys = require "isle._sys"
local ns = require "isle.ns"
local netns = require "isle.netns"
local net = require "isle.net"
local journal = require "isle.lab.journal"
local model = require "isle.lab.model"
local impair = require "isle.lab.impair"
local host = require "isle.lab.host"

local M = {}

local ipairs, pairs, tostring, pcall, error, setmetatable =
  ipairs, pairs, tostring, pcall, error, setmetatable
local format = string.format
local EEXIST = 17

-- -------------------------------------------------------------------------
-- the caller's own namespaces

local Home = {}
Home.__index = Home

local function own_path(kind)
  return kind == "time" and "/proc/self/ns/time_for_children" or "/proc/self/ns/" .. kind
end

-- The caller's net, uts, time and mount namespaces and its working
-- directory (a mount namespace change resets it), held open to come back to.
local function new_home()
  local self = setmetatable({ saved = {}, moved = {} }, Home)
  local cwd, msg, e = core.open_fd(".")
  if not cwd then
    return nil, "open .: " .. msg, e
  end
  self.cwd = cwd
  for _, kind in ipairs { "net", "uts", "time", "mnt" } do
    local h, m, err = ns.open_ns(own_path(kind), kind)
    if not h then
      self:close()
      return nil, m, err
    end
    self.saved[kind] = h
  end
  return self
end

--- Go back into the saved namespace of `kind` if the caller left it (and,
-- for mnt, into its working directory).
function Home:back(kind)
  if not self.moved[kind] then
    return true
  end
  local ok, msg, e = ns.setns(self.saved[kind], kind)
  if ok and kind == "mnt" then
    ok, msg, e = core.chdir("/proc/self/fd/" .. self.cwd:fd())
  end
  if not ok then
    return nil, "restore " .. kind .. " namespace: " .. msg, e
  end
  self.moved[kind] = nil
  return true
end

--- Go back into every saved namespace the caller left.
function Home:restore()
  local first
  for kind in pairs(self.saved) do
    local ok, msg, e = self:back(kind)
    if not ok and not first then
      first = { msg, e }
    end
  end
  if first then
    return nil, first[1], first[2]
  end
  return true
end

--- Restore, then close the saved handles (also as `__close`: on a raise).
function Home:close()
  local ok, msg, e = self:restore()
  for kind, h in pairs(self.saved) do
    h:close()
    self.saved[kind] = nil
  end
  if self.cwd then
    self.cwd:close()
    self.cwd = nil
  end
  return ok, msg, e
end
Home.__close = Home.close

-- Keep a new namespace of `kind` alive on `path` (recorded first): unshare
-- (the caller enters it, or for time its children will), `setup()`, bind.
local function fresh(home, j, kind, path, setup)
  local ok, msg, e = j:record("bind", path)
  if ok then
    ok, msg, e = ns.unshare(kind)
  end
  if ok then
    home.moved[kind] = true
    if setup then ok, msg, e = setup() end
  end
  if ok then
    local h
    h, msg, e = ns.open_ns(own_path(kind), kind)
    ok = h ~= nil
    if h then
      ok, msg, e = h:bind(path)
      h:close()
    end
  end
  return ok, msg, e
end

-- -------------------------------------------------------------------------
-- namespaces

-- Record `verb arg`, then act; an act that finds `arg` taken (EEXIST) notes
-- it as foreign, so that replay leaves it alone.
local function made(j, verb, arg, act, ...)
  local ok, msg, e = j:record(verb, arg)
  if ok then
    ok, msg, e = act(...)
    if not ok and e == EEXIST then
      j:record("foreign", arg)
    end
  end
  return ok, msg, e
end

--- The text of a hosts file of plan p (see isle.lab.host.hosts_text).
M.hosts_text = host.hosts_text

-- /etc/netns/LAB-HOST/hosts, a link to the host's hosts file, for `ip
-- netns exec`. A user's directory or file there is theirs: used as found,
-- never changed or removed. The 4th result: whether the directory is ours
-- (made now: nothing of the user's in it).
local function etc_files(p, h, j)
  local ok, msg, e = true, nil, nil
  if journal.needs_etc_netns() then
    ok, msg, e = j:record("etcnetns")
    if ok then ok, msg, e = journal.make_etc_netns() end
  end
  local etc, ours = journal.ETC_NETNS .. "/" .. h.netns, false
  if ok and not core.lstat(etc) then
    ok, msg, e = made(j, "dir", etc, core.mkdir, etc, 493)
    ours = ok
    if not ok and e == EEXIST then ok, msg, e = true, nil, nil end
  end
  local link, target = etc .. "/hosts", host.hosts_path(j, h)
  if ok and host.own_hosts(h) then
    ok, msg, e = j:record("file", target)
    if ok then ok, msg, e = sys.writefile(target, host.hosts_text(p, h)) end
    if ok then ok, msg, e = core.chmod(target, 420) end
  end
  if ok and (ours or not core.lstat(link)) then
    ok, msg, e = j:record("symlink", link, target)
    if ok then
      ok, msg, e = core.symlink(target, link)
      if not ok and e == EEXIST then -- the user's, made just now: theirs
        ok, msg, e = j:record("foreign", link)
      end
    end
  end
  return ok, msg, e, ours
end

local function add_netns(j, name)
  if sys.exists(journal.NETNS_DIR .. "/" .. name) then
    return nil, "netns add " .. name .. ": File exists", EEXIST
  end
  local obj, msg, e = made(j, "netns", name, netns.add, name)
  if not obj then
    return nil, msg, e
  end
  local id = obj.id
  obj:close()
  -- the inode number alone is no identity: the kernel hands a freed one to
  -- the next namespace; the nsfs inode's birth time (mtime) tells them apart
  return j:record("ino", name, tostring(id), tostring(core.mtime(journal.NETNS_DIR .. "/" .. name)))
end

-- A host's network namespace, its time namespace, its /etc/netns link, then
-- its uts and mount namespaces (its hostname and filesystem: host.make).
local function host_namespaces(p, h, j, home, fs)
  local ok, msg, e = add_netns(j, h.netns)
  if ok and h.clock then
    ok, msg, e = fresh(home, j, "time", host.ns_path(j, h, "time"), function()
      return ns.timens_offsets("self", { monotonic = h.clock.monotonic,
        boottime = h.clock.boottime })
    end)
  end
  local ours
  if ok then
    ok, msg, e, ours = etc_files(p, h, j)
  end
  if ok then
    ok, msg, e = host.make(p, h, j, home, fs, ours)
  end
  return ok, msg, e
end

-- The switches' namespace, then each host's; the caller ends in its own.
local function namespaces(p, j, fail, progress)
  local home <close>, msg, e = new_home()
  if not home then
    return fail("own namespaces", msg, e)
  end
  local ok
  ok, msg, e = fresh(home, j, "net", j.dir .. "/net")
  if ok then ok, msg, e = home:restore() end
  if not ok then
    return fail("switch namespace", msg, e)
  end
  local fs
  fs, msg, e = host.prepare(p, j, home)
  if not fs then
    return fail("host filesystems", msg, e)
  end
  for i, h in ipairs(p.hosts) do
    ok, msg, e = host_namespaces(p, h, j, home, fs)
    if not ok then
      host.finish(fs)
      return fail("host " .. h.name, msg, e)
    end
    if progress then progress("namespaces", i, #p.hosts) end
  end
  host.finish(fs)
  ok, msg, e = home:close()
  if not ok then
    return fail("namespaces", msg, e)
  end
  return true
end

-- -------------------------------------------------------------------------
-- wiring: one netlink handle per namespace

-- The impairments of plan link l (as `isle.lab.impair` takes them).
local function impairments(l)
  return { delay = l.delay, jitter = l.jitter, loss = l.loss, rate = l.rate, cut = l.cut }
end
M.impairments = impairments

-- Impair end `ifname` of link l through Net n at up: its qdisc now, its
-- nft text into list `texts` (one transaction per namespace, later).
local function impair_end(w, n, l, ifname, texts)
  local r, msg, e = impair.up_end(n, ifname, impairments(l), w.p.backend, l.mtu)
  if r == nil then return nil, msg, e end
  if r ~= true then texts[#texts + 1] = r end
  return true
end

-- An end in the switches' namespace: on its bridge, up, impaired.
local function switch_end(w, l, en)
  local ok, msg, e = w.sw:link_set(en.ifname, { up = true, master = en.switch, mtu = l.mtu })
  if ok then
    ok, msg, e = impair_end(w, w.sw, l, en.ifname, w.swnft)
  end
  return ok, msg, e
end
M.switch_end = switch_end

-- Bridges (brought up last: attaching a port to a bridge that is up costs
-- time linear in its ports) and the links between switches.
local function switches(w, fail)
  local sw, p, created = w.sw, w.p, w.created
  local ok, msg, e = sw:link_set("lo", { up = true })
  if not ok then return fail("switches: lo up", msg, e) end
  -- no IPv6 of their own on bridges and ports (they forward it all the
  -- same): each port's link-local route went into one fib6 node, a walk
  -- of every other port's at each new one (O(N^2) at thousands of hosts)
  sw:sysctl("ipv6.conf.default.disable_ipv6", 1) -- (a kernel without IPv6: nothing to do)
  -- bridged frames kept out of this namespace's iptables (br_netfilter,
  -- when loaded, hooks every bridge): each frame a bridge floods (the IPv6
  -- solicitations and reports of every host) went through its hooks once
  -- per port, a quarter of the CPU at 10,000 hosts; link emulation hooks
  -- netdev ingress, not these
  for _, k in ipairs { "iptables", "ip6tables", "arptables" } do
    sw:sysctl("bridge.bridge-nf-call-" .. k, 0) -- (no br_netfilter: nothing to do)
  end
  for _, s in ipairs(p.switches) do
    ok, msg, e = sw:link_add { name = s.name, kind = "bridge" }
    if not ok then return fail("switch " .. s.name, msg, e) end
  end
  for i, l in ipairs(p.links) do
    if l[1].switch and l[2].switch then
      ok, msg, e = sw:link_add { name = l[1].ifname, kind = "veth", peer = { name = l[2].ifname } }
      if ok then ok, msg, e = switch_end(w, l, l[1]) end
      if ok then ok, msg, e = switch_end(w, l, l[2]) end
      if not ok then return fail("link " .. l.name, msg, e) end
      created[i] = true
    end
  end
  return true
end

-- One link end on host handle hn: the veth made from here when its other
-- end is not made yet, up, shaped, addressed.
local function host_end(w, hn, i, j)
  local l = w.p.links[i]
  local mine, other = l[j], l[3 - j]
  local ok, msg, e = true, nil, nil
  if not w.created[i] then
    ok, msg, e = hn:link_add { name = mine.ifname, kind = "veth", up = true, mtu = l.mtu,
      peer = { name = other.ifname, netns = other.netns or w.swpath, mtu = l.mtu } }
    if ok then w.created[i] = j end
    if ok and other.switch then ok, msg, e = switch_end(w, l, other) end
  end
  if ok and w.created[i] ~= j then -- made from the other end: set it up from here
    ok, msg, e = hn:link_set(mine.ifname, { up = true })
  end
  if ok then ok, msg, e = impair_end(w, hn, l, mine.ifname, w.hnft) end
  for _, a in ipairs(mine.ips) do
    if not ok then break end
    ok, msg, e = hn:addr_add(mine.ifname, a)
  end
  if not ok then
    return nil, "link " .. l.name .. ": " .. msg, e
  end
  return true
end

local function host_wiring(w, hn, h)
  local ok, msg, e = hn:link_set("lo", { up = true })
  if not ok then return nil, "lo up: " .. msg, e end
  if h.forward then
    ok, msg, e = hn:sysctl("ipv4.ip_forward", 1)
    if not ok then return nil, msg, e end
    hn:sysctl("ipv6.conf.all.forwarding", 1)
  end
  for k, v in pairs(h.sysctl or {}) do
    ok, msg, e = hn:sysctl(k, v)
    if not ok then return nil, msg, e end
  end
  w.hnft = {}
  for _, le in ipairs(w.ends[h.name] or {}) do
    ok, msg, e = host_end(w, hn, le[1], le[2])
    if not ok then return nil, msg, e end
  end
  if #w.hnft > 0 then
    ok, msg, e = hn:nft(table.concat(w.hnft), "impairments")
    if not ok then return nil, msg, e end
  end
  for _, r in ipairs(h.routes) do
    ok, msg, e = hn:route_add { dst = r.dst, via = r.via, dev = r.dev, metric = r.metric }
    if not ok then return nil, "route " .. r.dst .. ": " .. msg, e end
  end
  for _, x in ipairs(w.nats[h.name] or {}) do
    ok, msg, e = hn:nat(x.ifname, { source = x.source })
    if not ok then return nil, "nat " .. x.ifname .. ": " .. msg, e end
  end
  return true
end

-- Index the plan by host: its link ends and its NATs.
local function by_host(p)
  local ends, nats = {}, {}
  for i, l in ipairs(p.links) do
    for j = 1, 2 do
      local h = l[j].host
      if h then
        ends[h] = ends[h] or {}
        ends[h][#ends[h] + 1] = { i, j }
      end
    end
  end
  for _, x in ipairs(p.nats) do
    nats[x.host] = nats[x.host] or {}
    nats[x.host][#nats[x.host] + 1] = x
  end
  return ends, nats
end

-- The uplink: the only thing in the machine's own namespace.
local function uplink(p, j, sw)
  local u = p.uplink
  local root <close>, msg, e = net.open(nil)
  if not root then return nil, msg, e end
  local ok = true
  if root:link(u.ifname) then
    ok, msg, e = nil, "link add " .. u.ifname .. ": File exists", EEXIST
  end
  if ok then
    ok, msg, e = made(j, "uplink", u.ifname, sw.link_add, sw, { name = u.swifname,
      kind = "veth", peer = { name = u.ifname, netns = "/proc/self/ns/net" } })
  end
  local l = ok and root:link(u.ifname)
  if l then ok, msg, e = j:record("ifindex", u.ifname, tostring(l.index)) end
  if ok then ok, msg, e = sw:link_set(u.swifname, { up = true, master = u.switch }) end
  if ok then ok, msg, e = root:link_set(u.ifname, { up = true }) end
  for _, a in ipairs(u.ips) do
    if not ok then break end
    ok, msg, e = root:addr_add(u.ifname, a)
  end
  return ok, msg, e
end

local function wiring(p, j, sw, fail, progress)
  local w = { p = p, sw = sw, swpath = j.dir .. "/net", created = {}, swnft = {} }
  w.ends, w.nats = by_host(p)
  local ok, msg, e = switches(w, fail)
  if not ok then return nil, msg, e end
  for i, h in ipairs(p.hosts) do
    local hn <close>, m, err = net.open(h.netns)
    if hn then
      ok, m, err = host_wiring(w, hn, h)
    end
    if not (hn and ok) then return fail("host " .. h.name, m, err) end
    if progress then progress("links", i, #p.hosts) end
  end
  if #w.swnft > 0 then
    ok, msg, e = sw:nft(table.concat(w.swnft), "impairments")
    if not ok then return fail("switch namespace", msg, e) end
  end
  for _, s in ipairs(p.switches) do
    ok, msg, e = sw:link_set(s.name, { up = true })
    if not ok then return fail("switch " .. s.name, msg, e) end
  end
  if p.uplink then
    ok, msg, e = uplink(p, j, sw)
    if not ok then return fail("uplink " .. p.uplink.ifname, msg, e) end
  end
  return true
end

-- -------------------------------------------------------------------------
-- up

--- Serialize a plain value as a Lua literal (sorted keys) into list `out`
-- (`isle.lab.model.serialize`).
M.serialize = model.serialize

-- Ask the lab's own namespace for the link emulation backend; refuse
-- what it cannot carry; note it in the model.
local function backend(p, j, sw)
  local b, msg, e = impair.probe(sw)
  if not b then return nil, msg, e end
  p.backend = b
  for _, l in ipairs(p.links) do
    local why = impair.refusal(impairments(l), b)
    if why then return nil, "link " .. l.name .. ": " .. why, 95 end -- EOPNOTSUPP
  end
  return journal.writefile(j.dir .. "/model", model.text(p))
end

local function steps(p, j, progress)
  local function fail(what, msg, e)
    return nil, format("lab %s: %s: %s", p.name, what, msg or "failed"), e
  end
  local ok, msg, e = host.read_sources(p) -- the model keeps the texts
  if not ok then return fail("files", msg, e) end
  ok, msg, e = j:record("pid", tostring(sys.getpid()))
  if ok then ok, msg, e = j:record("file", j.dir .. "/model") end
  if ok then ok, msg, e = journal.writefile(j.dir .. "/model", model.text(p)) end
  if not ok then return fail("state", msg, e) end
  ok, msg, e = namespaces(p, j, fail, progress)
  if not ok then return nil, msg, e end
  local sw <close>, m, err = net.open(j.dir .. "/net")
  if not sw then return fail("open switch namespace", m, err) end
  if not p.backend then -- not asked before (not allowed where the caller is)
    ok, msg, e = backend(p, j, sw)
    if not ok then return fail("link emulation", msg, e) end
  end
  ok, msg, e = wiring(p, j, sw, fail, progress)
  if ok then
    ok, msg, e = require("isle.lab.services").start(p, j)
    if not ok then return fail("services", msg, e) end
  end
  if ok then ok, msg, e = j:record("done") end
  return ok, msg, e
end

-- The steps `apply` shares (isle.lab.apply).
M._new_home, M._fresh, M._host_namespaces = new_home, fresh, host_namespaces
M._host_end, M._host_wiring, M._by_host = host_end, host_wiring, by_host

--- Build plan `p`, all or nothing: on a failure or a raise the journal is
-- replayed (what was made is removed) before returning or raising again.
-- @tparam table p a plan (`isle.lab.plan.plan`)
-- @tparam[opt] function progress `progress(phase, done, total)`
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.up(p, progress)
  if p.uplink and core.ino("/run/.isle-holder") then -- isle.lab.context's marker
    return nil, format("lab %s: uplink needs root (a lab of an unprivileged user lives in its"
      .. " own user namespace and cannot reach the machine's network)", p.name), 1
  end
  local j, msg, e = journal.create(p.name)
  if not j then
    return nil, msg, e
  end
  local okc, ok, m, err = pcall(steps, p, j, progress)
  j:close()
  if okc and ok then
    return true
  end
  local undone, umsg = journal.replay(p.name)
  if not okc then
    error(ok, 0)
  end
  if not undone then
    m = m .. " (and undoing: " .. tostring(umsg) .. ")"
  end
  return nil, m, err
end

return M
