--- The steps of `apply` that concern hosts as machines (`isle.lab.change`
-- runs them): the hosts files, each kept host's `files`, the services,
-- and ending the processes of the hosts that go; with their undoing
-- (`isle.lab.restore`).
--
-- Hosts files are written in place (truncated and rewritten, never
-- replaced): the lab's one `hosts` and the `hosts.HOST` of hosts without
-- an address are bound on `/etc/hosts` in every host's filesystem, and
-- `/etc/netns/LAB-HOST/hosts` links to them, so one write reaches every
-- way onto every host. A kept host's changed files are written in place
-- inside its filesystem (a bound file stays bound); a new one is placed
-- as `up` places it (written below a private directory or an overlay, or
-- bound over the machine's file from the host's own `/run/.isle`); one no
-- longer declared goes after `commit` (its bind undone, or it is removed).
-- @module isle.lab.change_host
local core = require "isle.core"
local sys = require "isle._sys"
local ns = require "isle.ns"
local journal = require "isle.lab.journal"
local host = require "isle.lab.host"
local reap = require "isle.lab.reap"
local services = require "isle.lab.services"

local M = {}

local ipairs, pairs, format, concat = ipairs, pairs, string.format, table.concat
local EINVAL = 22

local function labdir(name)
  return journal.STATE_DIR .. "/" .. name
end

-- -------------------------------------------------------------------------
-- hosts files

