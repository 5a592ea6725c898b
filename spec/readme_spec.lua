-- The README's tour snippets run as written (they are documentation that
-- must not rot). Each ```lua block of the intro, the tour and the
-- containers section is run in a fresh lua5.4 from the checkout.
local H = require "spec.helper"

local function blocks(text)
  local out = {}
  for code in text:gmatch("```lua\n(.-)```") do
    out[#out + 1] = code
  end
  return out
end

describe("README", function()
  local readme = assert(H.readfile("README.md"))
  local tour = readme:match("<!%-%- section: intro.-<!%-%- section: commands")
    .. readme:match("<!%-%- section: tour.-<!%-%- section: netns")
    .. readme:match("<!%-%- section: container.-<!%-%- section: cli")
  local list = blocks(tour)

  it("has tour snippets", function()
    assert.is_true(#list >= 4)
  end)

  for i, code in ipairs(list) do
    it("tour snippet " .. i .. " runs #root", function()
      local before = H.census()
      local path = os.tmpname()
      finally(function()
        os.remove(path)
      end)
      local f = assert(io.open(path, "w"))
      f:write(code)
      f:close()
      local out, ok = H.sh(H.LUA_ENV .. " lua5.4 " .. path .. " 2>&1")
      assert.is_true(ok, out)
      H.assert_clean(before)
    end)
  end
end)
