-- make demo: one process in fresh namespaces, and what the kernel tells it.
--
-- The child gets new user, pid, uts, mount and time namespaces: it is PID 1
-- with its own /proc, has its own hostname, is root inside through a uid map of
-- the caller's own uid, and its boot clock (uptime) runs a day ahead. It prints what it
-- sees and waits; meanwhile we look at the same process from outside, then
-- let it go. Nothing is left behind: the namespaces die with the process.
--
-- Run from the checkout root: make demo (or, after make,
-- LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' lua5.4 examples/demo.lua)
local isle = require "isle"

local DAY = 86400

local function readfile(path)
  local f = io.open(path, "r")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end

local function uptime(s)
  return tonumber(s:match("^(%S+)"))
end

local function status_field(pid, field)
  return (readfile("/proc/" .. pid .. "/status") or ""):match("\n" .. field .. ":%s*(%d+)")
end

-- Our own uid and gid become root inside.
local outside_uid = tonumber(status_field("self", "Uid"))
local outside_gid = tonumber(status_field("self", "Gid"))

-- The child prints what it sees, then waits for a line on stdin.
local script = [[
echo "pid      $$"
echo "hostname $(hostname)"
echo "uid      $(id -u) (uid_map: $(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'))"
echo "uptime   $(cut -d' ' -f1 /proc/uptime) s"
echo "procs    $(ls /proc | grep -c '^[0-9]') in its /proc"
read _ || true
]]

local p, err = isle.spawn {
  argv = { "sh", "-c", script },
  namespaces = { "user", "pid", "uts", "mnt", "time" },
  hostname = "isle-demo",
  uid_map = { { 0, outside_uid, 1 } },
  gid_map = { { 0, outside_gid, 1 } },
  time = { boottime = DAY, monotonic = DAY },
  mounts = { { "proc", "/proc" } },
  stdin = "pipe",
  stdout = "pipe",
}
if not p then
  io.stderr:write("demo: ", err, "\n")
  os.exit(1)
end

local inside = {}
for _ = 1, 5 do
  local line = p.stdout:read("l")
  if not line then
    break
  end
  inside[#inside + 1] = line
end
local host_uptime = uptime(readfile("/proc/uptime"))

print("Inside the new namespaces, the child reports:")
for _, line in ipairs(inside) do
  print("  " .. line)
end

-- p.pid is PID 1 inside. When spawn needed a helper there (it forks the
-- command after entering the time namespace from inside a user namespace),
-- the shell is that helper's child: look at the shell itself.
local shell_pid = p.pid
if inside[1] and not inside[1]:match("%s1$") then
  local kids = readfile(string.format("/proc/%d/task/%d/children", p.pid, p.pid)) or ""
  shell_pid = tonumber(kids:match("%d+")) or p.pid
end

print("\nThe same process seen from outside:")
print(string.format("  pid      %d%s", shell_pid,
  shell_pid ~= p.pid and string.format(" (child of %d, PID 1 inside)", p.pid) or ""))
print(string.format("  hostname %s", isle.gethostname()))
print(string.format("  uid      %s", status_field(shell_pid, "Uid") or "?"))
print(string.format("  uptime   %.2f s (a day less)", host_uptime))
print("\nNamespace ids (inside / outside):")
local mine = isle.nsinfo(tonumber(readfile("/proc/self/stat"):match("^%d+")))
local its = isle.nsinfo(shell_pid) or {}
for _, kind in ipairs { "user", "pid", "uts", "mnt", "time", "net" } do
  local a, b = its[kind], mine[kind]
  print(string.format("  %-5s %s / %s%s", kind, tostring(a), tostring(b),
    a == b and "  (shared)" or ""))
end

-- let the child finish; its namespaces go with it
p.stdin:close()
local ok, how, code = p:wait()
p:close()
print(string.format("\nchild exited: %s %s %s", tostring(ok), how, tostring(code)))
if not ok then
  os.exit(1)
end
