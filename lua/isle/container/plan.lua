--- A container's spec → the plan of `isle.spawn` (its namespaces, maps,
-- environment, capabilities and the list of steps the C child runs).
--
-- Pure: `check` only validates and normalises (raising for mistakes);
-- `compile` and `exec` read the machine through the `sys` table they are
-- given (`exists`, `isdir`, `listdir`, `read`, `getenv`, `host_entry`,
-- `ids`, `helpers`), so that specs/unit/container_plan_spec.lua checks the
-- steps without root. The steps, bubblewrap's way:
--
-- 1. join the limit cgroups through descriptors (spawn puts the child in
--    the first before it unshares the cgroup namespace);
-- 2. a tmpfs on `/tmp` to stage in, pivoted into, the old root at `/oldroot`;
-- 3. `/newroot`: the machine's `/` (recursive bind, read-only) or `rootfs`,
--    a private `/proc`, a minimal `/dev` on a tmpfs, read-only `/sys`, a
--    fresh `/tmp`, `/etc/netns/NAME/*` of a named netns, the extra `mounts`
--    (bind sources seen from the machine's root);
-- 4. `/oldroot` detached, pivot into `/newroot`; `lo` up (`net = "none"`);
-- 5. with `tty`, a terminal of the container's own devpts.
-- @module isle.container.plan
local core = require "isle.core"
local C = require "isle._check"
local mount = require "isle.mount"
local process = require "isle.process"

local M = {}

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local format, mtype, sort = string.format, math.type, table.sort
local MS, MNT = core.MS, core.MNT

--- Docker's default capability set (moby `oci/caps/defaults.go`).
M.DEFAULT_CAPS = {
  "chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
  "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write",
}

--- Devices bind-mounted from the machine into the container's `/dev`.
M.DEVICES = { "null", "zero", "full", "random", "urandom", "tty" }

--- Names of containers (and of their state directories): `core.badname`'s
-- rule narrowed to this pattern.
M.NAME = "^[%w][%w_.-]*$"

local run_fields = C.set {
  "argv", "rootfs", "readonly", "hostname", "net", "mounts", "env", "cwd", "limits", "tty",
  "rootless", "init", "caps", "no_new_privs", "stdin", "stdout", "stderr", "name",
}
local exec_fields = C.set { "argv", "env", "cwd", "tty", "stdin", "stdout", "stderr", "caps",
  "no_new_privs" }

local NR, OR = "/newroot", "/oldroot"
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
    for _, c in ipairs(mount._compile(fname, format("#1 (mounts[%d])", i), mt, level + 1)) do
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
  local c = {
    argv = checkargv(fname, spec.argv, level), readonly = spec.readonly,
    tty = spec.tty and true or false, rootless = spec.rootless and true or false,
    init = spec.init ~= false, no_new_privs = spec.no_new_privs ~= false,
    stdin = spec.stdin, stdout = spec.stdout, stderr = spec.stderr,
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
  c.caps = capnames(fname, spec.caps, level)
  c.net = checknet(fname, spec.net, level)
  if c.net.kind == "lab" and c.hostname then
    bad(fname, "hostname", "the lab host's uts namespace is joined", level)
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
    return { join = entry.join, nsname = entry.netns, hostname = entry.hostname }
  end
  if not sys.exists(net.path) then
    return nil, format("container: net %s: no such network namespace (%s)",
      net.name or net.path, net.path), 2
  end
  return { join = { net = net.path }, nsname = net.name }
end

-- --- the steps ------------------------------------------------------------------

local function step(s, op, what, t)
  t.op, t.what = op, what
  s[#s + 1] = t
end

local function mnt(s, what, source, target, fstype, flags, data)
  step(s, "mount", what, { source = source, target = target, fstype = fstype, flags = flags,
    data = data })
end

--- A step creating the mount point `target` (inside the container) when
-- the root lacks it, as docker does; in a read-only root (the machine's
-- `/` by default) it fails with a clear "Read-only file system".
local function mount_point(s, c, target, dir, sys)
  if sys.exists((c.rootfs or "") .. target) then
    return
  end
  step(s, dir and "mkdir" or "mkfile", "create mount point " .. target,
    { path = NR .. target, mode = dir and 493 or nil })
end

--- Stage in a tmpfs, then bind the new root.
local function root_steps(s, c)
  mnt(s, "mount tmpfs on /tmp (staging)", "tmpfs", "/tmp", "tmpfs", MS.nosuid | MS.nodev,
    "mode=0755")
  step(s, "mkdir", "mkdir /tmp/newroot", { path = "/tmp/newroot", mode = 493 })
  step(s, "mkdir", "mkdir /tmp/oldroot", { path = "/tmp/oldroot", mode = 493 })
  step(s, "chdir", "chdir /tmp", { path = "/tmp" })
  step(s, "pivot", "pivot_root", { path = ".", put_old = "oldroot" })
  step(s, "chdir", "chdir /", { path = "/" })
  if c.rootfs then
    mnt(s, "bind rootfs " .. c.rootfs, OR .. c.rootfs, NR, nil, MS.bind | MS.rec)
  else
    mnt(s, "bind / (the machine's root)", OR, NR, nil, MS.bind | MS.rec)
  end
  -- mount points a rootfs may lack (made before the root turns read-only)
  for _, d in ipairs { "proc", "dev", "sys", "tmp" } do
    step(s, "mkdir", "mkdir /" .. d, { path = NR .. "/" .. d, mode = 493, optional = true })
  end
  if c.rootfs and c.readonly then
    step(s, "setattr", "rootfs read-only", { path = NR })
  elseif not c.rootfs and c.readonly ~= false then
    step(s, "setattr", "make / read-only", { path = NR })
  end
end

--- /proc, a minimal /dev, /sys, /tmp.
local function system_steps(s, sysfs_ok)
  mnt(s, "mount proc on /proc", "proc", NR .. "/proc", "proc", MS.nosuid | MS.nodev | MS.noexec)
  local dev = NR .. "/dev"
  mnt(s, "mount tmpfs on /dev", "tmpfs", dev, "tmpfs", MS.nosuid | MS.noexec,
    "mode=0755,size=65536k")
  for _, d in ipairs(M.DEVICES) do
    step(s, "mkfile", "create /dev/" .. d, { path = dev .. "/" .. d })
    mnt(s, "bind /dev/" .. d, OR .. "/dev/" .. d, dev .. "/" .. d, nil, MS.bind)
  end
  for _, d in ipairs { "pts", "shm", "mqueue" } do
    step(s, "mkdir", "mkdir /dev/" .. d, { path = dev .. "/" .. d, mode = 493 })
  end
  mnt(s, "mount devpts on /dev/pts", "devpts", dev .. "/pts", "devpts", MS.nosuid | MS.noexec,
    "newinstance,ptmxmode=0666,mode=620")
  step(s, "symlink", "symlink /dev/ptmx", { target = "pts/ptmx", path = dev .. "/ptmx" })
  mnt(s, "mount tmpfs on /dev/shm", "shm", dev .. "/shm", "tmpfs", MS.nosuid | MS.nodev
    | MS.noexec, "mode=1777,size=65536k")
  step(s, "mount", "mount mqueue on /dev/mqueue", { source = "mqueue", target = dev .. "/mqueue",
    fstype = "mqueue", flags = MS.nosuid | MS.nodev | MS.noexec, optional = true })
  for _, l in ipairs { { "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
    { "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
    { "core", "/proc/kcore" } } do
    step(s, "symlink", "symlink /dev/" .. l[1], { target = l[2], path = dev .. "/" .. l[1] })
  end
  if sysfs_ok then
    -- read-only per mount: the superblock may be the machine's (net = "host")
    mnt(s, "mount sysfs on /sys", "sysfs", NR .. "/sys", "sysfs", MS.nosuid | MS.nodev
      | MS.noexec)
  else
    -- the machine's network namespace (or one we do not own): its /sys
    mnt(s, "bind /sys", OR .. "/sys", NR .. "/sys", nil, MS.bind | MS.rec)
  end
  step(s, "setattr", "make /sys read-only", { path = NR .. "/sys" })
  mnt(s, "mount tmpfs on /tmp", "tmpfs", NR .. "/tmp", "tmpfs", MS.nosuid | MS.nodev,
    "mode=1777")
end

--- A named netns: /etc/netns/NAME/* over /etc/*, read-only, as `ip netns
-- exec` (a lab host's hosts file).
local function etc_steps(s, c, nsname, sys)
  local etc = "/etc/netns/" .. nsname
  local files = sys.listdir(etc)
  sort(files)
  for _, file in ipairs(files) do
    local target = "/etc/" .. file
    mount_point(s, c, target, sys.isdir(etc .. "/" .. file), sys)
    mnt(s, "bind " .. etc .. "/" .. file, OR .. etc .. "/" .. file, NR .. target, nil, MS.bind)
    step(s, "setattr", "make " .. target .. " read-only", { path = NR .. target })
  end
end

--- The extra mounts: targets inside the container, bind sources on the
-- machine.
local function extra_steps(s, c, sys)
  for _, m in ipairs(c.mounts) do
    local source = m.source
    if m.op == "mount" and m.flags & MS.bind ~= 0 and m.flags & MS.remount == 0 then
      mount_point(s, c, m.target, sys.isdir(source), sys)
      source = OR .. source
    elseif m.op == "mount" and m.flags & MS.remount == 0 then
      mount_point(s, c, m.target, true, sys)
    end
    if m.op == "umount" then
      step(s, "umount", m.what, { target = NR .. m.target, flags = m.flags })
    else
      mnt(s, m.what, source, NR .. m.target, m.fstype, m.flags, m.data)
    end
  end
end

local function cgroup_steps(s, fds)
  for _, fd in ipairs(fds or {}) do
    step(s, "write_fd", "join cgroup", { fd = fd, data = "0" })
  end
end

local function pty_step(s, pty)
  if pty then
    step(s, "pty", "terminal", { fd = pty.fd, rows = pty.rows, cols = pty.cols })
  end
end

--- The cgroup and terminal of a container: `ctx = {cgroup = dir, cgroup_fds
-- = {fd...}, pty = {fd =, rows =, cols =}}` (each optional) added to the
-- spawn spec `p` of `compile`: the cgroup is entered first, the others
-- through their descriptors before the root changes, the terminal last.
function M.attach(p, ctx)
  p.cgroup = ctx.cgroup
  local s = {}
  cgroup_steps(s, ctx.cgroup_fds)
  table.move(p.steps, 1, #p.steps, #s + 1, s)
  pty_step(s, ctx.pty)
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
  root_steps(s, c)
  -- sysfs can be mounted only from a netns the container's user ns owns
  -- (and the machine's netns already has its sysfs: EBUSY; bind it then)
  system_steps(s, join == nil or (join ~= false and not c.rootless))
  if net.nsname then
    etc_steps(s, c, net.nsname, sys)
  end
  extra_steps(s, c, sys)
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
  return p, { hostname = hostname, env = env }
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
    stderr = spec.stderr,
  }
end

--- The spawn spec of a command run in the container whose PID 1 is `pid`
-- (`x` from `check_exec`): it joins every namespace of that process, its
-- cgroups (`ctx.cgroup_fds`) and, with `tty`, gets a terminal of the
-- container's devpts (`ctx.pty`). `ctx.caps`, `ctx.no_new_privs`, `ctx.env`:
-- the container's.
function M.exec(pid, x, sys, ctx)
  local env = ctx.env
  if env == nil or x.env ~= nil or x.tty then
    local host = sys.read(format("/proc/%d/root/proc/sys/kernel/hostname", pid))
    env = M.environment(x.env, host and host:gsub("\n$", "") or "isle",
      x.tty and (sys.getenv("TERM") or "xterm") or nil)
  end
  local s = {}
  cgroup_steps(s, ctx.cgroup_fds)
  pty_step(s, ctx.pty)
  local caps = ctx.caps
  if x.caps ~= false then
    caps = x.caps
  end
  local nnp = ctx.no_new_privs ~= false
  if x.no_new_privs ~= nil then
    nnp = x.no_new_privs and true or false
  end
  return { argv = x.argv, env = env, cwd = x.cwd, join = pid, stdin = x.stdin,
    stdout = x.stdout, stderr = x.stderr, caps = caps, no_new_privs = nnp, steps = s }
end

return M
