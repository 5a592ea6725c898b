--- `isle up FILE.lua [ARGS...]`: build the lab a topology script returns.
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.up

return {
  summary = "build the lab a topology script returns",
  usage = [[isle up [--quiet] FILE.lua [ARGS...]

Runs the topology script FILE.lua (ARGS are passed to it as `...`; the
examples take their size from there), which returns its lab, then builds
the lab: all or nothing. Each host becomes the named network namespace
LAB-HOST (`ip netns exec LAB-HOST CMD` works) with its own hostname.
Each host has a filesystem of its own (private /run, /tmp, /var/tmp,
/var/log, its `files`), then its services start (`isle ps LAB`); when
one does not get ready, up fails, undoes everything and shows the end
of its log. The lab's state is kept under /run/isle/LAB; `isle down LAB`
removes it, also after `isle up` was killed.

Options:
  -q, --quiet   print nothing on success (no progress, no summary)]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { quiet = "flag", q = "flag" })
    local quiet = opts.quiet or opts.q
    local file = pos[1]
    if not file then
      cli.usage_error("missing FILE.lua")
    end
    local isle = require "isle"
    local lab, msg = isle.lab.load(file, table.unpack(pos, 2))
    if not lab then
      return nil, msg
    end
    local plan = lab:validate()
    local progress
    if not quiet and #plan.hosts >= 50 and cli.isatty(2) then
      progress = function(phase, done, total)
        if done == total or done % 10 == 0 then
          cli.stderr:write(string.format("\r%s: %-10s %d/%d", lab.name, phase, done, total))
          if done == total and phase == "links" then
            cli.stderr:write("\r\27[K")
          end
        end
      end
    end
    local ok, err = lab:up { progress = progress }
    if not ok then
      if progress then cli.stderr:write("\r\27[K") end
      local first, rest = tostring(err):match("^([^\n]*)\n(.*)$")
      if rest then -- a service that did not get ready: the tail of its log
        cli.stderr:write("isle: ", first, "\n  ", (rest:gsub("\n", "\n  ")), "\n")
        return 1
      end
      return nil, err
    end
    if not quiet then
      local nlinks = #plan.links + (plan.uplink and 1 or 0)
      cli.stdout:write(string.format("lab %s up: %d hosts, %d switches, %d links\n", lab.name,
        #plan.hosts, #plan.switches, nlinks))
    end
  end,
}
