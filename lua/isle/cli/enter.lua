--- `isle enter NAME [OPTIONS] -- CMD`: run a command in a named container,
-- joining all its namespaces and cgroups (as `docker exec`).
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.enter

return {
  summary = "run a command inside a named container (as docker exec)",
  usage = [[isle enter NAME [OPTIONS] -- CMD [ARG...]

Runs CMD in the namespaces (pid, mount, uts, ipc, net, cgroup, user) and the
cgroups of the container started with isle run --name NAME, with its
capabilities, user, seccomp filter and no_new_privs. The exit status is
CMD's (127 when it is not found).

Options (docker's long names too: --env, --workdir, --interactive, --tty,
--user):
  -e NAME=VALUE   set a variable (repeatable)
  -w DIR          working directory inside (default /)
  -u USER[:GROUP] run as this user (default: the container's)
  -i              keep stdin attached (default: /dev/null)
  -t              a pseudo-terminal (-it for a shell)]],
  run = function(args, cli)
    local run = require "isle.cli.run"
    local expanded = run.expand(args, "it")
    local opts, pos, cmd = cli.getopt(expanded, { e = "list", env = "list", w = "string",
      workdir = "string", i = "flag", interactive = "flag", t = "flag", tty = "flag",
      u = "string", user = "string" })
    run.merge(opts)
    if #pos ~= 1 then
      cli.usage_error(#pos == 0 and "missing NAME" or "unexpected argument '" .. pos[2] .. "'")
    end
    if #cmd == 0 then
      cli.usage_error("missing command (isle enter NAME -- CMD)")
    end
    if opts.t and not cli.isatty(0) then
      cli.fail("the input device is not a TTY (-t needs a terminal on stdin)")
    end
    local spec = run.spec({ e = opts.e, w = opts.w, t = opts.t, u = opts.u }, cmd, cli)
    local c, err, e = cli.open_container(pos[1])
    if not c then
      return nil, err, e
    end
    local p, master
    p, master, e = c:exec { argv = cmd, env = spec.env, cwd = spec.cwd, tty = spec.tty,
      user = spec.user, stdin = (opts.i or opts.t) and nil or "null" }
    c:close()
    if not p then
      local code = run.exec_status(master, e)
      if code then
        cli.fail(master, code)
      end
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
