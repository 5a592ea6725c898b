-- A running lab changed in place: link emulation (netem, or tbf and
-- nftables without it), lab:link_set (down/up, cut, impairments),
-- lab:apply/diff, lab:pingall, isle.lab.describe (isle ls), lab:graph.
-- Witnesses: traffic (ping, timed transfers), ip -j, tc -j, nft -j.
-- On a kernel without sch_netem (this machine) the tbf/nft paths run and
-- the netem ones are pending, naming the module; in the VMs (make vmtest
-- KERNEL=6.1 SPECS=spec/lab_living_spec.lua) the other way round, and the
-- nft backend once more by force (ISLE_IMPAIR=tbf+nft).
local H = require "spec.helper"
local isle = require "isle"

local ISLE = "bin/isle"
local format = string.format

local function isle_cmd(args, env)
  local errf = format("/tmp/isle-living-%d.err", H.mypid())
  local out, ok, _, code = H.sh(format("%s %s %s 2>%s", env or "", ISLE, args, errf))
  local err = H.readfile(errf) or ""
  os.remove(errf)
  return out, code, err, ok
end

-- The kernel's link emulation backend, and the reason when it has no netem.
local function kernel_backend()
  local impair = require "isle.lab.impair"
  local n = assert(isle.net.open(nil))
  local b = assert(impair.probe(n))
  n:close()
  return b, b ~= impair.NETEM and impair.netem_missing() or nil
end

-- Shell prefix that runs a command in a lab's namespace: a host's, or
-- (host nil) the switches'.
local function inside(lab, host)
  if host then return "ip netns exec " .. lab .. "-" .. host .. " " end
  return "nsenter --net=/run/isle/" .. lab .. "/net "
end

local function tcj(lab, host, dev)
  local out = H.sh(inside(lab, host) .. "tc -j qdisc show dev " .. dev)
  return H.json.decode(out)[1]
end

