--- `isle exec NAME HOST -- CMD...`: run a command on a lab host.
-- @module isle.cli.exec
return {
  summary = "run a command on a lab host",
  usage = [[isle exec NAME HOST -- CMD [ARGS...]

Runs CMD on host HOST of lab NAME: in the host's network, uts and time
namespaces, with its hosts file (lab hosts resolve by name), as
`ip netns exec NAME-HOST CMD` would. Standard input and output are
isle's own; the exit status is CMD's (128+N when killed by signal N).]],
  run = function(args, cli)
    local _, pos, rest, dashdash = cli.getopt(args, {})
    if #pos < 2 then
      cli.usage_error("missing " .. (#pos == 0 and "NAME" or "HOST"))
    end
    if #pos > 2 then
      cli.usage_error("put the command after --")
    end
    if not dashdash or #rest == 0 then
      cli.usage_error("missing -- CMD")
    end
    cli.stdout:flush()
    -- isle.lab.spawn's way, without loading what builds and undoes labs;
    -- root's command replaces this process, as `ip netns exec` does (an
    -- unprivileged user's keeps the lab context's lock: a child)
    local entry = require "isle.lab.entry"
    entry.checkname("spawn", "name", pos[1])
    entry.checkname("spawn", "host", pos[2])
    local start = require("isle.core").ids() == 0 and entry.exec or entry.spawn
    local p, msg = start(pos[1], pos[2], { argv = rest })
    if not p then
      return nil, msg
    end
    return cli.status(p:wait())
  end,
}
