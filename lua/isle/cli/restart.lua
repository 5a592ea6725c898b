--- `isle restart LAB HOST SERVICE`: restart a lab's service.
-- @module isle.cli.restart
return {
  summary = "restart a lab's service",
  usage = [[isle restart LAB HOST SERVICE

Asks the supervisor of lab LAB to stop service SERVICE on host HOST (TERM,
3 s of grace, KILL) and start it again, and waits until it is ready (its
`ready` check passes) or fails. Its restart count starts again from 0.]],
  run = function(args, cli)
    local _, pos = cli.getopt(args, {})
    if #pos ~= 3 then
      cli.usage_error(#pos < 3 and "missing " .. ({ "LAB", "HOST", "SERVICE" })[#pos + 1]
        or "too many arguments")
    end
    local pid, msg = require("isle").lab.restart(pos[1], pos[2], pos[3])
    if not pid then
      return nil, msg
    end
    cli.stdout:write(string.format("service %s on %s restarted (pid %d)\n", pos[3], pos[2], pid))
  end,
}
