-- isle.mount / umount / bind / pivot_root, each run inside a child in its own
-- mount namespace (isle.clone), so the test process's mounts never change.
local H = require "spec.helper"
local isle = require "isle"
local E = H.E

-- run fn in a child with a new (private) mount namespace; return its output
-- and exit code
local function inside(fn)
  local p = assert(isle.spawn {
    fn = fn,
    namespaces = { "mnt" },
    stdout = "pipe",
    stderr = "pipe",
  })
  local out, err = p.stdout:read("a"), p.stderr:read("a")
  local _, _, code = p:wait()
  p:close()
  assert.equal("", err)
  return out, code
end

local function mountinfo_has(text, path)
  return text:find(" " .. path .. " ", 1, true) ~= nil
end

describe("isle mounts", function()
  local before, dir
  before_each(function()
    before = H.census()
    dir = H.sh("mktemp -d"):gsub("\n$", "")
  end)
  after_each(function()
    H.sh("rm -rf " .. dir)
    H.assert_clean(before)
  end)

  describe("mount()", function()
    it("mounts a tmpfs with flags, seen in the child's mountinfo only #root", function()
      local out, code = inside(function()
        assert(isle.mount { source = "isle-t", target = dir, type = "tmpfs",
          flags = { "nosuid", "nodev" }, data = "size=1m" })
        io.write(H.readfile("/proc/self/mountinfo"))
      end)
      assert.equal(0, code)
      local line = out:match("[^\n]* " .. dir:gsub("%p", "%%%0") .. " [^\n]*")
      assert.truthy(line, out)
      assert.truthy(line:find("nosuid"))
      assert.truthy(line:find("nodev"))
      assert.truthy(line:find("tmpfs isle%-t"))
      assert.is_false(mountinfo_has(H.readfile("/proc/self/mountinfo"), dir))
    end)

    it("accepts the spawn shorthands", function()
      local out, code = inside(function()
        assert(isle.mount { "tmpfs", dir })
        io.write(H.readfile("/proc/self/mountinfo"))
      end)
      assert.equal(0, code)
      assert.truthy(mountinfo_has(out, dir))
    end)

    it("returns nil, message, errno when the kernel refuses #root", function()
      local out = inside(function()
        local ok, msg, e = isle.mount { source = "none", target = "/isle-no-such", type = "tmpfs" }
        io.write(tostring(ok), "|", msg, "|", e)
      end)
      assert.equal("nil|mount none on /isle-no-such: No such file or directory|" .. E.ENOENT, out)
    end)

    it("raises for unknown flags, keys and bad types", function()
      assert.error_matches(function()
        isle.mount { target = "/mnt", flags = { "fast" } }
      end, "unknown mount flag 'fast'")
      assert.error_matches(function()
        isle.mount { target = "/mnt", colour = "red" }
      end, "unknown option 'colour'")
      assert.error_matches(function()
        isle.mount { source = "x" }
      end, "target")
      assert.error_matches(function()
        isle.mount "proc"
      end, "mount table expected")
    end)
  end)

  describe("bind()", function()
    it("binds a directory read-only (bind + read-only remount) #root", function()
      H.sh("mkdir " .. dir .. "/src " .. dir .. "/dst; echo hi > " .. dir .. "/src/f")
      local out, code = inside(function()
        assert(isle.bind(dir .. "/src", dir .. "/dst", { ro = true }))
        io.write(H.readfile(dir .. "/dst/f"))
        io.write(io.open(dir .. "/dst/g", "w") and "writable" or "read-only", "\n")
      end)
      assert.equal(0, code)
      assert.equal("hi\nread-only\n", out)
    end)

    it("raises for an unknown option", function()
      assert.error_matches(function()
        isle.bind("/a", "/b", { fast = true })
      end, "unknown option 'fast'")
    end)
  end)

  describe("umount()", function()
    it("unmounts, with detach #root", function()
      local out = inside(function()
        assert(isle.mount { "tmpfs", dir })
        assert(isle.umount(dir, { "detach" }))
        io.write(H.readfile("/proc/self/mountinfo"))
      end)
      assert.is_false(mountinfo_has(out, dir))
    end)

    it("fails on a path that is not a mount point", function()
      local out = inside(function()
        local ok, msg, e = isle.umount(dir)
        io.write(tostring(ok), "|", msg, "|", e)
      end)
      assert.equal("nil|umount " .. dir .. ": Invalid argument|" .. E.EINVAL, out)
    end)

    it("raises for an unknown flag", function()
      assert.error_matches(function()
        isle.umount("/mnt", { "gently" })
      end, "unknown umount flag 'gently'")
    end)
  end)

  describe("pivot_root()", function()
    it("makes a directory the new root and detaches the old one #root", function()
      local out, code = inside(function()
        assert(isle.mount { "tmpfs", dir })
        assert(io.open(dir .. "/only-here", "w")):close()
        assert(isle.pivot_root(dir))
        local f = io.open("/only-here")
        io.write(f and "pivoted" or "not pivoted", "\n")
        io.write(io.open("/etc/passwd") and "old root visible" or "old root gone", "\n")
      end)
      assert.equal(0, code)
      assert.equal("pivoted\nold root gone\n", out)
    end)

    it("fails on a directory that is not a mount point", function()
      local out = inside(function()
        local ok, msg, e = isle.pivot_root(dir)
        io.write(tostring(ok), "|", msg, "|", e)
      end)
      -- the kernel says EINVAL or EBUSY depending on its version
      local e = tonumber(out:match("|(%d+)$"))
      assert.matches("^nil|pivot_root " .. dir:gsub("%p", "%%%0") .. ": ", out)
      assert.truthy(e == E.EINVAL or e == E.EBUSY, out)
    end)
  end)
end)
