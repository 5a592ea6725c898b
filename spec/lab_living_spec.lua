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
local core_ino = require("isle.core").ino
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

-- Percent of n pings from host `from` to `to` that were lost. A lossy
-- link drops ARP too: the neighbour entries are made first (one reply),
-- so that pings queued behind a lost ARP request do not count as lost
-- (unless `cold`: a link where nothing passes).
local function loss(lab, from, to, n, cold)
  for _ = 1, cold and 0 or 10 do
    local _, ok = lab:run(from, { "ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", to })
    if ok then break end
  end
  local out = lab:run(from, { "ping", "-c", tostring(n), "-i", "0.002", "-W", "1", "-q", to })
  return tonumber(out:match("([%d.]+)%% packet loss"))
end

-- Does one of three pings get through (a loaded machine may take a while
-- to answer the first ARP)?
local function pings(lab, from, to)
  local _, ok = lab:run(from, { "ping", "-c", "3", "-i", "0.2", "-W", "2", to })
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
      finally(function() isle.lab.down(name) end)
      local backend, why = kernel_backend()
      if backend ~= "netem" then
        local ok, err, e = pair(name, { delay = "20ms" }):up()
        assert.is_nil(ok)
        assert.equal(H.E.ENOTSUP, e)
        assert.matches("link h1%-s1: delay and jitter need .*sch_netem", err)
        assert.is_nil(H.lab_debris(name))
        local lab = pair(name, { loss = 10 })
        assert(lab:up())
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
      assert.equal(100, loss(lab, "h1", "10.0.0.2", 20, true))
      assert.equal(100, loss(lab, "h2", "10.0.0.1", 20, true))
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
      if lab.plan.backend == "netem" then
        assert.near(0.05, tcj(name, "b", "eth1").options["loss-random"].loss, 0.001)
        assert.equal("noqueue", tcj(name, "b", "eth0").kind)
      else
        assert.equal(500, chains(name, "b").if_eth1.rules[1].numgen)
        assert.is_nil(chains(name, "b").if_eth0)
      end
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
      -- from another process (isle link reads only the model lines of the
      -- link's ends): the same answers
      local _, code, cerr = isle_cmd("link " .. name .. " b a --loss 5")
      assert.equal(1, code)
      assert.matches("2 links between b and a %(a:eth0%-b:eth0, a:eth1%-b:eth1%): give the "
        .. "ends as NODE:IFNAME", cerr)
      _, code, cerr = isle_cmd("link " .. name .. " b a:eth0 --loss 7")
      assert.equal(0, code, cerr)
      _, code, cerr = isle_cmd("link " .. name .. " a-b")
      assert.equal(1, code)
      assert.matches("2 links named a%-b %(a:eth0%-b:eth0, a:eth1%-b:eth1%)", cerr)
      local out = isle_cmd("link " .. name .. " b:eth0 a")
      assert.equal("a-b a:eth0 - b:eth0 up loss 7%\n", out)
      out, code = isle_cmd("link " .. name .. " a:eth1 b")
      assert.equal(0, code)
      assert.equal("a-b a:eth1 - b:eth1 up loss 5%\n", out)
      _, code, cerr = isle_cmd("link " .. name .. " a c down")
      assert.equal(1, code)
      assert.equal("isle: lab " .. name .. ": no link between a and c\n", cerr)
      local state = require "isle.lab.state"
      local p = assert(state.current_link(name, "a", "b:eth1"))
      assert.is_true(p.partial)
      assert.same(lab.plan.backend, p.backend)
      local whole = assert(state.current(name))
      assert.same(whole.links, p.links)
      assert.same({ whole.hosts[1], whole.hosts[2] }, p.hosts)
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

  it("reads the journal's state: link changes after the last model not undone, an apply "
    .. "left unfinished, incrementally", function()
    local state = require "isle.lab.state"
    local name = H.unique("lv")
    local dir = "/run/isle/" .. name
    assert(require("isle._sys").mkdirs(dir, 448))
    finally(function() os.remove(dir .. "/state") os.remove(dir) end)
    local recs = { "pid 100", "netns " .. name .. "-h1", "model", "set h1:eth0 loss=5",
      "dir " .. dir .. "/ns", "set h1:eth0 up=0 cut=1", "symlink a b", "model",
      "set h2:eth0 loss=7 rate=-", "undone 8", "setup 1", "apply 4242", "commit", "done" }
    local text = table.concat(recs, "\n") .. "\n"
    local function put(t)
      local f = assert(io.open(dir .. "/state", "w"))
      f:write(t)
      f:close()
    end
    put(text .. "set h3:eth0 los") -- a torn last record is not read
    local st = assert(state.state(name))
    assert.equal(3, st.boundary) -- the model of line 8 is undone
    assert.same({ ["h1:eth0"] = { loss = 5, up = 0, cut = 1 },
      ["h2:eth0"] = { loss = 7, rate = false } }, st.sets)
    assert.same({ at = 12, pid = 4242, committed = true }, st.apply)
    assert.equal(100, st.pid)
    assert.is_true(st.complete)
    assert.equal(#recs, st.lines)
    -- read in two goes: the same
    local cache = {}
    put(table.concat(recs, "\n", 1, 6) .. "\n")
    assert.same({ ["h1:eth0"] = { loss = 5, up = 0, cut = 1 } }, state.state(name, cache).sets)
    put(text)
    local st2 = state.state(name, cache)
    assert.same(st.sets, st2.sets)
    assert.same(st.apply, st2.apply)
    assert.equal(st.boundary, st2.boundary)
    assert.equal(#recs, st2.lines)
  end)

  describe("apply() and diff()", function()
    -- v1: h1, h2, h3 on s1 and h1--h2 directly; h1 routes 198.51.100.0/24
    -- through h2. v2: h4 added, h1--h2 removed, h1 at 10.0.0.11, its route
    -- now 203.0.113.0/24 through h3, loss 20 on h3's link.
    local function decl(name, v)
      local lab = isle.lab(name)
      local s1 = lab:switch("s1")
      local h1 = lab:host("h1", { routes = { v == 1
        and { dst = "198.51.100.0/24", via = "10.0.0.2" }
        or { dst = "203.0.113.0/24", via = "10.0.0.3" } } })
      local h2 = lab:host("h2", { forward = true })
      local h3 = lab:host("h3", { forward = true })
      lab:link(h1, s1, { ip = v == 1 and "10.0.0.1/24" or "10.0.0.11/24" })
      lab:link(h2, s1, { ip = "10.0.0.2/24" })
      lab:link(h3, s1, { ip = "10.0.0.3/24", loss = v == 2 and 20 or nil })
      if v == 1 then
        lab:link(h1, h2, { ip = { "192.0.2.1/24", "192.0.2.2/24" } })
      else
        lab:link(lab:host("h4"), s1, { ip = "10.0.0.4/24" })
      end
      return lab
    end

    local function addrs(name, host, dev)
      local t = {}
      for _, a in ipairs(ipj(name, host, "-4 addr show dev " .. dev)[1].addr_info) do
        t[#t + 1] = format("%s/%d", a["local"], a.prefixlen)
      end
      return table.concat(t, " ")
    end

    it("adds a host, removes a link, changes an address and a route; checked by traffic "
      .. "and ip -j", function()
      local name = H.unique("la")
      assert(decl(name, 1):up())
      finally(function() isle.lab.down(name) end)
      local lab = isle.lab.open(name)
      assert(lab:link_set("h2", "s1", { cut = true })) -- run-time state: kept
      assert.same({
        "+ host h4",
        "+ link h4-s1 (h4:eth0 -- s1:s1-eth4)",
        "- address 10.0.0.1/24 on h1:eth0",
        "+ address 10.0.0.11/24 on h1:eth0",
        "~ link h3-s1: impairments none -> loss 20%",
        "- route h1: 198.51.100.0/24 via 10.0.0.2",
        "+ route h1: 203.0.113.0/24 via 10.0.0.3",
        "- link h1-h2 (h1:eth1 -- h2:eth1)",
      }, assert(decl(name, 2):diff()))
      local v2 = decl(name, 2)
      assert(v2:apply())
      assert.same({}, assert(decl(name, 2):diff()))
      -- the new host, by name (every host's hosts file knows it)
      assert.equal("10.0.0.4/24", addrs(name, "h4", "eth0"))
      assert.is_true(pings(v2, "h4", "h1"))
      assert.is_true(pings(v2, "h1", "h4"))
      -- the link is gone, both ends
      assert.is_nil(ipj(name, "h1", "link show")[3])
      assert.equal("", (H.sh(inside(name, "h2") .. "ip -j link show dev eth1 2>/dev/null")))
      assert.is_false(pings(v2, "h1", "192.0.2.2"))
      -- the address
      assert.equal("10.0.0.11/24", addrs(name, "h1", "eth0"))
      assert.is_true(pings(v2, "h4", "10.0.0.11"))
      assert.is_false(pings(v2, "h4", "10.0.0.1"))
      -- the route
      local routes = ipj(name, "h1", "route show")
      local dsts = {}
      for _, r in ipairs(routes) do dsts[r.dst] = r.gateway or "" end
      assert.equal("10.0.0.3", dsts["203.0.113.0/24"])
      assert.is_nil(dsts["198.51.100.0/24"])
      -- the impairment, the cut kept
      local d = isle.lab.describe(name)
      assert.equal(20, d.links[3].impairments.loss)
      assert.equal("cut", d.links[2].state)
      assert.is_false(pings(v2, "h1", "10.0.0.2"))
      assert.equal(4, #d.hosts)
      -- and back: h4 goes, h1--h2 comes back
      assert(decl(name, 1):apply())
      assert.is_nil(H.sh("ip netns list"):find(name .. "-h4", 1, true))
      assert.is_nil(core_ino("/run/isle/" .. name .. "/ns/h4.uts"))
      assert.is_nil(core_ino("/run/isle/" .. name .. "/mnt/h4"))
      assert.is_true(pings(decl(name, 1), "h1", "192.0.2.2"))
      assert.equal("10.0.0.1/24", addrs(name, "h1", "eth0"))
      -- and h4 back at once: its port name is free although the kernel
      -- tears the old namespace down in the background
      assert(decl(name, 2):apply())
      assert.is_true(pings(v2, "h4", "h1"))
      assert(isle.lab.down(name))
      assert.is_nil(H.lab_debris(name))
    end)

    it("rolls back when a step fails: the lab as it was, what it did not make left alone",
      function()
      local name = H.unique("la")
      assert(decl(name, 1):up())
      finally(function() isle.lab.down(name); isle.netns.del(name .. "-h4") end)
      local before = H.readfile("/run/isle/" .. name .. "/model")
      -- someone else's namespace where h4's would go
      assert(isle.netns.add(name .. "-h4")):close()
      local ok, err = decl(name, 2):apply()
      assert.is_nil(ok)
      assert.matches("host h4: netns add " .. name:gsub("%-", "%%-") .. "%-h4: File exists", err)
      assert.equal(before, H.readfile("/run/isle/" .. name .. "/model"))
      assert.equal("10.0.0.1/24", addrs(name, "h1", "eth0"))
      local lab = isle.lab.open(name)
      assert.is_true(pings(lab, "h1", "192.0.2.2"))
      assert.is_true(pings(lab, "h3", "10.0.0.1"))
      assert.equal("up", isle.lab.describe(name).state)
      local r = ipj(name, "h1", "route show 198.51.100.0/24")[1]
      assert.equal("10.0.0.2", r.gateway)
      assert.is_truthy(H.sh("ip netns list"):find(name .. "-h4", 1, true)) -- not ours: kept
      assert(isle.netns.del(name .. "-h4"))
      assert(decl(name, 2):apply())
      assert.equal("10.0.0.11/24", addrs(name, "h1", "eth0"))
    end)

    it("changes host options in place: hostname, forward, sysctl, a clock (a new time "
      .. "namespace), an MTU, NAT", function()
      local name = H.unique("la")
      local function v(n)
        local lab = isle.lab(name)
        local r = lab:host("r", n == 1 and {} or { hostname = "gw", forward = true,
          sysctl = { ["ipv4.conf.all.rp_filter"] = 0 }, clock = { boottime = 86400 } })
        local h = lab:host("h")
        lab:link(h, r, { ip = { "10.0.0.1/24", "10.0.0.2/24" }, mtu = n == 1 and 1500 or 1400 })
        lab:link(r, lab:host("up"), { ip = { "192.0.2.1/24", "192.0.2.2/24" } })
        if n == 2 then lab:nat(r, { out = "eth1" }) end
        return lab
      end
      assert(v(1):up())
      local proc
      finally(function() -- (one finally a test: busted keeps the last one only)
        if proc and proc:poll() == nil then proc:kill("KILL"); proc:wait() end
        isle.lab.down(name)
      end)
      local lab = isle.lab.open(name)
      local before = tonumber((lab:run("r", { "cat", "/proc/uptime" })):match("^(%S+)"))
      proc = assert(lab:spawn("r", { argv = { "sleep", "300" } })) -- already on r
      assert.same({ "~ link h-r: mtu 1500 -> 1400", "~ host r: hostname r -> gw",
        "~ host r: clock offsets (a new time namespace: processes started from now on see them)",
        "~ host r: forward true", "~ host r: sysctl ipv4.conf.all.rp_filter = 0",
        "+ nat r out of eth1" }, assert(v(2):diff()))
      assert(v(2):apply())
      assert.equal("gw\n", (lab:run("r", { "hostname" })))
      local after = tonumber((lab:run("r", { "cat", "/proc/uptime" })):match("^(%S+)"))
      assert.is_true(after - before > 86300, "uptime " .. before .. " -> " .. after)
      local function sysctl(key)
        return (H.sh(inside(name, "r") .. "cat /proc/sys/net/" .. key):gsub("%s", ""))
      end
      assert.equal("1", sysctl("ipv4/ip_forward"))
      assert.equal("0", sysctl("ipv4/conf/all/rp_filter"))
      assert.equal(1400, ipj(name, "h", "link show dev eth0")[1].mtu)
      assert.equal(1400, ipj(name, "r", "link show dev eth0")[1].mtu)
      assert.matches("chain nat_eth1", (H.sh(inside(name, "r") .. "nft list table inet isle")))
      -- the process already on r keeps its clock; a new one sees the new
      local old_up = tonumber((H.sh("nsenter -t " .. proc.pid .. " -T cat /proc/uptime"))
        :match("^(%S+)"))
      assert.is_true(old_up < after - 86300, "old process " .. tostring(old_up))
      -- and back
      assert(v(1):apply())
      assert.equal("r\n", (lab:run("r", { "hostname" })))
      local back = tonumber((lab:run("r", { "cat", "/proc/uptime" })):match("^(%S+)"))
      assert.is_true(back < after - 86300, "uptime back " .. back)
      assert.equal(1500, ipj(name, "h", "link show dev eth0")[1].mtu)
      assert.equal("0", sysctl("ipv4/ip_forward"))
      for _, cmd in ipairs { "link", "apply", "ping" } do
        local out, code = isle_cmd(cmd .. " --help")
        assert.equal(0, code)
        assert.matches("^usage: isle " .. cmd, out)
      end
      assert.equal("", (H.sh(inside(name, "r") .. "nft list table inet isle 2>/dev/null")))
      proc:kill("KILL")
      proc:wait()
      assert(isle.lab.down(name))
      assert.is_nil(H.lab_debris(name))
    end)

    it("of a lab that is not running builds it", function()
      local name = H.unique("la")
      local lab = decl(name, 2)
      assert.same({ "+ switch s1", "+ host h1" }, { lab:diff()[1], lab:diff()[2] })
      assert(lab:apply())
      finally(function() isle.lab.down(name) end)
      assert.is_true(pings(lab, "h4", "h1"))
    end)

    it("removes a link's nft chains before the link: a new link of that name is not lossy",
      function()
      -- through the command line, to have the nft backend on every kernel
      local name = H.unique("la")
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write([[local v = tonumber(os.getenv("V"))
local lab = require("isle").lab(os.getenv("ISLE_LAB"))
local s1, s2 = lab:switch("s1"), lab:switch("s2")
local h1, h2 = lab:host("h1"), lab:host("h2")
lab:link(h2, s2, { ip = "10.0.0.2/24" })
lab:link(s1, s2)
-- h1's eth0 moves from s1 (loss 100) to s2 (no loss)
lab:link(h1, v == 1 and s1 or s2, { ip = "10.0.0.1/24", loss = v == 1 and 100 or nil })
return lab
]])
      f:close()
      finally(function() isle_cmd("down " .. name); os.remove(script) end)
      local env = "ISLE_IMPAIR=tbf+nft ISLE_LAB=" .. name
      local _, code, err = isle_cmd("up -q " .. script, env .. " V=1")
      assert.equal(0, code, err)
      local lab = isle.lab.open(name)
      assert.equal("tbf+nft", lab.plan.backend)
      assert.equal("loss", chains(name, "h1").if_eth0.rules[1].comment) -- 100 %: a plain drop
      assert.equal(100, loss(lab, "h1", "10.0.0.2", 5, true))
      _, code, err = isle_cmd("apply -q " .. script, env .. " V=2")
      assert.equal(0, code, err)
      assert.equal(0, loss(lab, "h1", "10.0.0.2", 20))
      assert.is_nil((chains(name, "h1") or {}).if_eth0)
      assert.is_nil((chains(name) or {}).if_s1_2deth2)
    end)

    it("killed at every journal step, then down, leaves nothing; a later apply finishes "
      .. "the job #slow", function()
      local name = H.unique("lk")
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write([[local v = tonumber(os.getenv("V"))
local lab = require("isle").lab(os.getenv("ISLE_LAB"))
local s1 = lab:switch("s1")
local h1 = lab:host("h1", v == 2 and { hostname = "one", routes = { { dst = "10.9.0.0/16",
  via = "10.0.0.2" } } } or nil)
local h2 = lab:host("h2", v == 2 and { clock = { boottime = 1000 },
  sysctl = { ["ipv4.ip_forward"] = 1 } } or nil)
lab:link(h1, s1, { ip = v == 2 and "10.0.0.11/24" or "10.0.0.1/24", loss = v == 2 and 5 or 30 })
lab:link(h2, s1, { ip = "10.0.0.2/24", rate = v == 2 and "8mbit" or nil })
if v == 1 then lab:link(lab:host("h4"), s1, { ip = "10.0.0.4/24" }) end
if v == 2 then
  local s2 = lab:switch("s2")
  lab:link(lab:host("h3"), s2, { ip = "10.0.0.3/24" })
  lab:link(s1, s2)
  lab:link(h1, h2, { ip = { "192.0.2.1/24", "192.0.2.2/24" } })
  lab:nat(h1, { out = "eth1" })
end
return lab
]])
      f:close()
      finally(function() isle_cmd("down " .. name); os.remove(script) end)
      local env = "ISLE_LAB=" .. name
      local function census()
        local links = H.sh("ip -o link show | awk '{print $2}' | sort")
        local netns = select(2, H.sh("ip netns list"):gsub("\n", ""))
        return links .. " " .. netns .. " " .. tostring(H.lab_debris(name))
      end
      local function up() assert.equal(0, select(2, isle_cmd("up -q " .. script, env .. " V=1"))) end
      up()
      local out, code, err = isle_cmd("apply " .. script, env .. " V=2")
      assert.equal(0, code, err)
      assert.matches("^lab " .. name:gsub("%-", "%%-") .. ": %d+ changes\n$", out)
      local _
      local state = H.readfile("/run/isle/" .. name .. "/state")
      local first = state:find("\napply ")
      local n = select(2, state:sub(first):gsub("\n", "")) - 1
      assert.is_true(n > 20, "records of apply: " .. n)
      assert.equal(0, select(2, isle_cmd("down -q " .. name)))
      local before = census()
      local t0 = os.time()
      for k = 1, n do
        up()
        out, code = isle_cmd("apply -q " .. script, env .. " V=2 ISLE_FAULT=apply:" .. k)
        if k < n then assert.equal(137, code, "apply killed after record " .. k .. ": " .. out) end
        if k % 4 == 0 then -- the next apply settles the killed one, then applies
          _, code, err = isle_cmd("apply -q " .. script, env .. " V=2")
          assert.equal(0, code, "apply after a kill after record " .. k .. ": " .. err)
          assert.equal("one\n", (isle_cmd("exec " .. name .. " h1 -- hostname")))
          assert.equal(0, select(2, isle_cmd("exec " .. name .. " h3 -- ping -c3 -i0.2 -W2 h2")),
            "h3 -> h2 after a kill after record " .. k)
        end
        _, code, err = isle_cmd("down -q " .. name)
        assert.equal(0, code, "down after apply killed after record " .. k .. ": " .. err)
        assert.equal(before, census(), "apply killed after record " .. k)
      end
      print(format("\n    apply killed at every step: %d records, %d s", n, os.time() - t0))
    end)
  end)

  describe("pingall()", function()
    it("pings every ordered pair at once; a cut link shows; isle ping prints the matrix",
      function()
      local name = H.unique("lp")
      local lab = isle.lab.load("examples/tree.lua", 1, 4)
      lab.name = name
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      local t0 = isle.core.clock("monotonic")
      local r = assert(lab:pingall())
      local dt = isle.core.clock("monotonic") - t0
      assert.equal(12, #r)
      assert.is_true(dt < 1, "pingall took " .. dt .. " s")
      for _, x in ipairs(r) do
        assert.is_true(x.ok, x.from .. " -> " .. x.to)
        assert.equal(1, x.received)
        assert.is_number(x.rtt_ms)
      end
      assert.same({ from = "h1", to = "h2" }, { from = r[1].from, to = r[1].to })
      assert(lab:link_set("h3", "s1", { cut = true }))
      r = assert(lab:pingall { timeout = 0.3 })
      local bad = {}
      for _, x in ipairs(r) do
        if not x.ok then bad[#bad + 1] = x.from .. ">" .. x.to end
      end
      assert.same({ "h1>h3", "h2>h3", "h3>h1", "h3>h2", "h3>h4", "h4>h3" }, bad)
      r = assert(lab:pingall { hosts = { "h1", "h2" }, count = 3, interval = 0.01 })
      assert.equal(2, #r)
      assert.equal(3, r[1].sent)
      assert.equal(3, r[1].received)
      local ok, err, e = lab:pingall { hosts = { "h1", "h9" } }
      assert.is_nil(ok)
      assert.equal(H.E.ENOENT, e)
      assert.matches("no host 'h9'", err)
      assert.has_error(function() lab:pingall { count = 0 } end)
      -- the command line
      local out, code = isle_cmd("ping -W 0.3 " .. name)
      assert.equal(1, code)
      assert.equal("h1 -> h2 X h4\nh2 -> h1 X h4\nh3 -> X X X\nh4 -> h1 h2 X\n"
        .. "6/12 reachable, 50% lost\n", out)
      out, code = isle_cmd("ping --json " .. name .. " h1 h2")
      assert.equal(0, code)
      local t = H.json.decode(out)
      assert.equal(2, t.reachable)
      assert.equal(2, t.total)
      assert.equal(0, t.lost_percent)
      assert.equal("h1", t.pairs[1].from)
    end)
  end)

  describe("describe() and isle ls", function()
    it("shows switches and ports, both ends of every link, state, impairments and backend, "
      .. "routes; interfaces in order", function()
      local name = H.unique("ld")
      local lab = isle.lab(name)
      local s1 = lab:switch("s1")
      local r = lab:host("r", { forward = true })
      local h = lab:host("h", { gateway = "10.0.0.254" })
      lab:link(h, s1, { ip = "10.0.0.1/24", loss = 5 })
      for i = 0, 10 do -- r: eth0 .. eth10
        lab:link(r, i == 0 and s1 or lab:host("x" .. i), { ip = i == 0 and "10.0.0.254/24"
          or { format("10.%d.0.1/24", i), format("10.%d.0.2/24", i) } })
      end
      assert(lab:up())
      finally(function() isle.lab.down(name) end)
      assert(lab:link_set("r", "x3", { up = false }))
      local d = assert(isle.lab.describe(name))
      assert.equal(name, d.name)
      assert.equal("up", d.state)
      assert.equal(kernel_backend(), d.backend)
      assert.same({ { name = "s1", ports = { "s1-eth1", "s1-eth2" } } }, d.switches)
      local rr = d.hosts[1]
      assert.equal("r", rr.name)
      assert.is_true(rr.router)
      local names = {}
      for i, ifc in ipairs(rr.interfaces) do names[i] = ifc.name end
      assert.same({ "eth0", "eth1", "eth2", "eth3", "eth4", "eth5", "eth6", "eth7", "eth8",
        "eth9", "eth10" }, names)
      assert.equal("s1:s1-eth2", rr.interfaces[1].peer)
      assert.is_false(rr.interfaces[4].up)
      local hh = d.hosts[2]
      assert.same({ "10.0.0.254" }, hh.gateways)
      local def
      for _, x in ipairs(hh.routes) do if x.dst == "default" then def = x end end
      assert.equal("10.0.0.254", def.via)
      local l1 = d.links[1]
      assert.same({ node = "h", kind = "host", ifname = "eth0", addresses = { "10.0.0.1/24" } },
        l1.ends[1])
      assert.same({ node = "s1", kind = "switch", ifname = "s1-eth1", addresses = {} }, l1.ends[2])
      assert.equal(5, l1.impairments.loss)
      assert.equal(d.backend == "netem" and "netem" or "nft", l1.backend)
      assert.equal("down", d.links[5].state)
      -- the same through isle ls --json, and as text
      local out, code = isle_cmd("ls --json " .. name)
      assert.equal(0, code)
      local t = H.json.decode(out)
      assert.equal(5, t.links[1].impairments.loss)
      assert.equal("down", t.links[5].state)
      assert.equal("table", type(t.links[2].impairments)) -- {} stays an object
      out = isle_cmd("ls " .. name)
      assert.matches("h%-s1%s+h:eth0 %-%- s1:s1%-eth1%s+up%s+loss 5%%", out)
      assert.matches("r%-x3%s+r:eth3 %-%- x3:eth0%s+down", out)
      assert.matches("SWITCH%s+PORTS\ns1%s+s1%-eth1 s1%-eth2", out)
      -- and drawn
      local dot = isle.lab.open(name):graph()
      local edge = dot:match('\n  "r" %-%- "x3" (%b[])')
      assert.matches('^%[taillabel = "eth3", headlabel = "eth0", ', edge)
      assert.matches("style = dashed", edge, 1, true)
      assert.matches('label = "down"', edge, 1, true)
      assert.matches('"s1" %-%- "h" %[taillabel = "eth1", headlabel = "eth0", color = darkorange, '
        .. 'fontcolor = darkorange3, label = "loss 5%%"%]', dot)
    end)
  end)
end)
