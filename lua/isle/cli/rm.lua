--- `isle rm [-f] NAME...`: remove named containers' state.
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.rm
return {
  summary = "remove a named container's state (its exit status, its log)",
  usage = [[isle rm [-f] NAME...

Removes the state of containers started with isle run --name NAME once they
have ended (their exit status, their log, what a crash left, cgroups too).
-f: a running one too (killed first).]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { f = "flag", force = "flag" })
    if #pos == 0 then
      cli.usage_error("missing NAME")
    end
    local failed
    for _, name in ipairs(pos) do
      local c, msg, e = cli.open_container(name)
      local ok
      if c then
        ok, msg, e = c:rm(opts.f or opts.force)
        c:close()
      end
      if not (c and ok) then
        cli.stderr:write("isle: ", msg, "\n")
        failed = e or 1
      end
    end
    return failed and 1 or 0
  end,
}
