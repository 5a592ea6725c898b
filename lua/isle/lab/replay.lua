--- Replaying a lab's journal (`isle.lab.journal`): undoing its records
-- newest first, each through its kind's entry of journal's UNDO table and
-- only when it names something of the lab's own. `replay` is an aborted
-- `up` and `down` (every process in the lab's namespaces ended first, its
-- namespace files released at once); `rollback` an aborted `apply`;
-- `undo_records` the removals of an `apply`.
-- @module isle.lab.replay
local core = require "isle.core"
local sys = require "isle._sys"
local reap = require "isle.lab.reap"
local journal = require "isle.lab.journal"

local M = {}

local ipairs, tonumber, format, concat = ipairs, tonumber, string.format, table.concat
local UNDO, NOTES, read, scope_of = journal._UNDO, journal._NOTES, journal._read, journal._scope_of
local own_netns, own_state_path = journal._own_netns, journal._own_state_path
local own_nsdir, drop_etc_netns = journal._own_nsdir, journal._drop_etc_netns
local fault_point, fault = journal._fault_point, journal._fault
local NETNS_DIR = journal.NETNS_DIR
local ENOENT = 2

local function labdir(name)
  return journal.STATE_DIR .. "/" .. name
end

local function warn(name, i, r, why)
  io.stderr:write(format("isle: lab %s: record %d (%s) ignored: %s\n", name, i, concat(r, " "),
    why))
end

-- What the notes say about the records: inodes, ifindexes, foreign names,
-- records already undone.
local function notes_of(recs)
  local n = { ino = {}, ifindex = {}, foreign = {}, undone = {} }
  for _, r in ipairs(recs) do
    if r[1] == "ino" then
      n.ino[r[2] or ""] = { tonumber(r[3]), tonumber(r[4]) }
    elseif r[1] == "ifindex" then
      n.ifindex[r[2] or ""] = tonumber(r[3])
    elseif r[1] == "foreign" then
      n.foreign[r[2] or ""] = true
    elseif r[1] == "undone" then
      n.undone[tonumber(r[2]) or 0] = true
    end
  end
  return n
end

-- Undo record i; true when it is done with (undone, not the lab's, or a
-- note), else nil, message, errno.
local function undo(sc, i, r, notes, ctx)
  local name = sc.name
  local u = UNDO[r[1]]
  if not u then
    if not NOTES[r[1]] then
      warn(name, i, r, "unknown record")
    end
    return true
  end
  if not u[1](sc, r[2] or "") then
    warn(name, i, r, "outside the lab's own prefixes")
    return true
  end
  local ok, msg, e = u[2](name, r[2], notes, r, ctx)
  if not ok and not e then -- not the lab's: left alone
    warn(name, i, r, msg)
    return true
  end
  return ok, msg, e
end

-- Remove the records, the model and the directory (the last steps), with
-- what requests of `isle restart` may have left there.
local function remove_dir(name)
  local dir = labdir(name)
  for _, f in ipairs(sys.listdir(dir)) do
    if f:match("^reply%.%d+$") or f == "services.new" then sys.rmfile(dir .. "/" .. f) end
  end
  sys.rmfile(dir .. "/model")
  sys.rmfile(dir .. "/model.prev")
  local ok, msg, e = sys.rmfile(dir .. "/state")
  if ok then
    ok, msg, e = os.remove(dir)
  end
  if not ok and e ~= ENOENT then
    return nil, msg, e
  end
  return true
end

