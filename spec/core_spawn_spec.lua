-- isle.spawn / isle.clone / Process: the classic namespace experiments,
-- asserted against what the kernel reports.
local H = require "spec.helper"
local isle = require "isle"
local core = require "isle.core"
local E = H.E

-- run argv in a spawn spec, return stdout and the wait triple
local function run(spec)
  spec.stdout = "pipe"
  local p, msg, e = isle.spawn(spec)
  assert(p, msg)
  local out = p.stdout:read("a")
  local ok, how, code = p:wait()
  p:close()
  return out, ok, how, code, e
end

-- a process that stays alive until we write a line to it
local function hold(spec)
  spec.stdin = "pipe"
  spec.stdout = "pipe"
  local p = assert(isle.spawn(spec))
  local first = p.stdout:read("l")
  return p, first
end

local function release(p)
  p.stdin:write("\n")
  p.stdin:flush()
  local rest = p.stdout:read("a")
  local ok, how, code = p:wait()
  p:close()
  return rest, ok, how, code
end

describe("isle.spawn", function()
  local before
  before_each(function()
    before = H.census()
  end)
  after_each(function()
    H.assert_clean(before)
  end)

  describe("uts", function()
    it("sets the child's hostname, leaves the parent's alone, and the uts ids differ #root", function()
      local mine = H.sh("hostname")
      local p, first = hold {
        argv = { "sh", "-c", "hostname; read x" },
        namespaces = { "uts" },
        hostname = "isle-box",
        domainname = "isle.test",
      }
      assert.equal("isle-box", first)
      assert.not_equal(H.nsid("self", "uts"), H.nsid(p.pid, "uts"))
      assert.equal(H.nsid(p.pid, "uts"), p:nsid("uts"))
      release(p)
      assert.equal(mine, H.sh("hostname"))
    end)
  end)

  describe("ipc", function()
    it("hides a SysV message queue made outside #root", function()
      local id = assert(tonumber(H.sh("ipcmk -Q"):match("(%d+)")))
      finally(function()
        H.sh("ipcrm -q " .. id)
      end)
      local inside = run { argv = { "ipcs", "-q" }, namespaces = { "ipc" } }
      local outside = run { argv = { "ipcs", "-q" } }
      assert.is_nil(inside:match("%f[%d]" .. id .. "%f[%D]"))
      assert.truthy(outside:match("%f[%d]" .. id .. "%f[%D]"))
    end)
  end)

  describe("pid", function()
    it("makes the child PID 1, and a fresh /proc lists only its processes #root", function()
      local out = run {
        argv = { "sh", "-c", "echo $$; echo /proc/[0-9]*" },
        namespaces = { "pid", "mnt" },
        mounts = { { "proc", "/proc" } },
      }
      assert.equal("1\n/proc/1\n", out)
    end)

    it("reaps orphans with init = true and returns the command's status #root", function()
      local out, ok, how, code = run {
        argv = { "sh", "-c",
          "(sleep 0.1 &); sleep 0.5; echo $$; cat /proc/[0-9]*/stat | cut -d' ' -f3 | sort | uniq -c; exit 3" },
        namespaces = { "pid", "mnt" },
        mounts = { { "proc", "/proc" } },
        init = true,
      }
      assert.is_nil(ok)
      assert.same({ "exit", 3 }, { how, code })
      local pid = out:match("^(%d+)")
      assert.equal("2", pid) -- the command runs under the init, PID 1
      assert.is_nil(out:match(" Z\n"), "a zombie is left: " .. out)
    end)

    it("forwards TERM through the init to the command #root", function()
      local p, first = hold {
        argv = { "sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done" },
        namespaces = { "pid" },
        init = true,
      }
      assert.equal("ready", first)
      assert.is_true(p:kill("TERM"))
      local rest = p.stdout:read("a")
      local ok, how, code = p:wait()
      p:close()
      assert.equal("got-term\n", rest)
      assert.same({ nil, "exit", 7 }, { ok, how, code })
    end)
  end)

  describe("mnt", function()
    it("keeps a mount made inside out of the parent's mountinfo #root", function()
      local dir = H.sh("mktemp -d"):gsub("\n$", "")
      finally(function()
        H.sh("rmdir " .. dir)
      end)
      local out = run {
        argv = { "cat", "/proc/self/mountinfo" },
        namespaces = { "mnt" },
        mounts = { { source = "isle-spec", target = dir, type = "tmpfs" } },
      }
      assert.truthy(out:find(" " .. dir .. " ", 1, true))
      assert.falsy(H.readfile("/proc/self/mountinfo"):find(" " .. dir .. " ", 1, true))
    end)

    it("mounts a bind read-only #root", function()
      local out, ok = run {
        argv = { "sh", "-c", "touch /mnt/x 2>&1; echo rc=$?" },
        namespaces = { "mnt" },
        mounts = { { "bind", "/tmp", "/mnt", ro = true } },
      }
      assert.is_true(ok)
      assert.truthy(out:find("Read%-only file system"))
    end)

    it("pivots into a rootfs #root", function()
      local dir = H.sh("mktemp -d"):gsub("\n$", "")
      finally(function()
        H.sh("rm -rf " .. dir)
      end)
      H.sh("mkdir -p " .. dir .. "/bin && cp /bin/busybox " .. dir .. "/bin/ 2>/dev/null || cp "
        .. "$(command -v busybox) " .. dir .. "/bin/ 2>/dev/null; touch " .. dir .. "/marker")
      if not H.readfile(dir .. "/bin/busybox") then
        pending("busybox-static is not installed")
        return
      end
      local out = run {
        argv = { "/bin/busybox", "ls", "/" },
        namespaces = { "mnt" },
        rootfs = dir,
      }
      assert.equal("bin\nmarker\n", out)
    end)
  end)

  describe("user", function()
    it("shows unmapped ids as the overflow id 65534", function()
      local out = run { argv = { "sh", "-c", "id -u; id -g" }, namespaces = { "user" } }
      assert.equal("65534\n65534\n", out)
    end)

    it("maps root to 0 inside and the map reads back from /proc #root", function()
      local p, first = hold {
        argv = { "sh", "-c", "id -u; read x" },
        namespaces = { "user" },
        uid_map = { { 0, 0, 1 }, { 1, 100000, 1000 } },
        gid_map = { { 0, 0, 1 } },
      }
      assert.equal("0", first)
      assert.same({ { 0, 0, 1 }, { 1, 100000, 1000 } },
        H.parse_map(H.readfile("/proc/" .. p.pid .. "/uid_map")))
      release(p)
    end)

    it("lets an unprivileged user map its own uid to root #userns", function()
      if not H.is_root() then
        pending("needs root to drop to an unprivileged uid")
        return
      end
      local _, out, ok = H.child([[
        local p = assert(isle.spawn{argv = {"sh", "-c", "id -u; cat /proc/self/uid_map"},
          namespaces = {"user"}, uid_map = {{0, 65534, 1}}, gid_map = {{0, 65534, 1}}})
        assert(p:wait())]], { user = true })
      assert.is_true(ok, out)
      local id, a, b, c = out:match("^(%d+)\n%s*(%d+)%s+(%d+)%s+(%d+)")
      assert.same({ "0", "0", "65534", "1" }, { id, a, b, c })
    end)
    it("maps a full range through newuidmap/newgidmap for an unprivileged user #userns", function()
      if not H.is_root() then
        pending("needs root to drop to an unprivileged uid and to add /etc/subuid entries")
        return
      end
      if H.sh("command -v newuidmap") == "" then
        pending("newuidmap is not installed (the uidmap package)")
        return
      end
      local saved_u, saved_g = H.readfile("/etc/subuid") or "", H.readfile("/etc/subgid") or ""
      finally(function()
        local f = assert(io.open("/etc/subuid", "w")); f:write(saved_u); f:close()
        f = assert(io.open("/etc/subgid", "w")); f:write(saved_g); f:close()
      end)
      local f = assert(io.open("/etc/subuid", "a")); f:write("nobody:200000:65536\n"); f:close()
      f = assert(io.open("/etc/subgid", "a")); f:write("nobody:200000:65536\n"); f:close()
      local _, out, ok = H.child([[
        local p = assert(isle.spawn{argv = {"cat", "/proc/self/uid_map", "/proc/self/gid_map"},
          namespaces = {"user"}, uid_map = {{0, 65534, 1}, {1, 200000, 65536}},
          gid_map = {{0, 65534, 1}, {1, 200000, 65536}}})
        assert(p:wait())]], { user = true })
      assert.is_true(ok, out)
      assert.same({ { 0, 65534, 1 }, { 1, 200000, 65536 }, { 0, 65534, 1 }, { 1, 200000, 65536 } },
        H.parse_map(out))
    end)
  end)

  describe("user switch", function()
    it("becomes 0 in a new user namespace whose map has inside 0 #root", function()
      local out = run { namespaces = { "user" }, uid_map = { { 0, 12345, 1 } }, argv = { "id", "-u" } }
      assert.equal("0\n", out)
      out = run { namespaces = { "user" }, uid_map = { { 0, 12345, 1 } },
        gid_map = { { 0, 23456, 1 } }, argv = { "sh", "-c", "id -u; id -g; cat /proc/self/status" } }
      assert.matches("^0\n0\n", out)
      assert.matches("\nUid:%s+0%s+0%s+0%s+0\n", out)
    end)

    it("runs as `user` (groups, gid, uid) #root", function()
      local out = run { argv = { "sh", "-c", "id -u; id -g; id -G; grep CapEff /proc/self/status" },
        user = "1000:1001" }
      assert.equal("1000\n1001\n1001\nCapEff:\t0000000000000000\n", out)
      out = run { argv = { "id", "-G" }, user = { uid = 1000, gid = 1000, groups = { 5, 7 } } }
      assert.equal("1000 5 7\n", out)
      -- in a new user namespace, after becoming 0 there: the ids of the map
      out = run { argv = { "sh", "-c", "id -u; id -g" }, namespaces = { "user" },
        uid_map = { { 0, 100000, 2000 } }, gid_map = { { 0, 100000, 2000 } }, user = "1000:1000" }
      assert.equal("1000\n1000\n", out)
    end)

    it("keeps the listed capabilities for a non-root user (ambient) #root", function()
      local out = run { argv = { "grep", "-E", "^Cap(Eff|Amb)", "/proc/self/status" },
        user = "1000:1000", caps = { "net_raw" } }
      assert.equal("CapEff:\t0000000000002000\nCapAmb:\t0000000000002000\n", out)
    end)

    it("names an id it cannot switch to, and raises for a malformed user", function()
      local p, msg, e = isle.spawn { argv = { "true" }, namespaces = { "user" },
        uid_map = { { 0, H.is_root() and 0 or tonumber(H.sh("id -u")), 1 } }, user = "1000" }
      assert.is_nil(p)
      assert.equal("spawn: setresuid 1000: Invalid argument", msg)
      assert.equal(E.EINVAL, e)
      assert.has_error(function() isle.spawn { argv = { "true" }, user = "nobody" } end,
        "bad argument #1 to 'spawn' (user: 'uid[:gid]' expected, got 'nobody')")
      assert.has_error(function() isle.spawn { argv = { "true" }, user = { uid = -1 } } end,
        "bad argument #1 to 'spawn' (user.uid: id in [0, 4294967294] expected)")
      assert.has_error(function() isle.spawn { argv = { "true" }, user = { name = "x" } } end,
        "bad argument #1 to 'spawn' (user: unknown field 'name')")
    end)
  end)

  describe("net", function()
    it("has only lo, and it is down #root", function()
      local out = run { argv = { "ip", "-j", "link" }, namespaces = { "net" } }
      local links = H.json.decode(out)
      assert.equal(1, #links)
      assert.equal("lo", links[1].ifname)
      for _, f in ipairs(links[1].flags) do
        assert.not_equal("UP", f)
      end
    end)
  end)

  describe("cgroup", function()
    it("reads 0::/ inside a new cgroup namespace #root", function()
      local out = run { argv = { "cat", "/proc/self/cgroup" }, namespaces = { "cgroup" } }
      assert.truthy(out:find("^0::/\n") or out:find("\n0::/\n"), out)
      for line in out:gmatch("[^\n]+") do
        assert.truthy(line:find(":/$"), line)
      end
    end)
  end)

  describe("time", function()
    it("shifts /proc/uptime and CLOCK_MONOTONIC by the offsets #root", function()
      local p = assert(isle.spawn {
        fn = function()
          io.write(H.readfile("/proc/uptime"):match("^(%S+)"), " ", core.clock("monotonic"), "\n")
          return 0
        end,
        namespaces = { "time" },
        time = { boottime = 86400, monotonic = 3600.5 },
        stdout = "pipe",
      })
      local up, mono = p.stdout:read("n", "n")
      assert.same({ true, "exit", 0 }, { p:wait() })
      p:close()
      local my_up = tonumber(H.readfile("/proc/uptime"):match("^(%S+)"))
      local my_mono = core.clock("monotonic")
      assert.near(86400, up - my_up, 5)
      assert.near(3600.5, mono - my_mono, 5)
      -- the caller and its later children stay in the original time namespace
      assert.equal(H.nsid("self", "time"), core.ino("/proc/self/ns/time_for_children"))
      local later = run { argv = { "cat", "/proc/uptime" } }
      assert.near(my_up, tonumber(later:match("^(%S+)")), 5)
    end)

    it("works together with a new user namespace (the offsets are set inside) #root", function()
      local out = run {
        argv = { "cat", "/proc/uptime" },
        namespaces = { "user", "time" },
        uid_map = { { 0, 0, 1 } },
        time = { boottime = 86400 },
      }
      local my_up = tonumber(H.readfile("/proc/uptime"):match("^(%S+)"))
      assert.near(86400, tonumber(out:match("^(%S+)")) - my_up, 5)
    end)

    it("lets an init in a new time namespace make its command (vfork-style there) #root", function()
      -- Linux < 6.2 refuses a CLONE_VM clone from a process whose time
      -- namespace differs from its time_for_children; the init's are equal
      -- on both sides (parent-made, child-made with a user namespace)
      for _, userns in ipairs { false, true } do
        local out, ok = run {
          argv = { "sh", "-c", "echo $$; cat /proc/uptime" },
          namespaces = userns and { "user", "time", "pid" } or { "time", "pid" },
          uid_map = userns and { { 0, 0, 1 } } or nil,
          time = { boottime = 86400 }, init = true,
        }
        assert.is_true(ok, out)
        local my_up = tonumber(H.readfile("/proc/uptime"):match("^(%S+)"))
        assert.equal("2", out:match("^(%d+)\n"))
        assert.near(86400, tonumber(out:match("\n(%S+)")) - my_up, 5)
      end
    end)
  end)

  describe("join (setns)", function()
    it("enters all namespaces of a process through a pidfd, like nsenter/docker exec #root", function()
      local a = hold {
        argv = { "sh", "-c", "echo up; read x" },
        namespaces = { "uts", "net", "ipc", "mnt", "pid" },
        hostname = "first",
      }
      local b, name = hold { argv = { "sh", "-c", "hostname; readlink /proc/self/ns/pid; read x" },
        join = a }
      assert.equal("first", name)
      for _, kind in ipairs { "uts", "net", "ipc", "mnt" } do
        assert.equal(H.nsid(a.pid, kind), H.nsid(b.pid, kind), kind)
        assert.not_equal(H.nsid("self", kind), H.nsid(b.pid, kind), kind)
      end
      -- a pid namespace is entered by the children of the joiner: it hands
      -- off to its fork, which is the Process (our child, in that namespace)
      local pidns = tonumber(b.stdout:read("l"):match("%[(%d+)%]"))
      assert.equal(H.nsid(a.pid, "pid"), pidns)
      assert.not_equal(H.nsid("self", "pid"), pidns)
      assert.equal(pidns, H.nsid(b.pid, "pid"))
      assert.equal(H.mypid(), tonumber(H.readfile("/proc/" .. b.pid .. "/stat"):match("%) %S (%d+)")))
      release(b)
      release(a)
    end)

    it("enters chosen kinds from several targets #root", function()
      local a = hold { argv = { "sh", "-c", "echo up; read x" }, namespaces = { "uts", "net" },
        hostname = "a" }
      local b = hold { argv = { "sh", "-c", "echo up; read x" }, namespaces = { "uts", "ipc" } }
      local c = hold { argv = { "sh", "-c", "echo up; read x" },
        join = { uts = a.pid, net = "/proc/" .. a.pid .. "/ns/net", ipc = b } }
      assert.equal(H.nsid(a.pid, "uts"), H.nsid(c.pid, "uts"))
      assert.equal(H.nsid(a.pid, "net"), H.nsid(c.pid, "net"))
      assert.equal(H.nsid(b.pid, "ipc"), H.nsid(c.pid, "ipc"))
      release(c)
      release(b)
      release(a)
    end)

    it("joins some namespaces and creates others #root", function()
      local a = hold { argv = { "sh", "-c", "echo up; read x" }, namespaces = { "net" } }
      local out = run { argv = { "sh", "-c", "echo $$; readlink /proc/self/ns/net" },
        join = { net = a }, namespaces = { "pid", "uts" } }
      assert.equal("1", out:match("^(%d+)"))
      assert.equal(H.nsid(a.pid, "net"), tonumber(out:match("%[(%d+)%]")))
      release(a)
    end)
  end)

  describe("stdio, env, cwd", function()
    it("pipes stdin and stdout as Lua files", function()
      local p = assert(isle.spawn { argv = { "tr", "a-z", "A-Z" }, stdin = "pipe", stdout = "pipe" })
      assert.equal("file", io.type(p.stdin))
      p.stdin:write("hello\n")
      p.stdin:close()
      assert.equal("HELLO\n", p.stdout:read("a"))
      assert.is_true((p:wait()))
      p:close()
    end)

    it("takes an fd, a Lua file or null", function()
      local f = io.tmpfile()
      local p = assert(isle.spawn { argv = { "echo", "to-file" }, stdout = f, stderr = "null" })
      assert(p:wait())
      p:close()
      f:seek("set")
      assert.equal("to-file\n", f:read("a"))
      f:close()
    end)

    it("sets env and cwd", function()
      local out = run { argv = { "sh", "-c", "pwd; env | sort" }, env = { FOO = "bar" },
        cwd = "/tmp" }
      assert.equal("/tmp\nFOO=bar\nPWD=/tmp\n", out) -- PWD is the shell's own
    end)

    it("passes no descriptor of the caller but stdio #root", function()
      local f = assert(io.open("/dev/null")) -- not close-on-exec (Lua's io.open)
      local out = run { argv = { "ls", "/proc/self/fd" } }
      f:close()
      assert.equal("0\n1\n2\n3\n", out) -- 3 is ls's own directory handle
    end)
  end)

  describe("fn mode and isle.clone", function()
    it("runs a Lua function in the child and exits with its number", function()
      local p = assert(isle.clone(function(a, b)
        return a + b
      end, "uts", 3, 4))
      assert.same({ nil, "exit", 7 }, { p:wait() })
      p:close()
    end)

    it("turns true/nothing into 0, false into 1, an error into 1 with the message", function()
      local function status(fn)
        local p = assert(isle.spawn { fn = fn, stderr = "pipe" })
        local err = p.stderr:read("a")
        local _, _, code = p:wait()
        p:close()
        return code, err
      end
      assert.equal(0, (status(function() end)))
      assert.equal(0, (status(function() return true end)))
      assert.equal(1, (status(function() return false end)))
      local code, err = status(function() error("boom") end)
      assert.equal(1, code)
      assert.truthy(err:find("boom"))
    end)
  end)

  describe("capabilities and no_new_privs", function()
    it("keeps only the listed capabilities #root", function()
      local out = run { argv = { "grep", "-E", "^(CapBnd|CapEff|NoNewPrivs)", "/proc/self/status" },
        caps = { "net_admin", "chown" }, no_new_privs = true }
      local bnd = tonumber(out:match("CapBnd:%s+(%x+)"), 16)
      assert.equal((1 << 12) | (1 << 0), bnd)
      assert.equal((1 << 12) | (1 << 0), tonumber(out:match("CapEff:%s+(%x+)"), 16))
      assert.equal("1", out:match("NoNewPrivs:%s+(%d)"))
    end)
  end)

  describe("cgroup placement", function()
    it("starts the child in the given cgroup #root", function()
      local base = H.sh("awk '$3==\"cgroup\" && $4 ~ /pids/ {print $2; exit}' /proc/mounts"):gsub("\n", "")
      local v2 = H.sh("awk '$3==\"cgroup2\" {print $2; exit}' /proc/mounts"):gsub("\n", "")
      local root = base ~= "" and base or v2
      if root == "" then
        pending("no cgroup hierarchy mounted")
        return
      end
      local dir = root .. "/" .. H.unique("isle-spec-")
      H.sh("mkdir " .. dir)
      finally(function()
        H.sh("rmdir " .. dir)
      end)
      local out = run { argv = { "cat", "/proc/self/cgroup" }, cgroup = dir }
      local name = dir:match("[^/]+$")
      assert.truthy(out:find("/" .. name .. "\n", 1, true), out)
    end)
  end)

  describe("errors", function()
    it("returns the exec failure of a missing command and leaves no process", function()
      local p, msg, e = isle.spawn { argv = { "isle-no-such-command" }, namespaces = { "pid" } }
      assert.is_nil(p)
      assert.equal("spawn: exec isle-no-such-command: No such file or directory", msg)
      assert.equal(E.ENOENT, e)
    end)

    it("names a dead pid to join", function()
      local q = assert(isle.spawn { argv = { "true" } })
      local pid = q.pid
      q:wait()
      q:close()
      local p, msg, e = isle.spawn { argv = { "true" }, join = pid }
      assert.is_nil(p)
      assert.matches("^spawn: pidfd_open " .. pid .. ": No such process", msg)
      assert.equal(E.ESRCH, e)
      p, msg, e = isle.spawn { argv = { "true" }, join = { net = pid } }
      assert.is_nil(p)
      assert.equal("spawn: open /proc/" .. pid .. "/ns/net: No such file or directory", msg)
      assert.equal(E.ENOENT, e)
    end)

    it("names a failing mount step #root", function()
      local p, msg, e = isle.spawn { argv = { "true" }, namespaces = { "mnt" },
        mounts = { { "proc", "/proc" }, { source = "none", target = "/isle-no-such-dir", type = "tmpfs" } } }
      assert.is_nil(p)
      assert.equal("spawn: mount none on /isle-no-such-dir: No such file or directory", msg)
      assert.equal(E.ENOENT, e)
    end)

    it("raises for an unknown kind, a malformed map, a bad name, an unknown field", function()
      assert.has_error(function()
        isle.spawn { argv = { "true" }, namespaces = { "net", "bogus" } }
      end, "bad argument #1 to 'spawn' (namespaces: unknown namespace kind 'bogus' (expected cgroup, ipc, mnt, net, pid, time, user or uts))")
      assert.has_error(function()
        isle.spawn { argv = { "true" }, namespaces = "user", uid_map = { { 0, 0, 1 }, { 1, 2 } } }
      end, "bad argument #1 to 'spawn' (uid_map[2]: {inside, outside, count} expected)")
      assert.has_error(function()
        isle.spawn { argv = { "true" }, namespaces = "user", gid_map = { { 0, -1, 1 } } }
      end, "bad argument #1 to 'spawn' (gid_map[1]: element 2 must be an integer in [0, 4294967294])")
      assert.error_matches(function()
        isle.spawn { argv = { "true" }, join = { net = ".." } }
      end, "join%.net.*'%.%.' is not allowed")
      assert.error_matches(function()
        isle.spawn { argv = { "true" }, colour = "red" }
      end, "unknown field 'colour'")
      assert.error_matches(function()
        isle.spawn { argv = { "true" }, mounts = { { "proc", "/proc" } } }
      end, "mounts: needs a new mount namespace")
      assert.error_matches(function()
        isle.spawn { argv = { "true" }, namespaces = "mnt", mounts = { { "proc" } } }
      end, "mounts%[1%]%)%[2%]")
      assert.error_matches(function()
        isle.spawn { argv = { "true" }, caps = { "fly" } }
      end, "unknown capability 'fly'")
    end)
  end)

  describe("many spawns", function()
    it("1,000 spawns leave the fd count unchanged and no zombies #slow", function()
      local fds = H.census().fds
      for i = 1, 1000 do
        local p = assert(isle.spawn { argv = { "true" }, stdout = (i % 2 == 0) and "pipe" or "null" })
        if p.stdout then
          p.stdout:read("a")
        end
        assert(p:wait())
        p:close()
      end
      collectgarbage()
      assert.equal(fds, H.census().fds)
      assert.same({}, H.children())
    end)
  end)
end)

describe("Process", function()
  it("polls nil while running, kills by name and number, waits with the os.execute triple", function()
    local p = assert(isle.spawn { argv = { "sleep", "10" } })
    assert.is_nil(p:poll())
    assert.is_true(p:kill("TERM"))
    assert.same({ nil, "signal", 15 }, { p:wait() })
    assert.same({ nil, "signal", 15 }, { p:poll() })
    local ok, msg, e = p:kill(9)
    assert.is_nil(ok)
    assert.matches("^kill %d+: No such process", msg)
    assert.equal(E.ESRCH, e)
    assert.has_error(function()
      p:kill("BOGUS")
    end)
    assert.is_true(p:close())
    assert.is_true(p:close())
    assert.matches("closed", tostring(p))
    assert.has_error(function()
      p:kill()
    end, "attempt to use a closed isle.Process")
  end)

  it("closes with <close> and reports its namespaces", function()
    local pid
    do
      local p <close> = assert(isle.spawn { argv = { "sleep", "10" }, namespaces = "net" })
      pid = p.pid
      assert.equal(H.nsid(pid, "net"), p:nsid("net"))
      assert.not_equal(H.nsid("self", "net"), p:nsid("net"))
      p:kill("KILL")
      p:wait()
    end
    assert.is_nil(H.readfile("/proc/" .. pid .. "/stat"))
  end)
end)
