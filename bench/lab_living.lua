-- bench/lab_living.lua: issue 12's numbers, run by bench/lab (as root, from
-- the checkout: LUA_PATH/LUA_CPATH as for bin/isle):
--   * one link change on a 100-host lab: lab:link_set from Lua (an opened
--     Lab), and `isle link` as a command, with `bin/isle --version` and
--     /bin/true spawned alternately as the floors of a command;
--   * `apply` adding one host to a running 1,000-host lab (and removing it
--     again), from Lua (the declaration made beforehand) and as `isle
--     apply` (the script run too);
--   * `isle ping` of a 20-host lab (380 pairs), and lab:pingall from Lua.
-- Medians (and p90) of alternating rounds; the load average next to them;
-- a command's CPU (user + system, from the children's times in
-- /proc/self/stat: a mean over the rounds) next to its wall time.
-- BENCH_APPLY_N sets the big lab's size (default 1000). BENCH_BASE=DIR (a
-- built checkout, e.g. a clone of main) alternates its `isle link`, `isle
-- apply` and lab:apply (in a process of its own) with this checkout's, on
-- the same labs. BENCH_ONLY=link,apply,ping picks the parts.
local isle = require "isle"

local clock = isle.core.clock
local format = string.format
local TAG = "bv" .. (io.open("/proc/self/stat"):read("n"))

local function now() return clock("monotonic") end

