--- The current state of a running lab: its model (the plan it was built
-- from, or an apply's) with what its journal says changed since folded in
-- — the `set KEY k=v...` records `link_set` writes — and what else the
-- records say of it (an apply that did not finish, the builder's pid).
-- Reading is incremental: a holder (an opened `Lab`) keeps what was read,
-- and the records appended since are all that is parsed next time.
-- @module isle.lab.state
local core = require "isle.core"
local journal = require "isle.lab.journal"
local model = require "isle.lab.model"

local M = {}

local ipairs, pairs, next, tonumber, type = ipairs, pairs, next, tonumber, type
local format, find, match, sort = string.format, string.find, string.match, table.sort
local ENOENT = 2

local function labdir(name)
  return journal.STATE_DIR .. "/" .. name
end

-- The kinds of records the state is made of.
local KINDS = { set = true, model = true, undone = true, apply = true, commit = true,
  applied = true, aborted = true, pid = true, done = true }
local NEEDLES = {} -- "\nKIND": a record of the kind starts after it
for k in pairs(KINDS) do NEEDLES[#NEEDLES + 1] = "\n" .. k end

-- Note record line number i (kind k, the rest) in state st.
local function state_line(st, i, k, rest)
  if k == "set" then -- (flat: line, rest, line, rest...)
    local sl = st.setlines
    sl[#sl + 1] = i
    sl[#sl + 1] = rest
  elseif k == "model" then
    st.models[#st.models + 1] = i
  elseif k == "undone" then
    st.undone[tonumber(rest) or 0] = true
  elseif k == "apply" then
    st.apply = { at = i, pid = tonumber(rest) }
  elseif k == "commit" then
    if st.apply then st.apply.committed = true end
  elseif k == "applied" or k == "aborted" then
    st.apply = nil
  elseif k == "pid" then
    st.pid = st.pid or tonumber(rest)
  elseif k == "done" then
    st.complete = true
  end
end

-- Fold the `set` records after the boundary not folded yet into st.sets.
local function fold_sets(st)
  local boundary = 0
  for j = #st.models, 1, -1 do
    if not st.undone[st.models[j]] then
      boundary = st.models[j]
      break
    end
  end
  if boundary ~= st.boundary then
    st.boundary, st.sets, st.folded = boundary, {}, 0
  end
  local sl = st.setlines
  for j = st.folded + 1, #sl, 2 do
    local i, rest = sl[j], sl[j + 1]
    local key, fields = rest:match("^(%S+)%s*(.*)$")
    if i > boundary and key then
      local t = st.sets[key] or {}
      st.sets[key] = t
      for f, v in fields:gmatch("([%w_]+)=(%S*)") do
        if v == "-" then t[f] = false else t[f] = tonumber(v) or v end
      end
    end
  end
  st.folded = #st.setlines
end

--- The records of lab `name` read for its current state: `{boundary = K
-- (the last `model` record not undone, or 0), sets = {KEY = {field =
-- value|false}} (the link changes since), apply = {at = K, pid =,
-- committed =} (an apply that did not finish) or nil, pid =, complete =}`,
-- or nil when the lab has no records. `cache` (a table) keeps what was
-- read: the records appended since are all that is parsed next time.
function M.state(name, cache)
  local s = core.readfile(labdir(name) .. "/state")
  if not s then
    return nil
  end
  local len = #s -- whole lines only
  while len > 0 and s:byte(len) ~= 10 do len = len - 1 end
  local c = cache and cache.journal
  local st, from
  if c and c.len <= len and c.head == s:sub(1, 64) then
    st, from = c.st, c.len + 1
  else
    st = { boundary = 0, sets = {}, folded = 0, complete = false, undone = {}, models = {},
      setlines = {}, lines = 0 }
    from = 1
  end
  -- most records (what up made) are only counted: the lines that may be
  -- of a kind of KINDS are found first (a plain search for each kind, in
  -- C), and the walk over the lines only numbers the others
  local hits, nh = { from }, 1
  for _, pat in ipairs(NEEDLES) do
    local at = find(s, pat, from, true)
    while at and at < len do
      nh = nh + 1
      hits[nh] = at + 1
      at = find(s, pat, at + 1, true)
    end
  end
  sort(hits)
  local n, pos, h, want = st.lines, from, 1, hits[1]
  while pos <= len do
    n = n + 1
    if pos == want then
      local k, rest = match(s, "^(%a*)[ \t]*([^\n]*)", pos)
      if KINDS[k] then state_line(st, n, k, rest) end
      repeat h = h + 1 until hits[h] ~= pos
      want = hits[h]
    end
    pos = find(s, "\n", pos, true) + 1
  end
  st.lines = n
  fold_sets(st)
  if cache then cache.journal = { len = len, head = s:sub(1, 64), st = st } end
  return st
end

--- The key of a link in `set` records: its first end, `NODE:IFNAME`.
function M.link_key(l)
  return (l[1].host or l[1].switch) .. ":" .. l[1].ifname
end

--- Plan `p` with the link changes `sets` (of `M.state`) made: a copy of
-- its links list, changed links copied.
function M.fold(p, sets)
  if not (p and next(sets)) then
    return p
  end
  local out = {}
  for k, v in pairs(p) do out[k] = v end
  out.links = {}
  for i, l in ipairs(p.links) do
    local s = sets[M.link_key(l)]
    if s then
      local c = {}
      for k, v in pairs(l) do c[k] = v end
      for k, v in pairs(s) do
        if k == "up" then
          c.down = v == 0 or nil
        elseif k == "cut" then
          c.cut = v == 1 or nil
        else
          c[k] = v or nil
        end
      end
      l = c
    end
    out.links[i] = l
  end
  return out
end

--- The current plan of running lab `name` (its model with the `set`
-- records folded in) and its `M.state`; `holder` (a table, optional)
-- caches the model (read again only after an apply replaced it) and the
-- records read.
-- @treturn[1] table the plan
-- @treturn[1] table the state
-- @return[2] nil, message, errno
function M.current(name, holder)
  local st = M.state(name, holder)
  if not st then
    return nil, format("lab %s: no such lab", name), ENOENT
  end
  local c = holder and holder._model
  if not (c and c.boundary == st.boundary) then
    local p = journal.read_model(name)
    if not p then
      return nil, format("lab %s: its description is missing (isle down %s removes it)", name,
        name), ENOENT
    end
    c = { boundary = st.boundary, plan = p }
    if holder then holder._model = c end
  end
  return M.fold(c.plan, st.sets), st
end

-- The needles of a link given as ends `a`, `b` (names or `NODE:IFNAME`)
-- or by name `a` (b nil): what its line in the model holds; nil for
-- anything else (`current_link` then reads the whole model).
local function link_needles(a, b)
  local function node(v)
    return type(v) == "string" and (match(v, "^([^:]+):.+$") or v) or nil
  end
  if b == nil then
    return type(a) == "string" and { "name=" .. model.quote(a) } or nil
  end
  local na, nb = node(a), node(b)
  return na and nb and { "=" .. model.quote(na), "=" .. model.quote(nb) } or nil
end

--- `M.current` cut down to what a change of one link needs (`isle link`
-- from the command line): the lab's name and backend, the links of the
-- model whose line names the link's ends (or its name), and the hosts at
-- their ends; the rest of the model is not parsed. The whole plan when
-- the model is not laid out by lines or the link is given otherwise.
-- `cache` (optional) keeps the records read, as for `M.state`.
-- @treturn[1] table the plan (`partial = true` when cut down)
-- @treturn[1] table the state
-- @return[2] nil, message, errno
function M.current_link(name, a, b, cache)
  local needles = link_needles(a, b)
  if not needles then return M.current(name, cache) end
  local st = M.state(name, cache)
  if not st then
    return nil, format("lab %s: no such lab", name), ENOENT
  end
  local text = core.readfile(labdir(name) .. "/model")
  local ls = model.pick(text, "links", needles)
  if not ls then return M.current(name, cache) end
  local hosts, seen = {}, {}
  for _, l in ipairs(ls) do
    for k = 1, 2 do
      local h = type(l[k]) == "table" and l[k].host
      if h and not seen[h] then
        seen[h] = true
        for _, x in ipairs(model.pick(text, "hosts", { "name=" .. model.quote(h) }) or {}) do
          hosts[#hosts + 1] = x
        end
      end
    end
  end
  local p = { name = model.pick_value(text, "name"), backend = model.pick_value(text, "backend"),
    links = ls, hosts = hosts, switches = {}, nats = {}, services = {}, partial = true }
  return M.fold(p, st.sets), st
end

return M
