--- isle: Linux namespaces, scriptable from Lua.
-- The facade: the primitives of `isle.ns`, `isle.mount` and `isle.process`
-- are re-exported here; `isle.netns`, `isle.net`, `isle.lab` and
-- `isle.container` load on first use.
-- @module isle
-- @usage local isle = require "isle"
-- local p = assert(isle.spawn{argv = {"hostname"}, namespaces = "uts", hostname = "box"})
-- print(p:wait())

local M = {}

for _, name in ipairs { "isle.ns", "isle.mount", "isle.process" } do
  for k, v in pairs(require(name)) do
    if k:sub(1, 1) ~= "_" then -- internal helpers stay in their module
      M[k] = v
    end
  end
end

M.core = require "isle.core"
M.version = M.core.version

local lazy = {
  netns = "isle.netns",
  net = "isle.net",
  lab = "isle.lab",
  container = "isle.container",
}

return setmetatable(M, {
  __index = function(t, k)
    local mod = lazy[k]
    if mod then
      local v = require(mod)
      rawset(t, k, v)
      return v
    end
  end,
})
