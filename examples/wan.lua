-- examples/wan.lua: two sites joined over a slow, distant line. Each site
-- is a switch with HOSTS hosts behind its router; the routers' link has
-- DELAY each way (the RTT between sites is about 2 x DELAY), 2 ms of
-- jitter, 0.5 % loss and 20 mbit/s.
--
--   isle up examples/wan.lua [DELAY [HOSTS]]  (default 40ms 2; lab name:
--                                            $ISLE_LAB or wan)
--   isle exec wan a1 -- ping -c5 b1           (rtt about 80 ms)
--   isle link wan ra rb --delay 100ms         (a longer line, in place)
-- Needs the kernel's netem qdisc (sch_netem) for the delay: without it,
-- `isle up` fails before building anything, naming the module.
local isle = require "isle"

local delay = (select(1, ...)) or os.getenv("ISLE_DELAY") or "40ms"
local n = math.tointeger(tonumber((select(2, ...)) or os.getenv("ISLE_HOSTS") or 2))
assert(n and n >= 1 and n <= 250, "usage: wan.lua [DELAY [HOSTS (1..250)]]")

local lab = isle.lab(os.getenv("ISLE_LAB") or "wan")
local ra = lab:host("ra", { forward = true,
  routes = { { dst = "10.2.0.0/24", via = "192.0.2.2" } } })
local rb = lab:host("rb", { forward = true,
  routes = { { dst = "10.1.0.0/24", via = "192.0.2.1" } } })
lab:link(ra, rb, { ip = { "192.0.2.1/30", "192.0.2.2/30" }, delay = delay, jitter = "2ms",
  loss = 0.5, rate = "20mbit" })
for net, site in ipairs { "a", "b" } do
  local r = net == 1 and ra or rb
  local s = lab:switch("s" .. site)
  lab:link(r, s, { ip = string.format("10.%d.0.254/24", net) })
  for i = 1, n do
    local h = lab:host(site .. i, { gateway = string.format("10.%d.0.254", net) })
    lab:link(h, s, { ip = string.format("10.%d.0.%d/24", net, i) })
  end
end
return lab
