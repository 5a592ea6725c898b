-- examples/fat.lua: a big flat lab. N hosts under edge switches of at most
-- PER hosts each (a Linux bridge takes at most 1,023 ports), the edge
-- switches joined by a core switch; all hosts in 10.0.0.0/16, one L2
-- network. With N <= PER it is one switch, Mininet's `single,N`.
--
--   isle up examples/fat.lua [N [PER]]   (default 2000 hosts, 1000 per edge
--                                         switch; lab name: $ISLE_LAB or fat)
--   isle exec fat h1 -- ping -c1 h2000
local isle = require "isle"

local n = math.tointeger(tonumber((select(1, ...)) or os.getenv("ISLE_N") or 2000))
local per = math.tointeger(tonumber((select(2, ...)) or os.getenv("ISLE_PER") or 1000))
assert(n and n >= 1 and per and per >= 1 and per <= 1000, "usage: fat.lua [N [PER <= 1000]]")
assert(n <= 65000, "at most 65000 hosts")

local lab = isle.lab(os.getenv("ISLE_LAB") or "fat")
local edges = (n + per - 1) // per
local core = edges > 1 and lab:switch("core") or nil
local edge
for i = 1, n do
  if (i - 1) % per == 0 then
    edge = lab:switch("s" .. (i - 1) // per + 1)
    if core then lab:link(edge, core) end
  end
  lab:link(lab:host("h" .. i), edge, { ip = string.format("10.0.%d.%d/16", i // 256, i % 256) })
end
return lab
