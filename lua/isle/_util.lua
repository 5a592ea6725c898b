--- Internal helpers shared by the isle modules (unchecked; not public API).
-- @module isle._util
local core = require "isle.core"

local M = {}

local type, tostring, error, pairs, ipairs = type, tostring, error, pairs, ipairs
local format = string.format

--- Raise `msg` blaming the caller of the public function (level 3 from here).
function M.argerror(fname, argname, msg, level)
  error(format("bad argument '%s' to '%s' (%s)", argname, fname, msg), (level or 2) + 1)
end

--- Check that `t` is a table whose keys are all in `allowed` (a set).
function M.checkfields(fname, argname, t, allowed, level)
  if type(t) ~= "table" then
    M.argerror(fname, argname, "table expected, got " .. type(t), (level or 2) + 1)
  end
  for k in pairs(t) do
    if not allowed[k] then
      M.argerror(fname, argname, "unknown option '" .. tostring(k) .. "'", (level or 2) + 1)
    end
  end
end

--- A set from a list.
function M.set(list)
  local s = {}
  for _, v in ipairs(list) do
    s[v] = true
  end
  return s
end

--- Canonical kind names (list, sorted as given) of a kinds argument; raises
-- through core.kinds on an unknown kind.
function M.kindlist(kinds)
  local flags = core.kinds(kinds)
  local out = {}
  for _, name in ipairs { "user", "cgroup", "ipc", "mnt", "net", "pid", "time", "uts" } do
    if flags & core.KINDS[name] ~= 0 then
      out[#out + 1] = name
    end
  end
  return out, flags
end

--- Canonical kind name of one kind, or nil.
function M.kindname(k)
  if k == "mount" then
    return "mnt"
  end
  if type(k) == "string" and core.KINDS[k] then
    return k
  end
  return nil
end

--- Is `name` acceptable as a single path component (netns, lab, host names)?
-- Returns nil or the reason.
function M.badname(name)
  if type(name) ~= "string" then
    return "string expected, got " .. type(name)
  end
  if name == "" then
    return "empty name"
  end
  if name == "." or name == ".." then
    return "name '" .. name .. "' is not allowed"
  end
  if name:find("/", 1, true) then
    return "name '" .. name .. "' contains '/'"
  end
  if name:find("%z") then
    return "name contains a NUL byte"
  end
  return nil
end

--- The pid of a target that names a process (integer or Process), else nil.
function M.target_pid(target)
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
-- Netns (anything with a `path` field), a netns name or a path.
-- Raises (naming `argname`) for a target of the wrong type or a bad name.
function M.target_path(fname, argname, target, kind, level)
  level = (level or 2) + 1
  local pid = M.target_pid(target)
  if pid then
    if pid <= 0 then
      M.argerror(fname, argname, "pid must be > 0", level)
    end
    return format("/proc/%d/ns/%s", pid, kind)
  end
  local tt = type(target)
  if tt == "string" then
    if target:find("/", 1, true) then
      return target
    end
    local why = M.badname(target)
    if why then
      M.argerror(fname, argname, why, level)
    end
    return "/run/netns/" .. target
  end
  local mt = getmetatable(target)
  if mt and mt.__name == "isle.Namespace" then
    return "/proc/self/fd/" .. target:fd()
  end
  if (tt == "table" or tt == "userdata") and type(target.path) == "string" then
    return target.path
  end
  M.argerror(fname, argname,
    "namespace target expected (pid, Process, Namespace, Netns, name or path), got " .. tt, level)
end

--- Undo stack for builders: push inverses, unwind in reverse on failure.
local Undo = {}
Undo.__index = Undo

function M.undo()
  return setmetatable({ n = 0 }, Undo)
end

function Undo:push(fn, ...)
  self.n = self.n + 1
  self[self.n] = table.pack(fn, ...)
end

--- Run every inverse in reverse order; errors of the inverses are collected
-- and returned as a list (the first failure is what callers report).
function Undo:unwind()
  local errs = {}
  for i = self.n, 1, -1 do
    local f = self[i]
    self[i] = nil
    local ok, r, msg = pcall(f[1], table.unpack(f, 2, f.n))
    if not ok then
      errs[#errs + 1] = tostring(r)
    elseif r == nil and msg then
      errs[#errs + 1] = msg
    end
  end
  self.n = 0
  return errs
end

--- Forget the inverses (the build succeeded).
function Undo:commit()
  for i = 1, self.n do
    self[i] = nil
  end
  self.n = 0
end

return M
