--- `isle run [OPTIONS] -- CMD`: a container (see `isle.container`).
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.run
local format = string.format

local SPEC = {
  rootfs = "string", hostname = "string", net = "string", rootless = "flag",
  memory = "string", pids = "number", cpu = "string", e = "list", w = "string", v = "list",
  i = "flag", t = "flag", d = "flag", name = "string", ["cap-add"] = "list",
  ["cap-drop"] = "list", ["no-init"] = "flag", ["read-only"] = "flag", ["_monitor"] = "flag",
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

--- The container spec of parsed options; raises usage errors.
function M.spec(opts, cmd, cli)
  local container = require "isle.container"
  local spec = {
    argv = cmd, rootfs = opts.rootfs, hostname = opts.hostname, rootless = opts.rootless,
    name = opts.name, cwd = opts.w, tty = opts.t or nil,
  }
  if opts["read-only"] then
    spec.readonly = true
  end
  if opts["no-init"] then
    spec.init = false
  end
  if opts.net then
    spec.net = opts.net
  end
  if opts.memory or opts.pids or opts.cpu then
    spec.limits = {}
    if opts.memory then
      spec.limits.memory = container._bytes(opts.memory)
      if not spec.limits.memory then
        cli.usage_error(format("--memory: size expected (e.g. 64m), got '%s'", opts.memory))
      end
    end
    if opts.pids then
      if opts.pids <= 0 then
        cli.usage_error("--pids: positive integer expected")
      end
      spec.limits.pids = opts.pids
    end
    if opts.cpu then
      local n = tonumber(opts.cpu)
      if not n or n <= 0 then
        cli.usage_error(format("--cpu: positive number expected, got '%s'", opts.cpu))
      end
      spec.limits.cpu = n
    end
  end
  if opts.e then
    spec.env = {}
    for _, kv in ipairs(opts.e) do
      local k, v = kv:match("^([^=]+)=(.*)$")
      if not k then
        v = os.getenv(kv)
        k = kv
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
    local set, all = {}, false
    for _, c in ipairs(container.DEFAULT_CAPS) do
      set[c] = true
    end
    local names = require("isle.process")._CAPS
    local function norm(c)
      c = c:lower():gsub("^cap_", "")
      if c ~= "all" and not names[c] then
        cli.usage_error(format("unknown capability '%s'", c))
      end
      return c
    end
    for _, c in ipairs(opts["cap-drop"] or {}) do
      c = norm(c)
      if c == "all" then
        set = {}
      else
        set[c] = nil
      end
    end
    for _, c in ipairs(opts["cap-add"] or {}) do
      c = norm(c)
      if c == "all" then
        all = true
      else
        set[c] = true
      end
    end
    if all then
      spec.caps = "all"
    else
      spec.caps = {}
      for c in pairs(set) do
        spec.caps[#spec.caps + 1] = c
      end
      table.sort(spec.caps)
    end
  end
  if opts.name then
    local U = require "isle._util"
    local why = U.badname(opts.name)
    if why or not opts.name:match("^[%w][%w_.-]*$") then
      cli.usage_error(format("--name: bad name '%s'", opts.name))
    end
  end
  return spec
end


--- The detached run: start a monitor (this command without -d, in a new
-- session) and wait for its word that the container runs.
local function detach(args, opts, cli)
  local container = require "isle.container"
  local isle = require "isle"
  if not opts.name then
    cli.usage_error("-d needs --name NAME")
  end
  if opts.t or opts.i then
    cli.usage_error("-d does not go with -i or -t (use isle enter NAME -t -- CMD)")
  end
  local old = container._load(opts.name)
  if old and old.alive then
    return nil, format("a container named '%s' is running", opts.name)
  elseif old then
    container._forget(opts.name)
  end
  local interp, script = arg and arg[-1], arg and arg[0]
  if not interp or not script then
    return nil, "-d: cannot find the isle command to start a monitor"
  end
  local margv = { interp, script, "run", "--_monitor" }
  for _, a in ipairs(args) do
    if a ~= "-d" then
      margv[#margv + 1] = a
    end
  end
  local p, msg = isle.spawn { argv = margv, stdin = "null", stdout = "pipe", stderr = "null" }
  if not p then
    return nil, msg
  end
  local line = p.stdout:read("l")
  if line and line:match("^ok ") then
    p:close()
    cli.stdout:write(opts.name, "\n")
    return 0
  end
  p:wait()
  p:close()
  return nil, line or "the container's monitor ended without a word"
end

--- The monitor of a detached container: report, wait, clean up.
local function monitor(opts, spec)
  local container = require "isle.container"
  local core = require "isle.core"
  core.setsid()
  local dir = container._statedir() .. "/" .. opts.name
  spec.stdin, spec.stdout, spec.stderr = "null", "null", "null"
  local c, msg = container.run(spec)
  if not c then
    io.stdout:write(msg, "\n")
    return 1
  end
  local ok, err = container._save(opts.name, c)
  if not ok then
    c:stop(0)
    io.stdout:write("state ", dir, ": ", tostring(err), "\n")
    return 1
  end
  io.stdout:write("ok ", c.pid, "\n")
  io.stdout:flush()
  local r = table.pack(c:wait())
  container._forget(opts.name)
  return require("isle.cli").status(table.unpack(r, 1, 3))
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
  local spec = M.spec(opts, cmd, cli)
  if opts.d then
    return detach(args, opts, cli)
  end
  if opts._monitor then
    return monitor(opts, spec)
  end
  if not opts.i and not opts.t then
    spec.stdin = "null"
  end
  local container = require "isle.container"
  local c, msg, e = container.run(spec)
  if not c then
    if msg:match("^container: exec ") then
      cli.fail(msg, e == 2 and 127 or 126) -- as a shell (and docker) would
    end
    return nil, msg
  end
  if opts.name then
    local ok, err = container._save(opts.name, c)
    if not ok then
      c:stop(0)
      return nil, err
    end
  end
  if spec.tty then
    c:attach(opts.i or false)
  end
  local ok, how, code, why = c:wait()
  if opts.name then
    container._forget(opts.name)
  end
  if how ~= "exit" and how ~= "signal" then
    return nil, how
  end
  if why == "oom" then
    cli.stderr:write("isle: the container's memory limit killed a process (OOM)\n")
  end
  return cli.status(ok, how, code)
end

return M