-- The chains of table netdev isle in a lab namespace: name → {hook =,
-- device =, rules = {{comment =, numgen = N}}} (nil when no table).
local function chains(lab, host)
  local out, ok = H.sh(inside(lab, host) .. "nft -j list table netdev isle 2>/dev/null")
  if not ok then return nil end
  local t = {}
  for _, o in ipairs(H.json.decode(out).nftables) do
    if o.chain then
      t[o.chain.name] = { hook = o.chain.hook, device = o.chain.dev, rules = {} }
    elseif o.rule then
      local r = { comment = o.rule.comment }
      for _, x in ipairs(o.rule.expr) do
        if x.match and type(x.match.right) == "number" and type(x.match.left) == "table"
          and x.match.left.numgen then
          r.numgen = x.match.right
        end
        if x.counter then r.packets = x.counter.packets end
      end
      local rules = t[o.rule.chain].rules
      rules[#rules + 1] = r
    end
  end
  return t
end

local function ipj(lab, host, args)
  return H.json.decode((H.sh(inside(lab, host) .. "ip -j " .. args)))
end

-- Percent of n pings from host `from` to `to` that were lost.
local function loss(lab, from, to, n)
  local out = lab:run(from, { "ping", "-c", tostring(n), "-i", "0.002", "-W", "1", "-q", to })
  return tonumber(out:match("([%d.]+)%% packet loss"))
end

local function pings(lab, from, to)
  local _, ok = lab:run(from, { "ping", "-c", "1", "-W", "1", to })
  return ok == true
end

-- Seconds to send `bytes` from host `from` to host `to` (address `addr`)
-- over TCP: a LuaSocket receiver on `to` says when it listens, nc sends.
local function transfer(lab, from, to, addr, bytes)
  local rx = assert(lab:spawn(to, { stdout = "pipe", fn = function()
    local socket = require "socket"
    local s = assert(socket.bind("0.0.0.0", 5001))
    io.stdout:write("ready\n")
    io.stdout:flush()
    local c = assert(s:accept())
    local n = 0
    while true do
      local d, err, part = c:receive(65536)
      n = n + #(d or part or "")
      if err == "closed" then break end
      assert(not err, err)
    end
    io.stdout:write(n, "\n")
    return 0
  end }))
  assert.equal("ready", rx.stdout:read("l"))
  local t0 = isle.core.clock("monotonic")
  local _, ok = lab:run(from, { "sh", "-c", format("head -c %d /dev/zero | nc -N %s 5001",
    bytes, addr) })
  local got = rx.stdout:read("l")
  rx:wait()
  rx.stdout:close()
  local dt = isle.core.clock("monotonic") - t0
  assert.is_true(ok)
  assert.equal(tostring(bytes), got)
  return dt
end

-- h1 -- s1 -- h2, and h1's static route and gateway through its link.
local function pair(name, opts)
  opts = opts or {}
  local lab = isle.lab(name)
  local s1 = lab:switch("s1")
  local h1 = lab:host("h1", { gateway = "10.0.0.2",
    routes = { { dst = "198.51.100.0/24", via = "10.0.0.2" } } })
  local h2 = lab:host("h2", { forward = true })
  lab:link(h1, s1, { ip = "10.0.0.1/24", loss = opts.loss, rate = opts.rate,
    delay = opts.delay })
  lab:link(h2, s1, { ip = "10.0.0.2/24" })
  return lab
end

describe("a running lab", function()
  before_each(function()
    if not H.is_root() then pending("needs root") end
  end)

  describe("link emulation", function()
    it("loss 30 % loses about half of 500 round trips, dropped on both ends; down removes it",
      function()
      local name = H.unique("lv")
      local lab = pair(name, { loss = 30 })
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      local backend = lab.plan.backend
      assert.equal(kernel_backend(), backend)
      if backend == "netem" then
        for _, where in ipairs { "h1", false } do
          local q = tcj(name, where or nil, where and "eth0" or "s1-eth1")
          assert.equal("netem", q.kind)
          assert.near(0.3, q.options["loss-random"].loss, 0.001)
        end
      else
        -- each end's receive side: a random drop in its own chain
        for _, where in ipairs { "h1", false } do
          local c = chains(name, where or nil)
          local ch = c[where and "if_eth0" or "if_s1_2deth1"]
          assert.is_table(ch, "chain of " .. tostring(where))
          assert.equal("ingress", ch.hook)
          assert.equal(3000, ch.rules[1].numgen)
          assert.equal("loss", ch.rules[1].comment)
        end
      end
      local lost = loss(lab, "h1", "10.0.0.2", 500)
      assert.is_true(lost >= 35 and lost <= 65, "lost " .. tostring(lost) .. " %")
      if backend ~= "netem" then -- both directions dropped
        assert.is_true(chains(name, "h1").if_eth0.rules[1].packets > 0)
        assert.is_true(chains(name).if_s1_2deth1.rules[1].packets > 0)
      end
      assert(lab:down())
      assert.is_nil(H.lab_debris(name))
    end)

    it("rate 8mbit makes a 2 MB transfer take >= 1.6 s each way; changed and cleared in place",
      function()
      local name = H.unique("lv")
      local lab = pair(name)
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      local base = transfer(lab, "h1", "h2", "10.0.0.2", 2000000)
      assert(lab:link_set("h1", "s1", { rate = "8mbit" }))
      local kind = lab.plan.backend == "netem" and "netem" or "tbf"
      local q1, q2 = tcj(name, "h1", "eth0"), tcj(name, nil, "s1-eth1")
      assert.equal(kind, q1.kind)
      assert.equal(kind, q2.kind)
      if kind == "tbf" then
        assert.equal(1000000, q1.options.rate)
        assert.equal(1000000, q2.options.rate)
      end
      local up = transfer(lab, "h1", "h2", "10.0.0.2", 2000000)
      local down = transfer(lab, "h2", "h1", "10.0.0.1", 2000000)
      if base >= 1 then -- an emulated CPU (qemu TCG): the line itself is slow
        assert.is_true(up >= 1.5 * base and down >= 1.5 * base, format(
          "base %.2f s, shaped %.2f s / %.2f s", base, up, down))
      else
        assert.is_true(up >= 1.6 and down >= 1.6, format("shaped %.2f s / %.2f s (base %.2f s)",
          up, down, base))
      end
      -- changed in place: same kind, new rate; cleared: the default qdisc
      assert(lab:link_set("h1", "s1", { rate = "100mbit" }))
      q1 = tcj(name, "h1", "eth0")
      assert.equal(kind, q1.kind)
      if kind == "tbf" then assert.equal(12500000, q1.options.rate) end
      assert(lab:link_set("h1-s1", { rate = false }))
      assert.equal("noqueue", tcj(name, "h1", "eth0").kind)
      assert.equal("noqueue", tcj(name, nil, "s1-eth1").kind)
    end)

    it("delay: in the RTT with netem; without it, up builds nothing and link_set refuses, "
      .. "naming sch_netem", function()
      local name = H.unique("lv")
      local backend, why = kernel_backend()
      if backend ~= "netem" then
        local ok, err, e = pair(name, { delay = "20ms" }):up()
        assert.is_nil(ok)
        assert.equal(H.E.ENOTSUP, e)
        assert.matches("link h1%-s1: delay and jitter need .*sch_netem", err)
        assert.is_nil(H.lab_debris(name))
        local lab = pair(name, { loss = 10 })
        assert(lab:up())
        finally(function() isle.lab.down(name) end)
        local before = H.readfile("/run/isle/" .. name .. "/state")
        ok, err, e = lab:link_set("h1", "s1", { delay = "20ms", loss = 20 })
        assert.is_nil(ok)
        assert.equal(H.E.ENOTSUP, e)
        assert.matches("sch_netem", err)
        assert.equal(before, H.readfile("/run/isle/" .. name .. "/state"))
        assert.equal(1000, chains(name, "h1").if_eth0.rules[1].numgen) -- unchanged
        return pending("this kernel has no netem: " .. why)
      end
      local lab = pair(name, { delay = "20ms" })
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      local out = lab:run("h1", { "ping", "-c", "3", "-i", "0.2", "10.0.0.2" })
      local min = tonumber(out:match("= ([%d.]+)/"))
      assert.is_true(min >= 40, "rtt min " .. tostring(min))
      assert(lab:link_set("h1", "s1", { delay = "50ms", jitter = "1ms" }))
      local q = tcj(name, "h1", "eth0")
      assert.near(0.05, q.options.delay.delay, 0.0005)
      out = lab:run("h1", { "ping", "-c", "3", "-i", "0.2", "10.0.0.2" })
      min = tonumber(out:match("= ([%d.]+)/"))
      assert.is_true(min >= 95, "rtt min " .. tostring(min))
    end)

    it("with the nft backend forced where netem exists: loss on both ends, cleared by down",
      function()
      if kernel_backend() ~= "netem" then
        return pending("the nft backend is this kernel's own (the tests above)")
      end
      local name = H.unique("lv")
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(format([[local lab = require("isle").lab(%q)
        local h1, h2 = lab:host("h1"), lab:host("h2")
        lab:link(h1, h2, { ip = { "10.0.0.1/24", "10.0.0.2/24" }, loss = 30 })
        return lab]], name))
      f:close()
      finally(function() isle_cmd("down " .. name); os.remove(script) end)
      local _, code, err = isle_cmd("up -q " .. script, "ISLE_IMPAIR=tbf+nft")
      assert.equal(0, code, err)
      assert.equal("tbf+nft", isle.lab.open(name).plan.backend)
      assert.equal(3000, chains(name, "h2").if_eth0.rules[1].numgen)
      local lost = loss(isle.lab.open(name), "h1", "10.0.0.2", 500)
      assert.is_true(lost >= 35 and lost <= 65, "lost " .. tostring(lost) .. " %")
      assert.equal(0, select(2, isle_cmd("link " .. name .. " h1 h2 --loss 10")))
      assert.equal(1000, chains(name, "h1").if_eth0.rules[1].numgen)
      assert.equal(0, select(2, isle_cmd("down -q " .. name)))
      assert.is_nil(H.lab_debris(name))
    end)
  end)

  describe("link_set()", function()
    it("down stops traffic; up restores it with the routes and gateway the kernel flushed",
      function()
      local name = H.unique("lv")
      local lab = pair(name)
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      assert.is_true(pings(lab, "h1", "10.0.0.2"))
      assert(lab:link_set("h1", "s1", { up = false }))
      local l1 = ipj(name, "h1", "link show dev eth0")[1]
      for _, fl in ipairs(l1.flags) do assert.not_equal("UP", fl) end
      local port = ipj(name, nil, "link show dev s1-eth1")[1]
      for _, fl in ipairs(port.flags) do assert.not_equal("UP", fl) end
      assert.is_false(pings(lab, "h1", "10.0.0.2"))
      assert.is_nil(ipj(name, "h1", "route show default")[1]) -- the kernel dropped it
      assert(lab:link_set("h1-s1", { up = true }))
      assert.is_true(pings(lab, "h1", "10.0.0.2"))
      assert.equal("10.0.0.2", ipj(name, "h1", "route show default")[1].gateway)
      assert.equal("10.0.0.2", ipj(name, "h1", "route show 198.51.100.0/24")[1].gateway)
      assert.equal("up", isle.lab.describe(name).links[1].state)
    end)

    it("cut drops everything both ways with the carrier kept; uncut restores, a loss stays",
      function()
      local name = H.unique("lv")
      local lab = pair(name)
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      assert(lab:link_set("h1", "s1", { loss = 10 }))
      assert(lab:link_set("h1", "s1", { cut = true }))
      for _, w in ipairs { { "h1", "eth0" }, { nil, "s1-eth1" } } do
        local l = ipj(name, w[1], "link show dev " .. w[2])[1]
        assert.equal("UP", l.operstate)
        local flags = table.concat(l.flags, ",")
        assert.matches("UP", flags)
        assert.matches("LOWER_UP", flags)
      end
      assert.equal(100, loss(lab, "h1", "10.0.0.2", 20))
      assert.equal(100, loss(lab, "h2", "10.0.0.1", 20))
      local d = isle.lab.describe(name)
      assert.equal("cut", d.links[1].state)
      assert(lab:link_set("h1", "s1", { cut = false }))
      local lost = loss(lab, "h1", "10.0.0.2", 300)
      assert.is_true(lost < 60, "lost " .. tostring(lost)) -- 10 % each way: ~19 %
      assert.equal(10, isle.lab.describe(name).links[1].impairments.loss)
    end)

    it("finds a link by name, by its ends, by NODE:IFNAME; refuses what is not there",
      function()
      local name = H.unique("lv")
      local lab = isle.lab(name)
      local a, b = lab:host("a"), lab:host("b")
      lab:link(a, b, { ip = { "10.0.0.1/24", "10.0.0.2/24" } })
      lab:link(a, b, { ip = { "10.0.1.1/24", "10.0.1.2/24" } })
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      local ok, err, e = lab:link_set("a", "b", { loss = 5 })
      assert.is_nil(ok)
      assert.equal(H.E.EINVAL, e)
      assert.matches("2 links between a and b %(a:eth0%-b:eth0, a:eth1%-b:eth1%): give the ends "
        .. "as NODE:IFNAME", err)
      assert(lab:link_set("a:eth1", "b", { loss = 5 }))
      assert.equal(500, chains(name, "b").if_eth1.rules[1].numgen)
      assert.is_nil(chains(name, "b").if_eth0)
      ok, err, e = lab:link_set("a", "c", { loss = 5 })
      assert.is_nil(ok)
      assert.equal(H.E.ENOENT, e)
      assert.equal("lab " .. name .. ": no link between a and c", err)
      assert.has_error(function() lab:link_set("a:eth1", "b", { loss = 101 }) end,
        "bad argument 'opts.loss' to 'link_set' (percentage in [0, 100] expected, got 101)")
      assert.has_error(function() lab:link_set("a:eth1", "b", { colour = 1 }) end,
        "bad argument 'opts' to 'link_set' (unknown option 'colour')")
      assert.has_error(function() lab:link_set("a:eth1", "b", { jitter = "1ms" }) end,
        "bad argument 'opts.jitter' to 'link_set' (jitter needs a delay)")
    end)

    it("isle link changes a lab another process built, journalled: down then leaves nothing",
      function()
      local name = H.unique("lv")
      local env = "ISLE_LAB=" .. name
      local _, code, err = isle_cmd("up -q examples/router.lua", env)
      assert.equal(0, code, err)
      finally(function() isle_cmd("down " .. name) end)
      for _, args in ipairs { "h1 s1 --loss 20 --rate 5mbit", "r s2 cut", "r-s1 down",
        "r-s1 up", "h2 s2 --loss 1" } do
        _, code, err = isle_cmd("link " .. name .. " " .. args)
        assert.equal(0, code, args .. ": " .. err)
      end
      local out = isle_cmd("link " .. name .. " h1 s1")
      assert.equal(format("h1-s1 h1:eth0 - s1:s1-eth1 up loss 20%%, rate 5mbit\n"), out)
      out = isle_cmd("link " .. name .. " r s2")
      assert.matches("^r%-s2 r:eth1 %- s2:s2%-eth1 cut\n$", out)
      _, code, err = isle_cmd("link " .. name .. " h1 s9 down")
      assert.equal(1, code)
      assert.equal("isle: lab " .. name .. ": no link between h1 and s9\n", err)
      _, code, err = isle_cmd("link " .. name .. " h1 s1 --loss lots")
      assert.equal(2, code)
      assert.matches("percentage expected", err)
      local lab = assert(isle.lab.open(name))
      assert.equal("cut", isle.lab.describe(name).links[3].state)
      assert.is_false(pings(lab, "h2", "10.1.0.254")) -- through r's cut eth1
      assert.equal(0, select(2, isle_cmd("down -q " .. name)))
      assert.is_nil(H.lab_debris(name))
    end)
  end)
end)
