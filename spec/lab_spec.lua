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

describe("isle.lab", function()
  describe("declaration checks (before any system call)", function()
    it("raises naming the culprit, and creates nothing", function()
      local name = H.unique("lv")
      local lab = isle.lab(name)
      local s1 = lab:switch("s1")
      local h1 = lab:host("h1")
      assert.has_error(function() lab:host("h1") end, "bad argument 'name' to 'host' (lab "
        .. name .. " already has a host named 'h1')")
      assert.has_error(function() lab:link(h1, "nope") end, nil)
      assert.has_error(function() lab:host("x", { colour = "red" }) end,
        "bad argument 'opts' to 'host' (unknown option 'colour')")
      assert.has_error(function() lab:link(h1, s1, { ip = "10.0.0.300/24" }) end)
      assert.has_error(function() lab:link(h1, s1, { ip = "10.0.0.1" }) end)
      assert.has_error(function() lab:link(h1, s1, { ip = "10.0.0.255/24" }) end)
      assert.has_error(function() lab:link(h1, s1, { ifname = { "a-very-long-interface" } }) end)
      assert.has_error(function() lab:switch("sixteen-bytes-xx") end)
      assert.has_error(function() isle.lab("a/b") end)
      assert.has_error(function() lab:host("y", { clock = { realtime = 1 } }) end)
      assert.has_error(function() lab:link(h1, s1, { loss = 200 }) end)
      -- whole-declaration checks happen in up(), still before anything
      local h2 = lab:host("h2", { gateway = "10.9.9.9" })
      lab:link(h1, s1, { ip = "10.0.0.1/24" })
      lab:link(h2, s1, { ip = "10.0.0.2/24" })
      local ok, err = pcall(lab.up, lab)
      assert.is_false(ok)
      assert.matches("host h2: gateway 10.9.9.9 is in none of the host's subnets", err, 1, true)
      assert.is_nil(H.lab_debris(name))
      local lab2 = isle.lab(name)
      local a, b = lab2:host("a"), lab2:host("b")
      local s = lab2:switch("s")
      lab2:link(a, s, { ip = "10.0.0.1/24" })
      lab2:link(b, s, { ip = "10.0.0.1/24" })
      ok, err = pcall(lab2.up, lab2)
      assert.is_false(ok)
      assert.matches("address 10.0.0.1 is also on a", err, 1, true)
      local lab3 = isle.lab(name)
      local sw = lab3:switch("sw12345678")
      for i = 1, 10 do lab3:link(lab3:host("h" .. i), sw) end
      ok, err = pcall(lab3.up, lab3)
      assert.is_false(ok)
      assert.matches("generated port name sw12345678-eth10 is longer than 15 bytes", err, 1, true)
      assert.is_nil(H.lab_debris(name))
    end)

    it("keeps generated names unique and reports clashes with given names", function()
      local lab = isle.lab(H.unique("lv"))
      local s1 = lab:switch("s1")
      local h1 = lab:host("h1")
      lab:link(h1, s1, { ifname = { nil, "s1-eth2" } })
      lab:link(lab:host("h2"), s1)
      assert.has_error(function() lab:validate() end)
    end)

    it("draws the declaration as DOT", function()
      local dot = small(H.unique("lg")):graph()
      assert.matches('^graph "', dot)
      assert.matches('"h1" %-%- "s1"', dot)
      assert.matches("10.0.0.2/24", dot, 1, true)
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
      local lab = small(name)
      assert(lab:up())
      -- pretend the builder died: the lab is removed by name only
      lab = nil -- luacheck: ignore
      collectgarbage()
      -- a foreign namespace that happens to carry a host's name after the
      -- lab's own was removed by hand is not touched
      assert(isle.netns.del(name .. "-h2"))
      assert(H.sh("ip netns add " .. name .. "-h2 && echo ok") == "ok\n")
      finally(function() H.sh("ip netns del " .. name .. "-h2 2>/dev/null") end)
      assert(isle.lab.down(name))
      assert.is_not_nil(core.ino("/run/netns/" .. name .. "-h2"))
      assert.is_nil(core.ino("/run/netns/" .. name .. "-h1"))
      H.sh("ip netns del " .. name .. "-h2")
      assert.is_nil(H.lab_debris(name))
      local ok, err = isle.lab.down(name)
      assert.is_nil(ok)
      assert.matches("no such lab", err)
    end)
  end)
end)
