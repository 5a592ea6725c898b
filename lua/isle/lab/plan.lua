--- A lab's declaration → its plan: every check of the declaration language
-- and everything the build needs computed (interface names, addresses,
-- routes, NAT interfaces, hosts files). Pure: no system call, so it runs,
-- and is tested, without root (spec/unit/lab_plan_spec.lua).
--
-- Whatever passes here the build accepts: addresses go through the one
-- parser (`isle.ip`), delays and rates through `isle.net`'s (with netem's
-- kernel limits), names through the core's rules, and the kernel limits a
-- build would hit (a bridge's ports, netem's 32-bit ticks, a time
-- namespace's offsets, IPv6's minimum MTU) are checked up front.
--
-- Mistakes raise a `Bad` object: `{arg =, why =}` for an option (the
-- declaring method turns it into `bad argument 'opts.ip' to 'link' (...)`)
-- or `{msg =}` for the whole declaration (`lab:up` raises `lab NAME: msg`);
-- `{msg =, errno =}` is what the kernel cannot do (delay without netem),
-- which `lab:up` returns as a failure.
-- @module isle.lab.plan
local core = require "isle.core"
local check = require "isle._check"
local ip = require "isle.ip"
local net = require "isle.net"
local machine = require "isle.lab.plan_machine"

local M = {}

local type, pairs, ipairs, tostring, error, setmetatable, getmetatable, pcall =
  type, pairs, ipairs, tostring, error, setmetatable, getmetatable, pcall
local format, concat, mtype = string.format, table.concat, math.type

M.IFNAMSIZ = 16
--- Longest lab, host and host name (HOST_NAME_MAX).
M.NAME_MAX = require("isle.lab.entry").NAME_MAX
--- A Linux bridge numbers its ports in 10 bits and reserves port 0
-- (br_if.c find_portno): the 1,024th port gives EXFULL.
M.BR_MAX_PORTS = 1024
--- Largest clock offset, in seconds either way (68 years): the kernel takes
-- offsets up to KTIME_SEC_MAX and refuses any that puts a clock below 0 or
-- past KTIME_SEC_MAX / 2 (time/namespace.c); negative ones are checked
-- against the clocks' current values when `env.clocks` is given.
M.CLOCK_MAX = 2147483648
--- Names of /run/isle entries that are not labs.
M.RESERVED = require("isle.lab.entry").RESERVED

--- What lab, host and host names may hold.
M.NAME_PATTERN = require("isle.lab.entry").NAME_PATTERN
local NAME_PATTERN = M.NAME_PATTERN

--- The metatable of declaration mistakes.
local Bad = {}
Bad.__tostring = function(b)
  return b.msg or (b.arg .. ": " .. b.why)
end
M.Bad = Bad

local function bad(arg, why)
  error(setmetatable({ arg = arg, why = why }, Bad), 0)
end

local function fail(fmt, ...)
  error(setmetatable({ msg = format(fmt, ...) }, Bad), 0)
end

-- What this kernel cannot do (not a mistake of the declaration: `lab:up`
-- returns it as a failure, with errno EOPNOTSUPP).
local EOPNOTSUPP = 95
local function unsupported(fmt, ...)
  error(setmetatable({ msg = format(fmt, ...), errno = EOPNOTSUPP }, Bad), 0)
end

local function fields(arg, t, allowed)
  if type(t) ~= "table" then
    bad(arg, "table expected, got " .. type(t))
  end
  for k in pairs(t) do
    if not allowed[k] then
      bad(arg, "unknown option '" .. tostring(k) .. "'")
    end
  end
  return t
end

local function finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

-- -------------------------------------------------------------------------
-- names

--- Why `v` is no lab, host or host name of at most `maxlen` bytes (nil
-- when it is one).
function M.name_why(v, maxlen)
  local why = core.badname(v)
  if not why and not v:match(NAME_PATTERN) then
    why = format("name '%s' may hold only letters, digits, '_', '.' and '-'", v)
  end
  if not why and #v > maxlen then
    why = format("name '%s' is longer than %d bytes", v, maxlen)
  end
  return why
end

