--- `isle ping LAB [HOST...]`: the reachability matrix of a running lab.
-- @module isle.cli.ping
local format = string.format

return {
  summary = "reachability matrix of every host pair of a lab (exit 0 when all reach)",
  usage = [[isle ping [OPTIONS] LAB [HOST...]

Pings every ordered pair of LAB's hosts that have an address (or of the
HOSTs given), all at once from one process, and prints Mininet's pingall
matrix: one row per source host, the hosts it reached, X for those it
did not; then "N/M reachable, P% lost". Exit status 0 when every pair
reached, 1 otherwise.

Options:
  -c, --count N      echo requests per pair (default 1)
  -W, --timeout S    seconds to wait for each reply (default 1)
  -i, --interval S   seconds between rounds (default 0.2)
  --json             the pairs as JSON: {"pairs": [{"from", "to", "ok",
                     "sent", "received", "rtt_ms"}...], "reachable",
                     "total", "lost_percent"}]],
  run = function(args, cli)
    local o, pos = cli.getopt(args, { c = "number", count = "number", W = "string",
      timeout = "string", i = "string", interval = "string", json = "flag" })
    local name = table.remove(pos, 1)
    if not name then cli.usage_error("missing LAB") end
    local opts = { count = o.c or o.count, hosts = #pos > 0 and pos or nil }
    for _, k in ipairs { { "W", "timeout" }, { "i", "interval" } } do
      local v = o[k[1]] or o[k[2]]
      if v then
        opts[k[2]] = tonumber(v)
        if not opts[k[2]] then cli.usage_error("--" .. k[2] .. ": seconds expected, got " .. v) end
      end
    end
    local lab, err, e = require("isle.lab").open(name)
    if not lab then return nil, err, e end
    local okc, res, msg, en = pcall(lab.pingall, lab, opts)
    if not okc then return nil, (tostring(res):gsub("^.-bad argument", "bad argument")) end
    if not res then return nil, msg, en end
    local ping = require "isle.lab.ping"
    local reach, total, lost = ping.summary(res)
    if o.json then
      cli.stdout:write(cli.json { pairs = res, reachable = reach, total = total,
        lost_percent = math.floor(lost * 10 + 0.5) / 10 }, "\n")
    else
      local rows, order = {}, {}
      for _, r in ipairs(res) do
        if not rows[r.from] then
          rows[r.from] = {}
          order[#order + 1] = r.from
        end
        local t = rows[r.from]
        t[#t + 1] = r.ok and r.to or "X"
      end
      for _, from in ipairs(order) do
        cli.stdout:write(from, " -> ", table.concat(rows[from], " "), "\n")
      end
      cli.stdout:write(format("%d/%d reachable, %s%% lost\n", reach, total,
        (format("%.1f", lost):gsub("%.0$", ""))))
    end
    return reach == total and 0 or 1
  end,
}
