-- examples/raw-bridge.lua runs, proves traffic, and cleans up.
local H = require "spec.helper"

describe("examples/raw-bridge.lua #root", function()
  it("builds the docker0 picture, pings through it and removes everything", function()
    local tag = tostring(H.mypid())
    local out, ok = H.sh(H.LUA_ENV .. " lua5.4 examples/raw-bridge.lua " .. tag .. " 2>&1")
    assert.is_true(ok, out)
    assert.matches("NAT%): ok", out)
    for _, n in ipairs { "host", "up", "c1", "c2" } do
      assert.is_nil(H.readfile("/run/netns/rb" .. tag .. "-" .. n))
    end
  end)
end)
