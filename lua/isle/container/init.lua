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
-- what a container without limits, name or user namespace does not need
local cgroup = sys.lazy "isle.container.cgroup"
local rootless = sys.lazy "isle.container.rootless"
local registry = sys.lazy "isle.container.registry"

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
    c._ended and ", ended" or "")
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
    if ok then
      ok, msg, e2 = journal:context(c.privileged, c.user, c.keep, c.argv)
    end
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
  if c.signals then -- pending, not lost, until wait() passes them on
    core.sigmask("block", c.signals)
  end
  local p, master
  p, master, e = start(pspec, boxes, sock or nil)
  if not p then
    if c.signals then
      core.sigmask("unblock", c.signals)
    end
    cgroup.remove(groups)
    return nil, rootless.explain(master, e, c.rootless, core.ids(), m.read), e
  end
  if journal then
    local ok, msg, e2 = journal:record("pid", p.pid, registry.starttime(p.pid), os.time())
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
    _privileged = c.privileged, _user = c.user, _signals = c.signals,
  }, Container)
end

--- Run the checked named container `c`: claim its name (its state), with
-- `log`, its stdout and stderr appended to the state's log; launch it.
-- The Container, or nil, msg, errno with nothing left.
local function run_named(c, log)
  local journal, msg, e = registry.claim(c.name)
  if not journal then
    return nil, "container: " .. msg, e
  end
  local logf
  if log then
    logf, msg, e = core.fopen(journal.dir .. "/log", "a", 384)
    c.stdout, c.stderr = logf, logf
  end
  local ctr
  if logf or not log then
    ctr, msg, e = launch(c, journal)
  end
  journal:close()
  if logf then
    logf:close() -- the relay has its own
  end
  if not ctr then
    registry.remove(registry.load(c.name) or { cgroups = {}, dir = journal.dir })
    return nil, msg, e
  end
  ctr._keep = c.keep
  return ctr
end

--- A spec whose relative `rootfs` is made absolute (the caller's cwd).
local function absolute(spec)
  if type(spec) ~= "table" or type(spec.rootfs) ~= "string" or spec.rootfs:sub(1, 1) == "/" then
    return spec
  end
  local s = {}
  for k, v in pairs(spec) do
    s[k] = v
  end
  local cwd = core.readlink("/proc/self/cwd") or "."
  s.rootfs = (cwd .. "/" .. spec.rootfs):gsub("/%./", "/"):gsub("/%.$", ""):gsub("//+", "/")
  return s
end
M._absolute = absolute

--- Start a container.
-- @tparam table spec
-- @tparam {string,...} spec.argv the command (looked up in the container's `PATH`)
-- @tparam[opt] string spec.rootfs a directory to use as `/` (default: the
--   machine's `/`, read-only); a relative one is the caller's cwd's
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
-- @tparam[opt] {string,...} spec.signals signals (e.g. `{"INT", "TERM"}`)
--   blocked in the caller from the start and passed on to the container
--   while `wait` waits (the init passes them to the command): `isle run`'s
--   Ctrl-C
-- @tparam[opt] boolean spec.keep with `name`: its state (exit status) stays
--   after the end, until `Container:rm` (docker's default, `--rm` turns it off)
-- @tparam[opt] boolean spec.privileged every capability, no seccomp, no masked
--   or read-only paths, no no_new_privs (`docker run --privileged`)
-- @param[opt] spec.user "uid[:gid]" or "name[:group]" (the root's
--   /etc/passwd and /etc/group) or `{uid =, gid =, groups =}`: who the
--   command runs as
-- @treturn[1] Container
-- @return[2] nil
-- @treturn[2] string message, e.g. `container: exec foo: No such file or directory`
-- @treturn[2] int errno
-- @usage local c = assert(isle.container.run{argv = {"hostname"}, hostname = "box"})
-- print(c:wait())
function M.run(spec)
  spec = absolute(spec)
  local c = plan.check("run", spec, 2)
  if not c.name then
    return launch(c)
  end
  return run_named(c)
end

--- Check a `run` spec without running it; raises naming the mistake.
-- @tparam table spec as for `run`
-- @treturn true
function M.check(spec)
  plan.check("run", absolute(spec), 2)
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
  if not self._ended then
    if self._signals then
      local sigs = self._signals
      self._signals = nil
      core.forward_signals(self.process.pidfd, sigs)
    end
    local ok, how, code = self.process:wait()
    if how ~= "exit" and how ~= "signal" then
      return nil, how, code -- wait failed: nil, msg, errno
    end
    local groups = self.cgroups and #self.cgroups > 0 and self.cgroups -- (no load without)
    local oom = groups and cgroup.oom_killed(groups) or false
    self._ended = table.pack(ok, how, code, oom and "oom" or nil)
    self.oom = oom
    if groups then
      cgroup.remove(groups)
    end
    if self.name then
      local st = registry.load(self.name)
      if st and st.pid and st.pid[1] == self.pid and self._keep then
        registry.append(st, "exit", code, how, os.time(), oom and "oom" or nil)
      elseif st and st.pid and st.pid[1] == self.pid then
        registry.remove(st)
      end
    end
    if self._master then
      self._master:close()
      self._master = nil
    end
  end
  return table.unpack(self._ended, 1, 4)
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
  if fd and not self._ended and not (self.process and self.process:poll()) then
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

-- named containers (isle.container.named: open, list, detach, status, logs,
-- rm, ...), loaded on first use: a run without a name needs none of it. Each
-- stub installs the module (which replaces every stub) and tail-calls the
-- real function, so that an argument error still blames the caller.
M._NAMED_API = { "open", "list", "detach", "_monitor" }
M._NAMED_METHODS = { "_kill_other", "_wait_other", "status", "logs", "follow", "rm" }
local function named()
  require("isle.container.named").install(M, Container, { run = run_named, machine = machine })
end
local function stubs(t, names)
  for _, k in ipairs(names) do
    t[k] = function(...)
      named()
      return t[k](...)
    end
  end
end
stubs(M, M._NAMED_API)
stubs(Container, M._NAMED_METHODS)

return M
