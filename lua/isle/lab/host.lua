--- A lab host's filesystem: a mount namespace of its own, kept alive on
-- `/run/isle/LAB/mnt/HOST` next to its uts namespace, which every way onto
-- the host enters (`lab:spawn`, `isle exec`, services, containers).
--
-- In it: the machine's files, with a private tmpfs on `/run` (and so on
-- `/var/run`, a link to it on Debian), `/tmp`, `/var/tmp`, `/var/log` and
-- each `private` directory; a sysfs of the host's network namespace on
-- `/sys` (mounted at the first entry onto the host, `isle.lab.entry.sysfs`:
-- each sysfs mount walks every sysfs of the machine, one per network
-- namespace, which made `up` quadratic); the lab's hosts file on `/etc/hosts`; the user's
-- `/etc/netns/LAB-HOST/*` over `/etc/*` (as `ip netns exec` does); the
-- host's `files`; its `mounts`. Nothing of it reaches the machine: `/` is
-- a slave of the machine's (mounts of the machine still arrive), and a
-- file whose directory is missing on the machine is written into an
-- overlay of the nearest directory that exists, whose upper layer lives
-- in the host's memory.
--
-- Made linear in the lab's size: once per build, a *template* namespace
-- is copied from the caller's and stripped of everything below `/run` and
-- `/sys`, where the namespace files of every lab live (a plain copy per
-- host would copy them all: quadratic); each host's namespace is a copy
-- of the template. The caller enters each namespace to set it up and is
-- back in its own ones (and its working directory) when `up` returns.
-- @module isle.lab.host
local core = require "isle.core"
local sys = require "isle._sys"
local ns = require "isle.ns"
local journal = require "isle.lab.journal"
local labentry = require "isle.lab.entry"
local layout = require "isle.lab.host_layout"

local M = {}

local ipairs, pairs, format, sort = ipairs, pairs, string.format, table.sort
local MS, MNT = core.MS, core.MNT
local ENOENT, EINVAL = 2, 22
local setmetatable, type = setmetatable, type

-- The directories with a private tmpfs on every host, and their modes;
-- under(path, dir); tmpfs_dirs(h) (see isle.lab.entry).
M.TMPFS, M.under, M.tmpfs_dirs = labentry.TMPFS, labentry.under, labentry.tmpfs_dirs
local under = M.under
-- The layout of a host's files (isle.lab.host_layout), here too.
M.WHAT, M.locate, M.follow, M.parent = layout.WHAT, layout.locate, layout.follow, layout.parent
M.layout, M.read_sources = layout.layout, layout.read_sources
local in_tmpfs, parent = layout.in_tmpfs, layout.parent
local TMPFS_FLAGS = MS.nosuid | MS.nodev

