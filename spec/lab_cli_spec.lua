-- The lab subcommands of `isle`: up, down, ls, exec, shell, graph; crash
-- safety of `isle up` under SIGKILL; two labs at once.
local H = require "spec.helper"

local ISLE = "bin/isle"

local function isle_cmd(args, env)
  local out, ok, _, code = H.sh(string.format("%s %s %s 2>/tmp/isle-lab-cli-%d.err",
    env or "", ISLE, args, H.mypid()))
  local err = H.readfile(string.format("/tmp/isle-lab-cli-%d.err", H.mypid())) or ""
  os.remove(string.format("/tmp/isle-lab-cli-%d.err", H.mypid()))
  return out, code, err, ok
end

describe("isle (lab subcommands)", function()
  it("has --help for each subcommand", function()
    for _, sub in ipairs { "up", "down", "ls", "exec", "shell", "graph" } do
      local out, code = isle_cmd(sub .. " --help")
      assert.equal(0, code)
      assert.matches("^usage: isle " .. sub, out)
    end
  end)

  it("fails with one line and a non-zero status", function()
    local _, code, err = isle_cmd("down no-such-lab-" .. H.mypid())
    assert.equal(1, code)
    assert.matches("^isle: lab no%-such%-lab%-%d+: no such lab\n$", err)
    _, code, err = isle_cmd("up /nonexistent.lua")
    assert.equal(1, code)
    assert.equal(1, select(2, err:gsub("\n", "")))
    _, code = isle_cmd("exec")
    assert.equal(2, code)
    _, code = isle_cmd("up")
    assert.equal(2, code)
  end)

  it("graph prints DOT for a script, and --svg needs dot", function()
    local out, code = isle_cmd("graph examples/router.lua")
    assert.equal(0, code)
    assert.matches('^graph "router" {', out)
    assert.matches('"s1" %-%- "h1"', out)
    local has_dot = H.sh("command -v dot") ~= ""
    local _, c2, err = isle_cmd("graph --svg examples/router.lua")
    if has_dot then
      assert.equal(0, c2)
    else
      assert.equal(1, c2)
      assert.matches("Graphviz", err)
    end
  end)

  it("up, ls, exec (status carried), shell, down #root", function()
    if not H.is_root() then return pending("needs root") end
    local name = H.unique("cl")
    local env = "ISLE_LAB=" .. name
    local out, code, err = isle_cmd("up examples/router.lua", env)
    finally(function() isle_cmd("down " .. name) end)
    assert.equal(0, code, err)
    assert.matches("lab " .. name .. " up: 3 hosts, 2 switches, 4 links", out, 1, true)
    out, code = isle_cmd("ls")
    assert.equal(0, code)
    assert.matches(name:gsub("%-", "%%-") .. "%s+up%s+3%s+2%s+4", out)
    out = isle_cmd("ls --json " .. name)
    local t = H.json.decode(out)
    assert.equal(name, t.name)
    assert.equal("h1", t.hosts[2].name)
    assert.equal("10.1.0.1/24", t.hosts[2].interfaces[1].addresses[1])
    out, code = isle_cmd("exec " .. name .. " h1 -- ping -c1 -W2 h2")
    assert.equal(0, code)
    assert.matches("ttl=63", out)
    local _
    _, code = isle_cmd("exec " .. name .. " h2 -- sh -c 'exit 42'")
    assert.equal(42, code)
    out = isle_cmd("exec " .. name .. " h2 -- hostname")
    assert.equal("h2\n", out)
    out = H.sh(string.format("echo 'hostname; echo $ISLE_HOST' | SHELL=/bin/sh %s shell %s r",
      ISLE, name))
    assert.matches("^r\nr\n", out)
    _, code, err = isle_cmd("exec " .. name .. " nohost -- true")
    assert.equal(1, code)
    assert.matches("^isle: lab " .. name:gsub("%-", "%%-") .. ": no host 'nohost'\n$", err)
    _, code = isle_cmd("up examples/router.lua", env)
    assert.equal(1, code)
    _, code = isle_cmd("down " .. name)
    assert.equal(0, code)
    assert.is_nil(H.lab_debris(name))
  end)

  it("builds two labs at the same time without interference #root", function()
    if not H.is_root() then return pending("needs root") end
    local a, b = H.unique("cc"), H.unique("cc")
    local had_etc_netns = os.rename("/etc/netns", "/etc/netns") ~= nil -- exists?
    finally(function() isle_cmd("down " .. a); isle_cmd("down " .. b) end)
    local out = H.sh(string.format("(ISLE_LAB=%s %s up -q examples/tree.lua 1 20 & "
      .. "ISLE_LAB=%s %s up -q examples/tree.lua 1 20 & wait) 2>&1; echo done",
      a, ISLE, b, ISLE))
    assert.equal("done\n", out)
    for _, n in ipairs { a, b } do
      local o, code = isle_cmd("exec " .. n .. " h1 -- ping -c1 -W2 h20")
      assert.equal(0, code, o)
    end
    assert.equal(0, select(2, isle_cmd("down " .. a)))
    -- b is untouched by a's removal
    assert.equal(0, select(2, isle_cmd("exec " .. b .. " h3 -- ping -c1 -W2 h7")))
    assert.equal(0, select(2, isle_cmd("down " .. b)))
    assert.is_nil(H.lab_debris(a))
    assert.is_nil(H.lab_debris(b))
    -- /etc/netns, made by whichever lab came first, goes with the last one
    assert.equal(had_etc_netns, os.rename("/etc/netns", "/etc/netns") ~= nil)
  end)

  it("down then up at once works #root", function()
    if not H.is_root() then return pending("needs root") end
    local name = H.unique("cu")
    local env = "ISLE_LAB=" .. name
    finally(function() isle_cmd("down " .. name) end)
    for _ = 1, 3 do
      local out = H.sh(string.format("%s %s up -q examples/bridge.lua && %s down -q %s && "
        .. "%s %s up -q examples/bridge.lua && echo ok", env, ISLE, ISLE, name, env, ISLE))
      assert.equal("ok\n", out)
      assert.equal(0, select(2, isle_cmd("exec " .. name .. " h1 -- ping -c1 -W2 upstream")))
      assert.equal(0, select(2, isle_cmd("down " .. name)))
    end
    assert.is_nil(H.lab_debris(name))
  end)

  it("down then up at once works at 1,000 hosts, and down --wait #root #slow", function()
    if not H.is_root() then return pending("needs root") end
    local name = H.unique("cb")
    local env = "ISLE_LAB=" .. name
    finally(function() isle_cmd("down " .. name) end)
    local out = H.sh(string.format("%s %s up -q examples/fat.lua 1000 && %s down -q %s && "
      .. "%s %s up -q examples/fat.lua 1000 && echo ok", env, ISLE, ISLE, name, env, ISLE))
    assert.equal("ok\n", out)
    assert.equal(0, select(2, isle_cmd("exec " .. name .. " h1 -- ping -c1 -W2 h1000")))
    local o, code = isle_cmd("down --wait " .. name)
    assert.equal(0, code, o)
    assert.is_nil(H.lab_debris(name))
  end)

  it("leaves nothing after SIGKILL of `isle up` (100 hosts) at any moment, then down #root #slow",
    function()
    if not H.is_root() then return pending("needs root") end
    local links = H.ipj("link show")
    for _, delay in ipairs { "0.001", "0.02", "0.05", "0.08", "0.12", "0.2" } do
      local name = H.unique("ck")
      H.sh(string.format("ISLE_LAB=%s %s up -q examples/tree.lua 1 100 & p=$!; sleep %s; "
        .. "kill -9 $p; wait $p 2>/dev/null", name, ISLE, delay))
      local _, code, err = isle_cmd("down -q " .. name)
      if code ~= 0 then
        -- killed before its state directory existed: nothing to remove
        assert.matches("no such lab", err)
      end
      assert.is_nil(H.lab_debris(name), "after SIGKILL at " .. delay .. " s")
    end
    assert.same(links, H.ipj("link show"))
  end)

  -- A 6-host lab with a router (forward), NAT between lab namespaces, a
  -- clock host, a switch, an uplink, a host with files, a private
  -- directory and services: every kind of journal record.
  local KILL_LAB = [[
local lab = require("isle").lab(os.getenv("ISLE_LAB"))
local s1 = lab:switch("s1")
local r = lab:host("r", { forward = true })
local up = lab:host("up")
lab:link(r, s1, { ip = "10.0.0.254/24" })
lab:link(r, up, { ip = { "192.0.2.1/24", "192.0.2.2/24" } })
lab:nat(r, { out = up, source = "10.0.0.0/24" })
for i = 1, 2 do -- a plain host, one with a clock (a third plain one: only more of the same records)
  lab:link(lab:host("h" .. i, { gateway = "10.0.0.254", clock = i == 2 and { boottime = 86400 } or nil }),
    s1, { ip = "10.0.0." .. i .. "/24" })
end
lab:uplink(s1, { ip = "10.0.0.200/24", ifname = os.getenv("ISLE_UPLINK") })
-- a host with a filesystem of its own (an overlay, a bind, a private
-- directory) and two services, one waiting for the other
local kk = "isle-" .. os.getenv("ISLE_LAB"):gsub("%W", "")
local m = lab:host("m", { files = { ["/etc/" .. kk .. "/a.conf"] = "a\n", ["/etc/hostname"] = "m\n" },
  private = { "/var/lib/" .. kk } })
lab:link(m, s1, { ip = "10.0.0.9/24" })
lab:service(m, "first", { argv = { "sleep", "31337" }, ready = { argv = { "true" } } })
lab:service(m, "second", { argv = { "sh", "-c", "touch /run/second; exec sleep 31338" },
  after = { "first" }, ready = { file = "/run/second" } })
return lab
]]

  -- What a killed isle could leave: the lab's debris; links, mounts and
  -- named netns of the machine (read in-process: this runs ~100 times);
  -- processes running the script; cgroups.
  local function kernel_state()
    local core, net = require "isle.core", require "isle.net"
    local n = assert(net.open())
    local links = {}
    for _, l in ipairs(assert(n:links())) do links[#links + 1] = l.name end
    n:close()
    table.sort(links)
    local mounts = select(2, assert(core.readfile("/proc/self/mountinfo")):gsub("\n", ""))
    return { links = table.concat(links, ","), mounts = mounts,
      netns = #(core.netns_list("/run/netns") or {}), children = #H.children() }
  end

  local function leftovers(name, script, before)
    local left = { H.lab_debris(name) }
    local now = kernel_state()
    for _, k in ipairs { "links", "mounts", "netns", "children" } do
      if now[k] ~= before[k] then left[#left + 1] = k .. " " .. tostring(now[k]) end
    end
    for _, pid in ipairs(require("isle.core").netns_list("/proc") or {}) do
      local cmd = pid:match("^%d+$") and H.readfile("/proc/" .. pid .. "/cmdline") or ""
      local env = cmd ~= "" and H.readfile("/proc/" .. pid .. "/environ") or ""
      if cmd:find(script, 1, true) or cmd:find("^sleep%z3133[78]%z")
        or env:find("ISLE_SUPERVISE=" .. name .. "%z") then
        left[#left + 1] = "process " .. pid .. " " .. cmd:gsub("%z", " ")
      end
    end
    local kk = "isle-" .. name:gsub("%W", "")
    for _, path in ipairs { "/etc/" .. kk, "/var/lib/" .. kk } do
      if require("isle.core").lstat(path) then left[#left + 1] = "machine file " .. path end
    end
    local function cgroups(dir, depth)
      for _, e in ipairs(depth > 0 and require("isle.core").netns_list(dir) or {}) do
        if e:find(name, 1, true) then left[#left + 1] = "cgroup " .. dir .. "/" .. e end
        if not e:find("^cgroup%.") then cgroups(dir .. "/" .. e, depth - 1) end
      end
    end
    cgroups("/sys/fs/cgroup", 3)
    return #left > 0 and table.concat(left, ", ") or nil
  end

  it("kill at every step: isle up or isle down SIGKILLed after each journal record, then "
    .. "isle down, leaves nothing #root #slow", function()
    if not H.is_root() then return pending("needs root") end
    local name = H.unique("kk")
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(KILL_LAB)
    f:close()
    local env = string.format("ISLE_LAB=%s ISLE_UPLINK=kk%d", name, H.mypid() % 100000)
    finally(function() isle_cmd("down " .. name); os.remove(script) end)
    local function up(fault)
      return H.sh(string.format("exec env %s %s %s up -q %s 2>&1", fault or "", env, ISLE,
        script))
    end
    local function down(fault)
      return H.sh(string.format("exec env %s %s down -q %s 2>&1", fault or "", ISLE, name))
    end
    -- N: the records of a whole up
    local out, ok = up()
    assert.is_true(ok, out)
    assert.is_true(select(2, down()))
    local before = kernel_state() -- /run/isle and /run/netns are shared mounts by now
    out, ok = up()
    assert.is_true(ok, out)
    local n = select(2, H.readfile("/run/isle/" .. name .. "/state"):gsub("\n", ""))
    assert.is_true(ok, (down()))
    assert.is_nil(leftovers(name, script, before))
    local t0 = os.time()
    for k = 1, n do
      local _, _, how, sig = up("ISLE_FAULT=up:" .. k)
      if k < n then assert.same({ "signal", 9 }, { how, sig }, "up killed after record " .. k) end
      out, ok = down()
      assert.is_true(ok, "down after up killed after record " .. k .. ": " .. out)
      assert.is_nil(leftovers(name, script, before), "up killed after record " .. k)
    end
    -- the same for down, killed after each of its progress records
    local m = 0
    repeat
      m = m + 1
      out, ok = up()
      assert.is_true(ok, out)
      local _, done = down("ISLE_FAULT=down:" .. m)
      if not done then
        out, ok = down()
        assert.is_true(ok, "down after down killed after record " .. m .. ": " .. out)
      end
      assert.is_nil(leftovers(name, script, before), "down killed after record " .. m)
    until done
    -- and the lab still comes up and works
    out, ok = up()
    assert.is_true(ok, out)
    local o, code = isle_cmd("exec " .. name .. " h1 -- ping -c1 -W2 up")
    assert.equal(0, code, o)
    assert.is_true(select(2, down()))
    assert.is_nil(leftovers(name, script, before))
    print(string.format("\n    kill at every step: %d records of up, %d of down, %d s", n, m - 1,
      os.time() - t0))
  end)
end)
