-- The escape suite: a hostile command in a default container tries the ways
-- out that containers have had (issue 10, docker's and runc's CVEs), from
-- the Lua API, from `isle run` and from `isle run -t` (under script, a
-- terminal of its own). Every attack targets only files and sockets this
-- spec made (unique names, removed at the end); an attack whose target the
-- kernel lacks is pending with the reason. Each must be refused, by the
-- error the hardening gives.
local H = require "spec.helper"
local container = require "isle.container"
local core = require "isle.core"
local format = string.format

local ISLE = "lua5.4 " .. H.ROOT .. "/bin/isle"

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function have(prog)
  return select(2, H.sh("command -v " .. prog .. " >/dev/null"))
end

--- A directory of this spec on the machine's root filesystem (not the
-- sandbox's /tmp: a bind of the machine's / must show it).
local function spec_dir(tag)
  local d = format("%s/build/escape-%s-%d-%s", H.ROOT, tag, H.mypid(), H.unique("x"))
  H.sh("mkdir -p " .. d .. " && chmod 755 " .. d)
  return d
end

--- A perl one-liner that opens a file this spec made by its handle from the
-- root inode (2, ext4's) of the machine's filesystem: the "shocker" exploit of
-- docker 0.11 (2014). It prints "read " and the line, or "shocker: " and why not.
local function shocker_script(finally)
  local d = spec_dir("handle")
  finally(function() H.sh("rm -rf " .. d) end)
  H.sh("echo handle-secret > " .. d .. "/target")
  -- the path of the file below that root: its mount's root in mountinfo
  local fsroot = H.readfile("/proc/self/mountinfo"):match("\n?%S+ %S+ %S+ (%S+) / ")
  local rel = (d .. "/target"):sub(#(fsroot == "/" and "" or fsroot) + 2)
  return format([[perl -e 'open(R, "<", "/") or die; my $h = pack("IiII", 8, 1, 2, 0);
    my $fd = syscall(304, fileno(R), $h, 0); if ($fd < 0) { print "shocker: $!\n"; exit }
    open(F, "<", "/proc/self/fd/$fd/%s") or die "open: $!\n"; print "read ", scalar <F>']],
    rel)
end

--- docker's default capabilities plus `add`.
local function caps(add)
  local list = { table.unpack(container.DEFAULT_CAPS) }
  for _, c in ipairs(add or {}) do
    list[#list + 1] = c
  end
  return list
end

-- --- the three runners: each runs `cmd` (sh) in a default container with
-- `o` = {cwd =, cap_add = {...}, rootfs =, stdin = path, stdout = path
-- (appended), fd7 = dir, env = "K=V"} and returns what it printed (stdout
-- and stderr) and the container's status (or the failure to start).

local function run_lua(cmd, o)
  local spec = { argv = { "sh", "-c", "exec 2>&1; " .. cmd }, cwd = o.cwd, rootfs = o.rootfs,
    caps = o.cap_add and caps(o.cap_add) or nil, stdout = "pipe", stdin = "null" }
  local files = {}
  if o.stdout then
    spec.stdout = assert(io.open(o.stdout, "a"))
    files[#files + 1] = spec.stdout
  end
  if o.stdin then
    spec.stdin = assert(io.open(o.stdin, "r"))
    files[#files + 1] = spec.stdin
  end
  if o.fd7 then -- a descriptor of the caller's that is not close-on-exec
    files[#files + 1] = assert(io.open(o.fd7 .. "/.", "r"))
  end
  local c, msg = container.run(spec)
  local out = ""
  if c and not o.stdout then
    out = c.process.stdout:read("a")
  end
  local r = c and { c:wait() } or { nil, msg }
  if c then
    c:close()
  end
  for _, f in ipairs(files) do
    f:close()
  end
  return out .. (c and "" or msg), r[1], r[2], r[3]
end

local function cli_line(cmd, o, tty)
  local flags = {}
  if o.cwd then
    flags[#flags + 1] = "-w " .. q(o.cwd)
  end
  if o.rootfs then
    flags[#flags + 1] = "--rootfs " .. q(o.rootfs)
  end
  for _, c in ipairs(o.cap_add or {}) do
    flags[#flags + 1] = "--cap-add " .. c
  end
  if o.stdin then
    flags[#flags + 1] = "-i"
  end
  if tty then
    flags[#flags + 1] = "-t"
  end
  local line = format("%s run %s -- sh -c %s", ISLE, table.concat(flags, " "),
    q("exec 2>&1; " .. cmd))
  if o.stdin then
    line = line .. " <" .. q(o.stdin)
  end
  if o.stdout then
    line = line .. " >>" .. q(o.stdout)
  end
  if o.fd7 then
    line = "exec 7<" .. q(o.fd7) .. "; " .. line
  end
  return (o.env and o.env .. " " or "") .. line
end

local function run_cli(cmd, o)
  local out, ok, how, code = H.sh("cd " .. (o.caller_cwd or "/") .. " && "
    .. cli_line(cmd, o) .. " 2>&1")
  return out, ok, how, code
end

local function run_tty(cmd, o)
  local out, ok, how, code = H.sh(format("cd %s && TERM=dumb timeout 60 script -qec %s /dev/null"
    .. " </dev/null 2>&1", o.caller_cwd or "/", q(cli_line(cmd, o, true))))
  return (out:gsub("\r", "")), ok, how, code
end

local RUNNERS = { { "lua", run_lua }, { "cli", run_cli }, { "cli -t", run_tty } }

--- Run `attack(run, mode)` with each runner; `modes` limits them.
local function each(modes, attack)
  for _, r in ipairs(RUNNERS) do
    if not modes or modes[r[1]] then
      if r[1] ~= "cli -t" or have("script") then
        attack(r[2], r[1])
      end
    end
  end
end

local ONLY_CLI = { cli = true, ["cli -t"] = true }

describe("escapes from a default container", function()
  local before
  before_each(function()
    if not H.is_root() then return end
    collectgarbage()
    before = H.census()
  end)
  after_each(function()
    if not H.is_root() then return end
    collectgarbage()
    H.assert_clean(before)
  end)

  it("cwd: /proc/1/cwd leads nowhere, at start (-w) or at run time (+sys_ptrace)", function()
    if not H.is_root() then return pending("needs root") end
    local d = spec_dir("cwd")
    finally(function() H.sh("rm -rf " .. d) end)
    H.sh("mkdir -p " .. d .. "/a/b/c")
    each(nil, function(run, mode)
      local out, ok = run("touch ../../../cwd-escape", { cwd = "/proc/1/cwd",
        caller_cwd = d .. "/a/b/c" })
      assert.is_nil(ok, mode)
      assert.matches("chdir /proc/1/cwd: Too many levels of symbolic links", out, 1, true)
      out = run("cd /proc/1/cwd && touch ../../../cwd-escape2", { cap_add = { "sys_ptrace" },
        caller_cwd = d .. "/a/b/c" })
      assert.matches("Read%-only file system", out, nil, mode)
      assert.is_nil(core.ino(d .. "/cwd-escape"), mode)
      assert.is_nil(core.ino(d .. "/cwd-escape2"), mode)
    end)
  end)

  it("/proc/sys is read-only", function()
    if not H.is_root() then return pending("needs root") end
    each(nil, function(run, mode)
      local out = run([[perl -e 'open(F, ">>", "/proc/sys/kernel/core_pattern") or die "$!\n";
        print "opened\n"']], {})
      assert.equal("Read-only file system\n", out, mode)
    end)
  end)

  it("/proc/sysrq-trigger is read-only", function()
    if not H.is_root() then return pending("needs root") end
    if not core.ino("/proc/sysrq-trigger") then
      return pending("this kernel has no /proc/sysrq-trigger")
    end
    each(nil, function(run, mode)
      local out = run([[perl -e 'open(F, ">>", "/proc/sysrq-trigger") or die "$!\n";
        print "opened\n"']], {})
      assert.equal("Read-only file system\n", out, mode)
    end)
  end)

  it("/proc/keys and /proc/timer_list are masked", function()
    if not H.is_root() then return pending("needs root") end
    each(nil, function(run, mode)
      local out = run("wc -l </proc/keys; head -c 40 /proc/timer_list | wc -c", {})
      assert.equal("0\n0\n", out, mode)
    end)
  end)

  it("/proc/kcore reads nothing", function()
    if not H.is_root() then return pending("needs root") end
    if not core.ino("/proc/kcore") then
      return pending("this kernel has no /proc/kcore")
    end
    each(nil, function(run, mode)
      assert.equal("0\n", (run("head -c 4 /proc/kcore | wc -c", {})), mode)
    end)
  end)

  it("no device node: mknod refused; with +mknod made but not opened (nodev)", function()
    if not H.is_root() then return pending("needs root") end
    local root = H.busybox_root()
    finally(function() H.sh("rm -rf " .. root) end)
    each(nil, function(run, mode)
      local out = run("mknod /dev/isle-null c 1 3 && echo x > /dev/isle-null && echo wrote", {})
      assert.matches("mknod: .*Operation not permitted", out)
      assert.not_matches("wrote", out, nil, mode)
      for _, o in ipairs { { cap_add = { "mknod" } }, { cap_add = { "mknod" }, rootfs = root } } do
        out = run("for d in /dev /tmp /run; do mknod $d/isle-null c 1 3 && echo made"
          .. " && { echo x > $d/isle-null && echo wrote; }; done", o)
        assert.matches("made", out, nil, mode)
        assert.matches("Permission denied", out, nil, mode)
        assert.not_matches("wrote", out, nil, mode)
      end
    end)
  end)

  it("a unix socket of the machine's /run is out of reach", function()
    if not H.is_root() then return pending("needs root") end
    local sock = format("/run/isle-escape-%d-%s.sock", H.mypid(), H.unique("s"))
    local listener = assert(require("isle").spawn { argv = { "perl", "-MIO::Socket::UNIX", "-e",
      [[$s = IO::Socket::UNIX->new(Local => $ARGV[0], Listen => 1) or die "$!";
      chmod 0600, $ARGV[0]; $| = 1; print "ready\n"; sleep 600]], sock }, stdout = "pipe" })
    finally(function()
      listener:kill("KILL")
      listener:wait()
      listener:close()
      os.remove(sock)
    end)
    assert.equal("ready", listener.stdout:read("l"))
    each(nil, function(run, mode)
      local out = run(format("perl -MIO::Socket::UNIX -e %s %s", q([[
        IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!\n"; print "connected\n"]]),
        sock), {})
      assert.equal("connect: No such file or directory\n", out, mode)
    end)
  end)

  it("seccomp: no nested user namespace, no keyring, no open_by_handle_at (shocker)", function()
    if not H.is_root() then return pending("needs root") end
    local shocker = shocker_script(finally)
    each(nil, function(run, mode)
      local out = run("unshare -Urm sh -c 'grep CapEff /proc/self/status'", {})
      assert.equal("unshare: unshare failed: Operation not permitted\n", out, mode)
      out = run([[perl -e '$r = syscall(250, 0, -3, 1, 0, 0); print $r < 0 ? "$!\n" : "keyring\n"']],
        {})
      assert.equal("Operation not permitted\n", out, mode)
      assert.equal("shocker: Operation not permitted\n", (run(shocker, {})), mode)
    end)
  end)

  it("open_by_handle_at with dac_read_search works, as in docker (the filter follows)", function()
    if not H.is_root() then return pending("needs root") end
    local shocker = shocker_script(finally)
    local out = run_lua(shocker, { cap_add = { "dac_read_search" } })
    if out:match("^shocker: Operation not supported") or out:match("Stale file handle") then
      return pending("this filesystem gives no handle to inode 2: " .. out)
    end
    assert.equal("read handle-secret\n", out)
  end)

  it("stdio: the caller's files cannot be reopened writable through /proc/self/fd", function()
    if not H.is_root() then return pending("needs root") end
    local d = spec_dir("stdio")
    finally(function() H.sh("rm -rf " .. d) end)
    each(nil, function(run, mode)
      local f = d .. "/out-" .. mode:gsub(" ", "")
      H.sh("echo keep > " .. f)
      run("echo clobber > /proc/self/fd/1", { stdout = f })
      assert.equal("keep\nclobber\n", (H.readfile(f):gsub("\r", "")), mode) -- -t: a terminal's
    end)
    each({ lua = true, cli = true }, function(run, mode)
      local f = d .. "/in-" .. mode
      H.sh("echo keep > " .. f .. " && chmod 444 " .. f)
      local out = run("echo clobber > /proc/self/fd/0; cat", { stdin = f })
      assert.equal("keep\n", H.readfile(f), mode)
      assert.matches("keep\n", out, nil, mode) -- stdin still reads (through the pipe)
    end)
  end)

  it("a descriptor the caller leaked (fd 7, no close-on-exec) does not reach the command", function()
    if not H.is_root() then return pending("needs root") end
    local d = spec_dir("fd")
    finally(function() H.sh("rm -rf " .. d) end)
    H.sh("echo fd-secret > " .. d .. "/s")
    each(nil, function(run, mode)
      local out = run("ls /proc/self/fd | tr '\\n' ' '; cat /proc/self/fd/7/s", { fd7 = d })
      assert.matches("^0 1 2 3 ", out, nil, mode)
      assert.not_matches("fd%-secret", out, nil, mode)
    end)
  end)

  it("PID 1: a neutral name, no environment of the caller, CAP_KILL only, no_new_privs", function()
    if not H.is_root() then return pending("needs root") end
    local secret = "ISLE_ESCAPE_SECRET_" .. H.mypid()
    each(nil, function(run, mode)
      local out = run([[tr "\0" " " </proc/1/cmdline; echo; cat /proc/1/environ | tr "\0" "\n";
        grep -E "CapEff|NoNewPrivs" /proc/1/status; ls /proc/1/cwd/ 2>&1 | head -1]],
        { env = secret .. "=s3cr3t" })
      assert.matches("^isle%-init \n", out, nil, mode)
      assert.matches("/proc/1/environ: Permission denied", out, nil, mode)
      assert.not_matches(secret, out, nil, mode)
      assert.matches("CapEff:%s+0000000000000020\nNoNewPrivs:%s+1\n", out, nil, mode)
      assert.matches("Permission denied", out:match("NoNewPrivs[^\n]*\n(.*)$"), nil, mode)
    end)
  end)

  it("the command starts only after PID 1 let go of the caller (no window at its start)", function()
    if not H.is_root() then return pending("needs root") end
    -- a command that looks at PID 1 at once (no shell: cat is exec'd
    -- straight away) saw the caller's command line in about 2 runs of 3,
    -- the init's full capabilities in 1 of 2, and with sys_ptrace read a
    -- file the caller had open through /proc/1/fd in 1 of 25, before the
    -- init had made itself neutral
    local d = spec_dir("window")
    local f
    finally(function() -- (one finally a test: busted keeps the last one only)
      if f then f:close() end
      H.sh("rm -rf " .. d)
    end)
    H.sh("echo window-secret > " .. d .. "/s")
    f = assert(io.open(d .. "/s"))
    local fd
    for _, n in ipairs(require("isle._sys").listdir("/proc/self/fd")) do
      if core.readlink("/proc/self/fd/" .. n) == d .. "/s" then
        fd = n
      end
    end
    for i = 1, 20 do
      local c = assert(container.run { argv = { "cat", "/proc/1/cmdline", "/proc/1/status",
        "/proc/1/fd/" .. fd }, stdout = "pipe", stderr = "pipe", caps = caps { "sys_ptrace" } })
      local out = c.process.stdout:read("a")
      c:wait()
      c:close()
      assert.matches("^isle%-init", out, nil, "run " .. i)
      assert.matches("\nCapEff:%s+0000000000000020\n", out, nil, "run " .. i)
      assert.not_matches("window%-secret", out, nil, "run " .. i)
    end
  end)

  it("/proc/1/exe cannot be opened for writing (CVE-2019-5736 through the init)", function()
    if not H.is_root() then return pending("needs root") end
    local open = [[perl -e 'if (open(F, "+<", "/proc/1/exe")) { print "opened rw\n" }
      else { print "$!\n" }']]
    each(nil, function(run, mode)
      assert.equal("Permission denied\n", (run(open, {})), mode)
      local out = run("readlink /proc/1/exe; " .. open, { cap_add = { "sys_ptrace" } })
      if out:match("^/memfd:isle%-init") then
        -- the init let go of the interpreter (where it holds CAP_SYS_RESOURCE):
        -- its exe is an empty memfd of its own, which Linux >= 5.15 keeps
        -- from writers while it is an exe, and older kernels do not
        local res = out:match("\n(.*)$")
        assert.is_true(res == "Text file busy\n" or res == "opened rw\n", out)
      else
        assert.equal("Text file busy\n", out:match("\n(.*)$"), mode)
      end
    end)
  end)

  it("typing into the caller's terminal (TIOCSTI, also with the upper 32 bits set)", function()
    if not H.is_root() then return pending("needs root") end
    if core.readfile("/proc/sys/dev/tty/legacy_tiocsti") == "0\n" then
      return pending("dev.tty.legacy_tiocsti is 0 here: the kernel refuses TIOCSTI anyway")
    end
    local sti = [[perl -e 'for $n (0x5412, 0x5412 | (1 << 32)) {
      my $c = "\n"; $r = syscall(16, 1, $n, $c); print $r < 0 ? "$!\n" : "typed\n" }']]
    -- from Lua: the caller's terminal (a pty of ours) as stdout
    local m, s, _, sfd = core.openpty()
    local c = assert(container.run { argv = { "sh", "-c", sti .. " >&2" }, stdout = sfd,
      stderr = "pipe", stdin = "null" })
    local out = c.process.stderr:read("a")
    c:wait()
    c:close()
    m:close()
    s:close()
    assert.equal("Operation not permitted\nOperation not permitted\n", out)
    each(ONLY_CLI, function(run, mode)
      assert.equal("Operation not permitted\nOperation not permitted\n", (run(sti, {})), mode)
    end)
  end)

  it("a mount the machine makes later does not show in the container (rprivate)", function()
    if not H.is_root() then return pending("needs root") end
    local d = spec_dir("prop")
    finally(function() H.sh("umount " .. d .. "/mnt 2>/dev/null; rm -rf " .. d) end)
    H.sh("mkdir -p " .. d .. "/mnt && mkfifo " .. d .. "/go")
    -- in a mount namespace of this spec's own, / made shared (as systemd has it)
    local script = format([[mount --make-rshared / && {
      %s run -- sh -c %s > %s/out 2>&1 & } && mount -t tmpfs isle-prop %s/mnt &&
      echo go > %s/go && wait && ls -A %s/mnt; cat %s/out]], ISLE,
      q("read x < " .. d .. "/go; touch " .. d .. "/mnt/x 2>&1 && echo wrote"), d, d, d, d, d)
    local p = assert(require("isle").spawn { argv = { "sh", "-c", script },
      namespaces = { "mnt" }, stdout = "pipe" })
    local out = p.stdout:read("a")
    p:wait()
    p:close()
    assert.matches("Read%-only file system", out)
    assert.not_matches("wrote", out)
  end)

  it("a rootless container keeps the defaults; isle enter joins it through its command", function()
    if not H.is_root() then return pending("needs root") end
    if not have("setpriv") then return pending("setpriv is not installed") end
    local as = "cd / && XDG_RUNTIME_DIR= setpriv --reuid=65534 --regid=65534 --clear-groups "
    local cmd = [[unshare -Urm true 2>&1; echo x 2>&1 >/proc/sys/kernel/core_pattern;
      perl -e '$r = syscall(250, 0, -3, 1, 0, 0); print $r < 0 ? "$!\n" : "keyring\n"';
      mknod /dev/isle-null c 1 3 2>&1; wc -l </proc/keys; tr "\0" " " </proc/1/cmdline; echo;
      grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status; cat /proc/1/environ 2>&1 | head -c 60; echo]]
    local out, ok = H.sh(as .. ISLE .. " run --rootless -- sh -c " .. q(cmd) .. " 2>&1")
    if not ok and out:match("Operation not permitted") and out:match("clone") then
      return pending("unprivileged user namespaces are forbidden here: " .. out)
    end
    assert.matches("^unshare: unshare failed: Operation not permitted\n", out)
    assert.matches("\nsh: 1: cannot create /proc/sys/kernel/core_pattern: Read%-only file system\n", out)
    assert.matches("\nOperation not permitted\n", out) -- keyctl
    assert.matches("mknod: /dev/isle%-null: Operation not permitted\n0\nisle%-init \n", out)
    assert.matches("NoNewPrivs:%s+1\nSeccomp:%s+2\n", out)
    assert.matches("/proc/1/environ: Permission denied", out)
    local name = H.unique("rl")
    finally(function() H.sh(as .. ISLE .. " rm -f " .. name) end)
    out, ok = H.sh(as .. ISLE .. " run --rootless -d --name " .. name .. " -- sleep 100 2>&1")
    assert.is_true(ok, out)
    -- ps alone (not in a pipeline whose other commands may not run yet)
    out, ok = H.sh(as .. ISLE .. " enter " .. name .. " -- sh -c 'id -u; grep Seccomp: /proc/self/status;"
      .. " p=$(ps -o comm= -e); echo \"$p\" | sort | tr \"\\n\" \" \"' 2>&1")
    assert.is_true(ok, out)
    assert.equal("0\nSeccomp:\t2\nisle-init ps sh sleep ", out)
  end)

  it("a joiner (isle enter) cannot be opened through /proc/PID/exe (CVE-2019-5736)", function()
    if not H.is_root() then return pending("needs root") end
    local d = spec_dir("join")
    local c
    finally(function() -- (one finally a test: busted keeps the last one only)
      if c then
        c:stop(0)
        c:close()
      end
      H.sh("rm -rf " .. d)
    end)
    -- a copy of the interpreter runs isle enter: nothing of the machine's
    -- at stake even if a write got through
    H.sh(format("cp $(command -v lua5.4) %s/lua && sha256sum %s/lua > %s/sum", d, d, d))
    local name = H.unique("join")
    local scanner = [[
      $| = 1; my %seen; my $t = time + 60;
      while (time < $t) {
        opendir(P, "/proc"); for my $p (grep { /^\d+$/ } readdir(P)) {
          next if $p == 1 || $p == $$ || $seen{$p}++;
          my $exe = readlink("/proc/$p/exe") // "";
          if (open(my $f, "<", "/proc/$p/exe")) {
            my $what = readlink("/proc/$$/fd/" . fileno($f));
            print "opened $p $what\n" if $what =~ m{/lua$};
            push @keep, $f;
          } else { print "refused $p $!\n" if $! =~ /Permission/ }
        } closedir(P);
        for my $f (@keep) { open(my $w, ">", "/proc/self/fd/" . fileno($f)) and print "wrote\n" }
      }]]
    c = assert(container.run { argv = { "perl", "-e", scanner }, name = name,
      stdout = "pipe" })
    for _ = 1, 20 do
      H.sh(format("cd / && %s/lua %s/bin/isle enter %s -- true", d, H.ROOT, name))
    end
    c:kill("KILL")
    local out = c.process.stdout:read("a")
    assert.not_matches("opened", out)
    assert.not_matches("wrote", out)
    assert.equal(H.readfile(d .. "/sum"), H.sh(format("sha256sum %s/lua", d)))
    if not out:match("refused") then
      return pending("the scanner never saw a joiner before its exec: " .. out)
    end
  end)
end)
