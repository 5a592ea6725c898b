--- A lab's model file (`/run/isle/LAB/model`): its plan as a Lua literal,
-- keys sorted (the same plan gives the same text), read back whole by
-- `isle.lab.entry.read_model`.
--
-- Laid out one record a line: each top-level key on a line of its own,
-- and each object of the plan's lists (hosts, switches, links, NATs,
-- services) on a line of its own; no string literal holds a newline. So
-- `apply` reads the running lab by lines (`split`) and compares them with
-- the lines of the declaration's plan (`assemble`): an object whose line
-- is the same *is* the declared object (the diff skips it), and only the
-- lines that differ are parsed; the new model is the lines kept and the
-- few made again (`text` with a cache). Writing is a hot path at thousands
-- of hosts: no `#` on the growing output list, plain strings quoted
-- once, the text of each key and the sorted keys of
-- key computed once.
-- @module isle.lab.model
local same = require("isle.lab.same").same

local M = {}

local type, pairs, ipairs, tostring, load, pcall, error = type, pairs, ipairs, tostring, load,
  pcall, error
local mtype, sort, concat = math.type, table.sort, table.concat
local format, find, gsub, byte = string.format, string.find, string.gsub, string.byte

local function mixed_less(x, y)
  if type(x) == type(y) then return x < y end
  return type(x) == "number"
end

-- A string as a Lua literal: %q, but a newline as \n (the model is one
-- record a line).
local function quote(s)
  local q = format("%q", s)
  if find(q, "\n", 1, true) then q = gsub(q, "\\\n", "\\n") end
  return q
end
M.quote = quote

-- The text before a value of key k: `k=` or `["k"]=`, `[1]=`.
local function key_text(k)
  if type(k) == "string" and find(k, "^[%a_][%w_]*$") then
    return k .. "="
  end
  return type(k) == "number" and "[" .. k .. "]=" or "[" .. quote(k) .. "]="
end

-- Serialize v into out after position n; the new position.
local function put(v, out, n, ctx)
  local t = type(v)
  if t == "string" then
    n = n + 1
    out[n] = quote(v)
  elseif t == "number" then
    n = n + 1
    out[n] = mtype(v) == "float" and format("%.17g", v) or tostring(v)
  elseif t == "boolean" then
    n = n + 1
    out[n] = tostring(v)
  elseif t == "table" then
    n = n + 1
    out[n] = "{"
    local len = #v
    for i = 1, len do
      n = put(v[i], out, n, ctx)
      n = n + 1
      out[n] = ","
    end
    local keys, nk, strings = {}, 0, true
    for k in pairs(v) do
      if not (mtype(k) == "integer" and k >= 1 and k <= len) then
        nk = nk + 1
        keys[nk] = k
        strings = strings and type(k) == "string"
      end
    end
    if nk > 1 then sort(keys, not strings and mixed_less or nil) end
    local texts = ctx.keys
    for i = 1, nk do
      local k = keys[i]
      local kt = texts[k]
      if not kt then
        kt = key_text(k)
        texts[k] = kt
      end
      n = n + 1
      out[n] = kt
      n = put(v[k], out, n, ctx)
      n = n + 1
      out[n] = ","
    end
    n = n + 1
    out[n] = "}"
  else
    n = n + 1
    out[n] = "nil"
  end
  return n
end

