--- `isle enter NAME [OPTIONS] -- CMD`: run a command in a named container,
-- joining all its namespaces and cgroups (as `docker exec`).
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.enter

return {
  summary = "run a command inside a named container (as docker exec)",
  usage = [[isle enter NAME [OPTIONS] -- CMD [ARG...]

Runs CMD in the namespaces (pid, mount, uts, ipc, net, cgroup, user) and the
cgroups of the container started with isle run --name NAME, with its
capabilities and no_new_privs. The exit status is CMD's.

Options:
  -e NAME=VALUE   set a variable (repeatable)
  -w DIR          working directory inside (default /)
  -i              keep stdin attached (default: /dev/null)
  -t              a pseudo-terminal (-it for a shell)]],
  run = function(args, cli)
    local run = require "isle.cli.run"
    local expanded = run.expand(args, "it")
    local opts, pos, cmd = cli.getopt(expanded, { e = "list", w = "string", i = "flag",
      t = "flag" })
    if #pos ~= 1 then
      cli.usage_error(#pos == 0 and "missing NAME" or "unexpected argument '" .. pos[2] .. "'")
    end
    if #cmd == 0 then
      cli.usage_error("missing command (isle enter NAME -- CMD)")
    end
    local spec = run.spec({ e = opts.e, w = opts.w, t = opts.t }, cmd, cli)
    local c, err, e = require("isle.container").open(pos[1])
    if not c then
      return nil, err, e
    end
    local p, master
    p, master, e = c:exec { argv = cmd, env = spec.env, cwd = spec.cwd, tty = spec.tty,
      stdin = (opts.i or opts.t) and nil or "null" }
    c:close()
    if not p then
      return nil, master, e
    end
    if master then
      require("isle.container").relay(p, master, opts.i or false)
    end
    local ok, how, code = p:wait()
    p:close()
    if how ~= "exit" and how ~= "signal" then
      return nil, how
    end
    return cli.status(ok, how, code)
  end,
}