--- The text of a hosts file of plan p: every lab host's addresses, and
-- for host plan `h` (when given) its own name on 127.0.1.1 when it has no
-- address of its own.
function M.hosts_text(p, h, common)
  local lines = { "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback" }
  if h and M.own_hosts(h) then
    lines[#lines + 1] = "127.0.1.1\t" .. h.hostname
  end
  lines[#lines + 1] = common or table.concat(p.etc_hosts, "\n")
  return table.concat(lines, "\n") .. "\n"
end

--- Does host plan `h` need a hosts file of its own (no address on its
-- first interface), rather than the lab's?
function M.own_hosts(h)
  return #h.ifaces == 0 or #h.ifaces[1].ips == 0
end

--- The hosts file host plan `h` sees in journal `j`'s directory: the
-- lab's, or its own next to it.
function M.hosts_path(j, h)
  return j.dir .. (M.own_hosts(h) and "/hosts." .. h.name or "/hosts")
end

-- -------------------------------------------------------------------------
-- mountinfo

local function unescape(s)
  return (s:gsub("\\(%d%d%d)", function(o) return string.char(tonumber(o, 8)) end))
end

-- The mount points of the caller's mount namespace: list of {target, opts}.
local function mountinfo()
  local t = {}
  for line in (core.readfile("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
    local target, opts = line:match("^%S+ %S+ %S+ %S+ (%S+) (%S+)")
    if target then t[#t + 1] = { unescape(target), opts } end
  end
  return t
end

-- The topmost mounts strictly below `dir` (none of them below another);
-- `dir` may be a list of directories.
local function submounts(dir)
  local dirs, list = type(dir) == "table" and dir or { dir }, {}
  for _, m in ipairs(mountinfo()) do
    for _, d in ipairs(dirs) do
      if m[1] ~= d and under(m[1], d) then
        list[#list + 1] = m[1]
        break
      end
    end
  end
  sort(list)
  local top = {}
  for _, m in ipairs(list) do
    if not (top[#top] and under(m, top[#top])) then top[#top + 1] = m end
  end
  return top
end

-- Detach every mount stacked on each of `dirs` (with what is below it),
-- then every mount below one that is no mount point (a machine whose /run
-- is a directory of its root: the /run/netns and /run/isle binds of other
-- labs up there, which every host's copy of the template carried, and the
-- template's /run/netns, a slave of a shared one, kept receiving the lab's
-- own netns binds: one more mount in each next host, quadratic `up`).
local function strip(dirs)
  for _, dir in ipairs(dirs) do
    for _ = 1, 64 do
      local ok, msg, e = core.umount(dir, MNT.detach)
      if not ok then
        if e ~= EINVAL and e ~= ENOENT then return nil, msg, e end
        break -- no mount point (left)
      end
    end
  end
  for _, m in ipairs(submounts(dirs)) do
    local ok, msg, e = core.umount(m, MNT.detach)
    if not ok and e ~= EINVAL and e ~= ENOENT then return nil, msg, e end
  end
  return true
end

-- -------------------------------------------------------------------------
-- the template

--- Make the template of a lab's host namespaces (the caller must be able
-- to come back to its own: see build's Home, which saves `mnt`): a copy of
-- the caller's mount namespace, a slave of it, with `hosts` (a file of the
-- caller's) on `/etc/hosts` and nothing mounted on `/run` and `/sys`.
-- The caller is left inside it.
-- @string hosts path of the lab's shared hosts file
-- @treturn[1] Namespace the template, open (closing it drops it)
-- @treturn[1] boolean whether the machine's `/sys` is read-only
-- @return[2] nil, message, errno
function M.template(hosts)
  -- (the mount's flag: mountinfo of a machine with 1,000 hosts up is
  -- 4,000 lines, 25 ms to read)
  local sys_ro = core.readonly("/sys") == true
  local ok, msg, e = ns.unshare("mnt")
  if ok then ok, msg, e = core.mount(nil, "/", nil, MS.rec | MS.slave, nil) end
  if ok and sys.exists("/etc/hosts") then
    ok, msg, e = core.mount(hosts, "/etc/hosts", nil, MS.bind, nil)
  end
  if ok then ok, msg, e = strip { "/run", "/sys" } end
  if not ok then
    return nil, "template: " .. msg, e
  end
  local t
  t, msg, e = ns.open_ns("/proc/self/ns/mnt", "mnt")
  if not t then
    return nil, "template: " .. msg, e
  end
  return t, sys_ro
end

-- -------------------------------------------------------------------------
-- inside the new namespace

local function write(path, text, mode)
  local ok, msg, e = sys.writefile(path, text)
  if ok then ok, msg, e = core.chmod(path, mode or 420) end
  return ok, msg, e
end

-- Overlay directory `a` (its upper layer in the staging tmpfs at /run,
-- owned and moded as `a`), keeping the mounts below it.
local function overlay(a, i, base)
  local st, msg, e = core.lstat(a)
  if not st then return nil, msg, e end
  base = base or "/run/o"
  local up, work = format("%s/%d/u", base, i), format("%s/%d/w", base, i)
  local ok = sys.mkdirs(up) and sys.mkdirs(work)
  if ok then ok, msg, e = core.chmod(up, st.mode) end
  if ok then ok, msg, e = core.chown(up, st.uid, st.gid) end
  local keep = {}
  for _, m in ipairs(ok and submounts(a) or {}) do
    local box, fd = core.open_tree(m, true)
    if box then keep[#keep + 1] = { box, fd, m } end
  end
  if ok then
    ok, msg, e = core.mount("overlay", a, "overlay", 0,
      format("lowerdir=%s,upperdir=%s,workdir=%s", a, up, work))
  end
  for _, k in ipairs(keep) do
    if ok then ok, msg, e = core.move_mount(k[2], k[3]) end
    k[1]:close()
  end
  return ok, msg, e
end

-- /etc/netns/NETNS/* over /etc/* (the user's files; ours is the hosts link).
local function etc_netns(h, ours)
  local dir = "/etc/netns/" .. h.netns
  local names = sys.listdir(dir)
  sort(names)
  for _, n in ipairs(names) do
    local src = dir .. "/" .. n
    if not (n == "hosts" and core.readlink(src) == ours) and sys.exists("/etc/" .. n) then
      local ok, msg, e = core.mount(src, "/etc/" .. n, nil, MS.bind, nil)
      if not ok then return nil, msg, e end
    end
  end
  return true
end

M.write, M.overlay = write, overlay

--- The directories of the store that a host's default private
-- directories are (those of `TMPFS` that are directories on the machine,
-- and /var/run when it is one rather than a link to /run): `{{sub,
-- target, mode}, ...}`, /run last. Computed once per build.
function M.store_dirs()
  local list = {}
  for _, d in ipairs(M.TMPFS) do list[#list + 1] = d end
  list[#list + 1] = { "/var/run", 493 }
  local out = {}
  for i = #list, 1, -1 do
    local st = core.lstat(list[i][1])
    if st and st.type == "dir" then
      out[#out + 1] = { "d" .. i, list[i][1], list[i][2] }
    end
  end
  return out
end

local function subdir(path, mode)
  local ok, msg, e = core.mkdir(path, mode)
  if ok then ok, msg, e = core.chmod(path, mode) end -- whatever the umask
  return ok, msg, e
end

-- Bind directory `sub` of the store (made with `mode`) on `target`.
local function bind_sub(sub, target, mode)
  local ok, msg, e = subdir("/run/" .. sub, mode)
  if ok then ok, msg, e = core.mount("/run/" .. sub, target, nil, MS.bind, nil) end
  return ok, msg, e
end

-- The host's private directories, from its store: each `private` one (made
-- first when missing; one below a default private directory is only
-- made, later), then the defaults, /run last (over the store).
local function private_dirs(h, dirs, later)
  for i, d in ipairs(h.private or {}) do
    if in_tmpfs({}, d) then
      later[#later + 1] = d
    else
      local ok, msg, e = sys.mkdirs(d)
      if ok then ok, msg, e = bind_sub("p" .. i, d, 493) end
      if not ok then return nil, "private " .. d .. ": " .. msg, e end
    end
  end
  for _, d in ipairs(dirs) do
    local ok, msg, e = bind_sub(d[1], d[2], d[3])
    if not ok then return nil, msg, e end
  end
  return true
end

-- The host's own mount steps (compiled by isle.mount): binds from the trees
-- opened in the caller's namespace beforehand (`trees[i]`), others as is.
local function user_mounts(calls, trees)
  for i, c in ipairs(calls) do
    local ok, msg, e
    if trees[i] then
      ok, msg, e = core.move_mount(trees[i][2], c.target)
    elseif c.op == "umount" then
      ok, msg, e = core.umount(c.target, c.flags)
    else
      ok, msg, e = core.mount(c.source, c.target, c.fstype, c.flags, c.data)
    end
    if not ok then return nil, "mounts: " .. msg, e end
  end
  return true
end

--- Set up host `h` inside its new mount namespace (the caller is in it,
-- and in the host's network namespace): a sysfs of its network namespace
-- when `ctx.sys_eager` (else the first entry mounts it); one tmpfs, its
-- store, first on /run: overlays (upper layers in it), files over the
-- machine's (bound from it), then /tmp, /var/tmp, /var/log,
-- `private` and at last /run as directories of it; files written; its
-- own mount steps. `ctx`: `sys_ro`, `dirs` (store_dirs), `hosts_link`,
-- `calls`, `trees` (open_trees), `sys_eager`.
function M.setup(h, lay, ctx)
  local flags = MS.nosuid | MS.nodev | MS.noexec | (ctx.sys_ro and MS.ro or 0)
  local ok, msg, e = true, nil, nil
  if ctx.sys_eager then ok, msg, e = core.mount("sysfs", "/sys", "sysfs", flags, nil) end
  if ok then ok, msg, e = core.mount("tmpfs", "/run", "tmpfs", TMPFS_FLAGS, "mode=0755") end
  if ok and ctx.trees.hosts then ok, msg, e = core.move_mount(ctx.trees.hosts[2], "/etc/hosts") end
  for i, a in ipairs(lay.overlays) do
    if not ok then break end
    ok, msg, e = overlay(a, i)
  end
  if ok and #lay.binds > 0 then ok, msg, e = core.mkdir("/run/f", 448) end
  for i, b in ipairs(lay.binds) do
    if not ok then break end
    local src = "/run/f/" .. i
    ok, msg, e = write(src, b[2], b[3])
    if ok then ok, msg, e = core.mount(src, b[1], nil, MS.bind, nil) end
  end
  if ok and not ctx.etc_ours then ok, msg, e = etc_netns(h, ctx.hosts_link) end
  local later = {}
  if ok then ok, msg, e = private_dirs(h, ctx.dirs, later) end
  for _, d in ipairs(later) do
    if not ok then break end
    ok, msg, e = sys.mkdirs(d)
  end
  for _, w in ipairs(lay.writes) do
    if not ok then break end
    ok, msg, e = sys.mkdirs(parent(w[1]))
    if ok then ok, msg, e = write(w[1], w[2], w[3]) end
  end
  if ok then ok, msg, e = user_mounts(ctx.calls, ctx.trees) end
  return ok, msg, e
end

--- Open, in the caller's mount namespace, the sources of the bind steps
-- among `calls` (compiled mount steps): `{[i] = {box, fd}}`, to attach
-- in the host's; or nil, message, errno.
function M.open_trees(calls)
  local trees = {}
  for i, c in ipairs(calls) do
    if c.op == "mount" and c.flags & MS.bind ~= 0 and c.flags & MS.remount == 0 then
      local box, fd, e = core.open_tree(c.source, c.flags & MS.rec ~= 0)
      if not box then
        M.close_trees(trees)
        return nil, "mounts: " .. fd, e
      end
      trees[i] = { box, fd }
    end
  end
  return trees
end

function M.close_trees(trees)
  for _, t in pairs(trees) do t[1]:close() end
end

-- -------------------------------------------------------------------------
-- building (for isle.lab.build: `prepare`, `make` for each host, `finish`)

-- DIR/sys: where the first entry onto a host notes that it mounted the
-- host's sysfs (isle.lab.entry.sysfs); `.ro` in it: read-only.
local function sysdir(j, ro)
  local dir = j.dir .. "/sys"
  local ok, msg, e = j:record("sysdir", dir)
  if ok then ok, msg, e = core.mkdir(dir, 448) end
  if ok and ro then ok, msg, e = core.mkfile(dir .. "/.ro") end
  return ok, msg, e
end

--- Before the hosts of plan `p` (journal `j`; `home`, the caller's own
-- namespaces, build's Home): the lab's hosts file, the directory of the
-- hosts' mount namespace files (a private mount: a mount namespace cannot
-- be bound on a shared one) and the template. The caller ends in its own.
-- @treturn[1] table the state of `make` and `finish`
-- @return[2] nil, message, errno
function M.prepare(p, j, home)
  local fs = { hosts = j.dir .. "/hosts", dir = j.dir .. "/mnt" }
  local ok, msg, e = j:record("file", fs.hosts)
  if ok then ok, msg, e = sys.writefile(fs.hosts, M.hosts_text(p)) end
  if ok then ok, msg, e = core.chmod(fs.hosts, 420) end
  -- the namespace files on private mounts: a mount namespace cannot be
  -- bound on a shared one, and each bind on a shared directory took time
  -- linear in the files already there (quadratic `up`); `down` unmounts
  -- each file (the caller's copy: a mount namespace copied from the
  -- caller's meanwhile keeps its own until it goes)
  for _, d in ipairs { { fs.dir, MS.private }, { j.dir .. "/ns", MS.private } } do
    if ok then ok, msg, e = j:record("nsdir", d[1]) end
    if ok then ok, msg, e = core.mkdir(d[1], 448) end
    if ok then ok, msg, e = core.mount(d[1], d[1], nil, MS.bind, nil) end
    if ok then ok, msg, e = core.mount(nil, d[1], nil, d[2], nil) end
  end
  if ok then
    fs.dirs = M.store_dirs()
    home.moved.mnt = true
    fs.tmpl, fs.sys_ro = M.template(fs.hosts)
    if not fs.tmpl then ok, msg, e = nil, fs.sys_ro, nil end
    local back, bm, be = home:back("mnt")
    if ok and not back then ok, msg, e = back, bm, be end
  end
  if ok then ok, msg, e = sysdir(j, fs.sys_ro) end
  if not ok then
    M.finish(fs)
    return nil, msg, e
  end
  return fs
end

--- The template alone, for hosts an `apply` adds to running lab `j.name`
-- (its hosts file and directories exist): the state of `make` and `finish`.
function M.template_for(j, home)
  local fs = { hosts = j.dir .. "/hosts", dir = j.dir .. "/mnt", dirs = M.store_dirs(),
    sys_eager = not sys.exists(j.dir .. "/sys") } -- (a lab of an isle before the lazy sysfs)
  home.moved.mnt = true
  local t, sys_ro, te = M.template(fs.hosts)
  local back, bm, be = home:back("mnt")
  if not t then return nil, sys_ro, te end
  fs.tmpl, fs.sys_ro = t, sys_ro
  if not back then
    M.finish(fs)
    return nil, bm, be
  end
  return fs
end

--- Where host plan `h`'s namespace of `kind` ("uts" or "time") is kept, in
-- journal `j`'s directory (see prepare).
function M.ns_path(j, h, kind)
  return format("%s/ns/%s.%s", j.dir, h.name, kind)
end

-- Each file's text (a source read now, relative to our directory).
local function file_texts(h)
  local texts = {}
  for _, f in ipairs(h.files or {}) do
    if f.source and not f.text then
      local s, msg, e = core.readfile(f.source)
      if not s then return nil, "files " .. f.path .. ": " .. msg, e end
      texts[f.path] = s
    else
      texts[f.path] = f.text
    end
  end
  return texts
end

-- The host's layout, with its own hosts file unless `files` has one: the
-- lab's `hosts.HOST` bound on /etc/hosts (`own`: rewritten in place by
-- `apply`, as the lab's one), or a copy where the machine has none.
local function host_layout(p, h, j)
  local texts, msg, e = file_texts(h)
  if not texts then return nil, msg, e end
  local hh, own = h, nil
  if M.own_hosts(h) and not texts["/etc/hosts"] then
    if core.lstat("/etc/hosts") then
      own = M.hosts_path(j, h)
    else
      hh = setmetatable({ files = { { path = "/etc/hosts" } } }, { __index = h })
      for _, f in ipairs(h.files or {}) do hh.files[#hh.files + 1] = f end
      texts["/etc/hosts"] = M.hosts_text(p, h)
    end
  end
  local lay
  lay, msg, e = M.layout(hh, texts)
  if lay then lay.own_hosts = own end
  return lay, msg, e
end

-- The host's new namespaces of `kinds` (uts and mnt, or mnt alone), made
-- by one unshare from the template inside its network namespace `hnet`
-- (for its sysfs), `setup()` in them: the open uts (or nil) and mnt
-- namespaces. The caller is back in its own mount and network namespaces
-- (its uts namespace is restored at the end of the build).
local function create(home, fs, hnet, kinds, setup)
  home.moved.mnt, home.moved.net = true, true
  local ok, msg, e = ns.setns(fs.tmpl, "mnt")
  if ok then ok, msg, e = ns.setns(hnet, "net") end
  if ok then ok, msg, e = ns.unshare(kinds) end
  if ok and kinds:find("uts", 1, true) then home.moved.uts = true end
  if ok then ok, msg, e = setup() end
  local uts, mnt
  if ok and kinds:find("uts", 1, true) then
    uts, msg, e = ns.open_ns("/proc/self/ns/uts", "uts")
    ok = uts ~= nil
  end
  if ok then
    mnt, msg, e = ns.open_ns("/proc/self/ns/mnt", "mnt")
    ok = mnt ~= nil
  end
  for _, kind in ipairs { "mnt", "net" } do
    local back, bm, be = home:back(kind)
    if ok and not back then ok, msg, e = back, bm, be end
  end
  if not ok then
    if uts then uts:close() end
    if mnt then mnt:close() end
    return nil, msg, e
  end
  return uts or false, mnt
end

-- Pin the caller to a CPU whose new mount namespaces can be bound from
-- its own: on Linux 6.18 namespace ids come from per-CPU batches, and the
-- kernel refuses (EINVAL) to bind one whose id is below the binder's.
-- The caller's affinity is kept in fs.affinity (see finish).
local function pin(fs, home)
  local cpus = core.getaffinity()
  local probe = fs.dir .. "/.probe"
  for _, cpu in ipairs(cpus or {}) do
    core.setaffinity { cpu }
    home.moved.mnt = true
    local me = ns.unshare("mnt") and ns.open_ns("/proc/self/ns/mnt", "mnt")
    local back = home:back("mnt")
    local ok = back and me and me:bind(probe)
    if me then me:close() end
    if ok then
      sys.unbind(probe)
      fs.affinity = cpus
      return true
    end
  end
  if cpus then core.setaffinity(cpus) end
  return nil
end

--- After the hosts: the template goes, the caller's CPU affinity is back.
function M.finish(fs)
  if fs.tmpl then
    fs.tmpl:close()
    fs.tmpl = nil
  end
  if fs.affinity then
    core.setaffinity(fs.affinity)
    fs.affinity = nil
  end
end

-- The trees host plan `h`'s filesystem attaches, opened in the caller's
-- namespace: its bind mounts' sources and its own hosts file.
local function host_trees(h, lay)
  local trees, msg, e = M.open_trees(h.mounts or {})
  if not trees then return nil, msg, e end
  if lay.own_hosts then
    local box, fd, err = core.open_tree(lay.own_hosts, false)
    if not box then
      M.close_trees(trees)
      return nil, fd, err
    end
    trees.hosts = { box, fd }
  end
  return trees
end

--- Host plan `h`'s uts and mount namespaces (its hostname; its
-- filesystem: a copy of the template set up by `setup`), kept on
-- `DIR/ns/HOST.uts` and `DIR/mnt/HOST` (recorded first in `j`); its
-- network namespace exists. `etc_ours`: /etc/netns/LAB-HOST holds nothing
-- of the user's (it was made now).
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.make(p, h, j, home, fs, etc_ours)
  local upath, mpath = M.ns_path(j, h, "uts"), fs.dir .. "/" .. h.name
  local ok, msg, e = j:record("bind", upath)
  if ok then ok, msg, e = j:record("bind", mpath) end
  if not ok then return nil, msg, e end
  local lay
  lay, msg, e = host_layout(p, h, j)
  if not lay then return nil, msg, e end
  -- what is opened here: /run is not there in the template
  local hnet <close>, nmsg, ne = ns.open_ns(journal.NETNS_DIR .. "/" .. h.netns, "net")
  if not hnet then return nil, nmsg, ne end
  local trees
  trees, msg, e = host_trees(h, lay)
  if not trees then return nil, msg, e end
  local ctx = { sys_ro = fs.sys_ro, dirs = fs.dirs, calls = h.mounts or {}, trees = trees,
    hosts_link = M.hosts_path(j, h), etc_ours = etc_ours, sys_eager = fs.sys_eager }
  -- (a note of a host of that name an apply removed: its sysfs went with it)
  if not fs.sys_eager then sys.rmfile(j.dir .. "/sys/" .. h.name) end
  local uts, mnt
  uts, mnt, e = create(home, fs, hnet, "uts,mnt", function()
    local done, m, err = ns.sethostname(h.hostname)
    if done then done, m, err = M.setup(h, lay, ctx) end
    return done, m, err
  end)
  if not uts then
    M.close_trees(trees)
    return nil, mnt, e
  end
  ok, msg, e = uts:bind(upath)
  uts:close()
  if ok then
    ok, msg, e = mnt:bind(mpath)
    if not ok and e == EINVAL and not fs.affinity and pin(fs, home) then
      mnt:close()
      M.close_trees(trees) -- (attached in the first try: opened again)
      trees, msg, e = host_trees(h, lay)
      ctx.trees = trees or {}
      local made, m2, m3 = nil, msg, e
      if trees then
        made, m2, m3 = create(home, fs, hnet, "mnt", function() return M.setup(h, lay, ctx) end)
      end
      mnt = made ~= nil and m2 or nil -- (made is false: no uts namespace asked for)
      if mnt then ok, msg, e = mnt:bind(mpath) else ok, msg, e = nil, m2, m3 end
    end
  end
  M.close_trees(ctx.trees)
  if mnt then mnt:close() end
  return ok, msg, e
end

return M
