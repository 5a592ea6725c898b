--- Containers: `isle.container.run(spec)` and the `Container` object.
--
-- A container is one `isle.spawn` in new pid, mnt, uts, ipc, net and cgroup
-- namespaces (plus user when `rootless`), with the small init of the core
-- as PID 1. `isle.container.plan` compiles the spec into the steps the
-- spawn engine's C child runs (the new root, `/proc`, `/dev`, `/sys`, the
-- mounts, pivot_root, `lo`, the terminal); cgroups come from
-- `isle.container.cgroup`, named containers' state from
-- `isle.container.registry`. A failure in any step comes back as
-- `nil, "container: <step>: <strerror>", errno` with nothing left behind.
-- Nothing mounted for the container shows in the machine's mount table.
-- @module isle.container
local core = require "isle.core"
local sys = require "isle._sys"
local process = require "isle.process"
local plan = require "isle.container.plan"
local cgroup = require "isle.container.cgroup"
local rootless = require "isle.container.rootless"
local registry = require "isle.container.registry"

local M = {}

local type, pairs, ipairs, error, setmetatable = type, pairs, ipairs, error, setmetatable
local tostring = tostring
local format = string.format

M.DEFAULT_CAPS = plan.DEFAULT_CAPS
M.DEVICES = plan.DEVICES

--- Bytes of a size: a positive integer, or a string like "64m", "1.5G",
-- "512k"; nil when it is not one.
-- @function bytes
M.bytes = plan.bytes

local last_cap, argarea -- this kernel's, this process's: read once

--- The machine, as `plan.compile` reads it.
local function machine()
  local uid = core.ids()
  if not last_cap then
    last_cap = math.tointeger(tonumber((core.readfile("/proc/sys/kernel/cap_last_cap") or "40")
      :match("%d+"))) or 40
    local a1, a2, a3, a4 = core.argarea()
    argarea = a1 and { a1, a2, a3, a4 } or false
  end
  return {
    exists = sys.exists,
    isdir = function(path)
      local st = core.lstat(path)
      if st and st.type == "link" then
        st = core.ino(path .. "/.") and { type = "dir" } or nil
      end
      return st == nil or st.type == "dir"
    end,
    kind = function(path)
      local st = core.lstat(path)
      return st and (st.type == "dir" and "dir" or st.type == "link" and "link" or "file")
    end,
    readlink = function(path)
      return (core.readlink(path))
    end,
    listdir = sys.listdir,
    read = function(path)
      return (core.readfile(path))
    end,
    getenv = os.getenv,
    ids = core.ids,
    host_entry = function(lab, host)
      return require("isle.lab").host_entry(lab, host)
    end,
    helpers = uid ~= 0 and M._in_path("newuidmap") and M._in_path("newgidmap"),
    last_cap = function()
      return last_cap
    end,
    argarea = function()
      return argarea or nil
    end,
    seccomp = core.seccomp_bpf,
    seccomp_key = core.seccomp_key,
  }
end

--- Is `prog` an executable file in $PATH?
function M._in_path(prog)
  for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
    if core.ino(dir .. "/" .. prog) then
      return true
    end
  end
  return false
end

local function close_all(boxes)
  for _, b in ipairs(boxes or {}) do
    b:close()
  end
end

