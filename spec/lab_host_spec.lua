-- Lab hosts as machines, against the kernel: each host's own filesystem
-- (every way onto it sees the same one; the machine's files stay as they
-- are), services (order, readiness, failure, restart, logs), and `down`
-- ending every process in the lab's namespaces.
local H = require "spec.helper"
local isle = require "isle"
local core = require "isle.core"

local ISLE = H.LUA_ENV .. " bin/isle"

local function isle_cmd(args)
  local out, ok, _, code = H.sh(ISLE .. " " .. args .. " 2>&1")
  return out, ok and 0 or code
end

-- A lab of h1 and h2 on s1 (10.0.0.1, 10.0.0.2); `extra(lab, h1, h2)`
-- declares more; h1's options are `h1opts`.
local function two(name, h1opts, extra)
  local lab = isle.lab(name)
  local s1 = lab:switch("s1")
  local h1, h2 = lab:host("h1", h1opts), lab:host("h2")
  lab:link(h1, s1, { ip = "10.0.0.1/24" })
  lab:link(h2, s1, { ip = "10.0.0.2/24" })
  if extra then extra(lab, h1, h2) end
  return lab
end

-- The fstype of the mount on `dir` in the host's filesystem, from its
-- /proc/self/mountinfo (the last, topmost one).
local function fstype(lab, host, dir)
  local t
  for line in lab:run(host, { "cat", "/proc/self/mountinfo" }):gmatch("[^\n]+") do
    local target, ty = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- (%S+)")
    if target == dir then t = ty end
  end
  return t
end

local pids_of = H.pids_of

-- Wait (polling /proc) until a process runs argv; its pid.
local function wait_for(argv)
  for _ = 1, 500 do
    local t = pids_of(argv)
    if #t > 0 then return t[1] end
    core.sleep(0.01)
  end
  error("no process " .. table.concat(argv, " "))
end

