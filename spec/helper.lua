-- Spec helper: leak census, witnesses (iproute2, /proc), errno numbers.
-- Loaded by busted before every spec file (see .busted).
local H = {}
local assert = require "luassert"

local cjson_ok, cjson = pcall(require, "cjson")
H.json = cjson_ok and cjson or require "dkjson"

-- errno numbers (Linux x86_64 / generic)
H.E = {
  EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, EBADF = 9, ECHILD = 10,
  EAGAIN = 11, ENOMEM = 12, EACCES = 13, EBUSY = 16, EEXIST = 17, ENODEV = 19,
  ENOTDIR = 20, EINVAL = 22, ENOSPC = 28, ERANGE = 34, ENOTSUP = 95, EOPNOTSUPP = 95,
  EADDRNOTAVAIL = 99, ENETUNREACH = 101, ENOBUFS = 105, EUSERS = 87,
}

--- Run a shell command, return its stdout (trailing newline kept) and the
-- os.execute-style status.
function H.sh(cmd)
  local f = assert(io.popen(cmd, "r"))
  local out = f:read("a")
  local ok, how, code = f:close()
  return out, ok, how, code
end

--- Parse `ip -j ...` output (nil on empty output).
function H.ipj(args)
  local out = H.sh("ip -j " .. args .. " 2>/dev/null")
  if out == "" or out == "\n" then return nil end
  return H.json.decode(out)
end

function H.readfile(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- A name unique to this test run (includes the pid).
local counter = 0
function H.unique(prefix)
  counter = counter + 1
  return string.format("%s%d-%d", prefix or "isle", H.mypid(), counter)
end

function H.mypid()
  local s = H.readfile("/proc/self/stat")
  -- /proc/self here is the lua process itself (readfile does not fork)
  return tonumber(s:match("^(%d+)"))
end

local function listdir(path)
  local out = H.sh("ls -1A " .. path .. " 2>/dev/null")
  local t = {}
  for l in out:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

--- Children of this Lua process (pids), zombies included.
function H.children()
  local pid = H.mypid()
  local kids = {}
  for _, tid in ipairs(listdir("/proc/" .. pid .. "/task")) do
    local s = H.readfile(string.format("/proc/%d/task/%s/children", pid, tid)) or ""
    for c in s:gmatch("%d+") do
      -- the census's own `ls`/`ip` helpers are gone by now; keep real ones
      kids[#kids + 1] = tonumber(c)
    end
  end
  return kids
end

-- Mounts, without the state directories /run/netns and /run/isle: the
-- first `ip netns add` or lab makes each a (shared) mount of itself that
-- stays, by design, as iproute2 leaves /run/netns.
local function count_mounts(mountinfo)
  local n = 0
  for line in (mountinfo or ""):gmatch("[^\n]+") do
    local target = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if target ~= "/run/netns" and target ~= "/run/isle" then
      n = n + 1
    end
  end
  return n
end

--- Snapshot of what a spec could leak.
function H.census()
  local pid = H.mypid()
  local links = H.ipj("link show") or {}
  local names = {}
  for _, l in ipairs(links) do names[#names + 1] = l.ifname end
  table.sort(names)
  return {
    fds = #listdir("/proc/" .. pid .. "/fd"),
    netns = #listdir("/run/netns"),
    links = table.concat(names, ","),
    mounts = count_mounts(H.readfile("/proc/" .. pid .. "/mountinfo")),
    children = #H.children(),
  }
end

--- Assert nothing leaked since `before` (a census). Waits briefly for the
-- kernel's background teardown of namespaces.
function H.assert_clean(before)
  local after
  for _ = 1, 50 do
    collectgarbage()
    after = H.census()
    if after.netns == before.netns and after.links == before.links
      and after.mounts == before.mounts and after.children == before.children
      and after.fds == before.fds then
      return after
    end
    H.sh("sleep 0.02")
  end
  assert.same(before, after)
  return after
end

--- Is the caller root?
function H.is_root()
  local s = H.readfile("/proc/self/status") or ""
  return s:match("\nUid:%s+0%s") ~= nil
end

--- Namespace id of kind for pid ("self" allowed), via readlink as a witness.
function H.nsid(pid, kind)
  local out = H.sh(string.format("readlink /proc/%s/ns/%s", tostring(pid), kind))
  return tonumber(out:match("%[(%d+)%]"))
end

return H
