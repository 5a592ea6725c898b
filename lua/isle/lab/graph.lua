--- A lab's plan as Graphviz DOT text: hosts as boxes (routers as
-- octagons), switches as ellipses, links labelled with interface names,
-- addresses and impairments.
-- @module isle.lab.graph
local M = {}

local ipairs, tostring = ipairs, tostring
local format, concat = string.format, table.concat

local function dotid(s)
  return '"' .. tostring(s):gsub('[\\"]', "\\%0") .. '"'
end

--- The DOT text of plan `plan`.
-- @treturn string
function M.dot(plan)
  local out = { "graph " .. dotid(plan.name) .. " {",
    '  graph [overlap = false, fontname = "sans"];',
    '  node [fontname = "sans"]; edge [fontname = "sans", fontsize = 10];' }
  for _, s in ipairs(plan.switches) do
    out[#out + 1] = format("  %s [shape = ellipse, style = filled, fillcolor = lightblue];",
      dotid(s.name))
  end
  for _, h in ipairs(plan.hosts) do
    local label = h.name
    if h.hostname ~= h.name then label = label .. "\\n(" .. h.hostname .. ")" end
    if h.forward then label = label .. "\\nrouter" end
    out[#out + 1] = format("  %s [shape = %s, label = %s];", dotid(h.name),
      h.forward and "octagon" or "box", '"' .. label .. '"')
  end
  if plan.uplink then
    out[#out + 1] = '  "(machine)" [shape = plaintext];'
    out[#out + 1] = format('  "(machine)" -- %s [label = %s];', dotid(plan.uplink.switch),
      dotid(plan.uplink.ifname .. " " .. concat(plan.uplink.ips, " ")))
  end
  for _, l in ipairs(plan.links) do
    local function lbl(en)
      local s = en.ifname
      if #en.ips > 0 then s = s .. "\\n" .. concat(en.ips, "\\n") end
      return '"' .. s .. '"'
    end
    local attrs = { "taillabel = " .. lbl(l[1]), "headlabel = " .. lbl(l[2]) }
    local imp = {}
    for _, k in ipairs { "delay", "jitter", "loss", "rate", "mtu" } do
      if l[k] then imp[#imp + 1] = k .. " " .. tostring(l[k]) .. (k == "loss" and "%" or "") end
    end
    if #imp > 0 then attrs[#attrs + 1] = "label = " .. dotid(concat(imp, ", ")) end
    out[#out + 1] = format("  %s -- %s [%s];", dotid(l[1].host or l[1].switch),
      dotid(l[2].host or l[2].switch), concat(attrs, ", "))
  end
  out[#out + 1] = "}"
  return concat(out, "\n") .. "\n"
end

return M
