-- Spec helper: leak census, witnesses (iproute2, /proc), errno numbers, and
-- the fixtures several specs share (Lua in a child process, background
-- processes, busybox roots, what a lab leaves behind).
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

--- Assert that fn raises an error whose message contains the literal `text`.
function H.raises(text, fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error; expected: " .. text)
  assert.matches(text, tostring(err), 1, true)
end

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

--- The checkout (busted runs from it), and the environment that makes a
-- lua5.4 started there load isle from it.
H.ROOT = (H.sh("pwd"):gsub("\n$", ""))
H.LUA_ENV = "LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;'"

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

-- This process's open fds, counted in-process: an `ls` started through
-- io.popen can list them before popen has closed its copy of the pipe's
-- other end, one fd too many now and then.
local function count_fds()
  local core = require "isle.core"
  return #assert(core.netns_list("/proc/self/fd")) -- its own fd included, always
end

--- Pids whose cmdline is exactly argv.
function H.pids_of(argv)
  local want, t = table.concat(argv, "\0") .. "\0", {}
  for _, pid in ipairs(require("isle.core").netns_list("/proc") or {}) do
    if pid:match("^%d+$") and H.readfile("/proc/" .. pid .. "/cmdline") == want then
      t[#t + 1] = tonumber(pid)
    end
  end
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

--- Snapshot of what a spec could leak. Collects garbage first, so that
-- an object an earlier test dropped does not count as an open fd here.
function H.census()
  collectgarbage()
  collectgarbage()
  local pid = H.mypid()
  local links = H.ipj("link show") or {}
  local names = {}
  for _, l in ipairs(links) do names[#names + 1] = l.ifname end
  table.sort(names)
  return {
    fds = count_fds(),
    netns = #listdir("/run/netns"),
    links = table.concat(names, ","),
    mounts = count_mounts(H.readfile("/proc/" .. pid .. "/mountinfo")),
    children = #H.children(),
  }
end

--- A narrower census, of what this process alone could leak: fds, mounts
-- on os.tmpname() paths (/tmp/lua_*), children. For specs in which the
-- machine-wide netns, link and mount counts would flicker with whatever else
-- runs on the machine.
function H.own_census()
  collectgarbage()
  collectgarbage()
  local pid = H.mypid()
  local mounts = 0
  for l in (H.readfile("/proc/" .. pid .. "/mountinfo") or ""):gmatch("[^\n]+") do
    if l:find(" /tmp/lua_", 1, true) then mounts = mounts + 1 end
  end
  return { fds = count_fds(), mounts = mounts, children = #H.children() }
end

--- Assert nothing leaked since `before`, a snapshot taken by `census`
-- (H.census unless told). Waits briefly for the kernel's background
-- teardown of namespaces.
function H.assert_clean(before, census)
  census = census or H.census
  local after
  for _ = 1, 50 do
    collectgarbage()
    after = census()
    local same = true
    for k, v in pairs(before) do
      if after[k] ~= v then same = false end
    end
    if same then return after end
    H.sh("sleep 0.02")
  end
  assert.same(before, after)
  return after
end

--- Is the caller root? busted's `pending` exists only in the specs'
-- environment, so a root-only test says
-- `if not H.is_root() then return pending("needs root") end`.
function H.is_root()
  local s = H.readfile("/proc/self/status") or ""
  return s:match("\nUid:%s+0%s") ~= nil
end

--- Namespace id of kind for pid ("self" allowed), via readlink as a witness.
function H.nsid(pid, kind)
  local out = H.sh(string.format("readlink /proc/%s/ns/%s", tostring(pid), kind))
  return tonumber(out:match("%[(%d+)%]"))
end

--- Shell text that runs the command after it ("... PREFIX cmd args") with
-- `text` as /etc/subuid and /etc/subgid, bound in a throwaway mount
-- namespace (the machine's files stay as they are), and that file's path
-- (for the test's `finally` to remove).
function H.private_subids(text)
  local sub = os.tmpname()
  local f = assert(io.open(sub, "w"))
  f:write(text)
  f:close()
  H.sh("chmod 0644 " .. sub)
  return "unshare --mount --propagation private sh -c 'mount --bind " .. sub
    .. " /etc/subuid && mount --bind " .. sub .. " /etc/subgid && exec \"$0\" \"$@\"'", sub
end

--- Start `cmd` in the background (not our child); its pid once it runs
-- `comm` ("sleep" unless told), that is after its namespaces are set up.
-- Kill it with H.stop.
function H.start(cmd, comm)
  local pid = tonumber(H.sh(cmd .. " >/dev/null 2>&1 & echo $!"):match("%d+"))
  for _ = 1, 200 do
    local c = H.readfile("/proc/" .. pid .. "/comm")
    if c and c:gsub("\n$", "") == (comm or "sleep") then
      return pid
    end
    H.sh("sleep 0.01")
  end
  error("could not start: " .. cmd)
end

function H.stop(pid)
  if pid then
    H.sh("kill -9 " .. pid .. " 2>/dev/null")
  end
end

--- A pid that is certainly gone.
function H.deadpid()
  return tonumber(H.sh("sh -c 'echo $$'"):match("%d+"))
end

--- Lines of a uid_map/gid_map text as {inside, outside, count} lists.
function H.parse_map(s)
  local t = {}
  for a, b, c in (s or ""):gmatch("(%d+)%s+(%d+)%s+(%d+)") do
    t[#t + 1] = { tonumber(a), tonumber(b), tonumber(c) }
  end
  return t
end

--- Run Lua code in a child lua5.4 from /tmp (so the spec process keeps its
-- own namespaces and credentials). The code sees `isle` (from the
-- checkout), `ROOT`, `MYPID`, `nsid(kind[, pid])` (a namespace id: the inode of
-- /proc/PID/ns/KIND, the child's own unless told, read without a process:
-- before Linux 6.2 a process that unshared `time` cannot popen), `readf(path)` ("" when
-- unreadable) and `out(k, ...)`, which reports values back, joined by "|",
-- newlines as "\n". opts: user = true (run as uid/gid 65534), env = "K=V ...",
-- wrap = shell text put before it all (the same shell). Returns the reported
-- table, the raw output (stderr included) and H.sh's status values.
function H.child(code, opts)
  opts = opts or {}
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(string.format([[
package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
package.cpath = %q .. "/build/?.so;" .. package.cpath
local isle = require "isle"
local ROOT = %q
local MYPID = tonumber(io.open("/proc/self/stat"):read("a"):match("^(%%d+)"))
local function nsid(kind, pid)
  return (require("isle.core").ino("/proc/" .. (pid or MYPID) .. "/ns/" .. kind))
end
local function readf(p)
  local h = io.open(p)
  if not h then return "" end
  local s = h:read("a")
  h:close()
  return s
end
local function out(k, ...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  io.write(k, "=", (table.concat(t, "|"):gsub("\n", "\\n")), "\n")
  io.flush()
end
]], H.ROOT, H.ROOT, H.ROOT, H.ROOT))
  f:write(code)
  f:close()
  os.execute("chmod 0644 " .. path)
  local cmd = string.format("cd /tmp && %s %s %s /usr/bin/lua5.4 %s 2>&1",
    opts.wrap or "",
    opts.env and ("env " .. opts.env) or "",
    opts.user and "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups" or "",
    path)
  local raw, ok, how, status = H.sh(cmd)
  os.remove(path)
  local r = {}
  for k, v in raw:gmatch("([%w_]+)=([^\n]*)") do
    r[k] = v
  end
  return r, raw, ok, how, status
end

--- A busybox root in a fresh temp dir: bin/ with busybox and relative links
-- for its applets, and the (empty) directories named in `dirs`. The caller
-- removes it.
function H.busybox_root(dirs)
  local dir = os.tmpname()
  os.remove(dir)
  local mk = { dir .. "/bin" }
  for _, d in ipairs(dirs or {}) do mk[#mk + 1] = dir .. "/" .. d end
  local list, ok = H.sh(string.format("set -e; mkdir -p %s; cp /usr/bin/busybox %s/bin/; "
    .. "%s/bin/busybox --list", table.concat(mk, " "), dir, dir))
  assert(ok, "building the busybox root")
  -- the ~400 applet links in-process: one `ln` each cost tens of seconds
  -- per root in the VMs (TCG)
  local core = require "isle.core"
  for a in list:gmatch("[^\n]+") do
    if a ~= "busybox" then assert(core.symlink("busybox", dir .. "/bin/" .. a)) end
  end
  return dir
end

--- Everything a lab named `name` could have left behind: named netns and
-- /etc/netns entries NAME-*, /run/isle/NAME, mounts below either (nil when
-- clean, else a list joined by ", ").
function H.lab_debris(name)
  local core = require "isle.core"
  local left = {}
  for _, n in ipairs(core.netns_list("/run/netns") or {}) do
    if n:sub(1, #name + 1) == name .. "-" then left[#left + 1] = "netns " .. n end
  end
  for _, n in ipairs(core.netns_list("/etc/netns") or {}) do
    if n:sub(1, #name + 1) == name .. "-" then left[#left + 1] = "/etc/netns/" .. n end
  end
  if core.ino("/run/isle/" .. name) then left[#left + 1] = "/run/isle/" .. name end
  for line in (H.readfile("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
    local target = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if target:find("/run/isle/" .. name .. "/", 1, true)
      or target:find("/run/netns/" .. name .. "-", 1, true) then
      left[#left + 1] = "mount " .. target
    end
  end
  return #left > 0 and table.concat(left, ", ") or nil
end

return H
