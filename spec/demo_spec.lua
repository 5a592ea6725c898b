-- examples/demo.lua (make demo) keeps working and shows what it promises.
local H = require "spec.helper"

describe("examples/demo.lua", function()
  it("shows a process in fresh namespaces: PID 1 inside, own hostname, mapped root, uptime a day ahead #root", function()
    if not H.is_root() then
      pending("the demo maps the caller's uid; as non-root that needs unprivileged user namespaces")
      return
    end
    local before = H.census()
    local out, ok, how, code = H.sh(H.LUA_ENV .. " lua5.4 examples/demo.lua 2>&1")
    assert.equal("exit", how, out)
    assert.equal(0, code, out)
    assert.is_true(ok, out)

    local inside = out:match("Inside the new namespaces.-\n\n")
    assert.is_string(inside, out)
    local pid = tonumber(inside:match("pid%s+(%d+)"))
    -- the shell is PID 1, or PID 2 under the helper spawn uses when it must
    -- enter the time namespace from inside a new user namespace; either way
    -- in a fresh pid namespace (the host's pids are far larger here)
    assert.is_true(pid == 1 or pid == 2, out)
    assert.matches("hostname isle%-demo\n", inside)
    assert.matches("uid      0 %(uid_map: 0 0 1%)", inside)
    local up_in = tonumber(inside:match("uptime%s+([%d.]+)"))
    local up_out = tonumber(out:match("The same process seen from outside:.-uptime%s+([%d.]+)"))
    assert.is_true(up_in - up_out > 86400 - 5 and up_in - up_out < 86400 + 5, out)
    -- inside and outside ids differ for every new kind
    for _, kind in ipairs { "user", "pid", "uts", "mnt", "time" } do
      local a, b = out:match("\n  " .. kind .. "%s+(%d+) / (%d+)")
      assert.is_string(a, kind)
      assert.are_not.equal(a, b, kind)
    end
    assert.matches("child exited: true exit 0", out)
    H.assert_clean(before)
  end)
end)
