--- Topologies: hosts, switches and links declared in Lua, built in one go.
--
-- A lab is declared first (`lab:host`, `lab:switch`, `lab:link`, ...), then
-- `lab:up()` checks the whole declaration (a mistake raises, naming the
-- culprit, before anything is created) and builds it through `isle.net`,
-- all or nothing. Each host is the named network namespace `LAB-HOST`
-- (`ip netns exec demo-h1 ...` works) with its own uts namespace (its
-- hostname) and, with `clock`, its own time namespace; switches are Linux
-- bridges in a network namespace of the lab's own. Lab hosts resolve each
-- other by name through `/etc/netns/LAB-HOST/hosts`.
--
-- Everything the lab creates is recorded under `/run/isle/LAB/` *before* it
-- is created, so `lab:down()` (or `isle down LAB`) removes exactly what the
-- lab made, also after the building process was killed, and never anything
-- it did not make.
-- @module isle.lab
-- @usage local isle = require "isle"
-- local lab = isle.lab("demo")
-- local s1 = lab:switch("s1")
-- local h1, h2 = lab:host("h1"), lab:host("h2")
-- lab:link(h1, s1, {ip = "10.0.0.1/24"})
-- lab:link(h2, s1, {ip = "10.0.0.2/24", delay = "5ms"})
-- assert(lab:up())
-- print(lab:run("h1", {"ping", "-c1", "h2"}))
-- assert(lab:down())

local core = require "isle.core"
local U = require "isle._util"

local M = {}

local type, pairs, ipairs, tostring, tonumber, error, setmetatable, getmetatable =
  type, pairs, ipairs, tostring, tonumber, error, setmetatable, getmetatable
local format, concat, sort, mtype = string.format, table.concat, table.sort, math.type

--- Where labs keep their state (one directory per lab).
M.STATE_DIR = "/run/isle"
local NETNS_DIR = "/run/netns"
local ETC_NETNS = "/etc/netns"
local IFNAMSIZ = 16

local function lazy(name)
  return setmetatable({}, { __index = function(_, k) return require(name)[k] end })
end
local netns = lazy "isle.netns"
local ns = lazy "isle.ns"
local mount = lazy "isle.mount"
local process = lazy "isle.process"
local function net() return require "isle.net" end

------------------------------------------------------------------------------
-- small file-system helpers (no programs run)

local function mkdir(path)
  return core.mkdir(path, 493) -- 0755
end

-- /etc/netns when a lab made it: removed once empty again
local ETC_NETNS_MARK = M.STATE_DIR .. "/made-etc-netns"

local function drop_etc_netns()
  if core.ino(ETC_NETNS_MARK) and os.remove(ETC_NETNS) then
    os.remove(ETC_NETNS_MARK)
  end
end

local function exists(path)
  return core.ino(path) ~= nil
end

-- Names in a directory (empty when missing).
-- This process's pid (no fork: /proc/self is the reader itself).
local function mypid()
  local s = core.readfile("/proc/self/stat") or ""
  return math.tointeger(tonumber(s:match("^(%d+)"))) or 0
end

-- Wait a little (Lua has no sleep; only used while the kernel finishes
-- removing an uplink).
local function pause(seconds)
  local t = os.clock() + seconds
  repeat until os.clock() >= t
end

local function listdir(path)
  return core.netns_list(path) or {}
end

local function writefile(path, data)
  local f, msg, e = core.fopen(path, "w")
  if not f then
    return nil, msg, e
  end
  local ok
  ok, msg, e = f:write(data)
  if not ok then
    f:close()
    return nil, msg, e
  end
  return f:close()
end

local function rmfile(path)
  local ok, msg, e = os.remove(path)
  if not ok and e ~= 2 then
    return nil, msg, e
  end
  return true
end

-- Detach-unmount and remove a file used as a mount point.
local function unbind(path)
  core.umount(path, 2) -- MNT_DETACH; not mounted is fine
  return rmfile(path)
end

------------------------------------------------------------------------------
-- addresses

