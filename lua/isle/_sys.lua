--- Small file-system and process helpers of the isle modules (internal, not
-- public API): no argument checks, OS failures returned as `nil, msg, errno`.
-- Every descriptor is close-on-exec (they go through isle.core).
-- @module isle._sys
local core = require "isle.core"

local M = {}

local ENOENT, EEXIST = 2, 17

--- This process's pid (from /proc/self/stat: no fork, no cache).
function M.getpid()
  local s = core.readfile("/proc/self/stat") or ""
  return math.tointeger(tonumber(s:match("^(%d+)"))) or 0
end

--- A module loaded on its first use (a table that fills itself from
-- `require(name)` when first indexed): what a command does not need it
-- does not load.
function M.lazy(name)
  return setmetatable({}, { __index = function(t, k)
    local m = require(name)
    setmetatable(t, { __index = m })
    return m[k]
  end })
end

--- Sleep `seconds` (nanosleep).
M.sleep = core.sleep

--- Does `path` exist (stat)?
function M.exists(path)
  return core.ino(path) ~= nil
end

--- mkdir -p with `mode` (default 0755) for the directories it creates.
function M.mkdirs(path, mode)
  local acc = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    acc = acc .. "/" .. part
    local ok, msg, e = core.mkdir(acc, mode or 493)
    if not ok and e ~= EEXIST then
      return nil, msg, e
    end
  end
  return true
end

--- Names in a directory (empty when it is missing), unsorted.
function M.listdir(path)
  return core.netns_list(path) or {}
end

--- Write `data` to `path` (created or truncated, mode 0644 less the umask;
-- `mode` "a" appends).
function M.writefile(path, data, mode)
  local f, msg, e = core.fopen(path, mode or "w")
  if not f then
    return nil, msg, e
  end
  local ok
  ok, msg, e = f:write(data)
  if not ok then
    f:close()
    return nil, msg, e
  end
  return f:close()
end

--- Remove a file; a missing one is fine.
function M.rmfile(path)
  local ok, msg, e = os.remove(path)
  if not ok and e ~= ENOENT then
    return nil, msg, e
  end
  return true
end

--- Detach-unmount `path` (not mounted is fine) and remove it.
function M.unbind(path)
  core.umount(path, core.MNT.detach)
  return M.rmfile(path)
end

return M
