--- Processes: `isle.spawn` and `isle.clone`.
-- The spec is checked (a mistake raises, naming the field) and compiled
-- into a plain plan by `isle._spawn_fields`, its namespaces ordered here,
-- and handed to `isle.core.spawn`: the one engine that clones the child and
-- runs the plan's steps in it, in C (mounts, the rootfs pivot, and the
-- steps containers compile; see `spawn`). A failure in
-- the child before exec comes back as `nil, "spawn: <step>: <strerror>",
-- errno` and leaves no process.
-- @module isle.process
local core = require "isle.core"
local C = require "isle._check"
local F = require "isle._spawn_fields"

local M = {}

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local KINDS = core.KINDS

local spec_fields = C.set {
  "argv", "fn", "namespaces", "join", "hostname", "domainname", "uid_map", "gid_map",
  "setgroups", "time", "mounts", "rootfs", "cwd", "env", "stdin", "stdout", "stderr",
  "init", "cgroup", "no_new_privs", "caps", "steps", "user",
}

local function close_boxes(boxes)
  for _, b in ipairs(boxes) do
    b:close()
  end
end

--- The order of namespace creation: with joins, the child enters first and
-- creates the rest with unshare (a new pid namespace then needs a fork: the
-- child hands off to it, see core.spawn).
-- Returns the boxes that keep the joined namespaces open, or nil, msg, e.
local function order(spec, plan, new_flags, new)
  if new "cgroup" and plan.cgroup then
    -- enter the cgroup first, so that it is the new namespace's root
    plan.unshare_flags = KINDS.cgroup
    new_flags = new_flags & ~KINDS.cgroup
  end
  if spec.join == nil then
    plan.clone_flags = new_flags
    return {}
  end
  -- (isle.ns is loaded only for joins)
  local entries, boxes, e = require("isle.ns")._open_joins(spec.join,
    new_flags | (plan.time and KINDS.time or 0))
  if not entries then
    return nil, boxes, e
  end
  plan.joins = entries
  plan.unshare_user = new "user" or nil
  plan.unshare_flags = (plan.unshare_flags or 0) | (new_flags & ~KINDS.user)
  plan.handoff = new "pid" or nil
  for _, je in ipairs(entries) do
    if je.nstype & KINDS.pid ~= 0 then
      plan.handoff = true
    end
  end
  plan.clone_flags = 0
  return boxes
end

--- The plan of a spec and the boxes of its joins; raises for a mistake.
local function prepare(spec, prefix)
  if type(spec) ~= "table" then
    error("bad argument #1 to 'spawn' (table expected, got " .. type(spec) .. ")", 0)
  end
  for k in pairs(spec) do
    if not spec_fields[k] and not (k == "engine" and prefix ~= "spawn") then
      error("bad argument #1 to 'spawn' (unknown field '" .. tostring(k) .. "')", 0)
    end
  end
  local plan = { prefix = prefix }
  F.what_to_run(spec, plan)
  local new_flags = F.namespaces(spec)
  local new = function(kind)
    return new_flags & KINDS[kind] ~= 0
  end
  F.uts_names(spec, plan, new)
  F.id_maps(spec, plan, new)
  if spec.time ~= nil then
    if not new "time" then
      F.bad("time", "needs a new time namespace (namespaces = {\"time\"})")
    end
    plan.time_offsets = F.format_offsets("time", spec.time)
  end
  F.compile_steps(spec, plan, new)
  F.environment(spec, plan)
  F.process_fields(spec, plan, new)
  F.engine(spec, plan)
  if new "time" then
    plan.time = true
    new_flags = new_flags & ~KINDS.time
  end
  local boxes, msg, e = order(spec, plan, new_flags, new)
  if not boxes then
    return nil, prefix .. ": " .. msg, e
  end
  return plan, boxes
end

--- A mistake found by prepare, blamed on the caller at `level`: the
-- position of the isle module that found it is dropped.
local function spec_error(err, level)
  if type(err) == "string" then
    err = err:match("^[^\n]-:%d+: (bad argument .*)$") or err
  end
  error(err, level + 1)
end

--- spawn with `prefix` on its error messages ("spawn", "container"),
-- blaming mistakes at `level`.
local function start(spec, prefix, level)
  local ok, plan, boxes, e = pcall(prepare, spec, prefix)
  if not ok then
    spec_error(plan, level + 1)
  end
  if not plan then
    return nil, boxes, e
  end
  local p, msg, err = core.spawn(plan)
  close_boxes(boxes)
  return p, msg, err
end