--- Check the name of a lab, a host or a switch (an interface name too);
-- raises a Bad for `name`.
function M.node_name(kind, name)
  local why = M.name_why(name, kind == "switch" and M.IFNAMSIZ - 1 or M.NAME_MAX)
  if not why and kind == "switch" then
    why = core.badifname(name) or (name == "lo" and "interface name lo is taken") or nil
  elseif not why and kind == "lab" and M.RESERVED[name] then
    why = "'" .. name .. "' is reserved"
  end
  if why then
    bad("name", why)
  end
  return name
end

local function ifname(arg, v)
  local why = core.badifname(v)
  if why then
    bad(arg, type(v) == "string" and format("%s: '%s'", why, v) or why)
  end
  if v == "lo" then
    bad(arg, "interface name lo is taken (the loopback)")
  end
  return v
end

-- -------------------------------------------------------------------------
-- addresses

local function addr(arg, s, want_prefix)
  local a, why = ip.parse(s)
  if not a then
    bad(arg, why)
  end
  if want_prefix and not a.prefix then
    bad(arg, format("'%s' needs a prefix length (e.g. /24)", s))
  elseif not want_prefix and a.prefix then
    bad(arg, format("'%s' takes no prefix length", s))
  end
  return a
end

-- An interface address the kernel takes: not the network or broadcast
-- address of an IPv4 subnet, not an unspecified, multicast or loopback
-- IPv6 address (EADDRNOTAVAIL).
local function iface_addr(arg, s)
  local a = addr(arg, s, true)
  if a.family == 4 and a.prefix < 31 and (ip.host_bits_all(a, 0) or ip.host_bits_all(a, 1)) then
    bad(arg, format("'%s' is the %s address of its subnet", s,
      ip.host_bits_all(a, 0) and "network" or "broadcast"))
  end
  if a.family == 6 then
    local b = a.bytes
    local zero = concat(b, ".", 1, 15) == "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"
    if b[1] == 0xff or (zero and (b[16] == 0 or b[16] == 1)) then
      bad(arg, format("'%s' is an unspecified, multicast or loopback address", s))
    end
  end
  return a
end

-- A list of interface addresses: nil/false, one string, or a list.
local function iplist(arg, v)
  if v == nil or v == false then
    return {}
  end
  if type(v) ~= "string" and type(v) ~= "table" then
    bad(arg, "address string or list expected, got " .. type(v))
  end
  local list, out = type(v) == "table" and v or { v }, {}
  for i, s in ipairs(list) do
    out[i] = iface_addr(type(v) == "table" and format("%s[%d]", arg, i) or arg, s)
  end
  return out
end

-- -------------------------------------------------------------------------
-- options of the declaring methods (each returns its checked view)

local HOST_OPTS = check.set { "hostname", "gateway", "routes", "forward", "clock", "sysctl",
  "files", "private", "mounts" }
local ROUTE_OPTS = check.set { "dst", "via", "dev", "metric" }

local function clock(v, clocks)
  fields("opts.clock", v, check.set { "monotonic", "boottime" })
  for k, s in pairs(v) do
    local arg = "opts.clock." .. k
    if not finite(s) or s < -M.CLOCK_MAX or s > M.CLOCK_MAX then
      bad(arg, format("seconds in [-%d, %d] expected, got %s", M.CLOCK_MAX, M.CLOCK_MAX,
        tostring(s)))
    end
    if clocks and clocks[k] and s < -clocks[k] then
      bad(arg, format("%s would put the %s clock below 0 (it reads %.0f s)", tostring(s), k,
        clocks[k]))
    end
  end
  return v
end

local function route(i, r)
  local arg = format("opts.routes[%d]", i)
  fields(arg, r, ROUTE_OPTS)
  local out = { dst = r.dst, via = r.via, dev = r.dev, metric = r.metric }
  if r.dst ~= "default" then
    if type(r.dst) ~= "string" then
      bad(arg .. ".dst", "\"default\" or a prefix expected, got " .. type(r.dst))
    end
    out.dstp = addr(arg .. ".dst", r.dst, true)
    if not ip.host_bits_all(out.dstp, 0) then
      bad(arg .. ".dst", format("'%s' has host bits set (the network is %s)", r.dst,
        ip.network(out.dstp)))
    end
  end
  if r.via == nil and r.dev == nil then
    bad(arg, "via or dev expected")
  end
  if r.via ~= nil then
    out.viap = addr(arg .. ".via", r.via, false)
    if out.dstp and out.dstp.family ~= out.viap.family then
      bad(arg .. ".via", format("'%s' is not of the family of dst %s", r.via, r.dst))
    end
  end
  if r.dev ~= nil then
    ifname(arg .. ".dev", r.dev)
  end
  if r.metric ~= nil and (mtype(r.metric) ~= "integer" or r.metric < 0
    or r.metric > 0xffffffff) then
    bad(arg .. ".metric", "integer in [0, 4294967295] expected, got " .. tostring(r.metric))
  end
  return out
