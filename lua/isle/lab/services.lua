--- A lab's services, seen from outside the supervisor (`isle.lab.supervisor`,
-- the process that runs them): where their state lives under the lab's
-- directory, starting the supervisor (from `up`), its status (`isle ps`),
-- their logs (`isle logs`) and a restart request (`isle restart`).
--
-- Under `/run/isle/LAB/`: `logs/HOST/NAME.log` (each service's output,
-- appended), `services` (the supervisor's status: one line per service),
-- `ctl` (the supervisor's control FIFO) and `reply.PID` (a requester's
-- answer FIFO, while it waits).
-- @module isle.lab.services
local core = require "isle.core"
local sys = require "isle._sys"

local M = {}

local ipairs, format, concat, tonumber = ipairs, string.format, table.concat, tonumber
local STATE_DIR = "/run/isle"

local function labdir(lab)
  return STATE_DIR .. "/" .. lab
end

--- The directory of a lab's logs.
function M.logdir(lab)
  return labdir(lab) .. "/logs"
end

--- The log of service `name` on `host`.
function M.log(lab, host, name)
  return format("%s/%s/%s.log", M.logdir(lab), host, name)
end

--- The supervisor's status file.
function M.status(lab)
  return labdir(lab) .. "/services"
end

--- The supervisor's control FIFO.
function M.ctl(lab)
  return labdir(lab) .. "/ctl"
end

--- Is `path` an answer FIFO of lab `lab` (`/run/isle/LAB/reply.PID`)?
function M.own_reply(lab, path)
  return path:match("^" .. labdir(lab):gsub("%p", "%%%0") .. "/reply%.%d+$") ~= nil
end

--- The last `n` lines of a file ("" when it is missing).
function M.tail(path, n)
  local s = core.readfile(path) or ""
  local lines = {}
  for l in s:gmatch("[^\n]*\n?") do
    if l ~= "" then lines[#lines + 1] = l:gsub("\n$", "") end
  end
  return concat(lines, "\n", math.max(1, #lines - n + 1), #lines)
end

-- -------------------------------------------------------------------------
-- starting the supervisor

-- `dir/?.lua` entries of a search path made absolute (the supervisor runs
-- in /).
local function absolute(path)
  local cwd = core.readlink("/proc/self/cwd") or "/"
  local out = {}
  for entry in path:gmatch("[^;]+") do
    if entry:sub(1, 1) ~= "/" and entry ~= "" then
      entry = cwd .. "/" .. entry:gsub("^%./", "")
    end
    out[#out + 1] = entry
  end
  return concat(out, ";") .. ";;"
end

-- The Lua interpreter running us (or lua5.4 from PATH when we are
-- embedded in another program).
local function interpreter()
  local exe = core.readlink("/proc/self/exe") or ""
  if exe:match("/lua[%d.]*$") then
    return exe
  end
  return "lua5.4"
end

--- Start the supervisor program of lab `lab` in the lab's own network
-- namespace: with `detach`, a first copy that starts the real one (a new
-- session, not our child) and exits. Its standard output is `out` (a
-- descriptor number) or inherited; its errors go to `logs/supervisor.log`.
-- @treturn[1] Process
-- @return[2] nil, message, errno
function M.spawn_supervisor(lab, detach, out)
  local err, msg, e = core.fopen(M.logdir(lab) .. "/supervisor.log", "a")
  if not err then return nil, msg, e end
  -- our environment (an interpreter's own settings: LD_PRELOAD, ...),
  -- where to find isle, and what to do
  local env = {}
  for kv in (core.readfile("/proc/self/environ") or ""):gmatch("[^%z]+") do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if k then env[k] = v end
  end
  env.ISLE_FAULT = nil -- (the journal's test hook: up's, not its)
  env.ISLE_SUPERVISE, env.LUA_PATH, env.LUA_CPATH = lab, absolute(package.path),
    absolute(package.cpath)
  env.ISLE_SUPERVISE_DETACH = detach and "1" or nil
  local p
  p, msg, e = require("isle.process").spawn {
    argv = { interpreter(), "-e", "require('isle.lab.supervisor').main()" },
    env = env, join = { net = labdir(lab) .. "/net" }, cwd = "/", stdin = "null",
    stdout = out, stderr = err,
  }
  err:close()
  return p, msg, e
end

-- Read one line from descriptor `fd` (of box `box`) within `secs` seconds.
local function readline(fd, secs)
  local deadline, buf = core.clock() + secs, ""
  while not buf:find("\n", 1, true) do
    local left = deadline - core.clock()
    if left <= 0 then return nil, "no answer" end
    local ready = core.poll({ fd }, left)
    if ready and #ready > 0 then
      local chunk = core.read_now(fd)
      if not chunk or chunk == "" then return nil, "its end closed" end
      buf = buf .. chunk
    end
  end
  return buf:match("^([^\n]*)")
end

-- The longest a start can take: every timeout, with every restart.
local function patience(p)
  local t = 30
  for _, s in ipairs(p.services) do
    t = t + s.timeout * (s.restart == "on-failure" and s.restart_limit + 1 or 1)
  end
  return t
end

local function failure(lab, line)
  local host, name, why = line:match("^fail (%S+) (%S+) (.*)$")
  if not host then
    local log = M.logdir(lab) .. "/supervisor.log"
    return format("supervisor: %s; %s ends with:\n%s", line, log, M.tail(log, 10))
  end
  local log = M.log(lab, host, name)
  return format("service %s on %s: %s; its log (%s) ends with:\n%s", name, host, why, log,
    M.tail(log, 10))
end

--- Start the services of plan `p` (from `up`, after the wiring), journaled
-- in `j`: their logs, the control FIFO, the supervisor; then wait for its
-- report.
-- @treturn[1] true when every service is ready
-- @return[2] nil, message (with the tail of the failed service's log), errno
function M.start(p, j)
  if #(p.services or {}) == 0 then return true end
  local dir = M.logdir(p.name)
  local ok, msg, e = j:record("logs", dir)
  if ok then ok, msg, e = core.mkdir(dir, 448) end
  local hosts = {}
  for _, s in ipairs(p.services) do
    if ok and not hosts[s.host] then
      hosts[s.host] = true
      ok, msg, e = core.mkdir(dir .. "/" .. s.host, 448)
    end
  end
  if ok then ok, msg, e = j:record("file", M.ctl(p.name)) end
  if ok then ok, msg, e = core.mkfifo(M.ctl(p.name), 384) end
  if ok then ok, msg, e = j:record("file", M.status(p.name)) end
  if ok then ok, msg, e = j:record("supervisor") end
  if not ok then return nil, msg, e end
  local rbox, wbox, rfd, wfd = core.pipe()
  local first
  first, msg, e = M.spawn_supervisor(p.name, true, wfd)
  wbox:close()
  if not first then
    rbox:close()
    return nil, "supervisor: " .. msg, e
  end
  first:wait()
  local line
  line, msg = readline(rfd, patience(p))
  rbox:close()
  if line == "ready" then return true end
  return nil, failure(p.name, line or msg)
end

--- The log directories of the hosts of plan `p` with services (an apply
-- adding some to a lab whose supervisor runs).
function M.logdirs(p)
  for _, s in ipairs(p.services or {}) do
    local d = M.logdir(p.name) .. "/" .. s.host
    local ok, msg, e = core.mkdir(d, 448)
    if not ok and e ~= 17 then return nil, msg, e end -- EEXIST: there
  end
  return true
end

-- -------------------------------------------------------------------------
-- the status, and requests

--- The status of lab `lab`'s services: `{supervisor = pid|nil, running =
-- boolean, list = {{host, name, pid, state, restarts, since, why}}}` in
-- start order, or nil when the lab has no services.
function M.read_status(lab)
  local s = core.readfile(M.status(lab))
  if not s then return nil end
  local st = { list = {} }
  for line in s:gmatch("[^\n]+") do
    local f = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
    if f[1] == "supervisor" then
      st.supervisor = tonumber(f[2])
    elseif #f >= 6 then
      st.list[#st.list + 1] = { host = f[1], name = f[2], pid = tonumber(f[3]), state = f[4],
        restarts = tonumber(f[5]), since = tonumber(f[6]), why = f[7] ~= "" and f[7] or nil }
    end
  end
  st.running = st.supervisor ~= nil and sys.exists("/proc/" .. st.supervisor)
  return st
end

--- Ask the supervisor of lab `lab` to restart service `name` on `host`
-- (stop: TERM, grace, KILL; start; wait until ready) and wait for the
-- answer.
-- @treturn[1] int the new pid
-- @return[2] nil, message, errno
-- Send request `words` (the answer FIFO's path is appended) to the
-- supervisor of lab `lab` and wait `secs` for its one-line answer; nil,
-- message, errno, and `true` as 4th result when no supervisor listens.
local function ask(lab, words, secs)
  local reply = format("%s/reply.%d", labdir(lab), sys.getpid())
  local ok, msg, e = core.mkfifo(reply, 384)
  if not ok then return nil, msg, e end
  local rbox, rfd = core.open_fifo(reply, "r")
  local cbox, cfd
  cbox, cfd, e = core.open_fifo(M.ctl(lab), "w")
  local line, absent
  if not cbox then
    line, msg, absent = nil, "its supervisor is not running (" .. tostring(cfd) .. ")", true
  else
    core.write_fd(cfd, words .. " " .. reply .. "\n")
    cbox:close()
    line, msg = readline(rfd, secs or 600)
  end
  if rbox then rbox:close() end
  os.remove(reply)
  if not line then return nil, msg, e, absent end
  return line
end

--- Does the supervisor of lab `lab` run?
function M.running(lab)
  local st = M.read_status(lab)
  return st ~= nil and st.running
end

--- Ask the supervisor of lab `lab` to run the services of its model file
-- `file` ("model", or "model.prev" when an apply is undone): those gone
-- stopped, new ones started, changed ones restarted; wait until they run.
-- @treturn[1] true
-- @return[2] nil, message (with the tail of a failed service's log), errno
function M.reload(lab, file, p)
  local line, msg, e = ask(lab, "reload " .. file, p and patience(p) or 600)
  if not line then return nil, "supervisor: " .. tostring(msg), e end
  if line == "ok" then return true end
  if line:match("^fail %- %- ") then return nil, "supervisor: " .. line:sub(10) end
  return nil, failure(lab, line)
end

--- Ask the supervisor of lab `lab` to stop every service and exit (the
-- undoing of an apply that started it); true when none runs.
function M.quit(lab)
  local line, msg, e, absent = ask(lab, "quit -", 60)
  if line == "ok" or absent then return true end
  return nil, "supervisor: " .. tostring(line or msg), e
end

function M.restart(lab, host, name, secs)
  local line, msg, e = ask(lab, format("restart %s %s", host, name), secs)
  if not line then return nil, msg, e end
  local pid = line:match("^ok (%d+)$")
  if pid then return math.tointeger(tonumber(pid)) end
  return nil, (line:gsub("^fail ", ""))
end

-- -------------------------------------------------------------------------
-- a running lab's services by its name (isle.lab.services, service_log,
-- restart: names checked by the caller)

-- Lab `name`'s service `service` on `host`, from its model; or nil, msg,
-- errno.
local function service_of(name, host, service)
  local info, msg, e = require("isle.lab.journal").info(name)
  if not info then
    return nil, msg, e
  end
  for _, s in ipairs(info.plan and info.plan.services or {}) do
    if s.host == host and s.name == service then
      return s
    end
  end
  return nil, string.format("lab %s: no service '%s' on host '%s'", name, service, host), 2
end

--- The services of running lab `name` as its supervisor last wrote them,
-- and whether it runs (see `isle.lab.services`).
function M.states(name)
  local info, msg, e = require("isle.lab.journal").info(name)
  if not info then
    return nil, msg, e
  end
  local st = M.read_status(name)
  if not st then
    return nil, string.format("lab %s: no services", name), 2 -- ENOENT
  end
  local t = core.clock("realtime")
  for _, s in ipairs(st.list) do
    s.uptime = s.since and math.max(0, t - s.since) or nil
    s.since = nil
  end
  return st.list, st.running
end

--- The log file of a service of running lab `name` (see
-- `isle.lab.service_log`).
function M.log_of(name, host, service)
  local s, msg, e = service_of(name, host, service)
  if not s then
    return nil, msg, e
  end
  return M.log(name, host, service)
end

--- Restart a service of running lab `name` (see `isle.lab.restart`).
function M.restart_by_name(name, host, service)
  local s, msg, e = service_of(name, host, service)
  if not s then
    return nil, msg, e
  end
  local pid
  pid, msg, e = M.restart(name, host, service,
    s.timeout + 2 * require("isle.lab.supervisor").GRACE + 5)
  if not pid then
    return nil, string.format("lab %s: service %s on %s: %s", name, service, host, msg), e
  end
  return pid
end

return M
