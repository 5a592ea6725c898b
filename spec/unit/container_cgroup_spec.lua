-- isle.container.cgroup (the plan of a container's limits on a layout),
-- isle.container.rootless and the registry's journal format: no root, no
-- cgroup needed, so the pure cgroup v2 path is checked on any machine.
local cgroup = require "isle.container.cgroup"
local rootless = require "isle.container.rootless"
local registry = require "isle.container.registry"

-- Debian 12's pure v2 layout, and this build machine's hybrid one
local V2_MOUNTINFO = [[
24 1 0:21 / / rw - ext4 /dev/vda1 rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
]]
local HYBRID_MOUNTINFO = [[
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
]]

describe("isle.container.cgroup", function()
  describe("layout()", function()
    it("finds the v2 mount, the v1 controllers and the caller's own cgroups", function()
      local t = cgroup.layout(HYBRID_MOUNTINFO, "4:memory:/user.slice\n3:pids:/\n0::/init.scope\n")
      assert.equal("/sys/fs/cgroup/unified", t.v2)
      assert.equal("/sys/fs/cgroup/memory", t.v1.memory)
      assert.equal("/sys/fs/cgroup/cpu,cpuacct", t.v1.cpu)
      assert.equal("/sys/fs/cgroup/cpu,cpuacct", t.v1.cpuacct)
      assert.equal("/user.slice", t.own.v1.memory)
      assert.equal("/init.scope", t.own.v2)
    end)
  end)

  describe("plan()", function()
    local limits = { memory = 64 * 1024 * 1024, pids = 40, cpu = 0.5 }

    it("uses pure v2 for root under <mount>/isle, delegating the controllers", function()
      local t = cgroup.layout(V2_MOUNTINFO, "0::/user.slice/user-0.slice/session-1.scope\n")
      t.root, t.controllers, t.subtree = true, "cpuset cpu io memory pids\n", "memory pids\n"
      local p = assert(cgroup.plan(limits, "isle-x-1-1", t))
      assert.same({ "/sys/fs/cgroup/isle" }, p.create)
      assert.same({ { "/sys/fs/cgroup", "+cpu" }, { "/sys/fs/cgroup/isle", "+memory" },
        { "/sys/fs/cgroup/isle", "+pids" }, { "/sys/fs/cgroup/isle", "+cpu" } }, p.enable)
      assert.same({ { dir = "/sys/fs/cgroup/isle/isle-x-1-1", v2 = true, files = {
        { "memory.max", "67108864" }, { "memory.swap.max", "0", optional = true },
        { "pids.max", "40" }, { "cpu.max", "50000 100000" } } } }, p.groups)
    end)

    it("uses an unprivileged caller's own (delegated) v2 cgroup", function()
      local t = cgroup.layout(V2_MOUNTINFO, "0::/user.slice/user-1000.slice/user@1000.service/app.slice\n")
      t.root, t.controllers, t.subtree = false, "memory pids\n", ""
      local p = assert(cgroup.plan({ pids = 5 }, "isle-c-2-1", t))
      local dir = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice"
      assert.same({}, p.create)
      assert.same({ { dir, "+pids" } }, p.enable)
      assert.equal(dir .. "/isle-c-2-1", p.groups[1].dir)
    end)

    it("falls back to v1, one directory per controller under the caller's own", function()
      local t = cgroup.layout(HYBRID_MOUNTINFO, "4:memory:/user.slice\n3:pids:/\n0::/\n")
      t.root, t.controllers, t.subtree = true, "", ""
      local p = assert(cgroup.plan(limits, "isle-y-1-1", t))
      assert.same({}, p.enable)
      assert.same({ "/sys/fs/cgroup/memory/user.slice/isle-y-1-1", "/sys/fs/cgroup/pids/isle-y-1-1",
        "/sys/fs/cgroup/cpu,cpuacct/isle-y-1-1" }, { p.groups[1].dir, p.groups[2].dir, p.groups[3].dir })
      assert.same({ { "memory.limit_in_bytes", "67108864" },
        { "memory.memsw.limit_in_bytes", "67108864", optional = true },
        { "memory.swappiness", "0", optional = true } }, p.groups[1].files)
      assert.same({ { "cpu.cfs_period_us", "100000" }, { "cpu.cfs_quota_us", "50000" } },
        p.groups[3].files)
      local q, why = cgroup.plan({ pids = 1 }, "x", cgroup.layout("", ""))
      assert.is_nil(q)
      assert.equal("no pids controller (neither cgroup v2 nor v1)", why)
    end)
  end)
end)

describe("isle.container.rootless", function()
  it("explains a refused clone, naming the setting", function()
    local function read(t) return function(p) return t[p] end end
    assert.equal("user.max_user_namespaces is 0",
      rootless.policy(read { ["/proc/sys/user/max_user_namespaces"] = "0\n" }))
    assert.equal("AppArmor restricts them: kernel.apparmor_restrict_unprivileged_userns is 1",
      rootless.policy(read { ["/proc/sys/kernel/apparmor_restrict_unprivileged_userns"] = "1\n" }))
    assert.is_nil(rootless.policy(read {}))
    assert.equal("container: clone: Operation not permitted (new namespaces need root: use"
      .. " --rootless, rootless = true)",
      rootless.explain("container: clone: Operation not permitted", 1, false, 1000, read {}))
    assert.equal("container: mount x: Operation not permitted",
      rootless.explain("container: mount x: Operation not permitted", 1, false, 1000, read {}))
  end)
end)

describe("isle.container.registry", function()
  it("reads back the journal's records, whatever bytes the values hold", function()
    local st = registry.parse(table.concat({
      "owner 41 12345",
      "exec chown,kill 1 0 HOME=/root X=a%20b%0Ac%25",
      "cgroup /sys/fs/cgroup/pids/isle-x-41-1",
      "cgroup /sys/fs/cgroup/memory/isle-x-41-1",
      "pid 42 12399",
    }, "\n"))
    assert.same({ 41, "12345" }, st.owner)
    assert.same({ 42, "12399" }, st.pid)
    assert.same({ "/sys/fs/cgroup/pids/isle-x-41-1", "/sys/fs/cgroup/memory/isle-x-41-1" },
      st.cgroups)
    assert.same({ "chown", "kill" }, st.caps)
    assert.is_true(st.no_new_privs)
    assert.is_false(st.rootless)
    assert.same({ HOME = "/root", X = "a b\nc%" }, st.env)
    assert.is_nil(registry.parse("exec all 0 1").caps)
    assert.same({ cgroups = {} }, registry.parse("garbage line\n\n"))
  end)
end)
