--- The layout of a lab host's files: where each file of its `files` and
-- each `private` directory goes in its filesystem (`isle.lab.host`), as
-- seen from the machine: below one of its tmpfs, over a machine file (a
-- bind), or below a directory missing on the machine (an overlay of the
-- nearest one that exists). Reads the machine's files, changes nothing.
-- @module isle.lab.host_layout
local core = require "isle.core"
local labentry = require "isle.lab.entry"

local M = {}

local ipairs, format, sort = ipairs, string.format, table.sort
local EINVAL = 22
local under = labentry.under

--- Is `path` below one of host plan `h`'s tmpfs?
function M.in_tmpfs(h, path)
  for _, d in ipairs(labentry.tmpfs_dirs(h)) do
    if under(path, d) then return true end
  end
  return false
end

--- The directory of `path`.
function M.parent(path)
  return path:match("^(.*)/[^/]*$") or "/"
end

-- What core.lstat's types are, in words.
M.WHAT = { file = "file", dir = "directory", link = "symbolic link", other = "special file" }

-- A path's fate on the machine as seen from the host: "tmpfs" (below a
-- private tmpfs), "file"/"dir"/"link"/"other" (exists: core.lstat's
-- type), or "missing" with the
-- nearest existing ancestor directory.
function M.locate(h, path)
  if M.in_tmpfs(h, path) then
    return "tmpfs"
  end
  local st = core.lstat(path)
  if st then
    return st.type
  end
  local a = M.parent(path)
  while true do
    st = core.lstat(a)
    if st then
      if st.type ~= "dir" then
        return nil, format("%s is a %s on the machine, not a directory", a, M.WHAT[st.type])
      end
      return "missing", a
    end
    a = M.parent(a)
  end
end

-- `path` with the symbolic links of its components on the machine followed
-- (a file the host writes lands where the machine's link points: e.g.
-- /etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf, in the
-- host's own /run; in an unprivileged user's lab namespaces /etc/frr ->
-- .isle-host/frr, the copy-up of isle.lab.context), up to the first
-- component below one of the host's tmpfs; nil and why after 16 links.
function M.follow(path, h)
  h = h or {}
  local parts, out, links, i = {}, {}, 0, 1
  for c in path:gmatch("[^/]+") do parts[#parts + 1] = c end
  while i <= #parts do
    local c = parts[i]
    i = i + 1
    if c == ".." then
      out[#out] = nil
    elseif c ~= "." then
      out[#out + 1] = c
      local cur = "/" .. table.concat(out, "/")
      local st = not M.in_tmpfs(h, cur) and core.lstat(cur)
      if st and st.type == "link" then
        links = links + 1
        if links > 16 then return nil, "too many symbolic links" end
        local to = core.readlink(cur) or ""
        out[#out] = nil
        if to:sub(1, 1) == "/" then out = {} end
        local rest = {}
        for t in to:gmatch("[^/]+") do rest[#rest + 1] = t end
        table.move(parts, i, #parts, #rest + 1, rest)
        parts, i = rest, 1
      end
    end
  end
  return "/" .. table.concat(out, "/")
end

--- The layout of host plan `h`'s files and private directories: `{binds =
-- {{path, text, mode}}, writes = {{path, text, mode}}, overlays = {dir,
-- ...}, stage = boolean}` (files over machine files are bound from a
-- staging tmpfs; files below a tmpfs or an overlay are written there), or
-- nil, message, errno. `texts` maps each file's path to its text.
function M.layout(h, texts)
  local out = { binds = {}, writes = {}, overlays = {} }
  local seen = {}
  local function overlay(a)
    if a == "/" then
      return nil, "would need an overlay on / (no directory of its path exists on the machine)"
    end
    if not seen[a] then
      seen[a] = true
      out.overlays[#out.overlays + 1] = a
    end
    return true
  end
  for _, d in ipairs(h.private or {}) do
    local where, a = M.locate({}, d)
    local ok, msg = true, a
    if where == "missing" then
      ok, msg = overlay(a)
    elseif where and where ~= "dir" then
      ok, msg = nil, "is a " .. M.WHAT[where] .. " on the machine"
    end
    if not (where and ok) then
      return nil, format("private %s: %s", d, msg), EINVAL
    end
  end
  for _, f in ipairs(h.files or {}) do
    local path, why = M.follow(f.path, h)
    if not path then
      return nil, format("files %s: %s", f.path, why), EINVAL
    end
    local where, a = M.locate(h, path)
    local ok, msg = true, a
    local entry = { path, texts[f.path], f.mode }
    if where == "tmpfs" then
      out.writes[#out.writes + 1] = entry
    elseif where == "file" then
      out.binds[#out.binds + 1] = entry
    elseif where == "missing" then
      ok, msg = overlay(a)
      out.writes[#out.writes + 1] = entry
    elseif where then
      ok, msg = nil, "is a " .. M.WHAT[where] .. " on the machine"
    end
    if not (where and ok) then
      return nil, format("files %s: %s", f.path, msg), EINVAL
    end
  end
  sort(out.overlays, function(x, y) return #x < #y or (#x == #y and x < y) end)
  out.stage = #out.binds > 0 or #out.overlays > 0
  return out
end

--- Read the `source` of each file of plan `p`'s hosts into its `text`
-- (the model keeps it: `apply` compares texts), relative to the caller's
-- directory.
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.read_sources(p)
  for _, h in ipairs(p.hosts) do
    for _, f in ipairs(h.files or {}) do
      if f.source and not f.text then
        local s, msg, e = core.readfile(f.source)
        if not s then return nil, format("host %s: files %s: %s", h.name, f.path, msg), e end
        f.text = s
      end
    end
  end
  return true
end

return M
