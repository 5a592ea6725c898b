--- The way onto a host of a running lab: the files of its namespaces and
-- its plan (from the lab's model), and a process started there. Small on
-- purpose: `isle exec` and `isle shell` load this, the core and the spawn
-- engine, and nothing of building, checking or undoing labs (a command
-- on a host starts about as fast as `ip netns exec`).
-- @module isle.lab.entry
local core = require "isle.core"
local check = require "isle._check"

local M = {}

local ipairs, type, pcall, load, format = ipairs, type, pcall, load, string.format
local ENOENT = 2

--- Where labs keep their state (one directory per lab).
M.STATE_DIR = "/run/isle"
--- Where named network namespaces are.
M.NETNS_DIR = "/run/netns"
--- Longest lab, host and host name (HOST_NAME_MAX).
M.NAME_MAX = 64
--- What lab, host and switch names are made of.
M.NAME_PATTERN = "^[%w_][%w_.-]*$"
--- Names of /run/isle entries that are not labs.
M.RESERVED = check.set { "containers", "made-etc-netns" }

-- The directories with a private tmpfs on every host, and their modes.
M.TMPFS = { { "/run", 493 }, { "/tmp", 1023 }, { "/var/tmp", 1023 }, { "/var/log", 493 } }

--- Is `path` `dir` or below it?
function M.under(path, dir)
  return path == dir or dir == "/" or path:sub(1, #dir + 1) == dir .. "/"
end

--- The directories of host plan `h` that get a tmpfs of their own: the
-- defaults and `h.private`.
function M.tmpfs_dirs(h)
  local t = {}
  for _, d in ipairs(M.TMPFS) do t[#t + 1] = d[1] end
  for _, d in ipairs(h.private or {}) do t[#t + 1] = d end
  return t
end

local function exists(path)
  return core.lstat(path) ~= nil
end

--- The plan a lab was built from (its `model` file, or `file`), or nil.
function M.read_model(name, file)
  local s = core.readfile(M.STATE_DIR .. "/" .. name .. "/" .. (file or "model"))
  local f = s and load("return " .. s, "model", "t", {})
  if not f then
    return nil
  end
  local ok, p = pcall(f)
  return ok and type(p) == "table" and p or nil
end

--- Did the namespaces of lab `name` end under it? (Its `net` file is no
-- longer a namespace: the holder of an unprivileged user's labs was
-- killed, isle.lab.context.)
function M.gone(name)
  local path = M.STATE_DIR .. "/" .. name .. "/net"
  return exists(path) and core.nsid(path, "net") == nil
end

--- Mount host `host`'s sysfs (of its network namespace `join.net`) on
-- /sys in its filesystem (`join.mnt`) at the first entry onto it: `up`
-- leaves it out (isle.lab.host), as each sysfs mount walks every sysfs of
-- the machine. `DIR/sys/HOST` notes it is there (`DIR/sys/.ro`: read-only,
-- as the machine's); a lab without `DIR/sys` got its sysfs at `up`.
function M.sysfs(dir, host, join)
  local mark = dir .. "/sys/" .. host
  if exists(mark) or not exists(dir .. "/sys") then
    return true
  end
  local ok, msg, e = core.sysfs_in(join.net, join.mnt, exists(dir .. "/sys/.ro"))
  if ok then ok, msg, e = core.mkfile(mark) end
  return ok, msg, e
end

--- How to enter host `host` of running lab `lab` (names checked by the
-- caller): `{join = {net =, uts =, time =, mnt =}, netns =, hostname =,
-- host = the host's plan or nil}`, or nil, message, errno.
function M.host_entry(lab, host)
  local dir = M.STATE_DIR .. "/" .. lab
  local name = lab .. "-" .. host
  local function kept(kind) -- ns/HOST.KIND, or HOST.KIND (labs of isle 0.1)
    local path = dir .. "/ns/" .. host .. "." .. kind
    if exists(path) then return path end
    path = dir .. "/" .. host .. "." .. kind
    return exists(path) and path or nil
  end
  local join = { net = M.NETNS_DIR .. "/" .. name, uts = kept("uts"), time = kept("time") }
  if not exists(join.net) or not join.uts then
    if not exists(dir) then
      return nil, format("lab %s: no such lab", lab), ENOENT
    elseif M.gone(lab) then
      return nil, format("lab %s: its namespaces are gone (isle down %s removes the rest)", lab,
        lab), ENOENT
    end
    return nil, format("lab %s: no host '%s'", lab, host), ENOENT
  end
  if exists(dir .. "/mnt/" .. host) then
    join.mnt = dir .. "/mnt/" .. host
    local ok, msg, e = M.sysfs(dir, host, join)
    if not ok then return nil, format("lab %s: host %s: /sys: %s", lab, host, msg), e end
  end
  local model = M.read_model(lab)
  local hostname, plan = host, nil
  for _, h in ipairs(model and model.hosts or {}) do
    if h.name == host then
      hostname, plan = h.hostname, h
      if h.timens then -- a clock an apply changed: its own time namespace
        join.time = h.timens ~= "" and dir .. "/" .. h.timens or nil
      end
    end
  end
  return { join = join, netns = name, hostname = hostname, host = plan }
end

-- The working directory of a process on host plan `h`: the caller's, when
-- the host sees the same directory there (it is below none of the host's
-- own tmpfs), else /.
local function host_cwd(h)
  local cwd = core.readlink("/proc/self/cwd")
  if not cwd or cwd:sub(1, 1) ~= "/" then
    return "/"
  end
  for _, d in ipairs(M.tmpfs_dirs(h)) do
    if M.under(cwd, d) then
      return "/"
    end
  end
  return cwd
end

--- The spawn spec of `spec` on a host entered through `entry`
-- (`host_entry`) whose plan is `h`: the host's namespaces (its filesystem
-- too); with mount steps of its own, in a private copy of the host's
-- filesystem.
function M.spec(spec, entry, h)
  if not entry.join.mnt then -- a lab of an isle without host filesystems
    return require("isle.netns")._exec_spec(spec, entry.join, entry.netns)
  end
  local s = {}
  for k, v in pairs(spec) do s[k] = v end
  s.join = entry.join
  if spec.mounts and #spec.mounts > 0 then -- a private copy of the host's filesystem
    s.namespaces = require("isle.ns")._with_kind(spec.namespaces, "mnt")
  end
  if s.cwd == nil and s.rootfs == nil then
    s.cwd = host_cwd(h)
  end
  return s
end

--- Start a process on host `host` of running lab `name` (see
-- `isle.lab.spawn`, which checks its arguments and calls this); with
-- `inplace`, see `exec`.
-- @treturn[1] Process
-- @return[2] nil, message, errno
function M.spawn(name, host, spec, inplace)
  if M.RESERVED[name] then
    return nil, format("lab %s: no such lab", name), ENOENT
  end
  local entry, msg, e = M.host_entry(name, host)
  if not entry then
    return nil, msg, e
  end
  if not entry.host then
    return nil, format("lab %s: no host '%s'", name, host), ENOENT
  end
  local p
  local process = require "isle.process"
  local s = M.spec(spec, entry, entry.host)
  if inplace then
    p, msg, e = process._exec(s, "spawn")
  else
    p, msg, e = process.spawn(s)
  end
  if not p then
    return nil, format("lab %s: host %s: %s", name, host, msg), e
  end
  return p
end

--- `spawn`, in place of this process when it only joins the host's
-- namespaces (as `ip netns exec` does): then it returns only on failure
-- (nil, message, errno; the process may be on the host already: report and
-- exit). Otherwise the Process of a child. (`isle exec`, `isle shell`)
function M.exec(name, host, spec)
  return M.spawn(name, host, spec, true)
end

--- Check a lab or host name argument of function `fname` (raises).
function M.checkname(fname, arg, name, level)
  return check.name(fname, arg, name, (level or 2) + 1, M.NAME_PATTERN, M.NAME_MAX)
end

return M
