--- `isle stop NAME`: stop a named container (TERM, then KILL after a grace
-- period) and wait until its state and cgroups are gone.
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.stop
local format = string.format

return {
  summary = "stop a named container: TERM, then KILL after a grace period",
  usage = [[isle stop [-t SECONDS] NAME

Sends TERM to the container's PID 1 (its init forwards it to the command),
then KILL after SECONDS (default 10), and waits until the container is gone
and its cgroups and state are removed (also the state a crash left).]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { t = "string" })
    if #pos ~= 1 then
      cli.usage_error(#pos == 0 and "missing NAME" or "unexpected argument '" .. pos[2] .. "'")
    end
    local grace = 10
    if opts.t then
      grace = tonumber(opts.t)
      if not grace or grace < 0 then
        cli.usage_error(format("-t: number of seconds expected, got '%s'", opts.t))
      end
    end
    local ok, c, err, e = pcall(require("isle.container").open, pos[1])
    if not ok then
      cli.usage_error(tostring(c):gsub("^bad argument %S+ to '%w+' %((.*)%)$", "%1"))
    end
    if not c then
      return nil, err, e
    end
    local done, msg, e2 = c:stop(grace)
    c:close()
    if not done and msg then
      return nil, msg, e2
    end
    return 0
  end,
}
