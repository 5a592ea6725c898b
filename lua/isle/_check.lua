--- Argument checks shared by every isle module (internal, not public API).
-- One convention: a programmer mistake raises
-- `bad argument #1 to 'spawn' (argv: non-empty list expected)` (an argument
-- by number) or `bad argument 'opts.ip' to 'link' (...)` (by name), blamed
-- on the caller at `level` (as for `error`: 2 is the caller of the function
-- that calls the check, the default).
-- @module isle._check
local core = require "isle.core"

local M = {}

local type, tostring, error, pairs, ipairs = type, tostring, error, pairs, ipairs
local format, mtype = string.format, math.type

--- Raise a programmer error naming the function and the argument.
-- @string fname the public function
-- @param arg the argument: its number or its name (`"opts.ip"`)
-- @string msg what is wrong
-- @int[opt=2] level as for `error`, seen from the caller of argerror
function M.argerror(fname, arg, msg, level)
  local which = mtype(arg) == "integer" and ("#" .. arg) or ("'" .. tostring(arg) .. "'")
  error(format("bad argument %s to '%s' (%s)", which, fname, msg), (level or 2) + 1)
end
local argerror = M.argerror

--- A set from a list.
function M.set(list)
  local s = {}
  for _, v in ipairs(list) do
    s[v] = true
  end
  return s
end

--- Check that `t` is a table whose keys are all in `allowed` (a set).
-- @return t
function M.fields(fname, arg, t, allowed, level)
  level = (level or 2) + 1
  if type(t) ~= "table" then
    argerror(fname, arg, "table expected, got " .. type(t), level)
  end
  for k in pairs(t) do
    if not allowed[k] then
      argerror(fname, arg, "unknown option '" .. tostring(k) .. "'", level)
    end
  end
  return t
end

--- A string without NUL bytes (non-empty unless `empty_ok`).
-- @return v
function M.string(fname, arg, v, level, empty_ok)
  level = (level or 2) + 1
  if type(v) ~= "string" then
    argerror(fname, arg, "string expected, got " .. type(v), level)
  end
  if v == "" and not empty_ok then
    argerror(fname, arg, "empty string", level)
  end
  if v:find("%z") then
    argerror(fname, arg, "contains a NUL byte", level)
  end
  return v
end

--- An absolute path.
-- @return v
function M.abspath(fname, arg, v, level)
  level = (level or 2) + 1
  M.string(fname, arg, v, level)
  if v:sub(1, 1) ~= "/" then
    argerror(fname, arg, "absolute path expected, got '" .. v .. "'", level)
  end
  return v
end

--- A name usable as one path component (netns, lab, host, container names):
-- the rule of `core.badname`; `pattern` may narrow it, `maxlen` bounds it.
-- @return v
function M.name(fname, arg, v, level, pattern, maxlen)
  level = (level or 2) + 1
  local why = core.badname(v)
  if not why and pattern and not v:match(pattern) then
    why = "name '" .. v .. "' may hold only letters, digits, '_', '.' and '-'"
  end
  if not why and maxlen and #v > maxlen then
    why = format("name '%s' is longer than %d bytes", v, maxlen)
  end
  if why then
    argerror(fname, arg, why, level)
  end
  return v
end

--- An interface name (1 to 15 bytes, no '/', ':' or blanks): the rule of
-- `core.badifname`, the kernel's.
-- @return v
function M.ifname(fname, arg, v, level)
  local why = core.badifname(v)
  if why then
    argerror(fname, arg, type(v) == "string" and format("%s: '%s'", why, v) or why,
      (level or 2) + 1)
  end
  return v
end

--- An integer in [lo, hi].
-- @return v
function M.int(fname, arg, v, lo, hi, level)
  if mtype(v) ~= "integer" or (lo and v < lo) or (hi and v > hi) then
    argerror(fname, arg, format("integer in [%s, %s] expected, got %s", tostring(lo or "-inf"),
      tostring(hi or "inf"), tostring(v)), (level or 2) + 1)
  end
  return v
end

--- A finite number in [lo, hi] (NaN and infinities refused).
-- @return v
function M.number(fname, arg, v, lo, hi, level)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge
    or (lo and v < lo) or (hi and v > hi) then
    argerror(fname, arg, format("number in [%s, %s] expected, got %s", tostring(lo or "-inf"),
      tostring(hi or "inf"), tostring(v)), (level or 2) + 1)
  end
  return v
end

return M
