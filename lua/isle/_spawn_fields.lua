--- The fields of an `isle.spawn` spec, checked (a mistake raises "bad
-- argument #1 to 'spawn' (field: msg)", which `isle.process` re-raises
-- blaming its caller) and compiled into the plain plan `isle.core.spawn`
-- takes: what to run, namespaces, names, id maps, steps (`mounts`, the
-- `rootfs` pivot, `steps`), environment, stdio, the user and the
-- capabilities. (internal)
-- @module isle._spawn_fields
local core = require "isle.core"
local C = require "isle._check"

local F = {}

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local mtype, format, concat, sort = math.type, string.format, table.concat, table.sort
local bad

-- What the modules above may ask of the engine beyond the public fields
-- (`engine = {...}` of `_spawn`): a container's hardening (see core.spawn),
-- its seccomp program, the capabilities raised as ambient, the caller's
-- argument and environment areas (the init overwrites them).
local engine_fields = C.set {
  "harden", "seccomp", "ambient", "arg_start", "arg_end", "env_start", "env_end", "last_cap",
}

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
F.CAPS = CAPS

--- Raise the mistake of a field: "bad argument #1 to 'spawn' (field: msg)"
-- (isle.process re-raises it blaming its caller).
function F.bad(field, msg)
  error(format("bad argument #1 to 'spawn' (%s: %s)", field, msg), 0)
