--- `isle ps [--json]`: named containers (docker ps -a). `isle ps LAB` (a
-- lab's services) is `M.lab`, when a lab module installs it.
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.ps
local format, concat = string.format, table.concat

local M = {
  summary = "named containers: state, exit status, uptime, command",
  usage = [[isle ps [--json]

Lists the containers started with isle run --name: NAME, PID (1 of the
container, seen from here), STATE (running, exited, dead: ended with nobody
to record it, starting), STATUS (exit status), UPTIME, COMMAND. Ended ones
stay until isle rm NAME. --json: a JSON array of the same (see isle inspect).]],
}

--- "3s", "5m", "2h", "4d".
function M.duration(s)
  if s < 60 then
    return format("%ds", s)
  elseif s < 3600 then
    return format("%dm", s // 60)
  elseif s < 86400 then
    return format("%dh", s // 3600)
  end
  return format("%dd", s // 86400)
end

--- The states of every named container, sorted by name.
function M.states()
  local container = require "isle.container"
  local out = {}
  for _, name in ipairs(container.list()) do
    local c = container.open(name)
    local st = c and c:status()
    if c then
      c:close()
    end
    out[#out + 1] = st
  end
  return out
end

local function row(st, now)
  local status, uptime = "-", "-"
  if st.exit then
    status = st.exit.how == "signal" and format("signal %d", st.exit.code)
      or format("exit %d", st.exit.code)
    if st.exit.oom then
      status = status .. " (oom)"
    end
  end
  if st.state == "running" and st.started then
    uptime = M.duration(math.max(0, now - st.started))
  end
  local cmd = st.argv and concat(st.argv, " ") or "-"
  if #cmd > 40 then
    cmd = cmd:sub(1, 37) .. "..."
  end
  return { st.name, st.state == "running" and tostring(st.pid) or "-", st.state, status, uptime,
    cmd }
end

--- `isle ps`: the named containers as a table or JSON.
function M.containers(opts, cli)
  local states = M.states()
  if opts.json then
    local list = {}
    for _, st in ipairs(states) do
      list[#list + 1] = { name = st.name, pid = st.pid, state = st.state, exit = st.exit,
        started = st.started, argv = st.argv, uptime = st.state == "running" and st.started
          and os.time() - st.started or nil }
    end
    cli.stdout:write(require("isle.cli.inspect").json(list), "\n")
    return 0
  end
  local rows = { { "NAME", "PID", "STATE", "STATUS", "UPTIME", "COMMAND" } }
  local now = os.time()
  for _, st in ipairs(states) do
    rows[#rows + 1] = row(st, now)
  end
  cli.table(rows)
  return 0
end

function M.run(args, cli)
  local opts, pos = cli.getopt(args, { json = "flag", a = "flag", all = "flag" })
  if #pos > 0 then
    if M.lab then
      return M.lab(pos, opts, cli)
    end
    cli.usage_error("unexpected argument '" .. pos[1] .. "'")
  end
  return M.containers(opts, cli)
end

return M
