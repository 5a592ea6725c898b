--- Named network namespaces, compatible with iproute2 both ways.
-- A namespace made here is `/run/netns/NAME`, listed by `ip netns list` and
-- usable by `ip netns exec NAME`; one made by `ip netns add` opens here.
-- @module isle.netns
-- @usage local netns = require "isle.netns"
-- local blue = assert(netns.add("blue"))
-- local net = assert(blue:net())
-- assert(net:link_set("lo", {up = true}))
-- net:close(); blue:close()
-- assert(netns.del("blue"))

local core = require "isle.core"
local check = require "isle._check"

local M = {}

local type, ipairs, pairs = type, ipairs, pairs
local sort = table.sort

local NETNS_DIR = "/run/netns"

local function checkname(fname, name)
  check.name(fname, "name", name, 3)
end

--- Create the named network namespace `/run/netns/NAME`, as `ip netns add`.
-- The caller stays in its own namespace.
-- @string name one path component (no `/`, not `.` or `..`, not empty)
-- @treturn[1] Netns the new namespace, open
-- @return[2] nil
-- @treturn[2] string message, e.g. `"netns add blue: File exists"`
-- @treturn[2] int errno
-- @raise on an invalid name, before any system call
function M.add(name)
  checkname("add", name)
  local ok, msg, e = core.netns_add(name)
  if not ok then
    return nil, msg, e
  end
  local ns
  ns, msg, e = core.netns_open(NETNS_DIR .. "/" .. name, name)
  if not ns then
    core.netns_del(name)
    return nil, msg, e
  end
  return ns
end

--- Open a namespace: a name in `/run/netns` (made by isle or by `ip netns
-- add`), or a path such as `/proc/PID/ns/net`.
-- @tparam string name
-- @treturn[1] Netns
-- @return[2] nil
-- @treturn[2] string message, e.g. `"netns open /run/netns/x: No such file or directory"`
-- @treturn[2] int errno
-- @raise on an invalid name
function M.open(name)
  if type(name) == "string" and name:find("/", 1, true) then
    return core.netns_open(name)
  end
  checkname("open", name)
  return core.netns_open(NETNS_DIR .. "/" .. name, name)
end

--- Names of the named network namespaces, sorted (as `ip netns list`).
-- @treturn[1] {string,...}
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
function M.list()
  local t, msg, e = core.netns_list()
  if not t then
    return nil, msg, e
  end
  sort(t)
  return t
end

--- Delete a named namespace, as `ip netns del`: detach-unmount and unlink.
-- Its links go away with it once nothing else holds it.
-- @string name
-- @treturn[1] true
-- @return[2] nil
-- @treturn[2] string message, e.g. `"netns del x: No such file or directory"`
-- @treturn[2] int errno
-- @raise on an invalid name
function M.del(name)
  checkname("del", name)
  return core.netns_del(name)
end

--- The caller's network namespace as a Netns; `ns.name` is its name in
-- `/run/netns` (as `ip netns identify`) or nil.
-- @treturn[1] Netns
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
function M.current()
  return core.netns_current()
end

--- Netns objects (userdata `isle.Netns`).
-- Fields: `name` (nil for an unnamed namespace), `path`, `id` (the inode,
-- as in `net:[4026531840]`). Methods: `fd()`, `close()`, and the two below.
-- @type Netns
local Netns = core.Netns

--- A netlink handle inside this namespace (see `isle.net.open`).
-- @treturn[1] Net
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
function Netns:net()
  return require("isle.net").open(self)
end

--- The `isle.spawn` spec of `ip netns exec NAME` (internal; used by
-- `Netns:spawn` and `lab:spawn`): `spec` plus `join`, a new mount namespace,
-- `/` made a slave, a fresh `/sys`, and `/etc/netns/NAME/*` bound over
-- `/etc`, before the caller's own mount steps.
function M._exec_spec(spec, join, name)
  local s = {}
  for k, v in pairs(spec) do
    s[k] = v
  end
  s.join = join
  s.namespaces = require("isle.ns")._with_kind(spec.namespaces, "mnt")
  local mounts = { { target = "/", flags = { "rec", "slave" } } }
  -- in an unprivileged user's lab namespaces (isle.lab.context's marker)
  -- the machine's /sys is locked (umount: EINVAL): the new sysfs goes over
  if not core.ino("/run/.isle-holder") then
    mounts[#mounts + 1] = { "umount", "/sys" }
  end
  mounts[#mounts + 1] = { "sysfs", "/sys" }
  if name then
    local etc = "/etc/netns/" .. name
    local names = core.netns_list(etc) or {}
    sort(names)
    for _, file in ipairs(names) do
      mounts[#mounts + 1] = { "bind", etc .. "/" .. file, "/etc/" .. file }
    end
  end
  for _, m in ipairs(spec.mounts or {}) do
    mounts[#mounts + 1] = m
  end
  s.mounts = mounts
  return s
end

--- Run a command inside this namespace, as `ip netns exec NAME`: the child
-- joins the namespace in a new mount namespace, makes `/` a slave, mounts a
-- fresh `/sys` (so `/sys/class/net` shows this namespace's links) and
-- bind-mounts each `/etc/netns/NAME/FILE` over `/etc/FILE`. Every other
-- field is as in `isle.spawn`; `spec.mounts` run after these.
-- @tparam table spec an `isle.spawn` spec
-- @treturn[1] Process
-- @return[2] nil
-- @treturn[2] string message
-- @treturn[2] int errno
function Netns:spawn(spec)
  if type(spec) ~= "table" then
    check.argerror("spawn", "spec", "table expected, got " .. type(spec))
  end
  if spec.join ~= nil then
    check.argerror("spawn", "spec", "'join' is set by Netns:spawn")
  end
  return require("isle.process").spawn(M._exec_spec(spec, { net = self.path }, self.name))
end

return M
