--- The cgroups of containers: the plan of a container's limits on the
-- machine's layout (pure: `layout`, `plan`), then create, join (through
-- descriptors), OOM report and removal.
--
-- cgroup v2 when every controller the limits need is available there
-- (Debian 12/13, Ubuntu 22.04+ boot pure v2): root's containers go under
-- `<v2 mount>/isle/` (a cgroup without processes, so controllers can be
-- delegated to it through `cgroup.subtree_control`, as docker's cgroupfs
-- driver does under `docker/`); an unprivileged caller's under its own
-- cgroup, which works where systemd delegated it. Files: `memory.max`,
-- `memory.swap.max`, `pids.max`, `cpu.max`. Otherwise cgroup v1, one
-- directory per controller under the caller's own cgroup there:
-- `memory.limit_in_bytes` (with `memory.memsw.limit_in_bytes` and
-- `memory.swappiness` where they exist), `pids.max`, `cpu.cfs_quota_us`.
-- Every directory is named `isle-<name>-<pid>-<n>`.
-- @module isle.container.cgroup
local core = require "isle.core"
local sys = require "isle._sys"

local M = {}

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local format = string.format
local ENOENT, EBUSY = 2, 16
local PERIOD = 100000 -- cpu period, microseconds

--- The machine's cgroup layout from the texts of /proc/self/mountinfo and
-- /proc/self/cgroup: `{v1 = {[controller] = mount}, v2 = mount, own = {v1 =
-- {[controller] = path}, v2 = path}}`. Pure.
function M.layout(mountinfo, cgroup)
  local t = { v1 = {}, own = { v1 = {} } }
  for line in (mountinfo or ""):gmatch("[^\n]+") do
    local mp, fstype, opts = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- (%S+) %S+ (%S+)")
    if fstype == "cgroup2" and not t.v2 then
      t.v2 = mp
    elseif fstype == "cgroup" then
      for o in opts:gmatch("[^,]+") do
        t.v1[o] = t.v1[o] or mp
      end
    end
  end
  for line in (cgroup or ""):gmatch("[^\n]+") do
    local id, ctrls, path = line:match("^(%d+):([^:]*):(.*)$")
    if id == "0" and ctrls == "" then
      t.own.v2 = path
    elseif ctrls then
      for c in ctrls:gmatch("[^,]+") do
        t.own.v1[c] = path
      end
    end
  end
  return t
end

local function join(dir, path)
  return ((dir .. "/" .. path):gsub("//+", "/"):gsub("(.)/$", "%1"))
end

local function has(list, word)
  return (list or ""):find("%f[%w]" .. word .. "%f[%W]") ~= nil
end

