-- examples/leafspine.lua: a leaf-spine fabric. LEAVES leaf switches, each
-- its own subnet 10.0.L.0/24 with HOSTS hosts; SPINES spine routers, each
-- on every leaf (10.0.L.250+S), forwarding between the leaves. Bridges run
-- no spanning tree, so the spines route rather than bridge: no loop. A
-- host's default route goes through spine 1, a second one (metric 100)
-- through spine 2.
--
--   isle up examples/leafspine.lua [SPINES [LEAVES [HOSTS]]]  (default 2 4 2;
--                                   lab name: $ISLE_LAB or leafspine)
--   isle ping leafspine                       (every pair reaches)
--   isle link leafspine spine1 leaf1 cut      (leaf 1's hosts lose the others)
--   isle graph --svg leafspine > fabric.svg
local isle = require "isle"

local nspine = math.tointeger(tonumber((select(1, ...)) or os.getenv("ISLE_SPINES") or 2))
local nleaf = math.tointeger(tonumber((select(2, ...)) or os.getenv("ISLE_LEAVES") or 4))
local nhost = math.tointeger(tonumber((select(3, ...)) or os.getenv("ISLE_HOSTS") or 2))
assert(nspine and nspine >= 1 and nspine <= 4 and nleaf and nleaf >= 1 and nleaf <= 200
  and nhost and nhost >= 0 and nhost <= 200, "usage: leafspine.lua [SPINES [LEAVES [HOSTS]]]")

local lab = isle.lab(os.getenv("ISLE_LAB") or "leafspine")
local spines = {}
for s = 1, nspine do spines[s] = lab:host("spine" .. s, { forward = true }) end
local n = 0
for l = 1, nleaf do
  local leaf = lab:switch("leaf" .. l)
  for s = 1, nspine do
    lab:link(spines[s], leaf, { ip = string.format("10.0.%d.%d/24", l, 250 + s) })
  end
  for i = 1, nhost do
    n = n + 1
    local routes = {}
    for s = 2, nspine do
      routes[#routes + 1] = { dst = "default", via = string.format("10.0.%d.%d", l, 250 + s),
        metric = 100 * (s - 1) }
    end
    local h = lab:host("h" .. n, { gateway = string.format("10.0.%d.251", l), routes = routes })
    lab:link(h, leaf, { ip = string.format("10.0.%d.%d/24", l, i) })
  end
end
return lab
