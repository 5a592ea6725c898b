--- The lab's journal: `/run/isle/LAB/state`, the one ledger of what a lab
-- made. Every step of `lab:up` writes its record *before* it acts; an
-- aborted `up` (a failure or a raise) and `down` are the same function,
-- `replay` (`isle.lab.replay`), which undoes the records newest first,
-- journalling its own progress (`undone K`) so that a killed `down` resumes
-- where it stopped; what undoes each kind of record is here (UNDO).
--
-- Records are lines of words: `pid P`, `file PATH`, `bind PATH`, `netns
-- NAME`, `etcnetns`, `dir PATH`, `symlink PATH TARGET`, `nsdir PATH`,
-- `sysdir PATH` (the notes of hosts' sysfs mounted, isle.lab.entry.sysfs),
-- `logs PATH`, `supervisor` (undone by asking it to stop its services and
-- exit), `uplink IFNAME`, and notes on them (`ino
-- NAME INODE MTIME`, `ifindex IFNAME INDEX`, `foreign NAME`, `done`, `undone K`).
-- A running lab goes on: `set KEY k=v...` (a link changed by `link_set`:
-- the state is the model with these folded in, `isle.lab.state`), and an `apply`
-- writes `apply PID`, the records of what it makes, changes or removes
-- (the RESTORE kinds below, undone only when the apply is aborted),
-- `commit`, then `applied` (or `aborted K` once rolled back).
-- The directory is 0700 and the records 0600 whatever the umask, and replay
-- refuses (with a warning) any record naming something outside the lab's
-- own prefixes: `/run/netns/LAB-*`, `/run/isle/LAB/`, `/etc/netns/LAB-*`
-- (once its model is written: only its own hosts' `LAB-HOST`), and its
-- uplink (deleted only while its ifindex is the one recorded). A host
-- netns is removed only while it is the namespace the lab made (inode and
-- nsfs birth time recorded), or when all that is left is an empty file.
--
-- Test-only fault points, read from the environment: `ISLE_FAULT=up:K`
-- SIGKILLs the process right after the K-th record of `up` is written,
-- `up:K:raise` raises a Lua error there instead, `down:K` kills `down`
-- right after its K-th progress record, `apply:K` kills `apply` after its
-- K-th record.
-- @module isle.lab.journal
local core = require "isle.core"
local sys = require "isle._sys"
local plan = sys.lazy "isle.lab.plan" -- (names only: link_set, apply need none of it)
local entry = require "isle.lab.entry"

local M = {}

local ipairs, pairs, tonumber, error, setmetatable, type =
  ipairs, pairs, tonumber, error, setmetatable, type
local format, concat, sort = string.format, table.concat, table.sort

--- Where labs keep their state (one 0700 directory per lab).
M.STATE_DIR = entry.STATE_DIR
local NETNS_DIR = entry.NETNS_DIR
local ETC_NETNS = "/etc/netns"
-- /etc/netns when a lab made it: removed by whichever lab down leaves it
-- empty
local ETC_MARK = M.STATE_DIR .. "/made-etc-netns"
local ENOENT, EEXIST, ENODEV = 2, 17, 19
local DIR_MODE, FILE_MODE, STATE_MODE = 448, 384, 493 -- 0700, 0600, 0755

local function labdir(name)
  return M.STATE_DIR .. "/" .. name
end

-- -------------------------------------------------------------------------
-- fault points (tests only)

local function fault_point(phase)
  local spec = os.getenv("ISLE_FAULT")
  local p, k, mode = (spec or ""):match("^(%a+):(%d+):?(%a*)$")
  if p ~= phase then
    return nil
  end
  return { k = tonumber(k), raise = mode == "raise" }
end

local function fault(f, n)
  if not (f and f.k == n) then
    return
  end
  if f.raise then
    error(format("isle: injected fault after journal record %d", n), 0)
  end
  local box, fd = core.pidfd_open(sys.getpid())
  if box then
    core.pidfd_kill(fd, 9)
  end
  while true do sys.sleep(1) end -- the SIGKILL is on its way
end

-- -------------------------------------------------------------------------
-- the state directory and the writer

-- /run/isle: 0755 (each lab's directory in it is 0700) and a shared mount
-- (as ip makes /run/netns), so that the unmounts of `down` reach the mount
-- namespaces of processes on hosts.
local function prepare_state_dir()
  local ok, msg, e = core.mkdir(M.STATE_DIR, STATE_MODE)
  if not ok and e ~= EEXIST then
    return nil, msg, e
  end
  ok, msg, e = core.chmod(M.STATE_DIR, STATE_MODE) -- whoever made it, whatever the umask
  if not ok then
    return nil, msg, e
  end
  local mount = require "isle.mount"
  for line in (core.readfile("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
    local target, rest = line:match("^%S+ %S+ %S+ %S+ (%S+) %S+ (.-) %- ")
    if target == M.STATE_DIR then
      if rest:find("shared:", 1, true) then
        return true
      end
      return mount.mount { target = M.STATE_DIR, flags = { "shared" } }
    end
  end
  ok, msg, e = mount.bind(M.STATE_DIR, M.STATE_DIR)
  if not ok then
    return nil, msg, e
  end
  return mount.mount { target = M.STATE_DIR, flags = { "shared" } }
end

local Journal = {}
Journal.__index = Journal

--- Start the journal of lab `name`: its directory (which must not exist)
-- and its records file.
-- @treturn[1] Journal
-- @return[2] nil, message (`lab NAME: ...`), errno
function M.create(name)
  local dir = labdir(name)
  local ok, msg, e = prepare_state_dir()
  if not ok then
    return nil, format("lab %s: %s", name, msg), e
  end
  ok, msg, e = core.mkdir(dir, DIR_MODE)
  if not ok then
    if e == EEXIST then
      msg = format("already exists (%s; `isle down %s` removes it)", dir, name)
    end
    return nil, format("lab %s: %s", name, msg), e
  end
  local f
  ok, msg, e = core.chmod(dir, DIR_MODE)
  if ok then f, msg, e = core.fopen(dir .. "/state", "a") end
  if f then ok, msg, e = core.chmod(dir .. "/state", FILE_MODE) end
  if not (f and ok) then
    if f then f:close() end
    sys.rmfile(dir .. "/state")
    os.remove(dir)
    return nil, format("lab %s: %s", name, msg), e
  end
  f:setvbuf("no")
  return setmetatable({ name = name, dir = dir, f = f, n = 0, fault = fault_point("up") },
    Journal)
end

--- Go on writing the journal of running lab `name` (`link_set`, `apply`);
-- `phase` names its fault point (`ISLE_FAULT=apply:K`).
-- @treturn[1] Journal
-- @return[2] nil, message, errno
function M.append(name, phase)
  local dir = labdir(name)
  local f, msg, e = core.fopen(dir .. "/state", "a")
  if not f then
    return nil, format("lab %s: journal: %s", name, msg), e
  end
  f:setvbuf("no")
  return setmetatable({ name = name, dir = dir, f = f, n = 0,
    fault = phase and fault_point(phase) }, Journal)
end

--- Write one record (words joined by blanks) before acting on it.
-- @treturn[1] true
-- @return[2] nil, message, errno
function Journal:record(...)
  -- one write(2) per record: a kill leaves whole lines (or a torn last one)
  local ok, msg, e = self.f:write(concat({ ... }, " ") .. "\n")
  if not ok then
    return nil, format("lab %s: journal: %s", self.name, msg), e
  end
  self.n = self.n + 1
  fault(self.fault, self.n)
  return true
end

function Journal:close()
  if self.f then
    self.f:close()
    self.f = nil
  end
end

--- Write a private file of the lab (0600).
function M.writefile(path, data)
  local ok, msg, e = sys.writefile(path, data)
  if ok then ok, msg, e = core.chmod(path, FILE_MODE) end
  return ok, msg, e
end

--- Make `/etc/netns` (which `ip netns exec` reads) when it is missing,
-- marked as isle's so that the last lab down removes it again.
-- @treturn boolean whether the caller must record and call `make_etc_netns`
function M.needs_etc_netns()
  return not sys.exists(ETC_NETNS)
end

function M.make_etc_netns()
  local ok, msg, e = sys.writefile(ETC_MARK, ETC_NETNS .. "\n")
  if ok then
    ok, msg, e = core.mkdir(ETC_NETNS, STATE_MODE)
    if not ok and e == EEXIST then -- another lab was quicker
      ok = true
    end
  end
  return ok, msg, e
end

local function drop_etc_netns()
  if sys.exists(ETC_MARK) then
    local ok, _, e = os.remove(ETC_NETNS) -- only when empty
    if ok or e == ENOENT then
      os.remove(ETC_MARK)
    end
  end
end

-- -------------------------------------------------------------------------
-- reading

-- The records of a lab, in order (lists of words), and whether there is a
-- records file.
local function read(name)
  local s = core.readfile(labdir(name) .. "/state")
  local recs = {}
  for line in (s or ""):gmatch("[^\n]+") do
    local words = {}
    for w in line:gmatch("%S+") do
      words[#words + 1] = w
    end
    recs[#recs + 1] = words
  end
  return recs, s ~= nil, s ~= nil and s ~= "" and s:sub(-1) ~= "\n"
end

--- The plan a lab was built from (its `model` file, or `file`), or nil.
M.read_model = entry.read_model

-- -------------------------------------------------------------------------
-- what each record may name, and what undoes it

-- Is `comp` one plain path component?
local function component(comp)
  return comp ~= nil and core.badname(comp) == nil
end

-- Confinement: what a record of lab `scope.name` may name. With its model
-- (written before any namespace), only its own hosts' netns and uplink.
local function scope_of(name)
  local model = M.read_model(name)
  local sc = { name = name }
  if model and type(model.hosts) == "table" then
    sc.netns = {}
    for _, h in ipairs(model.hosts) do
      sc.netns[name .. "-" .. tostring(h.name)] = true
    end
    for _, h in ipairs(type(model.retired) == "table" and model.retired or {}) do
      sc.netns[name .. "-" .. tostring(h)] = true -- removed by an apply
    end
    sc.uplink = type(model.uplink) == "table" and model.uplink.ifname or false
  end
  return sc
end

local function own_netns(sc, n)
  if sc.netns then
    return sc.netns[n] == true
  end
  return component(n) and n:sub(1, #sc.name + 1) == sc.name .. "-"
end

-- Directories of a lab's own, whose files records may name too.
local SUBDIRS = { mnt = true, ns = true, logs = true }

local function own_state_path(sc, path)
  local prefix = labdir(sc.name) .. "/"
  if path:sub(1, #prefix) ~= prefix then
    return false
  end
  local rest = path:sub(#prefix + 1)
  local d, f = rest:match("^([^/]+)/([^/]+)$")
  if d then
    return SUBDIRS[d] == true and component(f)
  end
  return component(rest)
end

-- The lab's directories of namespace files (mnt: mount namespaces; ns:
-- uts and time ones).
local function own_nsdir(sc, path)
  return path == labdir(sc.name) .. "/mnt" or path == labdir(sc.name) .. "/ns"
end

-- A hosts link the lab made: removed while it still points where it did.
local function undo_symlink(_, path, notes, r)
  if not notes.foreign[path] and core.readlink(path) == r[3] then
    return sys.rmfile(path)
  end
  return true
end

-- The lab's logs: their directory, one per host in it, their files.
local function own_logs(sc, path)
  return path == labdir(sc.name) .. "/logs"
end

local function undo_logs(_, path)
  for _, d in ipairs(sys.listdir(path)) do
    local sub = path .. "/" .. d
    for _, f in ipairs(sys.listdir(sub)) do sys.rmfile(sub .. "/" .. f) end
    os.remove(sub) -- a directory, or (supervisor.log) a file
  end
  return sys.rmfile(path)
end

local function own_sysdir(sc, path)
  return path == labdir(sc.name) .. "/sys"
end

local function undo_sysdir(_, path)
  for _, f in ipairs(sys.listdir(path)) do sys.rmfile(path .. "/" .. f) end
  return sys.rmfile(path)
end

local function undo_nsdir(_, path)
  core.umount(path, core.MNT.detach)
  return sys.rmfile(path)
end

local function own_etc_path(sc, path)
  local d, f = path:match("^/etc/netns/([^/]+)/?([^/]*)$")
  return d ~= nil and own_netns(sc, d) and (f == "" or component(f))
    and path:sub(-1) ~= "/"
end

local function own_uplink(sc, ifname)
  if sc.uplink ~= nil then
    return sc.uplink == ifname
  end
  return core.badifname(ifname) == nil
end

-- A recorded host namespace: removed when it is the one the lab made (its
-- recorded inode and nsfs birth time, or none recorded yet), and when all
-- that is left of it is
-- an empty file (a kill between the unmount and the unlink of a netns
-- delete, or between the create and the bind of an add).
local function undo_netns(_, n, notes)
  if notes.foreign[n] then
    return true
  end
  local path = NETNS_DIR .. "/" .. n
  local now = core.ino(path)
  if not now then
    return true
  end
  local made = notes.ino[n]
  if made and made[1] == now and (made[2] == nil or made[2] == core.mtime(path)) then
    return core.netns_del(n)
  end
  local h = core.netns_open(path, n)
  if h then
    h:close()
    if notes.ino[n] == nil then
      return core.netns_del(n)
    end
    return nil, "not the namespace the lab made (another one took its name)"
  end
  if core.readfile(path) == "" then
    return sys.rmfile(path)
  end
  return nil, "not a network namespace"
end

-- The recorded uplink: deleted while it is the link the lab made.
local function undo_uplink(_, ifname, notes)
  if notes.foreign[ifname] then
    return true
  end
  local root, msg, e = require("isle.net").open(nil)
  if not root then
    return nil, msg, e
  end
  local l = root:link(ifname)
  local ok = true
  if l then
    local idx = notes.ifindex[ifname]
    if idx == l.index or (idx == nil and l.kind == "veth") then
      ok, msg, e = root:link_del(ifname)
      if not ok and e == ENODEV then -- the kernel took it with its peer's
        ok, msg, e = true, nil, nil -- namespace (down's unbinds) meanwhile
      end
    else
      ok, msg = nil, "not the link the lab made"
    end
  end
  root:close()
  return ok, msg, e
end

local function own_path(sc, path)
  return own_state_path(sc, path) or own_etc_path(sc, path)
end

local UNDO = {
  file = { own_path, function(_, path) return sys.rmfile(path) end },
  bind = { own_state_path, function(_, path) return sys.unbind(path) end },
  netns = { own_netns, undo_netns },
  etcnetns = { function() return true end, function() drop_etc_netns() return true end },
  -- a directory the lab made: removed unless someone put files there
  dir = { own_etc_path, function(_, path, notes)
    if not notes.foreign[path] then os.remove(path) end
    return true
  end },
  symlink = { own_etc_path, undo_symlink },
  nsdir = { own_nsdir, undo_nsdir },
  sysdir = { own_sysdir, undo_sysdir },
  logs = { own_logs, undo_logs },
  uplink = { own_uplink, undo_uplink },
  -- the supervisor started (by up or an apply): asked to stop its services
  -- and exit (down has ended it already: nobody listens)
  supervisor = { function() return true end, function(name)
    return require("isle.lab.services").quit(name)
  end },
}

-- What `apply` changes in place (`isle.lab.apply`): only an aborted apply
-- undoes these (restores what was there); `down` skips them, as what they
-- touched lives in the lab's namespaces. `NETNS` is a host's netns or `-`,
-- the switches' namespace.
local function own_netns_or_switch(sc, n)
  return n == "-" or own_netns(sc, n)
end
local RESTORE = {
  model = function() return true end, -- model: the model was replaced (model.prev kept)
  veth = own_netns_or_switch, -- veth NETNS IFNAME PEERNETNS PEERIF: a link made
  unlink = function() return true end, -- unlink KEY old state: a link removed
  bridge = function(_, n) return core.badifname(n) == nil end, -- bridge NAME: a switch made
  hostsfiles = function() return true end, -- hostsfiles: the hosts files rewritten
  hostfiles = function(_, h) return component(h) end, -- hostfiles HOST: its files rewritten
  services = function() return true end, -- services: the supervisor reloaded
  addr = own_netns_or_switch, -- addr NETNS IFNAME CIDR: an address added
  unaddr = own_netns_or_switch, -- unaddr NETNS IFNAME CIDR: an address removed
  route = own_netns_or_switch, -- route NETNS DST VIA DEV METRIC: a route added
  unroute = own_netns_or_switch, -- unroute NETNS DST VIA DEV METRIC: a route removed
  sysctl = own_netns_or_switch, -- sysctl NETNS KEY OLD: a sysctl written
  hostname = function(_, h) return component(h) end, -- hostname HOST OLD
  nat = own_netns_or_switch, -- nat NETNS IFNAME: a NAT added
  unnat = own_netns_or_switch, -- unnat NETNS IFNAME [SOURCE]: a NAT removed
  impair = function() return true end, -- impair KEY k=v...: a link's old state
  mtu = own_netns_or_switch, -- mtu NETNS IFNAME OLD
}
for kind, own in pairs(RESTORE) do
  UNDO[kind] = { own, function(name, _, _, r, ctx)
    return require("isle.lab.apply").restore(name, r, ctx)
  end, restore = true }
end

local NOTES = { pid = true, ino = true, ifindex = true, foreign = true, done = true,
  undone = true, set = true, apply = true, commit = true, applied = true, aborted = true }

-- What replay (isle.lab.replay) reads of the journal.
M._UNDO, M._NOTES, M._read, M._scope_of, M._own_netns = UNDO, NOTES, read, scope_of, own_netns
M._own_state_path, M._own_nsdir, M._drop_etc_netns = own_state_path, own_nsdir, drop_etc_netns
M._fault_point, M._fault = fault_point, fault

--- Undo the records of lab `name` (an aborted `up`, `down`): see
-- `isle.lab.replay.replay`.
function M.replay(name)
  return require("isle.lab.replay").replay(name)
end

--- Undo the records of an aborted `apply`: see `isle.lab.replay.rollback`.
function M.rollback(name, from)
  return require("isle.lab.replay").rollback(name, from)
end

--- Undo some records of a running lab now: see
-- `isle.lab.replay.undo_records`.
function M.undo_records(j, pick)
  return require("isle.lab.replay").undo_records(j, pick)
end

-- -------------------------------------------------------------------------
-- labs that exist

--- Names of the labs with state under `/run/isle`, sorted.
function M.list()
  local t = {}
  for _, n in ipairs(sys.listdir(M.STATE_DIR)) do
    if not plan.name_why(n, plan.NAME_MAX) and not plan.RESERVED[n]
      and sys.exists(labdir(n) .. "/state") then
      t[#t + 1] = n
    end
  end
  sort(t)
  return t
end

--- Information on an existing lab: `{name, plan, complete, pid, alive}`
-- or nil, message, errno.
function M.info(name)
  if plan.RESERVED[name] or not sys.exists(labdir(name)) then
    return nil, format("lab %s: no such lab", name), ENOENT
  end
  local state = require "isle.lab.state"
  local st = state.state(name) or { sets = {}, complete = false }
  local info = { name = name, plan = state.fold(M.read_model(name), st.sets),
    complete = st.complete, pid = st.pid, apply = st.apply }
  if info.pid and info.pid > 0 then
    info.alive = sys.exists("/proc/" .. info.pid)
  end
  info.gone = M.gone(name)
  return info
end

--- Did the namespaces of lab `name` end under it? (see `isle.lab.entry.gone`)
M.gone = entry.gone

--- Remove lab `name` by its records (see `isle.lab.down`): true and how
-- many processes were ended.
function M.down(name)
  local dir = labdir(name)
  if plan.RESERVED[name] or not sys.exists(dir) then
    return nil, format("lab %s: no such lab", name), ENOENT
  end
  if not sys.exists(dir .. "/state") then -- (no reading: replay reads it)
    -- the builder died between mkdir and its first record: an empty
    -- directory is all there is; anything else is not a lab's
    local ok, msg, e = os.remove(dir)
    if not ok then
      return nil, format("lab %s: not a lab (%s)", name, msg), e
    end
    return true, 0
  end
  local ok, msg, e = M.replay(name)
  if not ok then
    return nil, format("lab %s: down: %s", name, msg), e
  end
  return true, msg
end

--- How to enter a host of a running lab (see `isle.lab.host_entry`).
M.host_entry = entry.host_entry

M.ETC_NETNS = ETC_NETNS
M.NETNS_DIR = NETNS_DIR
return M
