--- A container's spec → the plan of `isle.spawn` (its namespaces, maps,
-- environment, capabilities and the list of steps the C child runs).
--
-- Pure: `check` only validates and normalises (raising for mistakes);
-- `compile` and `exec` read the machine through the `sys` table they are
-- given (`exists`, `isdir`, `kind`, `readlink`, `listdir`, `read`, `getenv`,
-- `host_entry`, `ids`, `helpers`, `last_cap`, `argarea`, `seccomp`,
-- `seccomp_key`), so that specs/unit/container_plan_spec.lua checks the
-- steps without root. The steps, bubblewrap's way:
--
-- 1. join the limit cgroups through descriptors (spawn puts the child in
--    the first before it unshares the cgroup namespace);
-- 2. the new root (`isle.container.rootfs`): staged in a tmpfs, the
--    machine's `/` read-only or a `rootfs`, private `/proc`, `/dev`, `/sys`,
--    `/tmp`, `/run`, the extra mounts;
-- 3. docker's masked and read-only paths (`isle.container.harden`) unless
--    privileged;
-- 4. `/oldroot` detached, pivot into `/newroot`; `lo` up (`net = "none"`);
-- 5. with `tty`, a terminal of the container's own devpts.
-- Then the engine (`M.engine`): hardened, the seccomp program, the user.
-- @module isle.container.plan
local core = require "isle.core"
local C = require "isle._check"
local process = require "isle.process"
local harden = require "isle.container.harden"
local rootfs = require "isle.container.rootfs"

local M = {}

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local format, mtype = string.format, math.type
local MS, MNT, ATTR = core.MS, core.MNT, core.MOUNT_ATTR

--- Docker's default capability set (moby `oci/caps/defaults.go`) without
-- mknod.
M.DEFAULT_CAPS = harden.DEFAULT_CAPS

--- Devices bind-mounted from the machine into the container's `/dev`.
M.DEVICES = rootfs.DEVICES

--- Names of containers (and of their state directories): `core.badname`'s
-- rule narrowed to this pattern.
M.NAME = "^[%w][%w_.-]*$"

local run_fields = C.set {
  "argv", "rootfs", "readonly", "hostname", "net", "mounts", "env", "cwd", "limits", "tty",
  "rootless", "init", "caps", "no_new_privs", "stdin", "stdout", "stderr", "name",
  "privileged", "user", "keep", "signals",
}
local exec_fields = C.set { "argv", "env", "cwd", "tty", "stdin", "stdout", "stderr", "caps",
  "no_new_privs", "user" }

