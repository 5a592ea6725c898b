--- The `isle` command line: dispatch, help and the shared helpers of the
-- subcommands. `bin/isle` calls `require("isle.cli").main(arg)`.
--
-- **Adding a subcommand.** Create `lua/isle/cli/<name>.lua` (a `-` in the
-- name becomes `_`) returning a table:
--
--     return {
--       summary = "one line for `isle --help`",
--       usage = "isle NAME [OPTIONS] ARG\n\nlonger text, options...",
--       run = function(args, cli) ... end,
--     }
--
-- `isle NAME ...` finds it by name (no edit here needed); add NAME to
-- `M.order` below to list it in `isle --help` (names whose module does not
-- exist yet are skipped there). A subcommand can also be registered directly:
-- `require("isle.cli").commands.NAME = {summary =, usage =, run =}`.
--
-- `run(args, cli)` gets the arguments after NAME (`args[1]`...) and this
-- module. `isle NAME --help`/`-h` never reaches `run`: the usage is printed.
-- Inside `run`:
--
-- * return nothing, `true` or `0` for success, another integer for that exit
--   status;
-- * `return nil, msg` (the library's own `nil, msg, errno` passes straight
--   through) to fail: `isle: msg` on stderr, exit status 1;
-- * `cli.usage_error(msg)` raises a usage mistake: `isle NAME: msg` and a
--   hint on stderr, exit status 2; `cli.fail(msg)` raises a failure (status 1);
-- * `cli.getopt(args, spec)` parses options (see there).
--
-- Any other Lua error is reported as `isle: internal error: ...` (status 1;
-- set `ISLE_DEBUG=1` for the traceback).
-- @module isle.cli
local M = {}

local format, concat = string.format, table.concat

--- The exit status of a process's wait triple (`os.execute`'s): its code,
-- 128+N when signal N killed it.
function M.status(ok, how, code)
  if ok then
    return 0
  end
  if how == "signal" then
    return 128 + code
  end
  return code
end

--- Is descriptor `fd` a terminal (isatty(3))?
-- @int fd
-- @treturn boolean
function M.isatty(fd)
  local ok, core = pcall(require, "isle.core")
  return ok and core.isatty(fd) or false
end

--- Subcommands listed by `isle --help`, in this order.
M.order = { "up", "down", "apply", "ls", "link", "ping", "exec", "shell", "ps", "logs",
  "restart", "graph", "run", "enter", "stop", "rm", "inspect", "ns" }

--- Subcommands registered directly (name → {summary, usage, run}); others
-- are found as modules `isle.cli.<name>`.
M.commands = {}

M.stdout, M.stderr = io.stdout, io.stderr

local EXIT = {} -- marker of errors raised by usage_error / fail

--- Raise a usage mistake (exit status 2).
-- @string msg what is wrong with the command line
function M.usage_error(msg)
  error(setmetatable({ status = 2, msg = msg }, EXIT), 0)
end

--- A library call's argument error as a usage error (exit status 2): the
-- message without Lua's "bad argument #1 to 'f' (...)" wrapping.
-- @param err what `pcall` caught
function M.arg_error(err)
  M.usage_error((tostring(err):gsub("^bad argument %S+ to '%w+' %((.*)%)$", "%1")))
end

--- The named container `name` (`isle.container.open`); a malformed name
-- is a usage error.
-- @string name
-- @treturn[1] Container
-- @return[2] nil, message, errno
function M.open_container(name)
  local ok, c, msg, e = pcall(require("isle.container").open, name)
  if not ok then
    M.arg_error(c)
  end
  return c, msg, e
end

--- Raise a failure (exit status 1, or `status`).
-- @string msg what failed
-- @int[opt=1] status exit status
function M.fail(msg, status)
  error(setmetatable({ status = status or 1, msg = msg }, EXIT), 0)
end

