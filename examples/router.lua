-- examples/router.lua: two subnets joined by a router.
--
--   h1 10.1.0.1/24 -- s1 -- r (10.1.0.254, 10.2.0.254; forwards) -- s2 -- h2 10.2.0.1/24
--
--   isle up examples/router.lua        (lab name: $ISLE_LAB or router)
--   isle exec router h1 -- traceroute -n h2   (or ping -c1 h2: ttl 63)
local isle = require "isle"

local lab = isle.lab(os.getenv("ISLE_LAB") or "router")
local s1, s2 = lab:switch("s1"), lab:switch("s2")
local r = lab:host("r", { forward = true })
local h1 = lab:host("h1", { gateway = "10.1.0.254" })
local h2 = lab:host("h2", { gateway = "10.2.0.254" })
lab:link(h1, s1, { ip = "10.1.0.1/24" })
lab:link(r, s1, { ip = "10.1.0.254/24" })
lab:link(r, s2, { ip = "10.2.0.254/24" })
lab:link(h2, s2, { ip = "10.2.0.1/24" })
return lab
