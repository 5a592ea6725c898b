--- The steps of a container's root, which the spawn engine's C child
-- runs (bubblewrap's way): a tmpfs on `/tmp` to stage in, pivoted into,
-- the old root at `/oldroot`; `/newroot`: the machine's `/` (recursive
-- bind, read-only) or a `rootfs`, nodev all through; a private `/proc`, a
-- minimal `/dev` (nodev: only the six devices bound from the machine), a
-- read-only `/sys`, fresh `/tmp`, `/run` (and `/var/run`); `/etc/netns/NAME/*`
-- of a named netns; the extra `mounts` (bind sources seen from the
-- machine's root, targets resolved inside the new root). Pure: the
-- machine comes through the `sys` table of `isle.container.plan`.
-- @module isle.container.rootfs
local core = require "isle.core"

local M = {}

local ipairs, format, sort = ipairs, string.format, table.sort
local MS, ATTR = core.MS, core.MOUNT_ATTR

--- Devices bound from the machine into the container's `/dev`.
M.DEVICES = { "null", "zero", "full", "random", "urandom", "tty" }

local NR, OR = "/newroot", "/oldroot"
M.NR, M.OR = NR, OR

--- Add the step `t` (op and what set here) to the list s.
function M.step(s, op, what, t)
  t.op, t.what = op, what
  s[#s + 1] = t
end

local function mnt(s, what, source, target, fstype, flags, data)
  M.step(s, "mount", what, { source = source, target = target, fstype = fstype, flags = flags,
    data = data })
end

--- The directories that are a fresh tmpfs in the container (what the
-- machine has there is not seen).
local function private_dir(c, path, sys)
  for _, d in ipairs { "/tmp", "/run", "/dev", "/proc", "/sys" } do
    if path == d or path:sub(1, #d + 1) == d .. "/" then
      return d
    end
  end
  if sys.kind((c.rootfs or "") .. "/var/run") == "dir"
    and (path == "/var/run" or path:find("^/var/run/")) then
    return "/var/run"
  end
  return nil
end

--- `path` inside the container with the symlinks of its root followed
-- there (an absolute link is relative to the root, `..` stays at it), as
-- the kernel would follow them from inside: `/var/run/x` is `/run/x` on
-- Debian. Stops at a private directory (its content is the container's).
function M.resolve(c, path, sys)
  local root = c.rootfs or ""
  local done, todo, hops = "", {}, 0
  for part in path:gmatch("[^/]+") do
    todo[#todo + 1] = part
  end
  local i = 1
  while i <= #todo do
    local part = todo[i]
    i = i + 1
    if part == ".." then
      done = done:match("^(.*)/[^/]*$") or ""
    elseif part ~= "." then
      local next = done .. "/" .. part
      local link = not private_dir(c, next, sys) and sys.readlink(root .. next)
      if link and hops < 40 then
        hops = hops + 1
        local rest = { table.unpack(todo, i) }
        todo, i = {}, 1
        for q in link:gmatch("[^/]+") do
          todo[#todo + 1] = q
        end
        table.move(rest, 1, #rest, #todo + 1, todo)
        if link:sub(1, 1) == "/" then
          done = ""
        end
      else
        done = next
      end
    end
  end
  return done == "" and "/" or done
end

--- Steps creating the mount point `target` (inside the container, its
-- symlinks resolved) when the root lacks it, as docker does: in a rootfs,
-- or in a directory that is the container's own tmpfs (with its parents:
-- `-v SRC:/run/x/y`); the machine's read-only `/` cannot have one made:
-- nil and the reason (nothing of the machine's is written).
local function mount_point(s, c, target, dir, sys)
  local tmp = private_dir(c, target, sys)
  if tmp then
    local parent = tmp
    for part in target:sub(#tmp + 2):gmatch("[^/]+") do
      local path = parent .. "/" .. part
      local last = path == target
      M.step(s, (dir or not last) and "mkdir" or "mkfile", "create mount point " .. path,
        { path = NR .. path, mode = (dir or not last) and 493 or nil, optional = true })
      parent = path
    end
    return true
  end
  if sys.exists((c.rootfs or "") .. target) then
    return true
  end
  if not c.rootfs or c.readonly then
    return nil, format("mount point %s: not in the read-only root (%s), where isle creates"
      .. " nothing: create it there first, or choose a target that exists (or one under /tmp"
      .. " or /run, the container's own)", target, c.rootfs or "the machine's /")
  end
  M.step(s, dir and "mkdir" or "mkfile", "create mount point " .. target,
    { path = NR .. target, mode = dir and 493 or nil })
  return true
end

--- Stage in a tmpfs, then bind the new root: the machine's / read-only, a
-- rootfs (read-only when asked); nodev all through (a rootfs may bring
-- device nodes), unless privileged.
function M.root(s, c)
  mnt(s, "mount tmpfs on /tmp (staging)", "tmpfs", "/tmp", "tmpfs", MS.nosuid | MS.nodev,
    "mode=0755")
  M.step(s, "mkdir", "mkdir /tmp/newroot", { path = "/tmp/newroot", mode = 493 })
  M.step(s, "mkdir", "mkdir /tmp/oldroot", { path = "/tmp/oldroot", mode = 493 })
  M.step(s, "chdir", "chdir /tmp", { path = "/tmp" })
  M.step(s, "pivot", "pivot_root", { path = ".", put_old = "oldroot" })
  M.step(s, "chdir", "chdir /", { path = "/" })
  if c.rootfs then
    mnt(s, "bind rootfs " .. c.rootfs, OR .. c.rootfs, NR, nil, MS.bind | MS.rec)
  else
    mnt(s, "bind / (the machine's root)", OR, NR, nil, MS.bind | MS.rec)
  end
  -- mount points a rootfs may lack (made before the root turns read-only)
  for _, d in ipairs { "proc", "dev", "sys", "tmp", "run" } do
    M.step(s, "mkdir", "mkdir /" .. d, { path = NR .. "/" .. d, mode = 493, optional = true })
  end
  local ro = not c.rootfs and c.readonly ~= false or c.rootfs and c.readonly
  local attr = (ro and ATTR.rdonly or 0) | (c.privileged and 0 or ATTR.nodev)
  if attr ~= 0 then
    local what = ro and (c.rootfs and "rootfs read-only" or "make / read-only") or "rootfs nodev"
    M.step(s, "setattr", what, { path = NR, attr = attr })
  end
end

--- /proc, a minimal /dev (a tmpfs without device nodes of its own: nodev;
-- the six bound from the machine keep its flags), /sys, a fresh /tmp,
-- /run and /var/run (when a directory: no socket of the machine's there).
function M.system(s, c, sysfs_ok, sys)
  mnt(s, "mount proc on /proc", "proc", NR .. "/proc", "proc", MS.nosuid | MS.nodev | MS.noexec)
  local dev = NR .. "/dev"
  mnt(s, "mount tmpfs on /dev", "tmpfs", dev, "tmpfs", MS.nosuid | MS.nodev | MS.noexec,
    "mode=0755,size=65536k")
  for _, d in ipairs(M.DEVICES) do
    M.step(s, "mkfile", "create /dev/" .. d, { path = dev .. "/" .. d })
    mnt(s, "bind /dev/" .. d, OR .. "/dev/" .. d, dev .. "/" .. d, nil, MS.bind)
  end
  for _, d in ipairs { "pts", "shm", "mqueue" } do
    M.step(s, "mkdir", "mkdir /dev/" .. d, { path = dev .. "/" .. d, mode = 493 })
  end
  mnt(s, "mount devpts on /dev/pts", "devpts", dev .. "/pts", "devpts", MS.nosuid | MS.noexec,
    "newinstance,ptmxmode=0666,mode=620")
  M.step(s, "symlink", "symlink /dev/ptmx", { target = "pts/ptmx", path = dev .. "/ptmx" })
  mnt(s, "mount tmpfs on /dev/shm", "shm", dev .. "/shm", "tmpfs", MS.nosuid | MS.nodev
    | MS.noexec, "mode=1777,size=65536k")
  M.step(s, "mount", "mount mqueue on /dev/mqueue", { source = "mqueue", target = dev .. "/mqueue",
    fstype = "mqueue", flags = MS.nosuid | MS.nodev | MS.noexec, optional = true })
  for _, l in ipairs { { "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
    { "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" } } do
    M.step(s, "symlink", "symlink /dev/" .. l[1], { target = l[2], path = dev .. "/" .. l[1] })
  end
  if sysfs_ok then
    -- read-only per mount: the superblock may be the machine's (net = "host")
    mnt(s, "mount sysfs on /sys", "sysfs", NR .. "/sys", "sysfs", MS.nosuid | MS.nodev
      | MS.noexec)
  else
    -- the machine's network namespace (or one we do not own): its /sys
    mnt(s, "bind /sys", OR .. "/sys", NR .. "/sys", nil, MS.bind | MS.rec)
  end
  if not c.privileged then
    M.step(s, "setattr", "make /sys read-only", { path = NR .. "/sys", attr = ATTR.rdonly })
  end
  mnt(s, "mount tmpfs on /tmp", "tmpfs", NR .. "/tmp", "tmpfs", MS.nosuid | MS.nodev,
    "mode=1777")
  mnt(s, "mount tmpfs on /run", "tmpfs", NR .. "/run", "tmpfs", MS.nosuid | MS.nodev,
    "mode=0755,size=65536k")
  if sys.kind((c.rootfs or "") .. "/var/run") == "dir" then
    mnt(s, "mount tmpfs on /var/run", "tmpfs", NR .. "/var/run", "tmpfs", MS.nosuid
      | MS.nodev, "mode=0755,size=65536k")
  end
end

--- A named netns: /etc/netns/NAME/* over /etc/*, read-only, as `ip netns
-- exec` (a lab host's hosts file).
function M.etc(s, c, nsname, sys)
  local etc = "/etc/netns/" .. nsname
  local files = sys.listdir(etc)
  sort(files)
  for _, file in ipairs(files) do
    local target = M.resolve(c, "/etc/" .. file, sys)
    local ok, why = mount_point(s, c, target, sys.isdir(etc .. "/" .. file), sys)
    if not ok then
      return nil, why
    end
    mnt(s, "bind " .. etc .. "/" .. file, OR .. etc .. "/" .. file, NR .. target, nil, MS.bind)
    M.step(s, "setattr", "make " .. target .. " read-only", { path = NR .. target,
      attr = ATTR.rdonly })
  end
  return true
end

--- The extra mounts: targets inside the container (their symlinks
-- resolved there), bind sources on the machine. nil and why when a mount
-- point cannot be made.
function M.extra(s, c, sys)
  for _, m in ipairs(c.mounts) do
    local source, target = m.source, M.resolve(c, m.target, sys)
    local ok, why = true, nil
    if m.op == "mount" and m.flags & MS.bind ~= 0 and m.flags & MS.remount == 0 then
      ok, why = mount_point(s, c, target, sys.isdir(source), sys)
      source = OR .. source
    elseif m.op == "mount" and m.flags & MS.remount == 0 then
      ok, why = mount_point(s, c, target, true, sys)
    end
    if not ok then
      return nil, why
    end
    if m.op == "umount" then
      M.step(s, "umount", m.what, { target = NR .. target, flags = m.flags })
    else
      mnt(s, m.what, source, NR .. target, m.fstype, m.flags, m.data)
    end
  end
  return true
end

function M.cgroups(s, fds)
  for _, fd in ipairs(fds or {}) do
    M.step(s, "write_fd", "join cgroup", { fd = fd, data = "0" })
  end
end

function M.pty(s, pty)
  if pty then
    M.step(s, "pty", "terminal", { fd = pty.fd, rows = pty.rows, cols = pty.cols })
  end
end

return M
