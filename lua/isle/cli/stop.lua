--- `isle stop NAME`: stop a named container (TERM, then KILL after a grace
-- period) and wait until its monitor has cleaned up.
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.stop
local format = string.format

return {
  summary = "stop a named container: TERM, then KILL after a grace period",
  usage = [[isle stop [-t SECONDS] NAME

Sends TERM to the container's PID 1 (its init forwards it to the command),
then KILL after SECONDS (default 10), and waits until the container is gone
and its cgroups and state are removed.]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { t = "string" })
    if #pos ~= 1 then
      cli.usage_error(#pos == 0 and "missing NAME" or "unexpected argument '" .. pos[2] .. "'")
    end
    local grace = 10
    if opts.t then
      grace = tonumber(opts.t)
      if not grace or grace < 0 then
        cli.usage_error(format("-t: number of seconds expected, got '%s'", opts.t))
      end
    end
    local name = pos[1]
    local container = require "isle.container"
    local core = require "isle.core"
    local st, err = container._load(name)
    if not st then
      return nil, err
    end
    if st.alive then
      local box, fd, e = core.pidfd_open(st.pid)
      if box then
        core.pidfd_kill(fd, 15)
        if not core.pidfd_wait(fd, grace) then
          core.pidfd_kill(fd, 9)
          core.pidfd_wait(fd, 5)
        end
        box:close()
      elseif e ~= 3 then
        return nil, fd
      end
    end
    -- the monitor removes the state (and the cgroups) once it has waited
    local dir = container._statedir() .. "/" .. name
    for _ = 1, 200 do
      if not core.ino(dir) then
        return 0
      end
      local again = container._load(name)
      if not again or not again.alive then
        -- monitor gone (killed?): clean up for it
        local mon = again and core.ino(format("/proc/%d", again.monitor))
        if not mon then
          for _, g in ipairs(again and again.cgroups or {}) do
            core.rmdir(g.dir)
          end
          container._forget(name)
          return 0
        end
      end
      core.sleep(0.01)
    end
    return nil, format("container '%s': its monitor did not clean up %s", name, dir)
  end,
}
