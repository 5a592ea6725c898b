--- Netlink inside any network namespace, through libnl-3 in process.
-- `isle.net.open(target)` makes a route socket inside the target namespace
-- (the caller's own namespace is restored at once); each `Net` handle then
-- manages that namespace's links, addresses, routes, sysctls, netem qdiscs
-- and NAT. No `ip`, `tc` or `nft` program is run.
-- @module isle.net
-- @usage local isle = require "isle"
-- local ns = assert(isle.netns.add("demo"))
-- local net = assert(isle.net.open(ns))
-- assert(net:link_set("lo", {up = true}))
-- assert(net:link_add{name = "br0", kind = "bridge", up = true})
-- assert(net:addr_add("br0", "10.0.0.1/24"))
-- net:close(); ns:close(); assert(isle.netns.del("demo"))

local core = require "isle.core"
local util = require "isle._util"

local M = {}

local type, tostring, getmetatable, pairs = type, tostring, getmetatable, pairs
local mtype = math.type
local format = string.format

local Net = core.Net

-- A netns target core understands: Netns, name, path, pid. A Process or a
-- Namespace becomes a path.
local function target(fname, argname, t)
  local mt = getmetatable(t)
  local name = mt and mt.__name
  if name == "isle.Process" or name == "isle.Namespace" then
    return util.target_path(fname, argname, t, "net", 2)
  end
  if t ~= nil and type(t) ~= "string" and mtype(t) ~= "integer" and name ~= "isle.Netns" then
    util.argerror(fname, argname,
      "netns target expected (Netns, Namespace, Process, name, path or pid), got " .. type(t), 3)
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
function M.open(t)
  return core.net_open(target("open", "target", t))
end

local KIND_FIELDS = {
  veth = util.set { "peer" },
  bridge = util.set { "stp", "vlan_filtering" },
  dummy = {},
  vlan = util.set { "id", "link" },
  macvlan = util.set { "mode", "link" },
  vxlan = util.set { "vni", "remote", "local", "dev", "dstport", "learning" },
}
local COMMON = util.set { "name", "kind", "up", "mtu", "address", "master" }

local c_link_add, c_link_set = Net.link_add, Net.link_set

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
  util.checkfields("link_add", "spec", spec, setmetatable({}, {
    __index = function(_, k)
      return COMMON[k] or (KIND_FIELDS[spec.kind] or {})[k]
    end,
  }))
  if spec.peer ~= nil and type(spec.peer) == "table" and spec.peer.netns ~= nil then
    local peer = {}
    for k, v in pairs(spec.peer) do
      peer[k] = v
    end
    peer.netns = target("link_add", "spec.peer.netns", peer.netns)
    local s = {}
    for k, v in pairs(spec) do
      s[k] = v
    end
    s.peer = peer
    spec = s
  end
  return c_link_add(self, spec)
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
    local o = {}
    for k, v in pairs(opts) do
      o[k] = v
    end
    o.netns = target("link_set", "opts.netns", o.netns)
    opts = o
  end
  return c_link_set(self, name, opts)
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
  if type(key) ~= "string" or key == "" or key:find("%.%.") or key:find("^[./]")
    or not key:find("^[%w_%-%./]+$") then
    util.argerror("sysctl", "key", "malformed key '" .. tostring(key) .. "'")
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
    util.argerror("sysctl", "value", "number, string or boolean expected")
  end
  return self:sysctl_file(path, tostring(value), key)
end

local TIME = { us = 1, ms = 1000, s = 1000000 }
local function usecs(fname, field, v)
  if v == nil then
    return nil
  end
  if type(v) == "number" then
    return v * 1000 -- milliseconds
  end
  local n, unit = tostring(v):match("^(%d+%.?%d*)(%a*)$")
  local mul = TIME[unit ~= "" and unit or "ms"]
  if not n or not mul then
    util.argerror(fname, "opts." .. field, "malformed time '" .. tostring(v) .. "'", 3)
  end
  return tonumber(n) * mul
end

local RATE = { bit = 1, kbit = 1e3, mbit = 1e6, gbit = 1e9, bps = 8, kbps = 8e3, mbps = 8e6,
  gbps = 8e9 }
local function bytes_per_s(fname, v)
  if v == nil then
    return nil
  end
  if type(v) == "number" then
    return v / 8 -- bits per second
  end
  local n, unit = tostring(v):lower():match("^(%d+%.?%d*)(%a*)$")
  local mul = RATE[unit ~= "" and unit or "bit"]
  if not n or not mul then
    util.argerror(fname, "opts.rate", "malformed rate '" .. tostring(v) .. "'", 3)
  end
  return tonumber(n) * mul / 8
end

local NETEM = util.set { "delay", "jitter", "loss", "rate", "corrupt", "duplicate", "limit" }
local c_netem = Net.netem

--- Shape egress traffic of a link with a netem root qdisc (replacing the
-- previous one); `nil` removes it. netem acts on egress only: set it on
-- both ends of a veth pair for a symmetric link.
-- @string ifname
-- @tparam table|nil opts `delay`, `jitter` ("10ms", "500us", "1s" or a
-- number of milliseconds), `loss`, `corrupt`, `duplicate` (percent),
-- `rate` ("10mbit", "1gbit", "125kbps" or bits per second), `limit`
-- (packets)
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `"netem eth9: No such device"`
-- @treturn[2] int errno
function Net:netem(ifname, opts)
  if opts == nil then
    return c_netem(self, ifname, nil)
  end
  util.checkfields("netem", "opts", opts, NETEM)
  return c_netem(self, ifname, {
    delay_us = usecs("netem", "delay", opts.delay),
    jitter_us = usecs("netem", "jitter", opts.jitter),
    loss = opts.loss, corrupt = opts.corrupt, duplicate = opts.duplicate,
    rate = bytes_per_s("netem", opts.rate), limit = opts.limit,
  })
end

local c_nft = Net.nft
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
  local out, msg, e = c_nft(self, cmds, what)
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

local NAT = util.set { "source" }

-- Is s an IPv4 or IPv6 prefix (validated again by nft)?
local function prefix_family(s)
  if type(s) ~= "string" then
    return nil
  end
  local a, b, c, d, p = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)/?(%d*)$")
  if a then
    for _, x in ipairs { a, b, c, d } do
      if tonumber(x) > 255 then
        return nil
      end
    end
    if p ~= "" and tonumber(p) > 32 then
      return nil
    end
    return "ip"
  end
  if s:find("^[%x:]+/?%d*$") and s:find(":", 1, true) then
    return "ip6"
  end
  return nil
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
function Net:nat(ifname, opts)
  if type(ifname) ~= "string" or #ifname == 0 or #ifname >= 16 or ifname:find("[%s/:\"\\]") then
    util.argerror("nat", "ifname", "invalid interface name '" .. tostring(ifname) .. "'")
  end
  -- nft 1.0 takes no quoted chain names: escape what is not [%w_]
  local chain = "nat_" .. ifname:gsub("[^%w]", function(c)
    return format("_%02x", c:byte())
  end)
  local what = "nat " .. ifname
  if opts == nil then
    local out = self:nft("list table inet isle", what)
    if not out then
      return true -- no table: nothing to remove
    end
    if not out:find("chain " .. chain .. " ", 1, true) then
      return true
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
  util.checkfields("nat", "opts", opts, NAT)
  local match = ""
  if opts.source ~= nil then
    local fam = prefix_family(opts.source)
    if not fam then
      util.argerror("nat", "opts.source", "malformed prefix '" .. tostring(opts.source) .. "'")
    end
    match = format("%s saddr %s ", fam, opts.source)
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
