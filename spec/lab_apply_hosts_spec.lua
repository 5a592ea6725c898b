-- apply and hosts as machines, against the kernel: a host apply adds gets
-- its filesystem and services, one it removes loses every process and its
-- filesystem, a kept host's files and services change in place; the
-- hosts files are written in place, so every host's /etc/hosts (isle
-- exec, ip netns exec) sees a host apply adds; a failing service rolls
-- the apply back; a kill at every record, then down, leaves nothing.
local H = require "spec.helper"
local isle = require "isle"
local core = require "isle.core"

local ISLE = H.LUA_ENV .. " bin/isle"
local format = string.format

local function isle_cmd(args, env)
  local out, ok, _, code = H.sh((env or "") .. " " .. ISLE .. " " .. args .. " 2>&1")
  return out, ok and 0 or code
end

local pids_of = H.pids_of

-- The services of a running lab by HOST/NAME.
local function services(name)
  local t = {}
  for _, s in ipairs(assert(isle.lab.services(name))) do t[s.host .. "/" .. s.name] = s end
  return t
end

-- The declaration, version v (the script the CLI specs write is the same
-- text): h0 has no address (its own hosts file); h1 and h2 stay, h3 goes
-- and h4 comes in v2; v3 is v2 with a service that fails.
local SCRIPT = [[
local v = tonumber(os.getenv("V") or "1")
local lab = require("isle").lab(os.getenv("ISLE_LAB"))
local s1 = lab:switch("s1")
local files = v == 1 and {
  ["/etc/motd"] = "one\n", -- over the machine's file
  ["/etc/isle-x/a.conf"] = "a1\n", -- an overlay on /etc
  ["/tmp/gone"] = "bye\n",
} or {
  ["/etc/motd"] = "two\n",
  ["/etc/isle-x/a.conf"] = { text = "a2\n", mode = 384 },
  ["/etc/isle-x/b.conf"] = "b\n", -- below the overlay made by up
  ["/etc/issue"] = "new bind\n", -- over another machine file
  ["/var/log/new.log"] = "n\n", -- below a private directory
}
local h1 = lab:host("h1", { files = files })
local h2 = lab:host("h2")
lab:host("h0")
lab:link(h1, s1, { ip = "10.0.0.1/24" })
lab:link(h2, s1, { ip = "10.0.0.2/24" })
lab:service(h1, "svc", { argv = { "sleep", v == 1 and "3001" or "3002" } })
lab:service(h2, "keep", { argv = { "sleep", "3003" } })
if v == 1 then
  local h3 = lab:host("h3")
  lab:link(h3, s1, { ip = "10.0.0.3/24" })
  lab:service(h3, "gone", { argv = { "sleep", "3004" } })
else
  local h4 = lab:host("h4")
  lab:link(h4, s1, { ip = "10.0.0.4/24" })
  lab:service(h4, "new", { argv = { "sh", "-c", "echo hi > /run/ready; exec sleep 3006" },
    ready = { file = "/run/ready" } })
end
if v == 3 then
  lab:service(h1, "bad", { argv = { "sh", "-c", "echo no luck; exit 1" }, ready = { port = 9 } })
end
return lab
]]

local function decl(name, v)
  local f = assert(load(SCRIPT, "decl", "t", setmetatable({ os = { getenv = function(k)
    if k == "V" then return tostring(v) end
    if k == "ISLE_LAB" then return name end
  end } }, { __index = _G })))
  return f()
end

local function cat(name, host, path)
  return (isle_cmd(format("exec %s %s -- cat %s", name, host, path)))
end

