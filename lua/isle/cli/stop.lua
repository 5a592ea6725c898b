--- `isle stop NAME`: stop a named container (TERM, then KILL after a grace
-- period) and wait for its end.
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.stop
local format = string.format

return {
  summary = "stop a named container: TERM, then KILL after a grace period",
  usage = [[isle stop [-t SECONDS] NAME

Sends TERM to the container's PID 1 (its init forwards it to the command),
then KILL after SECONDS (default 10), and waits for its end (its cgroups go;
its state, exit status and log stay until isle rm NAME).]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { t = "string", time = "string" })
    if #pos ~= 1 then
      cli.usage_error(#pos == 0 and "missing NAME" or "unexpected argument '" .. pos[2] .. "'")
    end
    local grace = 10
    local t = opts.t or opts.time
    if t then
      grace = tonumber(t)
      if not grace or grace < 0 then
        cli.usage_error(format("-t: number of seconds expected, got '%s'", t))
      end
    end
    local c, err, e = cli.open_container(pos[1])
    if not c then
      return nil, err, e
    end
    local _, how, e2 = c:stop(grace)
    c:close()
    if how ~= "exit" and how ~= "signal" and how ~= "dead" and how ~= "removed" then
      return nil, how, e2
    end
    return 0
  end,
}
