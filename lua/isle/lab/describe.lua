--- The whole of a running lab as one table (`isle.lab.describe`, `isle ls
-- NAME [--json]`): hosts with their interfaces, addresses and routes (read
-- from the kernel), switches with their ports, every link with both ends,
-- its state (up, down, cut), impairments and the mechanism carrying them.
-- The table's shape is the JSON schema of `isle ls --json NAME` (README,
-- "isle ls --json").
-- @module isle.lab.describe
local sys = require "isle._sys"
local net = require "isle.net"
local impair = require "isle.lab.impair"

local M = {}

local ipairs, tonumber, setmetatable = ipairs, tonumber, setmetatable
local sort = table.sort

--- The metatable that marks a table as a JSON object (`{}` when empty).
M.OBJECT = { __object = true }

--- Natural order of interface names: eth2 before eth10.
function M.natural_less(a, b)
  local ka, kb = a:gsub("%d+", function(d) return ("%012d"):format(tonumber(d)) end),
    b:gsub("%d+", function(d) return ("%012d"):format(tonumber(d)) end)
  if ka == kb then return a < b end
  return ka < kb
end
local natural_less = M.natural_less

local function by_name(x, y)
  return natural_less(x.name, y.name)
end

-- The state of a link: "down", "cut" or "up".
local function link_state(l)
  return l.down and "down" or l.cut and "cut" or "up"
end

local function copy(list)
  local t = {}
  for i, v in ipairs(list or {}) do t[i] = v end
  return t
end

