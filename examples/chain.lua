-- examples/chain.lua: ROUTERS routers in a line, a host at each end; each
-- hop its own /30, static routes both ways (no routing daemon needed).
--
--   h1 -- r1 -- r2 -- ... -- rN -- h2
--
--   isle up examples/chain.lua [ROUTERS]   (default 3; lab name:
--                                          $ISLE_LAB or chain)
--   isle exec chain h1 -- traceroute -n h2
--   isle link chain r1 r2 cut              (h1 and h2 lose each other)
local isle = require "isle"

local n = math.tointeger(tonumber((select(1, ...)) or os.getenv("ISLE_ROUTERS") or 3))
assert(n and n >= 1 and n <= 60, "usage: chain.lua [ROUTERS (1..60)]")

local lab = isle.lab(os.getenv("ISLE_LAB") or "chain")
-- hop k joins node k-1 and node k (node 0 is h1, node n+1 is h2): 10.0.k.0/30
local function addr(k, side) return string.format("10.0.%d.%d", k, side) end
local h1 = lab:host("h1", { gateway = addr(1, 2) })
local h2 = lab:host("h2", { gateway = addr(n + 1, 1) })
local routers = {}
for i = 1, n do
  local routes = {}
  for k = 1, n + 1 do -- the hops not next to router i: left through i's hop, right through i+1's
    if k < i then
      routes[#routes + 1] = { dst = string.format("10.0.%d.0/30", k), via = addr(i, 1) }
    elseif k > i + 1 then
      routes[#routes + 1] = { dst = string.format("10.0.%d.0/30", k), via = addr(i + 1, 2) }
    end
  end
  routers[i] = lab:host("r" .. i, { forward = true, routes = routes })
end
local nodes = { h1 }
for i = 1, n do nodes[#nodes + 1] = routers[i] end
nodes[#nodes + 1] = h2
for k = 1, n + 1 do
  lab:link(nodes[k], nodes[k + 1], { ip = { addr(k, 1) .. "/30", addr(k, 2) .. "/30" } })
end
return lab
