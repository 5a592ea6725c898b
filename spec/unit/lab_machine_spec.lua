-- The declaration of lab hosts as machines (no root, no system call): a
-- host's files, private directories and mounts, and services; every
-- mistake raises naming the culprit, and the plan orders services by
-- `after`.
local isle = require "isle"

local raises = require("spec.helper").raises

local n = 0
local function newlab()
  n = n + 1
  return isle.lab("mach" .. n)
end

describe("isle.lab hosts as machines (no root)", function()
  describe("host files, private, mounts", function()
    it("refuse what cannot be a host's file", function()
      local lab = newlab()
      local function host(opts) return function() lab:host("h" .. math.random(1e9), opts) end end
      raises("bad argument 'opts.files' to 'host' (table {[path] = text, ...} expected, got string)",
        host { files = "x" })
      raises([[bad argument 'opts.files["etc/x"]' to 'host' (absolute path other than / expected]],
        host { files = { ["etc/x"] = "" } })
      raises([[(absolute path other than / expected, got '/')]], host { files = { ["/"] = "" } })
      for _, p in ipairs { "/etc//x", "/etc/./x", "/etc/../x", "/etc/x/", "/etc/.." } do
        raises("is not a normal path", host { files = { [p] = "" } })
      end
      raises("blanks, ',', ':' and '\\' are not supported in paths",
        host { files = { ["/etc/a,b"] = "" } })
      raises("'/proc/x' is below /proc, which every host shares with the machine",
        host { files = { ["/proc/x"] = "" } })
      raises("below /sys", host { files = { ["/sys/x"] = "" } })
      raises("below /dev", host { private = { "/dev/shm" } })
      raises([[bad argument 'opts.files["/x"]' to 'host' (one of text or source expected)]],
        host { files = { ["/x"] = {} } })
      raises("one of text or source expected", host { files = { ["/x"] = { text = "", source = "y" } } })
      raises([[bad argument 'opts.files["/x"]' to 'host' (unknown option 'txt')]],
        host { files = { ["/x"] = { txt = "" } } })
      raises([[opts.files["/x"].mode' to 'host' (integer in [0, 4095] (e.g. 493 for 0755) expected]],
        host { files = { ["/x"] = { text = "", mode = 8192 } } })
      raises([[opts.files["/x"].text' to 'host' (string expected, got number)]],
        host { files = { ["/x"] = { text = 4 } } })
      raises("bad argument 'opts.private' to 'host' (list of directories expected, got string)",
        host { private = "/var/lib/x" })
      raises("bad argument 'opts.private' to 'host' (/var/lib/x/y is below /var/lib/x)",
        host { private = { "/var/lib/x", "/var/lib/x/y" } })
      raises("bad argument 'opts.mounts[1]' to 'host' (unknown mount shorthand 'bnd'",
        host { mounts = { { "bnd", "/a", "/b" } } })
      raises("bad argument 'opts.mounts[1]' to 'host' (target must be an absolute path, got 'b')",
        host { mounts = { { "bind", "/a", "b" } } })
      -- and the plan has them, sorted
      local lab2 = newlab()
      lab2:host("h1", { files = { ["/run/b"] = "B", ["/etc/a"] = { source = "x.conf", mode = 384 } },
        private = { "/var/lib/z", "/var/lib/a" }, mounts = { { "bind", "/srv", "/mnt", ro = true } } })
      local h = lab2:validate().hosts[1]
      assert.same({ { path = "/etc/a", source = "x.conf", mode = 384 }, { path = "/run/b", text = "B" } },
        h.files)
      assert.same({ "/var/lib/a", "/var/lib/z" }, h.private)
      assert.equal(2, #h.mounts) -- the bind and its read-only remount
      assert.equal("/mnt", h.mounts[1].target)
    end)
  end)

  describe("services", function()
    it("refuse bad names, hosts and options", function()
      local lab = newlab()
      local h1, s1 = lab:host("h1"), lab:switch("s1")
      local argv = { "sleep", "1000" }
      raises("bad argument 'host' to 'service' (services run on hosts, not on switches)",
        function() lab:service(s1, "x", { argv = argv }) end)
      raises("bad argument 'host' to 'service' (a host or switch of lab " .. lab.name
        .. " expected, got 'h9')", function() lab:service("h9", "x", { argv = argv }) end)
      raises("bad argument 'name' to 'service' (name must not contain '/')",
        function() lab:service(h1, "a/b", { argv = argv }) end)
      raises("bad argument 'opts.argv' to 'service' (non-empty list of strings expected",
        function() lab:service(h1, "x", {}) end)
      raises("bad argument 'opts' to 'service' (unknown option 'cmd')",
        function() lab:service(h1, "x", { cmd = argv }) end)
      raises("bad argument 'opts.argv[2]' to 'service' (string expected, got table)",
        function() lab:service(h1, "x", { argv = { "a", {} } }) end)
      raises("bad argument 'opts.ready' to 'service' (exactly one of argv, port or file expected)",
        function() lab:service(h1, "x", { argv = argv, ready = { port = 80, file = "/x" } }) end)
      raises("bad argument 'opts.ready' to 'service' (unknown option 'tcp')",
        function() lab:service(h1, "x", { argv = argv, ready = { tcp = 80 } }) end)
      raises("bad argument 'opts.ready.port' to 'service' (integer in [1, 65535] expected, got 0)",
        function() lab:service(h1, "x", { argv = argv, ready = { port = 0 } }) end)
      raises("bad argument 'opts.ready.file' to 'service' (absolute path expected, got run/x)",
        function() lab:service(h1, "x", { argv = argv, ready = { file = "run/x" } }) end)
      raises("bad argument 'opts.timeout' to 'service' (seconds in (0, 3600] expected, got 0)",
        function() lab:service(h1, "x", { argv = argv, timeout = 0 }) end)
      raises("bad argument 'opts.restart' to 'service' (\"no\" or \"on-failure\" expected, got always)",
        function() lab:service(h1, "x", { argv = argv, restart = "always" }) end)
      raises("bad argument 'opts.restart_limit' to 'service' (integer in [0, 1000] expected, got -1)",
        function() lab:service(h1, "x", { argv = argv, restart_limit = -1 }) end)
      raises("bad argument 'opts.user' to 'service' (\"uid\" or \"uid:gid\" expected, got frr)",
        function() lab:service(h1, "x", { argv = argv, user = "frr" }) end)
      raises("bad argument 'opts.cwd' to 'service' (absolute path expected, got tmp)",
        function() lab:service(h1, "x", { argv = argv, cwd = "tmp" }) end)
      raises("bad argument 'opts.env' to 'service' (bad variable name 'A=B')",
        function() lab:service(h1, "x", { argv = argv, env = { ["A=B"] = "1" } }) end)
      lab:service(h1, "x", { argv = argv })
      raises("bad argument 'name' to 'service' (host h1 already has a service named 'x')",
        function() lab:service(h1, "x", { argv = argv }) end)
    end)

    it("refuse unknown and cyclic dependencies at validate/up", function()
      local lab = newlab()
      local h1, h2 = lab:host("h1"), lab:host("h2")
      local argv = { "true" }
      lab:service(h1, "a", { argv = argv, after = { "b" } })
      lab:service(h2, "b", { argv = argv })
      raises("service a on h1: after 'b': no such service on h1", function() lab:validate() end)
      lab = newlab()
      h1 = lab:host("h1")
      lab:service(h1, "a", { argv = argv, after = "c" })
      lab:service(h1, "b", { argv = argv, after = { "a" } })
      lab:service(h1, "c", { argv = argv, after = { "b" } })
      raises("lab " .. lab.name .. ": host h1: services wait for each other: a -> c -> b -> a",
        function() lab:validate() end)
      raises("services wait for each other", function() assert(lab:up()) end)
    end)

    it("are planned in start order with their defaults", function()
      local lab = newlab()
      local h1, h2 = lab:host("h1"), lab:host("h2")
      lab:service(h1, "ospfd", { argv = { "ospfd" }, after = { "zebra" },
        ready = { file = "/run/frr/ospfd.vty" } })
      lab:service(h1, "zebra", { argv = { "zebra" }, ready = { file = "/run/frr/zserv.api" } })
      lab:service(h2, "web", { argv = { "httpd", 80 }, ready = { port = 80 }, timeout = 5,
        restart = "on-failure", restart_limit = 2, env = { A = 1 } })
      local p = lab:validate()
      local order = {}
      for i, s in ipairs(p.services) do order[i] = s.host .. "/" .. s.name end
      assert.same({ "h1/zebra", "h1/ospfd", "h2/web" }, order)
      assert.same({ host = "h2", name = "web", argv = { "httpd", "80" }, after = {},
        ready = { port = 80 }, timeout = 5, restart = "on-failure", restart_limit = 2,
        env = { A = "1" } }, p.services[3])
      assert.same({ timeout = 30, restart = "no", restart_limit = 5 }, { timeout = p.services[1].timeout,
        restart = p.services[1].restart, restart_limit = p.services[1].restart_limit })
    end)
  end)
end)
