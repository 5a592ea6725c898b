--- IP addresses and prefixes, IPv4 and IPv6: one parser (the core's strict
-- `inet_pton`-based `parse_ip`) and the prefix arithmetic the lab needs.
-- @module isle.ip
-- @usage local ip = require "isle.ip"
-- local a = assert(ip.parse("10.0.0.1/24"))
-- print(a.family, a.addr, a.prefix, ip.network(a))   --> 4 10.0.0.1 24 10.0.0.0/24
local core = require "isle.core"

local M = {}

local type, ipairs, tostring = type, ipairs, tostring
local byte, format, concat = string.byte, string.format, table.concat

--- Parse `"a.b.c.d[/n]"` or an IPv6 address with an optional prefix length.
-- @string s
-- @treturn[1] table `{family = 4|6, bytes = {...}, prefix = n|nil, addr =
-- "without the prefix", text = s}`
-- @return[2] nil
-- @treturn[2] string why, e.g. `bad address '010.0.0.1/24'`
function M.parse(s)
  if type(s) ~= "string" then
    return nil, "address string expected, got " .. type(s)
  end
  local family, raw, prefix = core.parse_ip(s)
  if not family then
    local plen = s:match("/(.*)$")
    if plen and not plen:match("^%d+$") then
      return nil, "bad prefix length in '" .. s .. "'"
    end
    if plen and core.parse_ip(s:match("^[^/]*")) then
      return nil, "prefix length /" .. plen .. " too long in '" .. s .. "'"
    end
    return nil, "bad address '" .. s .. "'"
  end
  return { family = family, bytes = { byte(raw, 1, -1) }, prefix = prefix,
    addr = s:match("^[^/]*"), text = s }
end

--- Do `a` and `b` (parsed) agree on their first `n` bits?
function M.same_prefix(a, b, n)
  if a.family ~= b.family then
    return false
  end
  for i = 1, #a.bytes do
    local bits = math.min(8, math.max(0, n - (i - 1) * 8))
    if bits == 0 then
      return true
    end
    local mask = (0xff << (8 - bits)) & 0xff
    if a.bytes[i] & mask ~= b.bytes[i] & mask then
      return false
    end
  end
  return true
end

--- Are the host bits of `a` (under `a.prefix`) all `bit` (0 or 1)?
function M.host_bits_all(a, bit)
  for i = 1, #a.bytes do
    local nb = math.max(0, math.min(8, i * 8 - a.prefix)) -- host bits in this byte
    if nb > 0 then
      local mask = (1 << nb) - 1
      if a.bytes[i] & mask ~= (bit == 1 and mask or 0) then
        return false
      end
    end
  end
  return true
end

--- A key equal for equal addresses (family and bytes, without the prefix).
function M.key(a)
  return a.family .. ":" .. concat(a.bytes, ".")
end

--- Text of the bytes of an address (IPv6 in the canonical short form).
function M.tostring(family, bytes)
  if family == 4 then
    return concat(bytes, ".", 1, 4)
  end
  local g = {}
  for i = 1, 8 do
    g[i] = (bytes[2 * i - 1] << 8) | bytes[2 * i]
  end
  -- the longest run of zero groups (two or more) becomes "::"
  local best, blen, i = nil, 1, 1
  while i <= 8 do
    if g[i] == 0 then
      local j = i
      while j <= 8 and g[j] == 0 do j = j + 1 end
      if j - i > blen then best, blen = i, j - i end
      i = j
    else
      i = i + 1
    end
  end
  local parts = {}
  for k = 1, 8 do
    parts[k] = format("%x", g[k])
  end
  if not best then
    return concat(parts, ":")
  end
  return concat(parts, ":", 1, best - 1) .. "::" .. concat(parts, ":", best + blen, 8)
end

--- The network of a parsed address with a prefix, as text `"10.0.0.0/24"`.
function M.network(a)
  local b = {}
  for i, v in ipairs(a.bytes) do
    local keep = math.max(0, math.min(8, a.prefix - (i - 1) * 8))
    b[i] = v & ((0xff << (8 - keep)) & 0xff)
  end
  return M.tostring(a.family, b) .. "/" .. tostring(a.prefix)
end

--- The nft family keyword of a prefix text (`"ip"`, `"ip6"`), or nil when
-- it is not an address with an optional prefix.
function M.nft_family(s)
  local a = M.parse(s)
  return a and (a.family == 4 and "ip" or "ip6") or nil
end

return M
