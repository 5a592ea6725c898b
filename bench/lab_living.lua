-- bench/lab_living.lua: issue 12's numbers, run by bench/lab (as root, from
-- the checkout: LUA_PATH/LUA_CPATH as for bin/isle):
--   * one link change on a 100-host lab: lab:link_set from Lua (an opened
--     Lab), and `isle link` as a command, with `bin/isle --version` and
--     /bin/true spawned alternately as the floors of a command;
--   * `apply` adding one host to a running 1,000-host lab (and removing it
--     again), from Lua (the declaration made beforehand) and as `isle
--     apply` (the script run too);
--   * `isle ping` of a 20-host lab (380 pairs), and lab:pingall from Lua.
-- Medians (and p90) of alternating rounds; the load average next to them.
-- BENCH_APPLY_N sets the big lab's size (default 1000).
local isle = require "isle"

local clock = isle.core.clock
local format = string.format
local TAG = "bv" .. (io.open("/proc/self/stat"):read("n"))

local function now() return clock("monotonic") end

local function stats(t)
  table.sort(t)
  return t[#t // 2 + 1] * 1000, t[math.max(1, #t * 9 // 10)] * 1000
end

local function show(label, t, target)
  local med, p90 = stats(t)
  print(format("  %-44s median %8.2f ms  p90 %8.2f ms%s", label, med, p90,
    target and format("   (target <= %s ms)", target) or ""))
end

-- Run argv to completion (stdout and stderr to /dev/null); seconds.
local function timed(argv, env)
  local t0 = now()
  local p = assert(isle.spawn { argv = argv, stdout = "null", stderr = "null", env = env })
  local ok, how, code = p:wait()
  local dt = now() - t0
  assert(ok, format("%s: %s %s", table.concat(argv, " "), how, code))
  return dt
end

local function loadavg()
  return (isle.core.readfile("/proc/loadavg") or "?"):match("^(%S+ %S+ %S+)")
end

local function lab_of(name, ...)
  local lab = assert(isle.lab.load("examples/tree.lua", ...))
  lab.name = name
  return lab
end

-- 1. one link change on a 100-host lab
local function link_change()
  local name = TAG .. "l"
  local lab = lab_of(name, 1, 100)
  assert(lab:up())
  local ok, err = pcall(function()
    local o = assert(isle.lab.open(name))
    assert(o:link_set("h50", "s1", { loss = 1 })) -- the nft hook and libnftables loaded
    local lua, cli, ver, tru = {}, {}, {}, {}
    for i = 1, 200 do
      local t0 = now()
      assert(o:link_set("h50", "s1", { loss = 10 + i % 2 }))
      lua[i] = now() - t0
    end
    for i = 1, 40 do
      cli[i] = timed { "bin/isle", "link", name, "h50", "s1", "--loss", tostring(20 + i % 2) }
      ver[i] = timed { "bin/isle", "--version" }
      tru[i] = timed { "/bin/true" }
    end
    local cut = {}
    for i = 1, 40 do
      cut[i] = timed { "bin/isle", "link", name, "h50", "s1", i % 2 == 1 and "cut" or "uncut" }
    end
    print(format("one link change, 100-host lab (load %s):", loadavg()))
    show("lab:link_set (loss 10 <-> 11), Lua", lua, 2)
    show("isle link --loss (a command)", cli, 10)
    show("isle link cut/uncut (a command)", cut, 10)
    show("  floor: isle --version", ver)
    show("  floor: /bin/true", tru)
  end)
  assert(isle.lab.down(name))
  assert(ok, err)
end

-- 2. apply adding one host to a running N-host lab
local function apply_one(n)
  local name = TAG .. "a"
  local small, big = lab_of(name, 1, n), lab_of(name, 1, n + 1)
  local t0 = now()
  assert(small:up())
  local tup = now() - t0
  local ok, err = pcall(function()
    local add, del, cadd, cdel = {}, {}, {}, {}
    for i = 1, 5 do
      t0 = now()
      assert(big:apply())
      add[i] = now() - t0
      t0 = now()
      assert(small:apply())
      del[i] = now() - t0
    end
    local envl = { PATH = os.getenv("PATH"), ISLE_LAB = name }
    for i = 1, 3 do
      cadd[i] = timed({ "bin/isle", "apply", "-q", "examples/tree.lua", "1", tostring(n + 1) },
        envl)
      cdel[i] = timed({ "bin/isle", "apply", "-q", "examples/tree.lua", "1", tostring(n) }, envl)
    end
    -- the pieces of an added host, from Lua (as lab:apply does them)
    local state, apply, model = require "isle.lab.state", require "isle.lab.apply",
      require "isle.lab.model"
    local parts = {}
    for i = 1, 3 do
      collectgarbage("stop") -- as lab:apply runs them
      local t1 = now()
      local st = state.state(name)
      local text = isle.core.readfile("/run/isle/" .. name .. "/model")
      local sp = model.split(text)
      local t2 = now()
      local p1 = big:validate()
      local t3 = now()
      local p0, shared = model.assemble(text, sp, p1)
      p0 = state.fold(p0, st.sets)
      local t4 = now()
      apply.diff(p0, p1)
      local t5 = now()
      model.text(p1, shared)
      local t6 = now()
      collectgarbage("restart")
      parts[i] = { t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5 }
    end
    print(format("apply, %d-host lab (up took %.2f s; load %s):", n, tup, loadavg()))
    show("lab:apply adding one host (Lua)", add, 50)
    show("lab:apply removing it again (Lua)", del)
    show("isle apply adding one host (a command)", cadd)
    show("isle apply removing it (a command)", cdel)
    local function col(k)
      local t = {}
      for i, x in ipairs(parts) do t[i] = x[k] end
      return t
    end
    show("  of which: read the records, split the model", col(1))
    show("  of which: plan the declaration", col(2))
    show("  of which: the running lab (shared objects)", col(3))
    show("  of which: diff", col(4))
    show("  of which: the new model's text", col(5))
  end)
  assert(isle.lab.down(name))
  assert(ok, err)
end

-- 3. isle ping of a 20-host lab
local function ping20()
  local name = TAG .. "p"
  local lab = lab_of(name, 1, 20)
  assert(lab:up())
  local ok, err = pcall(function()
    assert(lab:pingall()) -- neighbours resolved
    local lua, cli = {}, {}
    for i = 1, 10 do
      local t0 = now()
      local r = assert(lab:pingall())
      lua[i] = now() - t0
      assert(#r == 380)
      cli[i] = timed { "bin/isle", "ping", name }
    end
    print(format("pingall, 20-host lab, 380 pairs (load %s):", loadavg()))
    show("lab:pingall (Lua)", lua)
    show("isle ping (a command)", cli, 1000)
  end)
  assert(isle.lab.down(name))
  assert(ok, err)
end

link_change()
ping20()
apply_one(tonumber(os.getenv("BENCH_APPLY_N") or 1000))
