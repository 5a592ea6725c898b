-- The examples with real daemons (FRR, dnsmasq, busybox httpd/udhcpc): each
-- is built as a user would (`isle up`), carries the traffic it promises and
-- leaves nothing behind. Skipped, saying why, only where a package is
-- missing (`make deps` installs them).
local H = require "spec.helper"
local isle = require "isle"
local core = require "isle.core"

local function missing(pkgs)
  for _, p in ipairs(pkgs) do
    if p == "frr" and not core.ino("/usr/lib/frr/zebra") then
      return "frr not installed (make deps)"
    elseif p ~= "frr" and select(2, H.sh("command -v " .. p .. " >/dev/null")) ~= true then
      return p .. " not on PATH: " .. (p == "dnsmasq" and "dnsmasq-base" or "busybox-static")
        .. " not installed (make deps)"
    end
  end
end

-- `isle up examples/FILE` as lab NAME, then check(lab, name) and down.
local function with_example(file, check)
  local name = H.unique("xd")
  local out, ok = H.sh(string.format("ISLE_LAB=%s %s bin/isle up -q examples/%s 2>&1", name,
    H.LUA_ENV, file))
  assert(ok, out)
  local lab = assert(isle.lab.open(name))
  local okc, e = pcall(check, lab, name)
  local down, n = lab:down()
  assert.is_true(down)
  assert.is_nil(H.lab_debris(name))
  if not okc then error(e, 0) end
  return n
end

-- Run argv on a host until it exits 0 (true) or `secs` pass (false, output).
local function until_ok(lab, host, argv, secs)
  local deadline, out = os.time() + secs
  repeat
    local o, ok = lab:run(host, argv)
    if ok then return true, o end
    out = o
  until os.time() >= deadline
  return false, out
end

-- The second hop of a traceroute from h1 to h2 (whichever of its
-- addresses the router answers from).
local function second_hop(lab)
  local trace = lab:run("h1", { "busybox", "traceroute", "-n", "-q1", "-w1", "h2" })
  return trace:match("\n%s*2%s+(%S+)"), trace
end

local function route_dev(lab, host, dst)
  return (lab:run(host, { "ip", "-4", "route", "get", dst }) or ""):match(" dev (%S+)")
end

describe("examples with daemons", function()
  before_each(function()
    if not H.is_root() then pending("needs root") end
  end)

  it("ospf.lua: five FRR routers converge; a ring link goes down and traffic goes round "
    .. "the other way #root #slow", function()
    local why = missing { "frr" }
    if why then return pending(why) end
    local t0 = core.clock()
    local ended = with_example("ospf.lua", function(lab, name)
      local ok, out = until_ok(lab, "h1", { "ping", "-c1", "-W1", "h2" }, 60)
      assert(ok, out)
      print(string.format("\n    ospf ring: isle up to h1 reaching h2: %.2f s", core.clock() - t0))
      -- every router has its two ring neighbours (h1 reaches h2 over one
      -- path as soon as it is up: the other adjacencies may still be forming)
      for n = 1, 5 do
        until_ok(lab, "r" .. n, { "sh", "-c",
          "[ \"$(vtysh -c 'show ip ospf neighbor' | grep -c Full/)\" = 2 ]" }, 60)
        local nb = lab:run("r" .. n, { "vtysh", "-c", "show ip ospf neighbor" })
        assert.equal(2, select(2, nb:gsub("Full/", "")), "r" .. n .. ":\n" .. nb)
      end
      -- each service is running, in its host's filesystem
      local list = assert(isle.lab.services(name))
      assert.equal(10, #list)
      for _, s in ipairs(list) do assert.equal("running", s.state) end
      assert.equal("to-r5", route_dev(lab, "r1", "10.2.0.10"))
      local hop, trace = second_hop(lab)
      assert.is_true(hop == "10.0.15.2" or hop == "10.0.45.1", trace) -- r1, r5, r4
      -- r1's link to r5 goes down: r1 routes over r2, h1 still reaches h2
      local _, down = lab:run("r1", { "ip", "link", "set", "to-r5", "down" })
      assert.is_true(down)
      assert(until_ok(lab, "r1", { "sh", "-c", "ip -4 route get 10.2.0.10 | grep -q 'dev to-r2'" },
        30))
      assert(until_ok(lab, "h1", { "ping", "-c1", "-W1", "h2" }, 30))
      hop, trace = second_hop(lab)
      assert.is_true(hop == "10.0.12.2" or hop == "10.0.23.1", trace) -- r1, r2, r3, r4
    end)
    assert.equal(11, ended) -- the ten daemons and their supervisor
  end)

  it("dhcp.lua: two clients lease addresses from dnsmasq and resolve names it serves #root",
    function()
    local why = missing { "dnsmasq", "busybox" }
    if why then return pending(why) end
    local machine_resolv = H.readfile("/etc/resolv.conf")
    with_example("dhcp.lua", function(lab)
      local addrs = {}
      for _, c in ipairs { "c1", "c2" } do
        local out = lab:run(c, { "ip", "-4", "-o", "addr", "show", "eth0" })
        addrs[c] = out:match("inet (10%.0%.0%.1%d%d)/24")
        assert.is_not_nil(addrs[c], out)
      end
      assert.are_not.equal(addrs.c1, addrs.c2)
      assert.equal("10.0.0.80       web.lab\n", (lab:run("c1", { "getent", "hosts", "web.lab" })))
      local out, ok = lab:run("c1", { "ping", "-c1", "-W2", "c2.lab" })
      assert(ok, out)
      assert.matches("c2.lab %(" .. addrs.c2:gsub("%.", "%%.") .. "%)", out)
      assert.equal("search lab\nnameserver 10.0.0.1\n", (lab:run("c2", { "cat",
        "/etc/resolv.conf" })))
    end)
    assert.equal(machine_resolv, H.readfile("/etc/resolv.conf"))
  end)

  it("web.lua: a host fetches a page served by another by name #root", function()
    local why = missing { "busybox" }
    if why then return pending(why) end
    with_example("web.lua", function(lab, name)
      local out, ok = lab:run("c1", { "busybox", "wget", "-qO-", "http://srv/" })
      assert(ok, out)
      assert.equal("hello from srv\n", out)
      assert.matches("response:200", H.readfile(isle.lab.service_log(name, "srv", "httpd")))
      assert.is_nil(core.ino("/srv/www")) -- the machine's /srv is untouched
    end)
  end)
end)
