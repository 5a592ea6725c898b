-- examples/linear.lua: Mininet's linear topology. K switches in a chain,
-- each with N hosts; all hosts in 10.0.0.0/16, one flat L2 network.
--
--   isle up examples/linear.lua [K [N]]   (default 4 switches, 1 host each;
--                                          lab name: $ISLE_LAB or linear)
--   isle exec linear h1 -- ping -c1 h4
-- Host names follow Mininet: h1..hK with one host per switch, else hIsJ.
local isle = require "isle"

local k = math.tointeger(tonumber((select(1, ...)) or os.getenv("ISLE_K") or 4))
local n = math.tointeger(tonumber((select(2, ...)) or os.getenv("ISLE_N") or 1))
assert(k and k >= 1 and n and n >= 1, "usage: linear.lua [K >= 1 [N >= 1]]")
assert(k * n <= 65000, "at most 65000 hosts")

local lab = isle.lab(os.getenv("ISLE_LAB") or "linear")
local prev
local count = 0
for i = 1, k do
  local s = lab:switch("s" .. i)
  for j = 1, n do
    count = count + 1
    local h = lab:host(n == 1 and ("h" .. i) or ("h" .. i .. "s" .. j))
    lab:link(h, s, { ip = string.format("10.0.%d.%d/16", count // 256, count % 256) })
  end
  if prev then
    lab:link(prev, s)
  end
  prev = s
end
return lab
