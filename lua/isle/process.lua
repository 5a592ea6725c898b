--- Processes: `isle.spawn` and `isle.clone`.
-- The spec is checked here (a mistake raises, naming the field), compiled
-- into a plain plan, and handed to `isle.core.spawn`, which clones the child
-- and runs the plan's steps in it. A failure in the child before exec comes
-- back as `nil, "spawn: <step>: <strerror>", errno` and leaves no process.
-- @module isle.process
local core = require "isle.core"
local U = require "isle._util"
local mount = require "isle.mount"

local M = {}

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local mtype, format, concat, sort = math.type, string.format, table.concat, table.sort
local KINDS = core.KINDS

local spec_fields = U.set {
  "argv", "fn", "namespaces", "join", "hostname", "domainname", "uid_map", "gid_map",
  "setgroups", "time", "mounts", "rootfs", "cwd", "env", "stdin", "stdout", "stderr",
  "init", "cgroup", "no_new_privs", "caps",
}

-- nsenter's order for entering namespaces
local join_order = { "user", "cgroup", "ipc", "uts", "net", "pid", "mnt", "time" }

local CAPS = {
  chown = 0, dac_override = 1, dac_read_search = 2, fowner = 3, fsetid = 4, kill = 5,
  setgid = 6, setuid = 7, setpcap = 8, linux_immutable = 9, net_bind_service = 10,
  net_broadcast = 11, net_admin = 12, net_raw = 13, ipc_lock = 14, ipc_owner = 15,
  sys_module = 16, sys_rawio = 17, sys_chroot = 18, sys_ptrace = 19, sys_pacct = 20,
  sys_admin = 21, sys_boot = 22, sys_nice = 23, sys_resource = 24, sys_time = 25,
  sys_tty_config = 26, mknod = 27, lease = 28, audit_write = 29, audit_control = 30,
  setfcap = 31, mac_override = 32, mac_admin = 33, syslog = 34, wake_alarm = 35,
  block_suspend = 36, audit_read = 37, perfmon = 38, bpf = 39, checkpoint_restore = 40,
}
M._CAPS = CAPS

local function bad(field, msg)
  -- level 4: bad() <- check helper <- spawn <- the caller
  error(format("bad argument #1 to 'spawn' (%s: %s)", field, msg), 4)
end

local function checkstring(field, v)
  if type(v) ~= "string" then
    bad(field, "string expected, got " .. type(v))
  end
  if v:find("%z") then
    bad(field, "contains a NUL byte")
  end
  return v
end

--- "inside outside count\n" lines of a map; raises naming the culprit.
local function format_map(field, map)
  if type(map) ~= "table" then
    bad(field, "list of {inside, outside, count} expected, got " .. type(map))
  end
  if #map == 0 then
    bad(field, "empty map")
  end
  if #map > 340 then
    bad(field, "more than 340 ranges")
  end
  local lines = {}
  for i, r in ipairs(map) do
    local where = format("%s[%d]", field, i)
    if type(r) ~= "table" or #r ~= 3 then
      bad(where, "{inside, outside, count} expected")
    end
    for j, v in ipairs(r) do
      if mtype(v) ~= "integer" or v < 0 or v > 0xFFFFFFFE then
        bad(where, format("element %d must be an integer in [0, 4294967294]", j))
      end
    end
    if r[3] == 0 then
      bad(where, "count must be > 0")
    end
    lines[i] = format("%d %d %d\n", r[1], r[2], r[3])
  end
  return concat(lines), map
end

