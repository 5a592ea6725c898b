-- The isle command line: bin/isle run as a subprocess, as a user would.
local H = require "spec.helper"

local ISLE = H.ROOT .. "/bin/isle"

local function q(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

-- Run bin/isle with args (a list); returns stdout, stderr, exit status.
local function isle(args, opts)
  opts = opts or {}
  local errf = os.tmpname()
  local cmd = {}
  for i, a in ipairs(args) do
    cmd[i] = q(a)
  end
  local line = string.format("%s%s %s %s 2>%s </dev/null",
    opts.cwd and ("cd " .. q(opts.cwd) .. " && ") or "",
    opts.env or "", q(opts.isle or ISLE), table.concat(cmd, " "), q(errf))
  local out, _, how, code = H.sh(line)
  local err = H.readfile(errf) or ""
  os.remove(errf)
  assert(how == "exit", "isle killed by a signal")
  return out, err, code
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do
    t[#t + 1] = l
  end
  return t
end

-- A one-line error on stderr, starting with "isle".
local function assert_one_line_error(err)
  assert.equal(1, #lines(err), "expected one line on stderr, got: " .. err)
  assert.matches("^isle[ :]", err)
end

-- Parse the table of `isle ns`: {kind = {id =, isle =, pid1 =}}.
local function parse_ns(out)
  local l = lines(out)
  assert.matches("^KIND%s+ID%s+ISLE%s+PID1$", l[1])
  local t = {}
  for i = 2, #l do
    local kind, id, mine, init = l[i]:match("^(%S+)%s+(%d+)%s+(%S+)%s+(%S+)$")
    assert(kind, "bad row: " .. l[i])
    t[kind] = { id = tonumber(id), isle = mine, pid1 = init }
  end
  return t
end

-- isle must load (a broken build fails these specs, it does not skip them)
assert(type(require("isle").nsinfo) == "function", "isle.nsinfo missing")

describe("isle (command line)", function()
  describe("--help", function()
    it("lists the commands and exits 0", function()
      for _, flag in ipairs { "--help", "-h", "help" } do
        local out, err, code = isle { flag }
        assert.equal(0, code)
        assert.equal("", err)
        assert.matches("^usage: isle COMMAND", out)
        assert.matches("\n  ns +the namespaces of a process", out)
      end
    end)

    it("works from any directory (the checkout is found from bin/isle's path)", function()
      local out, _, code = isle({ "--help" }, { cwd = "/" })
      assert.equal(0, code)
      assert.matches("usage: isle COMMAND", out)
      local out2, _, code2 = isle({ "--help" }, { cwd = H.ROOT, isle = "bin/isle" })
      assert.equal(0, code2)
      assert.equal(out, out2)
    end)

    it("shows a subcommand's usage with SUB --help, -h and help SUB", function()
      for _, args in ipairs { { "ns", "--help" }, { "ns", "-h" }, { "help", "ns" } } do
        local out, err, code = isle(args)
        assert.equal(0, code)
        assert.equal("", err)
        assert.matches("^usage: isle ns %[PID%]\n", out)
      end
    end)

    it("prints the version", function()
      local out, _, code = isle { "--version" }
      assert.equal(0, code)
      assert.matches("^isle %d+%.%d+", out)
    end)
  end)

  describe("usage errors", function()
    it("fail with one line on stderr and status 2", function()
      for _, args in ipairs {
        {}, { "frobnicate" }, { "--frob" }, { "help", "frobnicate" }, { "ns", "notapid" },
        { "ns", "0" }, { "ns", "-5" }, { "ns", "1", "2" }, { "ns", "--bogus" },
      } do
        local out, err, code = isle(args)
        assert.equal(2, code, table.concat(args, " "))
        assert.equal("", out)
        -- a subcommand's usage error adds its usage line
        local l = lines(err)
        assert.matches("^isle[ :]", l[1])
        assert.is_true(#l == 1 or (#l == 2 and l[2]:match("^usage: isle ") ~= nil), err)
      end
    end)

    it("names the unknown command", function()
      local _, err = isle { "frobnicate" }
      assert.equal("isle: unknown command 'frobnicate' (see isle --help)\n", err)
    end)
  end)

  describe("ns", function()
    -- PID 1 may be unreadable even for root (a sandbox's non-dumpable init)
    local function pid1_readable()
      return H.nsid(1, "net") ~= nil
    end

    local function sleeper(prefix)
      local pid = H.start((prefix or "") .. "sleep 30")
      finally(function() H.stop(pid) end)
      return pid
    end

    it("lists the namespaces of a process with the ids /proc reports", function()
      local pid = sleeper()
      local out, err, code = isle { "ns", tostring(pid) }
      assert.equal("", err)
      assert.equal(0, code)
      local t = parse_ns(out)
      local n = 0
      for _, kind in ipairs { "cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts" } do
        local want = H.nsid(pid, kind)
        if want then
          n = n + 1
          assert.is_table(t[kind], kind)
          assert.equal(want, t[kind].id, kind)
          assert.equal("same", t[kind].isle, kind)
          if pid1_readable() then
            assert.equal(want == H.nsid(1, kind) and "same" or "other", t[kind].pid1, kind)
          else
            assert.equal("?", t[kind].pid1, kind)
          end
        end
      end
      assert.is_true(n >= 6)
    end)

    it("shows PID 1, or fails with one line when it may not be read", function()
      local out, err, code = isle { "ns", "1" }
      if pid1_readable() then
        assert.equal(0, code)
        assert.equal(H.nsid(1, "mnt"), parse_ns(out).mnt.id)
        assert.equal("same", parse_ns(out).mnt.pid1)
      else
        assert.equal(1, code)
        assert.equal("", out)
        assert_one_line_error(err)
        assert.matches("^isle: .*/proc/1/ns", err)
      end
    end)

    it("marks the namespaces a process does not share with isle and PID 1", function()
      if not H.is_root() then
        pending("needs root for unshare --uts --ipc --net")
        return
      end
      -- the fixture: a sleeper in new uts, ipc and net namespaces
      local pid = sleeper("unshare --uts --ipc --net ")
      for _ = 1, 100 do
        if H.nsid(pid, "uts") ~= H.nsid(1, "uts") then break end
        H.sh("sleep 0.01")
      end
      local out, err, code = isle { "ns", tostring(pid) }
      assert.equal("", err)
      assert.equal(0, code)
      local t = parse_ns(out)
      for _, kind in ipairs { "uts", "ipc", "net" } do
        assert.equal(H.nsid(pid, kind), t[kind].id, kind)
        assert.are_not.equal(H.nsid(1, kind), t[kind].id, kind)
        assert.equal("other", t[kind].isle, kind)
        assert.equal(pid1_readable() and "other" or "?", t[kind].pid1, kind)
      end
      for _, kind in ipairs { "mnt", "pid", "user" } do
        assert.equal(H.nsid(pid, kind), t[kind].id, kind)
        assert.equal("same", t[kind].isle, kind)
      end
    end)

    it("without PID shows isle's own namespaces, all shared with itself", function()
      local out, _, code = isle { "ns" }
      assert.equal(0, code)
      local t = parse_ns(out)
      assert.equal(H.nsid("self", "net"), t.net.id)
      for kind, row in pairs(t) do
        assert.equal("same", row.isle, kind)
      end
    end)

    it("fails with one line and status 1 for a dead pid", function()
      local pid = tonumber((H.sh("sh -c 'echo $$'")))
      local out, err, code = isle { "ns", tostring(pid) }
      assert.equal(1, code)
      assert.equal("", out)
      assert_one_line_error(err)
      assert.matches("^isle: ", err)
    end)
  end)

  describe("subcommand modules", function()
    local dir

    before_each(function()
      dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. q(dir .. "/isle/cli")))
      local f = assert(io.open(dir .. "/isle/cli/zz_fake.lua", "w"))
      f:write([[
return {
  summary = "a fake subcommand for the specs",
  usage = "isle zz-fake [--n N] [--flag] MODE",
  run = function(args, cli)
    local o, pos = cli.getopt(args, { n = "number", flag = "flag" })
    local mode = pos[1]
    if mode == "ok" then print("ran", o.n, o.flag) return
    elseif mode == "status" then return o.n
    elseif mode == "fail" then return nil, "zz-fake: it failed", 5
    elseif mode == "cfail" then cli.fail("zz-fake: cli.fail")
    elseif mode == "bug" then error("oops")
    else cli.usage_error("unknown MODE " .. tostring(mode)) end
  end,
}
]])
      f:close()
    end)

    after_each(function()
      os.execute("rm -rf " .. q(dir))
    end)

    local function fake(args)
      return isle(args, { env = "LUA_PATH=" .. q(dir .. "/?.lua;;") })
    end

    it("are found by name (a - in the name is _ in the module)", function()
      local out, err, code = fake { "zz-fake", "--n", "7", "--flag", "ok" }
      assert.equal("", err)
      assert.equal(0, code)
      assert.equal("ran\t7\ttrue\n", out)
      out, err, code = fake { "zz_fake", "--n=3", "ok" }
      assert.equal("", err)
      assert.equal(0, code)
      assert.equal("ran\t3\tnil\n", out)
    end)

    it("get --help from their usage without running", function()
      local out, _, code = fake { "zz-fake", "--help" }
      assert.equal(0, code)
      assert.equal("usage: isle zz-fake [--n N] [--flag] MODE\n\na fake subcommand for the specs\n",
        out)
    end)

    it("map returns and raises to exit statuses with one line on stderr", function()
      local _, err, code = fake { "zz-fake", "--n", "3", "status" }
      assert.equal(3, code)
      assert.equal("", err)

      _, err, code = fake { "zz-fake", "fail" }
      assert.equal(1, code)
      assert.equal("isle: zz-fake: it failed\n", err)

      _, err, code = fake { "zz-fake", "cfail" }
      assert.equal(1, code)
      assert.equal("isle: zz-fake: cli.fail\n", err)

      _, err, code = fake { "zz-fake", "bug" }
      assert.equal(1, code)
      assert_one_line_error(err)
      assert.matches("^isle: internal error: .*oops", err)

      _, err, code = fake { "zz-fake", "--n", "x", "ok" }
      assert.equal(2, code)
      assert.matches("^isle zz%-fake: option %-%-n: integer expected", err)

      _, err, code = fake { "zz-fake", "--nope" }
      assert.equal(2, code)
      assert.matches("^isle zz%-fake: unknown option %-%-nope\nusage: isle zz%-fake", err)
    end)
  end)

  describe("getopt()", function()
    local cli = require "isle.cli"

    local function usage_error(fn)
      local ok, e = pcall(fn)
      assert.is_false(ok)
      assert.equal(2, e.status)
      return e.msg
    end

    it("parses flags, values, lists, positionals and --", function()
      local o, pos, rest, dd = cli.getopt(
        { "-i", "--hostname", "h1", "a", "--net=lab", "--pids", "10", "-v", "x", "-v", "y", "b",
          "--", "cmd", "--hostname", "z" },
        { i = "flag", hostname = "string", net = "string", pids = "number", v = "list" })
      assert.same({ i = true, hostname = "h1", net = "lab", pids = 10, v = { "x", "y" } }, o)
      assert.same({ "a", "b" }, pos)
      assert.same({ "cmd", "--hostname", "z" }, rest)
      assert.is_true(dd)
      local _, _, rest2, dd2 = cli.getopt({ "a" }, {})
      assert.same({}, rest2)
      assert.is_false(dd2)
    end)

    it("rejects unknown options, missing values and values for flags", function()
      assert.matches("unknown option %-%-x", usage_error(function() cli.getopt({ "--x" }, {}) end))
      assert.matches("unknown option %-v", usage_error(function()
        cli.getopt({ "-v" }, { verbose = "flag" })
      end))
      assert.matches("needs a value", usage_error(function()
        cli.getopt({ "--net" }, { net = "string" })
      end))
      assert.matches("takes no value", usage_error(function()
        cli.getopt({ "--rootless=1" }, { rootless = "flag" })
      end))
    end)
  end)
end)
