--- `isle logs NAME [-f] [-n N]`: a detached container's output. `isle logs
-- LAB HOST SERVICE` (a lab service's log) is `M.lab`, when a lab module
-- installs it.
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.logs

local M = {
  summary = "a detached container's output (its log)",
  usage = [[isle logs NAME [-f] [-n N]

Prints the output (stdout and stderr) of the container started with
isle run -d --name NAME, kept until isle rm NAME.
  -f    follow: print what comes until the container ends
  -n N  only the last N lines]],
}

--- `isle logs NAME`: the container's log on stdout.
function M.container(name, opts, cli)
  local ok, c, msg, e = pcall(require("isle.container").open, name)
  if not ok then
    cli.usage_error(tostring(c):gsub("^bad argument %S+ to '%w+' %((.*)%)$", "%1"))
  end
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
    tail = "number" })
  opts.f, opts.n = opts.f or opts.follow, opts.n or opts.tail
  if opts.n and opts.n < 0 then
    cli.usage_error("-n: a number of lines >= 0 expected")
  end
  if #pos == 1 then
    return M.container(pos[1], opts, cli)
  elseif #pos == 3 and M.lab then
    return M.lab(pos, opts, cli)
  end
  cli.usage_error(#pos == 0 and "missing NAME" or "unexpected argument '" .. pos[2] .. "'")
end

return M
