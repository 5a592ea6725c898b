--- Netlink inside any network namespace, through libnl-3 in process.
-- `isle.net.open(target)` makes a route socket inside the target namespace
-- (the caller's own namespace is restored at once); each `Net` handle then
-- manages that namespace's links, addresses, routes, sysctls, netem qdiscs
-- and NAT. No `ip`, `tc` or `nft` program is run.
--
-- The C layer registers the raw methods (`_link_add`, `_link_set`,
-- `_netem`, `_nft`, and `links`, `addr_add`, ... as they are); this module
-- adds the friendly ones on top of them and never replaces a C method.
-- @module isle.net
-- @usage local isle = require "isle"
-- local ns = assert(isle.netns.add("demo"))
-- local net = assert(isle.net.open(ns))
-- assert(net:link_set("lo", {up = true}))
-- assert(net:link_add{name = "br0", kind = "bridge", up = true})
-- assert(net:addr_add("br0", "10.0.0.1/24"))
-- net:close(); ns:close(); assert(isle.netns.del("demo"))

local core = require "isle.core"
local check = require "isle._check"
local ip = require "isle.ip"

local M = {}

local type, tostring, tonumber, getmetatable, pairs, ipairs, setmetatable =
  type, tostring, tonumber, getmetatable, pairs, ipairs, setmetatable
local mtype = math.type
local format = string.format

local Net = core.Net

-- A netns target core understands: Netns, name, path, pid. A Process or a
-- Namespace becomes a path.
local function checked_target(fname, argname, t)
  local mt = getmetatable(t)
  local name = mt and mt.__name
  if name == "isle.Process" then
    return format("/proc/%d/ns/net", t.pid)
  elseif name == "isle.Namespace" then
    return "/proc/self/fd/" .. t:fd()
  end
  if t ~= nil and type(t) ~= "string" and mtype(t) ~= "integer" and name ~= "isle.Netns" then
    check.argerror(fname, argname,
      "netns target expected (Netns, Namespace, Process, name, path or pid), got " .. type(t), 3)
  end
  if type(t) == "string" and not t:find("/", 1, true) then
    check.name(fname, argname, t, 3) -- a netns name
  end
  return t
end

--- Open a netlink handle inside a network namespace.
-- @param[opt] target nil (the caller's namespace), a `Netns`, a netns name,
-- a path (`/proc/PID/ns/net`), a pid, a `Process` or a `Namespace`
-- @treturn[1] Net
-- @return[2] nil
-- @treturn[2] string message, e.g. `"net open /run/netns/x: No such file or directory"`
-- @treturn[2] int errno
-- @raise on a target of the wrong type
function M.open(target)
  return core.net_open(checked_target("open", "target", target))
end

local KIND_FIELDS = {
  veth = check.set { "peer" },
  bridge = check.set { "stp", "vlan_filtering" },
  dummy = {},
  vlan = check.set { "id", "link" },
  macvlan = check.set { "mode", "link" },
  vxlan = check.set { "vni", "remote", "local", "dev", "dstport", "learning" },
}
local COMMON = check.set { "name", "kind", "up", "mtu", "address", "master" }

-- A shallow copy of t with field k replaced by v.
local function with(t, k, v)
  local c = {}
  for key, val in pairs(t) do
    c[key] = val
  end
  c[k] = v
  return c
end

--- Net handles (userdata `isle.Net`). Every method returns `nil, message,
-- errno` when the kernel refuses, with a message naming the operation and
-- the object (`"link_add veth0: File exists"`), and raises for malformed
-- arguments (an interface name of 16 bytes or more, a bad address, an
-- unknown option) before any system call.
-- @type Net

--- Create a link.
-- @tparam table spec `name`, `kind` ("veth", "bridge", "dummy", "vlan",
-- "macvlan", "vxlan"), `up`, `mtu`, `address`, `master`; veth: `peer =
-- {name =, netns =, mtu =, address =}` (the peer is created directly in
-- `netns`; set it up from a handle inside that namespace); bridge: `stp`,
-- `vlan_filtering`; vlan: `id`, `link`; macvlan: `mode`, `link`; vxlan:
-- `vni`, `remote`, `local`, `dev`, `dstport`, `learning`
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
function Net:link_add(spec)
  check.fields("link_add", "spec", spec, setmetatable({}, {
    __index = function(_, k)
      return COMMON[k] or (KIND_FIELDS[spec.kind] or {})[k]
    end,
  }))
  local peer = spec.peer
  if type(peer) == "table" and peer.netns ~= nil then
    spec = with(spec, "peer", with(peer, "netns", checked_target("link_add", "spec.peer.netns",
      peer.netns)))
  end
  return self:_link_add(spec)
end

--- Change a link.
-- @string name
-- @tparam table opts `up`, `mtu`, `master` (name, or false for nomaster),
-- `name` (rename), `address`, `netns` (move into another namespace)
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
function Net:link_set(name, opts)
  if type(opts) == "table" and opts.netns ~= nil then
    opts = with(opts, "netns", checked_target("link_set", "opts.netns", opts.netns))
  end
  return self:_link_set(name, opts)
end

--- Why `key` is no sysctl key under `net.` (nil when it is one): the rule
-- of `Net:sysctl`, shared with the lab's validation.
function M._sysctl_key(key)
  if type(key) ~= "string" or key == "" or key:find("..", 1, true) or key:find("^[./]")
    or not key:find("^[%w_%-%./]+$") then
    return "malformed key '" .. tostring(key) .. "'"
  end
end

--- Read or write a sysctl under `net.` inside this handle's namespace.
-- @string key e.g. "ipv4.ip_forward" or "ipv4/conf/all/forwarding"
-- @param[opt] value number, string or boolean to write
-- @treturn[1] string the value (when reading) or true
-- @return[2] nil
-- @treturn[2] string message, e.g. `"sysctl ipv4.nope: No such file or directory"`
-- @treturn[2] int errno
-- @raise on a malformed key
function Net:sysctl(key, value)
  local why = M._sysctl_key(key)
  if why then
    check.argerror("sysctl", "key", why)
  end
  local rel = key:gsub("^net%.", "")
  if not rel:find("/", 1, true) then
    rel = rel:gsub("%.", "/")
  end
  local path = "/proc/sys/net/" .. rel
  if value == nil then
    return self:sysctl_file(path, nil, key)
  end
  if value == true then
    value = "1"
  elseif value == false then
    value = "0"
  elseif type(value) ~= "string" and type(value) ~= "number" then
    check.argerror("sysctl", "value", "number, string or boolean expected")
  end
  return self:sysctl_file(path, tostring(value), key)
end

-- netem's limits: delay and jitter are 32-bit counts of 64 ns ticks in the
-- kernel (2^32 ticks = 274.877906944 s); a rate is 32-bit bytes per second.
local MAX_US = 274877906
local MAX_BYTES = 0xffffffff

local TIME = { us = 1, ms = 1000, s = 1000000 }
local RATE = { bit = 1, kbit = 1e3, mbit = 1e6, gbit = 1e9, tbit = 1e12, bps = 8, kbps = 8e3,
  mbps = 8e6, gbps = 8e9, tbps = 8e12 }

local function finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

-- A time ("10ms", "500us", "1s", or a number of milliseconds) in
-- microseconds, or nil and why.
local function usecs(v)
  local n
  if type(v) == "number" then
    n = v * 1000
  else
    local num, unit = tostring(v):match("^(%d+%.?%d*)(%a*)$")
    local mul = TIME[unit ~= "" and unit or "ms"]
    if not num or not mul then
      return nil, format("malformed time '%s' (e.g. \"10ms\", \"500us\", \"1s\")", tostring(v))
    end
    n = tonumber(num) * mul
  end
  if not finite(n) or n < 0 or n > MAX_US then
    return nil, format("time '%s' out of range [0, %.3f s] (netem's 32-bit tick count)",
      tostring(v), MAX_US / 1e6)
  end
  return n
end

-- A rate ("10mbit", "1gbit", "125kbps", or a number of bits per second) in
-- bytes per second, or nil and why; at most `max` bytes per second
-- (netem's 32-bit rate unless told).
local function bytes_per_s(v, max, why_max)
  local n
  if type(v) == "number" then
    n = v / 8
  else
    local num, unit = tostring(v):lower():match("^(%d+%.?%d*)(%a*)$")
    local mul = RATE[unit ~= "" and unit or "bit"]
    if not num or not mul then
      return nil, format("malformed rate '%s' (e.g. \"10mbit\", \"1gbit\", \"125kbps\")",
        tostring(v))
    end
    n = tonumber(num) * mul / 8
  end
  if not finite(n) or n < 1 or n > (max or MAX_BYTES) then
    return nil, format("rate '%s' out of range [8 bit/s, %d bytes/s] (%s)",
      tostring(v), max or MAX_BYTES, why_max or "netem's 32-bit rate")
  end
  return n
end

local function percent(v)
  if not finite(v) or v < 0 or v > 100 then
    return nil, "percentage in [0, 100] expected, got " .. tostring(v)
  end
  return v
end

local NETEM = check.set { "delay", "jitter", "loss", "rate", "corrupt", "duplicate", "limit" }

--- The netem options of `Net:netem` as the C layer's numbers, or nil, the
-- culprit field and why: THE parser of delays, rates and percentages
-- (the lab's validation uses it too).
-- @tparam table opts as for `Net:netem` (fields not checked here)
function M._netem_args(opts)
  local out = {}
  local conv = { delay = { "delay_us", usecs }, jitter = { "jitter_us", usecs },
    rate = { "rate", bytes_per_s }, loss = { "loss", percent }, corrupt = { "corrupt", percent },
    duplicate = { "duplicate", percent } }
  for field, c in pairs(conv) do
    if opts[field] ~= nil then
      local v, why = c[2](opts[field])
      if not v then
        return nil, field, why
      end
      out[c[1]] = v
    end
  end
  if opts.limit ~= nil then
    if mtype(opts.limit) ~= "integer" or opts.limit < 1 or opts.limit > 0x7fffffff then
      return nil, "limit", "integer in [1, 2147483647] expected, got " .. tostring(opts.limit)
    end
    out.limit = opts.limit
  end
  return out
end

--- Shape egress traffic of a link with a netem root qdisc (replacing the
-- previous one); `nil` removes it. netem acts on egress only: set it on
-- both ends of a veth pair for a symmetric link.
-- @string ifname
-- @tparam table|nil opts `delay`, `jitter` ("10ms", "500us", "1s" or a
-- number of milliseconds; at most 274 s), `loss`, `corrupt`, `duplicate`
-- (percent), `rate` ("10mbit", "1gbit", "125kbps" or bits per second; 8
-- bit/s to 2^32-1 bytes/s), `limit` (packets)
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `"netem eth9: No such device"`
-- @treturn[2] int errno
-- @raise on a malformed or out-of-range option
function Net:netem(ifname, opts)
  check.ifname("netem", "ifname", ifname)
  if opts == nil then
    return self:_netem(ifname, nil)
  end
  check.fields("netem", "opts", opts, NETEM)
  local args, field, why = M._netem_args(opts)
  if not args then
    check.argerror("netem", "opts." .. field, why)
  end
  return self:_netem(ifname, args)
end

-- tbf's sizes (the kernel's HZ is 250 on Debian's kernels and this one):
-- a bucket of one tick's worth of bytes, at least one full frame (MTU plus
-- Ethernet header and one VLAN tag: tbf drops a frame larger than its
-- bucket); a queue of 100 ms at the rate, at least 256 KiB (TCP on veth
-- hands tbf 64 KiB GSO packets, which a latency-sized queue drops).
local TBF_HZ, TBF_QUEUE_S, TBF_MIN_QUEUE, INT_MAX = 250, 0.1, 262144, 0x7fffffff
local TBF_MAX_RATE = 2 ^ 53

--- The bucket and queue (bytes) `Net:tbf` gives a rate of `rate` bytes per
-- second on a link of MTU `mtu`.
-- @treturn int burst
-- @treturn int limit
function M._tbf_size(rate, mtu)
  local burst = math.max(rate // TBF_HZ, (mtu or 1500) + 18)
  burst = math.min(burst, INT_MAX // 2)
  local queue = math.max(math.floor(rate * TBF_QUEUE_S), TBF_MIN_QUEUE)
  return math.tointeger(burst), math.tointeger(math.min(burst + queue, INT_MAX))
end

--- Parse a rate for tbf ("10mbit", "1gbit", "125kbps" or bits per second):
-- bytes per second, or nil and why.
function M._tbf_rate(v)
  local n, why = bytes_per_s(v, TBF_MAX_RATE, "2^53 bytes/s")
  return n and math.tointeger(math.max(1, math.floor(n))), why
end

local TBF = check.set { "rate", "burst", "limit" }

--- Shape egress traffic of a link with a tbf root qdisc (a token bucket:
-- the rate shaping of kernels without netem), replacing the root qdisc it
-- has; `nil` removes the root qdisc, whatever its kind (as `qdisc_clear`).
-- @string ifname
-- @tparam table|nil opts `rate` ("10mbit", "1gbit", "125kbps" or bits per
-- second), `burst` (bytes; default one tick at the rate, at least the
-- link's MTU + 18), `limit` (bytes queued; default 100 ms at the rate, at
-- least 256 KiB, plus the burst)
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `"tbf eth9: No such device"`
-- @treturn[2] int errno
-- @raise on a malformed or out-of-range option
function Net:tbf(ifname, opts)
  check.ifname("tbf", "ifname", ifname)
  if opts == nil then
    local ok, msg, e = self:qdisc_clear(ifname)
    if ok == nil then
      return nil, (msg:gsub("^qdisc_clear", "tbf")), e
    end
    return true
  end
  check.fields("tbf", "opts", opts, TBF)
  if opts.rate == nil then
    check.argerror("tbf", "opts.rate", "a rate expected")
  end
  local rate, why = M._tbf_rate(opts.rate)
  if not rate then
    check.argerror("tbf", "opts.rate", why)
  end
  for _, k in ipairs { "burst", "limit" } do
    local v = opts[k]
    if v ~= nil and (mtype(v) ~= "integer" or v < 1 or v > INT_MAX) then
      check.argerror("tbf", "opts." .. k, "integer in [1, 2147483647] expected, got "
        .. tostring(v))
    end
  end
  local burst, limit = opts.burst, opts.limit
  if not (burst and limit) then
    local mtu = 1500
    if not burst then
      local l = self:link(ifname)
      if not l then
        return nil, "tbf " .. ifname .. ": No such device", 19
      end
      mtu = l.mtu or mtu
    end
    local b, lim = M._tbf_size(rate, mtu)
    burst = burst or b
    limit = limit or math.max(lim - b + burst, burst)
  end
  return self:_tbf(ifname, rate, burst, limit)
end

local ELIBACC = 79 -- Linux: "Can not access a needed shared library"

--- Run nftables commands inside this handle's namespace: through
-- libnftables in process, or, where libnftables cannot be loaded, by
-- feeding them to `nft -f -` run inside the namespace.
-- @string cmds nft syntax, e.g. `"list table inet isle"`
-- @string[opt] what prefix of error messages
-- @treturn[1] string nft's output
-- @return[2] nil
-- @treturn[2] string message (nft's first error line)
-- @treturn[2] int errno (EINVAL for a refused ruleset)
function Net:nft(cmds, what)
  local out, msg, e = self:_nft(cmds, what)
  if out or e ~= ELIBACC then
    return out, msg, e
  end
  return self:_nft_cli(cmds, what)
end

--- `nft -f -` inside the namespace, the fallback of `Net:nft`.
function Net:_nft_cli(cmds, what)
  what = what or "nft"
  local p, msg, e = require("isle.process").spawn {
    argv = { "nft", "-f", "-" }, join = { net = "/proc/self/fd/" .. self:nsfd() },
    stdin = "pipe", stdout = "pipe", stderr = "pipe",
  }
  if not p then
    return nil, format("%s: neither libnftables nor the nft program: %s", what, msg), e
  end
  p.stdin:write(cmds)
  p.stdin:close()
  local out, err = p.stdout:read("a"), p.stderr:read("a")
  local ok = p:wait()
  p:close()
  if ok then
    return out
  end
  err = err:match("^[^\n]*")
  return nil, format("%s: %s", what, err ~= "" and err or "nft failed"),
    err:find("No such file", 1, true) and 2 or 22
end

local NAT = check.set { "source" }

--- Why `s` is no source prefix for `Net:nat` (nil when it is one): an
-- address with an optional prefix length and no host bits set.
function M._nat_source(s)
  local a, why = ip.parse(s)
  if not a then
    return why
  end
  if a.prefix and not ip.host_bits_all(a, 0) then
    return format("'%s' has host bits set (the network is %s)", s, ip.network(a))
  end
end

--- Why `ifname` cannot be masqueraded out of (nil when it can): the kernel's
-- interface name rule, and no `"` or `\` (nft has no escapes in strings).
function M._nat_ifname(ifname)
  local why = core.badifname(ifname)
  if why then
    return type(ifname) == "string" and format("%s: '%s'", why, ifname) or why
  end
  if ifname:find('["\\]') then
    return "interface name with a quote or backslash: '" .. ifname .. "'"
  end
end

-- The chain of interface `ifname`: nft 1.0 takes no quoted chain names, so
-- what is not [%w_] is escaped.
local function nat_chain(ifname)
  return "nat_" .. ifname:gsub("[^%w]", function(c)
    return format("_%02x", c:byte())
  end)
end

-- Remove the chain of `ifname`, and the table once it is empty.
local function nat_remove(self, chain, what)
  local out = self:nft("list table inet isle", what)
  if not out or not out:find("chain " .. chain .. " ", 1, true) then
    return true -- no table or no chain: nothing to remove
  end
  local ok, msg, e = self:nft("delete chain inet isle " .. chain, what)
  if not ok then
    return nil, msg, e
  end
  out = self:nft("list table inet isle", what)
  if out and not out:find("chain ", 1, true) then
    return self:nft("delete table inet isle", what) and true
  end
  return true
end

--- Masquerade traffic leaving through `ifname`, inside this handle's
-- namespace only, in the nftables table `inet isle` (one chain per
-- interface, `nat_IFNAME`); `nil` removes it, and the table once empty.
-- Runs libnftables in process (`nft -f -` where it is missing; see `Net:nft`).
-- @string ifname
-- @tparam table|nil opts `source` (only packets from this prefix)
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
-- @raise on a bad interface name, prefix or option
function Net:nat(ifname, opts)
  local bad = M._nat_ifname(ifname)
  if bad then
    check.argerror("nat", "ifname", bad)
  end
  local chain, what = nat_chain(ifname), "nat " .. ifname
  if opts == nil then
    return nat_remove(self, chain, what)
  end
  check.fields("nat", "opts", opts, NAT)
  local match = ""
  if opts.source ~= nil then
    local why = M._nat_source(opts.source)
    if why then
      check.argerror("nat", "opts.source", why)
    end
    match = format("%s saddr %s ", ip.nft_family(opts.source), opts.source)
  end
  local cmds = table.concat({
    "add table inet isle",
    format("add chain inet isle %s { type nat hook postrouting priority srcnat; policy accept; }",
      chain),
    format("flush chain inet isle %s", chain),
    format('add rule inet isle %s oifname "%s" %smasquerade', chain, ifname, match),
  }, "\n") .. "\n"
  local ok, msg, e = self:nft(cmds, what)
  if not ok then
    return nil, msg, e
  end
  return true
end

M.Net = Net
return M
