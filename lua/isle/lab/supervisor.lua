--- A lab's supervisor: the process that runs a lab's services, started by
-- `up` after the wiring and ended by `down`, like every process of the
-- lab (it lives in the lab's own network namespace, where the switches
-- are, so that `down` finds it first).
--
-- It starts each service once those it names in `after` are ready (the
-- others at once, in parallel), with its output appended to its log;
-- probes readiness (`ready`) until the service's timeout; reports to
-- `up` on its standard output (`ready`, or `fail HOST NAME why`); then
-- watches: it is the services' parent and reaper, restarts those with
-- `restart = "on-failure"` (at most `restart_limit` times, with a growing
-- pause), and keeps the status file (`isle ps`). Requests come through
-- the lab's control FIFO (`restart HOST NAME REPLY-FIFO`, from `isle
-- restart`; `reload model|model.prev REPLY-FIFO`, from `apply` and its
-- undoing: the services of that model file, those gone stopped, new ones
-- started, changed ones restarted; `quit - REPLY-FIFO`: every service
-- stopped, then exit).
--
-- It runs as a Lua program of its own: `lua -e` with `ISLE_SUPERVISE=LAB`
-- (see `isle.lab.services.start`), which first detaches a copy of itself
-- (a new session, not a child of `up`) and exits.
-- @module isle.lab.supervisor
local core = require "isle.core"
local sys = require "isle._sys"
local ns = require "isle.ns"
local journal = require "isle.lab.journal"
local paths = require "isle.lab.services"
local same = require("isle.lab.same").same

local M = {}

local ipairs, pairs, format, concat = ipairs, pairs, string.format, table.concat

local PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
--- Seconds between TERM and KILL when a service is stopped.
M.GRACE = 3
local PROBE_FIRST, PROBE_MAX = 0.02, 0.5
local BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5

local Sup = {}
Sup.__index = Sup
local services -- the services of a model (below)

local function now()
  return core.clock("monotonic")
end

-- -------------------------------------------------------------------------
-- the log and the status file

local function note(s, fmt, ...)
  local f = core.fopen(s.log, "a")
  if f then
    f:write(format("isle: %s: ", os.date("%H:%M:%S")), format(fmt, ...), "\n")
    f:close()
  end
end

function Sup:save()
  local lines = { format("supervisor\t%d", sys.getpid()) }
  for _, s in ipairs(self.list) do
    lines[#lines + 1] = concat({ s.host, s.name, tostring(s.proc and s.proc.pid or 0), s.state,
      tostring(s.restarts), format("%.3f", s.since), s.why or "" }, "\t")
  end
  local tmp = self.status .. ".new"
  if sys.writefile(tmp, concat(lines, "\n") .. "\n") then
    os.rename(tmp, self.status)
  end
  self.dirty = false
end

function Sup:set(s, state, why)
  s.state, s.why, s.since = state, why, core.clock("realtime")
  self.dirty = true
end

-- Answer a pending request about s (restart), once.
local function answer(s, text)
  if s.reply then
    local box, fd = core.open_fifo(s.reply, "w")
    if box then
      core.write_fd(fd, text .. "\n")
      box:close()
    end
    s.reply = nil
  end
end

-- -------------------------------------------------------------------------
-- inside a host

-- Run fn() in host h's mount namespace; back in ours after.
function Sup:in_host(s, fn)
  local ok, msg, e = ns.setns(s.entry.join.mnt, "mnt")
  if not ok then return nil, msg, e end
  local r1, r2, r3 = fn()
  ok, msg = ns.setns(self.home, "mnt")
  if not ok then error("supervisor: back to its own filesystem: " .. msg, 0) end
  return r1, r2, r3
end

local function env_of(s)
  local env = { PATH = PATH, HOSTNAME = s.hostname }
  for k, v in pairs(s.env or {}) do env[k] = v end
  return env
end

-- -------------------------------------------------------------------------
-- starting, probing, stopping

function Sup:start(s)
  if s.ready and s.ready.file then -- a stale one would pass at once
    self:in_host(s, function() return os.remove(s.ready.file) end)
  end
  s.starts = s.starts + 1
  local log, msg = core.fopen(s.log, "a")
  local p
  if log then
    local spec = { argv = s.argv, join = s.entry.join, cwd = s.cwd or "/", env = env_of(s),
      stdin = "null", stdout = log, stderr = log, user = s.user }
    local ok, r1, r2 = pcall(require("isle.process").spawn, spec)
    if ok then p, msg = r1, r2 else msg = tostring(r1) end
    log:close()
  end
  if not p then
    note(s, "could not start: %s", tostring(msg))
    return self:ended(s, "could not start: " .. tostring(msg), true)
  end
  s.proc = p
  s.deadline = now() + s.timeout
  s.next_probe, s.probe_gap = now(), PROBE_FIRST
  note(s, "started %s (pid %d)", concat(s.argv, " "), p.pid)
  self:set(s, "starting")
end

-- One readiness check that answers at once; for argv, a probe process
-- (its end is watched: see probed).
function Sup:probe(s)
  local r = s.ready
  if not r then return true end
  if r.file then
    return self:in_host(s, function() return core.lstat(r.file) ~= nil end)
  elseif r.port then
    for _, a in ipairs(s.addrs) do
      if core.tcp_probe(s.entry.join.net, a, r.port, 0.2) then return true end
    end
    return false
  end
  if not s.probe then
    s.probe = require("isle.process").spawn { argv = r.argv, join = s.entry.join, cwd = "/",
      env = env_of(s), stdin = "null", stdout = "null", stderr = "null" }
  end
  return false
end

function Sup:ready(s)
  s.deadline = nil
  note(s, "ready")
  self:set(s, "running")
  self:save() -- what the requester reads next
  answer(s, "ok " .. s.proc.pid)
end

-- TERM now, KILL after the grace period (see tick); `reason` says what
-- follows its end: "restart", "stop" or "timeout" (a failure).
function Sup:stop(s, reason)
  s.stopping, s.kill_at = reason, now() + M.GRACE
  s.deadline = nil
  s.proc:kill("TERM")
  self:set(s, "stopping", s.why)
end

-- Service s is over (`why`; `failed`): restarted after a pause when its
-- policy says so, else in its final state (and a waiting requester told).
function Sup:ended(s, why, failed)
  if failed and s.restart == "on-failure" and s.restarts < s.restart_limit then
    s.restarts = s.restarts + 1
    s.start_at = now() + math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ^ (s.restarts - 1))
    return self:set(s, "backoff", why)
  end
  self:set(s, failed and "failed" or "exited", why)
  self:save()
  answer(s, "fail " .. why)
end

-- The process of service s ended: why, and what follows.
function Sup:reap(s)
  local ok, how, code = s.proc:poll()
  if ok == nil and how == nil then return end
  if s.probe then
    s.probe:kill("KILL")
    s.probe:wait()
    s.probe:close()
    s.probe = nil
  end
  local why = how == "signal" and format("killed by signal %d", code)
    or format("exited with status %d", code)
  note(s, "%s", why)
  s.proc:close()
  s.proc = nil
  local reason, starting = s.stopping, s.state == "starting"
  s.stopping, s.kill_at = nil, nil
  if reason == "restart" then
    return self:start(s)
  elseif reason == "stop" then
    return self:set(s, "stopped", why)
  elseif reason == "timeout" then
    return self:ended(s, format("not ready after %g s", s.timeout), true)
  end
  self:ended(s, starting and why .. " before it was ready" or why, starting or not ok)
end

-- A probe process ended: ready when it exited 0.
function Sup:probed(s)
  local ok, how = s.probe:poll()
  if ok == nil and how == nil then return end
  s.probe:close()
  s.probe = nil
  if ok and s.state == "starting" then self:ready(s) end
end

-- -------------------------------------------------------------------------
-- the loop

-- Whether service s may start: all it waits for runs.
function Sup:may_start(s)
  for _, d in ipairs(s.after) do
    if self.by[s.host .. "/" .. d].state ~= "running" then return false end
  end
  return true
end

-- Start what may start, probe what is starting, enforce deadlines.
function Sup:tick()
  local t = now()
  for _, s in ipairs(self.list) do
    if s.state == "waiting" and self:may_start(s) then
      self:start(s)
    elseif s.state == "backoff" and t >= s.start_at then
      s.start_at = nil
      self:start(s)
    elseif s.state == "stopping" and s.kill_at and t >= s.kill_at then
      s.proc:kill("KILL")
      s.kill_at = nil
    elseif s.state == "starting" and t >= s.next_probe then
      if self:probe(s) then
        self:ready(s)
      elseif t >= s.deadline then
        note(s, "not ready after %g s: stopping it", s.timeout)
        self:stop(s, "timeout")
      else
        s.next_probe = t + s.probe_gap
        s.probe_gap = math.min(PROBE_MAX, s.probe_gap * 1.5)
      end
    end
  end
end

-- Seconds until the next thing to do, and the descriptors to watch.
function Sup:waits()
  local wake = math.huge
  local fds, who = { self.ctl_fd }, {}
  for _, s in ipairs(self.list) do
    for _, p in ipairs { s.proc or false, s.probe or false } do
      if p then
        fds[#fds + 1] = p.pidfd
        who[p.pidfd] = s
      end
    end
    local at = (s.state == "starting" and s.next_probe) or s.start_at or s.kill_at
    if at then wake = math.min(wake, at) end
  end
  if wake == math.huge then return nil, fds, who end
  return math.max(0, wake - now()), fds, who
end

function Sup:loop()
  while true do
    self:tick()
    self:settle()
    self:report()
    if self.dirty then self:save() end
    local wait, fds, who = self:waits()
    for _, fd in ipairs(core.poll(fds, wait) or {}) do
      local s = who[fd]
      if fd == self.ctl_fd then
        self:requests()
      elseif s and s.probe and s.probe.pidfd == fd then
        self:probed(s)
      elseif s and s.proc and s.proc.pidfd == fd then
        self:reap(s)
      end
    end
  end
end

-- -------------------------------------------------------------------------
-- talking to up and to isle restart

-- The first report to up: ready once every service runs (or ran and
-- exited 0 after it was ready); the first failure else.
function Sup:report()
  if not self.up then return end
  local line
  for _, s in ipairs(self.list) do
    if s.state == "failed" then
      line = format("fail %s %s %s", s.host, s.name, (s.why or "failed"):gsub("\n", " "))
      break
    end
  end
  if not line then
    for _, s in ipairs(self.list) do
      if s.state ~= "running" and s.state ~= "exited" then return end
    end
    line = "ready"
  end
  core.write_fd(self.up, line .. "\n")
  self.up = nil
end

-- Answer on FIFO `reply` (a requester's: `reply.PID` of the lab) at once.
local function tell(lab, reply, text)
  if not paths.own_reply(lab, reply) then return end
  local box, fd = core.open_fifo(reply, "w")
  if box then
    core.write_fd(fd, text .. "\n")
    box:close()
  end
end

local DEF_KEYS = { "argv", "env", "cwd", "user", "ready", "timeout", "restart",
  "restart_limit", "after", "entry", "addrs", "hostname", "def" }

-- Reload the services from model `file` ("model" or "model.prev": an
-- apply, or its undoing): those no longer declared stop and go, new ones
-- start, changed ones restart with their new definition; `reply` is
-- answered once they all run (`ok`) or one failed (`fail HOST NAME why`).
function Sup:reload(file, reply)
  local model = (file == "model" or file == "model.prev") and journal.read_model(self.lab, file)
  local list, by = nil, "no model " .. tostring(file)
  if model then list, by = services(self.lab, model) end
  if not list then return tell(self.lab, reply, "fail - - " .. tostring(by)) end
  local wait, keep = {}, {}
  for _, n in ipairs(list) do
    local k = n.host .. "/" .. n.name
    local s = self.by[k]
    if not s then
      s = n
      wait[#wait + 1] = s
    elseif same(s.def, n.def) then
      s.entry = n.entry -- (a new time namespace: its next start enters it)
    else
      for _, key in ipairs(DEF_KEYS) do s[key] = n[key] end
      s.restarts, s.drop = 0, nil
      wait[#wait + 1] = s
      if s.proc then
        self:stop(s, "restart")
      elseif s.state ~= "waiting" then
        s.start_at = nil
        self:start(s)
      end
    end
    keep[#keep + 1], by[k] = s, s
  end
  for _, s in ipairs(self.list) do
    if not by[s.host .. "/" .. s.name] then
      s.drop = true
      if s.proc and s.stopping ~= "stop" then self:stop(s, "stop") end
      if s.proc then keep[#keep + 1] = s end -- until it ends
    end
  end
  self.list, self.by = keep, by
  self.dirty = true
  self.pending = { reply = reply, wait = wait }
end

-- Stop every service, then exit (the undoing of the apply that started
-- this supervisor).
function Sup:quit(reply)
  for _, s in ipairs(self.list) do
    s.drop = true
    if s.proc and s.stopping ~= "stop" then self:stop(s, "stop") end
  end
  self.pending = { reply = reply, wait = {}, quit = true }
end

-- Drop the services that went and have ended; answer a pending reload.
function Sup:settle()
  local keep = {}
  for _, s in ipairs(self.list) do
    if not (s.drop and not s.proc) then keep[#keep + 1] = s end
  end
  if #keep ~= #self.list then
    self.list, self.dirty = keep, true
  end
  local p = self.pending
  if not p then return end
  for _, s in ipairs(p.wait) do
    if s.state == "failed" then
      self.pending = nil
      return tell(self.lab, p.reply, format("fail %s %s %s", s.host, s.name,
        (s.why or "failed"):gsub("\n", " ")))
    end
  end
  for _, s in ipairs(p.wait) do
    if s.state ~= "running" and s.state ~= "exited" then return end
  end
  for _, s in ipairs(self.list) do
    if s.drop then return end
  end
  self.pending = nil
  if p.quit then
    os.remove(self.status)
    tell(self.lab, p.reply, "ok")
    os.exit(0)
  end
  self:save()
  tell(self.lab, p.reply, "ok")
end

function Sup:requests()
  local data = core.read_now(self.ctl_fd) or ""
  for line in data:gmatch("[^\n]+") do
    local what, file, back = line:match("^(%S+) (%S+) (%S+)$")
    if what == "reload" then
      self:reload(file, back)
    elseif what == "quit" and file == "-" then
      self:quit(back)
    end
    local verb, host, name, reply = line:match("^(%S+) (%S+) (%S+) (%S+)$")
    local s = verb == "restart" and self.by[host .. "/" .. name]
    if s and paths.own_reply(self.lab, reply) then
      s.reply = reply
      s.restarts = 0
      if s.proc then
        self:stop(s, "restart")
      elseif s.state ~= "waiting" then
        s.start_at = nil
        self:start(s)
      end
    elseif reply and paths.own_reply(self.lab, reply) then
      local box, fd = core.open_fifo(reply, "w")
      if box then
        core.write_fd(fd, "fail no such service\n")
        box:close()
      end
    end
  end
end

-- -------------------------------------------------------------------------
-- setting up

-- The services of lab `name` from its model, with how to enter their host.
function services(name, model)
  local hosts = {}
  for _, h in ipairs(model.hosts) do hosts[h.name] = h end
  local list, by = {}, {}
  for _, o in ipairs(model.services or {}) do
    local s = { def = o }
    for k, v in pairs(o) do s[k] = v end
    local h = hosts[o.host]
    local entry, why = journal.host_entry(name, o.host)
    if not (h and entry) then return nil, why or "no host " .. tostring(o.host) end
    s.entry = entry
    s.hostname = h.hostname
    s.addrs = { "127.0.0.1", "::1" }
    for _, iface in ipairs(h.ifaces) do
      for _, a in ipairs(iface.ips) do s.addrs[#s.addrs + 1] = a:match("^[^/]+") end
    end
    s.log = paths.log(name, o.host, o.name)
    s.state, s.starts, s.restarts, s.since = "waiting", 0, 0, core.clock("realtime")
    list[#list + 1] = s
    by[o.host .. "/" .. o.name] = s
  end
  return list, by
end

--- The supervisor of lab `name` (its model must be written), reporting
-- to `up` on descriptor 1.
function M.run(name)
  core.setsid()
  core.chdir("/")
  local model = assert(journal.read_model(name), "supervisor: no model")
  local self = setmetatable({ lab = name, up = 1, status = paths.status(name) }, Sup)
  self.list, self.by = services(name, model)
  assert(self.list, self.by)
  self.home = assert(ns.open_ns("/proc/self/ns/mnt", "mnt"))
  self.ctl_box, self.ctl_fd = assert(core.open_fifo(paths.ctl(name), "r"))
  self.dirty = true
  return self:loop()
end

--- The program's entry (`lua -e "require'isle.lab.supervisor'.main()"`):
-- with ISLE_SUPERVISE_DETACH set, start the real supervisor (not our
-- child: a new session) and exit.
function M.main()
  local name = os.getenv("ISLE_SUPERVISE")
  if os.getenv("ISLE_SUPERVISE_DETACH") then
    local p, msg = paths.spawn_supervisor(name, false)
    if not p then
      io.stderr:write("isle: supervisor: ", tostring(msg), "\n")
      os.exit(1)
    end
    os.exit(0)
  end
  local ok, err = pcall(M.run, name)
  io.stderr:write("isle: supervisor of lab ", tostring(name), ": ", tostring(err), "\n")
  os.exit(ok and 0 or 1)
end

return M