end
bad = F.bad

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
function F.format_offsets(field, t, raise)
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
    local nsec = math.floor((v - s) * 1e9 + 0.5)
    if nsec >= 1000000000 then
      s, nsec = s + 1, nsec - 1000000000
    end
    out[#out + 1] = format("%s %d %d\n", k, s, nsec)
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
    if v < 0 or v > 0x7fffffff then
      bad(field, "fd out of range [0, 2147483647]")
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

-- The steps a plan may carry (see `spawn`): op -> field -> type ("?": optional).
local STEP_FIELDS = {
  mount = { target = "string", source = "string?", fstype = "string?", data = "string?",
    flags = "integer?" },
  umount = { target = "string", flags = "integer?" },
  mkdir = { path = "string", mode = "integer?" },
  mkfile = { path = "string" },
  symlink = { target = "string", path = "string" },
  setattr = { path = "string", attr = "integer?" },
  pivot = { path = "string", put_old = "string?" },
  chdir = { path = "string" },
  lo_up = {},
  write_fd = { fd = "integer", data = "string" },
  pty = { fd = "integer", rows = "integer?", cols = "integer?" },
}
local STEP_COMMON = { op = "string", what = "string?", optional = "boolean?" }
local STEP_MAX = { fd = 0x7fffffff, flags = 0xffffffff, mode = 4095, rows = 65535,
  cols = 65535, attr = 0xffffffff }

-- op -> field -> {type, optional}, parsed once
for op, fields in pairs(STEP_FIELDS) do
  local t = {}
  for _, set in ipairs { fields, STEP_COMMON } do
    for k, want in pairs(set) do
      t[k] = { want:gsub("%?$", ""), want:sub(-1) == "?" }
    end
  end
  STEP_FIELDS[op] = t
end

local function check_step(i, st)
  if type(st) ~= "table" then
    bad(format("steps[%d]", i), "table expected, got " .. type(st))
  end
  local fields = STEP_FIELDS[st.op]
  if not fields then
    bad(format("steps[%d]", i), "unknown op '" .. tostring(st.op) .. "'")
  end
  for k, v in pairs(st) do
    local want = fields[k]
    if not want then
      bad(format("steps[%d]", i), "unknown field '" .. tostring(k) .. "'")
    end
    local t = want[1]
    if t == "integer" then
      if mtype(v) ~= "integer" or v < 0 or v > STEP_MAX[k] then
        bad(format("steps[%d].%s", i, k), "integer in [0, " .. STEP_MAX[k] .. "] expected")
      end
    elseif type(v) ~= t then
      bad(format("steps[%d].%s", i, k), t .. " expected, got " .. type(v))
    elseif t == "string" and k ~= "data" and v:find("%z") then
      bad(format("steps[%d].%s", i, k), "contains a NUL byte")
    end
  end
  for k, want in pairs(fields) do
    if not want[2] and st[k] == nil then
      bad(format("steps[%d].%s", i, k), "missing")
    end
  end
  return st
end

function F.what_to_run(spec, plan)
  if spec.argv ~= nil and spec.fn ~= nil then
    bad("fn", "argv and fn are exclusive")
  end
  if spec.fn ~= nil then
    if type(spec.fn) ~= "function" then
      bad("fn", "function expected, got " .. type(spec.fn))
    end
    plan.fn = spec.fn
    return
  end
  local argv = spec.argv
  if type(argv) ~= "table" or #argv == 0 then
    bad("argv", "non-empty list expected")
  end
  plan.argv = {}
  for i, a in ipairs(argv) do
    if type(a) == "number" then
      a = tostring(a)
    end
    plan.argv[i] = checkstring(format("argv[%d]", i), a)
  end
  if plan.argv[1] == "" then
    bad("argv[1]", "empty command")
  end
end

function F.namespaces(spec)
  if spec.namespaces == nil then
    return 0
  end
  local ok, flags = pcall(core.kinds, spec.namespaces)
  if not ok then
    bad("namespaces", tostring(flags):match("%((.*)%)$") or tostring(flags))
  end
  return flags
end

function F.uts_names(spec, plan, new)
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
end

--- Whether `list` maps one id of the caller's own (no helper needed).
local function own_id(list, id)
  return #list == 1 and list[1][2] == id and list[1][3] == 1
end

--- Whether a map has an inside 0: the child becomes 0 there (as crun
-- does; else it would be the overflow id, 65534).
local function maps_zero(list)
  for _, r in ipairs(list) do
    if r[1] == 0 then
      return true
    end
  end
  return false
end

function F.id_maps(spec, plan, new)
  local uid, gid = core.ids()
  if spec.uid_map ~= nil or spec.gid_map ~= nil or spec.setgroups ~= nil then
    if not new "user" then
      bad(spec.uid_map and "uid_map" or spec.gid_map and "gid_map" or "setgroups",
        "needs a new user namespace (namespaces = {\"user\"})")
    end
  end
  local helper = false
  if spec.uid_map ~= nil then
    local m, list = format_map("uid_map", spec.uid_map)
    plan.uid_map, plan.uid0 = m, maps_zero(list) or nil
    helper = helper or (uid ~= 0 and not own_id(list, uid))
  end
  if spec.gid_map ~= nil then
    local m, list = format_map("gid_map", spec.gid_map)
    plan.gid_map, plan.gid0 = m, maps_zero(list) or nil
    helper = helper or (uid ~= 0 and not own_id(list, gid))
  end
  plan.map_helper = helper or nil
  if spec.setgroups ~= nil then
    if spec.setgroups ~= "deny" and spec.setgroups ~= "allow" then
      bad("setgroups", "'deny' or 'allow' expected")
    end
    plan.setgroups = spec.setgroups
  elseif new "user" and uid ~= 0 and not helper then
    plan.setgroups = "deny"
  end
end

--- The steps: `mounts`, the `rootfs` pivot, then `steps` as given; first
-- "make / private" in a new mount namespace (unless the first step sets
-- the propagation of / itself).
function F.compile_steps(spec, plan, new)
  local steps = {}
  if spec.mounts ~= nil then
    if type(spec.mounts) ~= "table" then
      bad("mounts", "list expected, got " .. type(spec.mounts))
    end
    if #spec.mounts > 0 and not new "mnt" and spec.join == nil then
      bad("mounts", "needs a new mount namespace (namespaces = {\"mnt\"})")
    end
    for i, m in ipairs(spec.mounts) do
      local where = format("#1 (mounts[%d])", i)
      for _, c in ipairs(require("isle.mount")._compile("spawn", where, m)) do
        steps[#steps + 1] = c
      end
    end
  end
  if spec.rootfs ~= nil then
    local dir = checkstring("rootfs", spec.rootfs)
    if not new "mnt" then
      bad("rootfs", "needs a new mount namespace (namespaces = {\"mnt\"})")
    end
    steps[#steps + 1] = { op = "mount", source = dir, target = dir,
      flags = core.MS.bind | core.MS.rec, what = "rootfs " .. dir .. ": bind" }
    steps[#steps + 1] = { op = "pivot", path = dir, what = "rootfs " .. dir .. ": pivot_root" }
  end
  if spec.steps ~= nil then
    if type(spec.steps) ~= "table" then
      bad("steps", "list expected, got " .. type(spec.steps))
    end
    for i, st in ipairs(spec.steps) do
      steps[#steps + 1] = plan.prefix == "spawn" and check_step(i, st) or st
    end
  end
  if new "mnt" then
    local first = steps[1]
    local MS = core.MS
    local prop = MS.private | MS.slave | MS.shared | MS.unbindable
    if not (first and first.target == "/" and first.op == "mount"
      and (first.flags or 0) & prop ~= 0) then
      table.insert(steps, 1, { op = "mount", target = "/", flags = MS.rec | MS.private,
        what = "make / private" })
    end
  end
  plan.steps = steps
end

function F.environment(spec, plan)
  if spec.cwd ~= nil then
    plan.cwd = checkstring("cwd", spec.cwd)
  end
  if spec.env == nil then
    return
  end
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

--- Capability bits of a list of names.
function F.capbits(caps, field)
  field = field or "caps"
  if type(caps) ~= "table" then
    bad(field, "list of capability names expected")
  end
  local bits = 0
  for i, name in ipairs(caps) do
    local n = type(name) == "string" and CAPS[name:lower():gsub("^cap_", "")]
    if not n then
      bad(format("%s[%d]", field, i), "unknown capability '" .. tostring(name) .. "'")
    end
    bits = bits | (1 << n)
  end
  return bits
end

local function checkid(field, v)
  if mtype(v) ~= "integer" or v < 0 or v > 0xFFFFFFFE then
    bad(field, "id in [0, 4294967294] expected")
  end
  return v
end

--- `user`: `{uid =, gid =, groups = {...}}` or "uid[:gid]". The groups
-- are set when given, or to none when the caller may (it is root and no
-- new user namespace of its own says "deny" or lacks a gid map).
function F.user(spec, plan)
  local u = spec.user
  if u == nil then
    return
  end
  if type(u) == "string" or mtype(u) == "integer" then
    local su, sg = tostring(u):match("^(%d+):?(%d*)$")
    if not su then
      bad("user", "'uid[:gid]' expected, got '" .. tostring(u) .. "'")
    end
    u = { uid = math.tointeger(tonumber(su)), gid = math.tointeger(tonumber(sg)) }
  elseif type(u) ~= "table" then
    bad("user", "{uid =, gid =, groups =} or 'uid[:gid]' expected, got " .. type(u))
  else
    for k in pairs(u) do
      if k ~= "uid" and k ~= "gid" and k ~= "groups" then
        bad("user", "unknown field '" .. tostring(k) .. "'")
      end
    end
  end
  plan.uid = u.uid ~= nil and checkid("user.uid", u.uid) or nil
  plan.gid = u.gid ~= nil and checkid("user.gid", u.gid) or nil
  if u.groups ~= nil then
    if type(u.groups) ~= "table" then
      bad("user.groups", "list of group ids expected")
    end
    plan.groups = {}
    for i, g in ipairs(u.groups) do
      plan.groups[i] = checkid(format("user.groups[%d]", i), g)
    end
  elseif core.ids() == 0 and plan.setgroups ~= "deny" and (plan.uid_map == nil or plan.gid_map) then
    plan.groups = {} -- (not before a new user namespace has its gid map)
  end
end

function F.process_fields(spec, plan, new)
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
    plan.caps = F.capbits(spec.caps)
  end
  F.user(spec, plan)
end

--- The engine's own fields (modules above only; checked by them).
function F.engine(spec, plan)
  if spec.engine == nil then
    return
  end
  for k, v in pairs(spec.engine) do
    if not engine_fields[k] then
      bad("engine", "unknown field '" .. tostring(k) .. "'")
    end
    plan[k] = v
  end
end

return F
