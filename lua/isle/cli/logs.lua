--- `isle logs NAME [-f] [-n N]`: a detached container's output; `isle logs
-- LAB HOST SERVICE [-f] [-n N]`: a lab service's log (see isle.cli.lab_ps).
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.logs

local M = {
  summary = "a detached container's output, or a lab service's",
  usage = [[isle logs NAME [-f] [-n N]
isle logs LAB HOST SERVICE [-f] [-n N]

Prints the output (stdout and stderr) of the container started with
isle run -d --name NAME, kept until isle rm NAME; or the log of service
SERVICE on host HOST of lab LAB: its standard output and error, with
lines "isle: TIME: ..." where it was started, got ready and ended (kept
under /run/isle/LAB/logs until isle down).

Options:
  -n, --lines, --tail N   only the last N lines
  -f, --follow            then print what is appended, until the container
                          ends or the lab goes down (or Ctrl-C)]],
}

--- `isle logs NAME`: the container's log on stdout.
function M.container(name, opts, cli)
  local c, msg, e = cli.open_container(name)
  if not c then
    return nil, msg, e
  end
  local text
  if opts.f then
    text, msg, e = c:follow(function(s)
      cli.stdout:write(s)
      cli.stdout:flush()
    end, opts.n)
  else
    text, msg, e = c:logs(opts.n)
    if text then
      cli.stdout:write(text)
    end
  end
  c:close()
  if not text then
    return nil, msg, e
  end
  return 0
end

function M.run(args, cli)
  local opts, pos = cli.getopt(args, { f = "flag", follow = "flag", n = "number",
    tail = "number", lines = "number" })
  opts.f, opts.n = opts.f or opts.follow, opts.n or opts.tail or opts.lines
  if opts.n and opts.n < 0 then
    cli.usage_error("-n: a number of lines >= 0 expected")
  end
  if #pos == 1 then
    return M.container(pos[1], opts, cli)
  elseif #pos == 3 then
    return require("isle.cli.lab_ps").logs(cli, pos[1], pos[2], pos[3], opts.f, opts.n)
  end
  cli.usage_error(#pos == 0 and "missing NAME (or LAB HOST SERVICE)"
    or "unexpected argument '" .. pos[#pos] .. "'")
end

return M
