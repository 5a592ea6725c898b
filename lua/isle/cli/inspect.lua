--- `isle inspect NAME [--json]`: a named container's state.
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.inspect
local format, concat = string.format, table.concat

local M = {
  summary = "a named container's state (running or ended)",
  usage = [[isle inspect NAME [--json]

Prints the state of the container started with isle run --name NAME: its
state (running, exited, dead: ended with nobody to record it, starting), PID
1, exit status, start time, command, hostname, environment, capabilities,
user, cgroups, log. --json: the same as one JSON object.]],
}

--- The state of container `name` (a table, see Container:status), or nil,
-- msg, errno; raises a usage error for a bad name.
function M.status(name, cli)
  local c, msg, e = cli.open_container(name)
  if not c then
    return nil, msg, e
  end
  local st
  st, msg, e = c:status()
  c:close()
  return st, msg, e
end

local function text(st)
  local lines = {}
  local function add(k, v)
    if v ~= nil then
      lines[#lines + 1] = format("%-12s %s", k, tostring(v))
    end
  end
  add("name", st.name)
  add("state", st.state)
  add("pid", st.pid)
  if st.exit then
    add("exit", format("%s %d%s", st.exit.how, st.exit.code, st.exit.oom and " (oom)" or ""))
  end
  add("started", st.started and os.date("!%Y-%m-%dT%H:%M:%SZ", st.started))
  add("command", st.argv and concat(st.argv, " "))
  add("hostname", st.hostname)
  add("user", st.user)
  add("privileged", st.privileged)
  add("rootless", st.rootless)
  add("caps", type(st.caps) == "table" and concat(st.caps, ",") or st.caps)
  add("cgroups", #st.cgroups > 0 and concat(st.cgroups, " ") or nil)
  add("log", st.log)
  add("state dir", st.dir)
  return concat(lines, "\n") .. "\n"
end

function M.run(args, cli)
  local opts, pos = cli.getopt(args, { json = "flag" })
  if #pos ~= 1 then
    cli.usage_error(#pos == 0 and "missing NAME" or "unexpected argument '" .. pos[2] .. "'")
  end
  local st, msg, e = M.status(pos[1], cli)
  if not st then
    return nil, msg, e
  end
  cli.stdout:write(opts.json and cli.json(st) .. "\n" or text(st))
  return 0
end

return M
