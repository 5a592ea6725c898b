-- isle.container loads isle.container.named on first use of a named
-- container's function: the stubs it installs until then must name exactly
-- the functions named.lua adds, each replaced by the real one on first use,
-- and a mistake must raise what the real function raises.

--- A fresh isle.container (and named), the loaded ones put back after fn.
local function fresh(fn)
  local saved = {}
  for _, m in ipairs { "isle.container", "isle.container.named" } do
    saved[m], package.loaded[m] = package.loaded[m], nil
  end
  local ok, err = pcall(fn, require "isle.container")
  for m, v in pairs(saved) do
    package.loaded[m] = v
  end
  assert(ok, err)
end

local function sorted(t)
  local out = {}
  for k in pairs(t) do
    out[#out + 1] = k
  end
  table.sort(out)
  return out
end

describe("isle.container's named stubs", function()
  it("name exactly the functions isle.container.named installs", function()
    fresh(function(container)
      local api, methods = {}, {}
      require("isle.container.named").install(api, methods, {})
      local want = { table.unpack(container._NAMED_API) }
      table.sort(want)
      assert.same(want, sorted(api))
      want = { table.unpack(container._NAMED_METHODS) }
      table.sort(want)
      assert.same(want, sorted(methods))
    end)
  end)

  it("are replaced by the real functions on first use", function()
    fresh(function(container)
      local stubs = {}
      for _, k in ipairs(container._NAMED_API) do
        stubs[k] = container[k]
      end
      assert.is_nil(package.loaded["isle.container.named"])
      local c = container.open("no-such-container-crun")
      assert.is_nil(c)
      assert.is_table(package.loaded["isle.container.named"])
      for _, k in ipairs(container._NAMED_API) do
        assert.are_not.equal(stubs[k], container[k])
      end
    end)
  end)

  it("raise the same argument error as the real function (a tail call)", function()
    local function err(container)
      local ok, e = pcall(function()
        local c = container.open(42) -- not a tail call: this line is the caller
        return c
      end)
      assert.is_false(ok)
      return e
    end
    fresh(function(container)
      local first = err(container) -- through the stub
      assert.equal(first, err(container)) -- the real function
      assert.matches("bad argument 'name' to 'open'", first)
    end)
  end)
end)
