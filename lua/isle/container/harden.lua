--- The hardening of containers, docker's defaults (moby `oci/defaults.go`,
-- its default seccomp profile; crun and bubblewrap do the same): which
-- paths of /proc and /sys are masked or read-only, the capabilities, the
-- seccomp program of a capability set, the user a container runs as.
--
-- Pure like `plan`: the machine comes through the `sys` table
-- (`kind(path)` → "dir", "file", "link" or nil, `listdir`, `read`,
-- `seccomp(bits)`).
-- @module isle.container.harden
local process = require "isle.process"
local MS = require("isle.core").MS

local M = {}

local ipairs, format, tostring = ipairs, string.format, tostring
local mtype = math.type

--- Docker's default capabilities (moby `oci/caps/defaults.go`) without
-- mknod: no device node can be made (and none opened: every mount of a
-- container is nodev but the six devices of its /dev).
M.DEFAULT_CAPS = {
  "chown", "dac_override", "fsetid", "fowner", "net_raw", "setgid", "setuid", "setfcap",
  "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write",
}

--- Masked paths: a file gets /dev/null bound over it, a directory an
-- empty read-only tmpfs (docker's MaskedPaths).
M.MASKED = {
  "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
  "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
  "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
}

--- Read-only paths: bound onto themselves, read-only (docker's
-- ReadonlyPaths).
M.READONLY = { "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger" }

local masks -- the kernel's answer does not change: computed once

--- The paths to mask and to make read-only on this kernel (those it has),
-- with their kinds: `{masked = {{path, kind}...}, readonly = {path...}}`;
-- also each CPU's thermal_throttle directory (docker's glob).
function M.paths(sys)
  if masks then
    return masks
  end
  local m = { masked = {}, readonly = {} }
  local list = { table.unpack(M.MASKED) }
  for _, cpu in ipairs(sys.listdir("/sys/devices/system/cpu")) do
    if cpu:match("^cpu%d+$") then
      list[#list + 1] = "/sys/devices/system/cpu/" .. cpu .. "/thermal_throttle"
    end
  end
  for _, p in ipairs(list) do
    local kind = sys.kind(p)
    if kind == "dir" or kind == "file" then
      m.masked[#m.masked + 1] = { p, kind }
    end
  end
  for _, p in ipairs(M.READONLY) do
    if sys.kind(p) then
      m.readonly[#m.readonly + 1] = p
    end
  end
  masks = m
  return m
end

--- The mask and read-only steps under `root` (the new root, before the
-- pivot), added with `add(op, what, fields)`; `null` is the machine's
-- /dev/null there. After every other mount: a user's mount on /proc/...
-- cannot undo them.
function M.steps(add, sys, root, null, ro_attr)
  local m = M.paths(sys)
  for _, e in ipairs(m.masked) do
    local p, kind = e[1], e[2]
    if kind == "dir" then
      add("mount", "mask " .. p, { source = "tmpfs", target = root .. p, fstype = "tmpfs",
        flags = MS.ro | MS.nosuid | MS.nodev | MS.noexec, data = "size=4k,nr_inodes=1,mode=0555" })
    else
      add("mount", "mask " .. p, { source = null, target = root .. p,
        flags = MS.bind })
    end
  end
  for _, p in ipairs(m.readonly) do
    add("mount", "bind " .. p, { source = root .. p, target = root .. p,
      flags = MS.bind | MS.rec })
    add("setattr", "make " .. p .. " read-only", { path = root .. p, attr = ro_attr })
  end
end

local seccomp_cache = {}

--- The seccomp program of capability bits (cached by its key), or nil,
-- msg, errno.
function M.seccomp(bits, sys)
  local key = sys.seccomp_key(bits)
  local bpf = seccomp_cache[key]
  if bpf then
    return bpf
  end
  local msg, e
  bpf, msg, e = sys.seccomp(bits)
  if not bpf then
    return nil, "container: " .. msg, e
  end
  seccomp_cache[key] = bpf
  return bpf
end

--- The capability bits of a checked caps value (a list, or nil: all).
function M.capbits(caps, last_cap)
  if caps == nil then
    return (1 << (last_cap + 1)) - 1
  end
  return process._capbits(caps)
end

--- The bits of the default set: capabilities beyond them were asked for
-- (--cap-add); a non-root user gets those as ambient ones (docker gives a
-- non-root user no capability at all).
M.DEFAULT_BITS = process._capbits(M.DEFAULT_CAPS)

-- --- the user ---------------------------------------------------------------

--- The entry of `key` (a name, or a number as text) in the text of a
-- passwd or group file: its fields, or nil.
local function entry(text, key)
  for line in (text or ""):gmatch("[^\n]+") do
    local f = {}
    for x in (line .. ":"):gmatch("([^:]*):") do
      f[#f + 1] = x
    end
    if f[1] == key or f[3] == key then
      return f
    end
  end
  return nil
end

local function id(v)
  return math.tointeger(tonumber(v))
end

--- The ids of a container's `user` ("uid[:gid]", "name[:group]", or
-- `{uid =, gid =, groups =}`) in the root `root` ("" for the machine's):
-- names from its /etc/passwd and /etc/group; a user listed there gets its
-- primary group and its supplementary ones, an unlisted uid group 0 (as
-- docker). Returns `{uid =, gid =, groups =}`, or nil and why.
function M.user(u, root, sys)
  if type(u) == "table" then
    return u
  end
  local su, sg = tostring(u):match("^([^:]+):?(.*)$")
  if not su then
    return nil, "'uid[:gid]' or 'name[:group]' expected, got '" .. tostring(u) .. "'"
  end
  local passwd = sys.read(root .. "/etc/passwd")
  local group = sys.read(root .. "/etc/group")
  local pw = entry(passwd, su)
  local uid = id(su) or (pw and id(pw[3]))
  if not uid then
    return nil, format("no user '%s' in %s/etc/passwd", su, root)
  end
  local gid
  if sg ~= "" then
    local gr = entry(group, sg)
    gid = id(sg) or (gr and id(gr[3]))
    if not gid then
      return nil, format("no group '%s' in %s/etc/group", sg, root)
    end
  else
    gid = pw and id(pw[4]) or 0
  end
  local groups = {}
  if pw then
    for line in (group or ""):gmatch("[^\n]+") do
      local g, members = line:match("^[^:]*:[^:]*:(%d+):(.*)$")
      for name in (members or ""):gmatch("[^,]+") do
        if name == pw[1] and id(g) ~= gid then
          groups[#groups + 1] = id(g)
        end
      end
    end
  end
  return { uid = uid, gid = gid, groups = groups }
end

--- Check a container's `user` value (raises naming the field).
function M.checkuser(fname, u, level, bad)
  if u == nil then
    return nil
  end
  if mtype(u) == "integer" then
    u = tostring(u)
  end
  if type(u) == "string" then
    if not u:match("^[%w_.][%w_.-]*$") and not u:match("^[%w_.][%w_.-]*:[%w_.][%w_.-]*$") then
      bad(fname, "user", "'uid[:gid]' or 'name[:group]' expected, got '" .. u .. "'", level + 1)
    end
    return u
  end
  if type(u) ~= "table" then
    bad(fname, "user", "'uid[:gid]' or {uid =, gid =, groups =} expected, got " .. type(u),
      level + 1)
  end
  return u
end

return M
