-- examples/tree.lua: Mininet's tree topology. A tree of switches DEPTH
-- levels deep, each with FANOUT children; hosts hang off the last level
-- (FANOUT^DEPTH hosts), all in 10.0.0.0/16.
--
--   isle up examples/tree.lua [DEPTH [FANOUT]]  (default 2 2: 3 switches,
--                                               4 hosts; lab name: $ISLE_LAB or tree)
--   isle exec tree h1 -- ping -c1 h4
local isle = require "isle"

local depth = math.tointeger(tonumber((select(1, ...)) or os.getenv("ISLE_DEPTH") or 2))
local fanout = math.tointeger(tonumber((select(2, ...)) or os.getenv("ISLE_FANOUT") or 2))
assert(depth and depth >= 1 and fanout and fanout >= 1, "usage: tree.lua [DEPTH [FANOUT]]")
assert(fanout ^ depth <= 65000, "at most 65000 hosts")

local lab = isle.lab(os.getenv("ISLE_LAB") or "tree")
local nswitch, nhost = 0, 0

local function add(level)
  if level > depth then
    nhost = nhost + 1
    return lab:host("h" .. nhost)
  end
  nswitch = nswitch + 1
  local s = lab:switch("s" .. nswitch)
  for _ = 1, fanout do
    local child = add(level + 1)
    local opts
    if child.kind == "host" then
      opts = { ip = string.format("10.0.%d.%d/16", nhost // 256, nhost % 256) }
    end
    lab:link(child, s, opts)
  end
  return s
end
add(1)
return lab
