-- isle._check: one way to raise for a programmer mistake (no root needed)
local check = require "isle._check"

describe("isle._check", function()
  it("names the function and the argument, by number or by name", function()
    assert.has_error(function() check.argerror("spawn", 1, "argv: empty") end,
      "bad argument #1 to 'spawn' (argv: empty)")
    assert.has_error(function() check.argerror("link", "opts.ip", "bad") end,
      "bad argument 'opts.ip' to 'link' (bad)")
  end)
  it("blames the caller's line", function()
    local function api(x) check.string("api", 1, x) end
    local ok, err = pcall(function() api(1) end)
    assert.is_false(ok)
    assert.matches("check_spec.lua:%d+: bad argument #1 to 'api' %(string expected, got number%)",
      err)
  end)
  it("checks fields, names, interface names and numbers", function()
    assert.has_error(function() check.fields("f", "opts", { x = 1 }, check.set { "y" }) end,
      "bad argument 'opts' to 'f' (unknown option 'x')")
    assert.has_error(function() check.name("f", "name", "a/b") end,
      "bad argument 'name' to 'f' (name must not contain '/')")
    assert.has_error(function() check.name("f", "name", "a b", nil, "^[%w_.-]+$") end,
      "bad argument 'name' to 'f' (name 'a b' may hold only letters, digits, '_', '.' and '-')")
    assert.has_error(function() check.ifname("f", "ifname", "sixteen-bytes-xx") end,
      "bad argument 'ifname' to 'f' (interface name longer than 15 bytes: 'sixteen-bytes-xx')")
    assert.has_error(function() check.ifname("f", "ifname", "..") end,
      "bad argument 'ifname' to 'f' (invalid interface name: '..')")
    assert.has_error(function() check.number("f", "loss", 0 / 0, 0, 100) end,
      "bad argument 'loss' to 'f' (number in [0, 100] expected, got " .. tostring(0 / 0) .. ")")
    assert.has_error(function() check.int("f", "metric", math.maxinteger, 0, 0xffffffff) end)
    assert.equal("eth0", check.ifname("f", "x", "eth0"))
    assert.equal(5, check.int("f", "x", 5, 0, 10))
  end)
end)
