--- `isle ps LAB [--json]`: a lab's services (see isle.cli.lab_ps).
-- @module isle.cli.ps
return {
  summary = "a lab's services",
  usage = [[isle ps LAB [--json]

One row per service of lab LAB, in start order: HOST, SERVICE, PID,
STATE (waiting: for those it starts after; starting: not ready yet;
running; backoff: restarting after a failure; stopping; exited; failed;
stopped), RESTARTS (since up or the last `isle restart`) and UPTIME.

Options:
  --json   the same as a JSON list of {host, service, pid, state,
           restarts, uptime (seconds, while running), why}]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { json = "flag" })
    if #pos ~= 1 then
      cli.usage_error(#pos == 0 and "missing LAB" or "too many arguments")
    end
    return require("isle.cli.lab_ps").ps(cli, pos[1], opts.json)
  end,
}
