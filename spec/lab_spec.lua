-- isle.lab: declaration checks, up/down against kernel truth, rollback,
-- crash records, concurrency.
local H = require "spec.helper"
local isle = require "isle"
local core = require "isle.core"

local function small(name, opts)
  opts = opts or {}
  local lab = isle.lab(name)
  local s1 = lab:switch("s1")
  local h1 = lab:host("h1", { hostname = "alpha" })
  local h2 = lab:host("h2")
  lab:link(h1, s1, { ip = "10.0.0.1/24" })
  lab:link(h2, s1, { ip = "10.0.0.2/24" })
  for i = 3, opts.hosts or 2 do
    lab:link(lab:host("h" .. i), s1, { ip = string.format("10.0.0.%d/24", i) })
  end
  return lab
end

-- A topology script (a temp file) for lab `name`: small(name)'s lab.
local function lab_script(name)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(string.format([[
local lab = require("isle").lab(%q)
local s1 = lab:switch("s1")
lab:link(lab:host("h1", { hostname = "alpha" }), s1, { ip = "10.0.0.1/24" })
lab:link(lab:host("h2"), s1, { ip = "10.0.0.2/24" })
return lab
]], name))
  f:close()
  return path
end

describe("isle.lab", function()
  describe("declaration checks (before any system call)", function()
    -- every check of the declaration language: spec/unit/lab_plan_spec.lua
    it("raise naming the culprit, and create nothing", function()
      local name = H.unique("lv")
      local lab = isle.lab(name)
      local s1 = lab:switch("s1")
      local h1 = lab:host("h1")
      assert.has_error(function() lab:host("h1") end, "bad argument 'name' to 'host' (lab "
        .. name .. " already has a host named 'h1')")
      assert.has_error(function() lab:host("x", { colour = "red" }) end,
        "bad argument 'opts' to 'host' (unknown option 'colour')")
      assert.has_error(function() lab:link(h1, s1, { loss = 200 }) end,
        "bad argument 'opts.loss' to 'link' (percentage in [0, 100] expected, got 200)")
      -- whole-declaration checks happen in up(), still before anything
      local h2 = lab:host("h2", { gateway = "10.9.9.9" })
      lab:link(h1, s1, { ip = "10.0.0.1/24" })
      lab:link(h2, s1, { ip = "10.0.0.2/24" })
      local ok, err = pcall(lab.up, lab)
      assert.is_false(ok)
      assert.matches("host h2: gateway 10.9.9.9 is in none of the host's subnets", err, 1, true)
      assert.is_nil(H.lab_debris(name))
      -- a name changed after creation is checked again (D6)
      local lab2 = isle.lab(name)
      lab2.name = "../" .. name
      assert.has_error(function() lab2:up() end, "lab ../" .. name
        .. ": name must not contain '/'")
      assert.is_nil(core.ino("/run/isle/../" .. name))
      assert.is_nil(H.lab_debris(name))
    end)
  end)

  describe("up() and down()", function()
    it("builds hosts with hostnames that ping each other by name, then leaves nothing #root",
      function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("lu")
      local root_links = H.ipj("link show")
      local root_routes = H.sh("ip route show; ip -6 route show")
      collectgarbage(); collectgarbage()
      local before = H.census()
      local lab = small(name, { hosts = 3 })
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      -- iproute2 sees the hosts
      local list = H.sh("ip netns list")
      assert.matches(name .. "-h1", list, 1, true)
      assert.matches(name .. "-h3", list, 1, true)
      -- own hostnames
      local out = lab:run("h1", { "hostname" })
      assert.equal("alpha\n", out)
      assert.equal("h2\n", (lab:run("h2", { "hostname" })))
      -- by name, through the switch
      local _, ok = lab:run("h1", { "ping", "-c1", "-W2", "h2" })
      assert.is_true(ok)
      _, ok = lab:run("h3", { "ping", "-c1", "-W2", "alpha" })
      assert.is_true(ok)
      -- ip netns exec works too (hosts file under /etc/netns)
      local _, ok2 = H.sh("ip netns exec " .. name .. "-h2 ping -c1 -W2 h1 >/dev/null 2>&1")
      assert.is_true(ok2)
      -- the machine's own namespace is untouched
      assert.same(root_links, H.ipj("link show"))
      assert.equal(root_routes, H.sh("ip route show; ip -6 route show"))
      -- an existing lab of the same name is a clear error
      local again, err = small(name):up()
      assert.is_nil(again)
      assert.matches("already exists", err)
      assert(lab:down())
      assert.is_nil(H.lab_debris(name))
      H.assert_clean(before)
    end)

    it("gives a host its own time namespace with clock offsets #root", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("lc")
      local lab = isle.lab(name)
      local a, b = lab:host("a"), lab:host("b", { clock = { boottime = 86400 } })
      lab:link(a, b, { ip = { "10.0.0.1/24", "10.0.0.2/24" } })
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      local ua = tonumber((lab:run("a", { "cat", "/proc/uptime" })):match("^(%S+)"))
      local ub = tonumber((lab:run("b", { "cat", "/proc/uptime" })):match("^(%S+)"))
      assert.is_true(ub - ua > 86300 and ub - ua < 86500)
      local _, ok = lab:run("b", { "ping", "-c1", "-W2", "a" })
      assert.is_true(ok)
      assert(lab:down())
      assert.is_nil(H.lab_debris(name))
    end)

    it("routes between subnets through a router, and NATs #root", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("lr")
      local lab = isle.lab(name)
      local s1 = lab:switch("s1")
      local r = lab:host("r", { forward = true })
      local h1 = lab:host("h1", { gateway = "10.0.0.254" })
      local up = lab:host("up", { routes = { { dst = "198.51.100.0/24", dev = "eth0" } } })
      lab:link(h1, s1, { ip = "10.0.0.1/24" })
      lab:link(r, s1, { ip = "10.0.0.254/24" })
      lab:link(r, up, { ip = { "192.0.2.1/24", "192.0.2.2/24" } })
      lab:nat(r, { out = "eth1", source = "10.0.0.0/24" })
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      local out, ok = lab:run("h1", { "ping", "-c1", "-W2", "up" })
      assert.is_true(ok, out)
      assert.matches("ttl=63", out)
      assert(lab:down())
    end)

    it("connects a switch to the machine with uplink, and removes it #root", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("lk")
      local ifname = "isle" .. H.mypid() % 100000
      local lab = isle.lab(name)
      local s1 = lab:switch("s1")
      lab:link(lab:host("h1"), s1, { ip = "192.0.2.1/24" })
      lab:uplink(s1, { ip = "192.0.2.254/24", ifname = ifname })
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      assert.is_not_nil(H.ipj("link show dev " .. ifname))
      local _, ok = H.sh("ping -c1 -W2 192.0.2.1 >/dev/null 2>&1")
      assert.is_true(ok)
      assert(lab:down())
      assert.is_nil(H.ipj("link show dev " .. ifname))
      assert.is_nil(H.lab_debris(name))
    end)

    it("rolls back completely when a host netns name is taken, leaving the foreign one #root",
      function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("lb")
      collectgarbage(); collectgarbage()
      local before = H.census()
      assert(H.sh("ip netns add " .. name .. "-h4 && echo ok") == "ok\n")
      finally(function() H.sh("ip netns del " .. name .. "-h4 2>/dev/null") end)
      local foreign = isle.nsid(name .. "-h4", "net")
      local lab = small(name, { hosts = 6 })
      local ok, err, e = lab:up()
      assert.is_nil(ok)
      assert.equal(1, err:find("lab " .. name .. ": host h4: netns add " .. name .. "-h4: File exists",
        1, true))
      assert.equal(H.E.EEXIST, e)
      -- the foreign netns is still there, the same one; nothing else is
      assert.equal(foreign, isle.nsid(name .. "-h4", "net"))
      for _, h in ipairs { "h1", "h2", "h3", "h5" } do
        assert.is_nil(core.ino("/run/netns/" .. name .. "-" .. h))
      end
      assert.is_nil(core.ino("/run/isle/" .. name))
      assert.is_nil(core.ino("/etc/netns/" .. name .. "-h1"))
      H.sh("ip netns del " .. name .. "-h4")
      assert.is_nil(H.lab_debris(name))
      H.assert_clean(before)
    end)

    it("brings the same lab up again right after down #root", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("la")
      for _ = 1, 3 do
        local lab = small(name, { hosts = 4 })
        assert(lab:up())
        local _, ok = lab:run("h1", { "ping", "-c1", "-W2", "h4" })
        assert.is_true(ok)
        assert(lab:down())
      end
      assert.is_nil(H.lab_debris(name))
    end)

    it("removes after a crash exactly what the records name, never more #root", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("ld")
      -- a real crash: a child building the lab is SIGKILLed after record 15
      -- (pid, model, switch netns, hosts file, the two directories of
      -- namespace files, h1's netns, inode, /etc/netns files, uts and mount
      -- namespaces, then h2's netns and inode: both hosts exist, the build
      -- is unfinished)
      local script = lab_script(name)
      local foreign_made
      finally(function() -- (one finally a test: busted keeps the last one only)
        os.remove(script)
        if foreign_made then H.sh("ip netns del " .. name .. "-h2 2>/dev/null") end
        isle.lab.down(name)
      end)
      local _, ok, how, sig = H.sh(string.format("exec env ISLE_FAULT=up:15 %s bin/isle up -q %s",
        H.LUA_ENV, script))
      assert.is_falsy(ok)
      assert.same({ "signal", 9 }, { how, sig })
      local info = assert(isle.lab.info(name))
      assert.is_false(info.complete)
      assert.is_false(info.alive)
      assert.is_not_nil(core.ino("/run/netns/" .. name .. "-h2"))
      -- a foreign namespace that happens to carry a host's name after the
      -- lab's own was removed by hand is not touched
      assert(isle.netns.del(name .. "-h2"))
      foreign_made = true
      assert(H.sh("ip netns add " .. name .. "-h2 && echo ok") == "ok\n")
      local foreign = isle.nsid(name .. "-h2", "net")
      assert(isle.lab.down(name))
      assert.equal(foreign, isle.nsid(name .. "-h2", "net"))
      assert.is_nil(core.ino("/run/netns/" .. name .. "-h1"))
      H.sh("ip netns del " .. name .. "-h2")
      assert.is_nil(H.lab_debris(name))
      local ok2, err, e = isle.lab.down(name)
      assert.is_nil(ok2)
      assert.matches("^lab " .. name:gsub("%-", "%%-") .. ": no such lab$", err)
      assert.equal(H.E.ENOENT, e)
    end)

    it("removes the empty file a kill between unmount and unlink leaves (D1) #root", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("l1")
      assert(small(name):up())
      finally(function() isle.lab.down(name) end)
      -- what a `down` killed between the two syscalls of netns del leaves
      assert(H.sh("umount -l /run/netns/" .. name .. "-h1 && echo ok") == "ok\n")
      assert.equal("", H.readfile("/run/netns/" .. name .. "-h1"))
      assert(isle.lab.down(name))
      assert.is_nil(core.ino("/run/netns/" .. name .. "-h1"))
      assert.is_nil(H.lab_debris(name))
      assert(small(name):up())
      assert(isle.lab.down(name))
      assert.is_nil(H.lab_debris(name))
    end)

    it("keeps its records private and confined to the lab's own prefixes #root", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("lp")
      local script = lab_script(name)
      local victims = os.tmpname()
      os.remove(victims)
      assert(os.execute("mkdir -p " .. victims .. "/d && echo x > " .. victims .. "/f"))
      assert(os.execute("ip netns add " .. name .. "x-h1"))
      finally(function()
        os.remove(script)
        os.execute("rm -rf " .. victims .. "; ip netns del " .. name .. "x-h1 2>/dev/null")
        H.sh(H.LUA_ENV .. " bin/isle down -q " .. name .. " 2>/dev/null")
      end)
      -- built with a permissive umask: the modes are still the private ones
      local out, ok = H.sh(string.format("umask 000 && %s bin/isle up -q %s 2>&1", H.LUA_ENV,
        script))
      assert.is_true(ok, out)
      local dir = "/run/isle/" .. name
      assert.equal("755 0\n700 0\n600 0\n600 0\n", H.sh("stat -c '%a %u' /run/isle " .. dir
        .. " " .. dir .. "/state " .. dir .. "/model"))
      -- records that name anything outside the lab are ignored, with a warning
      local f = assert(io.open(dir .. "/state", "a"))
      for _, r in ipairs { "file " .. victims .. "/f", "bind " .. victims .. "/f",
        "dir " .. victims .. "/d", "file " .. dir .. "/../../.." .. victims .. "/f",
        "dir /etc/netns/" .. name .. "-h1/../../../" .. victims .. "/d",
        "netns " .. name .. "x-h1", "netns ../" .. name .. "x-h1", "bogus record" } do
        f:write(r, "\n")
      end
      f:close()
      local err
      out, ok = H.sh(H.LUA_ENV .. " bin/isle down " .. name .. " 2>&1")
      assert.is_true(ok, out)
      err = out
      assert.equal("x\n", H.readfile(victims .. "/f"))
      assert.is_not_nil(core.ino(victims .. "/d"))
      assert.is_not_nil(core.ino("/run/netns/" .. name .. "x-h1"))
      local _, warnings = err:gsub("outside the lab's own prefixes", "")
      assert.equal(7, warnings, err)
      assert.matches("record %d+ %(bogus record%) ignored: unknown record", err)
      assert.is_nil(H.lab_debris(name))
    end)

    it("leaves the caller in its own namespaces when up raises midway (D2) #root", function()
      if not H.is_root() then return pending("needs root") end
      local name = H.unique("lr")
      -- raise after record 8: h1's uts and time namespaces are made (the
      -- caller is in them), its /etc/netns files are not
      local r, raw = H.child(string.format([[
        local lab = isle.lab(%q)
        local s1 = lab:switch("s1")
        lab:link(lab:host("h1", { clock = { boottime = 86400 } }), s1, { ip = "10.0.0.1/24" })
        lab:link(lab:host("h2"), s1, { ip = "10.0.0.2/24" })
        local before = { nsid("uts"), nsid("net"), nsid("time"), readf("/proc/sys/kernel/hostname") }
        local ok, err = pcall(lab.up, lab)
        out("ok", ok)
        out("err", err)
        local after = { nsid("uts"), nsid("net"), nsid("time"), readf("/proc/sys/kernel/hostname") }
        out("same", table.concat(before, " ") == table.concat(after, " "))
        out("tfc", nsid("time_for_children") == nsid("time"))
      ]], name), { env = "ISLE_FAULT=up:8:raise" })
      assert.equal("false", r.ok, raw)
      assert.matches("injected fault after journal record 8", r.err)
      assert.equal("true", r.same, raw)
      assert.equal("true", r.tfc, raw)
      assert.is_nil(H.lab_debris(name))
    end)
  end)
end)
