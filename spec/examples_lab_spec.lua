-- Every topology example is built, carries the traffic it promises, and
-- goes away without a trace.
local H = require "spec.helper"
local isle = require "isle"

-- Build examples/FILE as lab NAME with script arguments, as a user would:
-- `ISLE_LAB=NAME isle up examples/FILE ARGS` in a child process (the
-- examples read their lab's name from the environment); then open it here,
-- run check(lab), take it down.
local function with_example(file, args, check)
  local name = H.unique("ex")
  local out, ok = H.sh(string.format("ISLE_LAB=%s %s bin/isle up -q examples/%s %s 2>&1", name,
    H.LUA_ENV, file, table.concat(args, " ")))
  if not ok then
    assert.is_nil(H.lab_debris(name))
    return nil, out
  end
  local lab = assert(isle.lab.open(name))
  assert.equal(name, lab.name)
  local okc, e = pcall(check, lab)
  assert(lab:down())
  assert.is_nil(H.lab_debris(name))
  if not okc then error(e, 0) end
  return true
end

local function pings(lab, from, to, n)
  local out, ok = lab:run(from, { "ping", "-c", tostring(n or 1), "-W", "2", to })
  return ok, out
end

describe("examples", function()
  before_each(function()
    if not H.is_root() then pending("needs root") end
  end)

  it("bridge.lua: hosts on a switch reach each other and, through NAT, upstream #root",
    function()
    assert(with_example("bridge.lua", {}, function(lab)
      assert.is_true(pings(lab, "h1", "h2"))
      assert.is_true(pings(lab, "h2", "upstream"))
      -- upstream has no route to 10.0.0.0/24: only the masquerade answers
      local routes = lab:run("upstream", { "ip", "route" })
      assert.is_nil(routes:find("10.0.0.0", 1, true))
      assert.is_false(pings(lab, "upstream", "h1") or false)
    end))
  end)

  it("linear.lua: K switches in a chain (size from the arguments) #root", function()
    assert(with_example("linear.lua", { "5" }, function(lab)
      assert.equal(5, #lab:hosts())
      assert.is_true(pings(lab, "h1", "h5"))
    end))
  end)

  it("tree.lua: depth and fanout from the arguments #root", function()
    assert(with_example("tree.lua", { "2", "3" }, function(lab)
      assert.equal(9, #lab:hosts())
      assert.is_true(pings(lab, "h1", "h9"))
      assert.is_true(pings(lab, "h4", "h2"))
    end))
  end)

  it("fat.lua: hosts under edge switches joined by a core switch #root", function()
    assert(with_example("fat.lua", { "7", "3" }, function(lab)
      assert.equal(7, #lab:hosts())
      -- three edge switches (3 + 3 + 1 hosts) and the core
      assert.equal(4, #lab.plan.switches)
      assert.is_true(pings(lab, "h1", "h7"))
      assert.is_true(pings(lab, "h5", "h2"))
    end))
  end)

  it("router.lua: two subnets joined by a router #root", function()
    assert(with_example("router.lua", {}, function(lab)
      local ok, out = pings(lab, "h1", "h2")
      assert.is_true(ok)
      assert.matches("ttl=63", out)
    end))
  end)

  it("clock.lua: one host's uptime runs a day ahead #root", function()
    assert(with_example("clock.lua", {}, function(lab)
      local now = tonumber(lab:run("now", { "cat", "/proc/uptime" }):match("^(%S+)"))
      local fut = tonumber(lab:run("future", { "cat", "/proc/uptime" }):match("^(%S+)"))
      assert.is_true(fut - now > 86300 and fut - now < 86500, tostring(fut - now))
      -- and through the command line, as the example's header says
      local out, ok = H.sh(string.format("%s bin/isle exec %s future -- cat /proc/uptime 2>&1",
        H.LUA_ENV, lab.name))
      assert.is_true(ok, out)
      local cli = tonumber(out:match("^(%S+)"))
      assert.is_true(cli - now > 86300 and cli - now < 86600, out)
      assert.is_true(pings(lab, "future", "now"))
    end))
  end)

  it("lossy.lua: loss visible in ping, on any kernel (netem, or tbf and nftables) #root",
    function()
    assert(with_example("lossy.lua", { "30", "10mbit" }, function(lab)
      -- ARP is dropped too: one reply first, so that no ping waits for it
      for _ = 1, 10 do
        if select(2, lab:run("h1", { "ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "h2" }))
        then break end
      end
      local out = lab:run("h1", { "ping", "-c", "100", "-i", "0.01", "-W", "1", "-q", "h2" })
      local loss = tonumber(out:match("([%d.]+)%% packet loss"))
      -- 30 % each way: about half of the round trips (49 %)
      assert.is_true(loss >= 25 and loss <= 75, "loss " .. tostring(loss))
    end))
  end)

  it("wan.lua: the delay in the RTT with netem; without, up fails before building #root",
    function()
    local ok, err = with_example("wan.lua", { "40ms", "1" }, function(lab)
      local out, okp = lab:run("a1", { "ping", "-c", "3", "-W", "2", "b1" })
      assert.is_true(okp, out)
      -- 40 ms +- 2 ms of jitter each way (netem's uniform jitter): every
      -- round trip takes 76 ms or more, about half less than 80
      local min = tonumber(out:match("= ([%d.]+)/"))
      assert.is_true(min >= 76, "rtt " .. tostring(min))
    end)
    if not ok then
      -- the lab is refused before anything exists (with_example checked
      -- that nothing is left), naming the module
      assert.matches("delay and jitter need .*sch_netem", err)
      return pending("this kernel has no netem qdisc: " .. err:gsub("\n$", ""))
    end
  end)
end)
