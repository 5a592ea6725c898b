--- `isle run [OPTIONS] -- CMD`: a container (see `isle.container`).
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.run
local format = string.format

local SPEC = {
  rootfs = "string", hostname = "string", net = "string", rootless = "flag",
  memory = "string", pids = "number", cpu = "string", e = "list", w = "string", v = "list",
  i = "flag", t = "flag", d = "flag", name = "string", ["cap-add"] = "list",
  ["cap-drop"] = "list", ["no-init"] = "flag", ["read-only"] = "flag",
}

local M = {
  summary = "run a command in a container (new pid, mnt, uts, ipc, net, cgroup namespaces)",
  usage = [[isle run [OPTIONS] -- CMD [ARG...]

Runs CMD in a container: new pid, mount, uts, ipc, network (only lo, up) and
cgroup namespaces; the machine's / read-only with a private /proc, a minimal
/dev, read-only /sys and a fresh /tmp (or --rootfs); docker's default
capabilities, no_new_privs, only fds 0-2; a small init as PID 1. The exit
status is the command's (128+N when signal N killed it).

Options:
  --rootfs DIR        use DIR as the root instead of the machine's /
  --read-only         make the --rootfs read-only too
  --hostname NAME     hostname inside (default: --name or "isle")
  --net NET           none (default), host, a netns name or path, LAB:HOST
  --rootless          map your uid/gid to root in a new user namespace
  --memory SIZE       memory limit (bytes, or 64m, 1g ...)
  --pids N            limit on the number of processes
  --cpu N             CPUs (e.g. 0.5)
  -e NAME=VALUE       set a variable (repeatable)
  -w DIR              working directory inside (default /)
  -v SRC:DST[:ro]     bind-mount SRC of the machine on DST (repeatable)
  -i                  keep stdin attached (default: /dev/null)
  -t                  a pseudo-terminal with job control (-it for a shell)
  --cap-add CAP       keep a capability beyond docker's set (ALL: every one)
  --cap-drop CAP      drop a capability of docker's set (ALL: every one)
  --no-init           the command is PID 1 itself
  --name NAME         name the container (for isle enter / isle stop)
  -d                  detached: start it in the background (needs --name)

Example: isle run -it --hostname box -- /bin/sh]],
}

--- Split combined short flags ("-it" → "-i", "-t") before "--"; `flags`
-- are the letters that combine (default "idt").
function M.expand(args, flags)
  flags = flags or "idt"
  local combined = "^%-[" .. flags .. "][" .. flags .. "]+$"
  local out = {}
  for i, a in ipairs(args) do
    if a == "--" then
      table.move(args, i, #args, #out + 1, out)
      return out
    end
    if a:match(combined) then
      for ch in a:sub(2):gmatch(".") do
        out[#out + 1] = "-" .. ch
      end
    else
      out[#out + 1] = a
    end
  end
  return out
end

--- The container spec of parsed options; raises usage errors (the
-- library checks the spec: its complaint is the usage error).
function M.spec(opts, cmd, cli)
  local container = require "isle.container"
  local spec = {
    argv = cmd, rootfs = opts.rootfs, hostname = opts.hostname, rootless = opts.rootless,
    name = opts.name, cwd = opts.w, tty = opts.t or nil, net = opts.net,
    readonly = opts["read-only"] or nil,
  }
  if opts["no-init"] then
    spec.init = false
  end
  if opts.memory or opts.pids or opts.cpu then
    spec.limits = { memory = opts.memory, pids = opts.pids }
    if opts.cpu then
      spec.limits.cpu = tonumber(opts.cpu)
      if not spec.limits.cpu then
        cli.usage_error(format("--cpu: number expected, got '%s'", opts.cpu))
      end
    end
  end
  if opts.e then
    spec.env = {}
    for _, kv in ipairs(opts.e) do
      local k, v = kv:match("^([^=]+)=(.*)$")
      if not k then
        k, v = kv, os.getenv(kv)
        if not v then
          cli.usage_error(format("-e: NAME=VALUE expected, got '%s'", kv))
        end
      end
      spec.env[k] = v
    end
  end
  if opts.v then
    spec.mounts = {}
    for _, m in ipairs(opts.v) do
      local src, dst, mode = m:match("^([^:]+):([^:]+):?(.*)$")
      if not src or src:sub(1, 1) ~= "/" or dst:sub(1, 1) ~= "/"
        or (mode ~= "" and mode ~= "ro" and mode ~= "rw") then
        cli.usage_error(format("-v: SRC:DST[:ro] with absolute paths expected, got '%s'", m))
      end
      spec.mounts[#spec.mounts + 1] = { "bind", src, dst, ro = mode == "ro" or nil }
    end
  end
  if opts["cap-add"] or opts["cap-drop"] then
    spec.caps = M.caps(container.DEFAULT_CAPS, opts["cap-add"], opts["cap-drop"])
  end
  local ok, err = pcall(container.check, spec)
  if not ok then
    cli.usage_error(tostring(err):gsub("^bad argument #1 to '%w+' %((.*)%)$", "%1"))
  end
  return spec
end

--- docker's --cap-add/--cap-drop on a default set: a list of names, or
-- "all".
function M.caps(default, add, drop)
  local set = {}
  for _, c in ipairs(default) do
    set[c] = true
  end
  for _, c in ipairs(drop or {}) do
    c = c:lower():gsub("^cap_", "")
    if c == "all" then
      set = {}
    else
      set[c] = nil
    end
  end
  for _, c in ipairs(add or {}) do
    c = c:lower():gsub("^cap_", "")
    if c == "all" then
      return "all"
    end
    set[c] = true
  end
  local list = {}
  for c in pairs(set) do
    list[#list + 1] = c
  end
  table.sort(list)
  return list
end

function M.run(args, cli)
  args = M.expand(args)
  local opts, pos, cmd, dashdash = cli.getopt(args, SPEC)
  if not dashdash then
    -- `isle run [OPTIONS] CMD ARG...` works too when CMD is the first positional
    cmd = pos
  elseif #pos > 0 then
    cli.usage_error("unexpected argument '" .. pos[1] .. "' before --")
  end
  if #cmd == 0 then
    cli.usage_error("missing command (isle run [OPTIONS] -- CMD)")
  end
  if opts.d and not opts.name then
    cli.usage_error("-d needs --name NAME")
  end
  if opts.d and (opts.t or opts.i) then
    cli.usage_error("-d does not go with -i or -t (use isle enter NAME -t -- CMD)")
  end
  local spec = M.spec(opts, cmd, cli)
  local container = require "isle.container"
  if opts.d then
    local pid, msg, e = container.detach(spec)
    if not pid then
      return nil, msg, e
    end
    cli.stdout:write(opts.name, "\n")
    return 0
  end
  if not opts.i and not opts.t then
    spec.stdin = "null"
  end
  local c, msg, e = container.run(spec)
  if not c then
    if msg:match("^container: exec ") then
      cli.fail(msg, e == 2 and 127 or 126) -- as a shell (and docker) would
    end
    return nil, msg
  end
  if spec.tty then
    c:attach(opts.i or false)
  end
  local ok, how, code, why = c:wait()
  if how ~= "exit" and how ~= "signal" then
    return nil, how
  end
  if why == "oom" then
    cli.stderr:write("isle: the container's memory limit killed a process (OOM)\n")
  end
  return cli.status(ok, how, code)
end

return M
