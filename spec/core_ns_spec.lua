local H = require "spec.helper"
local isle = require "isle"

local E = H.E
local ENOTTY = 25

-- Leak checks use H.own_census: the global netns/link counts flicker with
-- the other specs running on this machine.

describe("isle", function()
  describe("unshare()", function()
    it("moves the caller into new uts, ipc and net namespaces #root", function()
      if not H.is_root() then return pending("needs root") end
      local r, raw = H.child [[
        local before = {uts = nsid("uts"), ipc = nsid("ipc"), net = nsid("net")}
        out("ok", isle.unshare("uts,ipc,net"))
        for k, v in pairs(before) do out(k, v ~= nsid(k) and "changed" or "same") end
      ]]
      assert.equal("true", r.ok, raw)
      assert.equal("changed", r.uts)
      assert.equal("changed", r.ipc)
      assert.equal("changed", r.net)
    end)

    it("takes a list as well as a comma string, and the alias mount #root", function()
      if not H.is_root() then return pending("needs root") end
      local r, raw = H.child [[
        local m, u = nsid("mnt"), nsid("uts")
        out("ok", isle.unshare({"mount", "uts"}))
        out("mnt", m ~= nsid("mnt"))
        out("uts", u ~= nsid("uts"))
      ]]
      assert.equal("true", r.ok, raw)
      assert.equal("true", r.mnt)
      assert.equal("true", r.uts)
    end)

    it("puts only the children into a new time namespace #root", function()
      if not H.is_root() then return pending("needs root") end
      local r, raw = H.child [[
        local t = nsid("time")
        out("ok", isle.unshare("time"))
        out("self", t == nsid("time"))
        out("children", t ~= nsid("time_for_children"))
        -- isle.spawn works in this state on every kernel (io.popen does not
        -- before 6.2); going back into our own time namespace ends it
        local p = isle.spawn { argv = { "true" } }
        out("spawn", p:wait())
        out("back", isle.setns("/proc/self/ns/time", "time"))
        out("same", t == nsid("time") and t == nsid("time_for_children"))
        local f = io.popen("echo popen")
        out("popen", f and f:read("l"))
      ]]
      assert.equal("true", r.ok, raw)
      assert.equal("true", r.self)
      assert.equal("true", r.children)
      assert.equal("true|exit|0", r.spawn, raw)
      assert.equal("true", r.back, raw)
      assert.equal("true", r.same)
      assert.equal("popen", r.popen, raw)
    end)

    it("returns nil, message and EPERM for an unprivileged caller", function()
      local r, raw = H.child([[ out("r", isle.unshare("net,uts")) ]], { user = true })
      assert.equal("nil|unshare net,uts: Operation not permitted|" .. E.EPERM, r.r, raw)
    end)

    it("does nothing for no kinds", function()
      local before = isle.nsinfo()
      assert.is_true(isle.unshare({}))
      assert.is_true(isle.unshare(""))
      assert.same(before, isle.nsinfo())
    end)

    it("raises on an unknown kind or a wrong type", function()
      assert.error_matches(function() isle.unshare("net,bogus") end,
        "bad argument #1 to '[%w.]*unshare' %(unknown namespace kind 'bogus'")
      assert.error_matches(function() isle.unshare({ "net", 3 }) end,
        "bad argument #1 to '[%w.]*unshare' %(kinds must be strings%)")
      assert.error_matches(function() isle.unshare(7) end, "bad argument #1 to '[%w.]*unshare'")
    end)
  end)

  describe("setns()", function()
    it("joins several namespaces of a pid at once (nsenter) #root", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --uts --ipc --net --mount sleep 30")
      finally(function() H.stop(pid) end)
      for _, k in ipairs { "uts", "ipc", "net", "mnt" } do
        assert.not_equal(H.nsid("self", k), H.nsid(pid, k))
      end
      local r, raw = H.child(string.format([[
        out("ok", isle.setns(%d, "uts,ipc,net,mnt"))
        for _, k in ipairs {"uts", "ipc", "net", "mnt"} do out(k, nsid(k)) end
      ]], pid))
      assert.equal("true", r.ok, raw)
      for _, k in ipairs { "uts", "ipc", "net", "mnt" } do
        assert.equal(tostring(H.nsid(pid, k)), r[k], k)
      end
    end)

    it("joins a user namespace together with others through the pidfd #root", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --user --map-root-user --uts sleep 30")
      finally(function() H.stop(pid) end)
      local r, raw = H.child(string.format([[
        out("ok", isle.setns(%d, {"user", "uts"}))
        out("user", nsid("user")) out("uts", nsid("uts"))
        out("uid", io.popen("id -u"):read("l"))
      ]], pid))
      assert.equal("true", r.ok, raw)
      assert.equal(tostring(H.nsid(pid, "user")), r.user)
      assert.equal(tostring(H.nsid(pid, "uts")), r.uts)
      assert.equal("0", r.uid)
    end)

    it("accepts a Process-like object with .pid #root", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --uts sleep 30")
      finally(function() H.stop(pid) end)
      local r, raw = H.child(string.format([[
        local p = setmetatable({pid = %d}, {__name = "isle.Process"})
        out("ok", isle.setns(p, "uts"))
        out("uts", nsid("uts"))
      ]], pid))
      assert.equal("true", r.ok, raw)
      assert.equal(tostring(H.nsid(pid, "uts")), r.uts)
    end)

    it("joins by path, by Namespace and by anything with a .path #root", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --uts --net sleep 30")
      finally(function() H.stop(pid) end)
      local r, raw = H.child(string.format([[
        out("path", isle.setns("/proc/%d/ns/uts", "uts"))
        out("uts", nsid("uts"))
        local ns = assert(isle.open_ns(%d, "net"))
        out("ns", isle.setns(ns))
        out("net", nsid("net"))
        ns:close()
        out("obj", isle.setns({path = "/proc/1/../%d/ns/net"}, "net"))
      ]], pid, pid, pid))
      assert.equal("true", r.path, raw)
      assert.equal("true", r.ns, raw)
      assert.equal("true", r.obj, raw)
      assert.equal(tostring(H.nsid(pid, "uts")), r.uts)
      assert.equal(tostring(H.nsid(pid, "net")), r.net)
    end)

    it("refuses mnt and user for a multi-threaded caller #root", function()
      if not H.is_root() then return pending("needs root") end
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir))
      finally(function() os.execute("rm -rf " .. dir) end)
      local f = assert(io.open(dir .. "/thr.c", "w"))
      f:write [[
        #include <pthread.h>
        #include <unistd.h>
        static void *idle(void *a) { (void)a; for (;;) pause(); return 0; }
        __attribute__((constructor)) static void start(void)
        { pthread_t t; pthread_create(&t, 0, idle, 0); }
      ]]
      f:close()
      local _, ok = H.sh("cc -shared -fPIC -o " .. dir .. "/thr.so " .. dir .. "/thr.c -lpthread 2>&1")
      if not ok then
        pending("no C compiler to build a thread preload")
        return
      end
      local pid = H.start("unshare --mount --uts sleep 30")
      finally(function() -- (busted keeps one finally per test)
        H.stop(pid)
        os.execute("rm -rf " .. dir)
      end)
      local r, raw = H.child(string.format([[
        out("mnt", isle.setns(%d, "mnt,uts"))
        out("uts", isle.setns(%d, "uts"))
      ]], pid, pid), { env = "LD_PRELOAD=" .. dir .. "/thr.so" })
      assert.matches("^nil|setns pid %d+ mnt,uts: the caller has 2 threads; mnt and user need a "
        .. "single%-threaded process: Invalid argument|" .. E.EINVAL .. "$", r.mnt, raw)
      assert.equal("true", r.uts, raw)
    end)

    it("reports the kernel's EINVAL for the caller's own user namespace", function()
      local before = H.own_census()
      local ok, msg, err = isle.setns("/proc/self/ns/user")
      assert.is_nil(ok)
      assert.equal("setns /proc/self/ns/user: Invalid argument", msg)
      assert.equal(E.EINVAL, err)
      H.assert_clean(before, H.own_census)
    end)

    it("reports the kernel's EINVAL for a kind that does not match the file", function()
      local ok, msg, err = isle.setns("/proc/self/ns/uts", "net")
      assert.is_nil(ok)
      assert.equal("setns /proc/self/ns/uts: Invalid argument", msg)
      assert.equal(E.EINVAL, err)
    end)

    it("fails with ESRCH for a dead pid and ENOENT for a missing file", function()
      local before = H.own_census()
      local pid = H.deadpid()
      local ok, msg, err = isle.setns(pid, "net,uts")
      assert.is_nil(ok)
      assert.equal("setns pid " .. pid .. " net,uts: No such process", msg)
      assert.equal(E.ESRCH, err)
      ok, msg, err = isle.setns("/proc/" .. pid .. "/ns/net")
      assert.is_nil(ok)
      assert.equal("setns /proc/" .. pid .. "/ns/net: No such file or directory", msg)
      assert.equal(E.ENOENT, err)
      local name = H.unique("isle-none")
      ok, msg, err = isle.setns(name, "net")
      assert.is_nil(ok)
      assert.equal("setns /run/netns/" .. name .. ": No such file or directory", msg)
      assert.equal(E.ENOENT, err)
      H.assert_clean(before, H.own_census)
    end)

    it("fails for an unprivileged caller with EPERM", function()
      local r, raw = H.child([[ out("r", isle.setns("/proc/self/../1/ns/uts", "uts")) ]],
        { user = true })
      -- pid 1 is not ours to inspect: EACCES at open, or EPERM at setns
      assert.matches("^nil|setns /proc/self/%.%./1/ns/uts: ", r.r, raw)
      local r2 = H.child(string.format([[ out("r", isle.setns("/proc/%d/ns/uts", "uts")) ]],
        H.mypid()), { user = true })
      assert.matches("^nil|setns /proc/%d+/ns/uts: [^|]+|%d+$", r2.r)
      local e = tonumber(r2.r:match("|(%d+)$"))
      assert.is_true(e == E.EPERM or e == E.EACCES)
    end)

    it("raises for a pid without kinds, bad kinds, and bad targets", function()
      assert.error_matches(function() isle.setns(1) end,
        "bad argument #2 to 'setns' %(kinds expected with a pid or a Process%)")
      assert.error_matches(function() isle.setns(1, "") end,
        "bad argument #2 to 'setns' %(kinds must not be empty%)")
      assert.error_matches(function() isle.setns(1, "net,nope") end,
        "bad argument #2 to 'setns' %(unknown namespace kind 'nope'")
      assert.error_matches(function() isle.setns(0, "net") end,
        "bad argument #1 to 'setns' %(pid out of range%)")
      assert.error_matches(function() isle.setns("/proc/self/ns/net", "net,uts") end,
        "bad argument #2 to 'setns' %(a path is one namespace: give one kind%)")
      assert.error_matches(function() isle.setns(true, "net") end,
        "bad argument 'target' to 'setns' %(namespace target expected")
      assert.error_matches(function() isle.setns("..", "net") end,
        "bad argument 'target' to 'setns' %(name '%.%.' is not allowed%)")
      local ns = assert(isle.open_ns(nil, "uts"))
      ns:close()
      assert.error_matches(function() isle.setns(ns) end,
        "attempt to use a closed isle.Namespace")
    end)
  end)

  describe("nsid()", function()
    it("equals the id readlink shows, for every kind of the caller", function()
      for _, k in ipairs { "cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts" } do
        assert.equal(H.nsid("self", k), isle.nsid(nil, k), k)
      end
      assert.equal(H.nsid("self", "mnt"), isle.nsid(nil, "mount"))
    end)

    it("tells namespaces of another process apart #root", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --uts sleep 30")
      finally(function() H.stop(pid) end)
      assert.equal(H.nsid(pid, "uts"), isle.nsid(pid, "uts"))
      assert.not_equal(isle.nsid(nil, "uts"), isle.nsid(pid, "uts"))
      assert.equal(isle.nsid(nil, "net"), isle.nsid(pid, "net"))
      local p = setmetatable({ pid = pid }, { __name = "isle.Process" })
      assert.equal(H.nsid(pid, "uts"), isle.nsid(p, "uts"))
    end)

    it("takes a path, a Namespace or an object with .path, checking the kind", function()
      local id = H.nsid("self", "net")
      assert.equal(id, isle.nsid("/proc/self/ns/net"))
      assert.equal(id, isle.nsid("/proc/self/ns/net", "net"))
      assert.equal(id, isle.nsid({ path = "/proc/self/ns/net" }))
      local ns <close> = assert(isle.open_ns(nil, "net"))
      assert.equal(id, isle.nsid(ns))
      assert.equal(id, isle.nsid(ns, "net"))
      local ok, msg, err = isle.nsid(ns, "uts")
      assert.is_nil(ok)
      assert.matches("^nsid /proc/self/fd/%d+: net namespace, not uts: Invalid argument$", msg)
      assert.equal(E.EINVAL, err)
    end)

    it("fails for a dead pid, a missing file and a file that is no namespace", function()
      local before = H.own_census()
      local pid = H.deadpid()
      local ok, msg, err = isle.nsid(pid, "net")
      assert.is_nil(ok)
      assert.equal("nsid /proc/" .. pid .. "/ns/net: No such file or directory", msg)
      assert.equal(E.ENOENT, err)
      ok, msg, err = isle.nsid("/etc/hostname")
      assert.is_nil(ok)
      assert.matches("^nsid /etc/hostname: not a namespace: ", msg)
      assert.equal(ENOTTY, err)
      ok, msg, err = isle.nsid("/proc/self/ns/uts", "net")
      assert.is_nil(ok)
      assert.equal("nsid /proc/self/ns/uts: uts namespace, not net: Invalid argument", msg)
      assert.equal(E.EINVAL, err)
      H.assert_clean(before, H.own_census)
    end)

    it("raises without a kind for a pid, or for an unknown kind", function()
      assert.error_matches(function() isle.nsid(1) end,
        "bad argument #2 to 'nsid' %(namespace kind expected, got nil%)")
      assert.error_matches(function() isle.nsid(nil) end,
        "bad argument #2 to 'nsid' %(namespace kind expected, got nil%)")
      assert.error_matches(function() isle.nsid(1, "netz") end,
        "bad argument #2 to 'nsid' %(unknown namespace kind 'netz'")
      assert.error_matches(function() isle.nsid(-3, "net") end,
        "bad argument 'target' to 'nsid' %(pid must be > 0%)")
      assert.error_matches(function() isle.nsid(2.5, "net") end,
        "bad argument 'target' to 'nsid'")
    end)
  end)

  describe("nsinfo()", function()
    it("lists every kind of /proc/self/ns with readlink's ids, no *_for_children", function()
      local info = isle.nsinfo()
      local kinds = {}
      for l in H.sh("ls -1 /proc/self/ns"):gmatch("[^\n]+") do
        if not l:find("_for_children") then kinds[#kinds + 1] = l end
      end
      local n = 0
      for _ in pairs(info) do n = n + 1 end
      assert.equal(#kinds, n)
      for _, k in ipairs(kinds) do
        assert.equal(H.nsid("self", k), info[k], k)
      end
      assert.same(info, isle.nsinfo("self"))
    end)

    it("reads another process by pid or Process #root", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --uts --ipc sleep 30")
      finally(function() H.stop(pid) end)
      local info = isle.nsinfo(pid)
      for k, id in pairs(info) do
        assert.equal(H.nsid(pid, k), id, k)
      end
      assert.not_equal(isle.nsinfo().uts, info.uts)
      assert.same(info, isle.nsinfo(setmetatable({ pid = pid }, { __name = "isle.Process" })))
    end)

    it("fails with ENOENT for a dead pid", function()
      local pid = H.deadpid()
      local ok, msg, err = isle.nsinfo(pid)
      assert.is_nil(ok)
      assert.equal("nsinfo /proc/" .. pid .. "/ns: No such file or directory", msg)
      assert.equal(E.ENOENT, err)
    end)

    it("raises for a bad pid", function()
      assert.error_matches(function() isle.nsinfo("me") end,
        "bad argument #1 to '[%w.]*nsinfo' %(pid, isle.Process or \"self\" expected, got string%)")
      assert.error_matches(function() isle.nsinfo(0) end,
        "bad argument #1 to '[%w.]*nsinfo' %(out of range")
      assert.error_matches(function() isle.nsinfo({}) end,
        "bad argument #1 to '[%w.]*nsinfo'")
    end)
  end)

  describe("open_ns()", function()
    it("opens a Namespace with kind, id, a CLOEXEC fd and a tostring", function()
      local before = H.own_census()
      do
        local ns <close> = assert(isle.open_ns(nil, "net"))
        assert.equal("net", ns.kind)
        assert.equal(H.nsid("self", "net"), ns.id)
        assert.equal("isle.Namespace (net:[" .. ns.id .. "])", tostring(ns))
        local fd = ns:fd()
        assert.equal("net:[" .. ns.id .. "]\n",
          H.sh("readlink /proc/" .. H.mypid() .. "/fd/" .. fd))
        local flags = H.readfile("/proc/self/fdinfo/" .. fd):match("flags:%s*(%d+)")
        assert.is_true(tonumber(flags, 8) & tonumber("2000000", 8) ~= 0, "O_CLOEXEC")
        local mt = getmetatable(ns)
        assert.equal("isle.Namespace", mt.__name)
        assert.equal(mt.__gc, mt.__close)
      end
      H.assert_clean(before, H.own_census)
    end)

    it("detects the kind of a path when none is given", function()
      local ns <close> = assert(isle.open_ns("/proc/self/ns/mnt"))
      assert.equal("mnt", ns.kind)
      assert.equal(H.nsid("self", "mnt"), ns.id)
      local again <close> = assert(isle.open_ns(ns))
      assert.equal(ns.id, again.id)
      assert.not_equal(ns:fd(), again:fd())
    end)

    it("closes idempotently, raises on methods after close, and __gc closes", function()
      local before = H.own_census()
      local ns = assert(isle.open_ns(nil, "uts"))
      assert.is_true(ns:close())
      assert.is_true(ns:close())
      assert.equal("isle.Namespace (closed)", tostring(ns))
      assert.error_matches(function() ns:fd() end, "attempt to use a closed isle.Namespace")
      assert.error_matches(function() ns:bind("/tmp/x") end,
        "attempt to use a closed isle.Namespace")
      for _ = 1, 100 do
        assert(isle.open_ns(nil, "uts"))
      end
      collectgarbage()
      collectgarbage()
      H.assert_clean(before, H.own_census)
    end)

    it("keeps a namespace alive after its last process exits, and bind()s it #root", function()
      if not H.is_root() then return pending("needs root") end
      local before = H.own_census()
      local pid = H.start("unshare --uts sleep 30")
      local file = os.tmpname()
      os.remove(file) -- bind() creates it
      finally(function()
        H.stop(pid)
        H.sh("umount " .. file .. " 2>/dev/null; rm -f " .. file)
      end)
      local ns = assert(isle.open_ns(pid, "uts"))
      local id = H.nsid(pid, "uts")
      assert.equal(id, ns.id)
      H.stop(pid)
      for _ = 1, 100 do
        if not H.readfile("/proc/" .. pid .. "/comm") then break end
        H.sh("sleep 0.01")
      end
      assert.equal("uts:[" .. id .. "]\n", H.sh("readlink /proc/" .. H.mypid() .. "/fd/" .. ns:fd()))
      assert.is_true(ns:bind(file))
      assert.is_true(ns:close())
      -- the file now holds it: stat shows the namespace's inode
      assert.equal(tostring(id), H.sh("stat -L -c %i " .. file):match("%d+"))
      assert.equal(id, isle.nsid(file, "uts"))
      local again <close> = assert(isle.open_ns(file, "uts"))
      assert.equal(id, again.id)
      again:close()
      H.sh("umount " .. file .. "; rm -f " .. file)
      H.assert_clean(before, H.own_census)
    end)

    it("binds onto an existing file without replacing it #root", function()
      if not H.is_root() then return pending("needs root") end
      local file = os.tmpname() -- exists, mode 0600
      finally(function() H.sh("umount " .. file .. " 2>/dev/null; rm -f " .. file) end)
      local ns <close> = assert(isle.open_ns(nil, "net"))
      assert.is_true(ns:bind(file))
      assert.equal(ns.id, isle.nsid(file, "net"))
    end)

    it("bind() fails and leaves no file when the mount is refused #root", function()
      if not H.is_root() then return pending("needs root") end
      local before = H.own_census()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir))
      finally(function() os.execute("rm -rf " .. dir) end)
      -- the kernel refuses to bind a mount namespace inside itself (a loop)
      local ns <close> = assert(isle.open_ns(nil, "mnt"))
      local ok, msg, err = ns:bind(dir .. "/mnt")
      assert.is_nil(ok)
      assert.equal("bind " .. dir .. "/mnt: Invalid argument", msg)
      assert.equal(E.EINVAL, err)
      assert.is_nil(H.readfile(dir .. "/mnt"))
      assert.equal("", H.sh("ls -A " .. dir))
      ok, msg, err = ns:bind(dir .. "/no/such/file")
      assert.is_nil(ok)
      assert.equal("bind " .. dir .. "/no/such/file: No such file or directory", msg)
      assert.equal(E.ENOENT, err)
      ns:close()
      H.assert_clean(before, H.own_census)
    end)

    it("fails for a dead pid, a file that is no namespace, and a wrong kind", function()
      local before = H.own_census()
      local pid = H.deadpid()
      local ok, msg, err = isle.open_ns(pid, "net")
      assert.is_nil(ok)
      assert.equal("open_ns /proc/" .. pid .. "/ns/net: No such file or directory", msg)
      assert.equal(E.ENOENT, err)
      ok, msg, err = isle.open_ns("/etc/hostname")
      assert.is_nil(ok)
      assert.matches("^open_ns /etc/hostname: not a namespace: ", msg)
      assert.equal(ENOTTY, err)
      ok, msg, err = isle.open_ns("/proc/self/ns/ipc", "net")
      assert.is_nil(ok)
      assert.equal("open_ns /proc/self/ns/ipc: ipc namespace, not net: Invalid argument", msg)
      assert.equal(E.EINVAL, err)
      H.assert_clean(before, H.own_census)
    end)

    it("raises without a kind for a pid, or for an unknown kind", function()
      assert.error_matches(function() isle.open_ns(1) end,
        "bad argument #2 to 'open_ns' %(namespace kind expected, got nil%)")
      assert.error_matches(function() isle.open_ns(nil, "bogus") end,
        "bad argument #2 to 'open_ns' %(unknown namespace kind 'bogus'")
      assert.error_matches(function() isle.open_ns(false, "net") end,
        "bad argument 'target' to 'open_ns'")
    end)
  end)

  describe("sethostname()", function()
    it("sets the name in a new uts namespace only #root", function()
      if not H.is_root() then return pending("needs root") end
      local host = H.sh("hostname")
      local name = H.unique("isle-h")
      local r, raw = H.child(string.format([[
        out("u", isle.unshare("uts"))
        out("set", isle.sethostname(%q))
        out("get", isle.gethostname())
        out("cmd", io.popen("hostname"):read("l"))
      ]], name))
      assert.equal("true", r.u, raw)
      assert.equal("true", r.set, raw)
      assert.equal(name, r.get)
      assert.equal(name, r.cmd)
      assert.equal(host, H.sh("hostname"))
      assert.equal(host:gsub("\n$", ""), isle.gethostname())
    end)

    it("fails with EPERM for an unprivileged caller", function()
      local r, raw = H.child([[ out("r", isle.sethostname("nope")) ]], { user = true })
      assert.equal("nil|sethostname nope: Operation not permitted|" .. E.EPERM, r.r, raw)
    end)

    it("raises for a name over 64 bytes or with a NUL byte", function()
      assert.error_matches(function() isle.sethostname(("x"):rep(65)) end,
        "bad argument #1 to '[%w.]*sethostname' %(name longer than 64 bytes%)")
      assert.error_matches(function() isle.sethostname("a\0b") end,
        "bad argument #1 to '[%w.]*sethostname' %(name contains a NUL byte%)")
      assert.error_matches(function() isle.sethostname() end,
        "bad argument #1 to '[%w.]*sethostname'")
    end)
  end)

  describe("gethostname()", function()
    it("returns what hostname(1) prints", function()
      assert.equal(H.sh("hostname"):gsub("\n$", ""), isle.gethostname())
    end)
  end)

  describe("setdomainname()", function()
    it("sets the NIS domain name in a new uts namespace only #root", function()
      if not H.is_root() then return pending("needs root") end
      local dom = H.readfile("/proc/sys/kernel/domainname")
      local r, raw = H.child [[
        out("u", isle.unshare("uts"))
        out("set", isle.setdomainname("lab.example"))
        out("get", isle.getdomainname())
        out("proc", io.open("/proc/sys/kernel/domainname"):read("l"))
      ]]
      assert.equal("true", r.set, raw)
      assert.equal("lab.example", r.get)
      assert.equal("lab.example", r.proc)
      assert.equal(dom, H.readfile("/proc/sys/kernel/domainname"))
    end)

    it("fails with EPERM for an unprivileged caller, raises on a long name", function()
      local r, raw = H.child([[ out("r", isle.setdomainname("d")) ]], { user = true })
      assert.equal("nil|setdomainname d: Operation not permitted|" .. E.EPERM, r.r, raw)
      assert.error_matches(function() isle.setdomainname(("d"):rep(65)) end,
        "bad argument #1 to '[%w.]*setdomainname' %(name longer than 64 bytes%)")
    end)
  end)

  describe("getdomainname()", function()
    it("returns /proc/sys/kernel/domainname", function()
      assert.equal(H.readfile("/proc/sys/kernel/domainname"):gsub("\n$", ""),
        isle.getdomainname())
    end)
  end)
end)
