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

  it("lossy.lua: delay and loss visible in ping #root", function()
    local ok, err = with_example("lossy.lua", { "50ms", "20" }, function(lab)
      local _, out = pings(lab, "h1", "h2", 30)
      local loss = tonumber(out:match("(%d+)%% packet loss"))
      local avg = tonumber(out:match("= [%d.]+/([%d.]+)/"))
      assert.is_true(avg >= 95, "rtt " .. tostring(avg))
      assert.is_true(loss > 0, "loss " .. tostring(loss))
    end)
    if not ok then
      if err:find("qdisc kind is unknown", 1, true) then
        return pending("this kernel has no netem qdisc (sch_netem): " .. err)
      end
      error(err)
    end
  end)
end)