--- Serialize a plain value as a Lua literal (sorted keys) into list `out`
-- (appended): a sequence as such, then the other keys in order.
-- @treturn table out
function M.serialize(v, out)
  put(v, out, #out, { keys = {} })
  return out
end

local function ctx_new()
  return { keys = {} }
end

-- The line of value v.
local function line(v, ctx)
  local out = {}
  put(v, out, 0, ctx)
  return concat(out)
end

-- The lists of the plan whose objects get a line each.
local LISTS = { hosts = true, switches = true, links = true, nats = true, services = true }
M.LISTS = LISTS

--- The text of plan `p` for the model file, one record a line; `cache`
-- (optional) maps objects of its lists to their lines already made.
-- @treturn string
function M.text(p, cache)
  local ctx, keys, out, n = ctx_new(), {}, { "{" }, 1
  for k in pairs(p) do keys[#keys + 1] = k end
  sort(keys, mixed_less)
  for _, k in ipairs(keys) do
    local v = p[k]
    n = n + 1
    if LISTS[k] and type(v) == "table" then
      out[n] = key_text(k) .. "{"
      for _, x in ipairs(v) do
        n = n + 1
        out[n] = (cache and cache[x] or line(x, ctx)) .. ","
      end
      n = n + 1
      out[n] = "},"
    else
      out[n] = key_text(k) .. line(v, ctx) .. ","
    end
  end
  out[n + 1] = "}\n"
  return concat(out, "\n")
end

--- The records of model text `s` (as `text` lays it out): `{lists = {KEY
-- = {line, ...}}, values = {KEY = text}}`, or nil when `s` is laid out
-- otherwise (a model of an older isle: read it whole).
function M.split(s)
  if not s or s:sub(1, 2) ~= "{\n" then return nil end
  local lists, values, list = {}, {}, nil
  for l in s:gmatch("([^\n]*)\n") do
    if list then
      if l == "}," then
        list = nil
      else
        list[#list + 1] = l:sub(1, -2) -- without its ","
      end
    else
      local lk = l:match("^([%a_][%w_]*)={$")
      local k, rest = l:match("^([%a_][%w_]*)=(.*),$")
      if lk and LISTS[lk] then
        list = {}
        lists[lk] = list
      elseif k then
        values[k] = rest
      elseif l ~= "{" and l ~= "}" then
        return nil
      end
    end
  end
  return { lists = lists, values = values }
end

local function parse(text)
  local f = load("return " .. text, "=model", "t", {})
  local ok, v = pcall(f or error)
  return ok and v or nil
end

--- The objects of list `k` of model text `s` whose line holds every string
-- of `needles` (plain text, e.g. `="h1"`), parsed, in their order; what a
-- change of one object needs without parsing the whole lab. Nil when `s`
-- is not laid out by lines (a model of an older isle).
-- @treturn table|nil
function M.pick(s, k, needles)
  if not s or s:sub(1, 2) ~= "{\n" then return nil end
  local head = "\n" .. k .. "={\n"
  local a = find(s, head, 1, true)
  if not a then return nil end
  local from = a + #head
  local to = find(s, "\n},", from - 1, true)
  if not to then return nil end
  -- walk the occurrences of the rarest needle: each is on one line
  local best
  for _, nd in ipairs(needles) do
    local at, pos = {}, from
    while true do
      local i = find(s, nd, pos, true)
      if not i or i > to or (best and #at >= #best) then break end
      at[#at + 1], pos = i, i + #nd
    end
    if not best or #at < #best then best = at end
  end
  local out, last = {}, 0
  for _, i in ipairs(best or {}) do
    local ls = i
    while byte(s, ls - 1) ~= 10 do ls = ls - 1 end
    if ls > last then -- (a line holding the needle twice is one object)
      local le = find(s, "\n", i, true)
      last = le
      local l = s:sub(ls, le - 2) -- without its ","
      local all = true
      for _, nd in ipairs(needles) do all = all and find(l, nd, 1, true) ~= nil end
      local v = all and parse(l)
      if v then out[#out + 1] = v end
    end
  end
  return out
end

--- The value of top-level key `k` of model text `s` laid out by lines
-- (parsed), without reading the rest; nil when absent.
function M.pick_value(s, k)
  local head = "\n" .. k .. "="
  local a = find(s, head, 1, true)
  if not a then return nil end
  local le = find(s, "\n", a + 1, true)
  return le and parse(s:sub(a + #head, le - 2))
end

--- The value of top-level key `k` of split model `sp` (parsed).
function M.value(sp, k)
  local t = sp.values[k]
  return t and parse(t)
end

-- The identity of an object of each list (two with one identity: the
-- first is compared, the others are read as they are).
local function end_id(en) return (en.host or en.switch or "") .. ":" .. tostring(en.ifname) end
local ID = {
  hosts = function(x) return x.name end,
  switches = function(x) return x.name end,
  links = function(l) return type(l[1]) == "table" and type(l[2]) == "table"
    and end_id(l[1]) .. " " .. end_id(l[2]) end,
  nats = function(x) return tostring(x.host) .. " " .. tostring(x.ifname) .. " "
    .. tostring(x.source) end,
  services = function(x) return tostring(x.host) .. "/" .. tostring(x.name) end,
}

--- The running lab's plan from its model text `s` (split as `sp`),
-- sharing with declared plan `p1` every object equal to the declared one
-- of its identity (the objects themselves: `diff` passes them at a
-- glance).
-- @treturn table the plan (nil when the text does not parse)
-- @treturn table the lines of the shared objects (a cache for `text`)
function M.assemble(s, sp, p1)
  local p0 = parse(s)
  if type(p0) ~= "table" then return nil end
  local shared = {}
  for k in pairs(sp.values) do
    if p1[k] ~= nil and same(p0[k], p1[k]) then p0[k] = p1[k] end
  end
  for k, lines in pairs(sp.lists) do
    local list, mine, id = p0[k], {}, ID[k]
    for _, x in ipairs(type(p1[k]) == "table" and p1[k] or {}) do
      local key = id(x)
      if key and mine[key] == nil then mine[key] = x else mine[key] = false end
    end
    for i, x in ipairs(type(list) == "table" and list or {}) do
      local key = type(x) == "table" and id(x)
      local y = key and mine[key]
      if y and lines[i] and same(x, y) then
        list[i], shared[y] = y, lines[i]
      end
    end
  end
  return p0, shared
end

return M