end

local function sysctls(t)
  if type(t) ~= "table" then
    bad("opts.sysctl", "table {['ipv4.ip_forward'] = 1, ...} expected, got " .. type(t))
  end
  for k, v in pairs(t) do
    local why = net._sysctl_key(k)
    if why then
      bad("opts.sysctl", why)
    end
    if mtype(v) ~= "integer" and type(v) ~= "string" then
      bad("opts.sysctl." .. k, "integer or string expected, got " .. tostring(v))
    end
  end
  return t
end

--- Check the options of `lab:host`; `clocks` (optional) are the current
-- monotonic and boottime clocks in seconds.
-- @treturn table `{hostname, forward, clock, sysctl, gateways = {parsed},
-- routes = {{dst, via, dev, metric, dstp, viap}}}`
function M.host_opts(opts, clocks)
  fields("opts", opts, HOST_OPTS)
  local out = { forward = opts.forward, gateways = {}, routes = {} }
  if opts.hostname ~= nil then
    local why = M.name_why(opts.hostname, M.NAME_MAX)
    if why then bad("opts.hostname", why) end
    out.hostname = opts.hostname
  end
  if opts.forward ~= nil and type(opts.forward) ~= "boolean" then
    bad("opts.forward", "boolean expected, got " .. type(opts.forward))
  end
  if opts.clock ~= nil then
    out.clock = clock(opts.clock, clocks)
  end
  local gws = opts.gateway
  if gws ~= nil then
    local list = type(gws) == "table" and gws or { gws }
    for i, g in ipairs(list) do
      out.gateways[i] = addr(type(gws) == "table" and format("opts.gateway[%d]", i)
        or "opts.gateway", g, false)
    end
  end
  if opts.routes ~= nil then
    if type(opts.routes) ~= "table" then
      bad("opts.routes", "list of {dst =, via =} expected, got " .. type(opts.routes))
    end
    for i, r in ipairs(opts.routes) do
      out.routes[i] = route(i, r)
    end
  end
  if opts.sysctl ~= nil then
    out.sysctl = sysctls(opts.sysctl)
  end
  out.files = opts.files ~= nil and machine.files(opts.files) or nil
  out.private = opts.private ~= nil and machine.privates(opts.private) or nil
  out.mounts = opts.mounts ~= nil and machine.mounts(opts.mounts) or nil
  return out
end

local LINK_OPTS = check.set { "ip", "ifname", "mtu", "delay", "jitter", "loss", "rate" }

local function link_ips(akind, bkind, v)
  if akind == "host" and bkind == "host" then
    if v ~= nil and type(v) ~= "table" then
      bad("opts.ip", "{a_ip, b_ip} expected between two hosts")
    end
    v = v or {}
    return { iplist("opts.ip[1]", v[1]), iplist("opts.ip[2]", v[2]) }
  elseif akind == "host" or bkind == "host" then
    local ips = iplist("opts.ip", v)
    return akind == "host" and { ips, {} } or { {}, ips }
  elseif v ~= nil then
    bad("opts.ip", "a link between two switches has no host end")
  end
  return { {}, {} }
end

local function link_ifnames(akind, bkind, v)
  if v == nil then
    return {}
  end
  if type(v) == "string" then
    if (akind == "host") == (bkind == "host") then
      bad("opts.ifname", "{a_name, b_name} expected")
    end
    v = akind == "host" and { v } or { nil, v }
  elseif type(v) ~= "table" then
    bad("opts.ifname", "string or {a_name, b_name} expected, got " .. type(v))
  end
  local out = {}
  for i = 1, 2 do
    if v[i] ~= nil then
      out[i] = ifname(format("opts.ifname[%d]", i), v[i])
    end
  end
  return out
