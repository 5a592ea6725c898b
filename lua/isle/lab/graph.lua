--- A lab's plan as Graphviz DOT text, laid out for `dot`: switches and
-- routers ranked above the hosts (each link drawn from the node further
-- from the hosts to the nearer one, the plain hosts on the bottom rank),
-- interface names at the link ends (taillabel/headlabel), addresses on the
-- node labels, a link's impairments as its label; a link that is down is
-- dashed, one that is cut red.
-- @module isle.lab.graph
local M = {}

local ipairs, tostring, math = ipairs, tostring, math
local format, concat = string.format, table.concat

local function dotid(s)
  return '"' .. tostring(s):gsub('[\\"]', "\\%0") .. '"'
end

-- A label text: lines joined with DOT's centred line break.
local function lines(t)
  local out = {}
  for i, s in ipairs(t) do out[i] = tostring(s):gsub('[\\"]', "\\%0") end
  return '"' .. concat(out, "\\n") .. '"'
end

local function node_of(en)
  return en.host or en.switch
end

-- Height of every node: 0 for a host that is no router, else 1 + the
-- least height of its neighbours (breadth first from the hosts); nodes
-- that reach no host get the highest height seen, plus one.
local function heights(plan)
  local adj, h, queue = {}, {}, {}
  for _, l in ipairs(plan.links) do
    local a, b = node_of(l[1]), node_of(l[2])
    adj[a] = adj[a] or {}
    adj[b] = adj[b] or {}
    adj[a][#adj[a] + 1] = b
    adj[b][#adj[b] + 1] = a
  end
  for _, x in ipairs(plan.hosts) do
    if not x.forward then
      h[x.name] = 0
      queue[#queue + 1] = x.name
    end
  end
  local i, top = 1, 0
  while queue[i] do
    local n = queue[i]
    for _, m in ipairs(adj[n] or {}) do
      if h[m] == nil then
        h[m] = h[n] + 1
        top = math.max(top, h[m])
        queue[#queue + 1] = m
      end
    end
    i = i + 1
  end
  for _, x in ipairs(plan.switches) do h[x.name] = h[x.name] or top + 1 end
  for _, x in ipairs(plan.hosts) do h[x.name] = h[x.name] or top + 1 end
  return h
end

local function host_label(x)
  local t = { x.name }
  if x.hostname ~= x.name then t[1] = x.name .. " (" .. x.hostname .. ")" end
  local many = #x.ifaces > 1
  for _, i in ipairs(x.ifaces) do
    for _, a in ipairs(i.ips) do
      t[#t + 1] = many and (i.name .. " " .. a) or a
    end
  end
  return lines(t)
end

-- An end's interface name as drawn next to its node: a switch port
-- without the switch's name in front (s1-eth2 is eth2 at s1).
local function end_label(en)
  local name = en.ifname
  if en.switch and name:sub(1, #en.switch + 1) == en.switch .. "-" then
    name = name:sub(#en.switch + 2)
  end
  return dotid(name)
end

local function edge_attrs(l, upper, lower)
  local attrs = { "taillabel = " .. end_label(upper), "headlabel = " .. end_label(lower) }
  local imp = {}
  for _, k in ipairs { "delay", "jitter", "loss", "rate" } do
    if l[k] then imp[#imp + 1] = k .. " " .. tostring(l[k]) .. (k == "loss" and "%" or "") end
  end
  if l.mtu then imp[#imp + 1] = "mtu " .. l.mtu end
  if l.cut then
    table.insert(imp, 1, "cut")
    attrs[#attrs + 1] = "color = red, fontcolor = red, penwidth = 2"
  elseif #imp > 0 then
    attrs[#attrs + 1] = "color = darkorange, fontcolor = darkorange3"
  end
  if l.down then
    table.insert(imp, 1, "down")
    attrs[#attrs + 1] = "style = dashed"
    if not l.cut then attrs[#attrs + 1] = "color = gray50, fontcolor = gray40" end
  end
  if #imp > 0 then attrs[#attrs + 1] = "label = " .. lines(imp) end
  return concat(attrs, ", ")
end

--- The DOT text of plan `plan` (its links may carry their run-time state:
-- `down`, `cut`).
-- @treturn string
function M.dot(plan)
  local h = heights(plan)
  local out = { "graph " .. dotid(plan.name) .. " {",
    '  graph [fontname = "sans", nodesep = 0.3, ranksep = 1.1, newrank = true];',
    '  node [fontname = "sans", fontsize = 11, margin = "0.08,0.04"];',
    '  edge [fontname = "sans", fontsize = 9, labelfontsize = 8, labeldistance = 2.6, '
      .. "labelangle = 22, labelfontcolor = gray25];" }
  for _, s in ipairs(plan.switches) do
    out[#out + 1] = format("  %s [shape = box, style = \"rounded,filled\", fillcolor = "
      .. "lightblue];", dotid(s.name))
  end
  local bottom = {}
  for _, x in ipairs(plan.hosts) do
    if x.forward then
      out[#out + 1] = format("  %s [shape = box, style = \"rounded,filled,bold\", "
        .. "fillcolor = khaki, label = %s];", dotid(x.name), host_label(x))
    else
      out[#out + 1] = format("  %s [shape = box, label = %s];", dotid(x.name), host_label(x))
      bottom[#bottom + 1] = dotid(x.name)
    end
  end
  if #bottom > 0 then
    out[#out + 1] = "  { rank = max; " .. concat(bottom, "; ") .. "; }"
  end
  if plan.uplink then
    local u = plan.uplink
    out[#out + 1] = format('  "(machine)" [shape = plaintext, label = %s];',
      lines { "(machine)", u.ifname, concat(u.ips, " ") })
    out[#out + 1] = format('  "(machine)" -- %s [headlabel = %s];', dotid(u.switch),
      dotid(u.swifname))
  end
  for _, l in ipairs(plan.links) do
    local a, b = l[1], l[2]
    if h[node_of(b)] > h[node_of(a)] then a, b = b, a end
    out[#out + 1] = format("  %s -- %s [%s];", dotid(node_of(a)), dotid(node_of(b)),
      edge_attrs(l, a, b))
  end
  out[#out + 1] = "}"
  return concat(out, "\n") .. "\n"
end

return M
