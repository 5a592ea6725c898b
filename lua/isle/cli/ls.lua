--- `isle ls [NAME] [--json]`: labs; a lab's hosts, switches, links,
-- routes and impairments.
-- @module isle.cli.ls
local format, concat = string.format, table.concat

local function state(info)
  if info.gone and info.complete then return "gone" end
  if info.apply then return "applying" end
  if info.complete then return "up" end
  if info.alive then return "building" end
  return "broken"
end

local function list(cli, opts)
  local lab = require("isle").lab
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
end

local function impairments(l)
  local t = {}
  for _, k in ipairs { "delay", "jitter", "loss", "rate" } do
    local v = l.impairments[k]
    if v ~= nil then t[#t + 1] = k .. " " .. tostring(v) .. (k == "loss" and "%" or "") end
  end
  return #t > 0 and concat(t, ", ") or "-"
end

-- One lab, as tables of text.
local function show(cli, d)
  local out = cli.stdout
  out:write(format("lab %s: %s, link emulation %s\n", d.name, d.state, d.backend or "?"))
  local rows = { { "HOST", "HOSTNAME", "IFACE", "STATE", "ADDRESSES", "PEER" } }
  for _, h in ipairs(d.hosts) do
    local name = h.name .. (h.router and " (router)" or "")
    if #h.interfaces == 0 then rows[#rows + 1] = { name, h.hostname, "-", "", "", "" } end
    for i, ifc in ipairs(h.interfaces) do
      rows[#rows + 1] = { i == 1 and name or "", i == 1 and h.hostname or "", ifc.name,
        ifc.up == false and "down" or "up", concat(ifc.addresses, " "), ifc.peer or "" }
    end
  end
  out:write("\n")
  cli.table(rows)
  if #d.switches > 0 then
    rows = { { "SWITCH", "PORTS" } }
    for _, s in ipairs(d.switches) do
      rows[#rows + 1] = { s.name, #s.ports > 0 and concat(s.ports, " ") or "-" }
    end
    out:write("\n")
    cli.table(rows)
  end
  if #d.links > 0 then
    rows = { { "LINK", "ENDS", "STATE", "IMPAIRMENTS", "BACKEND" } }
    for _, l in ipairs(d.links) do
      local e1, e2 = l.ends[1], l.ends[2]
      rows[#rows + 1] = { l.name, format("%s:%s -- %s:%s", e1.node, e1.ifname, e2.node,
        e2.ifname), l.state, impairments(l), l.backend or "-" }
    end
    out:write("\n")
    cli.table(rows)
  end
  rows = { { "HOST", "SERVICE", "STATE", "PID" } }
  for _, h in ipairs(d.hosts) do
    for i, sv in ipairs(h.services or {}) do
      rows[#rows + 1] = { i == 1 and h.name or "", sv.name, sv.state, tostring(sv.pid or "-") }
    end
  end
  if #rows > 1 then
    out:write("\n")
    cli.table(rows)
  end
  rows = { { "HOST", "ROUTE" } }
  for _, h in ipairs(d.hosts) do
    for _, r in ipairs(h.routes) do
      if not r.connected then
        rows[#rows + 1] = { h.name, r.dst .. (r.via and " via " .. r.via or "")
          .. (r.dev and " dev " .. r.dev or "") .. ((r.metric or 0) > 0 and " metric "
          .. r.metric or "") }
      end
    end
  end
  if #rows > 1 then
    out:write("\n")
    cli.table(rows)
  end
  if #d.nat > 0 or d.uplink then
    out:write("\n")
    for _, x in ipairs(d.nat) do
      out:write(format("nat: %s masquerades out of %s%s\n", x.host, x.out,
        x.source and " from " .. x.source or ""))
    end
    if d.uplink then
      local u = d.uplink
      out:write(format("uplink: %s (machine) -- %s:%s %s\n", u.ifname, u.switch, u.port,
        concat(u.addresses, " ")))
    end
  end
end

return {
  summary = "labs; a lab's hosts, switches, links, routes, impairments",
  usage = [[isle ls [--json] [NAME]

Without NAME: one row per lab (NAME, STATE, HOSTS, SWITCHES, LINKS).
STATE is "up", "building" (isle up still running), "applying" (isle
apply running, or killed: the next apply or link change rolls it back)
or "broken" (the builder died: `isle down NAME` removes what it made),
or "gone" (its namespaces ended with the holder of an unprivileged user's
labs, README "Rootless labs": `isle down NAME` removes the rest).
With NAME: the lab's hosts and their interfaces (state, addresses read
from the kernel, the peer at the link's other end), its switches and
their ports, every link with both ends, its state (up, down, cut), its
impairments and the mechanism that carries them (netem; tbf, nft), the
hosts' services (state and pid, as the lab's supervisor last wrote them:
isle ps LAB has more) and routes. Interfaces and ports are sorted.

Options:
  --json   the same as JSON (the schema is in the README, "isle ls --json")]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { json = "flag" })
    if #pos > 1 then
      cli.usage_error("too many arguments")
    end
    if not pos[1] then
      return list(cli, opts)
    end
    local lab = require("isle").lab
    local info, err, e = lab.info(pos[1])
    if not info then
      return nil, err, e
    end
    if not info.plan then
      return nil, format("lab %s: %s, without a description (isle down %s removes it)", pos[1],
        state(info), pos[1])
    end
    local d
    d, err, e = lab.describe(pos[1])
    if not d then
      return nil, err, e
    end
    if opts.json then
      cli.stdout:write(cli.json(d), "\n")
      return
    end
    show(cli, d)
  end,
}
