--- `isle link LAB A B [up|down|cut|uncut] [impairments]`: change a link
-- of a running lab in place.
-- @module isle.cli.link
local ACTIONS = { up = { up = true }, down = { up = false }, cut = { cut = true },
  uncut = { cut = false } }

return {
  summary = "take a link of a running lab down/up, cut it, change its impairments",
  usage = [[isle link LAB A B [up|down|cut|uncut] [OPTIONS]
       isle link LAB NAME [up|down|cut|uncut] [OPTIONS]

Changes one link of running lab LAB in place, as Mininet's `link h1 s1
down` and containerlab's `tools netem set` do. The link is given by its
two ends (node names; NODE:IFNAME when several links join the same
nodes) or by its name (h1-s1, as `isle ls LAB` shows it).

  up, down     both ends' carrier (the kernel drops the routes through a
               link that is down; up puts the lab's own ones back)
  cut, uncut   drop everything both ways, carrier kept (a silent failure)

Impairments apply in both directions (both ends), through netem where
the kernel has sch_netem, else tbf (rate) and nftables (loss); delay and
jitter need sch_netem.

Options:
  --delay D    e.g. 10ms, 500us, 1s
  --jitter J   (needs a delay)
  --loss P     percent
  --rate R     e.g. 10mbit, 1gbit, 125kbps
  --clear      remove every impairment first

Without an action or option: the link's state.]],
  run = function(args, cli)
    local o, pos = cli.getopt(args, { delay = "string", jitter = "string", loss = "string",
      rate = "string", clear = "flag" })
    local name = table.remove(pos, 1)
    if not name then cli.usage_error("missing LAB") end
    local opts = {}
    if ACTIONS[pos[#pos]] and #pos >= 2 then
      for k, v in pairs(ACTIONS[table.remove(pos)]) do opts[k] = v end
    end
    if #pos < 1 or #pos > 2 then
      cli.usage_error(#pos < 1 and "missing the link (A B or NAME)" or "too many arguments")
    end
    if o.clear then
      opts.delay, opts.jitter, opts.loss, opts.rate = false, false, false, false
    end
    for _, k in ipairs { "delay", "jitter", "rate" } do
      if o[k] then opts[k] = o[k] end
    end
    if o.loss then
      opts.loss = tonumber(o.loss)
      if not opts.loss then
        cli.usage_error("--loss: a percentage expected, got '" .. o.loss .. "'")
      end
    end
    -- the lab's own modules only (not isle.lab and what it loads): a
    -- link change is a command of a few milliseconds
    local entry, links = require "isle.lab.entry", require "isle.lab.links"
    entry.checkname("open", "name", name, 2)
    if entry.RESERVED[name] then return nil, "lab " .. name .. ": no such lab", 2 end
    -- only the lines of the model this link needs are read, once
    if next(opts) == nil then -- show it
      local p, err, e = require("isle.lab.state").current_link(name, pos[1], pos[2])
      if not p then return nil, err, e end
      local idx, l, msg = links.find(p, pos[1], pos[2])
      if not idx then return nil, l, msg end
      local impair = require "isle.lab.impair"
      local st = links.state_of(l)
      cli.stdout:write(string.format("%s %s:%s - %s:%s %s%s%s\n", l.name,
        l[1].host or l[1].switch, l[1].ifname, l[2].host or l[2].switch, l[2].ifname,
        st.down and "down" or st.cut and "cut" or "up",
        impair.text(st) ~= "" and " " or "", impair.text(st)))
      return
    end
    local ok, r, msg, en = pcall(links.set, name, nil, pos[1], pos[2], opts)
    if not ok then
      return nil, (tostring(r):gsub("^.-bad argument", "bad argument"))
    end
    if not r then return nil, msg, en end
  end,
}
