-- examples/bridge.lua: the docker0 picture. Two hosts on a switch, a
-- gateway host that masquerades them out to a simulated upstream network
-- (TEST-NET-3, 203.0.113.0/24: nothing here reaches the real outside).
--
--   isle up examples/bridge.lua               (lab name: $ISLE_LAB or bridge)
--   isle exec bridge h1 -- ping -c1 h2        (by name, through s1)
--   isle exec bridge h1 -- ping -c1 upstream  (through gw, masqueraded)
--   isle down bridge
local isle = require "isle"

local lab = isle.lab(os.getenv("ISLE_LAB") or "bridge")
local s1 = lab:switch("s1")
local gw = lab:host("gw", { forward = true })
local up = lab:host("upstream") -- no route back to 10.0.0.0/24: replies need the NAT
local h1 = lab:host("h1", { gateway = "10.0.0.254" })
local h2 = lab:host("h2", { gateway = "10.0.0.254" })
lab:link(h1, s1, { ip = "10.0.0.1/24" })
lab:link(h2, s1, { ip = "10.0.0.2/24" })
lab:link(gw, s1, { ip = "10.0.0.254/24" })
lab:link(gw, up, { ip = { "203.0.113.1/24", "203.0.113.10/24" } })
lab:nat(gw, { out = up, source = "10.0.0.0/24" })
return lab
