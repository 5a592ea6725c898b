--- `isle ns [PID]`: the namespaces of a process, like `lsns -p PID`.
-- A subcommand module of `isle.cli` (see there for the pattern).
-- @module isle.cli.ns
local format = string.format

return {
  summary = "the namespaces of a process (kind, id, shared with isle / PID 1?)",
  usage = [[isle ns [PID]

Prints one row per namespace kind of process PID (default: isle itself):
  KIND  the kind, as in /proc/PID/ns/
  ID    the namespace's inode number, as in net:[4026531840]
  ISLE  "same" when isle's own process is in that namespace, else "other"
  PID1  the same comparison with PID 1 ("?" when it cannot be read)]],
  run = function(args, cli)
    local _, pos = cli.getopt(args, {})
    if #pos > 1 then
      cli.usage_error("too many arguments")
    end
    local pid
    if pos[1] then
      pid = pos[1]:match("^%d+$") and math.tointeger(tonumber(pos[1]))
      if not pid or pid <= 0 then
        cli.usage_error(format("PID must be a positive integer, got '%s'", pos[1]))
      end
    end
    local isle = require "isle"
    local me = cli.getpid()
    local info, err = isle.nsinfo(pid or me)
    if not info then
      return nil, err
    end
    local mine = (pid == nil or pid == me) and info or isle.nsinfo(me) or {}
    local init = isle.nsinfo(1) or {}
    local kinds = {}
    for kind in pairs(info) do
      kinds[#kinds + 1] = kind
    end
    table.sort(kinds)
    local rows = { { "KIND", "ID", "ISLE", "PID1" } }
    local function cmp(other, id)
      if other == nil then
        return "?"
      end
      return other == id and "same" or "other"
    end
    for _, kind in ipairs(kinds) do
      local id = info[kind]
      rows[#rows + 1] = { kind, tostring(id), cmp(mine[kind], id), cmp(init[kind], id) }
    end
    cli.table(rows)
  end,
}

