-- isle.container.plan: a container's spec → the spawn spec and the steps the
-- C child runs, checked without root against a made-up machine.
local plan = require "isle.container.plan"
local core = require "isle.core"
local MS, MNT = core.MS, core.MNT

--- A machine: `files` maps paths to "dir" or "file", `etc` lists the files
-- of /etc/netns/NAME dirs, `hosts` the lab hosts host_entry knows.
local function machine(t)
  t = t or {}
  local files = t.files or {}
  return {
    exists = function(p) return files[p] ~= nil end,
    isdir = function(p) return files[p] ~= "file" end,
    kind = function(p)
      local f = files[p] or (t.kinds or {})[p]
      return f and (f == "dir" and "dir" or f:match("^link") and "link" or "file")
    end,
    readlink = function(p)
      local f = files[p]
      return f and f:match("^link:(.*)$")
    end,
    last_cap = function() return 40 end,
    argarea = function() return { 100, 200, 200, 300 } end,
    seccomp = function(bits) return "bpf:" .. bits end,
    seccomp_key = function(bits) return bits end,
    listdir = function(p) return { table.unpack((t.etc or {})[p] or {}) } end,
    read = function(p) return (t.read or {})[p] end,
    getenv = function(k) return (t.env or {})[k] end,
    ids = function() return t.uid or 0, t.gid or 0 end,
    helpers = t.helpers,
    host_entry = function(lab, host)
      local e = (t.hosts or {})[lab .. ":" .. host]
      if not e then return nil, "lab " .. lab .. ": no host '" .. host .. "'", 2 end
      return e
    end,
  }
end

local function compile(spec, m)
  local c = plan.check("run", spec, 1)
  return plan.compile(c, m or machine())
end

local function step(p, what)
  for i, s in ipairs(p.steps) do
    if s.what == what then return s, i end
  end
  return nil
end

local function whats(p)
  local t = {}
  for i, s in ipairs(p.steps) do t[i] = s.what end
  return t
end