--- With `tty`: the socket pair the child's pty step sends the terminal's
-- master over. Returns the parent's box and the ctx.pty table, the child's
-- box added to `boxes`; false without tty; nil, msg, errno on failure.
local function tty_socket(tty, boxes)
  if not tty then
    return false
  end
  local a, b, _, bfd = core.socketpair()
  if not a then
    return nil, "container: " .. b, _
  end
  boxes[#boxes + 1] = b
  local rows, cols = core.winsize(0) -- nil, msg, errno when 0 is no terminal
  return a, { fd = bfd, rows = rows, cols = rows and cols or nil }
end

--- Spawn `pspec`; close the child's ends; with a terminal socket, receive
-- the master. The Process and the master box (nil without tty), or nil,
-- msg, errno with no process left.
local function start(pspec, boxes, sock)
  local p, msg, e = process._spawn(pspec, "container")
  close_all(boxes)
  if not p then
    if sock then
      sock:close()
    end
    return nil, msg, e
  end
  local master
  if sock then
    master, msg, e = core.recv_fd(sock)
    sock:close()
    if not master then
      p:kill("KILL")
      p:wait()
      p:close()
      return nil, "container: terminal: " .. msg, e
    end
  end
  return p, master
end

-- --- Container ------------------------------------------------------------------

local Container = {}
Container.__index = Container
Container.__name = "isle.Container"

function Container.__tostring(c)
  return format("isle.Container (%s, pid %s%s)", c.name or "-", tostring(c.pid),
    c.status and ", ended" or "")
end

local counter = 0

--- Make the cgroups of `c.limits`, recorded in `journal` (when named).
-- Returns the groups, the boxes and fds of their cgroup.procs, or nil, msg,
-- errno (then every group made is removed, or left to the journal).
local function make_cgroups(c, journal)
  counter = counter + 1
  local leaf = format("isle-%s-%d-%d", c.name or "c", sys.getpid(), counter)
  local made = {}
  local groups, msg, e = cgroup.create(c.limits, leaf, function(dir)
    made[#made + 1] = dir
    if journal then
      return journal:record("cgroup", dir)
    end
    return true
  end)
  local boxes, fds
  if groups then
    boxes, fds, e = cgroup.open_procs(groups)
    msg = fds
  end
  if not boxes then
    cgroup.remove(made)
    return nil, "container: " .. msg, e
  end
  return groups, boxes, fds
end

--- Start the container of the checked spec `c`, recorded in `journal` when
-- named. The Container, or nil, msg, errno with nothing left.
local function launch(c, journal)
  local m = machine()
  local pspec, info, e = plan.compile(c, m)
  if not pspec then
    return nil, info, e
  end
  if journal then
    local ok, msg, e2 = journal:exec(c.caps, c.no_new_privs, c.rootless, info.env)
    if not ok then
      return nil, "container: " .. msg, e2
    end
  end
  local groups, boxes, fds
  if c.limits then
    groups, boxes, fds = make_cgroups(c, journal)
    if not groups then
      return nil, boxes, fds
    end
  end
  boxes = boxes or {}
  local sock, pty, e0 = tty_socket(c.tty, boxes)
  if sock == nil then
    close_all(boxes)
    cgroup.remove(groups)
    return nil, pty, e0
  end
  plan.attach(pspec, { cgroup = groups and groups[1].dir,
    cgroup_fds = fds and { table.unpack(fds, 2) }, pty = pty or nil })
  local p, master
  p, master, e = start(pspec, boxes, sock or nil)
  if not p then
    cgroup.remove(groups)
    return nil, rootless.explain(master, e, c.rootless, core.ids(), m.read), e
  end
  if journal then
    local ok, msg, e2 = journal:record("pid", p.pid, registry.starttime(p.pid))
    if not ok then -- a container nobody could find again: not started
      p:kill("KILL")
      p:wait()
      p:close()
      close_all({ master })
      cgroup.remove(groups)
      return nil, "container: " .. msg, e2
    end
  end
  return setmetatable({
    pid = p.pid, process = p, name = c.name, cgroups = groups, rootless = c.rootless,
    tty = c.tty, _master = master, _caps = c.caps, _nnp = c.no_new_privs, _env = info.env,
    _privileged = c.privileged, _user = c.user,
  }, Container)
end

--- Start a container.
-- @tparam table spec
-- @tparam {string,...} spec.argv the command (looked up in the container's `PATH`)
-- @tparam[opt] string spec.rootfs a directory to use as `/` (default: the
--   machine's `/`, read-only)
-- @tparam[opt] boolean spec.readonly make the root read-only (default: true
--   for the machine's `/`, false for a `rootfs`)
-- @tparam[opt] string spec.hostname (default: `name` or "isle")
-- @param[opt] spec.net `"none"` (default: a new netns with `lo` up), `"host"`,
--   a `Netns`, a netns name or path, `"LAB:HOST"` or a lab host
-- @tparam[opt] table spec.mounts extra mount steps (as in `isle.mount`; targets
--   inside the container, bind sources on the machine)
-- @tparam[opt] table spec.env variables added to a minimal environment
--   (PATH, HOME, HOSTNAME, TERM with `tty`); `false` removes one
-- @tparam[opt] string spec.cwd working directory inside the container ("/")
-- @tparam[opt] table spec.limits `{memory = bytes|"64m", pids = n, cpu = cpus}`
-- @tparam[opt] boolean spec.tty give the command a new pseudo-terminal as
--   stdio and controlling terminal (see `Container:attach`)
-- @tparam[opt] boolean spec.rootless map the caller's uid/gid to 0 in a new
--   user namespace
-- @tparam[opt=true] boolean spec.init the core's small init as PID 1
-- @param[opt] spec.caps capability names to keep (default: docker's set,
--   `DEFAULT_CAPS`), or "all"
-- @tparam[opt=true] boolean spec.no_new_privs
-- @param[opt] spec.stdin as in `isle.spawn` (also stdout, stderr)
-- @tparam[opt] string spec.name a name: the container is registered (see
--   `open`, `list`) until `wait` has seen its end; also the hostname's default
-- @treturn[1] Container
-- @return[2] nil
-- @treturn[2] string message, e.g. `container: exec foo: No such file or directory`
-- @treturn[2] int errno
-- @usage local c = assert(isle.container.run{argv = {"hostname"}, hostname = "box"})
-- print(c:wait())
function M.run(spec)
  local c = plan.check("run", spec, 2)
  if not c.name then
    return launch(c)
  end
  local journal, msg, e = registry.claim(c.name)
  if not journal then
    return nil, "container: " .. msg, e
  end
  local ctr
  ctr, msg, e = launch(c, journal)
  journal:close()
  if not ctr then
    registry.remove(registry.load(c.name) or { cgroups = {}, dir = journal.dir })
    return nil, msg, e
  end
  return ctr
end

--- Check a `run` spec without running it; raises naming the mistake.
-- @tparam table spec as for `run`
-- @treturn true
function M.check(spec)
  plan.check("run", spec, 2)
  return true
end

--- Wait for the container's end (its PID 1), remove its cgroups (and its
-- registration).
-- @treturn[1] true|nil as `os.execute`: true when the command exited with 0
-- @treturn[1] string "exit" or "signal"
-- @treturn[1] int the exit status (with init: 128+N when killed by signal N)
-- @treturn[1] ?string "oom" when the memory limit killed a process
function Container:wait()
  if not self.process then
    return self:_wait_other()
  end
  if not self.status then
    local ok, how, code = self.process:wait()
    if how ~= "exit" and how ~= "signal" then
      return nil, how, code -- wait failed: nil, msg, errno
    end
    local oom = cgroup.oom_killed(self.cgroups)
    self.status = table.pack(ok, how, code, oom and "oom" or nil)
    self.oom = oom
    cgroup.remove(self.cgroups)
    if self.name then
      local st = registry.load(self.name)
      if st and st.pid and st.pid[1] == self.pid then
        registry.remove(st)
      end
    end
    if self._master then
      self._master:close()
      self._master = nil
    end
  end
  return table.unpack(self.status, 1, 4)
end

--- Send a signal to the container's PID 1 (the init forwards TERM, INT,
-- HUP, QUIT, USR1, USR2 and WINCH to the command; KILL ends everything).
-- @tparam[opt="TERM"] int|string sig
-- @treturn[1] true
-- @return[2] nil, message, errno
function Container:kill(sig)
  if not self.process then
    return self:_kill_other(sig)
  end
  return self.process:kill(sig or "TERM")
end

local function pidfd_of(c)
  return c.process and c.process.pidfd or (c._pidfd and c._pidfd:fd())
end

--- Stop: TERM, then KILL after `timeout` seconds; waits and cleans up.
-- @number[opt=10] timeout grace period in seconds
-- @return as `Container:wait`
function Container:stop(timeout)
  timeout = timeout or 10
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error("bad argument #1 to 'stop' (non-negative number of seconds expected)", 2)
  end
  local fd = pidfd_of(self)
  if fd and not self.status and not (self.process and self.process:poll()) then
    self:kill("TERM")
    if not core.pidfd_wait(fd, timeout) then
      self:kill("KILL")
    end
  end
  return self:wait()
end

--- Relay the container's terminal (`tty = true`) with the caller's stdin and
-- stdout until the container ends: raw mode, window size, Ctrl-C.
-- @tparam[opt=true] boolean forward_stdin relay stdin too (false: output only)
-- @treturn[1] true
-- @return[2] nil, message, errno
function Container:attach(forward_stdin)
  if not self._master then
    error("attach: the container has no terminal (tty = true)", 2)
  end
  return core.pty_relay(self._master, self.process.pidfd, forward_stdin ~= false)
end

--- Run a command inside the container, joining all its namespaces and
-- cgroups, as `docker exec`.
-- @param spec a list (argv), or `{argv =, env =, cwd =, tty =, stdin =,
--   stdout =, stderr =, caps =, no_new_privs =}`
-- @treturn[1] Process
-- @treturn[1] ?userdata the terminal's master with `tty` (see `relay`)
-- @return[2] nil, message, errno
function Container:exec(spec)
  local x = plan.check_exec("exec", spec, 2)
  if not self.pid then
    return nil, format("container: %s is not running", self.name or "-"), 3
  end
  local boxes, fds = {}, nil
  if self.cgroups and #self.cgroups > 0 then
    local b, f, e = cgroup.open_procs(self.cgroups)
    if not b then
      return nil, "container: " .. f, e
    end
    boxes, fds = b, f
  end
  local sock, pty, e0 = tty_socket(x.tty, boxes)
  if sock == nil then
    close_all(boxes)
    return nil, pty, e0
  end
  local pspec, msg, e = plan.exec(self:_target(), x, machine(), { cgroup_fds = fds,
    pty = pty or nil, caps = self._caps, no_new_privs = self._nnp, env = self._env,
    privileged = self._privileged, user = self._user, rootless = self.rootless })
  if not pspec then
    close_all(boxes)
    if sock then
      sock:close()
    end
    return nil, msg, e
  end
  return start(pspec, boxes, sock or nil)
end

--- The process to join: PID 1; for a rootless container its command (the
-- init, non-dumpable, belongs to the machine's user namespace: its owner
-- may not open its namespaces), its first child.
function Container:_target()
  if not self.rootless then
    return self.pid
  end
  local kids = core.readfile(format("/proc/%d/task/%d/children", self.pid, self.pid))
  return math.tointeger(tonumber((kids or ""):match("%d+"))) or self.pid
end

--- Relay a terminal master box (from `Container:exec` with `tty`) until `p`
-- ends.
-- @tparam Process p
-- @tparam userdata master
-- @tparam[opt=true] boolean forward_stdin relay stdin too (raw mode)
function M.relay(p, master, forward_stdin)
  local ok, msg, e = core.pty_relay(master, p.pidfd, forward_stdin ~= false)
  master:close()
  return ok, msg, e
end

-- --- named containers: open, list, detach --------------------------------------

local SIGNALS = { HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10, USR2 = 12, TERM = 15,
  CONT = 18, STOP = 19, WINCH = 28 }

--- Open a named container (one started with `name`, here or by another
-- process): a `Container` whose `pid` is nil when it no longer runs.
-- @string name
-- @treturn[1] Container
-- @return[2] nil, message, errno (`container: no container named 'x'`)
function M.open(name)
  registry.checkname("open", name, 2)
  local st, msg, e = registry.load(name)
  if not st then
    return nil, "container: " .. msg, e
  end
  local c = setmetatable({ name = name, rootless = st.rootless, _caps = st.caps,
    _nnp = st.no_new_privs, _env = st.env, cgroups = {} }, Container)
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

--- Names of the named containers (running or left by a crash), sorted.
-- @treturn {string,...}
function M.list()
  return registry.list()
end

function Container:_kill_other(sig)
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

--- wait() of a container another process runs: until its PID 1 has ended;
-- then its state is removed here (its owner may be gone, or busy: removal
-- is idempotent, and the owner removes only the state of its own PID 1).
-- Its exit status is the owner's to know: true.
function Container:_wait_other()
  if self._pidfd then
    core.pidfd_wait(self._pidfd:fd())
    self._pidfd:close()
    self._pidfd, self.pid = nil, nil
  end
  local st = registry.load(self.name)
  -- an owner alive without a pid record is still starting it: its own
  if st and not st.running and (st.pid or not st.owned) then
    local ok, msg, e = registry.remove(st)
    if not ok then
      return nil, "container: " .. msg, e
    end
  end
  return true
end

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

--- Start a named container in the background: a monitor (a new isle
-- process: this interpreter, in a session of its own, not the caller's
-- child) runs it, waits for its end and removes its state. `isle run -d`.
-- @tparam table spec as for `run`, with `name`; no `tty`, no stdio (the
--   container's is /dev/null)
-- @treturn[1] int the container's PID 1
-- @return[2] nil, message, errno
function M.detach(spec)
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
  local exe, msg, e = core.readlink("/proc/self/exe")
  if not exe then
    return nil, "container: monitor: " .. msg, e
  end
  local boot = format("package.path = %q package.cpath = %q require('isle.container')._monitor()",
    package.path, package.cpath)
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

--- The monitor of `detach` (run by the new interpreter): reads the spec on
-- stdin, forks the real monitor off (so that it is nobody's child), which
-- runs the container, says "ok PID" or "fail ERRNO MSG" on stdout, waits and
-- cleans up. (internal)
function M._monitor()
  local spec = load("return " .. io.read("a"), "=spec", "t", {})()
  spec.stdin, spec.stdout, spec.stderr = "null", "null", "null"
  local p, msg, e = process.spawn { stdin = "null", stderr = "null", fn = function()
    core.setsid()
    local c, m2, e2 = M.run(spec)
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

--- Close the handles (never stops the container).
function Container:close()
  if self._master then
    self._master:close()
    self._master = nil
  end
  if self._pidfd then
    self._pidfd:close()
    self._pidfd = nil
  end
  if self.process then
    return self.process:close()
  end
  return true
end
Container.__close = Container.close

return M
