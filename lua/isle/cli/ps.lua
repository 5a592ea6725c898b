--- `isle ps [--json]`: named containers (docker ps -a); `isle ps LAB
-- [--json]`: a lab's services (see isle.cli.lab_ps).
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.ps
local format, concat = string.format, table.concat

local M = {
  summary = "named containers, or a lab's services",
  usage = [[isle ps [--json]
isle ps LAB [--json]

Without LAB: the containers started with isle run --name: NAME, PID (1 of
the container, seen from here), STATE (running, exited, dead: ended with
nobody to record it, starting), STATUS (exit status), UPTIME, COMMAND.
Ended ones stay until isle rm NAME. --json: a JSON array of the same (see
isle inspect).

With LAB: one row per service of lab LAB, in start order: HOST, SERVICE,
PID, STATE (waiting: for those it starts after; starting: not ready yet;
running; backoff: restarting after a failure; stopping; exited; failed;
stopped), RESTARTS (since up or the last `isle restart`) and UPTIME.
--json: a JSON list of {host, service, pid, state, restarts, uptime
(seconds, while running), why}.]],
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
    cli.stdout:write(cli.json(list), "\n")
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
    if #pos > 1 then
      cli.usage_error("unexpected argument '" .. pos[2] .. "'")
    end
    return require("isle.cli.lab_ps").ps(cli, pos[1], opts.json)
  end
  return M.containers(opts, cli)
end

return M
