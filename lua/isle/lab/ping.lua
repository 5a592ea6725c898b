--- Reachability of a running lab: every ordered pair of hosts pinged at
-- once from this one process (`lab:pingall`, `isle ping`). A raw ICMP
-- socket is opened inside each source host's network namespace, and all
-- echo requests go out and all replies come back through one poll loop
-- (`isle.core.ping`): no process per ping.
-- @module isle.lab.ping
local core = require "isle.core"
local check = require "isle._check"
local net = require "isle.net"

local M = {}

local ipairs, pairs, type, tostring, math = ipairs, pairs, type, tostring, math
local format = string.format

local OPTS = check.set { "hosts", "count", "timeout", "interval" }

-- The address a host is pinged at: the first IPv4 address of its
-- interfaces, else the first IPv6 one (nil when it has none).
local function address(h)
  local v6
  for _, iface in ipairs(h.ifaces) do
    for _, a in ipairs(iface.ips) do
      local addr = a:match("^[^/]+")
      if not addr:find(":", 1, true) then return addr end
      v6 = v6 or addr
    end
  end
  return v6
end
M.address = address

local function check_opts(opts)
  check.fields("pingall", "opts", opts, OPTS, 4)
  if opts.hosts ~= nil and type(opts.hosts) ~= "table" then
    check.argerror("pingall", "opts.hosts", "list of host names expected, got "
      .. type(opts.hosts), 4)
  end
  if opts.count ~= nil then check.int("pingall", "opts.count", opts.count, 1, 255, 4) end
  if opts.timeout ~= nil then
    check.number("pingall", "opts.timeout", opts.timeout, 0.001, 3600, 4)
  end
  if opts.interval ~= nil then
    check.number("pingall", "opts.interval", opts.interval, 0, 3600, 4)
  end
end

-- The hosts of plan p that take part: with an address, among `names`.
local function chosen(p, names)
  local want
  if names then
    want = {}
    for i, n in ipairs(names) do
      local found = false
      for _, h in ipairs(p.hosts) do found = found or h.name == n end
      if not found then
        return nil, format("lab %s: no host '%s' (opts.hosts[%d])", p.name, tostring(n), i), 2
      end
      want[n] = true
    end
  end
  local out = {}
  for _, h in ipairs(p.hosts) do
    local a = address(h)
    if a and (not want or want[h.name]) then
      out[#out + 1] = { name = h.name, netns = h.netns, addr = a }
    end
  end
  return out
end

-- One ICMP socket per source host and family: {[i] = {inet =, inet6 =}}.
local function sockets(hosts)
  local socks, families = {}, {}
  for _, h in ipairs(hosts) do
    families[h.addr:find(":", 1, true) and "inet6" or "inet"] = true
  end
  for i, h in ipairs(hosts) do
    local n, msg, e = net.open(h.netns)
    if not n then return nil, msg, e end
    socks[i] = {}
    for fam in pairs(families) do
      local s
      s, msg, e = n:icmp_socket(fam)
      if not s then
        n:close()
        return nil, format("host %s: %s", h.name, msg), e
      end
      socks[i][fam] = s
    end
    n:close()
  end
  return socks
end

local function close_all(socks)
  for _, t in pairs(socks) do
    for _, s in pairs(t) do s:close() end
  end
end

--- Ping every ordered pair of plan p's hosts (see `lab:pingall`).
-- @treturn[1] table `{{from =, to =, ok =, rtt_ms =, sent =, received =}, ...}`
-- @return[2] nil, message, errno
function M.pingall(p, opts)
  opts = opts or {}
  check_opts(opts)
  local hosts, msg, e = chosen(p, opts.hosts)
  if not hosts then return nil, msg, e end
  local socks
  socks, msg, e = sockets(hosts)
  if not socks then return nil, format("lab %s: pingall: %s", p.name, msg), e end
  local probes, pairs_ = {}, {}
  for i, from in ipairs(hosts) do
    for j, to in ipairs(hosts) do
      if i ~= j then
        local fam = to.addr:find(":", 1, true) and "inet6" or "inet"
        probes[#probes + 1] = { fd = socks[i][fam]:fd(), dst = to.addr }
        pairs_[#pairs_ + 1] = { from = from.name, to = to.name }
      end
    end
  end
  local ok, res = pcall(core.ping, probes, { count = opts.count or 1,
    timeout = opts.timeout or 1, interval = opts.interval or 0.2 })
  close_all(socks)
  if not ok then error(res, 0) end
  for k, r in ipairs(res) do
    local pr = pairs_[k]
    pr.ok, pr.sent, pr.received = r.received > 0, r.sent, r.received
    pr.rtt_ms = r.rtt_ms and math.floor(r.rtt_ms * 1000 + 0.5) / 1000 or nil
    pr.error = r.error
  end
  return pairs_
end

--- Totals of pingall's result: reachable pairs, pairs, packets lost (%).
function M.summary(res)
  local reach, sent, recv = 0, 0, 0
  for _, r in ipairs(res) do
    if r.ok then reach = reach + 1 end
    sent, recv = sent + r.sent, recv + r.received
  end
  return reach, #res, sent > 0 and (sent - recv) * 100 / sent or 0
end

return M
