--- Topologies: hosts, switches and links declared in Lua, built in one go.
--
-- A lab is declared first (`lab:host`, `lab:switch`, `lab:link`, ...), then
-- `lab:up()` checks the whole declaration (a mistake raises, naming the
-- culprit, before anything is created) and builds it through `isle.net`,
-- all or nothing. Each host is the named network namespace `LAB-HOST`
-- (`ip netns exec demo-h1 ...` works) with its own uts namespace (its
-- hostname) and, with `clock`, its own time namespace; switches are Linux
-- bridges in a network namespace of the lab's own. Each host also has a
-- filesystem of its own (`isle.lab.host`: private /run, /tmp, /var/tmp,
-- /var/log, its `files`), where lab hosts resolve each other by name (the
-- lab's one hosts file, also `/etc/netns/LAB-HOST/hosts` for `ip netns
-- exec`), and runs its services (`lab:service`, `isle.lab.supervisor`).
--
-- Everything the lab creates is recorded under `/run/isle/LAB/` *before* it
-- is created, so `lab:down()` (or `isle down LAB`) removes exactly what the
-- lab made, also after the building process was killed, and never anything
-- it did not make.
--
-- The module's parts: `isle.lab.plan`, `isle.lab.plan_topology` and
-- `isle.lab.plan_machine` (the declaration's checks and the plan, pure),
-- `isle.lab.build` (up), `isle.lab.model` (the model file, a record a line),
-- `isle.lab.host` and `isle.lab.host_layout` (a host's filesystem),
-- `isle.lab.entry` (the way onto a host), `isle.lab.services` and
-- `isle.lab.supervisor` (services), `isle.lab.journal` (the records, down,
-- the labs that exist) and `isle.lab.replay` (undoing them),
-- `isle.lab.reap` (ending a lab's processes), `isle.lab.named` (the
-- functions on a lab by its name), `isle.lab.graph` (DOT); a running lab
-- changed: `isle.lab.links` (link_set), `isle.lab.apply` (the diff, with
-- `isle.lab.same`), `isle.lab.change` (its steps), `isle.lab.change_host`
-- (its steps for hosts as machines: hosts files, files, services,
-- processes), `isle.lab.restore` (undoing an aborted apply),
-- `isle.lab.state`, `isle.lab.impair`, `isle.lab.describe`, `isle.lab.ping`;
-- rootless: `isle.lab.context` (an unprivileged user's lab namespaces).
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
local check = require "isle._check"
local planmod = require "isle.lab.plan"
local journal = require "isle.lab.journal"
local state = require "isle.lab.state"
local graph = require "isle.lab.graph"
local entry = require "isle.lab.entry"
local named = require "isle.lab.named"

local M = {}

local type, ipairs, pairs, tostring, error, setmetatable, getmetatable, pcall =
  type, ipairs, pairs, tostring, error, setmetatable, getmetatable, pcall
local format = string.format
local EEXIST, ENOENT = 17, 2

--- Where labs keep their state (one directory per lab).
M.STATE_DIR = journal.STATE_DIR

-- -------------------------------------------------------------------------
-- the declaration

local Lab = {}
Lab.__index = Lab

local Node = {}
Node.__index = Node
function Node:__tostring()
  return format("isle.lab %s %s", self.kind, self.name)
end

-- Run one of the plan's checks; its mistake raises `bad argument 'ARG' to
-- 'FNAME' (...)` at `level` (as for `error`, seen from declare's caller).
local function declare(fname, level, fn, ...)
  local ok, r = pcall(fn, ...)
  if ok then
    return r
  end
  if getmetatable(r) == planmod.Bad then
    check.argerror(fname, r.arg, r.why, level + 1)
  end
  error(r, 0)
end

local checkname, check_spec = named._checkname, named._check_spec

--- Create a lab (nothing is built before `lab:up()`).
-- @string name the lab's name: letters, digits, `_`, `.`, `-`, at most 64 bytes
-- @treturn Lab
-- @raise on a bad name
-- @function isle.lab
local function new(name)
  declare("lab", 2, planmod.node_name, "lab", name)
  return setmetatable({ name = name, nodes = {}, order = {}, links = {}, nats = {},
    services = {}, procs = {}, built = false }, Lab)
end

local function addnode(self, fname, kind, name, opts)
  declare(fname, 3, planmod.node_name, kind, name)
  if self.nodes[name] then
    check.argerror(fname, "name", format("lab %s already has a %s named '%s'", self.name,
      self.nodes[name].kind, name), 3)
  end
  local node = setmetatable({ kind = kind, name = name, lab = self, opts = opts }, Node)
  self.nodes[name] = node
  self.order[#self.order + 1] = node
  return node
end

--- Declare a host: a network namespace `LAB-NAME` with its own hostname.
-- @string name host name (also its default hostname and its name in the
-- lab's hosts files)
-- @tparam[opt] table opts `hostname`; `gateway` (an address, or a list:
-- default routes); `routes` (`{{dst =, via =, dev =, metric =}, ...}`);
-- `forward` (true: a router); `clock = {monotonic =, boottime =}` (offsets
-- in seconds, at most 2^31 either way: the host gets its own time
-- namespace); `sysctl` (`{["ipv4.ip_forward"] = 1, ...}` under `net.`);
-- `files` (`{["/etc/frr/frr.conf"] = "text", ["/x"] = {source = "path"},
-- ["/y"] = {text =, mode = 493}}`: files of the host's own filesystem; a
-- relative source is read from the current directory of `up`), `private`
-- (`{"/var/lib/x", ...}`: more directories with a fresh tmpfs), `mounts`
-- (mount steps as in `isle.spawn`; bind sources are the caller's paths).
-- Every host also has a private tmpfs on /run, /tmp, /var/tmp and /var/log.
-- @treturn Node
-- @raise on a bad name, a duplicate or a bad option
function Lab:host(name, opts)
  opts = opts or {}
  declare("host", 2, planmod.host_opts, opts)
  local node = addnode(self, "host", "host", name, opts)
  node.hostname = opts.hostname or name
  return node
end

--- Declare a switch: a Linux bridge in the lab's own network namespace
-- (at most 1,023 ports: the kernel's BR_MAX_PORTS less port 0).
-- @string name bridge name (at most 15 bytes)
-- @tparam[opt] table opts none yet
-- @treturn Node
function Lab:switch(name, opts)
  check.fields("switch", "opts", opts or {}, {}, 2)
  return addnode(self, "switch", "switch", name, opts or {})
end

local function resolve(self, fname, arg, v)
  if getmetatable(v) == Node then
    if v.lab ~= self then
      check.argerror(fname, arg, "node " .. tostring(v.name) .. " belongs to another lab", 3)
    end
    return v
  end
  if type(v) == "string" and self.nodes[v] then
    return self.nodes[v]
  end
  check.argerror(fname, arg, "a host or switch of lab " .. self.name .. " expected, got "
    .. (type(v) == "string" and "'" .. v .. "'" or type(v)), 3)
end

--- Connect two nodes with a veth pair.
-- @tparam Node|string a a host or switch (or its name)
-- @tparam Node|string b
-- @tparam[opt] table opts `ip` (the host end's address, a list of them, or
-- `{a_ip, b_ip}` between two hosts), `ifname` (`{a, b}`, or a string for
-- the one host end), `mtu` (68 to 65535; 1280 at least with IPv6),
-- `delay`, `jitter` ("10ms", "500us", "1s" or milliseconds; at most 274 s),
-- `loss` (percent), `rate` ("10mbit", "1gbit", "125kbps" or bits per
-- second) — delay and friends apply in both directions (netem on both ends).
-- @treturn table the link
function Lab:link(a, b, opts)
  opts = opts or {}
  a = resolve(self, "link", "a", a)
  b = resolve(self, "link", "b", b)
  if a == b then
    check.argerror("link", "b", "a link needs two different nodes", 2)
  end
  declare("link", 2, planmod.link_opts, a.kind, b.kind, opts)
  local link = { a = a, b = b, opts = opts, index = #self.links + 1 }
  self.links[#self.links + 1] = link
  return link
end

--- Masquerade traffic leaving a host (a router) through one interface.
-- @tparam Node|string host
-- @tparam table opts `out` (the interface name, or the node at the other
-- end of the link to go out on) and `source` (e.g. `"10.0.0.0/24"`)
function Lab:nat(host, opts)
  host = resolve(self, "nat", "host", host)
  if host.kind ~= "host" then
    check.argerror("nat", "host", "NAT runs on a host (a router), not a switch", 2)
  end
  opts = opts or {}
  declare("nat", 2, planmod.nat_opts, opts)
  if getmetatable(opts.out) == Node and opts.out.lab ~= self then
    check.argerror("nat", "opts.out", "node " .. tostring(opts.out.name)
      .. " belongs to another lab", 2)
  end
  self.nats[#self.nats + 1] = { host = host, opts = opts }
end

--- Connect a switch to the machine's own network namespace (the only thing
-- a lab puts there): a veth pair, the machine's end named `ifname`
-- (default `LAB-up`) with address `ip`.
-- @tparam Node|string switch
-- @tparam table opts `ip` (e.g. `"10.0.0.254/24"`), `ifname`
function Lab:uplink(switch, opts)
  switch = resolve(self, "uplink", "switch", switch)
  if switch.kind ~= "switch" then
    check.argerror("uplink", "switch", "an uplink connects a switch", 2)
  end
  opts = opts or {}
  declare("uplink", 2, planmod.uplink_opts, self.name, opts)
  if self.up_link then
    check.argerror("uplink", "switch", "lab " .. self.name .. " already has an uplink", 2)
  end
  self.up_link = { switch = switch, opts = opts }
end

--- Declare a service: a daemon the lab runs on a host, started by `up`
-- after the wiring (each once those it names in `after` are ready;
-- independent ones in parallel), its output kept in a log under the lab's
-- state (`isle logs LAB HOST NAME`), watched by the lab's supervisor
-- (`restart`), stopped (TERM, a grace period, KILL) by `down`. `up` fails,
-- and undoes everything, when one does not get ready in time; the message
-- ends with the tail of its log.
-- @tparam Node|string host
-- @string name unique on its host
-- @tparam table opts `argv` (the command, in the foreground), `env`
-- (added to PATH and HOSTNAME), `cwd` (default /), `user` ("uid[:gid]"),
-- `after` (names of services of the same host), `ready` (`{argv = {...}}`
-- that must exit 0, `{port = 179}` a TCP port that must accept on
-- 127.0.0.1, ::1 or one of the host's addresses, or `{file = "/run/x"}`
-- that must appear in the host's filesystem), `timeout` (seconds to get
-- ready, default 30), `restart` (`"no"` or `"on-failure"`: started again,
-- at most `restart_limit` times (default 5), when it exits with a status
-- other than 0 or is killed by a signal it was not sent by the lab)
-- @treturn table the service
-- @raise on a bad name, host or option
function Lab:service(host, name, opts)
  host = resolve(self, "service", "host", host)
  if host.kind ~= "host" then
    check.argerror("service", "host", "services run on hosts, not on switches", 2)
  end
  declare("service", 2, planmod.node_name, "service", name)
  opts = opts or {}
  declare("service", 2, planmod.service_opts, opts)
  for _, sv in ipairs(self.services) do
    if sv.host == host and sv.name == name then
      check.argerror("service", "name", format("host %s already has a service named '%s'",
        host.name, name), 2)
    end
  end
  local sv = { host = host, name = name, opts = opts }
  self.services[#self.services + 1] = sv
  return sv
end

-- The plan, raising a declaration mistake at `level` above the caller;
-- with `probe`, for this kernel's link emulation (`isle.lab.impair`), or
-- for link emulation backend `backend`.
local function checked(self, level, probe, backend)
  local env = { clocks = { monotonic = core.clock("monotonic"),
    boottime = core.clock("boottime") } }
  if probe or backend then
    local impair = require "isle.lab.impair"
    env.backend = backend or impair.probe_here()
    if env.backend then
      env.netem = env.backend == impair.NETEM
      env.netem_missing = not env.netem and impair.netem_missing() or nil
    end
  end
  local ok, p = pcall(planmod.plan, self, env)
  if ok then
    return p
  end
  if getmetatable(p) == planmod.Bad then
    if p.errno then
      return nil, format("lab %s: %s", tostring(self.name), tostring(p)), p.errno
    end
    error(format("lab %s: %s", tostring(self.name), tostring(p)), level + 1)
  end
  error(p, 0)
end

--- Check the whole declaration and compute the plan (interface names,
-- addresses, routes); touches nothing.
-- @treturn table the plan
-- @raise naming the culprit
function Lab:validate()
  return checked(self, 2)
end

-- -------------------------------------------------------------------------
-- up and down

--- Build the lab, all or nothing.
-- The declaration is checked first (a mistake raises). On a failure of the
-- system everything built so far is removed again; the caller stays in its
-- own namespaces, also when something raises.
-- @tparam[opt] table opts `progress = function(phase, done, total)`
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `lab demo: host h1: netns add demo-h1: File exists`
-- @treturn[2] int errno
-- @raise on a bad declaration
function Lab:up(opts)
  opts = opts or {}
  check.fields("up", "opts", opts, check.set { "progress" }, 2)
  if opts.progress ~= nil and type(opts.progress) ~= "function" then
    check.argerror("up", "opts.progress", "function expected, got " .. type(opts.progress), 2)
  end
  local p, msg, e = checked(self, 2, true)
  if not p then
    return nil, msg, e
  end
  if self.built then
    return nil, format("lab %s: already up", self.name), EEXIST
  end
  local ok
  ok, msg, e = require("isle.lab.build").up(p, opts.progress)
  if not ok then
    return nil, msg, e
  end
  self.plan, self.built = p, p.name
  return true
end

--- Remove everything the lab made (see `isle.lab.down`): every process
-- still in its namespaces is ended first (those of `lab:spawn` at once).
-- @treturn[1] true
-- @treturn[1] int how many processes were ended (besides those of `lab:spawn`)
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
  local name = type(self.built) == "string" and self.built or self.name
  checkname("down", "lab.name", name, 2)
  local ok, msg, e = journal.down(name)
  self.built = false
  if not ok then
    return nil, msg, e
  end
  return true, msg
end

-- -------------------------------------------------------------------------
-- changing a running lab

-- The name of the running lab this Lab stands for.
local function running(self)
  return type(self.built) == "string" and self.built or self.name
end

--- Change a link of the running lab: carrier, cut, impairments, in place.
-- Works on a lab any process brought up (`isle.lab.open(name)`); each
-- change is journalled, so `down` removes everything after any change.
-- @param a one end: a node, its name, or `"NODE:IFNAME"` (when several
-- links join the same nodes); or the link's name (`"h1-s1"`) with `b`
-- left out
-- @param[opt] b the other end
-- @tparam table opts `up` (false: both ends administratively down; the
-- kernel then drops the routes through them, which `up = true` puts back),
-- `cut` (true: everything dropped both ways, carrier kept), `delay`,
-- `jitter`, `loss`, `rate` (as for `lab:link`; `false` clears)
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `lab demo: no link between h1 and h9`
-- @treturn[2] int errno (EOPNOTSUPP: a delay without netem)
-- @raise on a malformed option
function Lab:link_set(a, b, opts)
  if opts == nil and type(b) == "table" and getmetatable(b) ~= Node then
    b, opts = nil, b
  end
  return require("isle.lab.links").set(running(self), self, a, b, opts)
end

--- The changes `lab:apply()` would make to the running lab of this name,
-- one line each: `+ host h3`, `- link h2-s1 (h2:eth0 -- s1:s1-eth2)`,
-- `~ link h1-s1: impairments loss 30% -> none`, `+ address 10.0.0.9/24
-- on h1:eth0`, ... (everything is `+` when the lab is not running).
-- @treturn[1] {string,...}
-- @return[2] nil, message, errno
-- @raise on a bad declaration
function Lab:diff()
  return require("isle.lab.apply").lab_diff(self, function(backend)
    return checked(self, 5, false, backend) -- blames lab:diff's caller
  end)
end

--- Bring the running lab of this name to this declaration: create what is
-- new, remove what is gone, change what differs (addresses, routes, NAT,
-- impairments, hostnames, sysctls, clocks), journalled like `up`, all or
-- nothing (a failure rolls the lab back as it was); a lab that is not
-- running is built as by `up`. Links that stay keep their state (down,
-- cut); their impairments become the declared ones. A host whose clock
-- offsets change gets a new time namespace (processes started on it from
-- then on see the new clocks). The uplink cannot change.
-- @tparam[opt] table opts `progress = function(phase, done, total)`
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno (EBUSY: another apply is running)
-- @raise on a bad declaration
function Lab:apply(opts)
  opts = opts or {}
  check.fields("apply", "opts", opts, check.set { "progress" }, 2)
  return require("isle.lab.apply").lab_apply(self, opts, function(backend)
    return checked(self, 5, false, backend) -- blames lab:apply's caller
  end)
end

--- Ping every ordered pair of the running lab's hosts that have an
-- address, all at once from this process (a raw ICMP socket in each
-- host; no process per ping).
-- @tparam[opt] table opts `hosts` (a list of host names: only these),
-- `count` (echo requests per pair, default 1), `timeout` (seconds each
-- request is waited for, default 1), `interval` (seconds between rounds,
-- default 0.2)
-- @treturn[1] table `{{from =, to =, ok =, rtt_ms =, sent =, received =}, ...}`
-- (`rtt_ms`: the average, when a reply came)
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
-- @raise on a malformed option
function Lab:pingall(opts)
  if opts ~= nil and type(opts) ~= "table" then
    check.argerror("pingall", "opts", "table expected, got " .. type(opts), 2)
  end
  local p, msg, e = state.current(running(self), self)
  if not p then
    return nil, msg, e
  end
  return require("isle.lab.ping").pingall(p, opts)
end

-- -------------------------------------------------------------------------
-- running things on hosts

local function host_plan(self, fname, host)
  local name = getmetatable(host) == Node and host.name or host
  if type(name) ~= "string" then
    check.argerror(fname, "host", "host name or node expected, got " .. type(host), 3)
  end
  for _, h in ipairs((self.plan or checked(self, 3)).hosts) do
    if h.name == name then
      return h
    end
  end
  check.argerror(fname, "host", format("lab %s has no host '%s'", self.name, name), 3)
end

local function spawn_on(self, h, spec)
  local entry_of, msg, e = entry.host_entry(self.name, h.name)
  if not entry_of then
    return nil, msg, e
  end
  local p
  p, msg, e = require("isle.process").spawn(entry.spec(spec, entry_of, h))
  if not p then
    return nil, format("lab %s: host %s: %s", self.name, h.name, msg), e
  end
  self.procs[#self.procs + 1] = p
  return p
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
  local h = host_plan(self, "spawn", host)
  check_spec("spawn", spec, 2)
  return spawn_on(self, h, spec)
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
  local h = host_plan(self, "run", host)
  if type(argv) ~= "table" then
    check.argerror("run", "argv", "list expected, got " .. type(argv), 2)
  end
  local p, msg, e = spawn_on(self, h, { argv = argv, stdout = "pipe" })
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

--- The lab as Graphviz DOT text for `dot`: switches and routers ranked
-- above the hosts, interface names at the link ends, addresses on the
-- nodes, impairments as link labels; a running lab's link state too (down
-- dashed, cut red).
-- @treturn string
function Lab:graph()
  return graph.dot(self.plan or checked(self, 2))
end

-- -------------------------------------------------------------------------
-- labs that exist (for the command line and for other processes; the
-- functions on a lab by its name are isle.lab.named's)

for k, v in pairs(named) do
  if k:sub(1, 1) ~= "_" then M[k] = v end
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
  if planmod.RESERVED[name] then
    return nil, format("lab %s: no such lab", name), ENOENT
  end
  local self = new(name)
  local p, msg, e = state.current(name, self)
  if not p then
    return nil, msg, e
  end
  self.plan, self.built = p, name
  return self
end

--- Run a topology script and return the lab it returns.
-- @string path the script; extra arguments are passed to it as `...`
-- @param ... arguments for the script
-- @treturn[1] Lab
-- @return[2] nil
-- @treturn[2] string message
-- @raise when the script raises or returns something else than a lab
function M.load(path, ...)
  check.string("load", "path", path, 2)
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
