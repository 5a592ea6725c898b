--- Named containers, docker's lifecycle: `open`, `list`, `detach` (`isle
-- run -d`: a monitor process runs the container, its stdout and stderr go
-- to a log, its exit status is recorded), and the methods of a Container
-- that has a name: `status`, `logs`, `rm`, `info`. The state is the
-- registry's journal (`isle.container.registry`). Installed into
-- `isle.container` by its init.lua.
-- @module isle.container.named
local core = require "isle.core"
local process = require "isle.process"
local plan = require "isle.container.plan"
local registry = require("isle._sys").lazy "isle.container.registry"

local M = {}

local type, pairs, ipairs, tostring, setmetatable = type, pairs, ipairs, tostring, setmetatable
local format = string.format

local SIGNALS = { HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10, USR2 = 12, TERM = 15,
  CONT = 18, STOP = 19, WINCH = 28 }

--- A spec as Lua text (plain data: strings, numbers, booleans, tables).
local function serialize(v)
  local t = type(v)
  if t == "string" then
    return format("%q", v)
  elseif math.type(v) == "integer" then
    return format("%d", v)
  elseif t == "number" then
    return format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    local out = {}
    for k, x in pairs(v) do
      out[#out + 1] = format("[%s] = %s", serialize(k), serialize(x))
    end
    return "{" .. table.concat(out, ", ") .. "}"
  end
  error("cannot pass a " .. t .. " to the monitor")
end

local NETS = { none = function() return nil end, host = function() return "host" end,
  lab = function(n) return n.lab .. ":" .. n.host end,
  netns = function(n) return n.name end, path = function(n) return n.path end }

-- isle.container's module table, its Container class and its hooks
-- ({run =, machine =}): set once by `install`.
local container, Container, hooks
local api, methods = {}, {}

--- Open a named container (one started with `name`, here or by another
-- process, running or ended): a `Container` whose `pid` is nil when it no
-- longer runs.
-- @string name
-- @treturn[1] Container
-- @return[2] nil, message, errno (`container: no container named 'x'`)
function api.open(name)
  registry.checkname("open", name, 2)
  local st, msg, e = registry.load(name)
  if not st then
    return nil, "container: " .. msg, e
  end
  local c = setmetatable({ name = name, rootless = st.rootless, _caps = st.caps,
    _nnp = st.no_new_privs, _env = st.env, _privileged = st.privileged, _user = st.user,
    cgroups = {} }, Container)
  for _, d in ipairs(st.cgroups) do
    c.cgroups[#c.cgroups + 1] = { dir = d }
  end
  if st.running then
    local box = core.pidfd_open(st.pid[1])
    if box and registry.alive(st.pid[1], st.pid[2]) then
      c.pid, c._pidfd = st.pid[1], box
    elseif box then
      box:close()
    end
  end
  return c
end

--- Names of the named containers (running, ended, or left by a crash),
-- sorted.
-- @treturn {string,...}
function api.list()
  return registry.list()
end

function methods:_kill_other(sig)
  sig = sig or "TERM"
  local n = math.type(sig) == "integer" and sig
    or type(sig) == "string" and SIGNALS[sig:upper():gsub("^SIG", "")]
  if not n then
    error("bad argument #1 to 'kill' (signal number or name expected)", 3)
  end
  if not self._pidfd then
    return nil, format("kill %s: No such process", self.name), 3
  end
  return core.pidfd_kill(self._pidfd:fd(), n)
end

--- wait() of a container another process runs: until its PID 1 has
-- ended, then until its owner has recorded the end (or removed the state);
-- the status as recorded (a state left by a crash: nil, "dead").
function methods:_wait_other()
  if self._pidfd then
    core.pidfd_wait(self._pidfd:fd())
    self._pidfd:close()
    self._pidfd, self.pid = nil, nil
  end
  local st = registry.load(self.name)
  if st and st.owned then -- it records the end, then exits
    local box = core.pidfd_open(st.owner[1])
    if box then
      core.pidfd_wait(box:fd(), 10)
      box:close()
    end
    st = registry.load(self.name)
  end
  local x = st and st.exit
  if not x then
    return nil, st and "dead" or "removed"
  end
  local ok = x.code == 0 and x.how == "exit" or nil
  return ok, x.how, x.code, x.oom and "oom" or nil
end

--- The state of a named container: `{name =, state = "running" |
-- "exited" | "dead" | "starting", pid =, exit = {code =, how =, oom =,
-- time =} | nil, started = epoch, argv =, hostname =, ...}` (what `isle
-- inspect` prints), or nil, msg, errno.
function methods:status()
  if not self.name then
    error("status: the container has no name", 2)
  end
  local st, msg, e = registry.load(self.name)
  if not st then
    return nil, "container: " .. msg, e
  end
  return {
    name = st.name, state = registry.state(st), pid = st.pid and st.pid[1], exit = st.exit,
    started = st.started, argv = st.argv, hostname = st.env and st.env.HOSTNAME,
    env = st.env, caps = st.caps or "all", no_new_privs = st.no_new_privs,
    rootless = st.rootless, privileged = st.privileged, user = st.user, keep = st.keep,
    cgroups = st.cgroups, dir = st.dir, log = core.ino(st.dir .. "/log") and st.dir .. "/log"
      or nil,
  }
end

--- The output of a detached container (its log): all of it, or its last
-- `n` lines; `offset`: from that byte on (for following it). Returns the
-- text and the offset of its end; nil, msg, errno when it has no log.
function methods:logs(n, offset)
  if not self.name then
    error("logs: the container has no name", 2)
  end
  local st, msg, e = registry.load(self.name)
  if not st then
    return nil, "container: " .. msg, e
  end
  local text, _
  text, _, e = core.readfile(st.dir .. "/log")
  if not text then
    return nil, format("container: %s has no log (only a detached container has one)",
      self.name), e
  end
  local size = #text
  if offset then
    text = text:sub(offset + 1)
  end
  if n then
    local lines, pos = 0, #text
    if text:sub(-1) == "\n" then
      pos = pos - 1
    end
    while pos > 0 do
      if text:sub(pos, pos) == "\n" then
        lines = lines + 1
        if lines == n then
          break
        end
      end
      pos = pos - 1
    end
    text = n == 0 and "" or text:sub(pos + 1)
  end
  return text, size
end

--- Follow the log: call `write(text)` with the last `n` lines (all
-- with nil) and then with what comes, until the container has ended and
-- its owner has recorded the end (so the log is complete: its relay is
-- done by then). The file is read again every `every` seconds (0.2 by
-- default) and at once when the container or its owner ends. true, or
-- nil, msg, errno.
function methods:follow(write, n, every)
  local text, size, e = self:logs(n)
  if not text then
    return nil, size, e
  end
  write(text)
  local owner -- a pidfd box of the owner, once the container has ended
  while true do
    local st = registry.load(self.name)
    local done = not st or st.exit or not (st.running or st.owned)
    if not done then
      if st.running and self._pidfd then
        core.pidfd_wait(self._pidfd:fd(), every or 0.2)
      else
        owner = owner or core.pidfd_open(st.owner[1])
        if owner then
          core.pidfd_wait(owner:fd(), every or 0.2)
        end
      end
    end
    local more, now = self:logs(nil, size)
    if more and #more > 0 then
      write(more)
      size = now
    end
    if done then
      break
    end
  end
  if owner then
    owner:close()
  end
  return true
end

--- Remove a named container's state (its log, its exit status); a
-- running one only with `force` (then it is killed first).
-- @tparam[opt] boolean force
-- @treturn[1] true
-- @return[2] nil, message, errno
function methods:rm(force)
  if not self.name then
    error("rm: the container has no name", 2)
  end
  local st, msg, e = registry.load(self.name)
  if not st then
    return nil, "container: " .. msg, e
  end
  local state = registry.state(st)
  if (state == "running" or state == "starting") and not force then
    return nil, format("container: %s is %s (stop it first, or rm -f)", self.name, state),
      16 -- EBUSY
  end
  local ok
  ok, msg, e = registry.remove(st)
  if not ok then
    return nil, "container: " .. msg, e
  end
  return true
end

--- Start a named container in the background: a monitor (a new isle
-- process: this interpreter, in a session of its own, not the caller's
-- child) runs it with its stdout and stderr appended to a log (see
-- `Container:logs`), waits for its end and records its exit status (its
-- state stays until `rm`; with `keep = false` it goes at the end).
-- `isle run -d`.
-- @tparam table spec as for `run`, with `name`; no `tty`, no stdio
-- @treturn[1] int the container's PID 1
-- @return[2] nil, message, errno
function api.detach(spec)
  spec = container._absolute(spec)
  local c = plan.check("detach", spec, 2)
  if not c.name then
    error("bad argument #1 to 'detach' (name: a detached container needs a name)", 2)
  end
  if c.tty or spec.stdin or spec.stdout or spec.stderr then
    error("bad argument #1 to 'detach' (a detached container has no terminal or stdio)", 2)
  end
  local s = {}
  for k, v in pairs(spec) do
    s[k] = v
  end
  s.net = NETS[c.net.kind](c.net)
  if s.keep == nil then
    s.keep = true
  end
  local exe, msg, e = core.readlink("/proc/self/exe")
  if not exe then
    return nil, "container: monitor: " .. msg, e
  end
  local boot = format("package.path = %q package.cpath = %q "
    .. "require('isle.container')._monitor()", package.path, package.cpath)
  local p
  p, msg, e = process.spawn { argv = { exe, "-e", boot }, stdin = "pipe", stdout = "pipe",
    stderr = "null" }
  if not p then
    return nil, "container: monitor: " .. msg, e
  end
  p.stdin:write(serialize(s))
  p.stdin:close()
  local line = p.stdout:read("l")
  p:wait()
  p:close()
  local pid = line and math.tointeger(tonumber(line:match("^ok (%d+)$")))
  if pid then
    return pid
  end
  local en, text = (line or ""):match("^fail (%d+) (.*)$")
  return nil, text or "container: the monitor ended without a word",
    math.tointeger(tonumber(en)) or 5
end

--- The monitor of `detach` (run by the new interpreter): reads the spec
-- on stdin, forks the real monitor off (so that it is nobody's child),
-- which runs the container, says "ok PID" or "fail ERRNO MSG" on stdout,
-- waits and records the end. (internal)
function api._monitor()
  local spec = load("return " .. io.read("a"), "=spec", "t", {})()
  spec.stdin = "null"
  local p, msg, e = process.spawn { stdin = "null", stderr = "null", fn = function()
    core.setsid()
    local c, m2, e2 = hooks.run(plan.check("run", spec, 1), true)
    if not c then
      io.stdout:write(format("fail %d %s\n", e2 or 5, m2))
      return 1
    end
    io.stdout:write(format("ok %d\n", c.pid))
    io.stdout:flush()
    c:wait()
    return 0
  end }
  if not p then
    io.stdout:write(format("fail %d container: monitor: %s\n", e or 5, msg))
  end
  os.exit(0)
end

--- Add the functions of named containers to `container_` (open, list,
-- detach, _monitor) and their methods to `Container_` (status, logs,
-- follow, rm, and the waits and kills of a container of another process).
function M.install(container_, Container_, hooks_)
  container, Container, hooks = container_, Container_, hooks_
  for k, f in pairs(api) do
    container[k] = f
  end
  for k, f in pairs(methods) do
    Container[k] = f
  end
end

return M