describe("isle.lab hosts as machines", function()
  before_each(function()
    if not H.is_root() then pending("needs root") end
  end)

  describe("a host's filesystem", function()
    it("is one for every way onto the host, its own, and leaves the machine's files as they "
      .. "are #root", function()
      local name = H.unique("hf")
      local tag = name:gsub("%W", "")
      local etcdir, lib = "/etc/isle-" .. tag, "/var/lib/isle-" .. tag
      local hostname = H.readfile("/etc/hostname")
      local lab = two(name, { files = {
        [etcdir .. "/a.conf"] = "A\n",                          -- its directory is missing
        ["/etc/hostname"] = "mine\n",                          -- over the machine's
        ["/run/x/y.sh"] = { text = "#!/bin/sh\necho ran\n", mode = 493 }, -- in its own /run
      }, private = { lib } })
      assert(lab:up())
      finally(function() lab:down() end)
      assert.equal("A\n", (lab:run("h1", { "cat", etcdir .. "/a.conf" })))
      assert.equal("A\n", (isle_cmd("exec " .. name .. " h1 -- cat " .. etcdir .. "/a.conf")))
      assert.equal("mine\n", (lab:run("h1", { "cat", "/etc/hostname" })))
      assert.equal("ran\n", (lab:run("h1", { "/run/x/y.sh" })))
      for _, d in ipairs { "/run", "/tmp", "/var/tmp", "/var/log", lib } do
        assert.equal("tmpfs", fstype(lab, "h1", d), d)
      end
      assert.equal("sysfs", fstype(lab, "h1", "/sys"))
      assert.equal("eth0\nlo\n", (lab:run("h1", { "ls", "/sys/class/net" })))
      -- (mounted at the first entry, whichever way: here isle exec; once)
      assert.equal("eth0\nlo\n", (isle_cmd("exec " .. name .. " h2 -- ls /sys/class/net")))
      assert.equal("1\n", (lab:run("h2", { "sh", "-c", "grep -c ' /sys .* - sysfs ' /proc/self/mountinfo" })))
      -- what one process writes, the next one sees; h2 and the machine do not
      local marker = "/tmp/" .. tag
      assert.is_true(select(2, lab:run("h1", { "sh", "-c", "echo hi > " .. marker
        .. " && echo hi > " .. lib .. "/f" })))
      assert.equal("hi\n", (isle_cmd("exec " .. name .. " h1 -- cat " .. marker)))
      assert.is_falsy(select(2, lab:run("h2", { "sh", "-c", "cat " .. marker .. " 2>/dev/null" })))
      assert.is_nil(core.ino(marker))
      -- every way in joins the one mount namespace kept on /run/isle/LAB/mnt/HOST
      local mnt = core.ino("/run/isle/" .. name .. "/mnt/h1")
      local id = function(s) return tonumber(s:match("mnt:%[(%d+)%]")) end
      assert.equal(mnt, id(lab:run("h1", { "readlink", "/proc/self/ns/mnt" })))
      assert.equal(mnt, id(isle_cmd("exec " .. name .. " h1 -- readlink /proc/self/ns/mnt")))
      -- a process with mounts of its own gets a private copy
      local p = assert(lab:spawn("h1", { argv = { "sh", "-c", "cat " .. etcdir
        .. "/a.conf; grep -c ' /mnt ' /proc/self/mountinfo" }, stdout = "pipe",
        mounts = { { "tmpfs", "/mnt" } } }))
      local out = p.stdout:read("a")
      p.stdout:close()
      assert(p:wait())
      assert.equal("A\n1\n", out)
      assert.is_nil(fstype(lab, "h1", "/mnt"))
      -- ip netns exec sees the lab's one hosts file, through a link
      local hosts = "/run/isle/" .. name .. "/hosts"
      assert.equal(hosts, core.readlink("/etc/netns/" .. name .. "-h1/hosts"))
      assert.equal(H.readfile(hosts), (H.sh("ip netns exec " .. name .. "-h1 cat /etc/hosts")))
      assert.equal(H.readfile(hosts), (lab:run("h2", { "cat", "/etc/hosts" })))
      assert.matches("\n10.0.0.2\th2\n", H.readfile(hosts))
      assert(lab:down())
      assert.equal(hostname, H.readfile("/etc/hostname"))
      assert.is_nil(core.lstat(etcdir))
      assert.is_nil(core.lstat(lib))
      assert.is_nil(H.lab_debris(name))
    end)

    it("carries none of the machine's mounts below /run, mount point or not #root", function()
      -- (a machine whose /run is a directory of its root, as CI's: the
      -- template kept every mount below it, other labs' /run/netns binds,
      -- and each host copied them; in tools/sandbox /run is a tmpfs, whose
      -- detach took them along even before)
      local name = H.unique("hr")
      local dir = "/run/isle-spec-" .. name:gsub("%W", "")
      assert(core.mkdir(dir, 448))
      local lab = two(name)
      local mounted = core.mount("tmpfs", dir, "tmpfs", 0, "size=4k")
      finally(function() -- (the lab's namespaces first: a copy keeps dir busy)
        lab:down()
        if mounted then core.umount(dir, core.MNT.detach) end
        assert(core.rmdir(dir))
      end)
      assert(mounted)
      assert(lab:up())
      local mi = lab:run("h1", { "cat", "/proc/self/mountinfo" })
      assert.matches(" /run ", mi, 1, true)
      assert.is_nil(mi:find(" " .. dir .. " ", 1, true))
    end)

    it("uses a user's /etc/netns/LAB-HOST files and leaves them as they were #root", function()
      local name = H.unique("hu")
      local dir = "/etc/netns/" .. name .. "-h1"
      assert(os.execute("mkdir -p " .. dir))
      finally(function() os.execute("rm -rf " .. dir) end)
      local f = assert(io.open(dir .. "/resolv.conf", "w"))
      f:write("nameserver 192.0.2.53\n")
      f:close()
      f = assert(io.open(dir .. "/hosts", "w"))
      f:write("192.0.2.1\tuser-hosts\n")
      f:close()
      local listing = "find " .. dir .. " -printf '%p %y %m %s %T@ %i\\n'; cat " .. dir .. "/*"
      local before = H.sh(listing)
      local lab = two(name)
      assert(lab:up())
      assert.equal("nameserver 192.0.2.53\n", (lab:run("h1", { "cat", "/etc/resolv.conf" })))
      assert.equal("192.0.2.1\tuser-hosts\n", (lab:run("h1", { "cat", "/etc/hosts" })))
      assert.matches("10.0.0.1\th1", (lab:run("h2", { "cat", "/etc/hosts" })))
      assert(lab:down())
      assert.equal(before, H.sh(listing))
      os.execute("rm -rf " .. dir)
      assert.is_nil(H.lab_debris(name))
      -- and up works again, with them gone
      assert(lab:up())
      assert(lab:down())
    end)

    it("refuses a file it cannot place, and leaves nothing #root", function()
      local name = H.unique("hx")
      local lab = two(name, { files = { ["/etc"] = "not a directory\n" } })
      local ok, err = lab:up()
      assert.is_nil(ok)
      assert.equal("lab " .. name .. ": host h1: files /etc: is a directory on the machine", err)
      assert.is_nil(H.lab_debris(name))
    end)
  end)

  describe("services", function()
    it("start after what they wait for, independent ones at once, and outlive isle up #root",
      function()
      local name = H.unique("hs")
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(string.format([[
local lab = require("isle").lab(%q)
local h1 = lab:host("h1")
-- a and b each get ready only once the other has started: both must start
-- at once
local wait = "touch /run/%%s-started; while [ ! -e /run/%%s-started ]; do sleep 0.02; done; "
  .. "touch /run/%%s; exec sleep 1000"
lab:service(h1, "a", { argv = { "sh", "-c", wait:format("a", "b", "a") },
  ready = { file = "/run/a" }, timeout = 10 })
lab:service(h1, "b", { argv = { "sh", "-c", wait:format("b", "a", "b") },
  ready = { file = "/run/b" }, timeout = 10 })
-- fails at once unless both are ready
lab:service(h1, "c", { argv = { "sh", "-c", "test -e /run/a && test -e /run/b && exec sleep 1001" },
  after = { "a", "b" } })
return lab
]], name))
      f:close()
      finally(function() os.remove(script); isle_cmd("down " .. name) end)
      local out, code = isle_cmd("up -q " .. script)
      assert.equal(0, code, out)
      -- running, and not children of the process that ran up (it is gone)
      local list = assert(isle.lab.services(name))
      assert.same({ "a", "b", "c" }, { list[1].name, list[2].name, list[3].name })
      local sup
      for _, s in ipairs(list) do
        assert.equal("running", s.state)
        assert.equal(0, s.restarts)
        local stat = H.readfile("/proc/" .. s.pid .. "/stat")
        sup = sup or tonumber(stat:match("^%d+ %b() %S (%d+)"))
        assert.equal(sup, tonumber(stat:match("^%d+ %b() %S (%d+)")))
      end
      assert.matches("isle.lab.supervisor", H.readfile("/proc/" .. sup .. "/cmdline"))
      -- its own session: no terminal signal of the caller reaches it
      local sid = tonumber(H.readfile("/proc/" .. sup .. "/stat"):match("^%d+ %b() %S %d+ %d+ (%d+)"))
      assert.equal(sup, sid)
      local json = H.json.decode((isle_cmd("ps " .. name .. " --json")))
      assert.equal("c", json[3].service)
      assert.equal("running", json[3].state)
      assert.equal(list[3].pid, json[3].pid)
      out, code = isle_cmd("down " .. name)
      assert.equal(0, code, out)
      assert.equal("lab " .. name .. " down (ended 4 processes)\n", out)
      assert.is_nil(H.lab_debris(name))
    end)

    it("that do not get ready fail up, which undoes everything and shows their log #root",
      function()
      local name = H.unique("hr")
      local lab = two(name, nil, function(l, h1)
        l:service(h1, "ok", { argv = { "sleep", "1000" } })
        l:service(h1, "bad", { argv = { "sh", "-c", "echo to stdout; echo to stderr >&2; exit 3" },
          ready = { port = 8080 } })
      end)
      local ok, err = lab:up()
      assert.is_nil(ok)
      assert.matches("^lab " .. name:gsub("%p", "%%%0") .. ": services: service bad on h1: "
        .. "exited with status 3 before it was ready; its log %(/run/isle/.-/logs/h1/bad.log%) "
        .. "ends with:\n", err)
      assert.matches("\nto stdout\nto stderr\n", err)
      assert.is_nil(H.lab_debris(name))
      assert.same({}, pids_of { "sleep", "1000" })
      -- and the same for one that never gets ready (timeout)
      lab = two(name, nil, function(l, h1)
        l:service(h1, "slow", { argv = { "sleep", "1001" }, ready = { file = "/run/never" },
          timeout = 0.5 })
      end)
      ok, err = lab:up()
      assert.is_nil(ok)
      assert.matches("service slow on h1: not ready after 0.5 s", err)
      assert.is_nil(H.lab_debris(name))
      assert.same({}, pids_of { "sleep", "1001" })
      -- the CLI shows the end of the log under its one line
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(string.format([[
local lab = require("isle").lab(%q)
lab:service(lab:host("h1"), "bad", { argv = { "sh", "-c", "echo last words; exit 1" },
  ready = { file = "/run/never" } })
return lab
]], name))
      f:close()
      finally(function() os.remove(script) end)
      local out, code = isle_cmd("up " .. script)
      assert.equal(1, code)
      assert.matches("^isle: lab " .. name:gsub("%p", "%%%0") .. ": services: service bad on h1: "
        .. "exited with status 1 before it was ready;.-\n  last words\n", out)
    end)

    -- the lines "try" of a log (the first may be its first line: a service
    -- can write before its supervisor has written "started")
    local function tries(log)
      local n = 0
      for line in log:gmatch("[^\n]+") do
        if line == "try" then n = n + 1 end
      end
      return n
    end

    it("restart on failure up to their limit, on request, and log what happened #root",
      function()
      local name = H.unique("hk")
      local lab = two(name, nil, function(l, h1, h2)
        -- ready at once, then fails
        l:service(h1, "flaky", { argv = { "sh", "-c", "echo try; sleep 0.2; exit 1" },
          restart = "on-failure", restart_limit = 2 })
        l:service(h2, "web", { argv = { "busybox", "httpd", "-f", "-p", "8080" },
          ready = { port = 8080 } })
      end)
      assert(lab:up())
      finally(function() lab:down() end)
      local list
      for _ = 1, 300 do
        list = assert(isle.lab.services(name))
        if list[1].state == "failed" then break end
        core.sleep(0.02)
      end
      assert.equal("failed", list[1].state)
      assert.equal(2, list[1].restarts)
      assert.equal("exited with status 1", list[1].why)
      local log = H.readfile(assert(isle.lab.service_log(name, "h1", "flaky")))
      assert.equal(3, tries(log))
      -- a restart: a new process, ready again, its restarts count from 0
      local old = list[2].pid
      local pid = assert(isle.lab.restart(name, "h2", "web"))
      assert.are_not.equal(old, pid)
      assert.is_nil(core.ino("/proc/" .. old))
      list = assert(isle.lab.services(name))
      assert.same({ "running", pid }, { list[2].state, list[2].pid })
      assert.matches("killed by signal 15\nisle: %S+: started busybox httpd",
        H.readfile(isle.lab.service_log(name, "h2", "web")))
      -- the CLI: flaky starts again and again fails its 2 restarts (counted
      -- from 0 again)
      local out, code = isle_cmd("restart " .. name .. " h1 flaky")
      assert.equal(0, code, out)
      assert.matches("^service flaky on h1 restarted %(pid %d+%)\n$", out)
      for _ = 1, 300 do
        list = assert(isle.lab.services(name))
        if list[1].state == "failed" then break end
        core.sleep(0.02)
      end
      assert.same({ "failed", 2 }, { list[1].state, list[1].restarts })
      log = H.readfile(isle.lab.service_log(name, "h1", "flaky"))
      assert.equal(6, tries(log))
      out = isle_cmd("logs " .. name .. " h2 web -n 2")
      assert.matches("^isle: %S+: started busybox httpd %-f %-p 8080 %(pid %d+%)\nisle: %S+: ready\n$",
        out)
      out, code = isle_cmd("logs " .. name .. " h2 nope")
      assert.equal(1, code)
      assert.equal("isle: lab " .. name .. ": no service 'nope' on host 'h2'\n", out)
      out = isle_cmd("ps " .. name)
      assert.matches("HOST%s+SERVICE%s+PID%s+STATE%s+RESTARTS%s+UPTIME\n", out)
      assert.matches("\nh1%s+flaky%s+%-%s+failed %(exited with status 1%)%s+2%s+%-\n", out)
      assert.matches("\nh2%s+web%s+" .. pid .. "%s+running%s+0%s+%d+s\n", out)
    end)
  end)

  describe("down", function()
    it("ends every process in the lab's namespaces, whoever started it, and no namespace of "
      .. "the lab outlives it #root", function()
      local name = H.unique("hd")
      local lab = two(name, nil, function(l, h1)
        l:service(h1, "svc", { argv = { "sleep", "1000" } })
      end)
      assert(lab:up())
      finally(function() lab:down() end)
      local dir = "/run/isle/" .. name
      local ids = {}
      for _, p in ipairs { "/run/netns/" .. name .. "-h1", "/run/netns/" .. name .. "-h2",
        dir .. "/ns/h1.uts", dir .. "/ns/h2.uts", dir .. "/mnt/h1", dir .. "/mnt/h2",
        dir .. "/net" } do
        ids[#ids + 1] = assert(core.ino(p))
      end
      -- started by others: an isle exec, a container on h2, an ip netns exec
      -- that ignores TERM
      H.sh(ISLE .. " exec " .. name .. " h1 -- sleep 1001 >/dev/null 2>&1 &")
      H.sh(ISLE .. " run --net " .. name .. ":h2 -- sleep 1002 >/dev/null 2>&1 &")
      H.sh("ip netns exec " .. name .. "-h2 sh -c 'trap \"\" TERM; exec sleep 1003' "
        .. ">/dev/null 2>&1 &")
      local victims = { wait_for { "sleep", "1000" }, wait_for { "sleep", "1001" },
        wait_for { "sleep", "1002" }, wait_for { "sleep", "1003" } }
      local t0 = core.clock()
      local ok, n = lab:down()
      assert.is_true(ok)
      -- the service, its supervisor, the exec, the container's init and
      -- command, the stubborn one (KILLed after the grace period)
      assert.equal(6, n)
      assert.is_true(core.clock() - t0 >= require("isle.lab.reap").GRACE)
      for _, pid in ipairs(victims) do
        assert.is_nil(core.ino("/proc/" .. pid .. "/ns/net"), "pid " .. pid)
      end
      -- no process is in a namespace of the lab, and no mount holds one
      local left = {}
      for _, pid in ipairs(core.netns_list("/proc") or {}) do
        for _, kind in ipairs { "net", "uts", "mnt" } do
          local st = pid:match("^%d+$") and core.stat("/proc/" .. pid .. "/ns/" .. kind)
          for _, id in ipairs(ids) do
            if st and st.ino == id then left[#left + 1] = pid .. " " .. kind end
          end
        end
      end
      assert.same({}, left)
      local mi = H.readfile("/proc/self/mountinfo")
      for _, id in ipairs(ids) do
        assert.is_nil(mi:find(":[" .. id .. "]", 1, true))
      end
      assert.is_nil(H.lab_debris(name))
    end)
  end)
end)
