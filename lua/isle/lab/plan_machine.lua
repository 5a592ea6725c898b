--- The checks of what makes a lab host a machine (part of the plan, pure:
-- no system call): its filesystem options (`files`, `private`, `mounts`
-- of `lab:host`) and its services (`lab:service`), ordered by `after`.
-- Mistakes raise `isle.lab.plan`'s Bad, as the rest of the plan's checks.
-- @module isle.lab.plan_machine
local check = require "isle._check"

local M = {}

local type, pairs, ipairs, tostring, pcall = type, pairs, ipairs, tostring, pcall
local format, concat, mtype = string.format, table.concat, math.type

-- isle.lab.plan's helpers (it requires this module: looked up when used)
local function P()
  return require "isle.lab.plan"
end
local function bad(arg, why) P()._bad(arg, why) end
local function fail(...) P()._fail(...) end
local function fields(arg, t, allowed) return P()._fields(arg, t, allowed) end
local function within(where, fn, ...) return P()._within(where, fn, ...) end
local function finite(v) return P()._finite(v) end

-- -------------------------------------------------------------------------
-- a host's filesystem: files, private directories, mounts

-- Directories a host shares with the machine, where no file of its own goes.
local SHARED_DIRS = { "/proc", "/sys", "/dev" }

local function below(path, dir)
  return path == dir or path:sub(1, #dir + 1) == dir .. "/"
end

-- A normal absolute path other than / (no //, /./, /../, trailing /), in
-- none of the shared directories, usable in overlay options.
local function fspath(arg, v)
  if type(v) ~= "string" then
    bad(arg, "absolute path expected, got " .. type(v))
  end
  if v:sub(1, 1) ~= "/" or v == "/" or v:find("%z") then
    bad(arg, format("absolute path other than / expected, got '%s'", v))
  end
  if v:find("//", 1, true) or v:find("/$") or v:find("/%.%.?/") or v:find("/%.%.?$") then
    bad(arg, format("'%s' is not a normal path (//, /./, /../ or a trailing /)", v))
  end
  if v:find("[,:\\%s]") then
    bad(arg, format("'%s': blanks, ',', ':' and '\\' are not supported in paths", v))
  end
  for _, d in ipairs(SHARED_DIRS) do
    if below(v, d) then
      bad(arg, format("'%s' is below %s, which every host shares with the machine", v, d))
    end
  end
  return v
end

local FILE_OPTS = check.set { "text", "source", "mode" }

--- Check a host's `files`: `{[path] = "text" | {text =, mode =} | {source
-- =, mode =}}`; the list of `{path, text|source, mode}`, sorted by path.
function M.files(t)
  if type(t) ~= "table" then
    bad("opts.files", "table {[path] = text, ...} expected, got " .. type(t))
  end
  local out = {}
  for path, v in pairs(t) do
    local arg = format("opts.files[%q]", tostring(path))
    fspath(arg, path)
    local f = { path = path }
    if type(v) == "string" then
      f.text = v
    else
      fields(arg, v, FILE_OPTS)
      if (v.text == nil) == (v.source == nil) then
        bad(arg, "one of text or source expected")
      end
      if v.text ~= nil and type(v.text) ~= "string" then
        bad(arg .. ".text", "string expected, got " .. type(v.text))
      end
      if v.source ~= nil and (type(v.source) ~= "string" or v.source == "") then
        bad(arg .. ".source", "path expected, got " .. type(v.source))
      end
      if v.mode ~= nil and (mtype(v.mode) ~= "integer" or v.mode < 0 or v.mode > 4095) then
        bad(arg .. ".mode", "integer in [0, 4095] (e.g. 493 for 0755) expected, got "
          .. tostring(v.mode))
      end
      f.text, f.source, f.mode = v.text, v.source, v.mode
    end
    out[#out + 1] = f
  end
  table.sort(out, function(a, b) return a.path < b.path end)
  return out
end

--- Check a host's `private`: a list of directories, none below another.
function M.privates(t)
  if type(t) ~= "table" then
    bad("opts.private", "list of directories expected, got " .. type(t))
  end
  local out = {}
  for i, d in ipairs(t) do
    out[i] = fspath(format("opts.private[%d]", i), d)
  end
  table.sort(out)
  for i = 2, #out do
    if below(out[i], out[i - 1]) then
      bad("opts.private", format("%s is below %s", out[i], out[i - 1]))
    end
  end
  return out
end

--- Check a host's `mounts` (the mount steps of `isle.spawn`); their
-- compiled calls, targets absolute.
function M.mounts(t)
  if type(t) ~= "table" then
    bad("opts.mounts", "list of mount steps expected, got " .. type(t))
  end
  local calls = {}
  for i, step in ipairs(t) do
    local arg = format("opts.mounts[%d]", i)
    local ok, r = pcall(require("isle.mount")._compile, "host", arg, step, 1)
    if not ok then
      bad(arg, tostring(r):match("%((.*)%)$") or tostring(r))
    end
    for _, c in ipairs(r) do
      if c.target:sub(1, 1) ~= "/" then
        bad(arg, "target must be an absolute path, got '" .. c.target .. "'")
      end
      c.what = nil
      calls[#calls + 1] = c
    end
  end
  return calls
end

-- -------------------------------------------------------------------------
-- services

local SERVICE_OPTS = check.set { "argv", "env", "cwd", "user", "after", "ready", "timeout",
  "restart", "restart_limit" }
--- Longest time a service may take to get ready, in seconds.
M.SERVICE_TIMEOUT_MAX = 3600

local function strlist(arg, v, nonempty)
  if type(v) ~= "table" or (nonempty and #v == 0) then
    bad(arg, (nonempty and "non-empty " or "") .. "list of strings expected, got " .. type(v))
  end
  local out = {}
  for i, x in ipairs(v) do
    if mtype(x) == "integer" then x = tostring(x) end
    if type(x) ~= "string" or x:find("%z") then
      bad(format("%s[%d]", arg, i), "string expected, got " .. type(x))
    end
    out[i] = x
  end
  for k in pairs(v) do
    if mtype(k) ~= "integer" or k < 1 or k > #v then
      bad(arg, "a list expected (key " .. tostring(k) .. ")")
    end
  end
  return out
end

local function ready_opts(v)
  fields("opts.ready", v, check.set { "argv", "port", "file" })
  local n = (v.argv and 1 or 0) + (v.port and 1 or 0) + (v.file and 1 or 0)
  if n ~= 1 then
    bad("opts.ready", "exactly one of argv, port or file expected")
  end
  if v.argv then
    return { argv = strlist("opts.ready.argv", v.argv, true) }
  elseif v.port then
    if mtype(v.port) ~= "integer" or v.port < 1 or v.port > 65535 then
      bad("opts.ready.port", "integer in [1, 65535] expected, got " .. tostring(v.port))
    end
    return { port = v.port }
  end
  if type(v.file) ~= "string" or v.file:sub(1, 1) ~= "/" or v.file:find("%z") then
    bad("opts.ready.file", "absolute path expected, got " .. tostring(v.file))
  end
  return { file = v.file }
end

local function user_opt(v)
  if mtype(v) == "integer" and v >= 0 then
    return tostring(v)
  end
  if type(v) ~= "string" or not (v:match("^%d+$") or v:match("^%d+:%d+$")) then
    bad("opts.user", "\"uid\" or \"uid:gid\" expected, got " .. tostring(v))
  end
  return v
end

--- Check the options of `lab:service`; the checked copy.
function M.service_opts(opts)
  fields("opts", opts, SERVICE_OPTS)
  local out = { argv = strlist("opts.argv", opts.argv, true), after = {},
    timeout = 30, restart = "no", restart_limit = 5 }
  if opts.argv == nil then bad("opts.argv", "the command (a list) expected") end
  if opts.env ~= nil then
    if type(opts.env) ~= "table" then bad("opts.env", "table expected, got " .. type(opts.env)) end
    out.env = {}
    for k, v in pairs(opts.env) do
      if type(k) ~= "string" or k == "" or k:find("[=%z]") then
        bad("opts.env", "bad variable name '" .. tostring(k) .. "'")
      end
      if type(v) == "number" then v = tostring(v) end
      if type(v) ~= "string" or v:find("%z") then
        bad("opts.env." .. k, "string expected, got " .. type(v))
      end
      out.env[k] = v
    end
  end
  if opts.cwd ~= nil then
    if type(opts.cwd) ~= "string" or opts.cwd:sub(1, 1) ~= "/" or opts.cwd:find("%z") then
      bad("opts.cwd", "absolute path expected, got " .. tostring(opts.cwd))
    end
    out.cwd = opts.cwd
  end
  out.user = opts.user ~= nil and user_opt(opts.user) or nil
  if opts.after ~= nil then
    out.after = strlist("opts.after", type(opts.after) == "string" and { opts.after }
      or opts.after)
  end
  out.ready = opts.ready ~= nil and ready_opts(opts.ready) or nil
  if opts.timeout ~= nil then
    if not finite(opts.timeout) or opts.timeout <= 0 or opts.timeout > M.SERVICE_TIMEOUT_MAX then
      bad("opts.timeout", format("seconds in (0, %d] expected, got %s", M.SERVICE_TIMEOUT_MAX,
        tostring(opts.timeout)))
    end
    out.timeout = opts.timeout
  end
  if opts.restart ~= nil then
    if opts.restart ~= "no" and opts.restart ~= "on-failure" then
      bad("opts.restart", "\"no\" or \"on-failure\" expected, got " .. tostring(opts.restart))
    end
    out.restart = opts.restart
  end
  if opts.restart_limit ~= nil then
    if mtype(opts.restart_limit) ~= "integer" or opts.restart_limit < 0
      or opts.restart_limit > 1000 then
      bad("opts.restart_limit", "integer in [0, 1000] expected, got "
        .. tostring(opts.restart_limit))
    end
    out.restart_limit = opts.restart_limit
  end
  return out
end

-- The services, checked again, in start order: each host's in an order
-- where every service comes after those it names in `after` (declaration
-- order otherwise); raises on an unknown or cyclic `after`.
function M.services(decl, st)
  local byhost, list = {}, {}
  for _, sv in ipairs(decl.services or {}) do
    local h = st.hosts[sv.host]
    if not h or st.nodes[sv.host.name] ~= sv.host then
      fail("service %s: not on a host of this lab", tostring(sv.name))
    end
    local what = format("service %s on %s", tostring(sv.name), h.name)
    within(what, P().node_name, "service", sv.name)
    local o = within(what, M.service_opts, sv.opts or {})
    byhost[h.name] = byhost[h.name] or { order = {}, by = {} }
    local hs = byhost[h.name]
    if hs.by[sv.name] then
      fail("host %s has two services named '%s'", h.name, sv.name)
    end
    o.host, o.name = h.name, sv.name
    hs.by[sv.name] = o
    hs.order[#hs.order + 1] = o
  end
  for _, h in ipairs(st.plan.hosts) do
    local hs = byhost[h.name]
    local state = {}
    local function visit(o, path)
      if state[o.name] == "done" then return end
      if state[o.name] == "visiting" then
        fail("host %s: services wait for each other: %s", h.name, concat(path, " -> "))
      end
      state[o.name] = "visiting"
      for _, dep in ipairs(o.after) do
        local d = hs.by[dep]
        if not d then
          fail("service %s on %s: after '%s': no such service on %s", o.name, h.name, dep,
            h.name)
        end
        path[#path + 1] = dep
        visit(d, path)
        path[#path] = nil
      end
      state[o.name] = "done"
      list[#list + 1] = o
    end
    for _, o in ipairs(hs and hs.order or {}) do
      visit(o, { o.name })
    end
  end
  st.plan.services = list
end

return M
