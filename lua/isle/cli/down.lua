--- `isle down NAME...`: remove labs, also after a crash.
-- @module isle.cli.down
return {
  summary = "remove a lab, also after a crash",
  usage = [[isle down [--quiet] [--wait] NAME...

Ends every process still running in the lab's namespaces (its services,
`isle exec` and `isle shell` processes, containers on its hosts: TERM,
3 s of grace, KILL) and says how many; then removes exactly what lab NAME
made, as recorded under /run/isle/NAME while it was built: its host
namespaces and filesystems, hostnames, hosts files, switches and uplink.
Works after `isle up` was killed at any moment, and never removes
anything the lab did not make. `isle down --all` removes every lab.
Returns once nothing of the lab is left that a following `isle up` could
run into (names, files, the uplink); the kernel goes on dismantling the
namespaces in the background for a while (seconds for thousands of
hosts), which --wait waits for (benchmarks, scripts short of memory).

Options:
  -q, --quiet   print nothing on success
  --all         every lab listed by `isle ls`
  --wait        return once the kernel has dismantled the namespaces]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { quiet = "flag", q = "flag", all = "flag",
      wait = "flag" })
    local lab = require("isle").lab
    if opts.all then
      if #pos > 0 then cli.usage_error("--all takes no NAME") end
      pos = lab.list()
    elseif #pos == 0 then
      cli.usage_error("missing NAME")
    end
    local failed
    for _, name in ipairs(pos) do
      local ok, err = lab.down(name)
      if not ok then
        failed = failed or err
        if #pos > 1 then cli.stderr:write("isle: ", err, "\n") end
      elseif not (opts.quiet or opts.q) then
        local n = math.tointeger(err) or 0
        cli.stdout:write("lab ", name, " down", n > 0 and string.format(
          " (ended %d process%s)", n, n == 1 and "" or "es") or "", "\n")
      end
    end
    if opts.wait then
      local ok, err = require("isle.core").netns_settle()
      if not ok then failed = failed or err end
    end
    if failed then
      if #pos > 1 then return 1 end
      return nil, failed
    end
  end,
}