local function stats(t)
  table.sort(t)
  return t[#t // 2 + 1] * 1000, t[math.max(1, #t * 9 // 10)] * 1000
end


-- The CPU time of the waited-for children so far (seconds).
local TICK = 0.01 -- USER_HZ
local function children_cpu()
  local st = isle.core.readfile("/proc/self/stat")
  local rest = st:match("%) (.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return (tonumber(f[14]) + tonumber(f[15])) * TICK -- cutime, cstime (fields 16, 17)
end

local cpu = {} -- label -> {sum =, n =}

-- Run argv to completion (stdout and stderr to /dev/null); seconds. With
-- `label`, its CPU time is added to cpu[label]; `may_fail`: an exit status
-- other than 0 is taken.
local function timed(argv, env, label, may_fail)
  local c0 = label and children_cpu()
  local t0 = now()
  local p = assert(isle.spawn { argv = argv, stdout = "null", stderr = "null", env = env })
  local ok, how, code = p:wait()
  local dt = now() - t0
  assert(ok or (may_fail and how == "exit"), format("%s: %s %s", table.concat(argv, " "),
    how, code))
  if label then
    local c = cpu[label] or { sum = 0, n = 0 }
    cpu[label] = c
    c.sum, c.n = c.sum + children_cpu() - c0, c.n + 1
  end
  return dt
end

local function cpu_of(label)
  local c = cpu[label]
  return c and c.n > 0 and format("   cpu %6.2f ms", c.sum * 1000 / c.n) or ""
end

local function show(label, t, target, cpulabel)
  local med, p90 = stats(t)
  print(format("  %-44s median %8.2f ms  p90 %8.2f ms%s%s", label, med, p90,
    cpulabel and cpu_of(cpulabel) or "", target and format("   (target <= %s ms)", target) or ""))
end

local BASE = os.getenv("BENCH_BASE")
local ONLY = os.getenv("BENCH_ONLY")
local function wanted(part)
  return not ONLY or ("," .. ONLY .. ","):find("," .. part .. ",", 1, true) ~= nil
end
local LUA_ENV = { PATH = os.getenv("PATH") }

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
    local lua, cli, ver, tru, floor, bcli = {}, {}, {}, {}, {}, {}
    for i = 1, 200 do
      local t0 = now()
      assert(o:link_set("h50", "s1", { loss = 10 + i % 2 }))
      lua[i] = now() - t0
    end
    for i = 1, 40 do
      cli[i] = timed({ "bin/isle", "link", name, "h50", "s1", "--loss", tostring(20 + i % 2) },
        nil, "cli")
      if BASE then
        bcli[i] = timed({ BASE .. "/bin/isle", "link", name, "h50", "s1", "--loss",
          tostring(22 + i % 2) }, nil, "bcli")
      end
      ver[i] = timed({ "bin/isle", "--version" }, nil, "ver")
      floor[i] = timed({ "/usr/bin/lua5.4", "-e", "" }, LUA_ENV, "floor")
      tru[i] = timed({ "/bin/true" }, nil, "true")
    end
    local cut, bcut = {}, {}
    for i = 1, 40 do
      local act = i % 2 == 1 and "cut" or "uncut"
      cut[i] = timed({ "bin/isle", "link", name, "h50", "s1", act }, nil, "cut")
      if BASE then
        bcut[i] = timed({ BASE .. "/bin/isle", "link", name, "h50", "s1", act }, nil, "bcut")
      end
    end
    print(format("one link change, 100-host lab (load %s):", loadavg()))
    show("lab:link_set (loss 10 <-> 11), Lua", lua, 2)
    show("isle link --loss (a command)", cli, 10, "cli")
    if BASE then show("  base: isle link --loss", bcli, nil, "bcli") end
    show("isle link cut/uncut (a command)", cut, 10, "cut")
    if BASE then show("  base: isle link cut/uncut", bcut, nil, "bcut") end
    show("  floor: isle --version", ver, nil, "ver")
    show("  floor: lua5.4 -e ''", floor, nil, "floor")
    show("  floor: /bin/true", tru, nil, "true")
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
    local add, del, cadd, cdel, addc = {}, {}, {}, {}, {}
    for i = 1, 5 do
      t0 = now()
      local c0 = os.clock()
      assert(big:apply())
      add[i], addc[i] = now() - t0, os.clock() - c0
      t0 = now()
      assert(small:apply())
      del[i] = now() - t0
    end
    local envl = { PATH = os.getenv("PATH"), ISLE_LAB = name }
    local badd, bdel = {}, {}
    for i = 1, 3 do
      cadd[i] = timed({ "bin/isle", "apply", "-q", "examples/tree.lua", "1", tostring(n + 1) },
        envl, "cadd")
      cdel[i] = timed({ "bin/isle", "apply", "-q", "examples/tree.lua", "1", tostring(n) }, envl,
        "cdel")
      if BASE then
        badd[i] = timed({ BASE .. "/bin/isle", "apply", "-q", "examples/tree.lua", "1",
          tostring(n + 1) }, envl, "badd")
        bdel[i] = timed({ BASE .. "/bin/isle", "apply", "-q", "examples/tree.lua", "1",
          tostring(n) }, envl, "bdel")
      end
    end
    -- lab:apply in a process of each checkout, alternately (each process:
    -- one add and one removal, measured inside)
    local once = { base = { add = {}, addc = {}, del = {} }, cand = { add = {}, addc = {},
      del = {} } }
    if BASE then
      local out = format("/tmp/%s.once", name)
      for _ = 1, 4 do
        for _, who in ipairs { "cand", "base" } do
          local root = who == "base" and BASE or "."
          timed({ "/usr/bin/lua5.4", "bench/lab_living.lua", "apply-once", name, tostring(n),
            out }, { PATH = os.getenv("PATH"), LUA_PATH = root .. "/lua/?.lua;" .. root
            .. "/lua/?/init.lua;;", LUA_CPATH = root .. "/build/?.so;;" })
          local a, ac, d = isle.core.readfile(out):match("(%S+) (%S+) (%S+)")
          local o = once[who]
          o.add[#o.add + 1], o.addc[#o.addc + 1], o.del[#o.del + 1] = tonumber(a),
            tonumber(ac), tonumber(d)
        end
      end
      os.remove(out)
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
    show("  its CPU", addc)
    show("lab:apply removing it again (Lua)", del)
    if BASE then
      show("lab:apply adding one host, own process", once.cand.add, 50)
      show("  base: lab:apply adding one host", once.base.add)
      show("  its CPU", once.cand.addc)
      show("  base: its CPU", once.base.addc)
      show("lab:apply removing it, own process", once.cand.del)
      show("  base: lab:apply removing it", once.base.del)
    end
    show("isle apply adding one host (a command)", cadd, nil, "cadd")
    if BASE then show("  base: isle apply adding one host", badd, nil, "badd") end
    show("isle apply removing it (a command)", cdel, nil, "cdel")
    if BASE then show("  base: isle apply removing it", bdel, nil, "bdel") end
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
      cli[i] = timed({ "bin/isle", "ping", name }, nil, nil, true) -- (exit 1: some lost)
    end
    print(format("pingall, 20-host lab, 380 pairs (load %s):", loadavg()))
    show("lab:pingall (Lua)", lua)
    show("isle ping (a command)", cli, 1000)
  end)
  assert(isle.lab.down(name))
  assert(ok, err)
end

-- `lua5.4 bench/lab_living.lua apply-once NAME N OUT` (run by apply_one
-- with a checkout's modules): one lab:apply adding a host to running lab
-- NAME of N hosts, one removing it; OUT gets "add_s add_cpu_s del_s".
if arg and arg[1] == "apply-once" then
  local name, n, out = arg[2], tonumber(arg[3]), arg[4]
  local small, big = lab_of(name, 1, n), lab_of(name, 1, n + 1)
  local t0, c0 = now(), os.clock()
  assert(big:apply())
  local add, addc = now() - t0, os.clock() - c0
  t0 = now()
  assert(small:apply())
  local f = assert(io.open(out, "w"))
  f:write(format("%.6f %.6f %.6f\n", add, addc, now() - t0))
  f:close()
  return
end

if wanted("link") then link_change() end
if wanted("ping") then ping20() end
if wanted("apply") then apply_one(tonumber(os.getenv("BENCH_APPLY_N") or 1000)) end
