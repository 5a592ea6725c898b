--- Ending every process of a lab: whoever started it (a service, `isle
-- exec`, a shell, a container on a host, `nsenter`), a process that is in
-- one of the lab's namespaces keeps that namespace alive. They are found
-- by the identities of the namespaces (`/proc/PID/ns/KIND` against the
-- lab's namespace files) and ended through pidfds: TERM, a grace period,
-- KILL; then the search runs again, until none is left (a process may
-- have started another meanwhile).
-- @module isle.lab.reap
local core = require "isle.core"
local sys = require "isle._sys"

local M = {}

local ipairs, pairs, format = ipairs, pairs, string.format

--- Seconds between TERM and KILL.
M.GRACE = 3
--- Seconds to wait for a process to end after KILL.
M.KILL_WAIT = 2
local ROUNDS = 8
local KINDS = { "net", "mnt", "uts", "time" }

local function key(st)
  return format("%d:%d", st.dev, st.ino)
end

--- The identities of the namespaces on `paths` (bound namespace files;
-- others, and missing ones, are skipped): a set of "dev:ino".
function M.identities(paths)
  local nsfs = core.stat("/proc/self/ns/net")
  local ids, n = {}, 0
  for _, path in ipairs(paths) do
    local st = core.stat(path)
    if st and nsfs and st.dev == nsfs.dev then
      ids[key(st)] = true
      n = n + 1
    end
  end
  return ids, n
end

-- Is process `pid` in one of the namespaces `ids`?
local function member(pid, ids)
  for _, kind in ipairs(KINDS) do
    local st = core.stat(format("/proc/%s/ns/%s", pid, kind))
    if st and ids[key(st)] then return true end
  end
  return false
end

--- The processes in the namespaces `ids` (pids), this one left out;
-- those in `first` (a set like `ids`) come first.
function M.find(ids, first)
  local me = tostring(sys.getpid())
  local a, b = {}, {}
  for _, pid in ipairs(sys.listdir("/proc")) do
    if pid:match("^%d+$") and pid ~= me and member(pid, ids) then
      local list = (first and member(pid, first)) and a or b
      list[#list + 1] = math.tointeger(tonumber(pid))
    end
  end
  table.move(b, 1, #b, #a + 1, a)
  return a
end

-- Open a pidfd of each of `pids` that is still in `ids` once it is open
-- (so that a reused pid is never signalled).
local function open(pids, ids)
  local t = {}
  for _, pid in ipairs(pids) do
    local box, fd = core.pidfd_open(pid)
    if box then
      if member(tostring(pid), ids) then
        t[#t + 1] = { box = box, fd = fd, pid = pid }
      else
        box:close()
      end
    end
  end
  return t
end

-- Wait until every process of `t` has ended or `secs` pass; those left.
local function wait(t, secs)
  local deadline = core.clock() + secs
  while #t > 0 do
    local fds = {}
    for i, x in ipairs(t) do fds[i] = x.fd end
    local left = deadline - core.clock()
    local ready = left > 0 and core.poll(fds, left) or {}
    local done = {}
    for _, fd in ipairs(ready) do done[fd] = true end
    local rest = {}
    for _, x in ipairs(t) do
      if done[x.fd] then x.box:close() else rest[#rest + 1] = x end
    end
    t = rest
    if left <= 0 or #ready == 0 then break end
  end
  return t
end

local function signal(t, sig)
  for _, x in ipairs(t) do core.pidfd_kill(x.fd, sig) end
end

--- End every process in the namespaces `ids` (from `identities`): TERM,
-- `M.GRACE` seconds, KILL; again while any is found.
-- @tparam table ids
-- @tparam[opt] table first identities whose processes get their signals
-- first (a supervisor, so that it restarts nothing)
-- @treturn int how many processes were ended
-- @treturn[opt] {int,...} pids that would not end
function M.sweep(ids, first)
  local ended, stuck = 0, {}
  for _ = 1, ROUNDS do
    local t = open(M.find(ids, first), ids)
    local new = false
    for _, x in ipairs(t) do
      if not stuck[x.pid] then new = true end
    end
    if not new then -- nothing, or only what would not end before
      for _, x in ipairs(t) do x.box:close() end
      break
    end
    signal(t, 15)
    local left = wait(t, M.GRACE)
    signal(left, 9)
    left = wait(left, M.KILL_WAIT)
    ended = ended + #t - #left
    stuck = {}
    for _, x in ipairs(left) do
      stuck[x.pid] = true
      x.box:close()
    end
  end
  local list = {}
  for pid in pairs(stuck) do list[#list + 1] = pid end
  table.sort(list)
  return ended, #list > 0 and list or nil
end

return M
