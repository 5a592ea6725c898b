-- isle.netns against iproute2 as the witness.
local H = require "spec.helper"
local netns = require "isle.netns"
local E = H.E

local function ip_netns_list()
  local out = H.sh("ip netns list 2>/dev/null")
  local t = {}
  for name in out:gmatch("([^%s]+)[^\n]*\n") do
    t[name] = true
  end
  return t
end

describe("isle.netns #root", function()
  local before, self_id
  lazy_setup(function()
    collectgarbage()
    before = H.census()
  end)
  before_each(function()
    self_id = H.nsid("self", "net")
  end)
  after_each(function()
    assert.equal(self_id, H.nsid("self", "net"))
  end)

  describe("add()", function()
    it("creates /run/netns/NAME that ip netns lists and ip netns exec uses", function()
      local name = H.unique("isle-ns")
      finally(function() netns.del(name) end)
      local ns = assert(netns.add(name))
      assert.equal(name, ns.name)
      assert.equal("/run/netns/" .. name, ns.path)
      assert.is_true(ip_netns_list()[name])
      local out = H.sh("ip netns exec " .. name .. " readlink /proc/self/ns/net")
      assert.equal(ns.id, tonumber(out:match("%[(%d+)%]")))
      assert.not_equal(self_id, ns.id)
      -- /run/netns is a shared mount, as ip netns add makes it
      local mi = H.readfile("/proc/self/mountinfo")
      assert.truthy(mi:find(" /run/netns [^\n]*shared:", 1) or mi:find("/run/netns", 1, true))
      ns:close()
    end)

    it("returns nil, msg, EEXIST for a duplicate and keeps the first", function()
      local name = H.unique("isle-ns")
      finally(function() netns.del(name) end)
      local ns = assert(netns.add(name))
      local ok, msg, e = netns.add(name)
      assert.is_nil(ok)
      assert.equal("netns add " .. name .. ": File exists", msg)
      assert.equal(E.EEXIST, e)
      local again = assert(netns.open(name))
      assert.equal(ns.id, again.id)
      ns:close(); again:close()
    end)

    it("raises for invalid names before any syscall", function()
      for bad, why in pairs { [""] = "empty name", ["."] = "name must not be '.' or '..'",
        [".."] = "name must not be '.' or '..'", ["a/b"] = "name must not contain '/'",
        [42] = "string expected, got number" } do
        assert.has_error(function() netns.add(bad) end, "bad argument 'name' to 'add' (" .. why .. ")")
      end
      assert.is_nil(ip_netns_list()[""])
    end)
  end)

  describe("open()", function()
    it("opens a namespace made by ip netns add", function()
      local name = H.unique("isle-ip")
      finally(function() os.execute("ip netns del " .. name .. " 2>/dev/null") end)
      assert(os.execute("ip netns add " .. name))
      local ns = assert(netns.open(name))
      local out = H.sh("ip netns exec " .. name .. " readlink /proc/self/ns/net")
      assert.equal(ns.id, tonumber(out:match("%[(%d+)%]")))
      assert.equal(name, ns.name)
      assert.is_number(ns:fd())
      assert.matches("^isle.Netns " .. name:gsub("%-", "%%-"), tostring(ns))
      assert.is_true(ns:close())
      assert.matches("closed", tostring(ns))
      assert.has_error(function() ns:fd() end, "attempt to use a closed isle.Netns")
    end)

    it("fails with ENOENT for a missing name", function()
      local ok, msg, e = netns.open("isle-missing-" .. H.mypid())
      assert.is_nil(ok)
      assert.matches("^netns open /run/netns/isle%-missing", msg)
      assert.equal(E.ENOENT, e)
    end)

    it("works as a to-be-closed variable", function()
      local name = H.unique("isle-ns")
      finally(function() netns.del(name) end)
      local fd
      do
        local ns <close> = assert(netns.add(name))
        fd = ns:fd()
      end
      local link = H.sh("readlink /proc/" .. H.mypid() .. "/fd/" .. fd .. " 2>/dev/null")
      assert.is_nil(link:match("^net:"))
    end)
  end)

  describe("list()", function()
    it("lists isle's and iproute2's namespaces, sorted", function()
      local a, b = H.unique("isle-ls"), H.unique("isle-ls")
      finally(function()
        netns.del(a)
        os.execute("ip netns del " .. b .. " 2>/dev/null")
      end)
      assert(netns.add(a)):close()
      assert(os.execute("ip netns add " .. b))
      local seen = {}
      local list = assert(netns.list())
      for i, n in ipairs(list) do
        seen[n] = true
        if i > 1 then assert.is_true(list[i - 1] <= n) end
      end
      assert.is_true(seen[a])
      assert.is_true(seen[b])
    end)
  end)

  describe("del()", function()
    it("removes the file so ip netns no longer lists it", function()
      local name = H.unique("isle-del")
      assert(netns.add(name)):close()
      assert.is_true(netns.del(name))
      assert.is_nil(ip_netns_list()[name])
      assert.is_nil(H.readfile("/run/netns/" .. name))
    end)

    it("deletes a namespace made by ip netns add", function()
      local name = H.unique("isle-del")
      assert(os.execute("ip netns add " .. name))
      assert.is_true(netns.del(name))
      assert.is_nil(ip_netns_list()[name])
    end)

    it("fails clearly for a missing namespace", function()
      local ok, msg, e = netns.del("isle-missing-" .. H.mypid())
      assert.is_nil(ok)
      assert.matches("^netns del isle%-missing%-%d+: No such file or directory$", msg)
      assert.equal(E.ENOENT, e)
    end)

    it("raises for invalid names", function()
      assert.has_error(function() netns.del("../etc") end,
        "bad argument 'name' to 'del' (name must not contain '/')")
      assert.has_error(function() netns.del("") end, "bad argument 'name' to 'del' (empty name)")
    end)
  end)

  describe("current()", function()
    it("is the caller's namespace", function()
      local ns = assert(netns.current())
      assert.equal(self_id, ns.id)
      ns:close()
    end)
  end)

  describe("Netns:spawn()", function()
    it("runs a command as ip netns exec does", function()
      local isle = require "isle"
      if not isle.spawn then
        pending("isle.spawn not available yet")
        return
      end
      local name = H.unique("isle-sp")
      local etc = "/etc/netns/" .. name
      local had_etc_netns = os.rename("/etc/netns", "/etc/netns") ~= nil -- exists?
      finally(function()
        netns.del(name)
        os.execute("rm -rf " .. etc)
        if not had_etc_netns then
          os.remove("/etc/netns")
        end
      end)
      local ns = assert(netns.add(name))
      assert(os.execute("mkdir -p " .. etc))
      local f = assert(io.open(etc .. "/hosts", "w"))
      f:write("192.0.2.7 isle-spawn-host\n")
      f:close()
      local p, msg = ns:spawn {
        argv = { "sh", "-c",
          "readlink /proc/self/ns/net; ls /sys/class/net | tr '\\n' ' '; echo; cat /etc/hosts" },
        stdout = "pipe",
      }
      assert(p, msg)
      local out = p.stdout:read("a")
      assert.same({ true, "exit", 0 }, { p:wait() })
      assert.equal(ns.id, tonumber(out:match("%[(%d+)%]")))
      assert.matches("\nlo \n", out)
      assert.matches("isle%-spawn%-host", out)
      -- the caller's /etc/hosts is untouched
      assert.is_nil((H.readfile("/etc/hosts") or ""):find("isle-spawn-host", 1, true))
      ns:close()
    end)
  end)

  it("leaves nothing behind", function()
    collectgarbage()
    H.assert_clean(before)
  end)
end)
