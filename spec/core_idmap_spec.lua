local H = require "spec.helper"
local isle = require "isle"

local E = H.E

-- Leak checks use H.own_census: the global netns/link counts flicker with
-- the other specs running on this machine.

describe("isle", function()
  describe("idmap()", function()
    it("writes uid and gid ranges for a process in a new user namespace #root", function()
      if not H.is_root() then return pending("needs root") end
      local before = H.own_census()
      local pid = H.start("unshare --user sleep 30")
      finally(function() H.stop(pid) end)
      -- unmapped: the kernel shows the overflow ids
      assert.equal("", H.readfile("/proc/" .. pid .. "/uid_map"))
      local umap = { { 0, 100000, 65536 }, { 65536, 0, 1 } }
      local gmap = { { 0, 200000, 1000 } }
      assert.is_true(isle.idmap(pid, "uid", umap))
      assert.is_true(isle.idmap(pid, "gid", gmap))
      assert.same(umap, H.parse_map(H.readfile("/proc/" .. pid .. "/uid_map")))
      assert.same(gmap, H.parse_map(H.readfile("/proc/" .. pid .. "/gid_map")))
      -- a privileged caller leaves setgroups alone
      assert.equal("allow\n", H.readfile("/proc/" .. pid .. "/setgroups"))
      H.assert_clean(before, H.own_census)
    end)

    it("maps root so that id reads 0 inside, and unmapped ids read 65534 #root", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --user sleep 30")
      finally(function() H.stop(pid) end)
      assert.is_true(isle.idmap(pid, "uid", { { 0, 1000, 1 } }))
      assert.is_true(isle.idmap(pid, "gid", { { 0, 1000, 1 } }))
      -- nsenter becomes root inside; the host's root (uid 0) is unmapped there
      local out = H.sh("nsenter -U -t " .. pid .. " sh -c 'id -u; id -g; stat -c %u:%g /etc/passwd'")
      assert.equal("0\n0\n65534:65534\n", out)
    end)

    it("fails with EPERM on a second write", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --user sleep 30")
      finally(function() H.stop(pid) end)
      assert.is_true(isle.idmap(pid, "uid", { { 0, 1000, 1 } }))
      local ok, msg, err = isle.idmap(pid, "uid", { { 0, 1000, 1 } })
      assert.is_nil(ok)
      assert.equal("idmap /proc/" .. pid .. "/uid_map: Operation not permitted", msg)
      assert.equal(E.EPERM, err)
    end)

    it("accepts a Process-like object with .pid #root", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --user sleep 30")
      finally(function() H.stop(pid) end)
      local p = setmetatable({ pid = pid }, { __name = "isle.Process" })
      assert.is_true(isle.idmap(p, "gid", { { 0, 4242, 10 } }))
      assert.same({ { 0, 4242, 10 } }, H.parse_map(H.readfile("/proc/" .. pid .. "/gid_map")))
    end)

    it("fails with EINVAL for a map text of a page or more #root", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --user sleep 30")
      finally(function() H.stop(pid) end)
      local map = {}
      for i = 1, 340 do map[i] = { (i - 1) * 10, 100000 + (i - 1) * 10, 10 } end
      local ok, msg, err = isle.idmap(pid, "uid", map)
      assert.is_nil(ok)
      assert.matches("^idmap /proc/%d+/uid_map: map text is %d+ bytes, the kernel takes at most "
        .. "4095: Invalid argument$", msg)
      assert.equal(E.EINVAL, err)
      assert.equal("", H.readfile("/proc/" .. pid .. "/uid_map"))
    end)

    it("fails with ENOENT for a dead pid", function()
      local before = H.own_census()
      local pid = H.deadpid()
      local ok, msg, err = isle.idmap(pid, "uid", { { 0, 0, 1 } })
      assert.is_nil(ok)
      assert.equal("idmap /proc/" .. pid .. "/ns/user: No such file or directory", msg)
      assert.equal(E.ENOENT, err)
      H.assert_clean(before, H.own_census)
    end)

    it("lets an unprivileged process map its own id after unshare(user)", function()
      local r, raw = H.child([[
        out("before", isle.nsid(nil, "user"))
        out("unshare", isle.unshare("user"))
        out("pre", io.popen("id -u"):read("l"))
        out("uid", isle.idmap("self", "uid", {{0, 65534, 1}}))
        out("gid", isle.idmap("self", "gid", {{0, 65534, 1}}))
        out("uid_map", readf("/proc/self/uid_map"))
        out("gid_map", readf("/proc/self/gid_map"))
        out("setgroups", readf("/proc/self/setgroups"))
        out("id", io.popen("id -u; id -g"):read("a"))
        out("again", isle.idmap("self", "uid", {{0, 65534, 1}}))
        out("range", isle.idmap("self", "gid", {{0, 65534, 2}}))
      ]], { user = true })
      assert.equal("true", r.unshare, raw)
      assert.equal("65534", r.pre) -- unmapped reads as the overflow uid
      assert.equal("true", r.uid, raw)
      assert.equal("true", r.gid, raw)
      assert.same({ { 0, 65534, 1 } }, H.parse_map(r.uid_map:gsub("\\n", "\n")))
      assert.same({ { 0, 65534, 1 } }, H.parse_map(r.gid_map:gsub("\\n", "\n")))
      assert.equal("deny\\n", r.setgroups)
      assert.equal("0\\n0\\n", r.id)
      assert.equal("nil|idmap /proc/self/uid_map: Operation not permitted|" .. E.EPERM, r.again)
      assert.equal("nil|idmap /proc/self/gid_map: a process cannot map ranges for its own user "
        .. "namespace (map it from the parent): Operation not permitted|" .. E.EPERM, r.range)
    end)

    it("says newuidmap is missing when it is not on PATH", function()
      local r, raw = H.child([[
        local pid = tonumber(io.popen(
          "/usr/bin/unshare --user /bin/sleep 30 >/dev/null 2>&1 & echo $!"):read("l"))
        repeat until readf("/proc/" .. pid .. "/comm") == "sleep\n"
        out("uid", isle.idmap(pid, "uid", {{0, 65534, 1}, {1, 100000, 10}}))
        out("gid", isle.idmap(pid, "gid", {{0, 65534, 1}, {1, 100000, 10}}))
        out("setgroups", readf("/proc/" .. pid .. "/setgroups"))
        os.execute("/bin/kill -9 " .. pid)
      ]], { user = true, env = "PATH=/nonexistent" })
      assert.equal("nil|idmap: newuidmap not found; install the uidmap package: "
        .. "No such file or directory|" .. E.ENOENT, r.uid, raw)
      assert.equal("nil|idmap: newgidmap not found; install the uidmap package: "
        .. "No such file or directory|" .. E.ENOENT, r.gid, raw)
      -- setgroups was denied before the attempt, as for any unprivileged gid map
      assert.equal("deny\\n", r.setgroups)
    end)

    it("maps ranges through newuidmap/newgidmap for an unprivileged caller #root", function()
      if not H.is_root() then return pending("needs root") end
      if H.sh("command -v newuidmap newgidmap"):gsub("%s", "") == "" then
        pending("newuidmap/newgidmap not installed (package uidmap)")
        return
      end
      local wrap, sub = H.private_subids("nobody:300000:65536\n")
      finally(function() os.remove(sub) end)
      local r, raw = H.child([[
        local pid = tonumber(io.popen("unshare --user sleep 30 >/dev/null 2>&1 & echo $!"):read("l"))
        repeat until readf("/proc/" .. pid .. "/comm") == "sleep\n"
        out("uid", isle.idmap(pid, "uid", {{0, 65534, 1}, {1, 300000, 1000}}))
        out("gid", isle.idmap(pid, "gid", {{0, 65534, 1}, {1, 300000, 1000}}))
        out("uid_map", readf("/proc/" .. pid .. "/uid_map"))
        out("gid_map", readf("/proc/" .. pid .. "/gid_map"))
        out("setgroups", readf("/proc/" .. pid .. "/setgroups"))
        local pid2 = tonumber(io.popen("unshare --user sleep 30 >/dev/null 2>&1 & echo $!"):read("l"))
        repeat until readf("/proc/" .. pid2 .. "/comm") == "sleep\n"
        out("refused", isle.idmap(pid2, "uid", {{0, 500000, 10}}))
        os.execute("kill -9 " .. pid .. " " .. pid2)
      ]], {
        user = true,
        wrap = wrap,
      })
      assert.equal("true", r.uid, raw)
      assert.equal("true", r.gid, raw)
      local want = { { 0, 65534, 1 }, { 1, 300000, 1000 } }
      assert.same(want, H.parse_map(r.uid_map:gsub("\\n", "\n")))
      assert.same(want, H.parse_map(r.gid_map:gsub("\\n", "\n")))
      assert.equal("deny\\n", r.setgroups)
      -- outside /etc/subuid: newuidmap's own complaint comes back
      assert.matches("^nil|idmap /proc/%d+/uid_map: newuidmap failed %(exit 1%): newuidmap: .*"
        .. "|" .. E.EPERM .. "$", r.refused)
    end)

    it("raises for a malformed map, naming the entry", function()
      local function bad(map, pattern)
        assert.error_matches(function() isle.idmap(1, "uid", map) end,
          "bad argument #3 to '[%w.]*idmap' %(" .. pattern .. "%)")
      end
      bad({}, "map must not be empty")
      bad("0 0 1", "table expected, got string")
      bad({ { 0, 0, 1 }, { 1, 1, 0 } }, "map%[2%]: count must be > 0")
      bad({ { 0, 0, 1 }, { 1, 1 } }, "map%[2%]: count must be an integer, got nil")
      bad({ { 0.5, 0, 1 } }, "map%[1%]: inside must be an integer, got number")
      bad({ { "x", 0, 1 } }, "map%[1%]: inside must be an integer, got string")
      bad({ { -1, 0, 1 } }, "map%[1%]: inside must be >= 0")
      bad({ { 0, -5, 1 } }, "map%[1%]: outside must be >= 0")
      bad({ { 4294967295, 0, 1 } }, "map%[1%]: inside out of range %(at most 4294967294%)")
      bad({ { 0, 0, 4294967295 } }, "map%[1%]: count out of range %(at most 4294967294%)")
      bad({ { 1, 0, 4294967294 } }, "map%[1%]: range goes beyond the last id 4294967294")
      bad({ { 0, 4294967290, 5 } }, "map%[1%]: range goes beyond the last id 4294967294")
      bad({ 7 }, "map%[1%]: {inside, outside, count} expected, got number")
      local big = {}
      for i = 1, 341 do big[i] = { i, i, 1 } end
      bad(big, "map has more than 340 lines %(the kernel's limit%)")
    end)

    it("raises for a bad pid or an unknown id kind", function()
      assert.error_matches(function() isle.idmap(1, "pid", { { 0, 0, 1 } }) end,
        "bad argument #2 to '[%w.]*idmap' %(invalid option 'pid'%)")
      assert.error_matches(function() isle.idmap(0, "uid", { { 0, 0, 1 } }) end,
        "bad argument #1 to '[%w.]*idmap' %(out of range")
      assert.error_matches(function() isle.idmap(nil, "uid", { { 0, 0, 1 } }) end,
        "bad argument #1 to '[%w.]*idmap' %(pid, isle.Process or \"self\" expected, got nil%)")
      assert.error_matches(function() isle.idmap("1", "uid", { { 0, 0, 1 } }) end,
        "bad argument #1 to '[%w.]*idmap'")
    end)
  end)

  describe("read_idmap()", function()
    it("reads the caller's maps as /proc shows them", function()
      local before = H.own_census()
      for _, which in ipairs { "uid", "gid" } do
        local want = H.parse_map(H.readfile("/proc/self/" .. which .. "_map"))
        assert.same(want, isle.read_idmap("self", which))
        assert.same(want, isle.read_idmap(H.mypid(), which))
      end
      H.assert_clean(before, H.own_census)
    end)

    it("reads a multi-line map of another process #root", function()
      if not H.is_root() then return pending("needs root") end
      local pid = H.start("unshare --user sleep 30")
      finally(function() H.stop(pid) end)
      local map = {}
      for i = 1, 340 do map[i] = { i - 1, 100 + i - 1, 1 } end
      assert.is_true(isle.idmap(pid, "uid", map))
      assert.same(map, isle.read_idmap(pid, "uid"))
      assert.same(H.parse_map(H.readfile("/proc/" .. pid .. "/uid_map")),
        isle.read_idmap(setmetatable({ pid = pid }, { __name = "isle.Process" }), "uid"))
      assert.same({}, isle.read_idmap(pid, "gid"))
    end)

    it("fails with ENOENT for a dead pid", function()
      local pid = H.deadpid()
      local ok, msg, err = isle.read_idmap(pid, "gid")
      assert.is_nil(ok)
      assert.equal("read_idmap /proc/" .. pid .. "/gid_map: No such file or directory", msg)
      assert.equal(E.ENOENT, err)
    end)

    it("raises for a bad pid or id kind", function()
      assert.error_matches(function() isle.read_idmap("self", "xid") end,
        "bad argument #2 to '[%w.]*read_idmap' %(invalid option 'xid'%)")
      assert.error_matches(function() isle.read_idmap(-1, "uid") end,
        "bad argument #1 to '[%w.]*read_idmap' %(out of range")
    end)
  end)

  describe("timens_offsets()", function()
    it("shifts the clocks of the children in a new time namespace #root", function()
      if not H.is_root() then return pending("needs root") end
      local r, raw = H.child [[
        out("unshare", isle.unshare("time"))
        out("set", isle.timens_offsets("self", {monotonic = -1.25, boottime = 1000}))
        -- isle.spawn, not io.popen: before 6.2 no CLONE_VM child (glibc's
        -- posix_spawn) may be made while time_for_children is not our own
        local p = isle.spawn { argv = { "cat", "/proc/self/timens_offsets", "/proc/uptime" },
          stdout = "pipe" }
        local text = p.stdout:read("a")
        p:wait()
        out("offsets", text:match("^(.-\n.-\n)"))
        out("child_up", text:match("\n([%d.]+) [%d.]+\n$"))
        out("self_up", readf("/proc/uptime"):match("^[%d.]+"))
        out("again", isle.timens_offsets("self", {monotonic = 1}))
      ]]
      assert.equal("true", r.unshare, raw)
      assert.equal("true", r.set, raw)
      -- -1.25 s is -2 s + 750000000 ns, as the kernel wants it
      assert.matches("^monotonic%s+%-2%s+750000000\\nboottime%s+1000%s+0\\n$", r.offsets)
      local shift = tonumber(r.child_up) - tonumber(r.self_up)
      assert.is_true(shift > 999 and shift < 1001, raw)
      -- once a process has entered the namespace the offsets are frozen
      assert.equal("nil|timens_offsets /proc/self/timens_offsets: Permission denied|"
        .. E.EACCES, r.again)
    end)

    it("rounds fractions to nanoseconds and writes negative seconds #root", function()
      if not H.is_root() then return pending("needs root") end
      local r, raw = H.child [[
        out("unshare", isle.unshare("time"))
        out("set", isle.timens_offsets(MYPID, {monotonic = 1.9999999999, boottime = -0.5}))
        local p = isle.spawn { argv = { "cat", "/proc/self/timens_offsets" }, stdout = "pipe" }
        out("offsets", p.stdout:read("a"))
        p:wait()
      ]]
      assert.equal("true", r.set, raw)
      assert.matches("^monotonic%s+2%s+0\\nboottime%s+%-1%s+500000000\\n$", r.offsets)
    end)

    it("fails with ERANGE for offsets that would make a clock negative #root", function()
      if not H.is_root() then return pending("needs root") end
      local r, raw = H.child [[
        out("unshare", isle.unshare("time"))
        out("neg", isle.timens_offsets("self", {boottime = -1e9}))
        out("huge", isle.timens_offsets("self", {monotonic = 1e15}))
      ]]
      assert.equal("true", r.unshare, raw)
      assert.equal("nil|timens_offsets /proc/self/timens_offsets: Numerical result out of "
        .. "range|" .. E.ERANGE, r.neg)
      assert.equal("nil|timens_offsets /proc/self/timens_offsets: Numerical result out of "
        .. "range|" .. E.ERANGE, r.huge)
    end)

    it("fails with EACCES for a namespace already entered", function()
      local before = H.own_census()
      -- the caller's own time namespace has been entered long ago
      local ok, msg, err = isle.timens_offsets("self", { monotonic = 1 })
      assert.is_nil(ok)
      if H.is_root() then
        assert.equal("timens_offsets /proc/self/timens_offsets: Permission denied", msg)
        assert.equal(E.EACCES, err)
      else
        assert.matches("^timens_offsets /proc/self/timens_offsets: ", msg)
      end
      local pid = H.deadpid()
      ok, msg, err = isle.timens_offsets(pid, { boottime = 1 })
      assert.is_nil(ok)
      assert.equal("timens_offsets /proc/" .. pid .. "/timens_offsets: No such file or directory",
        msg)
      assert.equal(E.ENOENT, err)
      H.assert_clean(before, H.own_census)
    end)

    it("does nothing for an empty table", function()
      assert.is_true(isle.timens_offsets("self", {}))
    end)

    it("raises for unknown keys, non-numbers and values out of range", function()
      assert.error_matches(function() isle.timens_offsets("self", { realtime = 1 }) end,
        "bad argument #2 to '[%w.]*timens_offsets' %(unknown option 'realtime'%)")
      assert.error_matches(function() isle.timens_offsets("self", { monotonic = "1" }) end,
        "bad argument #2 to '[%w.]*timens_offsets' %(offsets.monotonic: number of seconds "
        .. "expected, got string%)")
      assert.error_matches(function() isle.timens_offsets("self", { boottime = 1 / 0 }) end,
        "bad argument #2 to '[%w.]*timens_offsets' %(offsets.boottime: out of range%)")
      assert.error_matches(function() isle.timens_offsets("self", { boottime = 0 / 0 }) end,
        "offsets.boottime: out of range")
      assert.error_matches(function() isle.timens_offsets("self") end,
        "bad argument #2 to '[%w.]*timens_offsets' %(table expected, got no value%)")
      assert.error_matches(function() isle.timens_offsets(true, {}) end,
        "bad argument #1 to '[%w.]*timens_offsets'")
    end)
  end)
end)