--- Write the hosts files of plan `p` in place: the lab's (appended to
-- when `p0`'s lines only grew), and each `hosts.HOST` there is.
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.write_hosts(p, p0)
  local dir = labdir(p.name)
  local common = concat(p.etc_hosts, "\n")
  local grew = p0 ~= nil and #p.etc_hosts >= #p0.etc_hosts and #p0.etc_hosts > 0
  for i, line in ipairs(grew and p0.etc_hosts or {}) do
    if p.etc_hosts[i] ~= line then grew = false break end
  end
  local ok, msg, e
  if grew then
    ok, msg, e = true, nil, nil
    if #p.etc_hosts > #p0.etc_hosts then
      ok, msg, e = sys.writefile(dir .. "/hosts", concat(p.etc_hosts, "\n", #p0.etc_hosts + 1)
        .. "\n", "a")
    end
  else
    ok, msg, e = sys.writefile(dir .. "/hosts", host.hosts_text(p, nil, common))
  end
  if not ok then return nil, "hosts file: " .. msg, e end
  local by = {}
  for _, h in ipairs(p.hosts) do by[h.name] = h end
  for _, f in ipairs(sys.listdir(dir)) do
    local h = by[f:match("^hosts%.(.+)$") or ""]
    if h then
      ok, msg, e = sys.writefile(dir .. "/" .. f, host.hosts_text(p, h, common))
      if not ok then return nil, format("host %s: hosts file: %s", h.name, msg), e end
    end
  end
  return true
end

-- -------------------------------------------------------------------------
-- a kept host's files

-- Run fn() inside host `hname`'s filesystem; back in ours after.
local function in_host(name, hname, fn)
  local home <close>, msg, e = require("isle.lab.build")._new_home()
  if not home then return nil, msg, e end
  local ok
  home.moved.mnt = true
  ok, msg, e = ns.setns(labdir(name) .. "/mnt/" .. hname, "mnt")
  if ok then ok, msg, e = fn() end
  local back, bm, be = home:back("mnt")
  if ok and not back then return nil, bm, be end
  return ok, msg, e
end

local function by_path(h)
  local t = {}
  for _, f in ipairs(h and h.files or {}) do t[f.path] = f end
  return t
end

-- How file f of host plan `h` gets into place on a running host, seen
-- from the machine: "write" (in place, or below a private directory or
-- an overlay `had` has), "bind" (over the machine's file), "overlay"
-- (a new overlay on directory `a` first); or nil, message.
local function placing(h, f, had)
  local path, why = host.follow(f.path, h)
  if not path then return nil, why end
  local where, a = host.locate(h, path)
  if not where then return nil, a end
  if where == "tmpfs" then return "write", path end
  if where == "file" then return "bind", path end
  if where == "missing" then
    for _, o in ipairs(had) do
      if host.under(path, o) then return "write", path end
    end
    return "overlay", path, a
  end
  return nil, "is a " .. host.WHAT[where] .. " on the machine"
end

-- The overlays host plan `h`'s filesystem has (those `up` made).
local function overlays_of(h)
  local lay = host.layout(h, {})
  return lay and lay.overlays or {}
end

--- Check that host `new`'s files can replace `old`'s on the running host
-- (before anything is done): nil, message, EINVAL when not.
function M.check_files(old, new)
  local had = overlays_of(old)
  for _, f in ipairs(new.files or {}) do
    local how, why = placing(new, f, had)
    if not how then return nil, format("host %s: files %s: %s", new.name, f.path, why), EINVAL end
  end
  return true
end

-- What putting the files of `to` in place takes (seen from the machine,
-- before entering the host): those of `from` rewritten where they are
-- (all of them when `inplace`); a list of {how, path, text, mode, dir}.
local function plan_put(to, from, inplace)
  local had, was = overlays_of(from), by_path(from)
  local acts = {}
  for _, f in ipairs(to.files or {}) do
    local old = was[f.path]
    if not (old and old.text == f.text and old.mode == f.mode) then
      local how, path, a = placing(to, f, had)
      if not how then return nil, format("files %s: %s", f.path, path), EINVAL end
      if old or inplace then how = "write" end
      if how == "overlay" then had[#had + 1] = a end
      acts[#acts + 1] = { how, path, f.text, f.mode, a, f.path }
    end
  end
  return acts
end

-- Inside the host: carry out `plan_put`'s list.
local function put(acts)
  for _, x in ipairs(acts) do
    local how, path, text, mode, a = x[1], x[2], x[3], x[4], x[5]
    local ok, msg, e = true, nil, nil
    if how == "overlay" then
      ok, msg, e = sys.mkdirs("/run/.isle/o")
      if ok then ok, msg, e = host.overlay(a, #sys.listdir("/run/.isle/o") + 1, "/run/.isle/o") end
      how = "write"
    end
    if ok and how == "bind" then
      ok, msg, e = sys.mkdirs("/run/.isle/f")
      local src = "/run/.isle/f/" .. (#sys.listdir("/run/.isle/f") + 1)
      if ok then ok, msg, e = host.write(src, text, mode) end
      if ok then ok, msg, e = core.mount(src, path, nil, core.MS.bind, nil) end
    elseif ok then
      ok, msg, e = sys.mkdirs(host.parent(path))
      if ok then ok, msg, e = host.write(path, text, mode) end
    end
    if not ok then return nil, format("files %s: %s", x[6], msg), e end
  end
  return true
end

-- The files of `from` that `to` no longer has: {unbind, path} for one
-- bound over the machine's, {remove, path} for one written.
local function plan_drop(from, to)
  local keep, acts = by_path(to), {}
  for _, f in ipairs(from.files or {}) do
    if not keep[f.path] then
      local path = host.follow(f.path, from)
      local where = path and host.locate(from, path)
      if where then acts[#acts + 1] = { where == "file" and "unbind" or "remove", path } end
    end
  end
  return acts
end

-- Inside the host: carry out `plan_drop`'s list.
local function drop(acts)
  for _, x in ipairs(acts) do
    if x[1] == "unbind" then
      core.umount(x[2], core.MNT.detach)
    else
      sys.rmfile(x[2])
    end
  end
  return true
end

--- Bring running host `new.name` of lab `name` from `old`'s files to
-- `new`'s (those no longer declared stay until `drop_files`).
function M.files(name, old, new)
  local acts, msg, e = plan_put(new, old, false)
  if not acts then return nil, msg, e end
  return in_host(name, new.name, function() return put(acts) end)
end

--- Undo `files`: `old`'s files back as they were, `new`'s extra ones gone.
function M.unfiles(name, new, old)
  local acts, msg, e = plan_put(old, new, true)
  if not acts then return nil, msg, e end
  local gone = plan_drop(new, old)
  return in_host(name, old.name, function()
    local ok, m, err = put(acts)
    if ok then ok, m, err = drop(gone) end
    return ok, m, err
  end)
end

--- After `commit`: the files the kept hosts of `cur` no longer declare
-- (their plans in `prev`), gone.
function M.drop_files(name, prev, cur)
  local was = {}
  for _, h in ipairs(prev.hosts) do was[h.name] = h end
  local first
  for _, h in ipairs(cur.hosts) do
    local old = was[h.name]
    local acts = old and plan_drop(old, h) or {}
    if #acts > 0 then
      local ok, msg, e = in_host(name, h.name, function() return drop(acts) end)
      if not ok and not first then first = { format("host %s: %s", h.name, msg), e } end
    end
  end
  if first then return nil, first[1], first[2] end
  return true
end

-- -------------------------------------------------------------------------
-- services

--- Does the diff change any service?
function M.services_change(d)
  return #d.services_add + #d.services_del + #d.services_change > 0
end

--- The services of plan `d.p1` running: the supervisor started (its
-- records through journal `j`) when there is none, else asked to reload
-- the model (`record` writes the `services` record first).
function M.services(d, j, record)
  local p1 = d.p1
  if not M.services_change(d) then return true end
  if not services.running(p1.name) then
    if #(p1.services or {}) == 0 then return true end
    if services.read_status(p1.name) then -- it ran, and died
      return nil, "the lab's supervisor is not running (its services cannot change: isle down, "
        .. "then up)", 3 -- ESRCH
    end
    return services.start(p1, j)
  end
  local ok, msg, e = services.logdirs(p1)
  if ok then ok, msg, e = record() end
  if ok then ok, msg, e = services.reload(p1.name, "model", p1) end
  return ok, msg, e
end

--- Undo `services`: the supervisor runs the services of the model the
-- apply replaced.
function M.unservices(name, prev)
  if not services.running(name) then return true end
  return services.reload(name, "model.prev", prev)
end

-- -------------------------------------------------------------------------
-- hosts that go

--- End every process in the namespaces of the hosts `gone` (a set of
-- names) of lab `name` (their services were stopped before): how many.
function M.sweep(name, gone)
  local dir = labdir(name)
  local paths = {}
  for h in pairs(gone) do
    paths[#paths + 1] = journal.NETNS_DIR .. "/" .. name .. "-" .. h
    paths[#paths + 1] = dir .. "/mnt/" .. h
    paths[#paths + 1] = dir .. "/ns/" .. h .. ".uts"
  end
  for _, f in ipairs(sys.listdir(dir .. "/ns")) do
    local h = f:match("^(.-)%.time")
    if h and gone[h] then paths[#paths + 1] = dir .. "/ns/" .. f end
  end
  local ids, n = reap.identities(paths)
  if n == 0 then return 0 end
  return (reap.sweep(ids))
end

return M
