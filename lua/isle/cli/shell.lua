--- `isle shell NAME HOST`: an interactive shell on a lab host.
-- @module isle.cli.shell
return {
  summary = "interactive shell on a lab host",
  usage = [[isle shell NAME HOST
       isle shell NAME        (an unprivileged user)

Starts $SHELL (default /bin/sh) on host HOST of lab NAME, as `isle exec`
does; the prompt shows the host ([NAME HOST]), and ISLE_LAB and ISLE_HOST
are set. Exits with the shell's status.

For an unprivileged user, `isle shell NAME` without a host starts the shell
inside that user's lab namespaces (README, "Rootless labs"): root there,
`ip netns list` shows the lab's hosts, `ip netns exec` works.]],
  run = function(args, cli)
    local _, pos = cli.getopt(args, {})
    local inside = #pos == 1 and require("isle.lab.context").inside()
    if #pos ~= 2 and not inside then
      cli.usage_error(#pos < 2 and "missing " .. (#pos == 0 and "NAME" or "HOST")
        or "too many arguments")
    end
    local shell = os.getenv("SHELL")
    if not shell or shell == "" then shell = "/bin/sh" end
    -- the caller's environment, plus the prompt and the lab's coordinates
    local env = {}
    local f = io.open("/proc/self/environ", "rb")
    if f then
      for kv in f:read("a"):gmatch("[^%z]+") do
        local k, v = kv:match("^([^=]+)=(.*)$")
        if k then env[k] = v end
      end
      f:close()
    end
    env.ISLE_LAB, env.ISLE_HOST = pos[1], pos[2]
    local where = pos[2] and pos[1] .. " " .. pos[2] or pos[1]
    env.PS1 = string.format("[%s] \\w\\$ ", where)
    local argv = { shell }
    if shell:match("/bash$") then
      -- bash rc files usually reset PS1: keep ours
      env.PROMPT_COMMAND = string.format("PS1='[%s] \\w\\$ '", where)
      argv[2] = "-i"
    end
    -- isle.lab.spawn's way, without loading what builds and undoes labs
    local entry = require "isle.lab.entry"
    entry.checkname("spawn", "name", pos[1])
    local p, msg
    if inside then
      if not require("isle._sys").exists(entry.STATE_DIR .. "/" .. pos[1]) then
        return nil, string.format("no lab '%s'", pos[1])
      end
      p, msg = require("isle.process").spawn({ argv = argv, env = env })
    else
      entry.checkname("spawn", "host", pos[2])
      -- root's shell replaces this process (see isle exec)
      local start = require("isle.core").ids() == 0 and entry.exec or entry.spawn
      p, msg = start(pos[1], pos[2], { argv = argv, env = env })
    end
    if not p then
      return nil, msg
    end
    return cli.status(p:wait())
  end,
}
