--- The functions of `isle.lab` on a lab by its name, for the command line
-- and for processes other than the one that built it: `isle.lab.list`,
-- `info`, `spawn`, `interfaces`, `describe`, `down`, `services`,
-- `service_log`, `restart`, `host_entry` (`isle.lab` has them all; this
-- module is where they are written).
-- @module isle.lab.named
local check = require "isle._check"
local planmod = require "isle.lab.plan"
local journal = require "isle.lab.journal"
local state = require "isle.lab.state"
local entry = require "isle.lab.entry"

local M = {}

local type = type

-- A lab, host or host name argument (raises; reserved names pass).
local function checkname(fname, arg, name, level)
  return check.name(fname, arg, name, level + 1, planmod.NAME_PATTERN, planmod.NAME_MAX)
end

-- A spawn spec argument (raises).
local function check_spec(fname, spec, level)
  if type(spec) ~= "table" then
    check.argerror(fname, "spec", "table expected, got " .. type(spec), level + 1)
  end
  if spec.join ~= nil then
    check.argerror(fname, "spec", "'join' is set by lab:spawn", level + 1)
  end
end

--- Names of the labs with state under `/run/isle`, sorted.
-- @treturn {string,...}
M.list = journal.list

--- Information on an existing lab: `{name, plan, complete, pid, alive}`
-- (`plan` may be nil when the builder died before writing it).
-- @string name
-- @treturn[1] table
-- @return[2] nil, message, errno
function M.info(name)
  checkname("info", "name", name, 2)
  return journal.info(name)
end

--- Start a process on host `host` of the running lab `name` (as
-- `isle.lab.open(name):spawn(host, spec)`, but an unknown lab or host is a
-- failure, not a mistake: for tools that take both from their user).
-- @string name
-- @string host
-- @tparam table spec an `isle.spawn` spec (without `join`)
-- @treturn[1] Process
-- @return[2] nil
-- @treturn[2] string message, e.g. `lab demo: no host 'h9'`
-- @treturn[2] int errno
function M.spawn(name, host, spec)
  checkname("spawn", "name", name, 2)
  check.string("spawn", "host", host, 2)
  check_spec("spawn", spec, 2)
  return entry.spawn(name, host, spec)
end

--- The interfaces of a running lab's hosts, read from the kernel: host
-- name → `{{name =, up =, addresses = {"10.0.0.1/24", ...}}, ...}`
-- (loopback and IPv6 link-local addresses left out); a host whose
-- namespace cannot be opened is missing.
-- @string name
-- @treturn[1] table
-- @return[2] nil, message, errno
function M.interfaces(name)
  local info, msg, e = M.info(name)
  if not info then
    return nil, msg, e
  end
  return require("isle.lab.describe").interfaces(info.plan and info.plan.hosts or {})
end

--- The whole of a running lab as a table: `{name, state, backend, hosts
-- = {{name, hostname, netns, router, interfaces = {{name, up, addresses,
-- link, peer}}, routes, gateways}}, switches = {{name, ports}}, links =
-- {{name, ends = {{node, kind, ifname, addresses}} x 2, state ("up",
-- "down", "cut"), mtu, impairments = {delay, jitter, loss, rate},
-- backend}}, nat, uplink}` — the JSON of `isle ls --json NAME` (README).
-- Addresses, routes and interface states are read from the kernel.
-- @string name
-- @treturn[1] table
-- @return[2] nil, message, errno
function M.describe(name)
  checkname("describe", "name", name, 2)
  local p, st, e = state.current(name)
  if not p then
    return nil, st, e
  end
  return require("isle.lab.describe").describe(p, st)
end

--- Remove a lab by name: exactly what its records under `/run/isle/NAME`
-- say it made, also after the builder (or an earlier `down`) was killed;
-- never anything else. First every process still in one of its
-- namespaces is ended (services, `isle exec`, shells, containers on its
-- hosts: found by the namespaces' identities, TERM, a grace period of
-- `isle.lab.reap.GRACE` seconds, KILL), so that no namespace of the lab
-- outlives it.
-- @string name
-- @treturn[1] true
-- @treturn[1] int how many processes were ended
-- @return[2] nil
-- @treturn[2] string message, e.g. `lab demo: no such lab`
-- @treturn[2] int errno
function M.down(name)
  checkname("down", "name", name, 2)
  return journal.down(name)
end

--- The services of a running lab, as its supervisor last wrote them.
-- @string name
-- @treturn[1] {table,...} in start order: `{host =, name =, pid = (0
-- when none), state = "waiting"|"starting"|"running"|"backoff"|"stopping"
-- |"exited"|"failed"|"stopped", restarts =, uptime = seconds in this state,
-- why = the last exit or failure}`
-- @treturn[1] boolean whether the supervisor runs (when not, the states
-- are the last it wrote)
-- @return[2] nil, message (`lab NAME: no services`), errno
function M.services(name)
  checkname("services", "name", name, 2)
  return require("isle.lab.services").states(name)
end

--- The log file of a service of a running lab (its output, appended,
-- with lines `isle: TIME: ...` where it was started, got ready, ended).
-- @string name
-- @string host
-- @string service
-- @treturn[1] string the path
-- @return[2] nil, message, errno
function M.service_log(name, host, service)
  checkname("service_log", "name", name, 2)
  check.string("service_log", "host", host, 2)
  check.string("service_log", "service", service, 2)
  return require("isle.lab.services").log_of(name, host, service)
end

--- Restart a service of a running lab: its supervisor stops it (TERM, a
-- grace period, KILL), starts it again and waits until it is ready
-- (its restart count starts again from 0).
-- @string name
-- @string host
-- @string service
-- @treturn[1] int the new process's pid
-- @return[2] nil, message (e.g. with why it did not get ready), errno
function M.restart(name, host, service)
  checkname("restart", "name", name, 2)
  check.string("restart", "host", host, 2)
  check.string("restart", "service", service, 2)
  return require("isle.lab.services").restart_by_name(name, host, service)
end

--- How to enter a host of a running lab: THE one place that knows where a
-- host's namespaces are kept (every way onto a host uses it: `lab:spawn`,
-- `isle exec`, `isle shell`, containers with `net = "LAB:HOST"`).
-- @string lab the lab's name
-- @string host the host's name
-- @treturn[1] table `{join = {net = path, uts = path, mnt = path, time =
-- path|nil}, netns = "LAB-HOST", hostname = name}`: `join` as in
-- `isle.spawn` (`mnt` is the host's filesystem; a process that needs
-- mounts of its own adds a new `mnt` namespace: a copy of it), `netns`
-- the named network namespace (`ip netns exec NAME` works too)
-- @return[2] nil
-- @treturn[2] string message, e.g. `lab demo: no host 'h9'`
-- @treturn[2] int errno
function M.host_entry(lab, host)
  checkname("host_entry", "lab", lab, 2)
  checkname("host_entry", "host", host, 2)
  return journal.host_entry(lab, host)
end

M._checkname, M._check_spec = checkname, check_spec
return M
