-- examples/lossy.lua: one impaired link. h1 and h2 are joined directly;
-- every packet waits DELAY in each direction and LOSS percent are dropped
-- in each direction, so ping shows an RTT of about 2 x DELAY and some loss.
--
--   isle up examples/lossy.lua [DELAY [LOSS]]   (default 20ms 10; lab name:
--                                                $ISLE_LAB or lossy)
--   isle exec lossy h1 -- ping -c20 -i0.2 h2
-- Needs the kernel's netem qdisc (sch_netem).
local isle = require "isle"

local delay = (select(1, ...)) or os.getenv("ISLE_DELAY") or "20ms"
local loss = tonumber((select(2, ...)) or os.getenv("ISLE_LOSS") or 10)

local lab = isle.lab(os.getenv("ISLE_LAB") or "lossy")
local h1, h2 = lab:host("h1"), lab:host("h2")
lab:link(h1, h2, { ip = { "10.0.0.1/24", "10.0.0.2/24" }, delay = delay, loss = loss })
return lab
