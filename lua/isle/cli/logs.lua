--- `isle logs LAB HOST SERVICE [-f] [-n N]`: a lab service's log (see
-- isle.cli.lab_ps).
-- @module isle.cli.logs
return {
  summary = "a lab service's output",
  usage = [[isle logs LAB HOST SERVICE [-f] [-n N]

Prints the log of service SERVICE on host HOST of lab LAB: its standard
output and error, with lines "isle: TIME: ..." where it was started, got
ready and ended. The log lives under /run/isle/LAB/logs until `isle down`.

Options:
  -n, --lines N   only the last N lines
  -f, --follow    then print what is appended, until the lab goes down
                  (or Ctrl-C)]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { f = "flag", follow = "flag", n = "number",
      lines = "number" })
    if #pos ~= 3 then
      cli.usage_error(#pos < 3 and "missing " .. ({ "LAB", "HOST", "SERVICE" })[#pos + 1]
        or "too many arguments")
    end
    local n = opts.n or opts.lines
    if n and n < 0 then cli.usage_error("-n: a count >= 0 expected") end
    return require("isle.cli.lab_ps").logs(cli, pos[1], pos[2], pos[3],
      opts.f or opts.follow, n)
  end,
}
