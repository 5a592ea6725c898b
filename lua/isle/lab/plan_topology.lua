--- The whole declaration → its plan (`isle.lab.plan.plan`): hosts and
-- switches, links and their ends (interface names, addresses), routes,
-- NAT, the uplink, services and the hosts file, each checked against the
-- rest of the lab. The options of each declaring method are checked in
-- `isle.lab.plan` (and `isle.lab.plan_machine`); mistakes raise its `Bad`.
-- Pure: no system call.
-- @module isle.lab.plan_topology
local ip = require "isle.ip"
local net = require "isle.net"
local machine = require "isle.lab.plan_machine"
local P = require "isle.lab.plan" -- loaded first (its `plan` requires this module)

local M = {}

local type, ipairs, tostring, getmetatable, pcall = type, ipairs, tostring, getmetatable, pcall
local format = string.format
local Bad = P.Bad
local fail, unsupported, within = P._fail, P._unsupported, P._within

-- Hosts and switches, names and options checked again (they may have
-- changed since they were declared).
local function nodes(decl, st, env)
  local p = st.plan
  for _, n in ipairs(decl.order) do
    local what = n.kind .. " " .. tostring(n.name)
    within(what, P.node_name, n.kind, n.name)
    if st.nodes[n.name] then
      fail("two nodes are named '%s'", n.name)
    end
    st.nodes[n.name] = n
    if n.kind == "host" then
      local o = within(what, P.host_opts, n.opts or {}, env.clocks)
      local h = { name = n.name, hostname = o.hostname or n.name, netns = p.name .. "-" .. n.name,
        forward = o.forward or nil, clock = o.clock, sysctl = o.sysctl, files = o.files,
        private = o.private, mounts = o.mounts, ifaces = {}, ifnames = {}, routes = {}, opts = o }
      st.hosts[n] = h
      p.hosts[#p.hosts + 1] = h
    else
      local s = { name = n.name, ports = 0 }
      st.switches[n] = s
      p.switches[#p.switches + 1] = s
      st.swnames[n.name] = "switch " .. n.name
    end
  end
end

-- One end of a link: its interface name and addresses.
local function endpoint(st, node, ifn, ips, lname)
  local h = st.hosts[node]
  if h then
    local name = ifn or ("eth" .. #h.ifaces)
    if h.ifnames[name] then
      fail("link %s: host %s already has an interface %s", lname, h.name, name)
    end
    local texts = {}
    for i, a in ipairs(ips) do
      local k = ip.key(a)
      if st.addrs[k] then
        fail("link %s: address %s is also on %s", lname, a.addr, st.addrs[k])
      end
      st.addrs[k] = h.name
      texts[i] = a.text
    end
    local iface = { name = name, ips = texts, parsed = ips }
    h.ifaces[#h.ifaces + 1] = iface
    h.ifnames[name] = iface
    return { host = h.name, netns = h.netns, ifname = name, ips = texts }
  end
  local s = st.switches[node]
  s.ports = s.ports + 1
  local name = ifn or (s.name .. "-eth" .. s.ports)
  if #name >= P.IFNAMSIZ then
    fail("link %s: generated port name %s is longer than %d bytes; give ifname = {...}",
      lname, name, P.IFNAMSIZ - 1)
  end
  if st.swnames[name] then
    fail("link %s: interface name %s is taken by %s", lname, name, st.swnames[name])
  end
  st.swnames[name] = "link " .. lname
  return { switch = s.name, ifname = name, ips = {} }
end

local function link(st, l)
  local a, b = l.a, l.b
  if not st.nodes[a.name] or st.nodes[a.name] ~= a or st.nodes[b.name] ~= b then
    fail("link %s-%s: a node of another lab", tostring(a.name), tostring(b.name))
  end
  local lname = a.name .. "-" .. b.name
  if a == b then
    fail("link %s: a link needs two different nodes", lname)
  end
  local o = within("link " .. lname, P.link_opts, a.kind, b.kind, l.opts or {})
  if st.env.netem == false and (o.delay or o.jitter) then
    unsupported("link %s: %s", lname, st.env.netem_missing or "delay and jitter need sch_netem")
  end
  local pl = { name = lname, mtu = o.mtu, delay = o.delay, jitter = o.jitter, loss = o.loss,
    rate = o.rate }
  pl[1] = endpoint(st, a, o.ifnames[1], o.ips[1], lname)
  pl[2] = endpoint(st, b, o.ifnames[2], o.ips[2], lname)
  for _, x in ipairs(o.ips[1]) do
    for _, y in ipairs(o.ips[2]) do
      if x.family == y.family and not ip.same_prefix(x, y, math.min(x.prefix, y.prefix)) then
        fail("link %s: %s and %s are not in one subnet", lname, x.text, y.text)
      end
    end
  end
  st.plan.links[#st.plan.links + 1] = pl
end

-- The interface of host h whose subnet holds address a (raises when none
-- does, or when a is the host's own).
local function connected(h, a, what)
  for _, iface in ipairs(h.ifaces) do
    for _, mine in ipairs(iface.parsed) do
      if ip.key(mine) == ip.key(a) then
        fail("host %s: %s %s is the host's own address", h.name, what, a.addr)
      end
    end
  end
  for _, iface in ipairs(h.ifaces) do
    for _, mine in ipairs(iface.parsed) do
      if mine.family == a.family and ip.same_prefix(mine, a, mine.prefix) then
        return iface
      end
    end
  end
  fail("host %s: %s %s is in none of the host's subnets", h.name, what, a.addr)
end

-- A route the kernel already has (an IPv4 subnet's own, metric 0) or that
-- the host declares twice (EEXIST at the build).
local function route_clash(h, seen, r, family, what)
  local key = format("%d %s %d", family, r.dstp and ip.network(r.dstp) or "default",
    r.metric or 0)
  if seen[key] then
    fail("host %s: %s duplicates %s (same destination and metric)", h.name, what, seen[key])
  end
  seen[key] = what
  if r.dstp and family == 4 and (r.metric or 0) == 0 then
    for _, iface in ipairs(h.ifaces) do
      for _, mine in ipairs(iface.parsed) do
        if mine.family == 4 and ip.network(mine) == ip.network(r.dstp) then
          fail("host %s: %s is the subnet of %s, which the kernel routes already (give a metric)",
            h.name, what, iface.name)
        end
      end
    end
  end
end

local function routes(st)
  for _, h in ipairs(st.plan.hosts) do
    local seen = {}
    for _, g in ipairs(h.opts.gateways) do
      connected(h, g, "gateway")
      local r = { dst = "default", via = g.addr, family = g.family }
      route_clash(h, seen, r, g.family, format("gateway %s", g.addr))
      h.routes[#h.routes + 1] = r
    end
    for i, r in ipairs(h.opts.routes) do
      local what = format("routes[%d]", i)
      local family = r.dstp and r.dstp.family or (r.viap and r.viap.family) or 4
      if r.viap then
        connected(h, r.viap, what .. ".via")
      end
      if r.dev and not h.ifnames[r.dev] then
        fail("host %s: %s.dev %s is not an interface of the host", h.name, what, r.dev)
      end
      route_clash(h, seen, r, family, what)
      h.routes[#h.routes + 1] = { dst = r.dst, via = r.via, dev = r.dev, metric = r.metric }
    end
  end
end

local function nats(decl, st)
  for _, x in ipairs(decl.nats) do
    local h = st.hosts[x.host]
    if not h or st.nodes[x.host.name] ~= x.host then
      fail("nat on %s: not a host of this lab", tostring(x.host.name))
    end
    local o = within("nat on " .. h.name, P.nat_opts, x.opts or {})
    local peer = type(o.out) == "table" and o.out or st.nodes[o.out]
    local name
    if peer then
      for _, l in ipairs(st.plan.links) do
        for i = 1, 2 do
          if l[i].host == h.name and (l[3 - i].host or l[3 - i].switch) == peer.name then
            name = l[i].ifname
          end
        end
      end
      if not name then
        fail("nat on %s: no link to %s", h.name, tostring(peer.name))
      end
    elseif h.ifnames[o.out] then
      name = o.out
    else
      fail("nat on %s: no interface %s", h.name, tostring(o.out))
    end
    local why = net._nat_ifname(name)
    if why then
      fail("nat on %s: %s", h.name, why)
    end
    st.plan.nats[#st.plan.nats + 1] = { host = h.name, ifname = name, source = o.source }
  end
end

local function uplink(decl, st)
  local u = decl.up_link
  if not u then
    return
  end
  local s = st.switches[u.switch]
  if not s or st.nodes[u.switch.name] ~= u.switch then
    fail("uplink: %s is not a switch of this lab", tostring(u.switch.name))
  end
  local o = within("uplink", P.uplink_opts, st.plan.name, u.opts or {})
  local name = s.name .. "-up"
  if #name >= P.IFNAMSIZ or st.swnames[name] then
    name = "up-" .. s.name:sub(1, 12)
  end
  if st.swnames[name] then
    fail("uplink: no free name for the switch end")
  end
  s.ports = s.ports + 1
  local texts = {}
  for i, a in ipairs(o.ips) do
    if st.addrs[ip.key(a)] then
      fail("uplink: address %s is also on %s", a.addr, st.addrs[ip.key(a)])
    end
    texts[i] = a.text
  end
  st.plan.uplink = { switch = s.name, ifname = o.ifname, swifname = name, ips = texts }
end

-- Every lab host's addresses, for each host's hosts file.
local function etc_hosts(p)
  local lines = {}
  for _, h in ipairs(p.hosts) do
    local names = h.hostname ~= h.name and (h.name .. " " .. h.hostname) or h.name
    for _, iface in ipairs(h.ifaces) do
      for _, text in ipairs(iface.ips) do
        lines[#lines + 1] = text:match("^[^/]+") .. "\t" .. names
      end
    end
  end
  p.etc_hosts = lines
end

--- The plan of declaration `decl` (see `isle.lab.plan.plan`).
function M.plan(decl, env)
  env = env or {}
  local ok, why = pcall(P.node_name, "lab", decl.name)
  if not ok then
    fail("%s", getmetatable(why) == Bad and why.why or tostring(why))
  end
  local p = { name = decl.name, hosts = {}, switches = {}, links = {}, nats = {},
    backend = env.backend }
  local st = { plan = p, hosts = {}, switches = {}, swnames = {}, addrs = {}, nodes = {},
    env = env }
  nodes(decl, st, env)
  for _, l in ipairs(decl.links) do
    link(st, l)
  end
  routes(st)
  nats(decl, st)
  uplink(decl, st)
  machine.services(decl, st)
  for _, s in ipairs(p.switches) do
    if s.ports >= P.BR_MAX_PORTS then
      fail("switch %s: %d ports; a Linux bridge takes at most %d (BR_MAX_PORTS %d, port 0 "
        .. "reserved): split it into several switches", s.name, s.ports, P.BR_MAX_PORTS - 1,
        P.BR_MAX_PORTS)
    end
  end
  for _, h in ipairs(p.hosts) do
    for _, iface in ipairs(h.ifaces) do
      iface.parsed = nil
    end
    h.ifnames, h.opts = nil, nil
  end
  etc_hosts(p)
  return p
end

return M