-- Parse "a.b.c.d[/n]" or an IPv6 address[/n]: {family, bytes, prefix, addr}
-- or nil, why.
local function parse_ip(s)
  if type(s) ~= "string" then
    return nil, "address string expected, got " .. type(s)
  end
  local addr, plen = s:match("^([^/]+)/(%d+)$")
  if not addr then
    if s:find("/", 1, true) then
      return nil, "bad prefix length in '" .. s .. "'"
    end
    addr = s
  end
  local bytes, family
  local a, b, c, d = addr:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then
    family, bytes = 4, { tonumber(a), tonumber(b), tonumber(c), tonumber(d) }
    for _, v in ipairs(bytes) do
      if v > 255 then
        return nil, "bad IPv4 address '" .. s .. "'"
      end
    end
  elseif addr:find(":", 1, true) then
    family = 6
    local head, tail = addr:match("^(.-)::(.*)$")
    local function groups(str)
      local g = {}
      if str == "" then
        return g
      end
      for part in (str .. ":"):gmatch("([^:]*):") do
        if not part:match("^%x%x?%x?%x?$") then
          return nil
        end
        g[#g + 1] = tonumber(part, 16)
      end
      return g
    end
    local hg, tg
    if head then
      hg, tg = groups(head), groups(tail)
      if not hg or not tg or #hg + #tg > 7 then
        return nil, "bad IPv6 address '" .. s .. "'"
      end
      for _ = 1, 8 - #hg - #tg do
        hg[#hg + 1] = 0
      end
      for _, v in ipairs(tg) do
        hg[#hg + 1] = v
      end
    else
      hg = groups(addr)
      if not hg or #hg ~= 8 then
        return nil, "bad IPv6 address '" .. s .. "'"
      end
    end
    bytes = {}
    for i, v in ipairs(hg) do
      bytes[2 * i - 1], bytes[2 * i] = v >> 8, v & 255
    end
  else
    return nil, "bad address '" .. s .. "'"
  end
  local prefix
  if plen then
    prefix = tonumber(plen)
    if prefix > #bytes * 8 then
      return nil, "prefix length /" .. plen .. " too long in '" .. s .. "'"
    end
  end
  return { family = family, bytes = bytes, prefix = prefix, addr = addr, text = s }
end
M._parse_ip = parse_ip

-- Do a and b agree on the first n bits?
local function same_prefix(a, b, n)
  if a.family ~= b.family then
    return false
  end
  for i = 1, #a.bytes do
    local bits = math.min(8, math.max(0, n - (i - 1) * 8))
    if bits == 0 then
      return true
    end
    local mask = (0xff << (8 - bits)) & 0xff
    if a.bytes[i] & mask ~= b.bytes[i] & mask then
      return false
    end
  end
  return true
end

-- Are the host bits of ip (under ip.prefix) all `bit` (0 or 1)?
local function host_bits_all(ip, bit)
  for i = 1, #ip.bytes do
    local first = (i - 1) * 8
    local nb = math.max(0, math.min(8, first + 8 - ip.prefix)) -- host bits in this byte
    if nb > 0 then
      local mask = (1 << nb) - 1
      local want = bit == 1 and mask or 0
      if ip.bytes[i] & mask ~= want then
        return false
      end
    end
  end
  return true
end

local function key(ip)
  return ip.family .. ":" .. concat(ip.bytes, ".")
end

------------------------------------------------------------------------------
-- the declaration

local Lab = {}
Lab.__index = Lab

local Node = {}
Node.__index = Node
function Node:__tostring()
  return format("isle.lab %s %s", self.kind, self.name)
end

local function checkname(fname, what, name, level, maxlen)
  local why = U.badname(name)
  if not why and not name:match("^[%w_][%w_.-]*$") then
    why = "name '" .. name .. "' may hold only letters, digits, '_', '.' and '-'"
  end
  if not why and #name > (maxlen or 64) then
    why = format("name '%s' is longer than %d bytes", name, maxlen or 64)
  end
  if why then
    U.argerror(fname, what, why, level + 1)
  end
end

local function checkifname(fname, what, name, level)
  if type(name) ~= "string" then
    U.argerror(fname, what, "interface name expected, got " .. type(name), level + 1)
  end
  if name == "" or #name >= IFNAMSIZ or name:find("[%s/:%z]") or name == "." or name == ".." then
    U.argerror(fname, what, format("bad interface name '%s' (1 to %d bytes, no '/', ':' or "
      .. "blanks)", name, IFNAMSIZ - 1), level + 1)
  end
end

local host_opts = U.set { "hostname", "gateway", "routes", "forward", "clock", "sysctl" }
local link_opts = U.set { "ip", "ifname", "mtu", "delay", "jitter", "loss", "rate" }
local nat_opts = U.set { "out", "source" }
local uplink_opts = U.set { "ip", "ifname" }

--- Create a lab (nothing is built before `lab:up()`).
-- @string name the lab's name: letters, digits, `_`, `.`, `-`, at most 64 bytes
-- @treturn Lab
-- @raise on a bad name
-- @function isle.lab
local RESERVED = U.set { "containers", "made-etc-netns" } -- other users of /run/isle

local function new(name)
  checkname("lab", "name", name, 2)
  if RESERVED[name] then
    U.argerror("lab", "name", "'" .. name .. "' is reserved", 2)
  end
  return setmetatable({ name = name, nodes = {}, order = {}, links = {}, nats = {},
    procs = {}, built = false }, Lab)
end

local function addnode(self, fname, kind, name, opts, level)
  checkname(fname, "name", name, level + 1, kind == "switch" and IFNAMSIZ - 1 or 64)
  if kind == "switch" then
    checkifname(fname, "name", name, level + 1)
  end
  if self.nodes[name] then
    U.argerror(fname, "name", format("lab %s already has a %s named '%s'", self.name,
      self.nodes[name].kind, name), level + 1)
  end
  local node = setmetatable({ kind = kind, name = name, lab = self, opts = opts }, Node)
  self.nodes[name] = node
  self.order[#self.order + 1] = node
  return node
end

local function check_clock(fname, clock, level)
  if type(clock) ~= "table" then
    U.argerror(fname, "opts.clock", "table {monotonic =, boottime =} expected", level + 1)
  end
  for k, v in pairs(clock) do
    if k ~= "monotonic" and k ~= "boottime" then
      U.argerror(fname, "opts.clock", "unknown clock '" .. tostring(k)
        .. "' (expected monotonic or boottime)", level + 1)
    end
    if type(v) ~= "number" then
      U.argerror(fname, "opts.clock." .. k, "number of seconds expected", level + 1)
    end
  end
end

--- Declare a host: a network namespace `LAB-NAME` with its own hostname.
-- @string name host name (also its default hostname and its name in the
-- lab's hosts files)
-- @tparam[opt] table opts
-- @treturn Node
-- @raise on a bad name, a duplicate or an unknown option
function Lab:host(name, opts)
  opts = opts or {}
  U.checkfields("host", "opts", opts, host_opts, 2)
  if opts.hostname ~= nil then
    checkname("host", "opts.hostname", opts.hostname, 2)
  end
  if opts.forward ~= nil and type(opts.forward) ~= "boolean" then
    U.argerror("host", "opts.forward", "boolean expected", 2)
  end
  if opts.clock ~= nil then
    check_clock("host", opts.clock, 2)
  end
  if opts.gateway ~= nil then
    local gws = type(opts.gateway) == "table" and opts.gateway or { opts.gateway }
    for i, g in ipairs(gws) do
      local ip, why = parse_ip(g)
      if not ip or ip.prefix then
        U.argerror("host", "opts.gateway", why or ("gateway '" .. g .. "' takes no prefix"), 2)
      end
      gws[i] = ip
    end
  end
  if opts.routes ~= nil then
    if type(opts.routes) ~= "table" then
      U.argerror("host", "opts.routes", "list of {dst =, via =} expected", 2)
    end
    for i, r in ipairs(opts.routes) do
      local where = format("opts.routes[%d]", i)
      U.checkfields("host", where, r, U.set { "dst", "via", "dev", "metric" }, 2)
      if r.dst ~= "default" then
        local ip, why = parse_ip(r.dst)
        if not ip or not ip.prefix then
          U.argerror("host", where .. ".dst", why or "destination needs a prefix length", 2)
        end
        if not host_bits_all(ip, 0) then
          U.argerror("host", where .. ".dst", "'" .. r.dst .. "' has host bits set", 2)
        end
      end
      if r.via == nil and r.dev == nil then
        U.argerror("host", where, "via or dev expected", 2)
      end
      if r.via ~= nil then
        local ip, why = parse_ip(r.via)
        if not ip or ip.prefix then
          U.argerror("host", where .. ".via", why or "a gateway takes no prefix", 2)
        end
      end
      if r.dev ~= nil then
        checkifname("host", where .. ".dev", r.dev, 2)
      end
      if r.metric ~= nil and (mtype(r.metric) ~= "integer" or r.metric < 0) then
        U.argerror("host", where .. ".metric", "non-negative integer expected", 2)
      end
    end
  end
  if opts.sysctl ~= nil then
    if type(opts.sysctl) ~= "table" then
      U.argerror("host", "opts.sysctl", "table {['ipv4.ip_forward'] = 1, ...} expected", 2)
    end
    for k, v in pairs(opts.sysctl) do
      if type(k) ~= "string" or not k:match("^[%w_][%w_.%-/]*$") or k:find("..", 1, true) then
        U.argerror("host", "opts.sysctl", "bad sysctl name '" .. tostring(k) .. "'", 2)
      end
      if type(v) ~= "number" and type(v) ~= "string" then
        U.argerror("host", "opts.sysctl." .. k, "number or string expected", 2)
      end
    end
  end
  local node = addnode(self, "host", "host", name, opts, 2)
  node.hostname = opts.hostname or name
  node.ifaces = {}
  return node
end

--- Declare a switch: a Linux bridge in the lab's own network namespace.
-- @string name bridge name (at most 15 bytes)
-- @tparam[opt] table opts none yet
-- @treturn Node
function Lab:switch(name, opts)
  opts = opts or {}
  U.checkfields("switch", "opts", opts, {}, 2)
  local node = addnode(self, "switch", "switch", name, opts, 2)
  node.ports = 0
  return node
end

local function resolve(self, fname, argname, v, level)
  if getmetatable(v) == Node then
    if v.lab ~= self then
      U.argerror(fname, argname, "node " .. v.name .. " belongs to another lab", level + 1)
    end
    return v
  end
  if type(v) == "string" and self.nodes[v] then
    return self.nodes[v]
  end
  U.argerror(fname, argname, "a host or switch of lab " .. self.name .. " expected, got "
    .. (type(v) == "string" and "'" .. v .. "'" or type(v)), level + 1)
end

local function check_rate(fname, what, v, re, level)
  if v == nil then
    return
  end
  if type(v) == "number" and v >= 0 then
    return
  end
  if type(v) ~= "string" or not v:lower():match(re) then
    U.argerror(fname, what, "bad value '" .. tostring(v) .. "'", level + 1)
  end
end

local function iplist(fname, what, v, level)
  if v == nil or v == false then
    return {}
  end
  local list = type(v) == "table" and v or { v }
  local out = {}
  for i, s in ipairs(list) do
    local ip, why = parse_ip(s)
    if not ip then
      U.argerror(fname, what, why, level + 1)
    end
    if not ip.prefix then
      U.argerror(fname, what, format("'%s' needs a prefix length (e.g. /24)", s), level + 1)
    end
    if ip.family == 4 and ip.prefix < 31
      and (host_bits_all(ip, 0) or host_bits_all(ip, 1)) then
      U.argerror(fname, what, format("'%s' is the %s address of its subnet", s,
        host_bits_all(ip, 0) and "network" or "broadcast"), level + 1)
    end
    out[i] = ip
  end
  return out
end

--- Connect two nodes with a veth pair.
-- @tparam Node|string a a host or switch (or its name)
-- @tparam Node|string b
-- @tparam[opt] table opts `ip` (the host end's address, a list of them, or
-- `{a_ip, b_ip}` between two hosts), `ifname` (`{a, b}`, or a string for
-- the one host end), `mtu`, `delay`, `jitter`, `loss` (percent), `rate` —
-- delay and friends apply in both directions (netem on both ends).
-- @treturn table the link
function Lab:link(a, b, opts)
  opts = opts or {}
  a = resolve(self, "link", "a", a, 2)
  b = resolve(self, "link", "b", b, 2)
  if a == b then
    U.argerror("link", "b", "a link needs two different nodes", 2)
  end
  U.checkfields("link", "opts", opts, link_opts, 2)
  local link = { a = a, b = b, opts = opts, index = #self.links + 1 }
  local ends = { { node = a }, { node = b } }
  link.ends = ends
  -- addresses
  local both_hosts = a.kind == "host" and b.kind == "host"
  if both_hosts then
    if opts.ip ~= nil and type(opts.ip) ~= "table" then
      U.argerror("link", "opts.ip", "{a_ip, b_ip} expected between two hosts", 2)
    end
    local t = opts.ip or {}
    ends[1].ips = iplist("link", "opts.ip[1]", t[1], 2)
    ends[2].ips = iplist("link", "opts.ip[2]", t[2], 2)
  elseif a.kind == "host" or b.kind == "host" then
    local h = a.kind == "host" and 1 or 2
    ends[h].ips = iplist("link", "opts.ip", opts.ip, 2)
    ends[3 - h].ips = {}
  else
    if opts.ip ~= nil then
      U.argerror("link", "opts.ip", "a link between two switches has no host end", 2)
    end
    ends[1].ips, ends[2].ips = {}, {}
  end
  -- interface names
  local ifn = opts.ifname
  if ifn ~= nil then
    if type(ifn) == "string" then
      if both_hosts or (a.kind ~= "host" and b.kind ~= "host") then
        U.argerror("link", "opts.ifname", "{a_name, b_name} expected", 2)
      end
      ifn = a.kind == "host" and { ifn } or { nil, ifn }
    elseif type(ifn) ~= "table" then
      U.argerror("link", "opts.ifname", "string or {a_name, b_name} expected", 2)
    end
    for i = 1, 2 do
      if ifn[i] ~= nil then
        checkifname("link", format("opts.ifname[%d]", i), ifn[i], 2)
        ends[i].ifname = ifn[i]
      end
    end
  end
  if opts.mtu ~= nil and (mtype(opts.mtu) ~= "integer" or opts.mtu < 68 or opts.mtu > 65535) then
    U.argerror("link", "opts.mtu", "integer in [68, 65535] expected", 2)
  end
  check_rate("link", "opts.delay", opts.delay, "^%d+%.?%d*[mun]?s$", 2)
  check_rate("link", "opts.jitter", opts.jitter, "^%d+%.?%d*[mun]?s$", 2)
  check_rate("link", "opts.rate", opts.rate, "^%d+%.?%d*[kmgt]?i?b[ip]?t?p?s?$", 2)
  if opts.loss ~= nil and (type(opts.loss) ~= "number" or opts.loss < 0 or opts.loss > 100) then
    U.argerror("link", "opts.loss", "percentage in [0, 100] expected", 2)
  end
  if opts.jitter ~= nil and opts.delay == nil then
    U.argerror("link", "opts.jitter", "jitter needs a delay", 2)
  end
  self.links[#self.links + 1] = link
  return link
end

--- Masquerade traffic leaving a host (a router) through one interface.
-- @tparam Node|string host
-- @tparam table opts `out` (the interface name, or the node at the other
-- end of the link to go out on) and `source` (e.g. `"10.0.0.0/24"`)
function Lab:nat(host, opts)
  host = resolve(self, "nat", "host", host, 2)
  if host.kind ~= "host" then
    U.argerror("nat", "host", "NAT runs on a host (a router), not a switch", 2)
  end
  U.checkfields("nat", "opts", opts or {}, nat_opts, 2)
  opts = opts or {}
  if opts.out == nil then
    U.argerror("nat", "opts.out", "the interface (or peer node) to masquerade out of expected", 2)
  end
  if opts.source ~= nil then
    local ip, why = parse_ip(opts.source)
    if not ip or not ip.prefix then
      U.argerror("nat", "opts.source", why or "a prefix such as 10.0.0.0/24 expected", 2)
    end
  end
  self.nats[#self.nats + 1] = { host = host, opts = opts }
end

--- Connect a switch to the machine's own network namespace (the only thing
-- a lab puts there): a veth pair, the machine's end named `ifname`
-- (default `LAB-up`) with address `ip`.
-- @tparam Node|string switch
-- @tparam table opts `ip` (e.g. `"10.0.0.254/24"`), `ifname`
function Lab:uplink(switch, opts)
  switch = resolve(self, "uplink", "switch", switch, 2)
  if switch.kind ~= "switch" then
    U.argerror("uplink", "switch", "an uplink connects a switch", 2)
  end
  opts = opts or {}
  U.checkfields("uplink", "opts", opts, uplink_opts, 2)
  if self.up_link then
    U.argerror("uplink", "switch", "lab " .. self.name .. " already has an uplink", 2)
  end
  local ifname = opts.ifname or (self.name .. "-up")
  checkifname("uplink", opts.ifname and "opts.ifname" or "opts.ifname (default LAB-up)",
    ifname, 2)
  self.up_link = { switch = switch, ifname = ifname, ips = iplist("uplink", "opts.ip", opts.ip, 2) }
end

------------------------------------------------------------------------------
-- validation: the whole declaration into a plan

--- Check the whole declaration and compute the plan (interface names,
-- addresses, routes). Raises naming the culprit; touches nothing.
-- @treturn table the plan
local BAD = {}

local function validate(self)
  local lab = self.name
  local function bad(msg)
    error(setmetatable({ msg = format("lab %s: %s", lab, msg) }, BAD))
  end
  local plan = { name = lab, hosts = {}, switches = {}, links = {}, nats = {} }
  local hosts, switches = {}, {}
  local swnames = {} -- interface names in the lab's namespace
  local addrs = {}
  for _, n in ipairs(self.order) do
    if n.kind == "host" then
      local h = { name = n.name, hostname = n.hostname, netns = lab .. "-" .. n.name,
        forward = n.opts.forward or nil, clock = n.opts.clock, sysctl = n.opts.sysctl,
        ifaces = {}, ifnames = {}, routes = {} }
      hosts[n.name] = h
      plan.hosts[#plan.hosts + 1] = h
    else
      local s = { name = n.name, ports = 0 }
      switches[n.name] = s
      plan.switches[#plan.switches + 1] = s
      swnames[n.name] = "switch " .. n.name
    end
  end
  local function endpoint(node, e, linkname)
    if node.kind == "host" then
      local h = hosts[node.name]
      local name = e.ifname or ("eth" .. #h.ifaces)
      if h.ifnames[name] then
        bad(format("link %s: host %s already has an interface %s", linkname, h.name, name))
      end
      if name == "lo" then
        bad(format("link %s: interface name lo is taken", linkname))
      end
      local ips = {}
      for _, ip in ipairs(e.ips) do
        local k = key(ip)
        if addrs[k] then
          bad(format("link %s: address %s is also on %s", linkname, ip.addr, addrs[k]))
        end
        addrs[k] = h.name
        ips[#ips + 1] = ip.text
      end
      local iface = { name = name, ips = ips, parsed = e.ips }
      h.ifaces[#h.ifaces + 1] = iface
      h.ifnames[name] = iface
      return { host = h.name, netns = h.netns, ifname = name, ips = ips }
    end
    local s = switches[node.name]
    s.ports = s.ports + 1
    local name = e.ifname or (s.name .. "-eth" .. s.ports)
    if #name >= IFNAMSIZ then
      bad(format("link %s: generated port name %s is longer than %d bytes; give "
        .. "ifname = {...}", linkname, name, IFNAMSIZ - 1))
    end
    if swnames[name] then
      bad(format("link %s: interface name %s is taken by %s", linkname, name, swnames[name]))
    end
    swnames[name] = "link " .. linkname
    return { switch = s.name, ifname = name, ips = {} }
  end
  for _, l in ipairs(self.links) do
    local linkname = l.a.name .. "-" .. l.b.name
    local pl = { name = linkname, mtu = l.opts.mtu, delay = l.opts.delay,
      jitter = l.opts.jitter, loss = l.opts.loss, rate = l.opts.rate }
    pl[1] = endpoint(l.a, l.ends[1], linkname)
    pl[2] = endpoint(l.b, l.ends[2], linkname)
    if l.a.kind == "host" and l.b.kind == "host" then
      for _, x in ipairs(l.ends[1].ips) do
        for _, y in ipairs(l.ends[2].ips) do
          if x.family == y.family and not same_prefix(x, y, math.min(x.prefix, y.prefix)) then
            bad(format("link %s: %s and %s are not in one subnet", linkname, x.text, y.text))
          end
        end
      end
    end
    plan.links[#plan.links + 1] = pl
  end
  -- gateways and routes agree with the host's subnets
  for _, n in ipairs(self.order) do
    if n.kind == "host" then
      local h = hosts[n.name]
      local function connected(ip, what)
        for _, iface in ipairs(h.ifaces) do
          for _, mine in ipairs(iface.parsed) do
            if mine.family == ip.family and key(mine) == key(ip) then
              bad(format("host %s: %s %s is the host's own address", h.name, what, ip.addr))
            end
          end
        end
        for _, iface in ipairs(h.ifaces) do
          for _, mine in ipairs(iface.parsed) do
            if mine.family == ip.family and same_prefix(mine, ip, mine.prefix) then
              return iface.name
            end
          end
        end
        bad(format("host %s: %s %s is in none of the host's subnets", h.name, what, ip.addr))
      end
      local gws = n.opts.gateway
      if gws ~= nil then
        for _, g in ipairs(type(gws) == "table" and gws or { gws }) do
          local ip = type(g) == "table" and g or parse_ip(g)
          connected(ip, "gateway")
          h.routes[#h.routes + 1] = { dst = "default", via = ip.addr, family = ip.family }
        end
      end
      for i, r in ipairs(n.opts.routes or {}) do
        if r.via then
          connected(parse_ip(r.via), format("routes[%d].via", i))
        end
        if r.dev and not h.ifnames[r.dev] then
          bad(format("host %s: routes[%d].dev %s is not an interface of the host", h.name, i,
            r.dev))
        end
        h.routes[#h.routes + 1] = { dst = r.dst, via = r.via, dev = r.dev, metric = r.metric }
      end
      for _, iface in ipairs(h.ifaces) do
        iface.parsed = nil
      end
      h.ifnames = nil
    end
  end
  for _, x in ipairs(self.nats) do
    local h = hosts[x.host.name]
    local out = x.opts.out
    local ifname
    if getmetatable(out) == Node or (type(out) == "string" and self.nodes[out]) then
      local peer = getmetatable(out) == Node and out or self.nodes[out]
      for _, l in ipairs(plan.links) do
        for i = 1, 2 do
          if l[i].host == h.name and (l[3 - i].host or l[3 - i].switch) == peer.name then
            ifname = l[i].ifname
          end
        end
      end
      if not ifname then
        bad(format("nat on %s: no link to %s", h.name, peer.name))
      end
    else
      ifname = out
      local found = false
      for _, iface in ipairs(h.ifaces) do
        found = found or iface.name == ifname
      end
      if not found then
        bad(format("nat on %s: no interface %s", h.name, tostring(ifname)))
      end
    end
    plan.nats[#plan.nats + 1] = { host = h.name, ifname = ifname, source = x.opts.source }
  end
  if self.up_link then
    local s = switches[self.up_link.switch.name]
    local name = s.name .. "-up"
    if #name >= IFNAMSIZ or swnames[name] then
      name = "up-" .. s.name:sub(1, 12)
    end
    if swnames[name] then
      bad("uplink: no free name for the switch end")
    end
    local ips = {}
    for _, ip in ipairs(self.up_link.ips) do
      ips[#ips + 1] = ip.text
    end
    plan.uplink = { switch = s.name, ifname = self.up_link.ifname, swifname = name, ips = ips }
  end
  -- each host's hosts file: every lab host's addresses
  plan.etc_hosts = {}
  for _, h in ipairs(plan.hosts) do
    for _, iface in ipairs(h.ifaces) do
      for _, ip in ipairs(iface.ips) do
        local names = h.hostname ~= h.name and (h.name .. " " .. h.hostname) or h.name
        plan.etc_hosts[#plan.etc_hosts + 1] = ip:match("^[^/]+") .. "\t" .. names
      end
    end
  end
  return plan
end

-- validate, raising a declaration mistake at `level` above the caller
local function checked(self, level)
  local ok, plan = pcall(validate, self)
  if not ok then
    if getmetatable(plan) == BAD then
      error(plan.msg, level + 1)
    end
    error(plan, 0)
  end
  return plan
end

function Lab:validate()
  return checked(self, 2)
end

------------------------------------------------------------------------------
-- state: /run/isle/LAB

local function labdir(name)
  return M.STATE_DIR .. "/" .. name
end

-- A Lua literal of a plain value (sorted keys, for the model file).
local function serialize(v, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = format("%q", v)
  elseif t == "number" or t == "boolean" then
    out[#out + 1] = mtype(v) == "float" and format("%.17g", v) or tostring(v)
  elseif t == "table" then
    out[#out + 1] = "{"
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = k
    end
    sort(keys, function(x, y)
      if type(x) == type(y) then return x < y end
      return type(x) == "number"
    end)
    for _, k in ipairs(keys) do
      if type(k) == "number" then
        out[#out + 1] = "[" .. k .. "]="
      else
        out[#out + 1] = format("[%q]=", k)
      end
      serialize(v[k], out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  else
    out[#out + 1] = "nil"
  end
  return out
end

local function read_model(name)
  local s = core.readfile(labdir(name) .. "/model")
  if not s then
    return nil
  end
  local f = load("return " .. s, "model", "t", {})
  local ok, plan = pcall(f or error)
  return ok and type(plan) == "table" and plan or nil
end

-- The records of a lab's state log, in order.
local function read_log(name)
  local s = core.readfile(labdir(name) .. "/state")
  local recs = {}
  for line in (s or ""):gmatch("[^\n]+") do
    local words = {}
    for w in line:gmatch("%S+") do
      words[#words + 1] = w
    end
    recs[#recs + 1] = words
  end
  return recs, s ~= nil
end

-- Is the uplink interface `name` in the caller's namespace the one we made?
local function uplink_ours(root, name, index)
  local l = root:link(name)
  if not l then
    return false
  end
  if index then
    return l.index == index
  end
  return l.kind == nil or l.kind == "veth"
end

-- Remove what the records of lab `name` say was made, newest first; never
-- anything else. Returns true or nil, first error.
local function teardown(name, recs)
  local dir = labdir(name)
  local first
  local function note(ok, msg, e)
    if not ok and not first then
      first = { msg, e }
    end
  end
  -- what happened to each object: the last inode/index recorded
  local ino, ifindex = {}, {}
  for _, r in ipairs(recs) do
    if r[1] == "ino" then
      ino[r[2]] = tonumber(r[3])
    elseif r[1] == "ifindex" then
      ifindex[r[2]] = tonumber(r[3])
    end
  end
  local gone = {}
  for i = #recs, 1, -1 do
    local r = recs[i]
    local what, arg = r[1], r[2]
    if what == "uplink" then
      local ok, rootnet = pcall(function() return net().open(nil) end)
      if ok and rootnet then
        if uplink_ours(rootnet, arg, ifindex[arg]) then
          note(rootnet:link_del(arg))
        end
        rootnet:close()
      end
      gone[#gone + 1] = arg
    elseif what == "netns" then
      local path = NETNS_DIR .. "/" .. arg
      local now = core.ino(path)
      if now and (ino[arg] == nil or ino[arg] == now) then
        note(netns.del(arg))
      end
    elseif what == "bind" then
      note(unbind(arg))
    elseif what == "file" then
      note(rmfile(arg))
    elseif what == "dir" then
      -- a directory we made: remove it unless someone put files there
      os.remove(arg)
    end
  end
  drop_etc_netns()
  rmfile(dir .. "/state")
  rmfile(dir .. "/model")
  local ok, msg, e = os.remove(dir)
  if not ok and e ~= 2 then
    note(nil, msg, e)
  end
  -- the machine's namespace: wait until the uplink is really gone (the
  -- kernel finishes a namespace's teardown in the background)
  if #gone > 0 then
    local okn, rootnet = pcall(function() return net().open(nil) end)
    if okn and rootnet then
      for _ = 1, 200 do
        local any = false
        for _, n in ipairs(gone) do
          any = any or rootnet:link(n) ~= nil
        end
        if not any then break end
        pause(0.005)
      end
      rootnet:close()
    end
  end
  if first then
    return nil, first[1], first[2]
  end
  return true
end

-- Make /run/isle a shared mount (as ip does for /run/netns), so that
-- unmounts in `down` reach the mount namespaces of processes on hosts.
local function prepare_state_dir()
  local ok, msg, e = mkdir(M.STATE_DIR)
  if not ok and e ~= 17 then
    return nil, msg, e
  end
  local mi = core.readfile("/proc/self/mountinfo") or ""
  for line in mi:gmatch("[^\n]+") do
    local target, rest = line:match("^%S+ %S+ %S+ %S+ (%S+) %S+ (.-) %- ")
    if target == M.STATE_DIR then
      if rest:find("shared:", 1, true) then
        return true
      end
      return mount.mount { target = M.STATE_DIR, flags = { "shared" } }
    end
  end
  ok, msg, e = mount.bind(M.STATE_DIR, M.STATE_DIR)
  if not ok then
    return nil, msg, e
  end
  return mount.mount { target = M.STATE_DIR, flags = { "shared" } }
end

------------------------------------------------------------------------------
-- building

local function clock_offsets(clock)
  local t = {}
  for k, v in pairs(clock) do
    t[k] = v
  end
  return t
end

local function hosts_text(plan, h)
  local lines = { "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback" }
  if #h.ifaces == 0 or #h.ifaces[1].ips == 0 then
    lines[#lines + 1] = "127.0.1.1\t" .. h.hostname
  end
  lines[#lines + 1] = concat(plan.etc_hosts, "\n")
  return concat(lines, "\n") .. "\n"
end

-- The build itself; `rec(...)` records before creating, `undo` collects the
-- inverses. Returns true or nil, msg, errno.
local function build(self, plan, rec, undo, progress)
  local lab = self.name
  local dir = labdir(lab)
  local function fail(what, msg, e)
    return nil, format("lab %s: %s: %s", lab, what, msg or "failed"), e
  end
  -- namespaces first: the switches' netns, then each host's net, uts, time
  local saved = {}
  for _, kind in ipairs { "net", "uts", "time" } do
    local h, msg, e = ns.open_ns(kind == "time" and "/proc/self/ns/time_for_children"
      or "/proc/self/ns/" .. kind, kind)
    if not h then
      return fail("open own " .. kind .. " namespace", msg, e)
    end
    saved[kind] = h
  end
  local moved = {}
  local function restore()
    local first
    for kind, h in pairs(saved) do
      if moved[kind] then
        local ok, msg, e = ns.setns(h, kind)
        if not ok and not first then
          first = { msg, e }
        end
        moved[kind] = nil
      end
    end
    if first then
      return fail("restore namespaces", first[1], first[2])
    end
    return true
  end
  local function closesaved()
    for _, h in pairs(saved) do
      h:close()
    end
  end
  -- keep a fresh namespace of `kind` alive on `path` (unshare + bind)
  local function fresh(kind, path, after)
    rec("bind", path)
    local ok, msg, e = core.unshare(kind)
    if not ok then
      return nil, msg, e
    end
    moved[kind] = true
    if after then
      ok, msg, e = after()
      if not ok then
        return nil, msg, e
      end
    end
    local h
    h, msg, e = ns.open_ns(kind == "time" and "/proc/self/ns/time_for_children"
      or "/proc/self/ns/" .. kind, kind)
    if not h then
      return nil, msg, e
    end
    ok, msg, e = h:bind(path)
    h:close()
    if not ok then
      return nil, msg, e
    end
    undo:push(unbind, path)
    return true
  end
  local swpath = dir .. "/net"
  local ok, msg, e = fresh("net", swpath)
  if not ok then
    restore(); closesaved()
    return fail("switch namespace", msg, e)
  end
  ok, msg, e = restore()
  if not ok then closesaved(); return nil, msg, e end
  local total, done = #plan.hosts, 0
  for _, h in ipairs(plan.hosts) do
    local what = "host " .. h.name
    if exists(NETNS_DIR .. "/" .. h.netns) then
      restore(); closesaved()
      return fail(what, "netns add " .. h.netns .. ": File exists", 17)
    end
    rec("netns", h.netns)
    local nsobj
    nsobj, msg, e = netns.add(h.netns)
    if not nsobj then
      restore(); closesaved()
      return fail(what, msg, e)
    end
    undo:push(netns.del, h.netns)
    rec("ino", h.netns, tostring(nsobj.id))
    nsobj:close()
    ok, msg, e = fresh("uts", dir .. "/" .. h.name .. ".uts", function()
      return core.sethostname(h.hostname)
    end)
    if ok and h.clock then
      ok, msg, e = fresh("time", dir .. "/" .. h.name .. ".time", function()
        return core.timens_offsets("self", clock_offsets(h.clock))
      end)
    end
    if ok then
      local etc = ETC_NETNS .. "/" .. h.netns
      if not exists(ETC_NETNS) then
        -- ip netns exec reads /etc/netns/NAME; a fresh machine has no
        -- /etc/netns: make it, and mark it as isle's (so that the last
        -- lab down removes it, whichever lab made it)
        ok, msg, e = mkdir(ETC_NETNS)
        if ok then
          ok, msg, e = writefile(ETC_NETNS_MARK, ETC_NETNS .. "\n")
          undo:push(drop_etc_netns)
        elseif e == 17 then -- another lab was quicker
          ok = true
        end
      end
      rec("dir", etc)
      if ok then ok, msg, e = mkdir(etc) end
      if ok then
        undo:push(os.remove, etc)
        rec("file", etc .. "/hosts")
        ok, msg, e = writefile(etc .. "/hosts", hosts_text(plan, h))
        undo:push(rmfile, etc .. "/hosts")
      end
    end
    if not ok then
      restore(); closesaved()
      return fail(what, msg, e)
    end
    done = done + 1
    if progress then progress("namespaces", done, total) end
  end
  ok, msg, e = restore()
  closesaved()
  if not ok then return nil, msg, e end

  -- the wiring: one netlink handle per namespace
  local N = net()
  local sw
  sw, msg, e = N.open(swpath)
  if not sw then
    return fail("open switch namespace", msg, e)
  end
  local function swfail(what, m, err)
    sw:close()
    return fail(what, m, err)
  end
  ok, msg, e = sw:link_set("lo", { up = true })
  if not ok then return swfail("switches: lo up", msg, e) end
  for _, s in ipairs(plan.switches) do
    -- brought up after its ports are attached: attaching a port to a bridge
    -- that is up costs time linear in the number of its ports
    ok, msg, e = sw:link_add { name = s.name, kind = "bridge" }
    if not ok then return swfail("switch " .. s.name, msg, e) end
  end
  local function netem_opts(l)
    if l.delay or l.loss or l.rate then
      return { delay = l.delay, jitter = l.jitter, loss = l.loss, rate = l.rate }
    end
  end
  -- set up an end in the switch namespace
  local function swend(l, en)
    local o = { up = true, master = en.switch, mtu = l.mtu }
    local r, m, err = sw:link_set(en.ifname, o)
    if r and netem_opts(l) then
      r, m, err = sw:netem(en.ifname, netem_opts(l))
    end
    return r, m, err
  end
  local created = {}
  -- switch-to-switch links
  for i, l in ipairs(plan.links) do
    if l[1].switch and l[2].switch then
      ok, msg, e = sw:link_add { name = l[1].ifname, kind = "veth", peer = { name = l[2].ifname } }
      if ok then ok, msg, e = swend(l, l[1]) end
      if ok then ok, msg, e = swend(l, l[2]) end
      if not ok then return swfail("link " .. l.name, msg, e) end
      created[i] = true
    end
  end
  -- hosts, one handle each
  local bylink = {}
  for i, l in ipairs(plan.links) do
    for j = 1, 2 do
      if l[j].host then
        bylink[l[j].host] = bylink[l[j].host] or {}
        local t = bylink[l[j].host]
        t[#t + 1] = { i, j }
      end
    end
  end
  local nats = {}
  for _, x in ipairs(plan.nats) do
    nats[x.host] = nats[x.host] or {}
    local t = nats[x.host]
    t[#t + 1] = x
  end
  done = 0
  for _, h in ipairs(plan.hosts) do
    local what = "host " .. h.name
    local hn
    hn, msg, e = N.open(h.netns)
    if not hn then return swfail(what, msg, e) end
    local function step()
      local r, m, err = hn:link_set("lo", { up = true })
      if not r then return nil, "lo up: " .. m, err end
      if h.forward then
        r, m, err = hn:sysctl("ipv4.ip_forward", 1)
        if not r then return nil, m, err end
        hn:sysctl("ipv6.conf.all.forwarding", 1)
      end
      for k, v in pairs(h.sysctl or {}) do
        r, m, err = hn:sysctl(k, v)
        if not r then return nil, m, err end
      end
      for _, le in ipairs(bylink[h.name] or {}) do
        local l, j = plan.links[le[1]], le[2]
        local mine, other = l[j], l[3 - j]
        local lname = "link " .. l.name
        if not created[le[1]] then
          local peer = { name = other.ifname, netns = other.netns or swpath, mtu = l.mtu }
          r, m, err = hn:link_add { name = mine.ifname, kind = "veth", peer = peer, up = true,
            mtu = l.mtu }
          if not r then return nil, lname .. ": " .. m, err end
          created[le[1]] = j
          if other.switch then
            r, m, err = swend(l, other)
            if not r then return nil, lname .. ": " .. m, err end
          end
        end
        r = true
        if created[le[1]] ~= j then -- made from the other end: set it up from here
          r, m, err = hn:link_set(mine.ifname, { up = true })
        end
        if r and netem_opts(l) then
          r, m, err = hn:netem(mine.ifname, netem_opts(l))
        end
        for _, ip in ipairs(mine.ips) do
          if not r then break end
          r, m, err = hn:addr_add(mine.ifname, ip)
        end
        if not r then return nil, lname .. ": " .. m, err end
      end
      for _, rt in ipairs(h.routes) do
        r, m, err = hn:route_add { dst = rt.dst, via = rt.via, dev = rt.dev, metric = rt.metric }
        if not r then return nil, "route " .. rt.dst .. ": " .. m, err end
      end
      for _, x in ipairs(nats[h.name] or {}) do
        r, m, err = hn:nat(x.ifname, { source = x.source })
        if not r then return nil, "nat " .. x.ifname .. ": " .. m, err end
      end
      return true
    end
    ok, msg, e = step()
    hn:close()
    if not ok then return swfail(what, msg, e) end
    done = done + 1
    if progress then progress("links", done, total) end
  end
  for _, s in ipairs(plan.switches) do
    ok, msg, e = sw:link_set(s.name, { up = true })
    if not ok then return swfail("switch " .. s.name, msg, e) end
  end
  -- the uplink: the only thing in the machine's own namespace
  if plan.uplink then
    local u = plan.uplink
    local root
    root, msg, e = N.open(nil)
    if not root then return swfail("uplink", msg, e) end
    local function step()
      if root:link(u.ifname) then
        return nil, "link add " .. u.ifname .. ": File exists", 17
      end
      rec("uplink", u.ifname)
      local r, m, err = sw:link_add { name = u.swifname, kind = "veth",
        peer = { name = u.ifname, netns = "/proc/self/ns/net" } }
      if not r then return nil, m, err end
      local l = root:link(u.ifname)
      if l then
        rec("ifindex", u.ifname, tostring(l.index))
      end
      undo:push(function()
        local rn = N.open(nil)
        if rn then
          if uplink_ours(rn, u.ifname, l and l.index) then rn:link_del(u.ifname) end
          rn:close()
        end
        return true
      end)
      r, m, err = sw:link_set(u.swifname, { up = true, master = u.switch })
      if r then r, m, err = root:link_set(u.ifname, { up = true }) end
      for _, ip in ipairs(u.ips) do
        if not r then break end
        r, m, err = root:addr_add(u.ifname, ip)
      end
      return r, m, err
    end
    ok, msg, e = step()
    root:close()
    if not ok then return swfail("uplink " .. u.ifname, msg, e) end
  end
  sw:close()
  return true
end

--- Build the lab, all or nothing.
-- The declaration is checked first (a mistake raises). On a failure of the
-- system everything built so far is removed again.
-- @tparam[opt] table opts `progress = function(phase, done, total)`
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `lab demo: host h1: netns add demo-h1: File exists`
-- @treturn[2] int errno
-- @raise on a bad declaration
function Lab:up(opts)
  opts = opts or {}
  U.checkfields("up", "opts", opts, U.set { "progress" }, 2)
  local plan = checked(self, 2)
  if self.built then
    return nil, format("lab %s: already up", self.name), 17
  end
  local dir = labdir(self.name)
  local ok, msg, e = prepare_state_dir()
  if not ok then
    return nil, format("lab %s: %s", self.name, msg), e
  end
  ok, msg, e = mkdir(dir)
  if not ok then
    if e == 17 then
      return nil, format("lab %s: already exists (%s; `isle down %s` removes it)", self.name,
        dir, self.name), e
    end
    return nil, format("lab %s: %s", self.name, msg), e
  end
  local undo = U.undo()
  local log
  log, msg, e = core.fopen(dir .. "/state", "a")
  if not log then
    os.remove(dir)
    return nil, format("lab %s: %s", self.name, msg), e
  end
  log:setvbuf("no")
  local function rec(...)
    log:write(concat({ ... }, " "), "\n")
  end
  local function abort(m, err)
    log:close()
    local errs = undo:unwind()
    -- the records cover what the undo stack may have missed (e.g. a
    -- half-made object); they only name things this lab made
    local recs = read_log(self.name)
    teardown(self.name, recs)
    if #errs > 0 then
      m = m .. " (and undoing: " .. errs[1] .. ")"
    end
    return nil, m, err
  end
  rec("pid", tostring(mypid()))
  ok, msg, e = writefile(dir .. "/model", concat(serialize(plan, {})))
  if not ok then
    return abort(format("lab %s: %s", self.name, msg), e)
  end
  self.plan = plan
  local okc, r, m, err = pcall(build, self, plan, rec, undo, opts.progress)
  if not okc then
    abort(tostring(r), nil)
    error(r, 0)
  end
  if not r then
    return abort(m, err)
  end
  rec("done")
  log:close()
  undo:commit()
  self.built = true
  return true
end

--- Remove everything the lab made (see `isle.lab.down`). Processes started
-- with `lab:spawn` that still run are killed first.
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
function Lab:down()
  for _, p in ipairs(self.procs) do
    if p:poll() == nil then
      p:kill("KILL")
      p:wait()
    end
  end
  self.procs = {}
  local ok, msg, e = M.down(self.name)
  self.built = false
  if not ok then
    return nil, msg, e
  end
  return true
end

------------------------------------------------------------------------------
-- running things on hosts

local function host_plan(self, fname, host, level)
  local name = getmetatable(host) == Node and host.name or host
  if type(name) ~= "string" then
    U.argerror(fname, "host", "host name or node expected, got " .. type(host), level + 1)
  end
  local plan = self.plan or checked(self, level + 1)
  for _, h in ipairs(plan.hosts) do
    if h.name == name then
      return h
    end
  end
  U.argerror(fname, "host", format("lab %s has no host '%s'", self.name, name), level + 1)
end

--- Start a process on a host: it sees the host's net, uts and time
-- namespaces and its hosts file (as `ip netns exec LAB-HOST`).
-- @tparam Node|string host
-- @tparam table spec an `isle.spawn` spec (without `join`)
-- @treturn[1] Process
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
function Lab:spawn(host, spec)
  local h = host_plan(self, "spawn", host, 2)
  if type(spec) ~= "table" then
    U.argerror("spawn", "spec", "table expected, got " .. type(spec), 2)
  end
  if spec.join ~= nil then
    U.argerror("spawn", "spec", "'join' is set by lab:spawn", 2)
  end
  local entry, msg, e = M.host_entry(self.name, h.name)
  if not entry then
    return nil, msg, e
  end
  local s = netns._exec_spec(spec, entry.join, entry.netns)
  local p
  p, msg, e = process.spawn(s)
  if not p then
    return nil, format("lab %s: host %s: %s", self.name, h.name, msg), e
  end
  self.procs[#self.procs + 1] = p
  return p
end

--- Run a command on a host and collect its output.
-- @tparam Node|string host
-- @tparam {string,...} argv
-- @treturn[1] string standard output
-- @treturn[1] boolean|nil, string, int the `os.execute` triple
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
function Lab:run(host, argv)
  host_plan(self, "run", host, 2)
  if type(argv) ~= "table" then
    U.argerror("run", "argv", "list expected, got " .. type(argv), 2)
  end
  local p, msg, e = self:spawn(host, { argv = argv, stdout = "pipe" })
  if not p then
    return nil, msg, e
  end
  local out = p.stdout:read("a")
  p.stdout:close()
  local ok, how, code = p:wait()
  for i, q in ipairs(self.procs) do
    if q == p then
      table.remove(self.procs, i)
      break
    end
  end
  return out, ok, how, code
end

--- The names of the lab's hosts, in declaration order.
-- @treturn {string,...}
function Lab:hosts()
  local t = {}
  for _, h in ipairs((self.plan or checked(self, 2)).hosts) do
    t[#t + 1] = h.name
  end
  return t
end

------------------------------------------------------------------------------
-- graph

local function dotid(s)
  return '"' .. tostring(s):gsub('[\\"]', "\\%0") .. '"'
end

--- The lab as Graphviz DOT text: hosts as boxes, switches as ellipses,
-- links labelled with interface names, addresses and impairments.
-- @treturn string
function Lab:graph()
  return M._graph(self.plan or checked(self, 2))
end

function M._graph(plan)
  local out = { "graph " .. dotid(plan.name) .. " {",
    '  graph [overlap = false, fontname = "sans"];',
    '  node [fontname = "sans"]; edge [fontname = "sans", fontsize = 10];' }
  for _, s in ipairs(plan.switches) do
    out[#out + 1] = format("  %s [shape = ellipse, style = filled, fillcolor = lightblue];",
      dotid(s.name))
  end
  for _, h in ipairs(plan.hosts) do
    local label = h.name
    if h.hostname ~= h.name then label = label .. "\\n(" .. h.hostname .. ")" end
    if h.forward then label = label .. "\\nrouter" end
    out[#out + 1] = format("  %s [shape = %s, label = %s];", dotid(h.name),
      h.forward and "octagon" or "box", '"' .. label .. '"')
  end
  if plan.uplink then
    out[#out + 1] = '  "(machine)" [shape = plaintext];'
    out[#out + 1] = format('  "(machine)" -- %s [label = %s];', dotid(plan.uplink.switch),
      dotid(plan.uplink.ifname .. " " .. concat(plan.uplink.ips, " ")))
  end
  for _, l in ipairs(plan.links) do
    local function lbl(en)
      local s = en.ifname
      if #en.ips > 0 then s = s .. "\\n" .. concat(en.ips, "\\n") end
      return '"' .. s .. '"'
    end
    local attrs = { "taillabel = " .. lbl(l[1]), "headlabel = " .. lbl(l[2]) }
    local imp = {}
    for _, k in ipairs { "delay", "jitter", "loss", "rate", "mtu" } do
      if l[k] then imp[#imp + 1] = k .. " " .. tostring(l[k]) .. (k == "loss" and "%" or "") end
    end
    if #imp > 0 then attrs[#attrs + 1] = "label = " .. dotid(concat(imp, ", ")) end
    out[#out + 1] = format("  %s -- %s [%s];", dotid(l[1].host or l[1].switch),
      dotid(l[2].host or l[2].switch), concat(attrs, ", "))
  end
  out[#out + 1] = "}"
  return concat(out, "\n") .. "\n"
end

------------------------------------------------------------------------------
-- labs that exist (for the command line and for other processes)

--- Names of the labs with state under `/run/isle`, sorted.
-- @treturn {string,...}
function M.list()
  local t = {}
  for _, n in ipairs(listdir(M.STATE_DIR)) do
    if not U.badname(n) and not RESERVED[n] and exists(labdir(n) .. "/state") then
      t[#t + 1] = n
    end
  end
  sort(t)
  return t
end

--- Information on an existing lab: `{name, plan, complete, pid, alive}`
-- (`plan` may be nil when the builder died before writing it).
-- @string name
-- @treturn[1] table
-- @return[2] nil, message, errno
function M.info(name)
  checkname("info", "name", name, 2)
  if RESERVED[name] or not exists(labdir(name)) then
    return nil, format("lab %s: no such lab", name), 2
  end
  local recs = read_log(name)
  local info = { name = name, plan = read_model(name), complete = false }
  for _, r in ipairs(recs) do
    if r[1] == "pid" then
      info.pid = tonumber(r[2])
    elseif r[1] == "done" then
      info.complete = true
    end
  end
  if info.pid and info.pid > 0 then
    info.alive = exists("/proc/" .. info.pid)
  end
  return info
end

--- Open an existing lab (built by this or another process) to run things
-- on its hosts or take it down.
-- @string name
-- @treturn[1] Lab
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
function M.open(name)
  checkname("open", "name", name, 2)
  local info, msg, e = M.info(name)
  if not info then
    return nil, msg, e
  end
  if not info.plan then
    return nil, format("lab %s: its description is missing (isle down %s removes it)", name,
      name), 2
  end
  local self = new(name)
  self.plan = info.plan
  self.built = true
  return self
end

--- Remove a lab by name: exactly what its records under `/run/isle/NAME`
-- say it made, also after the builder was killed; never anything else.
-- Processes still running inside its hosts are not killed (their host
-- namespaces then outlive the lab, without links).
-- @string name
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `lab demo: no such lab`
-- @treturn[2] int errno
function M.down(name)
  checkname("down", "name", name, 2)
  local dir = labdir(name)
  if RESERVED[name] or not exists(dir) then
    return nil, format("lab %s: no such lab", name), 2
  end
  if not exists(dir .. "/state") then
    -- the builder died between mkdir and its first record: an empty
    -- directory is all there is; anything else is not a lab's
    local ok, msg, e = os.remove(dir)
    if not ok then
      return nil, format("lab %s: not a lab (%s)", name, msg), e
    end
    return true
  end
  local recs = read_log(name)
  local ok, msg, e = teardown(name, recs)
  if not ok then
    return nil, format("lab %s: down: %s", name, msg), e
  end
  return true
end

--- How to enter a host of a running lab: THE one place that knows where a
-- host's namespaces are kept (every way onto a host uses it: `lab:spawn`,
-- `isle exec`, `isle shell`, containers with `net = "LAB:HOST"`).
-- @string lab the lab's name
-- @string host the host's name
-- @treturn[1] table `{join = {net = path, uts = path, time = path|nil},
-- netns = "LAB-HOST", hostname = name}`: `join` as in `isle.spawn`,
-- `netns` the named network namespace (whose `/etc/netns/NAME` files an
-- `ip netns exec`-style entry binds over `/etc`)
-- @return[2] nil
-- @treturn[2] string message, e.g. `lab demo: no host 'h9'`
-- @treturn[2] int errno
function M.host_entry(lab, host)
  checkname("host_entry", "lab", lab, 2)
  checkname("host_entry", "host", host, 2)
  local dir = labdir(lab)
  local name = lab .. "-" .. host
  local join = { net = NETNS_DIR .. "/" .. name, uts = dir .. "/" .. host .. ".uts" }
  if not exists(join.net) or not exists(join.uts) then
    if not exists(dir) then
      return nil, format("lab %s: no such lab", lab), 2
    end
    return nil, format("lab %s: no host '%s'", lab, host), 2
  end
  if exists(dir .. "/" .. host .. ".time") then
    join.time = dir .. "/" .. host .. ".time"
  end
  local model = read_model(lab)
  local hostname = host
  for _, h in ipairs(model and model.hosts or {}) do
    if h.name == host then
      hostname = h.hostname
    end
  end
  return { join = join, netns = name, hostname = hostname }
end

--- Run a topology script and return the lab it returns.
-- @string path the script; extra arguments are passed to it as `...`
-- @param ... arguments for the script
-- @treturn[1] Lab
-- @return[2] nil
-- @treturn[2] string message
-- @raise when the script raises or returns something else than a lab
function M.load(path, ...)
  if type(path) ~= "string" then
    U.argerror("load", "path", "string expected, got " .. type(path), 2)
  end
  local chunk, msg = loadfile(path, "t")
  if not chunk then
    return nil, msg
  end
  local r = chunk(...)
  if getmetatable(r) ~= Lab then
    error(format("%s: the script must return its lab (isle.lab(...)), got %s", path,
      type(r)), 2)
  end
  return r
end

M.Lab = Lab
M.new = new

return setmetatable(M, {
  __call = function(_, name)
    return new(name)
  end,
})
