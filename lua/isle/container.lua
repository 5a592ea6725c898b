--- Containers: `isle.container.run(spec)` and the `Container` object.
--
-- A container is one `isle.spawn` in new pid, mnt, uts, ipc, net and cgroup
-- namespaces (plus user when `rootless`), with the small init of the core
-- as PID 1. The parent checks the spec and compiles it into a list of
-- steps; the child (spawn's `fn` mode, a copy of this single-threaded Lua
-- process) runs them as bubblewrap does:
--
-- 1. joins the limit cgroups (spawn puts the child in the first one before
--    it unshares the cgroup namespace);
-- 2. mounts a tmpfs on `/tmp` and pivots into it, keeping the old root at
--    `/oldroot`;
-- 3. builds `/newroot`: the machine's `/` (recursive bind, read-only) or
--    `rootfs`, a private `/proc`, a minimal `/dev` on a tmpfs, read-only
--    `/sys`, a fresh `/tmp`, the extra `mounts` (sources seen from the
--    machine's root);
-- 4. detaches `/oldroot` and pivots into `/newroot`;
-- 5. brings `lo` up (`net = "none"`);
-- 6. `core.container_exec`: closes every descriptor but 0-2, changes to
--    `cwd` and checks it is inside the root, takes a controlling terminal
--    (`tty`), reduces capabilities, sets no_new_privs, execs.
--
-- A failure in any step comes back on an error pipe, and `run` returns
-- `nil, "container: <step>: <strerror>", errno` with nothing left behind.
-- Nothing mounted for the container shows in the machine's mount table:
-- every mount happens in the container's own mount namespace.
-- @module isle.container
local core = require "isle.core"
local U = require "isle._util"
local process = require "isle.process"
local mount = require "isle.mount"

local M = {}

local type, pairs, ipairs, tostring, error, setmetatable =
  type, pairs, ipairs, tostring, error, setmetatable
local format, concat, mtype = string.format, table.concat, math.type
local MS, MNT = core.MS, core.MNT

--- Docker's default capability set (moby `oci/caps/defaults.go`).
M.DEFAULT_CAPS = {
  "chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
  "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write",
}

--- Devices bind-mounted from the machine into the container's `/dev`.
M.DEVICES = { "null", "zero", "full", "random", "urandom", "tty" }

local spec_fields = U.set {
  "argv", "rootfs", "readonly", "hostname", "net", "mounts", "env", "cwd", "limits", "tty",
  "rootless", "init", "caps", "no_new_privs", "stdin", "stdout", "stderr", "name",
}

local function bad(fname, field, msg, level)
  error(format("bad argument #1 to '%s' (%s: %s)", fname, field, msg), level + 1)
end

local function checkstr(fname, field, v, level)
  if type(v) ~= "string" or v == "" then
    bad(fname, field, "non-empty string expected, got " .. type(v), level + 1)
  end
  if v:find("%z") then
    bad(fname, field, "contains a NUL byte", level + 1)
  end
  return v
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
  checkstr(fname, field, v, level + 1)
  if v:sub(1, 1) ~= "/" then
    bad(fname, field, "absolute path expected, got '" .. v .. "'", level + 1)
  end
  return v
end

--- Capability list of a spec value: nil → docker's set, "all" → nil (keep
-- everything), a list → itself (checked by process.lua's table).
local function capbits(fname, caps, level)
  if caps == "all" then
    return nil
  end
  caps = caps or M.DEFAULT_CAPS
  if type(caps) ~= "table" then
    bad(fname, "caps", "list of capability names or 'all' expected", level + 1)
  end
  local bits = 0
  for i, name in ipairs(caps) do
    local n = type(name) == "string" and process._CAPS[name:lower():gsub("^cap_", "")]
    if not n then
      bad(fname, format("caps[%d]", i), "unknown capability '" .. tostring(name) .. "'",
        level + 1)
    end
    bits = bits | (1 << n)
  end
  return bits
end

--- Environment list for exec: a docker-like minimal environment, then `env`.
local function environment(fname, env, hostname, tty, level)
  local e = {
    PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    HOME = "/root",
    HOSTNAME = hostname,
  }
  if tty then
    e.TERM = os.getenv("TERM") or "xterm"
  end
  if env ~= nil then
    if type(env) ~= "table" then
      bad(fname, "env", "table expected, got " .. type(env), level + 1)
    end
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
      e[k] = v or nil
    end
  end
  local list = {}
  for k, v in pairs(e) do
    list[#list + 1] = k .. "=" .. v
  end
  table.sort(list)
  return list
end

-- --- sizes and limits --------------------------------------------------------

local SUFFIX = { [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3, t = 1024 ^ 4 }

--- Bytes of a size: an integer, or a string like "64m", "1.5G", "512k".
function M._bytes(v)
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
  return n > 0 and n or nil
end

local function checklimits(fname, limits, level)
  if limits == nil then
    return nil
  end
  U.checkfields(fname, "#1 (limits)", limits, U.set { "memory", "pids", "cpu" }, level + 1)
  local out = {}
  if limits.memory ~= nil then
    out.memory = M._bytes(limits.memory)
    if not out.memory then
      bad(fname, "limits.memory", "size expected (bytes or a string like '64m')", level + 1)
    end
  end
  if limits.pids ~= nil then
    if mtype(limits.pids) ~= "integer" or limits.pids <= 0 then
      bad(fname, "limits.pids", "positive integer expected", level + 1)
    end
    out.pids = limits.pids
  end
  if limits.cpu ~= nil then
    if type(limits.cpu) ~= "number" or limits.cpu <= 0 or limits.cpu ~= limits.cpu then
      bad(fname, "limits.cpu", "positive number of CPUs expected", level + 1)
    end
    out.cpu = limits.cpu
  end
  if next(out) == nil then
    return nil
  end
  return out
end

-- --- cgroups ------------------------------------------------------------------

--- Mount points of the cgroup hierarchies: `v1[controller] = dir`, `v2 = dir`.
local function cgroup_mounts()
  local t = { v1 = {} }
  local info = core.readfile("/proc/self/mountinfo") or ""
  for line in info:gmatch("[^\n]+") do
    local mp, fstype, opts = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- (%S+) %S+ (%S+)")
    if fstype == "cgroup2" and not t.v2 then
      t.v2 = mp
    elseif fstype == "cgroup" then
      for o in opts:gmatch("[^,]+") do
        if not t.v1[o] then
          t.v1[o] = mp
        end
      end
    end
  end
  return t
end

--- The caller's cgroup paths: `v1[controller] = path`, `v2 = path`.
local function own_cgroups()
  local t = { v1 = {} }
  for line in (core.readfile("/proc/self/cgroup") or ""):gmatch("[^\n]+") do
    local id, ctrls, path = line:match("^(%d+):([^:]*):(.*)$")
    if id == "0" and ctrls == "" then
      t.v2 = path
    elseif ctrls then
      for c in ctrls:gmatch("[^,]+") do
        t.v1[c] = path
      end
    end
  end
  return t
end

local function pathjoin(dir, path)
  return (dir .. "/" .. path):gsub("//+", "/"):gsub("/$", "")
end

local counter = 0

local function mypid()
  local st = core.readfile("/proc/self/stat") or ""
  return math.tointeger(tonumber(st:match("^(%d+)"))) or 0
end

--- Create the cgroup(s) of `limits`; returns a list of
-- `{dir =, files = {[file] = value}, v2 =}` and the undo stack, or nil,
-- msg, errno. v2 when every wanted controller is available there.
local function make_cgroups(limits, name)
  local want = {}
  if limits.memory then want[#want + 1] = "memory" end
  if limits.pids then want[#want + 1] = "pids" end
  if limits.cpu then want[#want + 1] = "cpu" end
  local mounts, own = cgroup_mounts(), own_cgroups()
  counter = counter + 1
  local leaf = format("isle-%s-%d-%d", name or "c", mypid(), counter)
  local undo = U.undo()
  local groups = {}

  local function mk(dir)
    local ok, msg, e = core.mkdir(dir, 493)
    if not ok then
      return nil, msg, e
    end
    undo:push(core.rmdir, dir)
    return true
  end
  local function set(dir, file, value, optional)
    local ok, msg, e = core.writefile(dir .. "/" .. file, tostring(value))
    if not ok and not optional then
      return nil, msg, e
    end
    return true
  end
  local function fail(msg, e)
    undo:unwind()
    return nil, msg, e
  end

  local v2ok
  if mounts.v2 and own.v2 then
    local parent = pathjoin(mounts.v2, own.v2)
    local have = core.readfile(parent .. "/cgroup.controllers") or ""
    v2ok = true
    for _, c in ipairs(want) do
      if not have:find("%f[%w]" .. c .. "%f[%W]") then
        v2ok = false
      end
    end
    if v2ok then
      local enabled = core.readfile(parent .. "/cgroup.subtree_control") or ""
      for _, c in ipairs(want) do
        if not enabled:find("%f[%w]" .. c .. "%f[%W]") then
          local ok, msg, e = set(parent, "cgroup.subtree_control", "+" .. c)
          if not ok then
            return fail(msg, e)
          end
        end
      end
      local dir = pathjoin(parent, leaf)
      local ok, msg, e = mk(dir)
      if not ok then
        return fail(msg, e)
      end
      local g = { dir = dir, v2 = true }
      groups[1] = g
      if limits.memory then
        ok, msg, e = set(dir, "memory.max", limits.memory)
        if ok then
          set(dir, "memory.swap.max", 0, true)
        end
      end
      if ok and limits.pids then
        ok, msg, e = set(dir, "pids.max", limits.pids)
      end
      if ok and limits.cpu then
        ok, msg, e = set(dir, "cpu.max", format("%d 100000", math.ceil(limits.cpu * 100000)))
      end
      if not ok then
        return fail(msg, e)
      end
      return groups, undo
    end
  end

  for _, c in ipairs(want) do
    local mp = mounts.v1[c]
    if not mp then
      return fail(format("cgroup: no %s controller (neither cgroup v2 nor v1)", c), 2)
    end
    local dir = pathjoin(pathjoin(mp, own.v1[c] or "/"), leaf)
    local ok, msg, e = mk(dir)
    if not ok then
      return fail(msg, e)
    end
    groups[#groups + 1] = { dir = dir, controller = c }
    if c == "memory" then
      ok, msg, e = set(dir, "memory.limit_in_bytes", limits.memory)
      if ok then
        -- no swapping around the limit, where the kernel accounts swap
        set(dir, "memory.memsw.limit_in_bytes", limits.memory, true)
        set(dir, "memory.swappiness", 0, true)
      end
    elseif c == "pids" then
      ok, msg, e = set(dir, "pids.max", limits.pids)
    elseif c == "cpu" then
      ok, msg, e = set(dir, "cpu.cfs_period_us", 100000)
      if ok then
        ok, msg, e = set(dir, "cpu.cfs_quota_us", math.ceil(limits.cpu * 100000))
      end
    end
    if not ok then
      return fail(msg, e)
    end
  end
  return groups, undo
end

--- Was a process of these cgroups killed by the memory limit?
local function oom_killed(groups)
  for _, g in ipairs(groups or {}) do
    local s
    if g.v2 then
      s = core.readfile(g.dir .. "/memory.events")
    elseif g.controller == "memory" then
      s = core.readfile(g.dir .. "/memory.oom_control")
    end
    local n = s and tonumber(s:match("oom_kill (%d+)"))
    if n and n > 0 then
      return true
    end
  end
  return false
end

--- Remove the cgroups (retrying while the kernel finishes the exits).
local function remove_cgroups(groups)
  local first_msg, first_e
  for i = #(groups or {}), 1, -1 do
    local dir = groups[i].dir
    for try = 1, 100 do
      local ok, msg, e = core.rmdir(dir)
      if ok or e == 2 then
        break
      end
      if e ~= 16 or try == 100 then
        first_msg, first_e = first_msg or msg, first_e or e
        break
      end
      core.sleep(0.005)
    end
  end
  if first_msg then
    return nil, first_msg, first_e
  end
  return true
end

-- --- networking --------------------------------------------------------------

--- Join targets of `net`: nil for a new netns, false for the machine's, or
-- a join table.
local function net_join(fname, net, level)
  if net == nil or net == "none" then
    return nil
  end
  if net == "host" then
    return false
  end
  local t = type(net)
  if t == "table" and net.kind == "host" and type(net.lab) == "table"
    and type(net.lab.name) == "string" then
    net, t = net.lab.name .. ":" .. net.name, "string" -- a lab host (lab:host's Node)
  end
  if t == "string" then
    local lab, host = net:match("^([^:/]+):([^:/]+)$")
    if lab then
      -- a lab host: the lab says how to enter it
      local entry, msg = require("isle.lab").host_entry(lab, host)
      if not entry then
        return { net = "/run/netns/" .. lab .. "-" .. host, missing = msg }, lab .. "-" .. host
      end
      return entry.join, entry.netns
    end
    if net:find("^/") then
      return { net = net }
    end
    local why = U.badname(net)
    if why then
      bad(fname, "net", why, level + 1)
    end
    return { net = "/run/netns/" .. net }, net
  end
  if (t == "table" or t == "userdata") and type(net.path) == "string" then
    return { net = net.path }, type(net.name) == "string" and net.name or nil
  end
  bad(fname, "net", "'none', 'host', a Netns, a netns name or 'LAB:HOST' expected, got " .. t,
    level + 1)
end

-- --- the child's steps ---------------------------------------------------------

local function step(list, what, fn, ...)
  list[#list + 1] = table.pack(what, fn, ...)
end

local function optional(list, fn, ...)
  list[#list + 1] = table.pack(false, fn, ...)
end

local function m(list, source, target, fstype, flags, data, what)
  step(list, what or format("mount %s on %s", source or fstype, target), core.mount,
    source, target, fstype, flags, data)
end

--- Is `path` (on the machine) a directory? (for bind-mount targets)
local function isdir(path)
  local f = io.open(path, "r")
  if not f then
    return true
  end
  local ok, _, e = f:read(0)
  f:close()
  return ok == nil and e == 21
end

--- Is `prog` an executable file in $PATH?
local function in_path(prog)
  for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
    local f = io.open(dir .. "/" .. prog)
    if f then
      f:close()
      return true
    end
  end
  return false
end

--- The first range of `id` (a number or user/group name) in /etc/subuid or
-- /etc/subgid: start, count; or nil.
local function subid(file, id, name)
  local text = core.readfile(file) or ""
  for who, start, count in text:gmatch("([^:\n]+):(%d+):(%d+)") do
    if who == name or who == tostring(id) then
      return math.tointeger(tonumber(start)), math.tointeger(tonumber(count))
    end
  end
  return nil
end

--- The name of uid in /etc/passwd, or nil.
local function idname(file, id)
  local text = core.readfile(file) or ""
  for name, n in text:gmatch("([^:\n]+):[^:\n]*:(%d+):") do
    if tonumber(n) == id then
      return name
    end
  end
  return nil
end

--- The id maps of `rootless`: the caller's uid/gid as 0, and, for a user
-- with /etc/subuid and /etc/subgid ranges and newuidmap/newgidmap
-- installed, ids 1..count from those ranges (as podman does).
local function rootless_maps()
  local uid, gid = core.ids()
  local umap, gmap = { { 0, uid, 1 } }, { { 0, gid, 1 } }
  if uid == 0 or not (in_path("newuidmap") and in_path("newgidmap")) then
    return umap, gmap
  end
  local ustart, ucount = subid("/etc/subuid", uid, idname("/etc/passwd", uid))
  local gstart, gcount = subid("/etc/subgid", uid, idname("/etc/passwd", uid))
  if ustart and gstart then
    umap[2] = { 1, ustart, ucount }
    gmap[2] = { 1, gstart, gcount }
  end
  return umap, gmap
end

--- Why the kernel may refuse an unprivileged user namespace, or nil.
local function userns_policy()
  local function sysctl(path)
    return (core.readfile(path) or ""):match("^%s*(%S+)")
  end
  if sysctl("/proc/sys/user/max_user_namespaces") == "0" then
    return "user.max_user_namespaces is 0"
  elseif sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0" then
    return "kernel.unprivileged_userns_clone is 0"
  elseif sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1" then
    return "AppArmor restricts them: kernel.apparmor_restrict_unprivileged_userns is 1"
  end
  return nil
end

--- A clone refused for lack of privilege, explained.
local function explain(msg, e, rootless)
  if not (e == 1 or e == 28 or e == 87) or not msg:find("clone", 1, true) then
    return msg -- not EPERM, ENOSPC or EUSERS from clone
  end
  if rootless then
    local why = userns_policy()
    return format("%s (the kernel or distribution forbids unprivileged user namespaces%s)", msg,
      why and ": " .. why or "")
  elseif core.ids() ~= 0 then
    return msg .. " (new namespaces need root: use --rootless, rootless = true)"
  end
  return msg
end

local NR, OR = "/newroot", "/oldroot"

--- A step creating the mount point `target` (a path inside the container)
-- when the root lacks it, as docker does; in a read-only root (the
-- machine's `/` by default) it fails with a clear "Read-only file system".
local function mount_point(s, spec, target, dir)
  if core.ino((spec.rootfs or "") .. target) then
    return
  end
  if dir then
    step(s, "create mount point " .. target, core.mkdir, NR .. target, 493)
  else
    step(s, "create mount point " .. target, core.mkfile, NR .. target)
  end
end

--- Compile the mount steps of a container (run in the child).
local function mount_steps(fname, spec, sysfs_ok, nsname, level)
  local s = {}
  local nodev_nosuid = MS.nosuid | MS.nodev
  m(s, "tmpfs", "/tmp", "tmpfs", nodev_nosuid, "mode=0755", "mount tmpfs on /tmp (staging)")
  step(s, "mkdir /tmp/newroot", core.mkdir, "/tmp/newroot", 493)
  step(s, "mkdir /tmp/oldroot", core.mkdir, "/tmp/oldroot", 493)
  step(s, "chdir /tmp", core.chdir, "/tmp")
  step(s, "pivot_root", core.pivot_root, ".", "oldroot")
  step(s, "chdir /", core.chdir, "/")

  if spec.rootfs then
    m(s, OR .. spec.rootfs, NR, nil, MS.bind | MS.rec, nil, "bind rootfs " .. spec.rootfs)
    if spec.readonly then
      step(s, "rootfs read-only", core.readonly_tree, NR)
    end
  else
    m(s, OR, NR, nil, MS.bind | MS.rec, nil, "bind / (the machine's root)")
    if spec.readonly ~= false then
      step(s, "make / read-only", core.readonly_tree, NR)
    end
  end
  -- mount points a rootfs may lack (ignored where the root is read-only)
  for _, d in ipairs { "proc", "dev", "sys", "tmp" } do
    optional(s, core.mkdir, NR .. "/" .. d, 493)
  end
  m(s, "proc", NR .. "/proc", "proc", MS.nosuid | MS.nodev | MS.noexec, nil)

  local dev = NR .. "/dev"
  m(s, "tmpfs", dev, "tmpfs", MS.nosuid | MS.noexec, "mode=0755,size=65536k",
    "mount tmpfs on /dev")
  for _, d in ipairs(M.DEVICES) do
    step(s, "create /dev/" .. d, core.mkfile, dev .. "/" .. d)
    m(s, "/oldroot/dev/" .. d, dev .. "/" .. d, nil, MS.bind, nil, "bind /dev/" .. d)
  end
  for _, d in ipairs { "pts", "shm", "mqueue" } do
    step(s, "mkdir /dev/" .. d, core.mkdir, dev .. "/" .. d, 493)
  end
  m(s, "devpts", dev .. "/pts", "devpts", MS.nosuid | MS.noexec,
    "newinstance,ptmxmode=0666,mode=620", "mount devpts on /dev/pts")
  step(s, "symlink /dev/ptmx", core.symlink, "pts/ptmx", dev .. "/ptmx")
  m(s, "shm", dev .. "/shm", "tmpfs", MS.nosuid | MS.nodev | MS.noexec, "mode=1777,size=65536k",
    "mount tmpfs on /dev/shm")
  optional(s, core.mount, "mqueue", dev .. "/mqueue", "mqueue", MS.nosuid | MS.nodev | MS.noexec)
  for link, target in pairs { fd = "/proc/self/fd", stdin = "/proc/self/fd/0",
    stdout = "/proc/self/fd/1", stderr = "/proc/self/fd/2", core = "/proc/kcore" } do
    step(s, "symlink /dev/" .. link, core.symlink, target, dev .. "/" .. link)
  end

  if sysfs_ok then
    -- read-only per mount: the superblock may be the machine's (net = "host")
    m(s, "sysfs", NR .. "/sys", "sysfs", MS.nosuid | MS.nodev | MS.noexec, nil,
      "mount sysfs on /sys")
    step(s, "make /sys read-only", core.readonly_tree, NR .. "/sys")
  else
    -- the machine's network namespace (or one we do not own): its /sys
    m(s, OR .. "/sys", NR .. "/sys", nil, MS.bind | MS.rec, nil, "bind /sys")
    step(s, "make /sys read-only", core.readonly_tree, NR .. "/sys")
  end
  m(s, "tmpfs", NR .. "/tmp", "tmpfs", nodev_nosuid, "mode=1777", "mount tmpfs on /tmp")

  -- a named netns: /etc/netns/NAME/* over /etc/*, as `ip netns exec` (a
  -- lab host's hosts file), read-only
  if nsname then
    local etc = "/etc/netns/" .. nsname
    local files = core.netns_list(etc) or {}
    table.sort(files)
    for _, file in ipairs(files) do
      local target = "/etc/" .. file
      mount_point(s, spec, target, isdir(etc .. "/" .. file))
      m(s, OR .. etc .. "/" .. file, NR .. target, nil, MS.bind, nil, "bind " .. etc .. "/" .. file)
      step(s, "make " .. target .. " read-only", core.readonly_tree, NR .. target)
    end
  end

  -- extra mounts: targets inside the container, bind sources on the machine
  if spec.mounts ~= nil then
    if type(spec.mounts) ~= "table" then
      bad(fname, "mounts", "list expected, got " .. type(spec.mounts), level + 1)
    end
    for i, mt in ipairs(spec.mounts) do
      local argname = format("#1 (mounts[%d])", i)
      for _, c in ipairs(mount._compile(fname, argname, mt, level + 1)) do
        if c.target:sub(1, 1) ~= "/" then
          bad(fname, format("mounts[%d]", i), "target must be an absolute path", level + 1)
        end
        local target = NR .. c.target
        local source = c.source
        if c.op == "mount" and c.flags & MS.bind ~= 0 and c.flags & MS.remount == 0 then
          if not source or source:sub(1, 1) ~= "/" then
            bad(fname, format("mounts[%d]", i), "bind source must be an absolute path",
              level + 1)
          end
          mount_point(s, spec, c.target, isdir(source))
          source = OR .. source
        elseif c.op == "mount" and c.flags & MS.remount == 0 then
          mount_point(s, spec, c.target, true)
        end
        if c.op == "umount" then
          step(s, c.what, core.umount, target, c.flags)
        else
          step(s, c.what, core.mount, source, target, c.fstype, c.flags, c.data)
        end
      end
    end
  end

  step(s, "umount /oldroot", core.umount, OR, MNT.detach)
  step(s, "pivot_root /newroot", core.pivot_root, NR)
  return s
end

--- The child: run the steps, report the first failure, exec.
local function child(errfd, steps, final)
  collectgarbage("stop")
  for _, st in ipairs(steps) do
    local ok, msg, e = st[2](table.unpack(st, 3, st.n))
    if not ok and st[1] then
      core.container_fail(errfd, st[1] .. ": " .. tostring(msg):gsub("^.-: ([^:]+)$", "%1"),
        e or 0)
    end
  end
  core.container_exec(final)
end

--- Spawn `spec` (an isle.spawn table, fn set here) with the child's steps;
-- wait for exec or the reported failure. Returns the Process or nil, msg, e.
local function launch(pspec, steps, final)
  local rbox, wbox, _, wfd = core.pipe()
  if not rbox then
    return nil, "container: " .. wbox, _
  end
  final.errfd = wfd
  pspec.fn = function()
    child(wfd, steps, final)
  end
  local p, msg, e = process.spawn(pspec)
  wbox:close()
  if not p then
    rbox:close()
    return nil, "container: " .. tostring(msg):gsub("^spawn: ", ""), e
  end
  local report = core.read_all(rbox)
  rbox:close()
  if report and report ~= "" then
    local en, text = report:match("^(%-?%d+) (.*)$")
    p:wait()
    p:close()
    return nil, "container: " .. (text or report), math.tointeger(tonumber(en)) or 0
  end
  return p
end

local function close_all(boxes)
  for _, b in ipairs(boxes or {}) do
    b:close()
  end
end

--- `launch`, then close the child's ends in `boxes` and, with a terminal
-- socket, receive the terminal's master. Returns the Process and the master
-- box (nil without tty), or nil, msg, errno with no process left.
local function start(pspec, steps, final, boxes, sock)
  local p, msg, e = launch(pspec, steps, final)
  close_all(boxes)
  if not p then
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

--- With `tty`: the child's last step opens a terminal of the container's
-- own devpts and sends its master back. Returns the parent's socket box
-- (false without tty; the child's end goes into `boxes`), or nil, msg, e.
local function tty_step(tty, steps, boxes)
  if not tty then
    return false
  end
  local a, b, _, bfd = core.socketpair()
  if not a then
    return nil, "container: " .. b, _
  end
  boxes[#boxes + 1] = b
  local rows, cols = core.winsize(0)
  step(steps, "terminal", core.container_pty, bfd, rows or nil, cols or nil)
  return a
end

-- --- Container ----------------------------------------------------------------

local Container = {}
Container.__index = Container
Container.__name = "isle.Container"

function Container.__tostring(c)
  return format("isle.Container (%s, pid %d%s)", c.name or "-", c.pid,
    c.status and ", ended" or "")
end

--- Open file boxes of cgroup.procs of the container's cgroups.
local function open_procs(groups)
  local boxes, fds = {}, {}
  for _, g in ipairs(groups or {}) do
    local box, fd, e = core.open_fd(g.dir .. "/cgroup.procs", "w")
    if not box then
      for _, b in ipairs(boxes) do
        b:close()
      end
      return nil, fd, e
    end
    boxes[#boxes + 1], fds[#fds + 1] = box, fd
  end
  return boxes, fds
end

local function join_cgroup_steps(steps, fds)
  for _, fd in ipairs(fds) do
    step(steps, "join cgroup", core.write_fd, fd, "0")
  end
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
--   a `Netns`, a netns name or path, `"LAB:HOST"`
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
--   `M.DEFAULT_CAPS`), or "all"
-- @tparam[opt=true] boolean spec.no_new_privs
-- @param[opt] spec.stdin as in `isle.spawn` (also stdout, stderr)
-- @tparam[opt] string spec.name a label (cgroup names, hostname default)
-- @treturn[1] Container
-- @return[2] nil
-- @treturn[2] string message, e.g. `container: exec foo: No such file or directory`
-- @treturn[2] int errno
-- @usage local c = assert(isle.container.run{argv = {"hostname"}, hostname = "box"})
-- print(c:wait())
function M.run(spec)
  local fname = "run"
  if type(spec) ~= "table" then
    error("bad argument #1 to 'run' (table expected, got " .. type(spec) .. ")", 2)
  end
  for k in pairs(spec) do
    if not spec_fields[k] then
      error("bad argument #1 to 'run' (unknown field '" .. tostring(k) .. "')", 2)
    end
  end
  local argv = checkargv(fname, spec.argv, 2)
  if spec.rootfs ~= nil then
    checkabs(fname, "rootfs", spec.rootfs, 2)
  end
  if spec.cwd ~= nil then
    checkabs(fname, "cwd", spec.cwd, 2)
  end
  if spec.name ~= nil then
    local why = U.badname(spec.name)
    if why then
      bad(fname, "name", why, 2)
    end
  end
  local hostname = spec.hostname
  if hostname ~= nil then
    checkstr(fname, "hostname", hostname, 2)
  end
  local limits = checklimits(fname, spec.limits, 2)
  local caps = capbits(fname, spec.caps, 2)
  local join, nsname = net_join(fname, spec.net, 2)
  local rootless = spec.rootless and true or false
  local init = spec.init ~= false

  local namespaces = { "pid", "mnt", "ipc", "cgroup" }
  if not (join and join.uts) then
    namespaces[#namespaces + 1] = "uts"
    hostname = hostname or spec.name or "isle"
  elseif hostname then
    bad(fname, "hostname", "the lab host's uts namespace is joined", 2)
  end
  if join == nil then
    namespaces[#namespaces + 1] = "net"
  end
  if rootless then
    namespaces[#namespaces + 1] = "user"
  end
  local pspec = {
    namespaces = namespaces, hostname = hostname, join = join or nil, init = init or nil,
    stdin = spec.stdin, stdout = spec.stdout, stderr = spec.stderr,
  }
  if rootless then
    pspec.uid_map, pspec.gid_map = rootless_maps()
  end
  local final = {
    argv = argv, cwd = spec.cwd or "/", caps = caps, ctty = spec.tty and true or nil,
    no_new_privs = spec.no_new_privs ~= false,
    env = environment(fname, spec.env, hostname or core.gethostname and core.gethostname()
      or "isle", spec.tty, 2),
  }
  local steps = {}
  -- sysfs can be mounted only from a netns the container's user ns owns
  -- (and the machine's netns already has its sysfs: EBUSY; bind it then)
  local sysfs_ok = join == nil or (join ~= false and not rootless)
  local msteps = mount_steps(fname, spec, sysfs_ok, nsname, 2)
  if join and (join.missing or not core.ino(join.net)) then
    return nil, format("container: net %s: no such network namespace (%s)", tostring(spec.net),
      join.missing or join.net), 2
  end
  if join then
    join.missing = nil
  end

  -- from here on, kernel state: undo on failure
  local undo = U.undo()
  local groups, boxes
  if limits then
    local g, u, e = make_cgroups(limits, spec.name)
    if not g then
      return nil, "container: " .. u, e
    end
    groups = g
    undo:push(function() u:unwind() end)
    local b, fds, e2 = open_procs(groups)
    if not b then
      undo:unwind()
      return nil, "container: " .. fds, e2
    end
    boxes = b
    -- the child enters the first before unsharing the cgroup namespace (so
    -- PID 1 is inside too), the command the others
    pspec.cgroup = groups[1].dir
    join_cgroup_steps(steps, fds)
  end
  for _, st in ipairs(msteps) do
    steps[#steps + 1] = st
  end
  if join == nil then
    step(steps, "set lo up", core.lo_up)
  end

  boxes = boxes or {}
  local sock, msg0, e0 = tty_step(spec.tty, steps, boxes)
  if sock == nil then
    close_all(boxes)
    undo:unwind()
    return nil, msg0, e0
  end

  local p, master, e = start(pspec, steps, final, boxes, sock)
  if not p then
    undo:unwind()
    return nil, explain(master, e, rootless), e
  end
  undo:commit()
  return setmetatable({
    pid = p.pid, process = p, name = spec.name, cgroups = groups, rootless = rootless,
    tty = spec.tty and true or false, _master = master, _caps = caps,
    _nnp = final.no_new_privs, _env = final.env,
  }, Container)
end

--- Wait for the container's end (its PID 1), remove its cgroups.
-- @treturn[1] true|nil as `os.execute`: true when the command exited with 0
-- @treturn[1] string "exit" or "signal"
-- @treturn[1] int the exit status (with init: 128+N when killed by signal N)
-- @treturn[1] ?string "oom" when the memory limit killed a process
function Container:wait()
  if not self.status then
    local ok, how, code = self.process:wait()
    if how ~= "exit" and how ~= "signal" then
      return nil, how, code -- wait failed: nil, msg, errno
    end
    local oom = oom_killed(self.cgroups)
    self.status = table.pack(ok, how, code, oom and "oom" or nil)
    self.oom = oom
    remove_cgroups(self.cgroups)
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
  return self.process:kill(sig or "TERM")
end

--- Stop: TERM, then KILL after `timeout` seconds; waits and cleans up.
-- @number[opt=10] timeout grace period in seconds
-- @return as `Container:wait`
function Container:stop(timeout)
  timeout = timeout or 10
  if type(timeout) ~= "number" or timeout < 0 then
    error("bad argument #1 to 'stop' (non-negative number of seconds expected)", 2)
  end
  if not self.status and not self.process:poll() then
    self.process:kill("TERM")
    if not core.pidfd_wait(self.process.pidfd, timeout) then
      self.process:kill("KILL")
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
-- @param argv a list, or a table `{argv =, env =, cwd =, tty =, stdin =,
--   stdout =, stderr =}`
-- @treturn[1] Process (with `attach` semantics for `tty`: see `M.attach_process`)
-- @return[2] nil, message, errno
function Container:exec(argv)
  return M.exec(self.pid, argv, {
    cgroups = self.cgroups, caps = self._caps, no_new_privs = self._nnp, env = self._env,
  })
end

--- Close the handles (never stops the container).
function Container:close()
  if self._master then
    self._master:close()
    self._master = nil
  end
  return self.process:close()
end
Container.__close = Container.close

local exec_fields = U.set { "argv", "env", "cwd", "tty", "stdin", "stdout", "stderr", "caps",
  "no_new_privs" }

--- Run a command in the namespaces of a running container's PID 1 (used by
-- `Container:exec` and `isle enter`).
-- @int pid the container's PID 1 (on the machine)
-- @param spec a list (argv) or `{argv =, env =, cwd =, tty =, stdin =, ...}`
-- @tparam[opt] table ctx `{cgroups = {{dir =}...}, caps =, no_new_privs =, env =}`
-- @treturn[1] Process, with a `master` box when `tty` (see `M.relay`)
-- @return[2] nil, message, errno
function M.exec(pid, spec, ctx)
  local fname = "exec"
  if mtype(pid) ~= "integer" or pid <= 0 then
    error("bad argument #1 to 'exec' (pid expected)", 2)
  end
  if type(spec) == "table" and spec.argv == nil then
    spec = { argv = spec }
  end
  if type(spec) ~= "table" then
    error("bad argument #2 to 'exec' (argv list or table expected)", 2)
  end
  for k in pairs(spec) do
    if not exec_fields[k] then
      error("bad argument #2 to 'exec' (unknown field '" .. tostring(k) .. "')", 2)
    end
  end
  ctx = ctx or {}
  local argv = checkargv(fname, spec.argv, 2)
  if spec.cwd ~= nil then
    checkabs(fname, "cwd", spec.cwd, 2)
  end
  local caps = ctx.caps
  if spec.caps ~= nil then
    caps = capbits(fname, spec.caps, 2)
  end
  local env = ctx.env
  if env == nil or spec.env ~= nil or spec.tty then
    local host = core.readfile(format("/proc/%d/root/proc/sys/kernel/hostname", pid))
    env = environment(fname, spec.env, host and host:gsub("\n$", "") or "isle", spec.tty, 2)
  end
  local final = {
    argv = argv, cwd = spec.cwd or "/", caps = caps, ctty = spec.tty and true or nil,
    no_new_privs = (spec.no_new_privs == nil and ctx.no_new_privs ~= false)
      or spec.no_new_privs == true,
    env = env,
  }
  local pspec = { join = pid, stdin = spec.stdin, stdout = spec.stdout, stderr = spec.stderr }
  local steps = {}
  local boxes = {}
  if ctx.cgroups then
    local b, fds, e = open_procs(ctx.cgroups)
    if not b then
      return nil, "container: " .. fds, e
    end
    boxes = b
    join_cgroup_steps(steps, fds)
  end
  local sock, msg0, e0 = tty_step(spec.tty, steps, boxes)
  if sock == nil then
    close_all(boxes)
    return nil, msg0, e0
  end
  return start(pspec, steps, final, boxes, sock)
end

--- Relay a terminal master box (from `M.exec` with `tty`) until `p` ends.
-- @tparam Process p
-- @tparam userdata master
-- @tparam[opt=true] boolean forward_stdin relay stdin too (raw mode)
function M.relay(p, master, forward_stdin)
  local ok, msg, e = core.pty_relay(master, p.pidfd, forward_stdin ~= false)
  master:close()
  return ok, msg, e
end

-- --- state of named (detached) containers, for `isle enter` / `isle stop` ---

--- Directory of the state of named containers: /run/isle/containers for
-- root, else $XDG_RUNTIME_DIR/isle/containers or /tmp/isle-UID/containers.
function M._statedir()
  local uid = core.ids()
  if uid == 0 then
    return "/run/isle/containers"
  end
  local xdg = os.getenv("XDG_RUNTIME_DIR")
  if xdg and xdg ~= "" then
    return xdg .. "/isle/containers"
  end
  return format("/tmp/isle-%d/containers", uid)
end

local function mkdirs(path)
  local acc = ""
  for part in path:gmatch("[^/]+") do
    acc = acc .. "/" .. part
    local ok, msg, e = core.mkdir(acc, 448)
    if not ok and e ~= 17 then
      return nil, msg, e
    end
  end
  return true
end

--- Write `NAME/state` (a Lua table) for a named container.
function M._save(name, c, extra)
  local dir = M._statedir() .. "/" .. name
  local ok, msg, e = mkdirs(dir)
  if not ok then
    return nil, msg, e
  end
  local lines = { "return {", format("  pid = %d,", c.pid), format("  monitor = %d,", mypid()),
    format("  rootless = %s,", tostring(c.rootless)), format("  no_new_privs = %s,",
    tostring(c._nnp)) }
  if c._caps then
    lines[#lines + 1] = format("  caps = %d,", c._caps)
  end
  lines[#lines + 1] = "  cgroups = {"
  for _, g in ipairs(c.cgroups or {}) do
    lines[#lines + 1] = format("    { dir = %q },", g.dir)
  end
  lines[#lines + 1] = "  },"
  lines[#lines + 1] = "  env = {"
  for _, v in ipairs(c._env or {}) do
    lines[#lines + 1] = format("    %q,", v)
  end
  lines[#lines + 1] = "  },"
  for k, v in pairs(extra or {}) do
    lines[#lines + 1] = format("  %s = %q,", k, v)
  end
  lines[#lines + 1] = "}"
  local f, err, en = io.open(dir .. "/state.tmp", "w")
  if not f then
    return nil, err, en
  end
  f:write(concat(lines, "\n"), "\n")
  f:close()
  return os.rename(dir .. "/state.tmp", dir .. "/state")
end

--- Read the state of a named container (nil, msg when there is none).
function M._load(name)
  local path = M._statedir() .. "/" .. name .. "/state"
  local chunk = loadfile(path, "t", {})
  if not chunk then
    return nil, format("no container named '%s'", name)
  end
  local ok, t = pcall(chunk)
  if not ok or type(t) ~= "table" or mtype(t.pid) ~= "integer" then
    return nil, format("container '%s': unreadable state %s", name, path)
  end
  -- alive? the pid must still be that container's PID 1 (its monitor's child)
  local stat = core.readfile(format("/proc/%d/stat", t.pid))
  local ppid = stat and tonumber(stat:match("^%d+ %b() %S+ (%d+)"))
  t.alive = ppid ~= nil and ppid == t.monitor
  return t
end

--- Remove the state directory of a named container.
function M._forget(name)
  local dir = M._statedir() .. "/" .. name
  os.remove(dir .. "/state")
  os.remove(dir .. "/state.tmp")
  return core.rmdir(dir)
end

return M