describe("isle.container.plan", function()
  describe("the machine's root (the default)", function()
    local p, info = compile { argv = { "sh" } }

    it("makes pid, mnt, ipc, cgroup, uts and net namespaces, an init, docker's defaults", function()
      assert.same({ "pid", "mnt", "ipc", "cgroup", "uts", "net" }, p.namespaces)
      assert.equal("isle", p.hostname)
      assert.is_nil(p.join)
      assert.is_true(p.init)
      assert.is_true(p.no_new_privs)
      assert.same(plan.DEFAULT_CAPS, p.caps)
      assert.equal("/", p.cwd)
      assert.same({ "sh" }, p.argv)
      assert.equal("isle", p.env.HOSTNAME)
      assert.matches("/usr/bin", p.env.PATH)
      assert.is_nil(p.env.TERM)
      assert.equal(p.env, info.env)
    end)

    it("stages in a tmpfs, binds / read-only as the new root, pivots into it", function()
      local w = whats(p)
      assert.same({ "mount tmpfs on /tmp (staging)", "mkdir /tmp/newroot", "mkdir /tmp/oldroot",
        "chdir /tmp", "pivot_root", "chdir /", "bind / (the machine's root)", "mkdir /proc",
        "mkdir /dev", "mkdir /sys", "mkdir /tmp", "mkdir /run", "make / read-only" },
        { table.unpack(w, 1, 13) })
      local s = step(p, "pivot_root")
      assert.same({ op = "pivot", what = "pivot_root", path = ".", put_old = "oldroot" }, s)
      s = step(p, "bind / (the machine's root)")
      assert.same({ op = "mount", what = s.what, source = "/oldroot", target = "/newroot",
        flags = MS.bind | MS.rec }, s)
      assert.same({ op = "setattr", what = "make / read-only", path = "/newroot",
        attr = core.MOUNT_ATTR.rdonly | core.MOUNT_ATTR.nodev }, step(p, "make / read-only"))
      assert.equal("pivot_root /newroot", w[#w - 1])
      assert.same({ op = "pivot", what = "pivot_root /newroot", path = "/newroot" },
        p.steps[#p.steps - 1])
      local u, i = step(p, "umount /oldroot")
      assert.same({ op = "umount", what = "umount /oldroot", target = "/oldroot",
        flags = MNT.detach }, u)
      assert.equal(#p.steps - 2, i)
    end)

    it("mounts a private /proc, a minimal /dev, a read-only sysfs, a fresh /tmp; lo up last", function()
      assert.same({ op = "mount", what = "mount proc on /proc", source = "proc",
        target = "/newroot/proc", fstype = "proc", flags = MS.nosuid | MS.nodev | MS.noexec },
        step(p, "mount proc on /proc"))
      for _, d in ipairs(plan.DEVICES) do
        assert.same({ op = "mkfile", what = "create /dev/" .. d, path = "/newroot/dev/" .. d },
          step(p, "create /dev/" .. d))
        assert.equal("/oldroot/dev/" .. d, step(p, "bind /dev/" .. d).source)
      end
      assert.equal("sysfs", step(p, "mount sysfs on /sys").fstype)
      assert.equal("/newroot/sys", step(p, "make /sys read-only").path)
      assert.equal("newinstance,ptmxmode=0666,mode=620", step(p, "mount devpts on /dev/pts").data)
      assert.is_true(step(p, "mount mqueue on /dev/mqueue").optional)
      assert.is_true(step(p, "mkdir /proc").optional)
      assert.equal("mode=1777", step(p, "mount tmpfs on /tmp").data)
      assert.same({ op = "lo_up", what = "set lo up" }, p.steps[#p.steps])
    end)
  end)

  describe("a rootfs", function()
    it("binds it instead, read-only only when asked, and makes missing mount points", function()
      local m = machine { files = { ["/srv/r/etc"] = "dir", ["/etc/hosts"] = "file" } }
      local p = compile({ argv = { "sh" }, rootfs = "/srv/r",
        mounts = { { "bind", "/data", "/data" }, { "bind", "/etc/hosts", "/etc/hosts", ro = true },
          { "tmpfs", "/cache" } } }, m)
      assert.same({ op = "mount", what = "bind rootfs /srv/r", source = "/oldroot/srv/r",
        target = "/newroot", flags = MS.bind | MS.rec }, step(p, "bind rootfs /srv/r"))
      assert.is_nil(step(p, "rootfs read-only"))
      assert.same({ op = "mkdir", what = "create mount point /data", path = "/newroot/data",
        mode = 493 }, step(p, "create mount point /data"))
      assert.same({ op = "mkdir", what = "create mount point /cache", path = "/newroot/cache",
        mode = 493 }, step(p, "create mount point /cache"))
      -- /srv/r/etc/hosts is not there, the source is a file: an empty file
      assert.same({ op = "mkfile", what = "create mount point /etc/hosts",
        path = "/newroot/etc/hosts" }, step(p, "create mount point /etc/hosts"))
      local b = step(p, "bind /data on /data")
      assert.same({ "/oldroot/data", "/newroot/data" }, { b.source, b.target })
      local ro = step(p, "remount /etc/hosts read-only")
      assert.equal(MS.bind | MS.remount | MS.ro | MS.rec, ro.flags)
      assert.equal("/newroot/etc/hosts", ro.target)
      local t = step(p, "mount tmpfs on /cache")
      assert.same({ "tmpfs", "/newroot/cache", "tmpfs" }, { t.source, t.target, t.fstype })
      assert.same({ op = "setattr", what = "rootfs nodev", path = "/newroot",
        attr = core.MOUNT_ATTR.nodev }, step(p, "rootfs nodev"))
      p = compile({ argv = { "sh" }, rootfs = "/srv/r", readonly = true }, m)
      assert.same({ op = "setattr", what = "rootfs read-only", path = "/newroot",
        attr = core.MOUNT_ATTR.rdonly | core.MOUNT_ATTR.nodev }, step(p, "rootfs read-only"))
    end)

    it("keeps the machine's / read-only: a missing mount point is refused, saying why", function()
      local p, msg, e = compile { argv = { "sh" }, mounts = { { "tmpfs", "/no-such-dir" } } }
      assert.is_nil(p)
      assert.equal("container: mount point /no-such-dir: not in the read-only root (the"
        .. " machine's /), where isle creates nothing: create it there first, or choose a"
        .. " target that exists (or one under /tmp or /run, the container's own)", msg)
      assert.equal(30, e) -- EROFS
    end)

    it("makes mount points (and their parents) in the container's own /tmp and /run", function()
      local m = machine { files = { ["/srv"] = "dir", ["/etc/hosts"] = "file" } }
      local p = compile({ argv = { "sh" }, mounts = { { "bind", "/srv", "/run/a/b" },
        { "bind", "/etc/hosts", "/tmp/h" } } }, m)
      assert.same({ op = "mkdir", what = "create mount point /run/a", path = "/newroot/run/a",
        mode = 493, optional = true }, step(p, "create mount point /run/a"))
      assert.equal("mkdir", step(p, "create mount point /run/a/b").op)
      assert.same({ op = "mkfile", what = "create mount point /tmp/h", path = "/newroot/tmp/h",
        optional = true }, step(p, "create mount point /tmp/h"))
      local _, i = step(p, "mount tmpfs on /run")
      assert.is_true(i < select(2, step(p, "create mount point /run/a")))
    end)

    it("resolves a target's symlinks inside the root: /var/run/x is /run/x", function()
      local m = machine { files = { ["/var"] = "dir", ["/var/run"] = "link:/run",
        ["/srv"] = "dir", ["/r/var"] = "dir", ["/r/var/run"] = "link:../run", ["/r/run"] = "dir",
        ["/r/etc"] = "link:/x/../../y" } }
      local p = compile({ argv = { "sh" }, mounts = { { "bind", "/srv", "/var/run/x" } } }, m)
      assert.equal("/newroot/run/x", step(p, "bind /srv on /var/run/x").target)
      assert.is_nil(step(p, "mount tmpfs on /var/run")) -- a link on Debian
      p = compile({ argv = { "sh" }, rootfs = "/r", mounts = { { "bind", "/srv", "/var/run/x" },
        { "bind", "/srv", "/etc/z" } } }, m)
      assert.equal("/newroot/run/x", step(p, "bind /srv on /var/run/x").target)
      assert.equal("/newroot/y/z", step(p, "bind /srv on /etc/z").target)
      assert.equal("/run/x", require("isle.container.rootfs").resolve({}, "/var/run/x/.", m))
    end)
  end)

  describe("net", function()
    it("'host': the machine's netns, its /sys bound, no lo step", function()
      local p = compile { argv = { "sh" }, net = "host" }
      assert.same({ "pid", "mnt", "ipc", "cgroup", "uts" }, p.namespaces)
      assert.is_nil(p.join)
      assert.is_nil(step(p, "mount sysfs on /sys"))
      assert.same({ op = "mount", what = "bind /sys", source = "/oldroot/sys",
        target = "/newroot/sys", flags = MS.bind | MS.rec }, step(p, "bind /sys"))
      assert.is_nil(step(p, "set lo up"))
    end)

    it("a named netns: joined, with its /etc/netns files bound read-only", function()
      local m = machine { files = { ["/run/netns/blue"] = "file", ["/etc/resolv.conf"] = "file",
        ["/etc/hosts"] = "file" },
        etc = { ["/etc/netns/blue"] = { "resolv.conf", "hosts" } } }
      local p = compile({ argv = { "sh" }, net = "blue" }, m)
      assert.same({ net = "/run/netns/blue" }, p.join)
      assert.same({ "pid", "mnt", "ipc", "cgroup", "uts" }, p.namespaces)
      local w = table.concat(whats(p), "\n")
      assert.matches("bind /etc/netns/blue/hosts\n"
        .. "make /etc/hosts read%-only\nbind /etc/netns/blue/resolv.conf\n"
        .. "make /etc/resolv.conf read%-only\n", w)
      assert.equal("/oldroot/etc/netns/blue/hosts", step(p, "bind /etc/netns/blue/hosts").source)
      assert.equal("sysfs", step(p, "mount sysfs on /sys").fstype)
      local q, msg, e = compile({ argv = { "sh" }, net = "red" }, m)
      assert.is_nil(q)
      assert.equal("container: net red: no such network namespace (/run/netns/red)", msg)
      assert.equal(2, e)
    end)

    it("'LAB:HOST' and a lab host node: the lab's entry (net, uts, time), its hostname", function()
      local entry = { join = { net = "/run/netns/l-h1", uts = "/run/isle/l/h1.uts",
        time = "/run/isle/l/h1.time" }, netns = "l-h1", hostname = "router1" }
      local m = machine { hosts = { ["l:h1"] = entry }, etc = { ["/etc/netns/l-h1"] = { "hosts" } },
        files = { ["/etc/hosts"] = "file" } }
      for _, net in ipairs { "l:h1", { kind = "host", name = "h1", lab = { name = "l" } } } do
        local p, info = compile({ argv = { "sh" }, net = net }, m)
        assert.same(entry.join, p.join)
        assert.same({ "pid", "mnt", "ipc", "cgroup" }, p.namespaces)
        assert.is_nil(p.hostname)
        assert.equal("router1", info.hostname)
        assert.equal("router1", p.env.HOSTNAME)
        assert.is_not_nil(step(p, "bind /etc/netns/l-h1/hosts"))
        assert.is_nil(step(p, "set lo up"))
      end
      local p, msg, e = compile({ argv = { "sh" }, net = "l:h9" }, m)
      assert.is_nil(p)
      assert.equal("container: net l:h9: no such network namespace (lab l: no host 'h9')", msg)
      assert.equal(2, e)
      assert.has_error(function() plan.check("run", { argv = { "sh" }, net = "l:h1",
        hostname = "x" }, 1) end,
        "bad argument #1 to 'run' (hostname: a container on a lab host has the host's hostname"
        .. " (net LAB:HOST joins its uts namespace))")
    end)
  end)

  describe("attach()", function()
    it("joins the cgroups first and opens the terminal last", function()
      local m = machine { env = { TERM = "screen" } }
      local p = compile({ argv = { "sh" }, tty = true }, m)
      assert.equal("screen", p.env.TERM)
      plan.attach(p, { cgroup = "/sys/fs/cgroup/memory/isle-x", cgroup_fds = { 7, 8 },
        pty = { fd = 9, rows = 24, cols = 80 } })
      assert.equal("/sys/fs/cgroup/memory/isle-x", p.cgroup)
      assert.same({ op = "write_fd", what = "join cgroup", fd = 7, data = "0" }, p.steps[1])
      assert.same({ op = "write_fd", what = "join cgroup", fd = 8, data = "0" }, p.steps[2])
      assert.equal("mount tmpfs on /tmp (staging)", p.steps[3].what)
      assert.same({ op = "pty", what = "terminal", fd = 9, rows = 24, cols = 80 },
        p.steps[#p.steps])
      assert.equal("set lo up", p.steps[#p.steps - 1].what)
    end)
  end)

  describe("rootless", function()
    it("adds a user namespace mapping the caller to 0, with its subid ranges", function()
      local m = machine { uid = 1000, gid = 1000, helpers = true, read = {
        ["/etc/passwd"] = "alice:x:1000:1000::/home/alice:/bin/sh\n",
        ["/etc/subuid"] = "bob:100000:65536\nalice:165536:65536\n",
        ["/etc/subgid"] = "1000:231072:65536\n" } }
      local p = compile({ argv = { "sh" }, rootless = true }, m)
      assert.equal("user", p.namespaces[#p.namespaces])
      assert.same({ { 0, 1000, 1 }, { 1, 165536, 65536 } }, p.uid_map)
      assert.same({ { 0, 1000, 1 }, { 1, 231072, 65536 } }, p.gid_map)
      -- rootless in a netns it does not own: /sys bound, not mounted
      m.exists = function() return true end
      p = compile({ argv = { "sh" }, rootless = true, net = "blue" }, m)
      assert.is_not_nil(step(p, "bind /sys"))
      m.helpers = false
      p = compile({ argv = { "sh" }, rootless = true }, m)
      assert.same({ { 0, 1000, 1 } }, p.uid_map)
    end)
  end)

  describe("check()", function()
    it("raises for mistakes, naming the field", function()
      local function bad(spec, msg)
        assert.has_error(function() plan.check("run", spec, 1) end, msg)
      end
      bad({ argv = {} }, "bad argument #1 to 'run' (argv: non-empty list expected)")
      bad({ argv = { "sh" }, colour = 1 }, "bad argument #1 to 'run' (unknown field 'colour')")
      bad({ argv = { "sh" }, cwd = "rel" }, "bad argument #1 to 'run' (cwd: absolute path expected, got 'rel')")
      bad({ argv = { "sh" }, name = "../x" }, "bad argument 'name' to 'run' (name must not contain '/')")
      bad({ argv = { "sh" }, name = "a b" }, "bad argument 'name' to 'run' (name 'a b' may hold only letters, digits, '_', '.' and '-')")
      bad({ argv = { "sh" }, caps = { "fly" } }, "bad argument #1 to 'run' (caps[1]: unknown capability 'fly')")
      bad({ argv = { "sh" }, limits = { memory = "lots" } }, "bad argument #1 to 'run' (limits.memory: size expected (bytes or a string like '64m'))")
      bad({ argv = { "sh" }, limits = { cpu = 0 / 0 } }, "bad argument #1 to 'run' (limits.cpu: positive number of CPUs expected)")
      bad({ argv = { "sh" }, net = 42 }, "bad argument #1 to 'run' (net: 'none', 'host', a Netns, a netns name or 'LAB:HOST' expected, got number)")
      bad({ argv = { "sh" }, mounts = { { "tmpfs", "rel" } } }, "bad argument #1 to 'run' (mounts[1]: target must be an absolute path)")
      bad({ argv = { "sh" }, mounts = { { "bind", "rel", "/x" } } }, "bad argument #1 to 'run' (mounts[1]: bind source must be an absolute path)")
    end)

    it("normalises caps, sizes and the environment", function()
      local c = plan.check("run", { argv = { "sh", 1 }, caps = { "CAP_NET_ADMIN", "chown" },
        limits = { memory = "1.5k", pids = 3 }, env = { A = "1", HOME = false } }, 1)
      assert.same({ "sh", "1" }, c.argv)
      assert.same({ "net_admin", "chown" }, c.caps)
      assert.same({ memory = 1536, pids = 3 }, c.limits)
      assert.is_nil(plan.check("run", { argv = { "sh" }, caps = "all" }, 1).caps)
      local p = plan.compile(c, machine())
      assert.equal("1", p.env.A)
      assert.is_nil(p.env.HOME)
      assert.equal(64 * 1024 * 1024, plan.bytes("64m"))
      assert.is_nil(plan.bytes("64x"))
      assert.is_nil(plan.bytes(0))
    end)
  end)

  describe("exec()", function()
    it("joins the container's PID 1, its cgroups and capabilities; a terminal of its own", function()
      local x = plan.check_exec("exec", { argv = { "sh" }, tty = true }, 1)
      local m = machine { read = { ["/proc/42/root/proc/sys/kernel/hostname"] = "box\n" } }
      local p = plan.exec(42, x, m, { cgroup_fds = { 5 }, pty = { fd = 6 }, caps = { "kill" },
        no_new_privs = true, env = { HOSTNAME = "old" } })
      assert.equal(42, p.join)
      assert.same({ "kill" }, p.caps)
      assert.is_true(p.no_new_privs)
      assert.equal("old", p.env.HOSTNAME) -- the container's
      assert.equal("xterm", p.env.TERM)
      assert.same({ { op = "write_fd", what = "join cgroup", fd = 5, data = "0" },
        { op = "pty", what = "terminal", fd = 6 } }, p.steps)
      x = plan.check_exec("exec", { "true" }, 1)
      p = plan.exec(42, x, m, { env = { HOSTNAME = "old" }, no_new_privs = false })
      assert.same({ HOSTNAME = "old" }, p.env)
      assert.is_false(p.no_new_privs)
      assert.has_error(function() plan.check_exec("exec", { argv = { "sh" }, bogus = 1 }, 1) end,
        "bad argument #1 to 'exec' (unknown field 'bogus')")
    end)
  end)
end)