--- "monotonic S NS\nboottime S NS\n" for timens_offsets.
function M._format_offsets(field, t, raise)
  raise = raise or bad
  if type(t) ~= "table" then
    raise(field, "table {monotonic =, boottime =} expected, got " .. type(t))
  end
  local out = {}
  for k, v in pairs(t) do
    if k ~= "monotonic" and k ~= "boottime" then
      raise(field, "unknown clock '" .. tostring(k) .. "' (expected monotonic or boottime)")
    end
    if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
      raise(field .. "." .. k, "number of seconds expected")
    end
    local s = math.floor(v)
    local ns = math.floor((v - s) * 1e9 + 0.5)
    if ns >= 1000000000 then
      s, ns = s + 1, ns - 1000000000
    end
    out[#out + 1] = format("%s %d %d\n", k, s, ns)
  end
  sort(out)
  return concat(out)
end

local function stdio(field, v)
  if v == nil or v == "inherit" then
    return nil
  end
  if v == "null" or v == "pipe" then
    return v
  end
  if mtype(v) == "integer" then
    if v < 0 then
      bad(field, "fd must be >= 0")
    end
    return v
  end
  if io.type(v) == "file" then
    return v
  end
  if io.type(v) == "closed file" then
    bad(field, "closed file")
  end
  bad(field, "'inherit', 'null', 'pipe', an fd or a file expected, got " .. type(v))
end

--- Resolve `join` into {kind = target} plus its opened descriptors.
-- Returns the list of {fd, nstype, label} (in nsenter's order), the boxes
-- that keep the fds open, the set of joined kinds, or nil, msg, errno.
local function open_joins(join, new_flags)
  local per_kind = {}
  local whole_target
  local tj = type(join)
  local mt = getmetatable(join)
  if tj == "table" and not (mt and mt.__name) and join.path == nil then
    for k, target in pairs(join) do
      local kind = U.kindname(k)
      if not kind then
        bad("join", "unknown namespace kind '" .. tostring(k) .. "'")
      end
      per_kind[kind] = target
    end
  else
    whole_target = join
  end
  local entries, boxes, kinds = {}, {}, {}

  if whole_target ~= nil then
    local pid = U.target_pid(whole_target)
    local mtn = getmetatable(whole_target)
    if pid then
      -- every kind of that process that differs from ours, through a pidfd
      local flags, names = 0, {}
      for _, kind in ipairs(join_order) do
        -- a gone process has no ns files: pidfd_open below says so
        local theirs = core.ino(format("/proc/%d/ns/%s", pid, kind))
        if theirs and theirs ~= core.ino("/proc/self/ns/" .. kind)
          and new_flags & KINDS[kind] == 0 then
          flags = flags | KINDS[kind]
          names[#names + 1] = kind
          kinds[kind] = true
        end
      end
      local box, fd, e = core.pidfd_open(pid)
      if not box then
        return nil, fd, e
      end
      boxes[#boxes + 1] = box
      if flags ~= 0 then
        entries[1] = { fd = fd, nstype = flags,
          label = format("pid %d (%s)", pid, concat(names, ",")) }
      end
      return entries, boxes, kinds
    elseif mtn and mtn.__name == "isle.Namespace" then
      per_kind[whole_target.kind] = whole_target
    else
      -- a Netns, a netns name or a path: a network namespace
      per_kind.net = whole_target
    end
  end

  for _, kind in ipairs(join_order) do
    local target = per_kind[kind]
    if target ~= nil then
      if new_flags & KINDS[kind] ~= 0 then
        bad("join." .. kind, "the same kind is also in namespaces")
      end
      local path = U.target_path("spawn", "join." .. kind, target, kind, 4)
      local box, fd, e = core.open_fd(path)
      if not box then
        return nil, fd, e
      end
      boxes[#boxes + 1] = box
      entries[#entries + 1] = { fd = fd, nstype = KINDS[kind], label = path }
      kinds[kind] = true
    end
  end
  return entries, boxes, kinds
end

local function close_boxes(boxes)
  for _, b in ipairs(boxes) do
    b:close()
  end
end

--- Start a process in new and/or existing namespaces.
-- @tparam table spec see the fields in the README / API.md: `argv` or `fn`,
-- `namespaces`, `join`, `hostname`, `domainname`, `uid_map`, `gid_map`,
-- `setgroups`, `time`, `mounts`, `rootfs`, `cwd`, `env`, `stdin`, `stdout`,
-- `stderr`, `init`, `cgroup`, `no_new_privs`, `caps`.
-- @treturn[1] Process
-- @return[2] nil
-- @treturn[2] string message, e.g. `spawn: mount proc on /proc: Permission denied`
-- @treturn[2] int errno
-- @usage local p = assert(isle.spawn{argv = {"hostname"}, namespaces = "uts", hostname = "box"})
-- assert(p:wait())
function M.spawn(spec)
  if type(spec) ~= "table" then
    error("bad argument #1 to 'spawn' (table expected, got " .. type(spec) .. ")", 2)
  end
  for k in pairs(spec) do
    if not spec_fields[k] then
      error("bad argument #1 to 'spawn' (unknown field '" .. tostring(k) .. "')", 2)
    end
  end
  local plan = {}

  -- what to run
  if spec.argv ~= nil and spec.fn ~= nil then
    error("bad argument #1 to 'spawn' (argv and fn are exclusive)", 2)
  end
  if spec.fn ~= nil then
    if type(spec.fn) ~= "function" then
      error("bad argument #1 to 'spawn' (fn: function expected, got " .. type(spec.fn) .. ")", 2)
    end
    plan.fn = spec.fn
  else
    local argv = spec.argv
    if type(argv) ~= "table" or #argv == 0 then
      error("bad argument #1 to 'spawn' (argv: non-empty list expected)", 2)
    end
    plan.argv = {}
    for i, a in ipairs(argv) do
      if type(a) == "number" then
        a = tostring(a)
      end
      plan.argv[i] = checkstring(format("argv[%d]", i), a)
    end
    if plan.argv[1] == "" then
      error("bad argument #1 to 'spawn' (argv[1]: empty command)", 2)
    end
  end

  -- namespaces
  local new_flags = 0
  if spec.namespaces ~= nil then
    local ok, flags = pcall(core.kinds, spec.namespaces)
    if not ok then
      error("bad argument #1 to 'spawn' (namespaces: " .. tostring(flags):gsub("^.-%((.*)%)$", "%1")
        .. ")", 2)
    end
    new_flags = flags
  end
  local new = function(kind)
    return new_flags & KINDS[kind] ~= 0
  end

  for _, f in ipairs { "hostname", "domainname" } do
    if spec[f] ~= nil then
      checkstring(f, spec[f])
      if #spec[f] > 64 then
        bad(f, "longer than 64 bytes")
      end
      if not new "uts" and spec.join == nil then
        bad(f, "needs a new uts namespace (namespaces = {\"uts\"})")
      end
      plan[f] = spec[f]
    end
  end

  local caller_uid = core.ids()
  if spec.uid_map ~= nil or spec.gid_map ~= nil or spec.setgroups ~= nil then
    if not new "user" then
      bad(spec.uid_map and "uid_map" or spec.gid_map and "gid_map" or "setgroups",
        "needs a new user namespace (namespaces = {\"user\"})")
    end
  end
  local helper = false
  if spec.uid_map ~= nil then
    local m, list = format_map("uid_map", spec.uid_map)
    plan.uid_map = m
    if caller_uid ~= 0 and not (#list == 1 and list[1][2] == caller_uid and list[1][3] == 1) then
      helper = true
    end
  end
  if spec.gid_map ~= nil then
    local m, list = format_map("gid_map", spec.gid_map)
    plan.gid_map = m
    local _, gid = core.ids()
    if caller_uid ~= 0 and not (#list == 1 and list[1][2] == gid and list[1][3] == 1) then
      helper = true
    end
  end
  plan.map_helper = helper or nil
  if spec.setgroups ~= nil then
    if spec.setgroups ~= "deny" and spec.setgroups ~= "allow" then
      bad("setgroups", "'deny' or 'allow' expected")
    end
    plan.setgroups = spec.setgroups
  elseif new "user" and caller_uid ~= 0 and not helper then
    plan.setgroups = "deny"
  end

  if spec.time ~= nil then
    if not new "time" then
      bad("time", "needs a new time namespace (namespaces = {\"time\"})")
    end
    plan.time_offsets = M._format_offsets("time", spec.time)
  end
  if new "time" then
    plan.time = true
    new_flags = new_flags & ~KINDS.time
  end

  -- mounts
  local calls = {}
  if spec.mounts ~= nil then
    if type(spec.mounts) ~= "table" then
      bad("mounts", "list expected, got " .. type(spec.mounts))
    end
    if #spec.mounts > 0 and not new "mnt" and spec.join == nil then
      bad("mounts", "needs a new mount namespace (namespaces = {\"mnt\"})")
    end
    for i, step in ipairs(spec.mounts) do
      for _, c in ipairs(mount._compile("spawn", format("#1 (mounts[%d])", i), step, 3)) do
        calls[#calls + 1] = c
      end
    end
  end
  if spec.rootfs ~= nil then
    checkstring("rootfs", spec.rootfs)
    if not new "mnt" then
      bad("rootfs", "needs a new mount namespace (namespaces = {\"mnt\"})")
    end
    plan.rootfs = spec.rootfs
  end
  if new "mnt" then
    -- our mounts must not propagate back: make / private first, unless the
    -- first step already sets the propagation of /
    local first = calls[1]
    local MS = core.MS
    local prop = MS.private | MS.slave | MS.shared | MS.unbindable
    if not (first and first.target == "/" and first.op == "mount" and first.flags & prop ~= 0) then
      table.insert(calls, 1, { op = "mount", target = "/", flags = MS.rec | MS.private,
        what = "make / private" })
    end
  end
  plan.mounts = calls

  if spec.cwd ~= nil then
    plan.cwd = checkstring("cwd", spec.cwd)
  end
  if spec.env ~= nil then
    if type(spec.env) ~= "table" then
      bad("env", "table expected, got " .. type(spec.env))
    end
    local env = {}
    for k, v in pairs(spec.env) do
      if type(k) ~= "string" or k == "" or k:find("[=%z]") then
        bad("env", "bad variable name '" .. tostring(k) .. "'")
      end
      if type(v) == "number" then
        v = tostring(v)
      end
      checkstring("env." .. k, v)
      env[#env + 1] = k .. "=" .. v
    end
    sort(env)
    plan.env = env
  end
  plan.stdin = stdio("stdin", spec.stdin)
  plan.stdout = stdio("stdout", spec.stdout)
  plan.stderr = stdio("stderr", spec.stderr)

  if spec.init ~= nil then
    if type(spec.init) ~= "boolean" then
      bad("init", "boolean expected")
    end
    if spec.init and not new "pid" then
      bad("init", "needs a new pid namespace (namespaces = {\"pid\"})")
    end
    plan.init = spec.init or nil
  end
  if spec.cgroup ~= nil then
    plan.cgroup = checkstring("cgroup", spec.cgroup)
  end
  if spec.no_new_privs ~= nil then
    plan.no_new_privs = spec.no_new_privs and true or nil
  end
  if spec.caps ~= nil then
    if type(spec.caps) ~= "table" then
      bad("caps", "list of capability names expected")
    end
    local bits = 0
    for i, name in ipairs(spec.caps) do
      local n = type(name) == "string" and CAPS[name:lower():gsub("^cap_", "")]
      if not n then
        bad(format("caps[%d]", i), "unknown capability '" .. tostring(name) .. "'")
      end
      bits = bits | (1 << n)
    end
    plan.caps = bits
  end

  -- the order of namespace creation: with joins, the child enters first and
  -- creates the rest with unshare (a new pid namespace then needs a fork)
  if new "cgroup" and plan.cgroup then
    -- enter the cgroup first, so that it is the new namespace's root
    plan.unshare_flags = KINDS.cgroup
    new_flags = new_flags & ~KINDS.cgroup
  end
  local boxes = {}
  if spec.join ~= nil then
    local entries, b, e = open_joins(spec.join, new_flags | (plan.time and KINDS.time or 0))
    if not entries then
      return nil, "spawn: " .. b, e
    end
    boxes = b
    plan.joins = entries
    if new "user" then
      plan.unshare_user = true
    end
    plan.unshare_flags = (plan.unshare_flags or 0) | (new_flags & ~KINDS.user)
    if new "pid" then
      plan.fork = true
    end
    for _, je in ipairs(entries) do
      if je.nstype & KINDS.pid ~= 0 then
        plan.fork = true
      end
    end
    new_flags = 0
  end
  plan.clone_flags = new_flags

  local p, msg, e = core.spawn(plan)
  close_boxes(boxes)
  return p, msg, e
end

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