--- Parse options out of `args`.
-- `spec` maps option names (without dashes) to `"flag"` (boolean), `"string"`,
-- `"number"` or `"list"` (repeatable string). Every name works as a long
-- option (`--hostname NAME`, `--hostname=NAME`); one-letter names also as
-- short ones (`-i`, `-m 64`; no bundling).
-- `--` ends the options; everything after it goes to `rest`.
-- @tparam {string,...} args the arguments
-- @tparam table spec option names and kinds
-- @treturn table options by name
-- @treturn {string,...} positional arguments
-- @treturn {string,...} the arguments after `--` (empty when there is none)
-- @treturn boolean whether there was a `--`
-- @raise a usage error for an unknown option or a missing/bad value
function M.getopt(args, spec)
  local opts, pos, rest = {}, {}, {}
  local i, dashdash = 1, false
  local function value(name, kind, v)
    if kind == "number" then
      local n = math.tointeger(tonumber(v))
      if not n then
        M.usage_error(format("option %s: integer expected, got '%s'", name, v))
      end
      return n
    end
    return v
  end
  while i <= #args do
    local a = args[i]
    if a == "--" then
      dashdash = true
      table.move(args, i + 1, #args, 1, rest)
      break
    end
    local name, inline
    if a:sub(1, 2) == "--" then
      name, inline = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
    elseif a:match("^%-%a$") then
      name = a:sub(2)
    end
    if name then
      local kind = spec[name]
      local shown = (a:sub(2, 2) == "-" and "--" or "-") .. name
      if not kind then
        M.usage_error("unknown option " .. shown)
      end
      if kind == "flag" then
        if inline then
          M.usage_error("option " .. shown .. " takes no value")
        end
        opts[name] = true
      else
        local v = inline
        if not v then
          i = i + 1
          v = args[i]
          if v == nil then
            M.usage_error("option " .. shown .. " needs a value")
          end
        end
        v = value(shown, kind, v)
        if kind == "list" then
          opts[name] = opts[name] or {}
          table.insert(opts[name], v)
        else
          opts[name] = v
        end
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos, rest, dashdash
end

--- A small JSON encoder (objects with sorted keys; arrays for sequences;
-- `__object = true`, or a metatable with `__object = true`, makes an empty
-- table `{}`).
-- @param v a string, number, boolean, nil or table of them
-- @treturn string
function M.json(v)
  local t = type(v)
  if t == "table" then
    if next(v) == nil then
      local mt = getmetatable(v)
      return (v.__object or (mt and mt.__object)) and "{}" or "[]"
    end
    if #v > 0 then
      local out = {}
      for i, x in ipairs(v) do out[i] = M.json(x) end
      return "[" .. concat(out, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do
      if k ~= "__object" then keys[#keys + 1] = tostring(k) end
    end
    table.sort(keys)
    local out = {}
    for _, k in ipairs(keys) do out[#out + 1] = M.json(k) .. ":" .. M.json(v[k]) end
    return "{" .. concat(out, ",") .. "}"
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return ({ ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t" })[c]
        or format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return math.type(v) == "float" and v == math.floor(v) and format("%d", v) or tostring(v)
  elseif t == "boolean" then
    return tostring(v)
  end
  return "null"
end

--- Print rows as left-aligned columns (the first row is the header).
-- @tparam {{string,...},...} rows
-- @param[opt] out a file (default stdout)
function M.table(rows, out)
  out = out or M.stdout
  local widths = {}
  for _, row in ipairs(rows) do
    for c, cell in ipairs(row) do
      widths[c] = math.max(widths[c] or 0, #tostring(cell))
    end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for c, cell in ipairs(row) do
      cell = tostring(cell)
      cells[c] = c < #row and cell .. string.rep(" ", widths[c] - #cell) or cell
    end
    out:write(concat(cells, "  "), "\n")
  end
end

--- The pid of this process (read from /proc/self/stat, no fork involved).
-- @treturn int
function M.getpid()
  local f = assert(io.open("/proc/self/stat", "r"))
  local s = f:read("l")
  f:close()
  return math.tointeger(tonumber(s:match("^(%d+)")))
end

local function valid_name(name)
  return type(name) == "string" and name:match("^[a-z][a-z0-9_-]*$") ~= nil
end

--- The subcommand table of `name`, or nil when there is none.
-- Errors inside an existing module are raised, not hidden.
-- @string name subcommand name
-- @treturn[1] table `{summary, usage, run}`
-- @return[2] nil
function M.lookup(name)
  if not valid_name(name) then
    return nil
  end
  local cmd = M.commands[name]
  if cmd then
    return cmd
  end
  local modname = "isle.cli." .. name:gsub("-", "_")
  if not package.searchpath(modname, package.path) then
    return nil
  end
  cmd = require(modname)
  if type(cmd) ~= "table" or type(cmd.run) ~= "function" then
    error(modname .. " must return a table with a run function", 0)
  end
  M.commands[name] = cmd
  return cmd
end

local function first_line(s)
  return (tostring(s or ""):match("[^\n]*"))
end

--- The text of `isle --help`.
function M.help_text()
  local lines = {
    "usage: isle COMMAND [ARGS...]",
    "",
    "isle makes Linux namespaces scriptable from Lua. Commands:",
    "",
  }
  local rows, seen = {}, {}
  local function add(name, cmd)
    seen[name] = true
    rows[#rows + 1] = { name, first_line(cmd.summary) }
  end
  for _, name in ipairs(M.order) do
    local ok, cmd = pcall(M.lookup, name)
    if ok and cmd then
      add(name, cmd)
    elseif not ok then
      rows[#rows + 1] = { name, "(broken: " .. first_line(cmd) .. ")" }
    end
  end
  local extra = {}
  for name in pairs(M.commands) do
    if not seen[name] then
      extra[#extra + 1] = name
    end
  end
  table.sort(extra)
  for _, name in ipairs(extra) do
    add(name, M.commands[name])
  end
  local width = 0
  for _, r in ipairs(rows) do
    width = math.max(width, #r[1])
  end
  for _, r in ipairs(rows) do
    lines[#lines + 1] = format("  %-" .. width .. "s  %s", r[1], r[2])
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "isle COMMAND --help: the usage of a command; isle --version: the version."
  return concat(lines, "\n") .. "\n"
end

local function usage_text(name, cmd)
  local usage = cmd.usage or ("isle " .. name)
  local text = "usage: " .. usage:gsub("^usage: ", "") .. "\n"
  if cmd.summary and not usage:find("\n") then
    text = text .. "\n" .. cmd.summary .. "\n"
  end
  return text
end

local function wants_help(args)
  for _, a in ipairs(args) do
    if a == "--" then
      return false
    elseif a == "--help" or a == "-h" then
      return true
    end
  end
  return false
end

local function report(msg, status)
  M.stderr:write("isle: ", first_line(msg), "\n")
  return status
end

--- Commands that work on labs: for an unprivileged user they run inside
-- that user's lab namespaces (isle.lab.context).
M.lab_commands = { up = true, down = true, apply = true, ls = true, link = true, ping = true,
  exec = true, shell = true, ps = true, logs = true, restart = true }

--- Does command `name` with `args` work on labs? (`graph` of a lab, not of
-- a file; `run --net LAB:HOST`.)
function M.on_labs(name, args)
  if M.lab_commands[name] then
    return true
  elseif name == "graph" then -- graph.lua's rule: a file, a path or *.lua
    local i = 1
    while args[i] do
      local a = args[i]
      if a == "-o" then
        i = i + 1
      elseif a:sub(1, 1) ~= "-" then
        local f = io.open(a, "r")
        if f then f:close() end
        return not (f or a:find("/", 1, true) or a:match("%.lua$"))
      end
      i = i + 1
    end
  elseif name == "run" then
    for i, a in ipairs(args) do
      if a == "--" then
        break
      end
      local v = a:match("^%-%-net=(.*)$") or a:match("^%-%-network=(.*)$")
      if a == "--net" or a == "--network" then
        v = args[i + 1]
      end
      if v and v:find(":", 1, true) then
        return true
      end
    end
  end
  return false
end

--- Run the command line `argv` (`argv[1]` is the subcommand).
-- @tparam {string,...} argv arguments as in the standalone interpreter's `arg`
-- @treturn int exit status
function M.run(argv)
  local name = argv[1]
  if name == nil then
    return report("missing command (see isle --help)", 2)
  end
  if name == "--help" or name == "-h" or name == "help" then
    local sub = name == "help" and argv[2] or nil
    if sub then
      local cmd = M.lookup(sub)
      if not cmd then
        return report(format("unknown command '%s' (see isle --help)", sub), 2)
      end
      M.stdout:write(usage_text(sub, cmd))
    else
      M.stdout:write(M.help_text())
    end
    return 0
  end
  if name == "--version" then
    local ok, core = pcall(require, "isle.core")
    M.stdout:write("isle ", ok and core.version or "(isle.core not built)", "\n")
    return 0
  end
  if name:sub(1, 1) == "-" then
    return report(format("unknown option '%s' (see isle --help)", name), 2)
  end
  local cmd = M.lookup(name)
  if not cmd then
    return report(format("unknown command '%s' (see isle --help)", name), 2)
  end
  local args = table.move(argv, 2, #argv, 1, {})
  if wants_help(args) then
    M.stdout:write(usage_text(name, cmd))
    return 0
  end
  local context
  if M.on_labs(name, args) then
    local e
    context, e = require("isle.lab.context").enter()
    if not context then
      return report(e, 1)
    end
  end
  local debugging = os.getenv("ISLE_DEBUG")
  local ok, r, msg = xpcall(cmd.run, function(e)
    if getmetatable(e) ~= EXIT and debugging then
      M.stderr:write(debug.traceback(tostring(e), 2), "\n")
    end
    return e
  end, args, M)
  if context then
    context:close()
  end
  if not ok then
    if getmetatable(r) == EXIT then
      if r.status == 2 then
        M.stderr:write(format("isle %s: %s\n", name, first_line(r.msg)))
        M.stderr:write(format("usage: %s\n", first_line(cmd.usage or ("isle " .. name))))
        return 2
      end
      return report(r.msg, r.status)
    end
    return report("internal error: " .. tostring(r), 1)
  end
  if r == nil and msg ~= nil then
    return report(msg, 1)
  elseif r == nil or r == true then
    return 0
  elseif r == false then
    return 1
  elseif math.type(r) == "integer" then
    return r
  end
  return 0
end

--- Entry point of `bin/isle`: run and exit with the status.
-- @tparam {string,...} argv the interpreter's `arg`
function M.main(argv)
  local ok, status = xpcall(M.run, function(e)
    if os.getenv("ISLE_DEBUG") then
      M.stderr:write(debug.traceback(tostring(e), 2), "\n")
    end
    return e
  end, argv)
  if not ok then
    status = report("internal error: " .. tostring(status), 1)
  end
  M.stdout:flush()
  os.exit(status, true)
end

return M
