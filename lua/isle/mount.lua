--- Mounts: mount, umount, bind, pivot_root, and the mount steps of
-- `isle.spawn{mounts = ...}`.
-- @module isle.mount
local core = require "isle.core"
local C = require "isle._check"

local M = {}

local MS, MNT = core.MS, core.MNT
local type, ipairs, format = type, ipairs, string.format

local step_fields = C.set { "source", "target", "type", "flags", "data" }

local function checkstr(fname, argname, v, optional, level)
  if v == nil and optional then
    return nil
  end
  if type(v) ~= "string" or v == "" then
    C.argerror(fname, argname, "non-empty string expected, got " .. type(v), level + 1)
  end
  if v:find("%z") then
    C.argerror(fname, argname, "contains a NUL byte", level + 1)
  end
  return v
end

--- MS_* bits of a list of flag names; raises naming the unknown flag.
local function msflags(fname, argname, list, level)
  if list == nil then
    return 0
  end
  if type(list) ~= "table" then
    C.argerror(fname, argname, "list of flag names expected, got " .. type(list), level + 1)
  end
  local bits = 0
  for i, name in ipairs(list) do
    local b = MS[name]
    if not b then
      C.argerror(fname, format("%s[%d]", argname, i), "unknown mount flag '" .. tostring(name)
        .. "' (expected ro nosuid nodev noexec bind rec private slave shared remount ...)",
        level + 1)
    end
    bits = bits | b
  end
  return bits
end

local function what(source, target, fstype)
  if fstype == "umount" then
    return "umount " .. target
  end
  return format("mount %s on %s", source or fstype or "none", target)
end

--- Compile one mount table (or shorthand) into steps of the spawn engine:
-- a list of `{op = "mount"|"umount", source, target, fstype, flags, data, what}`.
-- A read-only bind becomes a bind followed by a read-only remount.
-- Raises naming `argname` for a malformed step.
function M._compile(fname, argname, t, level)
  level = (level or 2) + 1
  if type(t) ~= "table" then
    C.argerror(fname, argname, "mount table expected, got " .. type(t), level)
  end
  local kind = t[1]
  if kind ~= nil then
    -- shorthands: {"proc", "/proc"}, {"tmpfs", "/tmp"}, {"sysfs", "/sys"},
    -- {"bind", src, dst, ro =, rec =}, {"umount", target}
    if kind == "bind" then
      C.fields(fname, argname, t, C.set { 1, 2, 3, "ro", "rec" }, level)
      local src = checkstr(fname, argname .. "[2]", t[2], false, level)
      local dst = checkstr(fname, argname .. "[3]", t[3], false, level)
      local flags = MS.bind | ((t.rec == false) and 0 or MS.rec)
      local out = { { op = "mount", source = src, target = dst, flags = flags,
        what = format("bind %s on %s", src, dst) } }
      if t.ro then
        out[2] = { op = "mount", source = src, target = dst,
          flags = MS.bind | MS.remount | MS.ro | (flags & MS.rec),
          what = format("remount %s read-only", dst) }
      end
      return out
    elseif kind == "umount" then
      C.fields(fname, argname, t, C.set { 1, 2 }, level)
      local dst = checkstr(fname, argname .. "[2]", t[2], false, level)
      return { { op = "umount", target = dst, flags = MNT.detach, what = "umount " .. dst } }
    elseif kind == "proc" or kind == "tmpfs" or kind == "sysfs" or kind == "mqueue"
      or kind == "devpts" then
      C.fields(fname, argname, t, C.set { 1, 2, "flags", "data" }, level)
      local dst = checkstr(fname, argname .. "[2]", t[2], false, level)
      local dflt = (kind == "tmpfs" or kind == "devpts") and (MS.nosuid | MS.nodev)
        or (MS.nosuid | MS.nodev | MS.noexec)
      local flags = t.flags and msflags(fname, argname .. ".flags", t.flags, level) or dflt
      local data = checkstr(fname, argname .. ".data", t.data, true, level)
      return { { op = "mount", source = kind, target = dst, fstype = kind, flags = flags,
        data = data, what = what(kind, dst) } }
    end
    C.argerror(fname, argname, "unknown mount shorthand '" .. tostring(kind)
      .. "' (expected proc, tmpfs, sysfs, mqueue, devpts, bind or umount)", level)
  end
  C.fields(fname, argname, t, step_fields, level)
  local target = checkstr(fname, argname .. ".target", t.target, false, level)
  local source = checkstr(fname, argname .. ".source", t.source, true, level)
  local fstype = checkstr(fname, argname .. ".type", t.type, true, level)
  local data = checkstr(fname, argname .. ".data", t.data, true, level)
  local flags = msflags(fname, argname .. ".flags", t.flags, level)
  local out = { { op = "mount", source = source, target = target, fstype = fstype,
    flags = flags, data = data, what = what(source, target, fstype) } }
  if flags & MS.bind ~= 0 and flags & MS.ro ~= 0 and flags & MS.remount == 0 then
    -- the kernel ignores MS_RDONLY on a new bind: remount it read-only
    out[1].flags = flags & ~MS.ro
    out[2] = { op = "mount", source = source, target = target,
      flags = MS.bind | MS.remount | MS.ro | (flags & MS.rec),
      what = format("remount %s read-only", target) }
  end
  return out
