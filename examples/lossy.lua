-- examples/lossy.lua: one impaired link. h1 and h2 are joined directly;
-- LOSS percent of the packets are dropped in each direction (at 30, about
-- half of the pings' round trips are lost) and the link carries at most
-- RATE each way. With DELAY, every packet also waits DELAY in each
-- direction (the ping RTT is then about 2 x DELAY).
--
--   isle up examples/lossy.lua [LOSS [RATE [DELAY]]]   (default 10 10mbit,
--                      no delay; lab name: $ISLE_LAB or lossy)
--   isle exec lossy h1 -- ping -c50 -i0.1 -q h2
--   isle link lossy h1 h2 --loss 30      (changed while it runs)
--   isle ls lossy                        (the impairments and their backend)
-- Loss and rate work on every kernel: through netem where the kernel has
-- sch_netem, else through tbf (rate) and nftables (loss). A delay needs
-- sch_netem: without it `isle up` fails before building anything.
local isle = require "isle"

local loss = tonumber((select(1, ...)) or os.getenv("ISLE_LOSS") or 10)
local rate = (select(2, ...)) or os.getenv("ISLE_RATE") or "10mbit"
local delay = (select(3, ...)) or os.getenv("ISLE_DELAY")

local lab = isle.lab(os.getenv("ISLE_LAB") or "lossy")
local h1, h2 = lab:host("h1"), lab:host("h2")
lab:link(h1, h2, { ip = { "10.0.0.1/24", "10.0.0.2/24" }, loss = loss, rate = rate,
  delay = delay })
return lab