--- The controllers `limits` need, in a fixed order.
function M.controllers(limits)
  local want = {}
  for _, c in ipairs { "memory", "pids", "cpu" } do
    if limits[c] then
      want[#want + 1] = c
    end
  end
  return want
end

local function v2_files(limits)
  local files = {}
  if limits.memory then
    files[#files + 1] = { "memory.max", tostring(limits.memory) }
    files[#files + 1] = { "memory.swap.max", "0", optional = true }
  end
  if limits.pids then
    files[#files + 1] = { "pids.max", tostring(limits.pids) }
  end
  if limits.cpu then
    files[#files + 1] = { "cpu.max", format("%d %d", math.ceil(limits.cpu * PERIOD), PERIOD) }
  end
  return files
end

local function v1_files(c, limits)
  if c == "memory" then
    -- no swapping around the limit, where the kernel accounts swap
    return { { "memory.limit_in_bytes", tostring(limits.memory) },
      { "memory.memsw.limit_in_bytes", tostring(limits.memory), optional = true },
      { "memory.swappiness", "0", optional = true } }
  elseif c == "pids" then
    return { { "pids.max", tostring(limits.pids) } }
  end
  return { { "cpu.cfs_period_us", tostring(PERIOD) },
    { "cpu.cfs_quota_us", tostring(math.ceil(limits.cpu * PERIOD)) } }
end

--- The plan of the cgroups of `limits`: `{enable = {{dir, "+memory"}...},
-- create = {dir...}, groups = {{dir =, v2 =, controller =, files =
-- {{file, value, optional =}...}}...}}`, or nil and why. `layout` as from
-- `M.layout`, plus `controllers` and `subtree` (the texts of the v2
-- parent's `cgroup.controllers` and `cgroup.subtree_control`) and `root`
-- (the caller is root). Pure.
function M.plan(limits, leaf, layout)
  local want = M.controllers(limits)
  local v2 = layout.v2 and (layout.root or layout.own.v2)
  for _, c in ipairs(want) do
    v2 = v2 and has(layout.controllers, c)
  end
  if v2 then
    local parent = layout.root and join(layout.v2, "isle") or join(layout.v2, layout.own.v2)
    local p = { enable = {}, create = {}, groups = {} }
    if layout.root then
      -- the v2 root delegates to isle/, isle/ to the containers
      for _, c in ipairs(want) do
        if not has(layout.subtree, c) then
          p.enable[#p.enable + 1] = { layout.v2, "+" .. c }
        end
      end
      p.create[1] = parent
      for _, c in ipairs(want) do
        p.enable[#p.enable + 1] = { parent, "+" .. c }
      end
    else
      for _, c in ipairs(want) do
        if not has(layout.subtree, c) then
          p.enable[#p.enable + 1] = { parent, "+" .. c }
        end
      end
    end
    p.groups[1] = { dir = join(parent, leaf), v2 = true, files = v2_files(limits) }
    return p
  end
  local p = { enable = {}, create = {}, groups = {} }
  for _, c in ipairs(want) do
    local mp = layout.v1[c]
    if not mp then
      return nil, format("no %s controller (neither cgroup v2 nor v1)", c)
    end
    p.groups[#p.groups + 1] = { dir = join(join(mp, layout.own.v1[c] or "/"), leaf),
      controller = c, files = v1_files(c, limits) }
  end
  return p
end

--- The layout of this machine, for `M.plan`.
local function machine_layout()
  local t = M.layout(core.readfile("/proc/self/mountinfo"), core.readfile("/proc/self/cgroup"))
  t.root = core.ids() == 0
  if t.v2 then
    local parent = t.root and t.v2 or join(t.v2, t.own.v2 or "/")
    t.controllers = core.readfile(parent .. "/cgroup.controllers")
    t.subtree = core.readfile(parent .. "/cgroup.subtree_control")
  end
  return t
end

local function write(dir, file, value)
  local ok, msg, e = core.writefile(dir .. "/" .. file, value)
  if not ok then
    return nil, msg, e
  end
  return true
end

--- Create the cgroups of `limits` named `leaf`; `record(dir)` is called
-- before each directory is made (the caller's journal) and may fail.
-- Returns the list of groups (`{dir =, v2 =, controller =}`), or nil, msg,
-- errno (what was made stays for the journal's replay).
function M.create(limits, leaf, record)
  local p, why = M.plan(limits, leaf, machine_layout())
  if not p then
    return nil, "cgroup: " .. why, ENOENT
  end
  for _, dir in ipairs(p.create) do
    local ok, msg, e = core.mkdir(dir, 493)
    if not ok and e ~= 17 then
      return nil, msg, e
    end
  end
  for _, en in ipairs(p.enable) do
    local ok, msg, e = write(en[1], "cgroup.subtree_control", en[2])
    if not ok then
      return nil, msg, e
    end
  end
  for _, g in ipairs(p.groups) do
    local ok, msg, e = record(g.dir)
    if ok then
      ok, msg, e = core.mkdir(g.dir, 493)
    end
    for _, f in ipairs(ok and g.files or {}) do
      local done, m2, e2 = write(g.dir, f[1], f[2])
      if not done and not f.optional then
        ok, msg, e = nil, m2, e2
        break
      end
    end
    if not ok then
      return nil, msg, e
    end
    g.files = nil
  end
  return p.groups
end

--- Open `cgroup.procs` of each group for writing: the boxes and their fds
-- (a child joins through them after its root changed), or nil, msg, errno.
function M.open_procs(groups)
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

--- Was a process of these groups killed by the memory limit?
function M.oom_killed(groups)
  for _, g in ipairs(groups or {}) do
    local s
    if g.v2 then
      s = core.readfile(g.dir .. "/memory.events")
    elseif g.controller == "memory" or not g.controller then
      s = core.readfile(g.dir .. "/memory.oom_control")
    end
    local n = s and tonumber(s:match("oom_kill (%d+)"))
    if n and n > 0 then
      return true
    end
  end
  return false
end

--- Is `dir` a container's cgroup directory: `isle-*` under a cgroup mount?
-- (A journal's record is replayed only then.)
function M.owned(dir)
  if type(dir) ~= "string" or not dir:match("/isle%-[^/]+$") or dir:find("/%.%.?/") then
    return false
  end
  local t = M.layout(core.readfile("/proc/self/mountinfo"), nil)
  local mounts = { t.v2 }
  for _, mp in pairs(t.v1) do
    mounts[#mounts + 1] = mp
  end
  for _, mp in ipairs(mounts) do
    if dir:sub(1, #mp + 1) == mp .. "/" then
      return true
    end
  end
  return false
end

--- End every process in `dir` (SIGKILL through pidfds; cgroup.kill where
-- the kernel has it).
local function kill_all(dir)
  if core.writefile(dir .. "/cgroup.kill", "1") then
    return
  end
  for pid in (core.readfile(dir .. "/cgroup.procs") or ""):gmatch("%d+") do
    local box, fd = core.pidfd_open(math.tointeger(tonumber(pid)))
    if box then
      core.pidfd_kill(fd, 9)
      box:close()
    end
  end
end

--- Remove the directories (a list of groups or of paths), newest first,
-- ending what still runs in them and retrying while the kernel finishes
-- the exits. A missing directory is fine. true, or nil, msg, errno.
function M.remove(groups)
  local first_msg, first_e
  for i = #(groups or {}), 1, -1 do
    local dir = type(groups[i]) == "table" and groups[i].dir or groups[i]
    for try = 1, 200 do
      local ok, msg, e = core.rmdir(dir)
      if ok or e == ENOENT then
        break
      end
      if e ~= EBUSY or try == 200 then
        first_msg, first_e = first_msg or msg, first_e or e
        break
      end
      if try == 1 then
        kill_all(dir)
      end
      sys.sleep(0.005)
    end
  end
  if first_msg then
    return nil, first_msg, first_e
  end
  return true
end

return M