describe("apply and hosts as machines", function()
  it("adds a host with its filesystem and services, removes one with every process in it, "
    .. "changes a kept host's files and services in place; every /etc/hosts sees the new host",
    function()
    local name = H.unique("ah")
    local machine_motd = H.readfile("/etc/motd")
    local stray
    finally(function() -- (one finally a test: busted keeps the last one only)
      if stray then
        if select(2, stray:poll()) == nil then stray:kill("KILL") end
        stray:wait()
      end
      isle.lab.down(name)
    end)
    assert(decl(name, 1):up())
    local lab = isle.lab.open(name)
    local before = services(name)
    stray = assert(lab:spawn("h3", { argv = { "sleep", "3005" } })) -- not a service
    assert.equal("one\n", cat(name, "h1", "/etc/motd"))
    assert.equal("bye\n", cat(name, "h1", "/tmp/gone"))
    local changes = assert(decl(name, 2):diff())
    local set = {}
    for _, c in ipairs(changes) do set[c] = true end
    for _, want in ipairs { "+ host h4", "- host h3", "~ file h1:/etc/motd",
      "~ file h1:/etc/isle-x/a.conf", "+ file h1:/etc/isle-x/b.conf", "+ file h1:/etc/issue",
      "+ file h1:/var/log/new.log", "- file h1:/tmp/gone", "- service h3/gone",
      "+ service h4/new", "~ service h1/svc (restarted)" } do
      assert.is_true(set[want], want .. " not in:\n" .. table.concat(changes, "\n"))
    end
    assert.is_nil(set["~ service h2/keep (restarted)"])
    local t0 = core.clock("monotonic")
    assert(decl(name, 2):apply())
    local dt = core.clock("monotonic") - t0
    assert.same({}, assert(decl(name, 2):diff()))
    -- services: the changed one restarted, the kept one untouched, the new one ready, the
    -- removed one and the stray process ended
    local after = services(name)
    assert.equal(before["h2/keep"].pid, after["h2/keep"].pid)
    assert.are_not.equal(before["h1/svc"].pid, after["h1/svc"].pid)
    assert.same({}, pids_of { "sleep", "3001" })
    assert.equal(1, #pids_of { "sleep", "3002" })
    assert.equal("running", after["h4/new"].state)
    assert.equal("hi\n", cat(name, "h4", "/run/ready"))
    assert.equal("sysfs\n", (isle_cmd("exec " .. name .. " h4 -- stat -f -c %T /sys")))
    assert.is_nil(after["h3/gone"])
    -- isle ls shows each host's services
    for _, h in ipairs(isle.lab.describe(name).hosts) do
      if h.name == "h4" then
        assert.same({ { name = "new", state = "running", pid = after["h4/new"].pid } }, h.services)
      end
    end
    assert.matches("\nh4%s+new%s+running%s+" .. after["h4/new"].pid .. "\n", (isle_cmd("ls " .. name)))
    assert.same({}, pids_of { "sleep", "3004" })
    assert.equal("signal", select(2, stray:poll())) -- TERM: ended by the apply
    assert.is_nil(H.sh("ip netns list"):find(name .. "-h3", 1, true))
    assert.is_nil(core.ino("/run/isle/" .. name .. "/mnt/h3"))
    assert.is_nil(core.ino("/run/isle/" .. name .. "/ns/h3.uts"))
    assert.is_nil(core.ino("/etc/netns/" .. name .. "-h3"))
    -- files: rewritten in place, new ones placed, the removed one gone, the machine's alone
    assert.equal("two\n", cat(name, "h1", "/etc/motd"))
    assert.equal("a2\n", cat(name, "h1", "/etc/isle-x/a.conf"))
    assert.equal("600", (isle_cmd(format("exec %s h1 -- stat -c %%a /etc/isle-x/a.conf", name))
      :gsub("%s", "")))
    assert.equal("b\n", cat(name, "h1", "/etc/isle-x/b.conf"))
    assert.equal("new bind\n", cat(name, "h1", "/etc/issue"))
    assert.equal("n\n", cat(name, "h1", "/var/log/new.log"))
    assert.matches("No such file", cat(name, "h1", "/tmp/gone"))
    assert.equal(machine_motd, H.readfile("/etc/motd"))
    assert.is_nil(core.ino("/etc/isle-x"))
    assert.are_not.equal("new bind\n", H.readfile("/etc/issue"))
    -- hosts files: every way onto every host sees h4 (the lab's one file and h0's own),
    -- through the same links
    for _, h in ipairs { "h1", "h2", "h0" } do
      assert.matches("\n10%.0%.0%.4\th4\n", cat(name, h, "/etc/hosts"), h)
      assert.matches("\n10%.0%.0%.4\th4\n",
        (H.sh(format("ip netns exec %s-%s cat /etc/hosts", name, h))), h)
      assert.is_nil(cat(name, h, "/etc/hosts"):find("10.0.0.3\th3", 1, true), h)
    end
    assert.matches("127%.0%.1%.1\th0\n", cat(name, "h0", "/etc/hosts"))
    assert.equal("/run/isle/" .. name .. "/hosts", core.readlink("/etc/netns/" .. name .. "-h1/hosts"))
    assert.equal("/run/isle/" .. name .. "/hosts.h0",
      core.readlink("/etc/netns/" .. name .. "-h0/hosts"))
    assert.equal(0, select(2, isle_cmd(format("exec %s h1 -- ping -c1 -W2 h4", name))))
    print(format("\n    apply (a host and a service in, a host out with 2 processes, 5 files, "
      .. "a restart): %.2f s", dt))
    -- and back
    assert(decl(name, 1):apply())
    assert.equal("one\n", cat(name, "h1", "/etc/motd"))
    assert.equal("bye\n", cat(name, "h1", "/tmp/gone"))
    assert.is_nil(cat(name, "h1", "/etc/hosts"):find("\th4\n", 1, true))
    assert.matches("\n10%.0%.0%.3\th3\n", cat(name, "h0", "/etc/hosts"))
    assert.equal(1, #pids_of { "sleep", "3004" })
    assert.same({}, pids_of { "sleep", "3006" })
    assert(isle.lab.down(name))
    assert.is_nil(H.lab_debris(name))
    assert.same({}, pids_of { "sleep", "3001" })
  end)

  it("rolls back when a service does not get ready: services, files and hosts as they were",
    function()
    local name, bare = H.unique("ar"), H.unique("ab")
    finally(function() isle.lab.down(name); isle.lab.down(bare) end)
    assert(decl(name, 2):up())
    local before = services(name)
    local model = H.readfile("/run/isle/" .. name .. "/model")
    local ok, err = decl(name, 3):apply()
    assert.is_nil(ok)
    assert.matches("service bad on h1: exited with status 1 before it was ready", err)
    assert.matches("no luck", err)
    assert.equal(model, H.readfile("/run/isle/" .. name .. "/model"))
    local after = services(name)
    assert.is_nil(after["h1/bad"])
    for k, s in pairs(before) do assert.equal(s.pid, after[k].pid, k) end
    -- a lab without services: the supervisor apply started is gone again
    local lab = isle.lab(bare)
    lab:link(lab:host("h1"), lab:switch("s1"), { ip = "10.0.0.1/24" })
    assert(lab:up())
    lab = isle.lab(bare)
    local h1 = lab:host("h1")
    lab:link(h1, lab:switch("s1"), { ip = "10.0.0.1/24" })
    lab:service(h1, "up", { argv = { "sleep", "3007" } })
    lab:service(h1, "bad", { argv = { "false" }, ready = { port = 9 } })
    ok, err = lab:apply()
    assert.is_nil(ok)
    assert.matches("service bad on h1", err)
    assert.same({}, pids_of { "sleep", "3007" })
    assert.is_nil(core.ino("/run/isle/" .. bare .. "/ctl"))
    assert.is_nil(core.ino("/run/isle/" .. bare .. "/logs"))
    assert(isle.lab.down(bare))
    assert.is_nil(H.lab_debris(bare))
  end)

  it("killed at every journal record, then down, leaves nothing: no process, no namespace "
    .. "#slow", function()
    local name = H.unique("ak")
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(SCRIPT)
    f:close()
    finally(function() isle_cmd("down " .. name); os.remove(script) end)
    local env = "ISLE_LAB=" .. name
    local function census()
      local netns = select(2, H.sh("ip netns list"):gsub("\n", ""))
      local procs = 0
      for _, n in ipairs { "3001", "3002", "3003", "3004", "3006" } do
        procs = procs + #pids_of { "sleep", n }
      end
      return netns .. " netns, " .. procs .. " services, " .. tostring(H.lab_debris(name))
    end
    local before = census()
    local function up()
      local out, code = isle_cmd("up -q " .. script, env .. " V=1")
      assert.equal(0, code, out)
    end
    up()
    local out, code = isle_cmd("apply -q " .. script, env .. " V=2")
    assert.equal(0, code, out)
    local state = H.readfile("/run/isle/" .. name .. "/state")
    local n = select(2, state:sub((state:find("\napply "))):gsub("\n", "")) - 1
    assert.equal(0, select(2, isle_cmd("down -q " .. name)))
    assert.equal(before, census())
    local t0 = os.time()
    for k = 1, n do
      up()
      out, code = isle_cmd("apply -q " .. script, env .. " V=2 ISLE_FAULT=apply:" .. k)
      if k < n then assert.equal(137, code, "apply killed after record " .. k .. ": " .. out) end
      if k % 3 == 0 then -- the next apply settles the killed one, then applies
        out, code = isle_cmd("apply -q " .. script, env .. " V=2")
        assert.equal(0, code, "apply after a kill after record " .. k .. ": " .. out)
        local s = services(name)
        assert.equal("running", s["h4/new"].state, "after record " .. k)
        assert.equal(1, #pids_of { "sleep", "3002" }, "after record " .. k .. ":\n"
          .. H.sh("ps -eo pid,ppid,stat,args | grep -v grep | grep -e 'sleep 300' -e supervisor")
          .. (isle_cmd("ps " .. name)))
        assert.equal("two\n", cat(name, "h1", "/etc/motd"))
      end
      out, code = isle_cmd("down -q " .. name)
      assert.equal(0, code, "down after apply killed after record " .. k .. ": " .. out)
      assert.equal(before, census(), "apply killed after record " .. k)
    end
    print(format("\n    apply with services and files killed at every step: %d records, %d s",
      n, os.time() - t0))
  end)
end)
