--- The lab side of `isle ps` and `isle logs`: a lab's services and a
-- service's log (the container side lives in their own verbs).
-- @module isle.cli.lab_ps
local M = {}

local format = string.format

local function duration(s)
  if not s then return "-" end
  if s < 60 then return format("%ds", s // 1) end
  if s < 3600 then return format("%dm%02ds", s // 60, s % 60 // 1) end
  if s < 86400 then return format("%dh%02dm", s // 3600, s % 3600 // 60) end
  return format("%dd%02dh", s // 86400, s % 86400 // 3600)
end

--- `isle ps LAB [--json]`: HOST SERVICE PID STATE RESTARTS UPTIME.
function M.ps(cli, name, json)
  local list, running = require("isle").lab.services(name)
  if not list then
    return nil, running
  end
  if not running then
    cli.stderr:write(format("isle: lab %s: its supervisor is not running; these are the "
      .. "last states it wrote\n", name))
  end
  if json then
    local out = {}
    for i, s in ipairs(list) do
      out[i] = { host = s.host, service = s.name, pid = s.pid ~= 0 and s.pid or nil,
        state = s.state, restarts = s.restarts,
        uptime = s.state == "running" and s.uptime or nil, why = s.why }
    end
    cli.stdout:write(cli.json(out), "\n")
    return
  end
  local rows = { { "HOST", "SERVICE", "PID", "STATE", "RESTARTS", "UPTIME" } }
  for _, s in ipairs(list) do
    local state = s.state
    if s.why and state ~= "running" then state = state .. " (" .. s.why .. ")" end
    rows[#rows + 1] = { s.host, s.name, s.pid ~= 0 and s.pid or "-", state, s.restarts,
      s.state == "running" and duration(s.uptime) or "-" }
  end
  cli.table(rows)
end

-- The last n lines of text s.
local function last(s, n)
  local starts = { 1 }
  for i in s:gmatch("()\n") do starts[#starts + 1] = i + 1 end
  if starts[#starts] > #s then starts[#starts] = nil end
  if n >= #starts then return s end
  return s:sub(starts[#starts - n + 1])
end

--- `isle logs LAB HOST SERVICE [-f] [-n N]`.
function M.logs(cli, name, host, service, follow, n)
  local path, msg = require("isle").lab.service_log(name, host, service)
  if not path then
    return nil, msg
  end
  local core = require "isle.core"
  local f = io.open(path, "rb")
  local text = f and f:read("a") or ""
  cli.stdout:write(n and last(text, n) or text)
  cli.stdout:flush()
  if not follow then
    if f then f:close() end
    return
  end
  -- follow: what is appended, until the log goes (the lab is down)
  while core.ino(path) do
    local more = f and f:read("a") or ""
    if more ~= "" then
      cli.stdout:write(more)
      cli.stdout:flush()
    else
      core.sleep(0.2)
    end
    if not f then f = io.open(path, "rb") end
  end
  if f then f:close() end
end

return M