--- Start a process in new and/or existing namespaces.
-- The child is set up by C only (no Lua runs in it but `fn`), in this
-- order: joins, a new user namespace and its maps, the cgroup, the other
-- new namespaces, hostname, stdio, `mounts`, the `rootfs` pivot, `steps`,
-- then `cwd`, capabilities, no_new_privs, exec.
-- @tparam table spec see the fields in the README / API.md: `argv` or `fn`,
-- `namespaces`, `join`, `hostname`, `domainname`, `uid_map`, `gid_map`,
-- `setgroups`, `time`, `mounts`, `rootfs`, `cwd`, `env`, `stdin`, `stdout`,
-- `stderr`, `init`, `cgroup`, `no_new_privs`, `caps`, `user` (run as
-- `{uid =, gid =, groups = {...}}` or `"uid[:gid]"`, switched to after the
-- maps are written); and, for containers
-- (`isle.container` compiles them), `steps`: a list of
-- `{op =, what =, optional =, ...}` run in the child after the mounts, with
-- op `mount` (source, target, fstype, flags, data), `umount` (target,
-- flags), `mkdir` (path, mode), `mkfile` (path), `symlink` (target, path),
-- `setattr_ro` (path: recursively read-only), `pivot` (path, put_old),
-- `chdir` (path), `lo_up`, `write_fd` (fd, data: e.g. a cgroup.procs opened
-- by the parent), `pty` (fd of a unix socket: a terminal of the devpts at
-- /dev/ptmx becomes stdio and the controlling terminal, its master is sent
-- back); `what` names the step in error messages, `optional` ignores its
-- failure.
-- @treturn[1] Process
-- @return[2] nil
-- @treturn[2] string message, e.g. `spawn: mount proc on /proc: Permission denied`
-- @treturn[2] int errno
-- @usage local p = assert(isle.spawn{argv = {"hostname"}, namespaces = "uts", hostname = "box"})
-- assert(p:wait())
function M.spawn(spec)
  local p, msg, e = start(spec, "spawn", 2)
  return p, msg, e
end

--- `spawn` for the modules above it: errors say `prefix` ("container: ...")
-- instead of "spawn", and `steps` are trusted (isle.container.plan makes
-- them; its unit specs check them). (internal)
function M._spawn(spec, prefix)
  local p, msg, e = start(spec, prefix, 2)
  return p, msg, e
end

--- Whether a plan can run in the caller itself (`core.exec`): it creates
-- nothing (no namespace, step, init, cgroup, fn) and has no pipe.
local function inplace(plan)
  if plan.fn or (plan.clone_flags or 0) ~= 0 or (plan.unshare_flags or 0) ~= 0 or plan.unshare_user
    or plan.time or plan.handoff or plan.init or plan.harden or plan.seccomp or plan.cgroup
    or #plan.steps > 0 then
    return false
  end
  return plan.stdin ~= "pipe" and plan.stdout ~= "pipe" and plan.stderr ~= "pipe"
end

--- `spawn`, in place of this process when the spec allows (it only joins
-- namespaces, as `ip netns exec` does; see `core.exec`): then it returns
-- only on failure, `nil, msg, errno`, and the process may already be in
-- the joined namespaces (report and exit). Otherwise a child, as `spawn`:
-- the Process. For the command line's exec and shell. (internal)
function M._exec(spec, prefix)
  local ok, plan, boxes, e = pcall(prepare, spec, prefix)
  if not ok then
    spec_error(plan, 2)
  end
  if not plan then
    return nil, boxes, e
  end
  local p, msg, err
  if inplace(plan) then
    p, msg, err = core.exec(plan)
  else
    p, msg, err = core.spawn(plan)
  end
  close_boxes(boxes)
  return p, msg, err
end

-- The field checks the modules above share (isle.container, isle.lab).
M._CAPS = F.CAPS
M._capbits = F.capbits
M._user = F.user
M._format_offsets = F.format_offsets

--- clone(2) for Lua: run `fn(...)` in a child created in new namespaces.
-- @tparam function fn
-- @tparam table|string kinds
-- @param ... arguments for fn
-- @treturn[1] Process
-- @return[2] nil, message, errno
-- @usage local p = isle.clone(function(name) return 0 end, "uts,net", "x")
function M.clone(fn, kinds, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'clone' (function expected, got " .. type(fn) .. ")", 2)
  end
  core.kinds(kinds or {})
  local args = table.pack(...)
  return M.spawn {
    fn = function()
      return fn(table.unpack(args, 1, args.n))
    end,
    namespaces = kinds,
  }
end

return M
