--- `isle apply FILE.lua [--dry-run] [ARGS...]`: change a running lab to
-- match its topology script.
-- @module isle.cli.apply

return {
  summary = "change a running lab to match its script (only the differences)",
  usage = [[isle apply [--dry-run] [--quiet] FILE.lua [ARGS...]

Runs the topology script FILE.lua (ARGS are passed to it) and brings the
running lab of that name to it: creates what is new, removes what is
gone, changes what differs (addresses, routes, NAT, impairments,
hostnames, sysctls, clocks), nothing else. All or nothing, as `isle up`:
a failure leaves the lab as it was, and `isle down` removes everything
after any apply, also one that was killed. A lab that is not running is
built (as by `isle up`). Links that stay keep their state (down, cut);
their impairments become the declared ones.

Options:
  -n, --dry-run   print the changes (+ added, - removed, ~ changed), make none
  -q, --quiet     print nothing on success]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { ["dry-run"] = "flag", n = "flag", quiet = "flag",
      q = "flag" })
    local file = pos[1]
    if not file then cli.usage_error("missing FILE.lua") end
    local isle = require "isle"
    local ok, lab, msg = pcall(isle.lab.load, file, table.unpack(pos, 2))
    if not ok then return nil, tostring(lab) end
    if not lab then return nil, msg end
    local changes, e
    local dry = opts["dry-run"] or opts.n
    -- a running lab: apply at once, its changes counted by the apply (one
    -- plan and one diff, not two)
    local running = not dry and type(lab.name) == "string"
      and require("isle._sys").exists(require("isle.lab.entry").STATE_DIR .. "/" .. lab.name
        .. "/state")
    if not running then
      ok, changes, msg, e = pcall(lab.diff, lab)
      if not ok then return nil, tostring(changes) end
      if not changes then return nil, msg, e end
    end
    if dry then
      for _, c in ipairs(changes) do cli.stdout:write(c, "\n") end
      if #changes == 0 then cli.stdout:write("lab ", lab.name, ": nothing to change\n") end
      return
    end
    local done
    ok, done, msg, e = pcall(lab.apply, lab)
    if not ok then return nil, tostring(done) end
    if not done then return nil, msg, e end
    changes = changes or lab._changes or {}
    if not (opts.quiet or opts.q) then
      cli.stdout:write(string.format("lab %s: %d change%s\n", lab.name, #changes,
        #changes == 1 and "" or "s"))
    end
  end,
}
