--- Deep equality of plain values (the plans of a lab, service
-- definitions): the one helper `isle.lab.apply` (the diff) and
-- `isle.lab.supervisor` (a reload) share. Small on purpose: the supervisor
-- is a light process of its own.
-- @module isle.lab.same
local M = {}

local type, pairs = type, pairs

--- Are `a` and `b` equal: the same value, or tables whose keys hold equal
-- values (recursively)?
-- @treturn boolean
local function same(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
M.same = same

return M