-- What the kernel says of host h: {ifname → {up =, addresses =}}, routes.
local function kernel_host(h)
  local n = net.open(h.netns)
  if not n then
    return nil
  end
  local ifs = {}
  for _, l in ipairs(n:links() or {}) do
    if l.name ~= "lo" then ifs[l.name] = { up = l.up, addresses = {} } end
  end
  for _, a in ipairs(n:addrs() or {}) do
    local i = ifs[a.dev or ""]
    if i and not (a.family == "inet6" and a.address:match("^fe80:")) then
      i.addresses[#i.addresses + 1] = a.cidr
    end
  end
  local routes = {}
  for _, r in ipairs(n:routes() or {}) do
    local d = r.dst
    if not (r.family == "inet6" and (d:match("^fe80:") or d:match("^ff%x%x:") or r.type ~= 1)) then
      routes[#routes + 1] = { dst = d, via = r.via, dev = r.dev, metric = r.metric,
        family = r.family, connected = r.protocol == 2 or nil }
    end
  end
  n:close()
  return ifs, routes
end

-- The hosts: interfaces (sorted; what the plan says, the kernel's
-- addresses and up flag when it can be read), routes, gateways.
-- The services of each host (declared order), with the state and pid the
-- supervisor last wrote: HOST -> {{name, state, pid}, ...}.
local function services_of(p)
  local by = {}
  if #(p.services or {}) == 0 then return by end
  local st = require("isle.lab.services").read_status(p.name)
  local now = {}
  for _, x in ipairs(st and st.list or {}) do now[x.host .. "/" .. x.name] = x end
  for _, s in ipairs(p.services) do
    local x = now[s.host .. "/" .. s.name] or {}
    local state = x.state or "unknown"
    if st and not st.running then state = "unsupervised" end
    by[s.host] = by[s.host] or {}
    by[s.host][#by[s.host] + 1] = { name = s.name, state = state,
      pid = x.pid ~= 0 and x.pid or nil }
  end
  return by
end

local function hosts(p, peers)
  local out = {}
  local svc = services_of(p)
  for _, h in ipairs(p.hosts) do
    local kif, routes = kernel_host(h)
    local ifaces = {}
    for _, i in ipairs(h.ifaces) do
      local k = kif and kif[i.name]
      local pe = peers[h.name .. ":" .. i.name] or {}
      local up
      if k then up = k.up end
      ifaces[#ifaces + 1] = { name = i.name, up = up,
        addresses = k and k.addresses or copy(i.ips), link = pe.link, peer = pe.peer }
    end
    sort(ifaces, by_name)
    local gws = {}
    for _, r in ipairs(h.routes) do
      if r.dst == "default" and r.via then gws[#gws + 1] = r.via end
    end
    if not routes then
      routes = {}
      for _, r in ipairs(h.routes) do
        routes[#routes + 1] = { dst = r.dst, via = r.via, dev = r.dev, metric = r.metric }
      end
    end
    out[#out + 1] = { name = h.name, hostname = h.hostname, netns = h.netns,
      router = h.forward or false, interfaces = ifaces, routes = routes, gateways = gws,
      services = svc[h.name] }
  end
  return out
end

local function node_of(en)
  return en.host or en.switch
end

--- The description of plan `p` (a running lab's, `isle.lab.state.current`), and
-- its journal state `st` (for the lab's state word).
-- @treturn table see the README's schema
function M.describe(p, st)
  local links, peers, ports = {}, {}, {}
  for _, l in ipairs(p.links) do
    local ends = {}
    for j = 1, 2 do
      local en, other = l[j], l[3 - j]
      ends[j] = { node = node_of(en), kind = en.host and "host" or "switch", ifname = en.ifname,
        addresses = copy(en.ips) }
      peers[node_of(en) .. ":" .. en.ifname] = { link = l.name,
        peer = node_of(other) .. ":" .. other.ifname }
      if en.switch then
        ports[en.switch] = ports[en.switch] or {}
        ports[en.switch][#ports[en.switch] + 1] = en.ifname
      end
    end
    local s = { delay = l.delay, jitter = l.jitter, loss = l.loss, rate = l.rate, cut = l.cut }
    local imp = {}
    for _, k in ipairs(impair.FIELDS) do imp[k] = s[k] end
    links[#links + 1] = { name = l.name, ends = ends, state = link_state(l), mtu = l.mtu,
      impairments = setmetatable(imp, M.OBJECT),
      backend = p.backend and impair.carriers(s, p.backend) or nil }
  end
  if p.uplink then
    local u = p.uplink
    ports[u.switch] = ports[u.switch] or {}
    ports[u.switch][#ports[u.switch] + 1] = u.swifname
  end
  local switches = {}
  for _, s in ipairs(p.switches) do
    local list = ports[s.name] or {}
    sort(list, natural_less)
    switches[#switches + 1] = { name = s.name, ports = list }
  end
  local nats = {}
  for _, x in ipairs(p.nats) do
    nats[#nats + 1] = { host = x.host, out = x.ifname, source = x.source }
  end
  local state = "broken"
  if st and st.apply then
    state = "applying"
  elseif st and st.complete then
    state = "up"
  elseif st and st.pid and sys.exists("/proc/" .. st.pid) then
    state = "building"
  end
  return { name = p.name, state = state, backend = p.backend, hosts = hosts(p, peers),
    switches = switches, links = links, nat = nats,
    uplink = p.uplink and { switch = p.uplink.switch, ifname = p.uplink.ifname,
      port = p.uplink.swifname, addresses = copy(p.uplink.ips) } or nil }
end

--- The interfaces of hosts (plans) read from the kernel: host name →
-- `{{name =, up =, addresses = {...}}, ...}` (loopback and IPv6 link-local
-- addresses left out); a host whose namespace cannot be opened is missing
-- (see `isle.lab.interfaces`).
function M.interfaces(plans)
  local out = {}
  for _, h in ipairs(plans) do
    local n = net.open(h.netns)
    if n then
      local list = {}
      for _, l in ipairs(n:links() or {}) do
        if l.name ~= "lo" then
          local addrs = {}
          for _, a in ipairs(n:addrs(l.name) or {}) do
            if not (a.family == "inet6" and a.address:match("^fe80:")) then
              addrs[#addrs + 1] = a.cidr
            end
          end
          list[#list + 1] = { name = l.name, up = l.up, addresses = addrs }
        end
      end
      n:close()
      out[h.name] = list
    end
  end
  return out
end

return M
