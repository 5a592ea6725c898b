--- Containers without root: the id maps of a rootless container (the caller
-- as root inside, plus the user's subordinate id ranges as podman maps
-- them), and why the system may refuse an unprivileged user namespace.
-- The functions read files through an injected `read(path)` (text or nil)
-- so that they can be checked without root.
-- @module isle.container.rootless
local M = {}

local format, tostring = string.format, tostring

--- The first range of user `id` (its number or `name`) in the text of
-- /etc/subuid or /etc/subgid: start, count; or nil.
function M.subid(text, id, name)
  for who, start, count in (text or ""):gmatch("([^:\n]+):(%d+):(%d+)") do
    if who == name or who == tostring(id) then
      return math.tointeger(tonumber(start)), math.tointeger(tonumber(count))
    end
  end
  return nil
end

--- The name of `uid` in the text of /etc/passwd, or nil.
function M.username(text, uid)
  for name, n in (text or ""):gmatch("([^:\n]+):[^:\n]*:(%d+):") do
    if tonumber(n) == uid then
      return name
    end
  end
  return nil
end

--- The uid and gid maps of a rootless container: the caller's ids as 0;
-- for a user with ranges in /etc/subuid and /etc/subgid, when
-- newuidmap/newgidmap are installed (`helpers`), ids 1.. from those ranges.
-- @int uid the caller's uid
-- @int gid the caller's gid
-- @tparam function read `read(path)` → text or nil
-- @tparam boolean helpers newuidmap and newgidmap are installed
-- @treturn table uid map
-- @treturn table gid map
function M.maps(uid, gid, read, helpers)
  local umap, gmap = { { 0, uid, 1 } }, { { 0, gid, 1 } }
  if uid == 0 or not helpers then
    return umap, gmap
  end
  local name = M.username(read("/etc/passwd"), uid)
  local ustart, ucount = M.subid(read("/etc/subuid"), uid, name)
  local gstart, gcount = M.subid(read("/etc/subgid"), uid, name)
  if ustart and gstart then
    umap[2] = { 1, ustart, ucount }
    gmap[2] = { 1, gstart, gcount }
  end
  return umap, gmap
end

--- Why the kernel may refuse an unprivileged user namespace (the setting to
-- change), or nil.
-- @tparam function read `read(path)` → text or nil
function M.policy(read)
  local function sysctl(path)
    return (read(path) or ""):match("^%s*(%S+)")
  end
  if sysctl("/proc/sys/user/max_user_namespaces") == "0" then
    return "user.max_user_namespaces is 0"
  elseif sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0" then
    return "kernel.unprivileged_userns_clone is 0"
  elseif sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1" then
    return "AppArmor restricts them: kernel.apparmor_restrict_unprivileged_userns is 1"
  end
  return nil
end

--- A clone refused for lack of privilege (EPERM, ENOSPC, EUSERS), explained;
-- any other message as it is.
-- @string msg the failure
-- @int e its errno
-- @tparam boolean rootless the container asked for a user namespace
-- @int uid the caller's uid
-- @tparam function read `read(path)` → text or nil
function M.explain(msg, e, rootless, uid, read)
  if not (e == 1 or e == 28 or e == 87) or not msg:find("clone", 1, true) then
    return msg
  end
  if rootless then
    local why = M.policy(read)
    return format("%s (the kernel or distribution forbids unprivileged user namespaces%s)", msg,
      why and ": " .. why or "")
  elseif uid ~= 0 then
    return msg .. " (new namespaces need root: use --rootless, rootless = true)"
  end
  return msg
end

return M