-- The lab's namespaces: the files of those it made and still holds (its
-- switches' first: where its supervisor runs).
local function namespaces(sc, recs, notes)
  local paths, first = {}, {}
  for _, r in ipairs(recs) do
    local path = r[2] or ""
    if r[1] == "netns" and own_netns(sc, path) and not notes.foreign[path] then
      local made, now = notes.ino[path], core.ino(NETNS_DIR .. "/" .. path)
      if now and (made == nil or made[1] == now) then
        paths[#paths + 1] = NETNS_DIR .. "/" .. path
      end
    elseif r[1] == "bind" and own_state_path(sc, path) then
      paths[#paths + 1] = path
      if path == labdir(sc.name) .. "/net" then first[1] = path end
    end
  end
  return paths, first
end

-- End every process in the lab's namespaces; how many.
local function sweep(sc, recs, notes)
  local paths, first = namespaces(sc, recs, notes)
  local ids, n = reap.identities(paths)
  if n == 0 then
    return 0
  end
  local ended, stuck = reap.sweep(ids, (reap.identities(first)))
  if stuck then
    io.stderr:write(format("isle: lab %s: processes %s would not end (KILLed); its namespaces "
      .. "live on until they do\n", sc.name, concat(stuck, ", ")))
  end
  return ended
end

-- The lab's namespace files go first, all at once (core.unbind_many: the
-- kernel's grace periods of the unmounts shared by a few threads, instead
-- of one after the other): the hosts' network namespaces that are still
-- the ones the lab made, its switches' and the hosts' mount, uts and time
-- namespaces; then one detach of each directory of them. Undoing each
-- `netns` or `bind` record then finds nothing left to do: the set of
-- those released (record index → true) is returned.
local function release(sc, recs, notes)
  local paths, index = {}, {}
  for i, r in ipairs(recs) do
    local path = r[2] or ""
    if notes.undone[i] then -- luacheck: ignore 542
    elseif r[1] == "netns" and own_netns(sc, path) and not notes.foreign[path] then
      local made, file = notes.ino[path], NETNS_DIR .. "/" .. path
      if made and made[1] == core.ino(file) and (made[2] == nil or made[2] == core.mtime(file))
      then
        paths[#paths + 1], index[#paths + 1] = file, i
      end
    elseif r[1] == "bind" and own_state_path(sc, path) then
      paths[#paths + 1], index[#paths + 1] = path, i
    end
  end
  local failed, released = #paths > 0 and core.unbind_many(paths) or {}, {}
  for k, path in ipairs(paths) do
    if not failed[path] then released[index[k]] = true end
  end
  for i, r in ipairs(recs) do
    if r[1] == "nsdir" and own_nsdir(sc, r[2] or "") and not notes.undone[i] then
      core.umount(r[2], core.MNT.detach)
    end
  end
  return released
end

--- Undo what the records of lab `name` say was made, newest first, and
-- remove its state; never anything outside the lab's prefixes. Every
-- process still in one of the lab's namespaces is ended first (TERM, a
-- grace period, KILL). Used by an aborted `up` and by `down`. Progress is
-- journalled (`undone K`); on a failure the state stays, for another
-- `down` to resume.
-- @treturn[1] true
-- @treturn[1] int how many processes were ended
-- @return[2] nil, first message, errno
function M.replay(name)
  local recs, _, torn = read(name)
  local notes, sc = notes_of(recs), scope_of(name)
  local ended = sweep(sc, recs, notes)
  local released = release(sc, recs, notes)
  local f = core.fopen(labdir(name) .. "/state", "a")
  local first, n, fp = nil, 0, fault_point("down")
  if f then
    -- the notes buffered (one write per record was a tenth of a large
    -- lab's down): a kill loses the last ones, and the next down undoes
    -- those records again, which finds them undone
    f:setvbuf(fp and "no" or "full")
    if torn then f:write("\n") end -- a kill in the middle of a write
  end
  for i = #recs, 1, -1 do
    local u = UNDO[recs[i][1]]
    if not notes.undone[i] and not (u and u.restore) then
      local ok, msg, e = true, nil, nil
      if not released[i] then ok, msg, e = undo(sc, i, recs[i], notes, {}) end
      if ok then
        if f and u then
          f:write("undone " .. i .. "\n")
          n = n + 1
          fault(fp, n)
        end
      elseif not first then
        first = { msg, e }
      end
    end
  end
  if f then f:close() end
  drop_etc_netns()
  if first then
    return nil, first[1], first[2]
  end
  local ok, msg, e = remove_dir(name)
  if not ok then
    return nil, msg, e
  end
  return true, ended
end

--- Undo the records of lab `name` after record `from` (an aborted
-- `apply`), newest first, restoring what they changed; each is noted
-- `undone K`, and the end `aborted`.
-- @treturn[1] true
-- @return[2] nil, first message, errno
function M.rollback(name, from)
  local recs, _, torn = read(name)
  local notes, sc = notes_of(recs), scope_of(name)
  local f, msg, e = core.fopen(labdir(name) .. "/state", "a")
  if not f then
    return nil, msg, e
  end
  f:setvbuf("no")
  if torn then f:write("\n") end
  local first, ctx = nil, {}
  for i = #recs, from + 1, -1 do
    if not notes.undone[i] then
      local ok, m, err = undo(sc, i, recs[i], notes, ctx)
      if ok then
        if UNDO[recs[i][1]] then f:write("undone " .. i .. "\n") end
      elseif not first then
        first = { m, err }
      end
    end
  end
  f:write("aborted " .. from .. "\n")
  f:close()
  if first then
    return nil, first[1], first[2]
  end
  return true
end

--- Undo now, newest first, the records of lab `j.name` that `pick(words)`
-- selects and that are not undone yet (the removals of an `apply`: what
-- was made for a host that goes away), each noted `undone I` through
-- journal `j`.
-- @treturn[1] true
-- @return[2] nil, first message, errno
function M.undo_records(j, pick)
  local recs = read(j.name)
  local notes, sc, first = notes_of(recs), scope_of(j.name), nil
  for i = #recs, 1, -1 do
    local r = recs[i]
    local u = UNDO[r[1]]
    if u and not u.restore and not notes.undone[i] and pick(r) then
      local ok, msg, e = undo(sc, i, r, notes, {})
      if ok then ok, msg, e = j:record("undone", tostring(i)) end
      if not ok and not first then first = { msg, e } end
    end
  end
  if first then
    return nil, first[1], first[2]
  end
  return true
end

return M
