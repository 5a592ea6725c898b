-- examples/clock.lua: a host whose clocks run ahead. "future" has its own
-- time namespace with CLOCK_BOOTTIME and CLOCK_MONOTONIC OFFSET seconds
-- ahead (uptime shows it); "now" is a normal host next to it.
--
--   isle up examples/clock.lua [OFFSET]   (default 86400, a day; lab name:
--                                          $ISLE_LAB or clock)
--   isle exec clock future -- cat /proc/uptime
local isle = require "isle"

local offset = tonumber((select(1, ...)) or os.getenv("ISLE_OFFSET") or 86400)

local lab = isle.lab(os.getenv("ISLE_LAB") or "clock")
local now = lab:host("now")
local future = lab:host("future", { clock = { boottime = offset, monotonic = offset } })
lab:link(now, future, { ip = { "10.0.0.1/24", "10.0.0.2/24" } })
return lab