local NR, OR = rootfs.NR, rootfs.OR
local step = rootfs.step
local SUFFIX = { [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3, t = 1024 ^ 4 }

local function bad(fname, field, msg, level)
  C.argerror(fname, 1, field .. ": " .. msg, level + 1)
end

--- Bytes of a size: a positive integer, or a string like "64m", "1.5G",
-- "512k"; nil when it is not one.
function M.bytes(v)
  if mtype(v) == "integer" then
    return v > 0 and v or nil
  end
  if type(v) ~= "string" then
    return nil
  end
  local num, suf = v:lower():match("^%s*([%d%.]+)%s*([kmgt]?)i?b?%s*$")
  local n = tonumber(num)
  if not n or not SUFFIX[suf] then
    return nil
  end
  n = math.floor(n * SUFFIX[suf])
  return n > 0 and n <= math.maxinteger // 2 and math.tointeger(n) or nil
end

local function checkargv(fname, argv, level)
  if type(argv) ~= "table" or #argv == 0 then
    bad(fname, "argv", "non-empty list expected", level + 1)
  end
  local out = {}
  for i, a in ipairs(argv) do
    if mtype(a) then
      a = tostring(a)
    end
    if type(a) ~= "string" or a:find("%z") then
      bad(fname, format("argv[%d]", i), "string without NUL expected", level + 1)
    end
    out[i] = a
  end
  if out[1] == "" then
    bad(fname, "argv[1]", "empty command", level + 1)
  end
  return out
end

local function checkabs(fname, field, v, level)
  if type(v) ~= "string" or v:sub(1, 1) ~= "/" or v:find("%z") then
    bad(fname, field, "absolute path expected, got " .. (type(v) == "string" and "'" .. v .. "'"
      or type(v)), level + 1)
  end
  return v
end

--- Capability names of a spec value: nil → docker's set, "all" → nil
-- (every capability kept), a list → its names, canonical.
local function capnames(fname, caps, level)
  if caps == "all" then
    return nil
  end
  caps = caps == nil and M.DEFAULT_CAPS or caps
  if type(caps) ~= "table" then
    bad(fname, "caps", "list of capability names or 'all' expected", level + 1)
  end
  local out = {}
  for i, name in ipairs(caps) do
    local n = type(name) == "string" and name:lower():gsub("^cap_", "")
    if not (n and process._CAPS[n]) then
      bad(fname, format("caps[%d]", i), "unknown capability '" .. tostring(name) .. "'",
        level + 1)
    end
    out[#out + 1] = n
  end
  return out
end

local function checklimits(fname, limits, level)
  if limits == nil then
    return nil
  end
  C.fields(fname, "#1 (limits)", limits, C.set { "memory", "pids", "cpu" }, level + 1)
  local out = {}
  if limits.memory ~= nil then
    out.memory = M.bytes(limits.memory)
    if not out.memory then
      bad(fname, "limits.memory", "size expected (bytes or a string like '64m')", level + 1)
    end
  end
  if limits.pids ~= nil then
    if mtype(limits.pids) ~= "integer" or limits.pids <= 0 or limits.pids > 0x7fffffff then
      bad(fname, "limits.pids", "positive integer expected", level + 1)
    end
    out.pids = limits.pids
  end
  if limits.cpu ~= nil then
    if type(limits.cpu) ~= "number" or not (limits.cpu > 0 and limits.cpu <= 1e6) then
      bad(fname, "limits.cpu", "positive number of CPUs expected", level + 1)
    end
    out.cpu = limits.cpu
  end
  return next(out) and out or nil
end

--- The network of a spec: `{kind = "none"|"host"|"lab"|"netns"|"path", ...}`.
local function checknet(fname, net, level)
  if net == nil or net == "none" then
    return { kind = "none" }
  elseif net == "host" then
    return { kind = "host" }
  end
  local t = type(net)
  if t == "table" and net.kind == "host" and type(net.lab) == "table"
    and type(net.lab.name) == "string" and type(net.name) == "string" then
    return { kind = "lab", lab = net.lab.name, host = net.name } -- a lab host (Node)
  end
  if t == "string" then
    local lab, host = net:match("^([^:/]+):([^:/]+)$")
    if lab then
      return { kind = "lab", lab = lab, host = host }
    elseif net:find("^/") then
      return { kind = "path", path = net }
    end
    local why = core.badname(net)
    if why then
      bad(fname, "net", why, level + 1)
    end
    return { kind = "netns", name = net, path = "/run/netns/" .. net }
  end
  if (t == "table" or t == "userdata") and type(net.path) == "string" then
    return { kind = "path", path = net.path, name = type(net.name) == "string" and net.name or nil }
  end
  bad(fname, "net", "'none', 'host', a Netns, a netns name or 'LAB:HOST' expected, got " .. t,
    level + 1)
end

local function checkenv(fname, env, level)
  if env == nil then
    return nil
  end
  if type(env) ~= "table" then
    bad(fname, "env", "table expected, got " .. type(env), level + 1)
  end
  local out = {}
  for k, v in pairs(env) do
    if type(k) ~= "string" or k == "" or k:find("[=%z]") then
      bad(fname, "env", "bad variable name '" .. tostring(k) .. "'", level + 1)
    end
    if mtype(v) then
      v = tostring(v)
    end
    if v ~= false and (type(v) ~= "string" or v:find("%z")) then
      bad(fname, "env." .. k, "string expected (false removes it)", level + 1)
    end
    out[k] = v
  end
  return out
end

--- The extra mounts, compiled (targets inside the container).
local function checkmounts(fname, mounts, level)
  if mounts == nil then
    return {}
  end
  if type(mounts) ~= "table" then
    bad(fname, "mounts", "list expected, got " .. type(mounts), level + 1)
  end
  local out = {}
  for i, mt in ipairs(mounts) do
    local where = format("#1 (mounts[%d])", i)
    for _, c in ipairs(require("isle.mount")._compile(fname, where, mt, level + 1)) do
      if c.target:sub(1, 1) ~= "/" then
        bad(fname, format("mounts[%d]", i), "target must be an absolute path", level + 1)
      end
      if c.op == "mount" and c.flags & MS.bind ~= 0 and c.flags & MS.remount == 0
        and not (c.source and c.source:sub(1, 1) == "/") then
        bad(fname, format("mounts[%d]", i), "bind source must be an absolute path", level + 1)
      end
      out[#out + 1] = c
    end
  end
  return out
end

--- Validate and normalise a `container.run` spec; raises naming the field
-- (blamed at `level`, as for `error`).
function M.check(fname, spec, level)
  level = level + 1
  if type(spec) ~= "table" then
    C.argerror(fname, 1, "table expected, got " .. type(spec), level)
  end
  for k in pairs(spec) do
    if not run_fields[k] then
      C.argerror(fname, 1, "unknown field '" .. tostring(k) .. "'", level)
    end
  end
  local privileged = spec.privileged and true or false
  local nnp = spec.no_new_privs
  if nnp == nil then
    nnp = not privileged
  end
  local c = {
    argv = checkargv(fname, spec.argv, level), readonly = spec.readonly,
    tty = spec.tty and true or false, rootless = spec.rootless and true or false,
    init = spec.init ~= false, privileged = privileged,
    no_new_privs = nnp and true or false,
    stdin = spec.stdin, stdout = spec.stdout, stderr = spec.stderr,
    user = harden.checkuser(fname, spec.user, level, bad), keep = spec.keep and true or false,
  }
  c.rootfs = spec.rootfs ~= nil and checkabs(fname, "rootfs", spec.rootfs, level) or nil
  c.cwd = spec.cwd ~= nil and checkabs(fname, "cwd", spec.cwd, level) or "/"
  if spec.name ~= nil then
    c.name = C.name(fname, "name", spec.name, level, M.NAME, 64)
  end
  if spec.hostname ~= nil then
    c.hostname = C.string(fname, "hostname", spec.hostname, level)
    if #c.hostname > 64 then
      bad(fname, "hostname", "longer than 64 bytes", level)
    end
  end
  c.limits = checklimits(fname, spec.limits, level)
  if spec.signals ~= nil then
    if type(spec.signals) ~= "table" then
      bad(fname, "signals", "list of signal names expected", level)
    end
    c.signals = spec.signals
  end
  c.caps = capnames(fname, spec.caps == nil and privileged and "all" or spec.caps, level)
  c.net = checknet(fname, spec.net, level)
  if c.net.kind == "lab" and c.hostname then
    bad(fname, "hostname", "a container on a lab host has the host's hostname"
      .. " (net LAB:HOST joins its uts namespace)", level)
  end
  c.env = checkenv(fname, spec.env, level)
  c.mounts = checkmounts(fname, spec.mounts, level)
  return c
end

--- The environment for exec (a table, as `isle.spawn` takes it): a
-- docker-like minimal environment, then the spec's `env` (`false` removes a
-- variable).
function M.environment(env, hostname, term)
  local e = {
    PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    HOME = "/root",
    HOSTNAME = hostname,
    TERM = term,
  }
  for k, v in pairs(env or {}) do
    e[k] = v or nil
  end
  return e
end

--- How the container enters its network: `{join =, nsname =, hostname =}`
-- (join nil: a new netns; false: the machine's), or nil, msg, errno.
local function network(net, sys)
  if net.kind == "none" then
    return {}
  elseif net.kind == "host" then
    return { join = false }
  elseif net.kind == "lab" then
    local entry, msg = sys.host_entry(net.lab, net.host)
    if not entry then
      return nil, format("container: net %s:%s: no such network namespace (%s)", net.lab,
        net.host, msg), 2
    end
    -- with the host's filesystem (join.mnt) come its /etc/hosts and /sys
    return { join = entry.join, nsname = not entry.join.mnt and entry.netns or nil,
      hostname = entry.hostname }
  end
  if not sys.exists(net.path) then
    return nil, format("container: net %s: no such network namespace (%s)",
      net.name or net.path, net.path), 2
  end
  return { join = { net = net.path }, nsname = net.name }
end

-- --- the steps ------------------------------------------------------------------

--- The cgroup and terminal of a container: `ctx = {cgroup = dir, cgroup_fds
-- = {fd...}, pty = {fd =, rows =, cols =}}` (each optional) added to the
-- spawn spec `p` of `compile`: the cgroup is entered first, the others
-- through their descriptors before the root changes, the terminal last.
function M.attach(p, ctx)
  p.cgroup = ctx.cgroup
  local s = {}
  rootfs.cgroups(s, ctx.cgroup_fds)
  table.move(p.steps, 1, #p.steps, #s + 1, s)
  rootfs.pty(s, ctx.pty)
  p.steps = s
  return p
end

--- The spawn spec of a checked container `c` (from `check`): the steps and
-- everything else `isle.spawn` takes, and `info = {hostname =, env =}`; or
-- nil, msg, errno (a network that does not exist). Its cgroups and
-- terminal come with `attach`.
-- @tparam table c from `check`
-- @tparam table sys the machine: `exists(path)`, `isdir(path)`,
--   `listdir(path)`, `read(path)`, `getenv(name)`, `host_entry(lab, host)`,
--   `ids()` (uid, gid), `helpers` (newuidmap/newgidmap installed)
function M.compile(c, sys)
  local net, msg, e = network(c.net, sys)
  if not net then
    return nil, msg, e
  end
  local join = net.join
  local namespaces = { "pid", "mnt", "ipc", "cgroup" }
  local hostname = net.hostname or c.hostname or c.name or "isle"
  if not (join and join.uts) then
    namespaces[#namespaces + 1] = "uts"
  end
  if join == nil then
    namespaces[#namespaces + 1] = "net"
  end
  if c.rootless then
    namespaces[#namespaces + 1] = "user"
  end
  local s = {}
  rootfs.root(s, c)
  -- sysfs can be mounted only from a netns the container's user ns owns
  -- (and the machine's netns already has its sysfs: EBUSY; bind it then)
  rootfs.system(s, c, join == nil or (join ~= false and not c.rootless
    and not join.mnt), sys)
  local ok, why = true, nil
  if net.nsname then
    ok, why = rootfs.etc(s, c, net.nsname, sys)
  end
  if ok then
    ok, why = rootfs.extra(s, c, sys)
  end
  if not ok then
    return nil, "container: " .. why, 30 -- EROFS
  end
  if not c.privileged then
    harden.steps(function(op, what, t)
      step(s, op, what, t)
    end, sys, NR, OR .. "/dev/null", ATTR.rdonly)
  end
  step(s, "umount", "umount /oldroot", { target = OR, flags = MNT.detach })
  step(s, "pivot", "pivot_root /newroot", { path = NR })
  if join == nil then
    step(s, "lo_up", "set lo up", {})
  end
  local env = M.environment(c.env, hostname, c.tty and (sys.getenv("TERM") or "xterm") or nil)
  local p = {
    argv = c.argv, env = env, cwd = c.cwd, namespaces = namespaces,
    hostname = not (join and join.uts) and hostname or nil, join = join or nil,
    init = c.init or nil, stdin = c.stdin, stdout = c.stdout, stderr = c.stderr,
    caps = c.caps, no_new_privs = c.no_new_privs, steps = s,
  }
  if c.rootless then
    local uid, gid = sys.ids()
    p.uid_map, p.gid_map = require("isle.container.rootless").maps(uid, gid, sys.read,
      sys.helpers)
  end
  p.engine, msg, e = M.engine(c.caps, c.privileged, sys)
  if not p.engine then
    return nil, msg, e
  end
  if c.user then
    p.user, msg = harden.user(c.user, c.rootfs or "", sys)
    if not p.user then
      return nil, "container: user " .. msg, 22 -- EINVAL
    end
    if c.rootless then
      p.user.groups = nil -- a rootless map denies setgroups
    end
  end
  return p, { hostname = hostname, env = env }
end

--- The spawn engine's part of a container or of a command run in it
-- (`engine` of `isle.process._spawn`): hardened, its seccomp program
-- (none when privileged), the capabilities beyond docker's set raised as
-- ambient (for a non-root user: the ones asked for), the caller's argument
-- area; or nil, msg, errno.
function M.engine(caps, privileged, sys)
  local bits = harden.capbits(caps, sys.last_cap())
  local en = { harden = true, ambient = bits & ~harden.DEFAULT_BITS, last_cap = sys.last_cap() }
  if not privileged then
    local bpf, msg, e = harden.seccomp(bits, sys)
    if not bpf then
      return nil, msg, e
    end
    en.seccomp = bpf
  end
  local a = sys.argarea()
  if a then
    en.arg_start, en.arg_end, en.env_start, en.env_end = a[1], a[2], a[3], a[4]
  end
  return en
end

--- Validate and normalise the spec of `Container:exec`: a list (argv) or
-- `{argv =, env =, cwd =, tty =, stdin =, stdout =, stderr =, caps =,
-- no_new_privs =}`; raises naming the field.
function M.check_exec(fname, spec, level)
  level = level + 1
  if type(spec) == "table" and spec.argv == nil then
    spec = { argv = spec }
  end
  if type(spec) ~= "table" then
    C.argerror(fname, 1, "argv list or table expected", level)
  end
  for k in pairs(spec) do
    if not exec_fields[k] then
      C.argerror(fname, 1, "unknown field '" .. tostring(k) .. "'", level)
    end
  end
  return {
    argv = checkargv(fname, spec.argv, level),
    cwd = spec.cwd ~= nil and checkabs(fname, "cwd", spec.cwd, level) or "/",
    env = checkenv(fname, spec.env, level), tty = spec.tty and true or false,
    caps = spec.caps ~= nil and capnames(fname, spec.caps, level) or false,
    no_new_privs = spec.no_new_privs, stdin = spec.stdin, stdout = spec.stdout,
    stderr = spec.stderr, user = harden.checkuser(fname, spec.user, level, bad),
  }
end

--- The spawn spec of a command run in the container whose PID 1 (or, for
-- a rootless one, whose command) is `pid` (`x` from `check_exec`): it
-- joins every namespace of that process, its cgroups (`ctx.cgroup_fds`)
-- and, with `tty`, gets a terminal of the container's devpts (`ctx.pty`);
-- hardened as the container (its seccomp program, its user unless `x.user`).
-- `ctx.caps`, `ctx.no_new_privs`, `ctx.env`, `ctx.privileged`, `ctx.user`,
-- `ctx.rootfs`: the container's. Or nil, msg, errno.
function M.exec(pid, x, sys, ctx)
  local env = ctx.env
  if env == nil or x.env ~= nil or x.tty then
    local host = env and env.HOSTNAME
    if not host then
      host = sys.read(format("/proc/%d/root/proc/sys/kernel/hostname", pid))
      host = host and host:gsub("\n$", "") or "isle"
    end
    local base = {}
    for k, v in pairs(env or {}) do
      if k ~= "TERM" then
        base[k] = v
      end
    end
    for k, v in pairs(x.env or {}) do
      base[k] = v
    end
    env = M.environment(base, host, x.tty and (sys.getenv("TERM") or "xterm") or nil)
  end
  local s = {}
  rootfs.cgroups(s, ctx.cgroup_fds)
  rootfs.pty(s, ctx.pty)
  local caps = ctx.caps
  if x.caps ~= false then
    caps = x.caps
  end
  local nnp = ctx.no_new_privs ~= false
  if x.no_new_privs ~= nil then
    nnp = x.no_new_privs and true or false
  end
  local en, msg, e = M.engine(caps, ctx.privileged, sys)
  if not en then
    return nil, msg, e
  end
  local p = { argv = x.argv, env = env, cwd = x.cwd, join = pid, stdin = x.stdin,
    stdout = x.stdout, stderr = x.stderr, caps = caps, no_new_privs = nnp, steps = s,
    engine = en }
  local user = x.user or ctx.user
  if user then
    p.user, msg = harden.user(user, format("/proc/%d/root", pid), sys)
    if not p.user then
      return nil, "container: user " .. msg, 22
    end
    if ctx.rootless then
      p.user.groups = nil
    end
  end
  return p
end

return M
