-- Rootless labs (issue 13): `isle up` as an unprivileged user builds the
-- lab in that user's own namespaces, kept by a holder process; every lab
-- command joins them. The specs create test users (with and without a
-- subordinate id range), run the real `isle` as them (runuser), check the
-- kernel's view (/proc/PID/ns, maps, ip -j inside, traffic), and remove
-- the users, their state directories and their processes.
local H = require "spec.helper"
local core = require "isle.core"
local context = require "isle.lab.context"

local format = string.format

-- The users of this run; removed in teardown.
local users = {}

local function adduser(range)
  local name = format("rl%da%d", H.mypid() % 100000, #users + 1)
  local out, ok = H.sh("useradd -M -s /bin/sh " .. name .. " 2>&1")
  assert(ok, out)
  local u = { name = name }
  users[#users + 1] = u
  u.uid = tonumber(H.sh("id -u " .. name):match("%d+"))
  u.gid = tonumber(H.sh("id -g " .. name):match("%d+"))
  u.state = "/tmp/isle-" .. u.uid
  local sub = (H.readfile("/etc/subuid") or ""):match("\n?" .. name .. ":(%d+:%d+)")
  if range and not sub then
    return nil, "useradd gave no subordinate range"
  elseif not range and sub then
    local s, c = sub:match("(%d+):(%d+)")
    local r = format("%d-%d", s, s + c - 1)
    assert(select(2, H.sh(format("usermod --del-subuids %s --del-subgids %s %s", r, r, name))))
  end
  return u
end

local function deluser(u)
  -- its processes (a holder whose labs a failed spec left) first
  H.sh(format("pkill -9 -U %d; rm -rf %s", u.uid, u.state))
  for _ = 1, 100 do
    if H.sh(format("pgrep -U %d", u.uid)) == "" then break end
    H.sh("sleep 0.05")
  end
  H.sh("userdel " .. u.name .. " 2>/dev/null")
  -- userdel keeps /etc/subuid and /etc/subgid lines on some versions
  for _, f in ipairs { "/etc/subuid", "/etc/subgid" } do
    local text = H.readfile(f)
    if text and text:find(u.name .. ":", 1, true) then
      local kept = text:gsub("[^\n]*\n?", function(l)
        return l:sub(1, #u.name + 1) == u.name .. ":" and "" or l
      end)
      local fh = assert(io.open(f, "w"))
      fh:write(kept)
      fh:close()
    end
  end
end

-- Run `isle ARGS` as user u (from the checkout, without root's
-- XDG_RUNTIME_DIR): stdout and stderr together, the exit code.
local function as(u, args, env)
  local out, _, _, code = H.sh(format("runuser -u %s -- env -u XDG_RUNTIME_DIR %s bin/isle %s 2>&1",
    u.name, env or "", args))
  return out, code
end

-- Its holder's pid (from the pid file root can read), or nil.
local function holder(u)
  return tonumber(((H.readfile(u.state .. "/holder.pid") or ""):match("^(%d+)")))
end

-- Processes of u that have not ended (zombies a late reaper keeps are gone).
local function processes(u, waited)
  local left = {}
  for _, pid in ipairs(core.netns_list("/proc") or {}) do
    local st = pid:match("^%d+$") and H.readfile("/proc/" .. pid .. "/status")
    if st and tonumber(st:match("\nUid:%s+(%d+)")) == u.uid and not st:match("\nState:%s+Z") then
      left[#left + 1] = pid .. " " .. (st:match("^Name:%s+(%S+)") or "?")
    end
  end
  if #left > 0 and not waited then
    -- one ending right now (udhcpc's deconfig `ip`, started by the TERM of
    -- down) gets 5 s, waited for on a pidfd; then the census again
    for _, p in ipairs(left) do
      local box, fd = core.pidfd_open(tonumber(p:match("^%d+")))
      if box then
        core.pidfd_wait(fd, 5)
        box:close()
      end
    end
    return processes(u, true)
  end
  return left
end

-- Wait until holder pid has ended (a pidfd, no polling loop), at most 10 s.
local function ended(pid)
  local box, fd = core.pidfd_open(pid)
  if not box then return true end
  local r = core.pidfd_wait(fd, 10)
  box:close()
  return r
end

-- What a user's labs could leave: lab state, the holder, processes; and,
-- in root's view, anything of lab `name`.
local function leftovers(u, name, pid)
  local left = {}
  if pid and not ended(pid) then left[#left + 1] = "holder " .. pid end
  for _, e in ipairs(core.netns_list(u.state .. "/labs") or {}) do
    left[#left + 1] = "state " .. e
  end
  if core.ino(u.state .. "/holder.pid") then left[#left + 1] = "holder.pid" end
  for _, p in ipairs(processes(u)) do left[#left + 1] = "process " .. p end
  left[#left + 1] = name and H.lab_debris(name) or nil
  return #left > 0 and table.concat(left, ", ") or nil
end

local function script(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  H.sh("chmod 0644 " .. path)
  return path
end

local function ping_ok(out)
  return out:match(" 1 received") ~= nil
end

describe("rootless labs", function()
  local skip
  setup(function()
    if not H.is_root() then
      skip = "needs root (to create test users)"
    elseif H.sh("command -v useradd runuser") == "" then
      skip = "needs useradd and runuser"
    end
  end)
  teardown(function()
    for _, u in ipairs(users) do deluser(u) end
  end)
  before_each(function()
    if skip then pending(skip) end
  end)

  it("builds examples/router.lua as a user with a subordinate range: its own user namespace, "
    .. "the lab invisible to root; exec, ls, graph, ping, shell; down leaves nothing "
    .. "#root", function()
    local u = assert(adduser(true))
    local name = H.unique("rr")
    local env = "ISLE_LAB=" .. name
    local out, code = as(u, "up examples/router.lua", env)
    finally(function() as(u, "down " .. name) end)
    assert.equal(0, code, out)
    assert.matches("lab " .. name .. " up: 3 hosts, 2 switches, 4 links", out, 1, true)
    -- the holder: the user's own user namespace, mapped to the user and its range
    local pid = assert(holder(u))
    assert.equal("isle-holder\n", H.readfile("/proc/" .. pid .. "/comm"))
    assert.are_not.equal(H.nsid("self", "user"), H.nsid(pid, "user"))
    assert.are_not.equal(H.nsid("self", "net"), H.nsid(pid, "net"))
    local umap = H.parse_map(H.readfile("/proc/" .. pid .. "/uid_map"))
    assert.same({ 0, u.uid, 1 }, umap[1])
    assert.equal(2, #umap)
    assert.equal("allow\n", H.readfile("/proc/" .. pid .. "/setgroups"))
    assert.equal(u.uid, core.stat("/proc/" .. pid).uid)
    -- root sees nothing of it
    assert.is_nil(H.lab_debris(name))
    -- inside: h1's addresses, a ping through the router (ttl 63)
    out, code = as(u, "exec " .. name .. " h1 -- ip -j addr show eth0")
    assert.equal(0, code, out)
    local a = H.json.decode(out)[1].addr_info
    assert.equal("10.1.0.1", a[1]["local"])
    out, code = as(u, "exec " .. name .. " h1 -- ping -c1 -W2 h2")
    assert.equal(0, code, out)
    assert.matches("ttl=63", out)
    -- h1's own sysfs, mounted by its first entry (in the lab's user namespace)
    out, code = as(u, "exec " .. name .. " h1 -- ls /sys/class/net")
    assert.equal(0, code, out)
    assert.equal("eth0\nlo\n", out)
    out, code = as(u, "ls")
    assert.equal(0, code, out)
    assert.matches(name:gsub("%-", "%%-") .. "%s+up%s+3%s+2%s+4", out)
    out, code = as(u, "graph " .. name)
    assert.equal(0, code, out)
    assert.equal('graph "' .. name .. '" {', out:match("^[^\n]*"))
    out, code = as(u, "ping " .. name)
    assert.equal(0, code, out)
    assert.matches("6/6 reachable", out, 1, true)
    out, code = as(u, "ps")
    assert.equal(0, code, out)
    -- a shell inside without a host: ip netns sees the lab's hosts, root there
    out = H.sh(format("printf 'ip netns list; ip netns exec %s-h2 ip -br addr show eth0; "
      .. "id -u\\n' | runuser -u %s -- env -u XDG_RUNTIME_DIR SHELL=/bin/sh bin/isle shell %s 2>&1",
      name, u.name, name))
    assert.matches("\n" .. name:gsub("%-", "%%-") .. "%-h1\n", out)
    assert.matches("10.2.0.1/24", out, 1, true)
    assert.matches("\n0\n", "\n" .. out)
    -- down: nothing left, the holder ends with the last lab
    out, code = as(u, "down " .. name)
    assert.equal(0, code, out)
    assert.is_nil(leftovers(u, name, pid))
  end)

  it("runs a container on a lab host (isle run --net LAB:HOST) #root", function()
    -- before Linux 5.12 (no mount_setattr) the container's read-only / is a
    -- remount of each mount, and one the copy-up shadows cannot be reached
    local maj, min = H.readfile("/proc/sys/kernel/osrelease"):match("^(%d+)%.(%d+)")
    if tonumber(maj) * 100 + tonumber(min) < 512 then
      return pending("before 5.12: make / read-only: Invalid argument (README, Rootless labs)")
    end
    local u = assert(adduser(false))
    local name = H.unique("rc")
    finally(function() as(u, "down " .. name) end)
    local out, code = as(u, "up -q examples/router.lua", "ISLE_LAB=" .. name)
    assert.equal(0, code, out)
    out, code = as(u, "run --net " .. name .. ":h2 -- ip -br addr show eth0")
    assert.equal(0, code, out)
    assert.matches("10.2.0.1/24", out, 1, true)
    local pid = holder(u)
    assert.equal(0, select(2, as(u, "down " .. name)))
    assert.is_nil(leftovers(u, name, pid))
  end)

  it("without a subordinate range: the single id mapped, the same lab, clocks, hostnames, "
    .. "NAT between lab hosts, impairments; uplink needs root #root", function()
    local u = assert(adduser(false))
    local name = H.unique("rn")
    local path = script([[
local lab = require("isle").lab(os.getenv("ISLE_LAB"))
local s1 = lab:switch("s1")
local r = lab:host("r", { forward = true })
local far = lab:host("far")
local h1 = lab:host("h1", { gateway = "10.0.0.254", hostname = "alpha" })
local h2 = lab:host("h2", { gateway = "10.0.0.254", clock = { boottime = 86400 } })
lab:link(r, s1, { ip = "10.0.0.254/24" })
lab:link(h1, s1, { ip = "10.0.0.1/24", rate = "10mbit" })
lab:link(h2, s1, { ip = "10.0.0.2/24" })
lab:link(r, far, { ip = { "192.0.2.1/24", "192.0.2.2/24" } })
lab:nat(r, { out = far, source = "10.0.0.0/24" })
if os.getenv("ISLE_UPLINK") then lab:uplink(s1, { ip = "10.0.0.200/24" }) end
return lab
]])
    finally(function() as(u, "down " .. name); os.remove(path) end)
    local out, code = as(u, "up " .. path, "ISLE_LAB=" .. name)
    assert.equal(0, code, out)
    local pid = assert(holder(u))
    assert.same({ { 0, u.uid, 1 } }, H.parse_map(H.readfile("/proc/" .. pid .. "/uid_map")))
    assert.equal("deny\n", H.readfile("/proc/" .. pid .. "/setgroups"))
    out = as(u, "exec " .. name .. " h1 -- hostname")
    assert.equal("alpha\n", out)
    -- h2's boot time a day ahead of the machine's
    out = as(u, "exec " .. name .. " h2 -- cat /proc/uptime")
    local up = tonumber(out:match("^[%d.]+"))
    assert.is_true(up - tonumber(H.readfile("/proc/uptime"):match("^[%d.]+")) > 86000, out)
    -- masquerade: far has no route back to 10.0.0.0/24, so only NAT answers
    out = as(u, "exec " .. name .. " h1 -- ping -c1 -W2 192.0.2.2")
    assert.is_true(ping_ok(out), out)
    out = as(u, "exec " .. name .. " far -- ip route")
    assert.is_nil(out:find("10.0.0.0", 1, true))
    -- the rate limit is a qdisc on h1's port, as for root: tbf, or netem
    -- where the kernel has it (a user namespace autoloads sch_netem)
    out = as(u, "exec " .. name .. " h1 -- tc -j qdisc show dev eth0")
    local q = H.json.decode(out)[1]
    assert.is_true(q.kind == "tbf" or q.kind == "netem" and q.options.rate ~= nil, out)
    out, code = as(u, "down " .. name)
    assert.equal(0, code, out)
    assert.is_nil(leftovers(u, name, pid))
    -- an uplink cannot reach the machine from the user's namespaces
    out, code = as(u, "up " .. path, "ISLE_UPLINK=1 ISLE_LAB=" .. name)
    assert.equal(1, code)
    assert.equal("isle: lab " .. name .. ": uplink needs root (a lab of an unprivileged user lives "
      .. "in its own user namespace and cannot reach the machine's network)\n", out)
    assert.is_nil(leftovers(u, name, holder(u)))
  end)

  it("builds the examples that need no uplink: NAT, chains, clocks, services and files "
    .. "#root #slow", function()
    local u = assert(adduser(true))
    local checks = {
      { "bridge.lua", "h2", "ping -c1 -W2 upstream" },
      { "chain.lua", "h1", "ping -c1 -W2 h2" },
      { "clock.lua", "future", "cat /proc/uptime" },
      { "web.lua", "c1", "busybox wget -qO- http://srv/" },
      { "dhcp.lua", "c1", "getent hosts web.lab" },
      { "leafspine.lua", "h1", "ping -c1 -W2 h8" },
    }
    for _, c in ipairs(checks) do
      local name = H.unique("re")
      local out, code = as(u, "up -q examples/" .. c[1], "ISLE_LAB=" .. name)
      assert.equal(0, code, c[1] .. ": " .. out)
      local o2, code2 = as(u, format("exec %s %s -- %s", name, c[2], c[3]))
      if c[1] == "web.lua" then -- the service, seen from outside
        local ps = as(u, "ps " .. name)
        assert.matches("srv%s+httpd%s+%d+%s+running", ps)
        local log = as(u, format("logs %s srv httpd", name))
        assert.matches("response:200", log, 1, true)
      end
      local pid = holder(u)
      as(u, "down " .. name)
      assert.equal(0, code2, c[1] .. ": " .. o2)
      assert.is_nil(leftovers(u, name, pid), c[1])
    end
  end)

  it("two users and root with a lab of the same name at once: each sees only its own #root",
    function()
    local a, b = assert(adduser(true)), assert(adduser(false))
    local name = H.unique("rt")
    local env = "ISLE_LAB=" .. name
    finally(function()
      as(a, "down " .. name)
      as(b, "down " .. name)
      H.sh("bin/isle down " .. name .. " >/dev/null 2>&1")
    end)
    for _, u in ipairs { a, b } do
      local out, code = as(u, "up -q examples/router.lua", env)
      assert.equal(0, code, out)
    end
    local out, ok = H.sh(format("ISLE_LAB=%s bin/isle up -q examples/router.lua 2>&1", name))
    assert.is_true(ok, out)
    local pa, pb = holder(a), holder(b)
    assert.are_not.equal(H.nsid(pa, "user"), H.nsid(pb, "user"))
    assert.are_not.equal(H.nsid(pa, "mnt"), H.nsid(pb, "mnt"))
    -- the same name, three labs: root's in the machine's namespaces, one per user
    local ids = {}
    for _, u in ipairs { a, b } do
      local o = as(u, "exec " .. name .. " h1 -- readlink /proc/self/ns/net")
      ids[#ids + 1] = o
      assert.is_true(ping_ok(as(u, "exec " .. name .. " h1 -- ping -c1 -W2 h2")))
    end
    ids[3] = H.sh(format("bin/isle exec %s h1 -- readlink /proc/self/ns/net", name))
    assert.are_not.equal(ids[1], ids[2])
    assert.are_not.equal(ids[1], ids[3])
    assert.are_not.equal(ids[2], ids[3])
    -- b cannot look into a's state or join a's namespaces
    out = H.sh(format("runuser -u %s -- sh -c 'ls %s; nsenter -t %d -U true' 2>&1", b.name,
      a.state, pa))
    assert.matches("Permission denied", out)
    assert.not_matches(name, out)
    -- a's ls lists a's lab only once; root's ls does not show the users' holders
    out = as(a, "ls")
    assert.equal(1, select(2, out:gsub("\n" .. name:gsub("%-", "%%-") .. " ", "")))
    -- down, one after the other: each holder ends with its lab
    assert.equal(0, select(2, as(a, "down " .. name)))
    assert.is_nil(leftovers(a, nil, pa)) -- root's lab of that name still runs
    assert.is_true(ping_ok(as(b, "exec " .. name .. " h1 -- ping -c1 -W2 h2")))
    assert.equal(0, select(2, as(b, "down " .. name)))
    assert.is_true(ended(pb))
    assert.is_true(select(2, H.sh("bin/isle down " .. name .. " >/dev/null 2>&1")))
    assert.is_nil(leftovers(a, name))
    assert.is_nil(leftovers(b, name))
  end)

  local KILL_LAB = [[
local lab = require("isle").lab(os.getenv("ISLE_LAB"))
local s1 = lab:switch("s1")
local r = lab:host("r", { forward = true })
local up = lab:host("up")
lab:link(r, s1, { ip = "10.0.0.254/24" })
lab:link(r, up, { ip = { "192.0.2.1/24", "192.0.2.2/24" } })
lab:nat(r, { out = up, source = "10.0.0.0/24" })
lab:link(lab:host("h1", { gateway = "10.0.0.254", clock = { boottime = 86400 } }), s1,
  { ip = "10.0.0.1/24" })
local m = lab:host("m", { hostname = "em", files = { ["/etc/hostname"] = "em\n",
  ["/etc/rl-kill/a.conf"] = "a\n" }, private = { "/var/lib/rl-kill" } })
lab:link(m, s1, { ip = "10.0.0.9/24" })
lab:service(m, "first", { argv = { "sleep", "31337" }, ready = { argv = { "true" } } })
return lab
]]

  it("kill -9 of isle up after each journal record: the holder survives, isle down leaves "
    .. "nothing and the holder ends; a killed holder too #root #slow", function()
    local u = assert(adduser(true))
    local name = H.unique("rk")
    local path = script(KILL_LAB)
    finally(function() as(u, "down " .. name); os.remove(path) end)
    local function up(fault)
      return as(u, "up -q " .. path, (fault or "") .. " ISLE_LAB=" .. name)
    end
    local out, code = up()
    assert.equal(0, code, out)
    local n = select(2, H.readfile(u.state .. "/labs/" .. name .. "/state"):gsub("\n", ""))
    local pid = holder(u)
    assert.equal(0, select(2, as(u, "down " .. name)))
    assert.is_nil(leftovers(u, name, pid))
    for k = 1, n - 1 do
      out, code = up("ISLE_FAULT=up:" .. k)
      assert.equal(137, code, "up killed after record " .. k .. ": " .. out)
      -- the builder is gone, the holder and the lab's state are not
      pid = holder(u)
      assert.equal("isle-holder\n", pid and H.readfile("/proc/" .. pid .. "/comm"), "record " .. k)
      assert.is_not_nil(core.ino(u.state .. "/labs/" .. name .. "/state"))
      out, code = as(u, "down " .. name)
      assert.equal(0, code, "down after up killed after record " .. k .. ": " .. out)
      assert.is_nil(leftovers(u, name, pid), "up killed after record " .. k)
    end
    -- the holder killed: the lab's namespaces are gone with it; down removes the rest
    out, code = up()
    assert.equal(0, code, out)
    pid = holder(u)
    H.sh("kill -9 " .. pid)
    assert.is_true(ended(pid))
    out = as(u, "ls")
    assert.matches("\n" .. name:gsub("%-", "%%-") .. "%s+gone%s", out)
    out, code = as(u, "exec " .. name .. " h1 -- true")
    assert.equal(1, code)
    assert.equal(format("isle: lab %s: its namespaces are gone (isle down %s removes the rest)\n",
      name, name), out)
    out, code = as(u, "down " .. name)
    assert.equal(0, code, out)
    assert.is_nil(leftovers(u, name, holder(u)))
    -- a stale pid file (a live process, but not the holder) is not trusted
    local f = assert(io.open(u.state .. "/holder.pid", "w"))
    f:write(format("%d 1 1\n", H.mypid()))
    f:close()
    out, code = up()
    assert.equal(0, code, out)
    assert.are_not.equal(H.mypid(), holder(u))
    assert.is_true(ping_ok(as(u, "exec " .. name .. " h1 -- ping -c1 -W2 192.0.2.2")))
    pid = holder(u)
    assert.equal(0, select(2, as(u, "down " .. name)))
    assert.is_nil(leftovers(u, name, pid))
    print(format("\n    rootless kill at every step: %d records", n))
  end)

  it("refuses in one line: a state directory that is not the user's, user namespaces "
    .. "forbidden (user.max_user_namespaces = 0 in a namespace of the user's own) #root",
    function()
    local u = assert(adduser(true))
    local out, _, _, code = H.sh(format("runuser -u %s -- env XDG_RUNTIME_DIR=/tmp bin/isle ls 2>&1",
      u.name))
    assert.equal(1, code)
    assert.matches("^isle: state directory /tmp is not the caller's own %(owner 0, mode %d+%)\n$",
      out)
    -- the limit counts at every level of nesting: 0 in a user namespace the
    -- user made (mapped through its range) forbids the holder's
    if H.sh("unshare --help 2>&1"):find("map-auto", 1, true) == nil then
      return pending("unshare has no --map-auto")
    end
    out = H.sh(format("runuser -u %s -- unshare -U --map-root-user --map-auto sh -c "
      .. "'echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --reuid=%d --regid=%d "
      .. "--clear-groups sh -c \"d=\\$(mktemp -d) && XDG_RUNTIME_DIR=\\$d bin/isle ls; "
      .. "echo rc=\\$?; rm -rf \\$d\"' 2>&1", u.name, u.uid, u.gid))
    assert.equal("isle: rootless labs need unprivileged user namespaces, which this system "
      .. "forbids: user.max_user_namespaces is 0 (as root: sysctl -w "
      .. "user.max_user_namespaces=15000)\nrc=1\n", out)
    assert.is_nil(leftovers(u, "none"))
  end)
end)

describe("rootless labs: the refusal's one line", function()
  local function reader(files)
    return function(path) return files[path] end, function(path) return files[path] ~= nil end
  end

  it("names the setting that forbids user namespaces, and its fix", function()
    local read, exists = reader { ["/proc/sys/user/max_user_namespaces"] = "0\n" }
    assert.equal("rootless labs need unprivileged user namespaces, which this system forbids: "
      .. "user.max_user_namespaces is 0 (as root: sysctl -w user.max_user_namespaces=15000)",
      context.refusal(read, exists))
    read, exists = reader { ["/proc/sys/user/max_user_namespaces"] = "15000\n",
      ["/proc/sys/kernel/unprivileged_userns_clone"] = "0\n" }
    assert.equal("rootless labs need unprivileged user namespaces, which this system forbids: "
      .. "kernel.unprivileged_userns_clone is 0 (as root: sysctl -w "
      .. "kernel.unprivileged_userns_clone=1)", context.refusal(read, exists))
    read, exists = reader { ["/proc/sys/kernel/apparmor_restrict_unprivileged_userns"] = "1\n" }
    assert.matches("forbids: kernel.apparmor_restrict_unprivileged_userns is 1 %(as root: an "
      .. "AppArmor profile with `userns,` for isle, or sysctl %-w "
      .. "kernel.apparmor_restrict_unprivileged_userns=0%)$", context.refusal(read, exists))
    -- root-only on some systems: unreadable counts as maybe
    local aa = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
    assert.matches("apparmor_restrict_unprivileged_userns may be 1 %(unreadable%)",
      context.refusal(function() return nil end, function(p) return p == aa end))
    assert.is_nil(context.refusal(reader { ["/proc/sys/user/max_user_namespaces"] = "9\n" }))
  end)
end)
