-- isle.container: checked against kernel truth (/proc/PID/ns, mountinfo,
-- /proc/self/fd, cgroup files) from inside and outside the container.
local H = require "spec.helper"
local isle = require "isle"
local container = require "isle.container"
local core = require "isle.core"
local format = string.format

local function raises(fn, pattern)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  assert.matches(pattern, tostring(err))
end

--- Run argv in a container, return its stdout and the wait values.
local function run(spec)
  spec.stdout = "pipe"
  local c, msg = container.run(spec)
  assert(c, msg)
  local out = c.process.stdout:read("a")
  local r = table.pack(c:wait())
  c:close()
  return out, table.unpack(r, 1, 4)
end

describe("isle.container", function()
  local before
  before_each(function()
    collectgarbage()
    before = H.census()
  end)
  after_each(function()
    collectgarbage()
    H.assert_clean(before)
  end)

  describe("run()", function()
    it("raises for bad specs", function()
      raises(function() container.run() end, "bad argument #1 to 'run' %(table expected, got nil%)")
      raises(function() container.run { argv = {} } end, "argv: non%-empty list")
      raises(function() container.run { argv = { "true" }, bogus = 1 } end,
        "unknown field 'bogus'")
      raises(function() container.run { argv = { "true" }, cwd = "rel" } end,
        "absolute path")
      raises(function() container.run { argv = { "true" }, limits = { memory = "lots" } } end,
        "limits.memory")
      raises(function() container.run { argv = { "true" }, caps = { "nope" } } end,
        "unknown capability 'nope'")
      raises(function() container.run { argv = { "true" }, net = 42 } end, "net")
    end)

    it("creates new pid, mnt, uts, ipc, net and cgroup namespaces", function()
      if not H.is_root() then return pending("needs root") end
      local out = run { argv = { "sh", "-c",
        "for k in pid mnt uts ipc net cgroup user; do readlink /proc/self/ns/$k; done" } }
      local kinds = { "pid", "mnt", "uts", "ipc", "net", "cgroup", "user" }
      local i = 0
      for id in out:gmatch("%[(%d+)%]") do
        i = i + 1
        local kind = kinds[i]
        local mine = H.nsid("self", kind)
        if kind == "user" then
          assert.equal(mine, tonumber(id))
        else
          assert.are_not.equal(mine, tonumber(id), kind)
        end
      end
      assert.equal(7, i)
    end)

    it("has only lo, up, sets the hostname, and shows only its own processes", function()
      if not H.is_root() then return pending("needs root") end
      local out, ok = run { argv = { "sh", "-c",
        "ls /sys/class/net; cat /sys/class/net/lo/flags; hostname; ls /proc | grep -c '^[0-9]'" },
        hostname = "box" }
      assert.is_true(ok)
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.same({ "lo" }, { lines[1] })
      assert.equal(1, tonumber(lines[2]) & 1) -- IFF_UP
      assert.equal("box", lines[3])
      assert.is_true(tonumber(lines[4]) <= 4) -- init, sh, ls, grep
    end)

    it("gives a read-only /, private /proc, minimal /dev, ro /sys, fresh /tmp", function()
      if not H.is_root() then return pending("needs root") end
      local out = run { argv = { "sh", "-c", [[
        touch /etc/isle-x 2>/dev/null && echo root-rw || echo root-ro
        touch /tmp/x && echo tmp-rw; ls /tmp
        ls /dev | tr '\n' ' '; echo
        grep -E ' /(proc|sys|tmp|dev|dev/pts|dev/shm) ' /proc/self/mountinfo | awk '{print $5, $6, $9}'
        echo x > /dev/null && head -c 4 /dev/urandom | wc -c
      ]] } }
      assert.matches("root%-ro", out)
      assert.matches("tmp%-rw\nx\n", out)
      for _, d in ipairs { "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx",
        "shm" } do
        assert.matches("%f[%w]" .. d .. "%f[%W]", out)
      end
      assert.not_matches("%f[%w]sda%f[%W]", out)
      assert.not_matches("vda", out:match("^[^\n]*\n[^\n]*\n[^\n]*\n([^\n]*)"))
      assert.matches("/proc %S+ proc", out)
      assert.matches("/sys ro,%S+ sysfs", out)
      assert.matches("/tmp %S+ tmpfs", out)
      assert.matches("/dev/pts %S+ devpts", out)
      assert.matches("\n4\n", out)
      assert.is_nil(io.open("/etc/isle-x"))
    end)

    it("leaves nothing in the machine's mount table", function()
      if not H.is_root() then return pending("needs root") end
      local c = assert(container.run { argv = { "sleep", "5" } })
      local host = H.readfile("/proc/self/mountinfo")
      local inside = H.readfile("/proc/" .. c.pid .. "/mountinfo")
      assert.not_matches("newroot", host)
      assert.not_matches(" /dev/pts %S+ %S+ %- devpts devpts rw,mode=620,ptmxmode=666", host)
      assert.are_not.equal(host, inside)
      c:stop(1)
      c:close()
    end)

    it("pivots into a rootfs (busybox)", function()
      if not H.is_root() then return pending("needs root") end
      local dir = H.busybox_root { "etc" }
      finally(function() H.sh("rm -rf " .. dir) end)
      local out, ok = run { argv = { "sh", "-c", "ls /; cat /proc/1/status | head -1; echo $$" },
        rootfs = dir, hostname = "bb" }
      assert.is_true(ok)
      assert.matches("bin\ndev\netc\nproc\nrun\nsys\ntmp\n", out)
      assert.matches("\n2\n$", out)
    end)

    it("does the extra mounts (bind, ro, tmpfs)", function()
      if not H.is_root() then return pending("needs root") end
      local dir = os.tmpname()
      os.remove(dir)
      assert(core.mkdir(dir, 493))
      finally(function() H.sh("rm -rf " .. dir) end)
      local out = run { argv = { "sh", "-c",
        "echo y > /srv/g && echo wrote; touch /opt/h 2>/dev/null || echo ro; grep -c ' /media ' /proc/self/mountinfo" },
        mounts = { { "bind", dir, "/srv" }, { "bind", dir, "/opt", ro = true },
          { "tmpfs", "/media" } }, }
      H.sh("true")
      assert.matches("wrote\nro\n1\n", out)
      assert.equal("y\n", H.readfile(dir .. "/g"))
    end)

    it("creates missing mount points in a rootfs; the read-only / refuses them clearly", function()
      if not H.is_root() then return pending("needs root") end
      local c, msg, e = container.run { argv = { "true" },
        mounts = { { "tmpfs", "/no-such-isle-dir" } } }
      assert.is_nil(c)
      assert.equal("container: mount point /no-such-isle-dir: not in the read-only root (the"
        .. " machine's /), where isle creates nothing: create it there first, or choose a"
        .. " target that exists (or one under /tmp or /run, the container's own)", msg)
      assert.equal(30, e) -- EROFS
      assert.is_nil(core.ino("/no-such-isle-dir"))
      local root = H.busybox_root { "etc" }
      finally(function() H.sh("rm -rf " .. root) end)
      local out, ok = run { argv = { "/bin/sh", "-c", "ls -d /cache /data; { echo > /hosts-ro; } 2>/dev/null" },
        rootfs = root, mounts = { { "bind", "/etc/hosts", "/hosts-ro", ro = true },
          { "bind", "/etc", "/data", ro = true }, { "tmpfs", "/cache" } } }
      assert.equal("/cache\n/data\n", out)
      assert.is_nil(ok) -- /hosts-ro is read-only
      assert.is_not_nil(core.ino(root .. "/data")) -- a directory
      assert.equal("", H.readfile(root .. "/hosts-ro")) -- a file, for the file
    end)

    it("reports a step that fails in the child by its name, leaving no process, cgroup or state", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("f")
      local c, msg, e = container.run { argv = { "true" }, name = name, limits = { pids = 10 },
        mounts = { { "bind", "/no/such/isle-src", "/mnt" } } }
      assert.is_nil(c)
      assert.equal("container: bind /no/such/isle-src on /mnt: No such file or directory", msg)
      assert.equal(H.E.ENOENT, e)
      assert.is_nil(core.ino("/run/isle/containers/" .. name))
      assert.equal("", H.sh("find /sys/fs/cgroup -maxdepth 5 -type d -name 'isle-" .. name
        .. "-*' 2>/dev/null"))
      -- a failing step in a rootfs: a file bound on a directory
      local root = H.busybox_root()
      finally(function() H.sh("rm -rf " .. root) end)
      c, msg, e = container.run { argv = { "/bin/true" }, rootfs = root, readonly = true,
        mounts = { { "bind", "/etc/hostname", "/tmp" } } }
      assert.is_nil(c)
      assert.equal("container: bind /etc/hostname on /tmp: Not a directory", msg)
      assert.equal(20, e) -- ENOTDIR
      assert.same({}, H.children())
    end)

    it("carries the exit status; 128+N with init when signal N killed it", function()
      if not H.is_root() then return pending("needs root") end
      local _, ok, how, code = run { argv = { "sh", "-c", "exit 3" } }
      assert.same({ nil, "exit", 3 }, { ok, how, code })
      _, ok, how, code = run { argv = { "sh", "-c", "kill -9 $$" } }
      assert.same({ nil, "exit", 137 }, { ok, how, code })
      local c = assert(container.run { argv = { "sleep", "10" }, init = false })
      c:kill("KILL")
      assert.same({ nil, "signal", 9 }, { c:wait() })
      c:close()
    end)

    it("fails cleanly when exec fails, leaving no process", function()
      if not H.is_root() then return pending("needs root") end
      local c, msg, e = container.run { argv = { "/no/such/cmd" } }
      assert.is_nil(c)
      assert.equal("container: exec /no/such/cmd: No such file or directory", msg)
      assert.equal(H.E.ENOENT, e)
      c, msg, e = container.run { argv = { "true" }, cwd = "/no/such/dir" }
      assert.is_nil(c)
      assert.matches("^container: chdir /no/such/dir", msg)
      assert.equal(H.E.ENOENT, e)
    end)

    it("runs an init that reaps orphans and forwards TERM", function()
      if not H.is_root() then return pending("needs root") end
      -- the orphan's /proc entry goes only when its parent (the init) reaps it
      local out = run { argv = { "sh", "-c", [[
        p=$(sh -c 'sleep 0.2 >/dev/null & echo $!')
        i=0; while [ -e /proc/$p ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done
        [ -e /proc/$p ] && echo "left $p" || echo reaped
        ps -o stat= -e]] } }
      assert.matches("^reaped\n", out)
      local n = 0
      for stat in out:gmatch("\n(%S+)") do
        n = n + 1
        assert.not_matches("Z", stat)
      end
      assert.is_true(n >= 3, out) -- init, sh, ps at least: ps worked
      local c = assert(container.run { argv = { "sleep", "100" } })
      assert(c:kill("TERM")) -- run returns once sleep runs: no race
      assert.same({ nil, "exit", 143 }, { c:wait() })
      c:close()
    end)

    it("stop() sends TERM, then KILL after the grace period", function()
      if not H.is_root() then return pending("needs root") end
      local c = assert(container.run { argv = { "sh", "-c", "trap '' TERM; echo ready; exec sleep 100" },
        stdout = "pipe" })
      assert.equal("ready", c.process.stdout:read("l")) -- the trap is set
      local t0 = core.clock()
      local ok, how, code = c:stop(0.3)
      local dt = core.clock() - t0
      assert.is_nil(ok)
      assert.equal("signal", how)
      assert.equal(9, code)
      assert.is_true(dt >= 0.29 and dt < 3, "took " .. dt)
      c:close()
    end)

    it("hardens: docker's capabilities, no_new_privs, only fds 0-2", function()
      if not H.is_root() then return pending("needs root") end
      local f = assert(io.open("/etc/hostname"))
      local out = run { argv = { "sh", "-c",
        "grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status;"
        .. " ls /proc/self/fd | tr '\n' ' '" } }
      f:close()
      local bits = 0
      for _, name in ipairs(container.DEFAULT_CAPS) do
        bits = bits | (1 << require("isle.process")._CAPS[name])
      end
      assert.matches(string.format("CapBnd:%%s+%016x", bits), out)
      assert.matches(string.format("CapEff:%%s+%016x", bits), out)
      assert.matches("NoNewPrivs:%s+1", out)
      assert.matches("Seccomp:%s+2", out) -- a filter
      assert.equal(0, bits & (1 << 27)) -- no mknod
      assert.matches("\n0 1 2 3 $", out) -- 3: ls's own directory
      out = run { argv = { "sh", "-c", "grep CapBnd /proc/self/status" }, caps = { "net_admin" } }
      assert.matches("CapBnd:%s+0000000000001000", out)
    end)

    it("runs as a user: a name or uid of the root's /etc/passwd; only added caps", function()
      if not H.is_root() then return pending("needs root") end
      local out = run { argv = { "sh", "-c", "id -u; id -g; grep -E '^Cap(Eff|Bnd)' /proc/self/status" },
        user = "nobody" }
      local nobody = H.sh("id -u nobody; id -g nobody")
      assert.equal(nobody .. "CapEff:\t0000000000000000\n", out:gsub("CapBnd[^\n]*\n", ""))
      out = run { argv = { "sh", "-c", "id -u; id -g; grep CapEff /proc/self/status" },
        user = "4242", caps = { "kill", "net_admin" } }
      assert.equal("4242\n0\nCapEff:\t0000000000001000\n", out) -- net_admin: beyond docker's
      local c, msg, e = container.run { argv = { "true" }, user = "isle-no-such-user" }
      assert.is_nil(c)
      assert.equal("container: user no user 'isle-no-such-user' in /etc/passwd", msg)
      assert.equal(H.E.EINVAL, e)
    end)

    it("privileged = true turns the hardening off", function()
      if not H.is_root() then return pending("needs root") end
      local out = run { argv = { "sh", "-c", "grep -E '^(CapEff|NoNewPrivs|Seccomp):'"
        .. " /proc/self/status; grep -cE ' /proc/(sys|keys|timer_list) ' /proc/self/mountinfo" },
        privileged = true }
      local all = tonumber(H.sh("awk '/^CapBnd/ {print $2}' /proc/self/status"), 16)
      assert.equal(all, tonumber(out:match("CapEff:%s+(%x+)"), 16))
      assert.matches("NoNewPrivs:%s+0\nSeccomp:%s+0\n0\n$", out) -- no masks, /proc/sys rw
    end)

    it("gives a regular file as stdout a pipe (the caller's file cannot be reopened)", function()
      if not H.is_root() then return pending("needs root") end
      local path = os.tmpname()
      finally(function() os.remove(path) end)
      local f = assert(io.open(path, "w"))
      local c = assert(container.run { argv = { "sh", "-c", "readlink /proc/self/fd/1; seq 20000" },
        stdout = f })
      assert.same({ true, "exit", 0 }, { c:wait() }) -- also waits for the relay
      c:close()
      f:close()
      local text = H.readfile(path)
      assert.matches("^pipe:%[%d+%]\n1\n", text)
      assert.matches("\n20000\n$", text)
      assert.same({}, H.children())
    end)

    it("keeps a detached container's log and exit status until rm (open, status, logs, rm)", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("d")
      -- from a plain lua5.4 (the monitor is this interpreter again: under
      -- make check's preloaded sanitizer, that would be the ASan isle.core)
      local r, raw = H.child(string.format([[out("pid", isle.container.detach {
        argv = { "sh", "-c", "echo out; echo err >&2; exit 7" }, name = %q })]], name))
      assert.matches("^%d+$", r.pid, raw)
      local c = assert(container.open(name))
      finally(function()
        c:rm(true)
        c:close()
      end)
      assert.same({ nil, "exit", 7 }, { c:wait() })
      local st = c:status()
      assert.equal("exited", st.state)
      assert.same({ code = 7, how = "exit", oom = false }, { code = st.exit.code, how = st.exit.how,
        oom = st.exit.oom })
      assert.same({ "sh", "-c", "echo out; echo err >&2; exit 7" }, st.argv)
      assert.equal("out\nerr\n", (c:logs()))
      assert.equal("err\n", (c:logs(1)))
      assert.same({ name }, (function()
        local l = {}
        for _, n in ipairs(container.list()) do if n == name then l[#l + 1] = n end end
        return l
      end)())
      assert.is_true(c:rm())
      assert.is_nil(container.open(name))
      assert.is_nil(core.ino("/run/isle/containers/" .. name))
    end)

    it("puts the container in cgroups with the limits and removes them at the end", function()
      if not H.is_root() then return pending("needs root") end
      local c = assert(container.run { argv = { "sh", "-c", "cat /proc/self/cgroup; sleep 5" },
        limits = { memory = "64m", pids = 40, cpu = 0.5 }, stdout = "pipe" })
      local out = ""
      repeat
        local l = c.process.stdout:read("L")
        out = out .. (l or "")
      until not l or l:match("^0::")
      local dirs = {}
      for _, g in ipairs(c.cgroups) do
        dirs[#dirs + 1] = g.dir
        local procs = H.readfile(g.dir .. "/cgroup.procs")
        assert.matches("%d", procs)
      end
      assert.is_true(#dirs >= 1)
      if c.cgroups[1].v2 then -- pure v2 (Debian 12 and later): one group, its files
        local d = c.cgroups[1].dir
        assert.equal("67108864\n", H.readfile(d .. "/memory.max"))
        assert.equal("40\n", H.readfile(d .. "/pids.max"))
        assert.equal("50000 100000\n", H.readfile(d .. "/cpu.max"))
        assert.matches("/isle/[^/]+$", d) -- under isle/, never the caller's own cgroup
      else
        local text = table.concat(dirs, " ")
        assert.equal(tostring(64 * 1024 * 1024) .. "\n",
          H.readfile(text:match("(%S+/memory/%S+)") .. "/memory.limit_in_bytes"))
      end
      c:stop(0.5)
      c:close()
      -- the cgroup namespace's root
      assert.matches(c.cgroups[1].v2 and "^0::/\n$" or "memory:/\n", out)
      for _, d in ipairs(dirs) do
        assert.is_nil(core.ino(d), d)
      end
    end)

    it("stops a fork storm at the pids limit #slow", function()
      if not H.is_root() then return pending("needs root") end
      local out = run { argv = { "sh", "-c",
        "sh -c 'for i in $(seq 60); do sleep 1 & done; wait' 2>&1; echo rc=$?" },
        limits = { pids = 10 } }
      assert.matches("fork", out)
      assert.not_matches("rc=0", out)
    end)

    it("reports a memory hog killed by the memory limit #slow", function()
      if not H.is_root() then return pending("needs root") end
      local _, ok, how, code, why = run { argv = { "sh", "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived" },
        limits = { memory = "32m" } }
      assert.is_nil(ok)
      assert.equal("exit", how)
      assert.is_true(code == 137 or code == 141, tostring(code))
      assert.equal("oom", why)
    end)

    it("shares the machine's network with net = 'host' and joins a Netns", function()
      if not H.is_root() then return pending("needs root") end
      local out = run { argv = { "readlink", "/proc/self/ns/net" }, net = "host" }
      assert.equal(H.nsid("self", "net"), tonumber(out:match("%[(%d+)%]")))
      local name = H.unique("ctr")
      local ns = assert(isle.netns.add(name))
      finally(function()
        ns:close()
        isle.netns.del(name)
      end)
      out = run { argv = { "readlink", "/proc/self/ns/net" }, net = ns }
      assert.equal(ns.id, tonumber(out:match("%[(%d+)%]")))
      out = run { argv = { "readlink", "/proc/self/ns/net" }, net = name }
      assert.equal(ns.id, tonumber(out:match("%[(%d+)%]")))
      local c, msg, e = container.run { argv = { "true" }, net = name .. "-none" }
      assert.is_nil(c)
      assert.equal(format("container: net %s-none: no such network namespace (/run/netns/%s-none)",
        name, name), msg)
      assert.equal(H.E.ENOENT, e)
    end)

    it("runs on a lab host ('LAB:HOST' or its node): its net, hostname and hosts file", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("cl")
      local lab = isle.lab(name)
      local s1 = lab:switch("s1")
      local h1, h2 = lab:host("h1"), lab:host("h2")
      lab:link(h1, s1, { ip = "10.9.0.1/24" })
      lab:link(h2, s1, { ip = "10.9.0.2/24" })
      assert(lab:up())
      finally(function() lab:down() end)
      for _, net in ipairs { name .. ":h1", h1 } do
        local out, ok = run { argv = { "sh", "-c",
          "hostname; readlink /proc/self/ns/net; ping -c1 -W2 h2 >/dev/null && echo reached" },
          net = net }
        assert.is_true(ok, out)
        local host, id = out:match("^(%S+)\n%S+:%[(%d+)%]\n")
        assert.equal("h1", host)
        assert.equal(core.ino("/run/netns/" .. name .. "-h1"), tonumber(id))
        assert.matches("\nreached\n$", out)
      end
    end)
  end)

  describe("Container:exec()", function()
    it("enters all the container's namespaces", function()
      if not H.is_root() then return pending("needs root") end
      local c = assert(container.run { argv = { "sleep", "10" }, hostname = "inside",
        limits = { pids = 20 } })
      local p = assert(c:exec { argv = { "sh", "-c",
        "hostname; for k in pid mnt uts ipc net cgroup; do readlink /proc/self/ns/$k; done; echo $$" },
        stdout = "pipe" })
      local out = p.stdout:read("a")
      assert.same({ true, "exit", 0 }, { p:wait() })
      p:close()
      assert.matches("^inside\n", out)
      local i = 0
      for kind, id in out:gmatch("(%a+):%[(%d+)%]") do
        i = i + 1
        assert.equal(H.nsid(c.pid, kind), tonumber(id), kind)
      end
      assert.equal(6, i)
      local procs = H.readfile(c.cgroups[1].dir .. "/cgroup.procs")
      assert.matches("%d", procs)
      c:stop(0.5)
      c:close()
    end)
  end)
end)
