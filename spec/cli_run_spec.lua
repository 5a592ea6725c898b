-- `isle run`, `isle enter`, `isle stop` from the command line.
local H = require "spec.helper"

local ISLE = H.LUA_ENV .. " lua5.4 bin/isle"

local function isle(args)
  return H.sh(ISLE .. " " .. args .. " 2>&1")
end

local function status(args)
  local _, _, _, code = H.sh(ISLE .. " " .. args .. " >/dev/null 2>&1")
  return code
end

local function have(prog)
  local _, ok = H.sh("command -v " .. prog .. " >/dev/null")
  return ok
end

describe("isle run", function()
  local before
  before_each(function()
    before = H.census()
  end)
  after_each(function()
    H.assert_clean(before)
  end)

  it("prints its usage with --help", function()
    local out = isle("run --help")
    assert.matches("^usage: isle run %[OPTIONS%] %-%- CMD", out)
    assert.matches("%-%-rootless", out)
  end)

  it("rejects bad options with status 2", function()
    assert.equal(2, status("run --bogus -- true"))
    assert.equal(2, status("run --memory lots -- true"))
    assert.equal(2, status("run -v relative:/x -- true"))
    assert.equal(2, status("run"))
    assert.equal(2, status("run -d -- true")) -- -d needs --name
  end)

  it("carries the exit status through, 128+N for signal N, 127 for no command", function()
    if not H.is_root() then return pending("needs root") end
    assert.equal(0, status("run -- true"))
    assert.equal(3, status("run -- sh -c 'exit 3'"))
    assert.equal(137, status("run -- sh -c 'kill -9 $$'"))
    local out, ok, _, code = isle("run -- /no/such/cmd")
    assert.is_nil(ok)
    assert.equal(127, code)
    assert.equal("isle: container: exec /no/such/cmd: No such file or directory\n", out)
  end)

  it("lets only fds 0-2 reach the command (fd 7 opened before)", function()
    if not H.is_root() then return pending("needs root") end
    local out = H.sh("exec 7</etc/hostname; " .. ISLE
      .. " run -- sh -c 'ls /proc/self/fd | tr \"\\n\" \" \"'")
    assert.equal("0 1 2 3 ", out) -- 3: ls's own directory
  end)

  it("applies --hostname, -e, -w, -v SRC:DST[:ro]", function()
    if not H.is_root() then return pending("needs root") end
    local dir = os.tmpname()
    os.remove(dir)
    H.sh("mkdir -p " .. dir .. " && echo hi > " .. dir .. "/f")
    finally(function() H.sh("rm -rf " .. dir) end)
    local out = isle(string.format("run --hostname box -e FOO=bar -w /srv -v %s:/srv -v %s:/opt:ro"
      .. " -- sh -c 'hostname; echo $FOO; pwd; cat f; touch /opt/x 2>/dev/null || echo ro'",
      dir, dir))
    assert.equal("box\nbar\n/srv\nhi\nro\n", out)
  end)

  it("runs as -u/--user; HOSTNAME is the container's", function()
    if not H.is_root() then return pending("needs root") end
    assert.equal("1000\n", (isle("run -u 1000 -- id -u")))
    assert.equal("1000 1001\n", (isle("run --user 1000:1001 -- sh -c 'echo $(id -u) $(id -g)'")))
    assert.equal("box\n", (isle("run --hostname box -- sh -c 'echo $HOSTNAME'")))
    assert.equal(2, status("run -u 'a b' -- true"))
  end)

  it("takes -e NAME from the caller (saying so when unset), --env-file, docker's long names", function()
    if not H.is_root() then return pending("needs root") end
    local dir = os.tmpname()
    os.remove(dir)
    H.sh("mkdir -p " .. dir .. " && echo hi > " .. dir .. "/f")
    finally(function() H.sh("rm -rf " .. dir) end)
    local out = H.sh("ISLE_SPEC_SET=yes " .. ISLE .. " run -e ISLE_SPEC_SET -e ISLE_SPEC_UNSET"
      .. " -- sh -c 'echo $ISLE_SPEC_SET ${ISLE_SPEC_UNSET-unset}' 2>&1")
    assert.equal("isle run: -e: ISLE_SPEC_UNSET is not set here: not passed\nyes unset\n", out)
    H.sh("printf 'A=1\\n# a comment\\n\\nB=two words\\nISLE_SPEC_SET\\n' > " .. dir .. "/env")
    out = H.sh("ISLE_SPEC_SET=from-caller " .. ISLE .. " run --env-file " .. dir .. "/env"
      .. " -- sh -c 'echo $A/$B/$ISLE_SPEC_SET' 2>&1")
    assert.equal("1/two words/from-caller\n", out)
    out = isle(string.format("run --env X=1 --volume %s:/srv:ro --workdir /srv --network none"
      .. " --interactive -- sh -c 'echo $X; cat f; ls /sys/class/net' </dev/null", dir))
    assert.equal("1\nhi\nlo\n", out)
    assert.equal(1, status("run --env-file /no/such/isle-env -- true"))
  end)

  it("says clearly what it cannot do: -t without a terminal, --hostname on a lab host", function()
    if not H.is_root() then return pending("needs root") end
    local out, ok, _, code = isle("run -t -- true </dev/null")
    assert.is_nil(ok)
    assert.equal(1, code)
    assert.equal("isle: the input device is not a TTY (-t needs a terminal on stdin; drop -t,"
      .. " or run under script or tmux)\n", out)
    out, ok, _, code = isle("run --hostname x --net somelab:h1 -- true")
    assert.is_nil(ok)
    assert.equal(2, code)
    assert.matches("^isle run: hostname: a container on a lab host has the host's hostname", out)
    out, ok, _, code = isle("run -v /etc:/isle-no-such-dir -- true")
    assert.is_nil(ok)
    assert.equal(1, code)
    assert.equal("isle: container: mount point /isle-no-such-dir: not in the read-only root (the"
      .. " machine's /), where isle creates nothing: create it there first, or choose a target"
      .. " that exists (or one under /tmp or /run, the container's own)\n", out)
  end)

  it("mounts -v on a symlinked target (/var/run/x) and in the container's own /run", function()
    if not H.is_root() then return pending("needs root") end
    local dir = os.tmpname()
    os.remove(dir)
    H.sh("mkdir -p " .. dir .. " && echo hi > " .. dir .. "/f")
    finally(function() H.sh("rm -rf " .. dir) end)
    local link = H.readfile("/proc/self/mountinfo") and H.sh("readlink /var/run")
    local out = isle(string.format("run -v %s:/var/run/isle-x -v %s/f:/run/a/b/f -- sh -c"
      .. " 'cat /var/run/isle-x/f /run/a/b/f; ls /run'", dir, dir))
    if link == "/run\n" then
      assert.equal("hi\nhi\na\nisle-x\n", out)
    else
      assert.equal("hi\nhi\na\n", out)
    end
  end)

  it("runs a relative --rootfs", function()
    if not H.is_root() then return pending("needs root") end
    local dir = H.busybox_root()
    finally(function() H.sh("rm -rf " .. dir) end)
    local parent, base = dir:match("^(.*)/([^/]+)$")
    local out = H.sh("cd " .. parent .. " && " .. H.LUA_ENV:gsub("'lua/", "'" .. H.ROOT .. "/lua/")
      :gsub("'build/", "'" .. H.ROOT .. "/build/") .. " lua5.4 " .. H.ROOT
      .. "/bin/isle run --rootfs ./" .. base .. " -- /bin/echo rel 2>&1")
    assert.equal("rel\n", out)
  end)

  it("passes Ctrl-C on: the command ends and isle exits with 130", function()
    if not H.is_root() then return pending("needs root") end
    local tag = H.unique("intr"):gsub("%-", "")
    local out = H.sh(string.format([[%s run -- sh -c 'exec sleep 1%s' & pid=$!
      i=0; until pgrep -f '^sleep 1%s$' >/dev/null || [ $i -ge 500 ]; do sleep 0.01; i=$((i+1)); done
      kill -INT $pid; wait $pid; echo rc=$?]], ISLE, tag:match("%d+"), tag:match("%d+")))
    assert.equal("rc=130\n", out)
  end)

  it("shows a container's state (ps, inspect --json) and its log (logs -n, -f)", function()
    if not H.is_root() then return pending("needs root") end
    local name = H.unique("l")
    finally(function() isle("rm -f " .. name) end)
    assert.is_true(select(2, isle("run -d --name " .. name
      .. " -- sh -c 'echo one; echo two >&2; read x </dev/stdin; echo three'")))
    assert.equal("one\ntwo\nthree\n", (isle("logs -f " .. name))) -- follows to the end
    assert.equal("three\n", (isle("logs -n 1 " .. name)))
    local cjson = require "cjson"
    local st = cjson.decode((isle("inspect --json " .. name)))
    assert.equal("exited", st.state)
    assert.equal(0, st.exit.code)
    assert.equal(name, st.hostname)
    local list = cjson.decode((isle("ps --json")))
    local found
    for _, c in ipairs(list) do
      if c.name == name then found = c end
    end
    assert.equal("exited", found.state)
    assert.matches("^name%s+" .. name:gsub("%-", "%%-") .. "\nstate%s+exited\n", (isle("inspect " .. name)))
    assert.equal(1, status("logs no-such-isle-container"))
    assert.equal(2, status("logs ../x"))
  end)

  it("enters a --net LAB:HOST container's pid namespace", function()
    if not H.is_root() then return pending("needs root") end
    local lab = H.unique("el")
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(string.format([[local isle = require "isle"
      local l = isle.lab(%q); l:link(l:host("h1"), l:switch("s1"), {ip = "10.7.0.1/24"})
      return l]], lab))
    f:close()
    local name = H.unique("ec")
    finally(function()
      isle("rm -f " .. name)
      isle("down " .. lab)
      os.remove(script)
    end)
    assert.is_true(select(2, isle("up " .. script)))
    assert.is_true(select(2, isle("run -d --name " .. name .. " --net " .. lab .. ":h1 -- sleep 100")))
    local c = assert(require("isle.container").open(name))
    local pid = c.pid
    c:close()
    local out = isle("enter " .. name .. " -- sh -c 'readlink /proc/self/ns/pid; echo $$; hostname'")
    assert.equal(H.sh("readlink /proc/" .. pid .. "/ns/pid") .. "h1\n", out:gsub("\n%d+\n", "\n"))
    assert.not_equal("1", out:match("\n(%d+)\n"))
  end)

  it("shows only the container's processes and only lo", function()
    if not H.is_root() then return pending("needs root") end
    local out = isle("run -- sh -c 'echo $$; ps -e -o pid= | wc -l; ls /sys/class/net'")
    assert.matches("^2\n[2-5]\nlo\n$", out)
  end)

  it("runs a busybox --rootfs", function()
    if not H.is_root() then return pending("needs root") end
    local dir = H.busybox_root()
    finally(function() H.sh("rm -rf " .. dir) end)
    local out = isle("run --rootfs " .. dir .. " -- sh -c 'ls /; echo $$'")
    assert.equal("bin\ndev\nproc\nrun\nsys\ntmp\n2\n", out)
  end)

  it("enforces --pids and reports an OOM kill by --memory #slow", function()
    if not H.is_root() then return pending("needs root") end
    local out = isle("run --pids 8 -- sh -c \"sh -c 'for i in \\$(seq 30); do sleep 1 & done; wait' 2>&1 | grep -c fork\"")
    assert.is_true(tonumber(out:match("%d+")) > 0, out)
    local text, ok, _, code = isle("run --memory 32m -- sh -c 'x=$(head -c 200000000 /dev/zero | tr \"\\0\" x)'")
    assert.is_nil(ok)
    assert.equal(137, code)
    assert.matches("memory limit", text)
  end)

  it("gives -t a terminal of its own with job control (through script)", function()
    if not H.is_root() then return pending("needs root") end
    if not have("script") then return pending("script is not installed") end
    local out = H.sh("timeout 20 script -qec \"" .. ISLE:gsub('"', '\\"')
      .. " run -t -- sh -c 'tty; ps -o pid,pgid,sid,comm | grep -w sh'\" /dev/null")
    assert.matches("/dev/pts/0", out)
    assert.matches("%s2%s+2%s+2 sh", out) -- session and group leader: job control
  end)

  it("passes Ctrl-C and window size changes through -it (tmux)", function()
    if not H.is_root() then return pending("needs root") end
    if not have("tmux") then return pending("tmux is not installed") end
    local s = H.unique("isle")
    local function tmux(cmd) return H.sh("tmux " .. cmd .. " 2>&1") end
    local function screen() return tmux("capture-pane -p -t " .. s) end
    local function wait_for(pat)
      for _ = 1, 100 do
        local text = screen()
        if text:find(pat) then return text end
        H.sh("sleep 0.05")
      end
      return screen()
    end
    -- poll a shell command until its output matches (bounded): what it
    -- waits on is the real thing, not a time that should be enough
    local function poll(cmd, pat)
      local out
      for _ = 1, 200 do
        out = H.sh(cmd .. " 2>/dev/null")
        if out:find(pat) then return out end
        H.sh("sleep 0.02")
      end
      return out
    end
    tmux(string.format("new-session -d -s %s -x 80 -y 24 %q", s,
      "cd " .. H.sh("pwd"):gsub("\n", "") .. " && " .. ISLE .. " run -it -- sh; sleep 5"))
    finally(function() tmux("kill-session -t " .. s) end)
    wait_for("#%s*$") -- the prompt (the pane's empty lines after it)
    tmux("send-keys -t " .. s .. " 'sleep 30' Enter")
    assert.matches("%d", poll("pgrep -f '^sleep 30$'", "%d")) -- it runs: C-c reaches it
    tmux("send-keys -t " .. s .. " C-c")
    tmux("send-keys -t " .. s .. " 'echo rc=$?' Enter")
    assert.matches("rc=130", wait_for("rc=%d+"))
    tmux("resize-window -t " .. s .. " -x 100 -y 30")
    -- the container's terminal (the shell's, under isle-init) has the new size
    local shell = H.sh("pgrep -P \"$(pgrep -x isle-init | head -1)\" -x sh"):match("%d+")
    assert.matches("^30 100", poll("stty -F /proc/" .. tostring(shell) .. "/fd/0 size", "^30 100"))
    tmux("send-keys -t " .. s .. " 'stty size' Enter")
    assert.matches("30 100", wait_for("30 100"))
    tmux("send-keys -t " .. s .. " 'exit 4' Enter")
  end)

  it("runs rootless from an unprivileged account (setpriv)", function()
    if not H.is_root() then return pending("needs root") end
    if not have("setpriv") then return pending("setpriv is not installed") end
    local out, ok = H.sh(H.LUA_ENV .. " setpriv --reuid=65534 --regid=65534 --clear-groups lua5.4 bin/isle"
      .. " run --rootless -- sh -c 'id -u; cat /proc/self/uid_map' 2>&1")
    if not ok and out:match("Operation not permitted") then
      return pending("unprivileged user namespaces are forbidden here: " .. out)
    end
    assert.matches("^0\n%s+0%s+65534%s+1\n$", out)
  end)

  it("maps a full subuid/subgid range through newuidmap when the user has one", function()
    if not H.is_root() then return pending("needs root") end
    if not (have("setpriv") and have("newuidmap") and have("newgidmap")) then
      return pending("setpriv and newuidmap/newgidmap (uidmap) are needed")
    end
    local wrap, sub = H.private_subids("nobody:300000:65536\n")
    finally(function() os.remove(sub) end)
    local out, ok = H.sh(H.LUA_ENV .. " " .. wrap
      .. " setpriv --reuid=65534 --regid=65534 --clear-groups lua5.4 bin/isle run --rootless"
      .. " -- sh -c 'id -u; cat /proc/self/uid_map /proc/self/gid_map' 2>&1")
    if not ok and out:match("Operation not permitted") then
      return pending("unprivileged user namespaces are forbidden here: " .. out)
    end
    assert.matches("^0\n%s+0%s+65534%s+1\n%s+1%s+300000%s+65536\n"
      .. "%s+0%s+65534%s+1\n%s+1%s+300000%s+65536\n$", out)
  end)

  it("says clearly when user namespaces are forbidden, or root is needed", function()
    if not H.is_root() then return pending("needs root") end
    if not have("setpriv") then return pending("setpriv is not installed") end
    -- user.max_user_namespaces = 0, in a user namespace of the spec's own
    local out, ok = H.sh(H.LUA_ENV .. " unshare --user --map-root-user sh -c"
      .. " 'echo 0 > /proc/sys/user/max_user_namespaces && exec lua5.4 bin/isle run --rootless -- true' 2>&1")
    assert.is_nil(ok)
    assert.equal("isle: container: clone: No space left on device (the kernel or distribution"
      .. " forbids unprivileged user namespaces: user.max_user_namespaces is 0)\n", out)
    out, ok = H.sh(H.LUA_ENV .. " setpriv --reuid=65534 --regid=65534 --clear-groups"
      .. " lua5.4 bin/isle run -- true 2>&1")
    assert.is_nil(ok)
    assert.equal("isle: container: clone: Operation not permitted (new namespaces need root:"
      .. " use --rootless, rootless = true)\n", out)
  end)

  it("runs detached with --name -d; enter joins it; stop ends it, rm removes everything", function()
    if not H.is_root() then return pending("needs root") end
    local name = H.unique("c")
    local out, ok = isle("run -d --name " .. name .. " --hostname dtc --pids 20 -- sleep 1000")
    finally(function() isle("rm -f " .. name) end)
    assert.is_true(ok, out)
    assert.equal(name .. "\n", out)
    local dir = "/run/isle/containers/" .. name
    local c = assert(require("isle.container").open(name))
    local pid = c.pid
    c:close()
    assert.is_number(pid)
    assert.truthy(H.readfile(dir .. "/journal"))
    out = isle("enter " .. name .. " -- sh -c 'hostname; echo $HOSTNAME; readlink /proc/self/ns/pid'")
    assert.equal("dtc\ndtc\n" .. H.sh("readlink /proc/" .. pid .. "/ns/pid"), out)
    assert.equal(5, status("enter " .. name .. " -- sh -c 'exit 5'"))
    assert.equal(127, status("enter " .. name .. " -- /no/such/cmd"))
    assert.equal(1, status("run -d --name " .. name .. " -- true")) -- the name is taken
    assert.equal(1, status("rm " .. name)) -- it runs
    out, ok = isle("stop -t 1 " .. name)
    assert.is_true(ok, out)
    assert.is_nil(H.readfile("/proc/" .. pid .. "/stat"))
    local left = H.sh("ls -d /sys/fs/cgroup/*/isle-" .. name .. "-* /sys/fs/cgroup/*/*/*/isle-"
      .. name .. "-* 2>/dev/null")
    assert.equal("", left)
    assert.matches("\n" .. name:gsub("%-", "%%-")
      .. "%s+%-%s+exited%s+exit 143%s+%-%s+sleep 1000\n", (isle("ps")))
    assert.is_nil(select(2, isle("enter " .. name .. " -- true")))
    out, ok = isle("rm " .. name)
    assert.is_true(ok, out)
    assert.is_nil(require("isle.core").ino(dir))
    assert.not_matches(name, (isle("ps")))
  end)

  it("leaves nothing after a kill at any step of run -d --name (ISLE_FAULT=run:K)", function()
    if not H.is_root() then return pending("needs root") end
    local name = H.unique("k")
    local run = " run -d --name " .. name .. " --pids 20 --memory 64m -- sleep 1000"
    local dir = "/run/isle/containers/" .. name
    local function debris()
      local left = {}
      if require("isle.core").ino(dir) then left[#left + 1] = dir end
      local cg = H.sh("find /sys/fs/cgroup -maxdepth 5 -type d -name 'isle-" .. name
        .. "-*' 2>/dev/null")
      if cg ~= "" then left[#left + 1] = cg end
      local ps = H.sh("pgrep -f '^sleep 1000$'")
      if ps ~= "" then left[#left + 1] = "sleep 1000: " .. ps end
      return table.concat(left, " ")
    end
    finally(function() isle("rm -f " .. name) end)
    -- the records a whole run writes: owner, exec, ctx, argv, a cgroup each, pid
    local out, ok = isle(run)
    assert.is_true(ok, out)
    local records = #H.readfile(dir .. "/journal"):gsub("[^\n]", "")
    assert.is_true(records >= 6, tostring(records))
    assert.is_true(select(2, isle("rm -f " .. name)))
    assert.equal("", debris())
    for k = 1, records do
      out, ok = H.sh("ISLE_FAULT=run:" .. k .. " " .. ISLE .. run .. " 2>&1")
      assert.is_nil(ok, "no kill at record " .. k .. ": " .. out)
      if k % 2 == 0 then
        -- the next run of that name removes what the killed one left
        out, ok = isle(run)
        assert.is_true(ok, "k = " .. k .. ": " .. out)
      end
      if k % 2 == 1 then -- what ps shows of it: dead (or running, after the pid record)
        assert.matches("\n" .. name:gsub("%-", "%%-") .. "%s+%S+%s+%a+", (isle("ps")))
      end
      out, ok = isle("rm -f " .. name)
      assert.is_true(ok, "k = " .. k .. ": " .. out)
      assert.equal("", debris(), "after a kill at record " .. k)
    end
  end)
end)
