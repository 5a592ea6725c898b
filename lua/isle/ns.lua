--- Namespaces, uts names, ID maps and time offsets.
-- The functions here are re-exported by `isle` (`isle.setns`, `isle.idmap`,
-- ...). They resolve targets (pids, `Process`es, `Namespace`s, `Netns`es,
-- netns names, paths) and call the thin primitives of `isle.core`.
--
-- Programmer errors (an unknown kind, a malformed map, a target of the
-- wrong type) raise; failures of the operating system return
-- `nil, message, errno`.
-- @module isle.ns
-- @usage local isle = require "isle"
-- assert(isle.unshare "uts")
-- assert(isle.sethostname "box")
-- print(isle.gethostname(), isle.nsid(nil, "uts"))

local core = require "isle.core"
local C = require "isle._check"

local M = {}

local type, error, getmetatable, pcall, tostring = type, error, getmetatable, pcall, tostring
local pairs, ipairs = pairs, ipairs
local format = string.format

local NAMESPACE = "isle.Namespace"

local INT_MAX = 0x7fffffff

-- Raise "bad argument #n to 'fname' (msg)" blaming the caller of the public
-- function (`level` frames above the caller of argerror; default 1).
local function argerror(fname, n, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), (level or 1) + 2)
end

--- Canonical kind name of one kind (`"mount"` is `"mnt"`), or nil.
-- (internal: for process.lua and the modules above it)
function M._kindname(k)
  if k == "mount" then
    return "mnt"
  end
  if type(k) == "string" and core.KINDS[k] then
    return k
  end
  return nil
end

--- The pid of a target that names a process (an integer or a Process), or
-- nil. (internal)
function M._target_pid(target)
  if math.type(target) == "integer" then
    return target
  end
  local mt = getmetatable(target)
  if mt and mt.__name == "isle.Process" then
    return target.pid
  end
  return nil
end

--- Path of namespace `kind` of a target: a pid, a Process, a Namespace, a
-- Netns (anything with a `path` field), a netns name or a path. Raises
-- (naming `argname` of `fname`, blamed at `level` as for `error`) for a
-- target of the wrong type or a bad name. (internal)
function M._target_path(fname, argname, target, kind, level)
  level = (level or 2) + 1
  local pid = M._target_pid(target)
  if pid then
    if pid <= 0 then
      C.argerror(fname, argname, "pid must be > 0", level)
    end
    return format("/proc/%d/ns/%s", pid, kind)
  end
  local tt = type(target)
  if tt == "string" then
    if target:find("/", 1, true) then
      return target
    end
    local why = core.badname(target)
    if why then
      if target == "." or target == ".." then
        why = format("name '%s' is not allowed", target)
      end
      C.argerror(fname, argname, why, level)
    end
    return "/run/netns/" .. target
  end
  local mt = getmetatable(target)
  if mt and mt.__name == NAMESPACE then
    return "/proc/self/fd/" .. target:fd()
  end
  if (tt == "table" or tt == "userdata") and type(target.path) == "string" then
    return target.path
  end
  C.argerror(fname, argname,
    "namespace target expected (pid, Process, Namespace, Netns, name or path), got " .. tt, level)
end

-- nsenter's order for entering namespaces
local JOIN_ORDER = { "user", "cgroup", "ipc", "uts", "net", "pid", "mnt", "time" }

