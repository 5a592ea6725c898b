--- `isle ls [NAME] [--json]`: labs, their hosts, interfaces and addresses.
-- @module isle.cli.ls
local format, concat = string.format, table.concat

local function state(info)
  if info.complete then return "up" end
  if info.alive then return "building" end
  return "broken"
end

return {
  summary = "labs, hosts, interfaces, addresses",
  usage = [[isle ls [--json] [NAME]

Without NAME: one row per lab (NAME, STATE, HOSTS, SWITCHES, LINKS).
STATE is "up", "building" (isle up still running) or "broken" (the
builder died: `isle down NAME` removes what it made).
With NAME: one row per host interface (HOST, HOSTNAME, NETNS, IFACE,
ADDRESSES), read from the kernel.

Options:
  --json   the same as JSON]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { json = "flag" })
    if #pos > 1 then
      cli.usage_error("too many arguments")
    end
    local lab = require("isle").lab
    if not pos[1] then
      local labs = {}
      for _, name in ipairs(lab.list()) do
        local info = lab.info(name)
        if info then
          local p = info.plan or { hosts = {}, switches = {}, links = {} }
          labs[#labs + 1] = { name = name, state = state(info), hosts = #p.hosts,
            switches = #p.switches, links = #p.links, pid = info.alive and info.pid or nil }
        end
      end
      if opts.json then
        cli.stdout:write(cli.json(labs), "\n")
        return
      end
      local rows = { { "NAME", "STATE", "HOSTS", "SWITCHES", "LINKS" } }
      for _, l in ipairs(labs) do
        rows[#rows + 1] = { l.name, l.state, l.hosts, l.switches, l.links }
      end
      if #labs > 0 then cli.table(rows) end
      return
    end
    local info, err = lab.info(pos[1])
    if not info then
      return nil, err
    end
    if not info.plan then
      return nil, format("lab %s: %s, without a description (isle down %s removes it)", pos[1],
        state(info), pos[1])
    end
    local hosts, kernel = {}, lab.interfaces(pos[1]) or {}
    for _, h in ipairs(info.plan.hosts) do
      local ifaces = kernel[h.name]
      if not ifaces then -- not built (yet): the declaration
        ifaces = {}
        for _, i in ipairs(h.ifaces) do
          ifaces[#ifaces + 1] = { name = i.name, addresses = i.ips }
        end
      end
      hosts[#hosts + 1] = { name = h.name, hostname = h.hostname, netns = h.netns,
        interfaces = ifaces }
    end
    if opts.json then
      local sw = {}
      for _, s in ipairs(info.plan.switches) do sw[#sw + 1] = s.name end
      cli.stdout:write(cli.json { name = pos[1], state = state(info), hosts = hosts,
        switches = sw }, "\n")
      return
    end
    local rows = { { "HOST", "HOSTNAME", "NETNS", "IFACE", "ADDRESSES" } }
    for _, h in ipairs(hosts) do
      if #h.interfaces == 0 then
        rows[#rows + 1] = { h.name, h.hostname, h.netns, "-", "" }
      end
      for i, ifc in ipairs(h.interfaces) do
        rows[#rows + 1] = { i == 1 and h.name or "", i == 1 and h.hostname or "",
          i == 1 and h.netns or "", ifc.name, concat(ifc.addresses, " ") }
      end
    end
    cli.table(rows)
  end,
}