end

local function run(calls)
  for _, c in ipairs(calls) do
    local ok, msg, e
    if c.op == "umount" then
      ok, msg, e = core.umount(c.target, c.flags)
    else
      ok, msg, e = core.mount(c.source, c.target, c.fstype, c.flags, c.data)
    end
    if not ok then
      return nil, msg, e
    end
  end
  return true
end

--- Mount a filesystem.
-- @tparam table t `{source =, target =, type =, flags = {...}, data =}`; flags
-- among `ro nosuid nodev noexec bind rec private slave shared remount`; the
-- shorthands of spawn steps (`{"proc", "/proc"}`, ...) work too.
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `mount proc on /proc: Permission denied`
-- @treturn[2] int errno
-- @usage assert(isle.mount{source = "tmpfs", target = "/mnt", type = "tmpfs", flags = {"nosuid"}})
function M.mount(t)
  return run(M._compile("mount", "#1", t, 2))
end

--- Unmount.
-- @string target
-- @tparam[opt] {string,...} flags among `detach force expire nofollow`
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.umount(target, flags)
  checkstr("umount", "#1", target, false, 2)
  local bits = 0
  if flags ~= nil then
    if type(flags) ~= "table" then
      C.argerror("umount", "#2", "list of flag names expected, got " .. type(flags), 2)
    end
    for i, f in ipairs(flags) do
      local b = MNT[f]
      if not b then
        C.argerror("umount", format("#2[%d]", i), "unknown umount flag '" .. tostring(f)
          .. "' (expected detach, force, expire, nofollow)", 2)
      end
      bits = bits | b
    end
  end
  return core.umount(target, bits)
end

--- Bind-mount `src` on `dst`.
-- @string src
-- @string dst
-- @tparam[opt] table opts `{ro = true, rec = true}`
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.bind(src, dst, opts)
  checkstr("bind", "#1", src, false, 2)
  checkstr("bind", "#2", dst, false, 2)
  opts = opts or {}
  C.fields("bind", "#3", opts, C.set { "ro", "rec" }, 2)
  return run(M._compile("bind", "#3", { "bind", src, dst, ro = opts.ro, rec = opts.rec == true },
    2))
end

--- Make `new_root` (a mount point) the root of the caller's mount namespace
-- and detach the old root; with `put_old`, the plain pivot_root(2), which
-- keeps the old root there.
-- @string new_root
-- @string[opt] put_old a directory under `new_root`
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.pivot_root(new_root, put_old)
  checkstr("pivot_root", "#1", new_root, false, 2)
  if put_old ~= nil then
    checkstr("pivot_root", "#2", put_old, false, 2)
  end
  return core.pivot_root(new_root, put_old)
end

return M