--- Every namespace of process `pid` that differs from ours (and is not in
-- `new_flags`), entered at once through a pidfd: the join entries, the
-- boxes, the set of kinds; or nil, msg, errno.
local function join_pid(pid, new_flags)
  local flags, names, kinds = 0, {}, {}
  for _, kind in ipairs(JOIN_ORDER) do
    -- a gone process has no ns files: pidfd_open below says so
    local theirs = core.ino(format("/proc/%d/ns/%s", pid, kind))
    if theirs and theirs ~= core.ino("/proc/self/ns/" .. kind)
      and new_flags & core.KINDS[kind] == 0 then
      flags = flags | core.KINDS[kind]
      names[#names + 1] = kind
      kinds[kind] = true
    end
  end
  local box, fd, e = core.pidfd_open(pid)
  if not box then
    return nil, fd, e
  end
  local entries = {}
  if flags ~= 0 then
    entries[1] = { fd = fd, nstype = flags,
      label = format("pid %d (%s)", pid, table.concat(names, ",")) }
  end
  return entries, { box }, kinds
end

--- Resolve spawn's `join` (one target for all its kinds, or `{kind =
-- target}`) into opened descriptors: the list of `{fd =, nstype =, label =}`
-- in nsenter's order, the boxes that keep the fds open, the set of joined
-- kinds; or nil, msg, errno. Raises (as spawn's) for a bad kind or target.
-- (internal: for process.lua)
function M._open_joins(join, new_flags)
  local per_kind = {}
  local mt = getmetatable(join)
  if type(join) == "table" and not (mt and mt.__name) and join.path == nil then
    for k, target in pairs(join) do
      local kind = M._kindname(k)
      if not kind then
        C.argerror("spawn", 1, "join: unknown namespace kind '" .. tostring(k) .. "'")
      end
      per_kind[kind] = target
    end
  elseif M._target_pid(join) then
    return join_pid(M._target_pid(join), new_flags)
  elseif mt and mt.__name == NAMESPACE then
    per_kind[join.kind] = join
  else
    per_kind.net = join -- a Netns, a netns name or a path: a network namespace
  end
  local entries, boxes, kinds = {}, {}, {}
  for _, kind in ipairs(JOIN_ORDER) do
    local target = per_kind[kind]
    if target ~= nil then
      -- (a mount namespace joined, then a private copy of it: allowed)
      if new_flags & core.KINDS[kind] ~= 0 and kind ~= "mnt" then
        C.argerror("spawn", 1, "join." .. kind .. ": the same kind is also in namespaces")
      end
      local path = M._target_path("spawn", "join." .. kind, target, kind)
      local box, fd, e = core.open_fd(path)
      if not box then
        return nil, fd, e
      end
      boxes[#boxes + 1] = box
      entries[#entries + 1] = { fd = fd, nstype = core.KINDS[kind], label = path }
      kinds[kind] = true
    end
  end
  return entries, boxes, kinds
end

--- `kinds` (a spawn's `namespaces`: a list or a comma-separated string)
-- with `kind` added when it is not in it; raises on a bad kind, as spawn
-- would. A list is copied, never changed.
function M._with_kind(kinds, kind)
  kinds = kinds or {}
  if core.kinds(kinds) & core.KINDS[kind] ~= 0 then
    return kinds
  end
  if type(kinds) == "string" then
    return kinds == "" and kind or kinds .. "," .. kind
  end
  kinds = table.move(kinds, 1, #kinds, 1, {})
  kinds[#kinds + 1] = kind
  return kinds
end

local function is_namespace(v)
  local mt = getmetatable(v)
  return mt ~= nil and mt.__name == NAMESPACE
end

-- Validate a kinds argument here, so that core never raises on the
-- caller's behalf (its errors would blame this file's line).
local function checkkinds(fname, n, kinds)
  local ok, err = pcall(core.kinds, kinds)
  if not ok then
    argerror(fname, n, tostring(err):match("%((.*)%)$") or tostring(err), 2)
  end
  return err
end

-- One kind argument: its canonical name; nil allowed when `optional`.
local function checkkind(fname, n, kind, optional)
  if kind == nil and optional then
    return nil
  end
  local name = M._kindname(kind)
  if not name then
    if type(kind) == "string" then
      argerror(fname, n, format("unknown namespace kind '%s' (expected cgroup, ipc, mnt, "
        .. "net, pid, time, user or uts)", kind), 2)
    end
    argerror(fname, n, "namespace kind expected, got " .. type(kind), 2)
  end
  return name
end

-- Path of namespace `kind` of `target`; nil target means the caller.
local function nspath(fname, target, kind)
  if target == nil then
    return "/proc/self/ns/" .. kind
  end
  return M._target_path(fname, "target", target, kind, 3)
end

--- Move the caller into new namespaces (unshare(2)).
-- `pid` and `time` apply to the caller's future children only.
--
-- Linux before 6.2 (Debian 11 and 12) lets a process whose children's time
-- namespace is not its own make no process that shares its memory
-- (copy_process: EINVAL for CLONE_VM): after `unshare("time")`, glibc's
-- `posix_spawn`, hence `io.popen` (ENOMEM) and `os.execute` (EINVAL), and
-- threads fail in the caller until it goes back,
-- `isle.setns("/proc/self/ns/time", "time")`. `isle.spawn` works (it forks
-- without sharing memory), and `isle.spawn{namespaces = {"time"}, time =
-- {...}}` starts a child in a new time namespace on every kernel, leaving
-- the caller as it was.
-- @function unshare
-- @tparam table|string kinds e.g. `{"net", "uts"}` or `"net,uts"`
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `"unshare net,uts: Operation not permitted"`
-- @treturn[2] int errno
-- @raise on an unknown kind
M.unshare = core.unshare

--- Enter existing namespaces (setns(2)).
-- With a pid or a `Process` and several kinds, all of them are entered in
-- one call through a pidfd. Any other target names one namespace file;
-- `kinds`, when given, must be its one kind. Entering `mnt` or `user`
-- needs a single-threaded caller (checked; a clear error otherwise).
-- @tparam int|Process|Namespace|Netns|string target a pid, a `Process`, a
-- `Namespace`, a `Netns` (anything with a `path`), a netns name or a path
-- @tparam[opt] table|string kinds required with a pid or a `Process`
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `"setns /proc/4242/ns/net: No such file or directory"`
-- @treturn[2] int errno
-- @raise on a bad target, an unknown kind, or a pid without kinds
-- @usage assert(isle.setns(pid, "net,uts"))
function M.setns(target, kinds)
  local pid = M._target_pid(target)
  if pid then
    if pid <= 0 or pid > INT_MAX then
      argerror("setns", 1, "pid out of range")
    end
    if kinds == nil then
      argerror("setns", 2, "kinds expected with a pid or a Process")
    end
    if checkkinds("setns", 2, kinds) == 0 then
      argerror("setns", 2, "kinds must not be empty")
    end
    -- arguments are checked: core does not raise, a tail call is safe
    return core.setns(pid, kinds)
  end
  if not is_namespace(target) then
    target = M._target_path("setns", "target", target, nil, 2)
  else
    local ok, err = pcall(target.fd, target)
    if not ok then
      error(err, 2) -- a closed Namespace
    end
  end
  if kinds ~= nil then
    local flags = checkkinds("setns", 2, kinds)
    if flags & (flags - 1) ~= 0 then
      argerror("setns", 2, "a " .. (is_namespace(target) and "Namespace" or "path")
        .. " is one namespace: give one kind")
    end
  end
  -- arguments are checked: core does not raise, a tail call is safe
  return core.setns(target, kinds)
end

--- Identity of a namespace: its inode, the number in `net:[4026531840]`.
-- Equal ids mean the same namespace.
-- @tparam[opt] int|Process|Namespace|Netns|string target nil for the caller
-- @string kind the kind (optional for a `Namespace` or a path, where it is
-- checked when given)
-- @treturn[1] int id
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
-- @raise on a bad target or an unknown kind
-- @usage print(isle.nsid(nil, "net"), isle.nsid(1, "net"))
function M.nsid(target, kind)
  local named = target ~= nil and M._target_pid(target) == nil
  kind = checkkind("nsid", 2, kind, named)
  -- arguments are checked: core does not raise, a tail call is safe
  return core.nsid(nspath("nsid", target, kind), kind)
end

--- Namespace ids of a process: `{mnt = id, uts = id, ...}` for every kind
-- in `/proc/PID/ns`.
-- @tparam[opt="self"] int|Process|string pid a pid, a `Process` or "self"
-- @treturn[1] table
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
-- @function nsinfo
-- @usage for kind, id in pairs(isle.nsinfo()) do print(kind, id) end
M.nsinfo = core.nsinfo

--- Open a namespace as a `Namespace` object.
-- The object holds a close-on-exec descriptor: `ns.kind`, `ns.id`,
-- `ns:fd()`, `ns:bind(path)` (keep the namespace alive on a file, as
-- `ip netns add` does), `ns:close()`; `__close` and `__gc` close it.
-- Closing never destroys the namespace.
-- @tparam[opt] int|Process|Namespace|Netns|string target nil for the caller
-- @string kind the kind (optional for a `Namespace` or a path, where it is
-- checked when given)
-- @treturn[1] Namespace
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
-- @raise on a bad target or an unknown kind
-- @usage local ns <close> = assert(isle.open_ns(pid, "net"))
-- assert(ns:bind("/run/netns/kept"))
function M.open_ns(target, kind)
  local named = target ~= nil and M._target_pid(target) == nil
  kind = checkkind("open_ns", 2, kind, named)
  -- arguments are checked: core does not raise, a tail call is safe
  return core.open_ns(nspath("open_ns", target, kind), kind)
end

--- Set the host name of the caller's uts namespace.
-- @function sethostname
-- @string name at most 64 bytes
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
-- @raise on a name over 64 bytes or containing a NUL byte
M.sethostname = core.sethostname

--- The host name of the caller's uts namespace.
-- @function gethostname
-- @treturn string
M.gethostname = core.gethostname

--- Set the NIS domain name of the caller's uts namespace.
-- @function setdomainname
-- @string name at most 64 bytes
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
-- @raise on a name over 64 bytes or containing a NUL byte
M.setdomainname = core.setdomainname

--- The NIS domain name of the caller's uts namespace.
-- @function getdomainname
-- @treturn string
M.getdomainname = core.getdomainname

--- Write the uid or gid map of a process in a new user namespace.
-- Root, or a caller mapping just its own id, writes `/proc/PID/uid_map`
-- itself; other ranges go through `newuidmap`/`newgidmap` (package uidmap,
-- with `/etc/subuid`, `/etc/subgid`). For `gid` an unprivileged caller
-- writes `deny` to `/proc/PID/setgroups` first. A map is written once.
-- @tparam int|Process|string pid a pid, a `Process` or "self"
-- @string which `"uid"` or `"gid"`
-- @tparam table map list of `{inside, outside, count}`, 1 to 340 lines
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
-- @raise on a malformed map, naming the entry (`map[2]: count must be > 0`)
-- @function idmap
-- @usage assert(isle.idmap(pid, "uid", {{0, 100000, 65536}}))
M.idmap = core.idmap

--- Read the uid or gid map of a process.
-- @tparam int|Process|string pid a pid, a `Process` or "self"
-- @string which `"uid"` or `"gid"`
-- @treturn[1] table list of `{inside, outside, count}`
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
-- @function read_idmap
M.read_idmap = core.read_idmap

--- Set the clock offsets of a new time namespace.
-- Writes `/proc/PID/timens_offsets` of a process that has unshared `time`
-- (the namespace its children will be in). Valid only until a process has
-- entered that namespace: unshare, write the offsets, then fork.
-- @tparam int|Process|string pid a pid, a `Process` or "self"
-- @tparam table offsets `{monotonic = seconds, boottime = seconds}`;
-- fractional and negative seconds are allowed
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
-- @raise on an unknown key or a value that is not a number
-- @usage assert(isle.unshare "time")
-- assert(isle.timens_offsets("self", {boottime = 86400}))
-- @function timens_offsets
M.timens_offsets = core.timens_offsets

return M
