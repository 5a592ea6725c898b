--- The lab namespaces of an unprivileged user (rootless labs).
--
-- Root's labs live in the machine's namespaces, with their state under
-- `/run/isle`, `/run/netns` and `/etc/netns`. An unprivileged user's labs
-- live in one user namespace of theirs (the user as root there, plus their
-- subordinate ids when /etc/subuid and /etc/subgid give them a range and
-- newuidmap/newgidmap are installed), kept by a small holder process
-- (src/holder.c) that owns it and, in it, a mount, net, uts and time
-- namespace. In that mount namespace `/run` and `/etc` are copied up (a
-- tmpfs, a symlink per entry of the original), so that `/run/netns`,
-- `/etc/netns` and `/run/isle` (a bind of `STATE/labs`) are the user's, and
-- the lab code runs there unchanged, as root.
--
-- `STATE` is `$XDG_RUNTIME_DIR/isle` or `/tmp/isle-UID` (the container
-- registry's, checked as it checks it): `holder.pid` ("PID START USERNS"),
-- `holder.lock` (every client holds it shared while it works), `start.lock`,
-- `labs/`, `containers/`. The holder ends by itself when it gets the lock
-- exclusively (no client) and `labs/` holds no lab. `/run/.isle-holder` in
-- its mount namespace ("UID STATE") tells code inside where it is.
-- @module isle.lab.context
local core = require "isle.core"
local sys = require "isle._sys"
local registry = sys.lazy "isle.container.registry" -- root never needs them
local rootless = sys.lazy "isle.container.rootless"
local container = sys.lazy "isle.container"

local M = {}

local format, tonumber, tointeger = string.format, tonumber, math.tointeger
local EPERM, ENOSPC, EACCES = 1, 28, 13

--- The holder's marker in its mount namespace.
M.MARKER = "/run/.isle-holder"

--- Inside the lab namespaces of an unprivileged user? Their uid outside and
-- state directory; or nil (root's machine, or a plain process).
-- @treturn[1] int uid
-- @treturn[1] string state directory
-- @return[2] nil
function M.inside()
  local uid, state = (core.readfile(M.MARKER) or ""):match("^(%d+) (.-)\n?$")
  if not uid then
    return nil
  end
  return tointeger(tonumber(uid)), state
end

--- The pid of the live holder that `state/holder.pid` names (same start
-- time and user namespace, owned by the caller), or nil.
function M.running(state)
  local pid, start, userns = (core.readfile(state .. "/holder.pid") or "")
    :match("^(%d+) (%d+) (%d+)")
  pid = tointeger(tonumber(pid))
  if not pid or not registry.alive(pid, start) then
    return nil
  end
  local st = core.stat(format("/proc/%d", pid))
  if not st or st.uid ~= core.ids() then
    return nil
  end
  if tostring(core.nsid(format("/proc/%d/ns/user", pid), "user")) ~= userns then
    return nil
  end
  return pid
end

local SETTINGS = {
  ["user.max_user_namespaces"] = "sysctl -w user.max_user_namespaces=15000",
  ["kernel.unprivileged_userns_clone"] = "sysctl -w kernel.unprivileged_userns_clone=1",
  ["kernel.apparmor_restrict_unprivileged_userns"] =
    "an AppArmor profile with `userns,` for isle, or "
    .. "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
}

--- The one line that explains a refused user namespace (the setting that
-- forbids it and its fix), or nil when no setting does. `read(path)` → text
-- or nil; `exists(path)`.
function M.refusal(read, exists)
  local why = rootless.policy(read)
  local aa = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
  if not why and exists(aa) and not read(aa) then -- root-only on some systems
    why = "kernel.apparmor_restrict_unprivileged_userns may be 1 (unreadable)"
  end
  if not why then
    return nil
  end
  local key = why:match("(kernel%.[%w_]+)") or why:match("(user%.[%w_]+)")
  return format("rootless labs need unprivileged user namespaces, which this system forbids:"
    .. " %s (as root: %s)", why:gsub("^AppArmor restricts them: ", ""), SETTINGS[key])
end

local function read(path)
  return (core.readfile(path))
end

local function explain(msg, e)
  if e == EPERM or e == ENOSPC or e == EACCES then
    local why = M.refusal(read, sys.exists)
    if why then
      return why
    end
  end
  return msg
end

-- Map the new holder: the caller as 0, its subordinate ranges when it
-- has them (setgroups allowed); the single ids when newuidmap refuses (in
-- a nested user namespace its set-user-ID bit counts for nothing).
local function map(pid)
  local uid, gid = core.ids()
  local umap, gmap = rootless.maps(uid, gid, read,
    container._in_path("newuidmap") and container._in_path("newgidmap"))
  if #umap > 1 then
    local function text(m)
      return format("%d %d %d %d %d %d", m[1][1], m[1][2], m[1][3], m[2][1], m[2][2], m[2][3])
    end
    if core.holder_map(pid, "newuidmap", text(umap)) then
      return core.holder_map(pid, "newgidmap", text(gmap))
    end
  end
  local ok, msg, e = core.idmap(pid, "uid", { umap[1] })
  if ok then
    ok, msg, e = core.idmap(pid, "gid", { gmap[1] })
  end
  return ok, msg, e
end

-- A holder that was killed leaves its pid file: the processes still in
-- its user namespace (services, shells of its labs) keep namespaces that
-- no file names any more; they are ended (KILL) before a new holder
-- starts. How many.
local function orphans(state)
  local userns = tointeger(tonumber((core.readfile(state .. "/holder.pid") or "")
    :match("^%d+ %d+ (%d+)")))
  local uid, n = core.ids(), 0
  for _, pid in ipairs(userns and sys.listdir("/proc") or {}) do
    pid = tointeger(tonumber(pid))
    local st = pid and core.stat(format("/proc/%d", pid))
    if st and st.uid == uid and core.nsid(format("/proc/%d/ns/user", pid)) == userns then
      local box, fd = core.pidfd_open(pid)
      if box and core.pidfd_kill(fd, 9) then
        core.pidfd_wait(fd, 2)
        n = n + 1
      end
      if box then box:close() end
    end
  end
  return n
end

local function start(state)
  orphans(state)
  local pid, sock, e = core.holder_fork(state)
  if not pid then
    return nil, explain(sock, e), e
  end
  local ok, msg, me = map(pid)
  local gok, gmsg, ge = core.holder_go(sock, ok)
  sock:close()
  if not ok then
    return nil, explain("holder: " .. msg, me), me
  elseif not gok then
    return nil, explain(gmsg, ge), ge
  end
  return pid
end

local Context = {}
Context.__index = Context

--- Leave: release the client lock (the holder may end).
function Context:close()
  if self.lock then
    self.lock:close()
    self.lock = nil
  end
end

local function lockfile(path, how)
  local ok, msg, e = core.mkfile(path)
  if not ok then
    return nil, msg, e
  end
  local box
  box, msg, e = core.open_fd(path)
  if not box then
    return nil, msg, e
  end
  ok, msg, e = core.flock(box, how)
  if not ok then
    box:close()
    return nil, format("%s %s", msg, path), e
  end
  return box
end

-- The holder's pid, started when none runs (one starter at a time).
local function holder(state)
  local pid = M.running(state)
  if pid then
    return pid
  end
  local sl, msg, e = lockfile(state .. "/start.lock", "ex")
  if not sl then
    return nil, msg, e
  end
  pid = M.running(state)
  if not pid then
    pid, msg, e = start(state)
    if pid and not M.running(state) then
      pid, msg, e = nil, "holder started but not found in " .. state .. "/holder.pid", 3
    end
  end
  sl:close()
  return pid, msg, e
end

--- Move the calling process into its user's lab namespaces, starting the
-- holder when none runs: for an unprivileged caller only (root, and a
-- process already inside, get a context that does nothing). The caller
-- must be single-threaded; its working directory is kept by path. Keep the
-- returned context while working with labs (it holds the client lock, so
-- the holder waits) and close it at the end.
-- @treturn[1] table the context (`:close()`)
-- @return[2] nil, message, errno
function M.enter()
  local self = setmetatable({}, Context)
  if core.ids() == 0 then
    return self
  end
  local state, msg, e = registry.userdir()
  if not state then
    return nil, msg, e
  end
  self.state = state
  self.lock, msg, e = lockfile(state .. "/holder.lock", "sh")
  if not self.lock then
    return nil, msg, e
  end
  local pid
  pid, msg, e = holder(state)
  if not pid then
    self:close()
    return nil, msg, e
  end
  local kinds = "user,mnt,net,uts"
  if core.nsid(format("/proc/%d/ns/time", pid)) ~= core.nsid("/proc/self/ns/time") then
    kinds = kinds .. ",time"
  end
  local cwd = core.readlink("/proc/self/cwd")
  local ok
  ok, msg, e = core.setns(pid, kinds)
  if not ok then
    self:close()
    return nil, "join the lab namespaces: " .. msg, e
  end
  -- setns(mnt) moved us to its root; the tree is the machine's
  if not (cwd and core.chdir(cwd)) then
    core.chdir("/")
  end
  self.pid = pid
  return self
end

return M