end

--- Check the options of `lab:link` between nodes of kinds `akind`, `bkind`.
-- @treturn table `{ips = {{parsed}, {parsed}}, ifnames = {a, b}, mtu,
-- delay, jitter, loss, rate}`
function M.link_opts(akind, bkind, opts)
  fields("opts", opts, LINK_OPTS)
  local out = { ips = link_ips(akind, bkind, opts.ip),
    ifnames = link_ifnames(akind, bkind, opts.ifname),
    mtu = opts.mtu, delay = opts.delay, jitter = opts.jitter, loss = opts.loss, rate = opts.rate }
  if opts.mtu ~= nil then
    if mtype(opts.mtu) ~= "integer" or opts.mtu < 68 or opts.mtu > 65535 then
      bad("opts.mtu", "integer in [68, 65535] expected, got " .. tostring(opts.mtu))
    end
    for _, list in ipairs(out.ips) do
      for _, a in ipairs(list) do
        if a.family == 6 and opts.mtu < 1280 then
          bad("opts.mtu", format("IPv6 (%s) needs an MTU of at least 1280", a.text))
        end
      end
    end
  end
  if opts.delay ~= nil or opts.jitter ~= nil or opts.loss ~= nil or opts.rate ~= nil then
    local _, field, why = net._netem_args { delay = opts.delay, jitter = opts.jitter,
      loss = opts.loss, rate = opts.rate }
    if field then
      bad("opts." .. field, why)
    end
  end
  if opts.jitter ~= nil and opts.delay == nil then
    bad("opts.jitter", "jitter needs a delay")
  end
  return out
end

-- for isle.lab.plan_machine
M._bad, M._fail, M._fields, M._finite = bad, fail, fields, finite

--- Check the options of `lab:nat`.
function M.nat_opts(opts)
  fields("opts", opts, check.set { "out", "source" })
  if opts.out == nil then
    bad("opts.out", "the interface (or peer node) to masquerade out of expected")
  end
  if type(opts.out) ~= "string" and type(opts.out) ~= "table" then
    bad("opts.out", "interface name or node expected, got " .. type(opts.out))
  end
  if opts.source ~= nil then
    local why = net._nat_source(opts.source)
    if why then
      bad("opts.source", why)
    end
  end
  return opts
end

--- Check the options of `lab:uplink` of lab `labname`.
-- @treturn table `{ifname, ips = {parsed}}`
function M.uplink_opts(labname, opts)
  fields("opts", opts, check.set { "ip", "ifname" })
  local name = opts.ifname or (labname .. "-up")
  ifname(opts.ifname and "opts.ifname" or "opts.ifname (default LAB-up)", name)
  return { ifname = name, ips = iplist("opts.ip", opts.ip) }
end

-- Run a check of `where`, turning an option's mistake into the whole
-- declaration's ("host h1: opts.clock.monotonic: ...").
local function within(where, fn, ...)
  local ok, r = pcall(fn, ...)
  if ok then
    return r
  end
  if getmetatable(r) == Bad and r.arg then
    fail("%s: %s: %s", where, r.arg, r.why)
  end
  error(r, 0)
end

M._within = within
M.service_opts = machine.service_opts
M._unsupported = unsupported

--- The plan of a declaration: checks everything again (names and options
-- may have changed since they were declared) and computes the rest.
-- @tparam table decl `{name, order = {Node...}, links = {{a, b, opts}},
-- nats = {{host, opts}}, up_link = {switch, opts}}` (a Lab is one)
-- @tparam[opt] table env `{clocks = {monotonic =, boottime =}, backend =,
-- netem =, netem_missing =}`: the clocks now; the link emulation backend
-- (`isle.lab.impair`) when known, `netem = false` when the kernel has no
-- netem (delay and jitter then fail, with `netem_missing` as the reason)
-- @treturn table the plan: `{name, hosts, switches, links, nats, uplink,
-- etc_hosts, backend}`
-- @raise a `Bad` naming the mistake
function M.plan(decl, env)
  return require("isle.lab.plan_topology").plan(decl, env)
end

return M
