--- Named containers: their state, one small journal per container.
--
-- The state lives in `/run/isle/containers/NAME/journal` for root,
-- `$XDG_RUNTIME_DIR/isle/containers/NAME/journal` for others (without
-- XDG_RUNTIME_DIR, `/tmp/isle-UID/containers`): directories 0700, the
-- journal 0600; for an unprivileged caller every directory from the base on
-- must be its own and writable by nobody else, or the registry refuses it.
-- A name is checked (core.badname's rule and `plan.NAME`) before any path is
-- built from it.
--
-- The journal is written before each act, one record a line:
--
--     owner PID START       the process that runs the container (claim)
--     exec CAPS NNP ROOTLESS ENV...   what `enter` needs
--     ctx PRIVILEGED USER KEEP  the rest of it (USER "-": none); KEEP: the
--                           state stays after the end (exit status, log)
--     argv ARG...           the command
--     cgroup DIR            before DIR is made
--     pid PID START TIME    the container's PID 1, once it runs (TIME: epoch)
--     exit CODE HOW TIME [oom]   its end, recorded by the owner (KEEP)
--
-- so that whatever kills the owner at any point leaves a state from which
-- `remove` (used by `isle stop` and by the next run of that name) ends the
-- container and removes its cgroups and the directory. PIDs are recorded
-- with their start time (/proc/PID/stat), so a reused pid is never taken
-- for the container.
-- @module isle.container.registry
local core = require "isle.core"
local C = require "isle._check"
local sys = require "isle._sys"
local cgroup = sys.lazy "isle.container.cgroup"
local plan = require "isle.container.plan"

local M = {}

local pairs, ipairs, tostring = pairs, ipairs, tostring
local format, concat = string.format, table.concat
local EEXIST, ENOENT, EACCES = 17, 2, 13

-- Test-only fault point (spec/cli_run_spec.lua): ISLE_FAULT=run:K
-- makes the process SIGKILL itself right after journal record K, to prove
-- that a kill at any step leaves state that `remove` cleans. Read once.
local FAULT = math.tointeger(tonumber((os.getenv("ISLE_FAULT") or ""):match("^run:(%d+)$")))

--- Start time of process `pid` (field 22 of /proc/PID/stat) and its state
-- (field 3), or nil.
local function stat(pid)
  local s = core.readfile(format("/proc/%d/stat", pid))
  local rest = s and s:match("%) (.*)$")
  if not rest then
    return nil
  end
  local i, state = 0, nil
  for f in rest:gmatch("%S+") do
    i = i + 1
    if i == 1 then
      state = f
    elseif i == 20 then
      return f, state
    end
  end
  return nil
end

--- Start time of process `pid` (field 22 of /proc/PID/stat), or nil.
function M.starttime(pid)
  return (stat(pid))
end

--- Is process `pid` the one that started at `start`, and not yet ended (a
-- zombie waiting for its parent has ended)?
function M.alive(pid, start)
  if pid == nil or start == nil then
    return false
  end
  local t, state = stat(pid)
  return t == start and state ~= "Z" and state ~= "X"
end

--- Check the directory `path` is the caller's own and nobody else's to
-- write (for an unprivileged caller); make it (0700) when missing.
local function owned_dir(path, uid, nomake)
  local ok, msg, e = true, nil, nil
  if not nomake then
    ok, msg, e = core.mkdir(path, 448)
  end
  if not ok and e ~= EEXIST then
    return nil, msg, e
  end
  if uid == 0 then
    return true
  end
  local st
  st, msg, e = core.lstat(path)
  if not st then
    return nil, msg, e
  end
  if st.type ~= "dir" or st.uid ~= uid or st.mode & 18 ~= 0 then -- 022: group, other write
    return nil, format("state directory %s is not the caller's own (owner %d, mode %o)",
      path, st.uid, st.mode), EACCES
  end
  return true
end

--- The state directory of an unprivileged caller (made when missing,
-- checked): `$XDG_RUNTIME_DIR/isle` (that directory itself must be the
-- caller's own) or `/tmp/isle-UID`; or nil, msg, errno. Its `containers`
-- holds the named containers, its `labs` the labs (isle.lab.context).
function M.userdir()
  local uid = core.ids()
  local xdg = os.getenv("XDG_RUNTIME_DIR")
  xdg = xdg and xdg:sub(1, 1) == "/" and xdg:gsub("/+$", "") or nil
  local top = xdg and xdg .. "/isle" or format("/tmp/isle-%d", uid)
  local ok, msg, e = true, nil, nil
  if xdg then
    ok, msg, e = owned_dir(xdg, uid, true)
  end
  if ok then
    ok, msg, e = owned_dir(top, uid)
  end
  if not ok then
    return nil, msg, e
  end
  return top
end

--- The directory of the named containers (made when missing, checked), or
-- nil, msg, errno. Inside the lab namespaces of an unprivileged user (root
-- there, isle.lab.context) it is that user's.
function M.base()
  local uid = core.ids()
  local top, msg, e
  if uid == 0 then
    local s = core.readfile("/run/.isle-holder") -- the holder's marker
    top = s and s:match("^%d+ (.-)\n?$")
    if not top then
      sys.mkdirs("/run/isle", 448)
      top = "/run/isle"
    end
  else
    top, msg, e = M.userdir()
    if not top then
      return nil, msg, e
    end
  end
  local ok
  ok, msg, e = owned_dir(top .. "/containers", uid)
  if not ok then
    return nil, msg, e
  end
  return top .. "/containers"
end

--- Raise unless `name` is a container name.
function M.checkname(fname, name, level)
  return C.name(fname, "name", name, (level or 2) + 1, plan.NAME, 64)
end

-- --- records --------------------------------------------------------------

local function encode(v)
  return (tostring(v):gsub("[^%w._/:=,+@-]", function(ch)
    return format("%%%02X", ch:byte())
  end))
end

local function decode(v)
  return (v:gsub("%%(%x%x)", function(h)
    return string.char(tonumber(h, 16))
  end))
end

--- The records of a journal's text, as a state table: `{owner = {pid,
-- start}, pid = {pid, start}, cgroups = {dir...}, caps = {...}|nil,
-- no_new_privs =, rootless =, env = {NAME = value}}`.
function M.parse(text)
  local st = { cgroups = {} }
  for line in (text or ""):gmatch("[^\n]+") do
    local f = {}
    for w in line:gmatch("%S+") do
      f[#f + 1] = decode(w)
    end
    local key = f[1]
    if key == "owner" or key == "pid" then
      st[key] = { math.tointeger(tonumber(f[2])), f[3] }
      if key == "pid" then
        st.started = tonumber(f[4])
      end
    elseif key == "ctx" then
      st.privileged, st.user, st.keep = f[2] == "1", f[3] ~= "-" and f[3] or nil, f[4] == "1"
    elseif key == "argv" then
      st.argv = { table.unpack(f, 2) }
    elseif key == "exit" then
      st.exit = { code = math.tointeger(tonumber(f[2])), how = f[3], time = tonumber(f[4]),
        oom = f[5] == "oom" }
    elseif key == "cgroup" and f[2] then
      st.cgroups[#st.cgroups + 1] = f[2]
    elseif key == "exec" then
      st.caps = nil
      if f[2] ~= "all" then
        st.caps = {}
        for c in (f[2] or ""):gmatch("[^,]+") do
          st.caps[#st.caps + 1] = c
        end
      end
      st.no_new_privs, st.rootless = f[3] == "1", f[4] == "1"
      st.env = {}
      for i = 5, #f do
        local k, v = f[i]:match("^([^=]+)=(.*)$")
        if k then
          st.env[k] = v
        end
      end
    end
  end
  return st
end

local Journal = {}
Journal.__index = Journal

--- Append one record (and flush it: a kill right after finds it).
function Journal:record(key, ...)
  local words = { key }
  for i = 1, select("#", ...) do
    words[#words + 1] = encode(select(i, ...))
  end
  local ok, msg, e = self.file:write(concat(words, " "), "\n")
  if ok then
    ok, msg, e = self.file:flush()
  end
  if not ok then
    return nil, msg, e
  end
  self.n = self.n + 1
  if FAULT == self.n then
    local _, fd = core.pidfd_open(sys.getpid())
    core.pidfd_kill(fd, 9)
  end
  return true
end

--- The exec record of a container's context (`env` a table).
function Journal:exec(caps, no_new_privs, rootless, env)
  local list = {}
  for k, v in pairs(env or {}) do
    list[#list + 1] = k .. "=" .. v
  end
  table.sort(list)
  return self:record("exec", caps and concat(caps, ",") or "all", no_new_privs and 1 or 0,
    rootless and 1 or 0, table.unpack(list))
end

--- The ctx and argv records of a container (see above).
function Journal:context(privileged, user, keep, argv)
  if type(user) == "table" then
    user = tostring(user.uid or "") .. (user.gid and ":" .. user.gid or "")
  end
  local ok, msg, e = self:record("ctx", privileged and 1 or 0, user or "-", keep and 1 or 0)
  if ok then
    ok, msg, e = self:record("argv", table.unpack(argv))
  end
  return ok, msg, e
end

function Journal:close()
  if self.file then
    self.file:close()
    self.file = nil
  end
end

-- --- lifecycle ------------------------------------------------------------

--- The state word of a loaded state: "running", "exited" (its end
-- recorded), "starting" (its owner runs, no PID 1 yet) or "dead" (ended
-- with nobody to record it: a crash, a kill).
function M.state(st)
  if st.running then
    return "running"
  elseif st.exit then
    return "exited"
  elseif st.owned and not st.pid then
    return "starting"
  end
  return "dead"
end

--- Append one record to the journal of the state `st` (its owner, after
-- the start: the end).
function M.append(st, key, ...)
  local f, msg, e = core.fopen(st.dir .. "/journal", "a", 384)
  if not f then
    return nil, msg, e
  end
  local words = { key }
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    words[#words + 1] = v ~= nil and encode(v) or nil
  end
  local ok
  ok, msg, e = f:write(concat(words, " "), "\n")
  f:close()
  return ok and true, msg, e
end

--- The state of container `name`: the parsed journal plus `name`, `dir`,
-- `running` (its PID 1 alive) and `owned` (its owner alive); or nil, msg,
-- errno when there is none.
function M.load(name)
  local base, msg, e = M.base()
  if not base then
    return nil, msg, e
  end
  local dir = base .. "/" .. name
  local text = core.readfile(dir .. "/journal")
  if not text then
    if not core.ino(dir) then
      return nil, format("no container named '%s'", name), ENOENT
    end
    text = ""
  end
  local st = M.parse(text)
  st.name, st.dir = name, dir
  st.running = st.pid ~= nil and M.alive(st.pid[1], st.pid[2])
  st.owned = st.owner ~= nil and M.alive(st.owner[1], st.owner[2])
  return st
end

--- End what a state records and remove it: the container's PID 1 (KILL),
-- its cgroups (with what still runs in them), the journal, the directory.
-- Idempotent; true, or nil, msg, errno.
function M.remove(st)
  if st.running then
    local box, fd = core.pidfd_open(st.pid[1])
    if box then
      core.pidfd_kill(fd, 9)
      core.pidfd_wait(fd, 5)
      box:close()
    end
  end
  -- a started container's owner (its monitor, or a foreground isle run)
  -- records its end by path (M.append): let it, or it makes the journal
  -- again between the unlink below and the rmdir
  local owner = st.owned and st.pid and st.owner[1]
  if owner and owner ~= sys.getpid() then
    local box, fd = core.pidfd_open(owner)
    if box and M.alive(owner, st.owner[2]) then
      core.pidfd_wait(fd, 5)
    end
    if box then
      box:close()
    end
  end
  local dirs = {}
  for _, d in ipairs(st.cgroups) do
    if cgroup.owned(d) then
      dirs[#dirs + 1] = d
    end
  end
  local ok, msg, e = cgroup.remove(dirs)
  sys.rmfile(st.dir .. "/journal")
  sys.rmfile(st.dir .. "/log")
  local done, m2, e2 = core.rmdir(st.dir)
  if not done and e2 ~= ENOENT and ok then
    ok, msg, e = nil, m2, e2
  end
  return ok, msg, e
end

--- Claim `name` for a new container: its directory and journal, with the
-- `owner` record (this process). A stale state of that name (owner and
-- container gone) is removed first. Returns the Journal, or nil, msg, errno
-- (EEXIST when a container of that name lives).
function M.claim(name)
  local base, msg, e = M.base()
  if not base then
    return nil, msg, e
  end
  local dir = base .. "/" .. name
  local ok
  for _ = 1, 2 do
    ok, msg, e = core.mkdir(dir, 448)
    if ok or e ~= EEXIST then
      break
    end
    local st = M.load(name)
    if st and (st.running or st.owned) then
      return nil, format("a container named '%s' is running", name), EEXIST
    end
    if st then
      M.remove(st)
    end
  end
  if not ok then
    return nil, msg, e
  end
  local f
  f, msg, e = core.fopen(dir .. "/journal", "wx", 384)
  if not f then
    core.rmdir(dir)
    return nil, msg, e
  end
  local j = setmetatable({ file = f, n = 0, name = name, dir = dir }, Journal)
  local pid = sys.getpid()
  ok, msg, e = j:record("owner", pid, M.starttime(pid))
  if not ok then
    j:close()
    M.remove({ cgroups = {}, dir = dir })
    return nil, msg, e
  end
  return j
end

--- Names of the containers with a state, sorted.
function M.list()
  local base = M.base()
  if not base then
    return {}
  end
  local names = {}
  for _, n in ipairs(sys.listdir(base)) do
    if not core.badname(n) and n:match(plan.NAME) then
      names[#names + 1] = n
    end
  end
  table.sort(names)
  return names
end

return M
