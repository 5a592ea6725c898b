--- `isle run [OPTIONS] -- CMD`: a container (see `isle.container`).
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.run
local format = string.format

local SPEC = {
  rootfs = "string", hostname = "string", net = "string", network = "string",
  rootless = "flag", memory = "string", pids = "number", cpu = "string", cpus = "string",
  e = "list", env = "list", ["env-file"] = "list", w = "string", workdir = "string",
  v = "list", volume = "list", i = "flag", interactive = "flag", t = "flag", tty = "flag",
  d = "flag", detach = "flag", name = "string", ["cap-add"] = "list", ["cap-drop"] = "list",
  ["no-init"] = "flag", init = "flag", ["read-only"] = "flag", u = "string", user = "string",
  privileged = "flag", rm = "flag",
}

--- docker's long names of the short options (and --cpus, --network).
local LONG = { env = "e", workdir = "w", volume = "v", interactive = "i", tty = "t",
  detach = "d", user = "u", network = "net", cpus = "cpu" }

--- The signals `isle run` passes on to the container (Ctrl-C: INT).
local SIGNALS = { "INT", "TERM", "HUP", "QUIT", "USR1", "USR2" }

local M = {
  summary = "run a command in a container (new pid, mnt, uts, ipc, net, cgroup namespaces)",
  usage = [[isle run [OPTIONS] -- CMD [ARG...]

Runs CMD in a container: new pid, mount, uts, ipc, network (only lo, up) and
cgroup namespaces; the machine's / read-only with a private /proc, /dev,
/sys, /tmp and /run (or --rootfs), docker's hardening: capabilities (no
mknod), a seccomp filter, masked and read-only /proc and /sys paths, no
device nodes, no_new_privs, only fds 0-2; a small init as PID 1. The exit
status is the command's (128+N when signal N killed it, 127 when it is not
found); Ctrl-C reaches it.

Options (docker's long names too: --env, --volume, --workdir, --detach,
--network, --interactive, --tty, --user, --cpus):
  --rootfs DIR        use DIR as the root instead of the machine's /
  --read-only         make the --rootfs read-only too
  --hostname NAME     hostname inside (default: --name or "isle")
  --net NET           none (default), host, a netns name or path, LAB:HOST
  --rootless          map your uid/gid to root in a new user namespace
  --memory SIZE       memory limit (bytes, or 64m, 1g ...)
  --pids N            limit on the number of processes
  --cpu N             CPUs (e.g. 0.5)
  -e NAME=VALUE       set a variable (repeatable); -e NAME: the caller's value
  --env-file FILE     NAME=VALUE lines (# comments; NAME alone as -e NAME)
  -w DIR              working directory inside (default /)
  -v SRC:DST[:ro]     bind-mount SRC of the machine on DST (repeatable)
  -u USER[:GROUP]     run as this user (a number or a name of the root's
                      /etc/passwd)
  -i                  keep stdin attached (default: /dev/null)
  -t                  a pseudo-terminal with job control (-it for a shell)
  --cap-add CAP       keep a capability beyond docker's set (ALL: every one)
  --cap-drop CAP      drop a capability of docker's set (ALL: every one)
  --privileged        no hardening: every capability, no seccomp, no masks
  --no-init           the command is PID 1 itself (--init: the default)
  --name NAME         name the container (isle enter, stop, ps, logs, rm)
  -d                  detached: in the background (needs --name); its output
                      goes to a log (isle logs NAME), its exit status is kept
                      until isle rm NAME
  --rm                with --name: remove its state when it ends

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

--- Merge docker's long names into the short ones.
function M.merge(opts)
  for long, short in pairs(LONG) do
    local v = opts[long]
    if v ~= nil then
      if type(v) == "table" then
        opts[short] = opts[short] or {}
        table.move(v, 1, #v, #opts[short] + 1, opts[short])
      else
        opts[short] = v
      end
      opts[long] = nil
    end
  end
  return opts
end

--- -e NAME=VALUE, or -e NAME: the caller's value when it has one (else the
-- variable is not passed, and a line says so, as docker leaves it out).
local function setenv(env, kv, cli, where)
  local k, v = kv:match("^([^=]+)=(.*)$")
  if not k then
    k, v = kv, os.getenv(kv)
    if k == "" or k:find("%s") then
      cli.usage_error(format("%s: NAME=VALUE or NAME expected, got '%s'", where, kv))
    end
    if not v then
      cli.stderr:write(format("isle run: %s: %s is not set here: not passed\n", where, k))
      return
    end
  end
  env[k] = v
end

--- The variables of --env-file FILE (docker's format).
local function envfile(env, path, cli)
  local f, msg = io.open(path, "r")
  if not f then
    cli.fail("--env-file: " .. msg)
  end
  local n = 0
  for line in f:lines() do
    n = n + 1
    line = line:gsub("^%s+", ""):gsub("%s+$", "")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      setenv(env, line, cli, format("--env-file %s:%d", path, n))
    end
  end
  f:close()
end

local function volumes(opts, cli)
  local mounts = {}
  for _, m in ipairs(opts.v or {}) do
    local src, dst, mode = m:match("^([^:]+):([^:]+):?(.*)$")
    if not src or src:sub(1, 1) ~= "/" or dst:sub(1, 1) ~= "/"
      or (mode ~= "" and mode ~= "ro" and mode ~= "rw") then
      cli.usage_error(format("-v: SRC:DST[:ro] with absolute paths expected, got '%s'", m))
    end
    mounts[#mounts + 1] = { "bind", src, dst, ro = mode == "ro" or nil }
  end
  return #mounts > 0 and mounts or nil
end

--- The container spec of parsed options; raises usage errors (the
-- library checks the spec: its complaint is the usage error).
function M.spec(opts, cmd, cli)
  local container = require "isle.container"
  local spec = {
    argv = cmd, rootfs = opts.rootfs, hostname = opts.hostname, rootless = opts.rootless,
    name = opts.name, cwd = opts.w, tty = opts.t or nil, net = opts.net,
    readonly = opts["read-only"] or nil, user = opts.u, privileged = opts.privileged or nil,
    mounts = volumes(opts, cli),
  }
  if opts["no-init"] then
    spec.init = false
  end
  if opts.name then
    spec.keep = not opts.rm
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
  if opts.e or opts["env-file"] then
    spec.env = {}
    for _, path in ipairs(opts["env-file"] or {}) do
      envfile(spec.env, path, cli)
    end
    for _, kv in ipairs(opts.e or {}) do
      setenv(spec.env, kv, cli, "-e")
    end
  end
  if opts["cap-add"] or opts["cap-drop"] then
    spec.caps = M.caps(container.DEFAULT_CAPS, opts["cap-add"], opts["cap-drop"])
  end
  local ok, err = pcall(container.check, spec)
  if not ok then
    cli.arg_error(err)
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

--- A failure to start the command, as a shell (and docker) says it: 127
-- when it is not found, 126 when it cannot be run; nil for other failures.
function M.exec_status(msg, e)
  if msg and msg:match("^container: exec ") then
    return e == 2 and 127 or 126
  end
  return nil
end

local function check_args(opts, pos, cmd, dashdash, cli)
  if not dashdash then
    -- `isle run [OPTIONS] CMD ARG...` works too when CMD is the first positional
    table.move(pos, 1, #pos, 1, cmd)
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
  if opts.rm and not opts.name then
    opts.rm = nil -- a container without a name keeps nothing anyway
  end
  if opts.t and not cli.isatty(0) then
    cli.fail("the input device is not a TTY (-t needs a terminal on stdin; drop -t, or run"
      .. " under script or tmux)")
  end
end

function M.run(args, cli)
  args = M.expand(args)
  local opts, pos, cmd, dashdash = cli.getopt(args, SPEC)
  M.merge(opts)
  check_args(opts, pos, cmd, dashdash, cli)
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
  if not spec.tty then
    spec.signals = SIGNALS -- passed on while it runs: Ctrl-C ends it, isle says 130
  end
  local c, msg, e = container.run(spec)
  if not c then
    local code = M.exec_status(msg, e)
    if code then
      cli.fail(msg, code)
    end
    return nil, msg
  end
  if spec.tty then
    c:attach(opts.i or false)
  end
  local ok, how, code, why = c:wait()
  c:close()
  if how ~= "exit" and how ~= "signal" then
    return nil, how
  end
  if why == "oom" then
    cli.stderr:write("isle: the container's memory limit killed a process (OOM)\n")
  end
  return cli.status(ok, how, code)
end

return M
