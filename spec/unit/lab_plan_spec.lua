-- isle.lab's declaration language and isle.lab.plan (no root, no system
-- call): every mistake raises a clear error before anything is built, the
-- kernel's limits included (the D3 classes of issue 9), and the plan of a
-- few declarations.
local isle = require "isle"
local build = require "isle.lab.build"

local raises = require("spec.helper").raises

local n = 0
local function newlab()
  n = n + 1
  return isle.lab("unit" .. n)
end

-- A lab with h1 on s1 (10.0.0.1/24), and `extra(lab, h1, s1)` declared.
local function small(extra)
  local lab = newlab()
  local s1, h1 = lab:switch("s1"), lab:host("h1")
  lab:link(h1, s1, { ip = "10.0.0.1/24" })
  if extra then extra(lab, h1, s1) end
  return lab
end

describe("isle.lab declarations (no root)", function()
  describe("names", function()
    it("refuses bad lab, host, switch and host names", function()
      raises("bad argument 'name' to 'lab' (name must not contain '/')",
        function() isle.lab("a/b") end)
      raises("bad argument 'name' to 'lab' (name must not be '.' or '..')",
        function() isle.lab("..") end)
      raises("bad argument 'name' to 'lab' (empty name)", function() isle.lab("") end)
      raises("is longer than 64 bytes", function() isle.lab(("x"):rep(65)) end)
      raises("may hold only letters", function() isle.lab("a b") end)
      raises("may hold only letters", function() isle.lab("-x") end)
      raises("'containers' is reserved", function() isle.lab("containers") end)
      raises("bad argument 'name' to 'lab' (string expected, got number)",
        function() isle.lab(42) end)
      local lab = newlab()
      raises("bad argument 'name' to 'host' (name must not contain '/')",
        function() lab:host("x/y") end)
      raises("bad argument 'name' to 'switch' (name 'sixteen-bytes-xx' is longer than 15 bytes)",
        function() lab:switch("sixteen-bytes-xx") end)
      raises("bad argument 'name' to 'switch' (interface name lo is taken)",
        function() lab:switch("lo") end)
      raises("bad argument 'opts.hostname' to 'host' (name 'a b' may hold only",
        function() lab:host("h", { hostname = "a b" }) end)
      lab:host("h1")
      raises("bad argument 'name' to 'host' (lab " .. lab.name
        .. " already has a host named 'h1')", function() lab:host("h1") end)
      raises("bad argument 'name' to 'switch' (lab " .. lab.name
        .. " already has a host named 'h1')", function() lab:switch("h1") end)
    end)

    it("checks names again at validate/up (D6: a name changed after creation)", function()
      local lab = small()
      lab.name = "../x"
      raises("lab ../x: name must not contain '/'", function() lab:validate() end)
      raises("lab ../x: name must not contain '/'", function() lab:up() end)
      local lab2 = small()
      lab2.nodes.h1.name = "a/b"
      raises("host a/b: name: name must not contain '/'", function() lab2:validate() end)
      local lab3 = small(function(l) l:host("h2") end)
      lab3.nodes.h2.name = "h1"
      raises("two nodes are named 'h1'", function() lab3:validate() end)
    end)
  end)

  describe("addresses", function()
    it("refuses what the kernel would refuse", function()
      local lab = newlab()
      local s1, h1, h2 = lab:switch("s1"), lab:host("h1"), lab:host("h2")
      raises("bad argument 'opts.ip' to 'link' (bad address '010.0.0.1/24')",
        function() lab:link(h1, s1, { ip = "010.0.0.1/24" }) end)
      raises("(bad address '10.0.0.300/24')",
        function() lab:link(h1, s1, { ip = "10.0.0.300/24" }) end)
      raises("'10.0.0.1' needs a prefix length",
        function() lab:link(h1, s1, { ip = "10.0.0.1" }) end)
      raises("'10.0.0.255/24' is the broadcast address of its subnet",
        function() lab:link(h1, s1, { ip = "10.0.0.255/24" }) end)
      raises("'10.0.0.0/24' is the network address of its subnet",
        function() lab:link(h1, s1, { ip = "10.0.0.0/24" }) end)
      for _, a in ipairs { "ff02::1/64", "::1/128", "::/64" } do
        raises("is an unspecified, multicast or loopback address",
          function() lab:link(h1, s1, { ip = a }) end)
      end
      raises("bad argument 'opts.ip[2]' to 'link' (prefix length /33 too long",
        function() lab:link(h1, s1, { ip = { "10.0.0.1/24", "10.0.1.1/33" } }) end)
      raises("bad argument 'opts.ip' to 'link' ({a_ip, b_ip} expected between two hosts)",
        function() lab:link(h1, h2, { ip = "10.0.0.1/24" }) end)
      raises("a link between two switches has no host end",
        function() lab:link(s1, lab:switch("s2"), { ip = "10.0.0.1/24" }) end)
      -- whole-declaration checks
      lab:link(h1, s1, { ip = "10.0.0.1/24" })
      lab:link(h2, s1, { ip = "10.0.0.1/24" })
      raises("lab " .. lab.name .. ": link h2-s1: address 10.0.0.1 is also on h1",
        function() lab:validate() end)
      local lab2 = newlab()
      lab2:link(lab2:host("a"), lab2:host("b"), { ip = { "10.0.0.1/24", "10.0.1.2/24" } })
      raises("link a-b: 10.0.0.1/24 and 10.0.1.2/24 are not in one subnet",
        function() lab2:validate() end)
    end)
  end)

  describe("impairments and link options", function()
    it("refuse values netem or the kernel would refuse (D3)", function()
      local lab = newlab()
      local s1, h1 = lab:switch("s1"), lab:host("h1")
      local function link(o) return function() lab:link(h1, s1, o) end end
      raises("bad argument 'opts.delay' to 'link' (time '275s' out of range [0, 274.878 s]",
        link { delay = "275s" })
      raises("(time '1e+300' out of range", link { delay = 1e300 })
      raises("out of range", link { delay = 0 / 0 })
      raises("out of range", link { delay = math.huge })
      raises("out of range", link { delay = -1 })
      raises("(malformed time '5ns'", link { delay = "5ns" })
      raises("(malformed time '1e9s'", link { delay = "1e9s" })
      raises("bad argument 'opts.jitter' to 'link' (time '300000ms' out of range",
        link { delay = "1ms", jitter = "300000ms" })
      raises("bad argument 'opts.jitter' to 'link' (jitter needs a delay)",
        link { jitter = "1ms" })
      raises("bad argument 'opts.rate' to 'link' (rate '100tbit' out of range",
        link { rate = "100tbit" })
      raises("(rate '1' out of range [8 bit/s", link { rate = 1 })
      raises("(rate '0mbit' out of range", link { rate = "0mbit" })
      raises("(malformed rate '10 mbit'", link { rate = "10 mbit" })
      raises("out of range", link { rate = 0 / 0 })
      raises("bad argument 'opts.loss' to 'link' (percentage in [0, 100] expected, got "
        .. tostring(0 / 0), link { loss = 0 / 0 })
      raises("(percentage in [0, 100] expected, got 200)", link { loss = 200 })
      raises("(percentage in [0, 100] expected, got -1)", link { loss = -1 })
      raises("(percentage in [0, 100] expected, got 5%)", link { loss = "5%" })
      raises("bad argument 'opts.mtu' to 'link' (integer in [68, 65535] expected, got 67)",
        link { mtu = 67 })
      raises("got 65536", link { mtu = 65536 })
      raises("got 1500.5", link { mtu = 1500.5 })
      raises("bad argument 'opts.mtu' to 'link' (IPv6 (2001:db8::1/64) needs an MTU of at least 1280",
        link { mtu = 1279, ip = "2001:db8::1/64" })
      raises("bad argument 'opts.ifname[1]' to 'link' (interface name longer than 15 bytes",
        link { ifname = { "a-very-long-interface" } })
      raises("bad argument 'opts.ifname[1]' to 'link' (interface name lo is taken",
        link { ifname = "lo" })
      raises("bad argument 'opts.ifname[1]' to 'link' (invalid interface name: 'a/b')",
        link { ifname = { "a/b" } })
      raises("bad argument 'opts.ifname[1]' to 'link' (interface name reserved by the kernel",
        link { ifname = "default" })
      raises("bad argument 'opts.ifname' to 'uplink' (interface name reserved by the kernel",
        function() lab:uplink(s1, { ifname = "all" }) end)
      raises("bad argument 'opts' to 'link' (unknown option 'colour')", link { colour = 1 })
      raises("bad argument 'b' to 'link' (a host or switch of lab " .. lab.name
        .. " expected, got 'nope')", function() lab:link(h1, "nope") end)
      raises("bad argument 'b' to 'link' (a link needs two different nodes)",
        function() lab:link(h1, h1) end)
      local other = newlab()
      raises("bad argument 'b' to 'link' (node h9 belongs to another lab)",
        function() lab:link(h1, other:host("h9")) end)
      -- the largest values the kernel takes pass
      lab:link(h1, s1, { delay = "274s", jitter = 274877, loss = 100, rate = "34gbit",
        mtu = 65535 })
      lab:validate()
    end)

    it("are checked again at validate/up, after the caller changed them", function()
      local opts = { ip = "10.0.0.2/24", delay = "5ms" }
      local lab = small(function(l, _, s1) l:link(l:host("h2"), s1, opts) end)
      opts.delay = 0 / 0
      raises("lab " .. lab.name .. ": link h2-s1: opts.delay: time '" .. tostring(0 / 0)
        .. "' out of range", function() lab:validate() end)
      opts.delay, opts.ip = "5ms", "010.0.0.2/24"
      raises("link h2-s1: opts.ip: bad address '010.0.0.2/24'", function() lab:validate() end)
    end)

    it("refuse a switch with more ports than a Linux bridge takes", function()
      local lab = newlab()
      local s = lab:switch("s")
      for i = 1, 1023 do
        lab:link(lab:host("h" .. i), s, { ifname = { nil, "p" .. i } })
      end
      assert.equal(1023, lab:validate().switches[1].ports)
      lab:link(lab:host("h1024"), s, { ifname = { nil, "p1024" } })
      raises("lab " .. lab.name .. ": switch s: 1024 ports; a Linux bridge takes at most 1023 "
        .. "(BR_MAX_PORTS 1024, port 0 reserved)", function() lab:validate() end)
    end)
  end)

  describe("hosts", function()
    it("refuse bad clocks, routes, gateways and sysctls", function()
      local lab = newlab()
      local function host(o) return function() lab:host("x", o) end end
      raises("bad argument 'opts.clock.monotonic' to 'host' (seconds in [-2147483648, "
        .. "2147483648] expected, got 1e+300)", host { clock = { monotonic = 1e300 } })
      raises("got " .. tostring(0 / 0), host { clock = { boottime = 0 / 0 } })
      raises("got inf", host { clock = { boottime = math.huge } })
      raises("got 2147483649", host { clock = { boottime = 2147483649 } })
      raises("got x", host { clock = { boottime = "x" } })
      raises("bad argument 'opts.clock' to 'host' (unknown option 'realtime')",
        host { clock = { realtime = 1 } })
      raises("host y: opts.clock.boottime: -1000000000.0 would put the boottime clock below 0 "
        .. "(it reads", function()
          local l = small(function(l) l:host("y", { clock = { boottime = -1e9 } }) end)
          l:validate()
        end)
      raises("bad argument 'opts.routes[1].metric' to 'host' (integer in [0, 4294967295] "
        .. "expected, got " .. math.maxinteger .. ")",
        host { routes = { { dst = "10.1.0.0/16", via = "10.0.0.254", metric = math.maxinteger } } })
      raises("got -1", host { routes = { { dst = "default", dev = "eth0", metric = -1 } } })
      raises("bad argument 'opts.routes[1].dst' to 'host' ('10.1.0.1/16' has host bits set "
        .. "(the network is 10.1.0.0/16))", host { routes = { { dst = "10.1.0.1/16", dev = "e" } } })
      raises("bad argument 'opts.routes[1].via' to 'host' ('2001:db8::1' is not of the family of "
        .. "dst 10.1.0.0/16)", host { routes = { { dst = "10.1.0.0/16", via = "2001:db8::1" } } })
      raises("bad argument 'opts.routes[1]' to 'host' (via or dev expected)",
        host { routes = { { dst = "10.1.0.0/16" } } })
      raises("bad argument 'opts.routes[1].via' to 'host' ('10.0.0.1/24' takes no prefix length)",
        host { routes = { { dst = "default", via = "10.0.0.1/24" } } })
      raises("bad argument 'opts.gateway' to 'host' ('10.0.0.1/24' takes no prefix length)",
        host { gateway = "10.0.0.1/24" })
      raises("bad argument 'opts.gateway[2]' to 'host' (bad address 'x')",
        host { gateway = { "10.0.0.1", "x" } })
      raises("bad argument 'opts.sysctl' to 'host' (malformed key '../x')",
        host { sysctl = { ["../x"] = 1 } })
      raises("bad argument 'opts.sysctl.ipv4.ip_forward' to 'host' (integer or string expected, "
        .. "got 0.5)", host { sysctl = { ["ipv4.ip_forward"] = 0.5 } })
      raises("bad argument 'opts.forward' to 'host' (boolean expected, got number)",
        host { forward = 1 })
      raises("bad argument 'opts' to 'host' (unknown option 'colour')", host { colour = "red" })
    end)

    it("check gateways and routes against the host's subnets", function()
      local function bad(extra, text)
        raises(text, function() small(extra):validate() end)
      end
      bad(function(l, _, s1) l:link(l:host("h2", { gateway = "10.9.9.9" }), s1,
        { ip = "10.0.0.2/24" }) end, "host h2: gateway 10.9.9.9 is in none of the host's subnets")
      bad(function(l, _, s1) l:link(l:host("h2", { gateway = "10.0.0.2" }), s1,
        { ip = "10.0.0.2/24" }) end, "host h2: gateway 10.0.0.2 is the host's own address")
      bad(function(l, _, s1) l:link(l:host("h2", { gateway = { "10.0.0.1", "10.0.0.3" } }), s1,
        { ip = "10.0.0.2/24" }) end, "host h2: gateway 10.0.0.3 duplicates gateway 10.0.0.1")
      bad(function(l, _, s1) l:link(l:host("h2", { routes = { { dst = "10.0.0.0/24",
        dev = "eth0" } } }), s1, { ip = "10.0.0.2/24" }) end,
        "host h2: routes[1] is the subnet of eth0, which the kernel routes already")
      bad(function(l) l:host("h2", { routes = { { dst = "default", dev = "eth3" } } }) end,
        "host h2: routes[1].dev eth3 is not an interface of the host")
    end)
  end)

  describe("nat and uplink", function()
    it("refuse what cannot be built", function()
      local lab = small()
      local h1 = lab.nodes.h1
      raises("bad argument 'opts.out' to 'nat' (the interface (or peer node) to masquerade out "
        .. "of expected)", function() lab:nat(h1, {}) end)
      raises("bad argument 'opts.source' to 'nat' ('10.0.0.1/24' has host bits set",
        function() lab:nat(h1, { out = "eth0", source = "10.0.0.1/24" }) end)
      raises("bad argument 'opts.source' to 'nat' (bad address '10.0.0/24')",
        function() lab:nat(h1, { out = "eth0", source = "10.0.0/24" }) end)
      raises("bad argument 'host' to 'nat' (NAT runs on a host (a router), not a switch)",
        function() lab:nat("s1", { out = "eth0" }) end)
      lab:nat(h1, { out = "eth7" })
      raises("nat on h1: no interface eth7", function() lab:validate() end)
      local lab2 = small(function(l, h) l:nat(h, { out = l:host("h2") }) end)
      raises("nat on h1: no link to h2", function() lab2:validate() end)
      local lab3 = small()
      raises("bad argument 'opts.ifname' to 'uplink' (interface name longer than 15 bytes",
        function() lab3:uplink("s1", { ifname = "sixteen-bytes-xx" }) end)
      raises("bad argument 'switch' to 'uplink' (an uplink connects a switch)",
        function() lab3:uplink("h1", {}) end)
      lab3:uplink("s1", { ip = "10.0.0.1/24" })
      raises("bad argument 'switch' to 'uplink' (lab " .. lab3.name .. " already has an uplink)",
        function() lab3:uplink("s1", {}) end)
      raises("uplink: address 10.0.0.1 is also on h1", function() lab3:validate() end)
    end)
  end)

  describe("the plan", function()
    it("names interfaces, assigns addresses and routes, resolves NAT", function()
      local lab = isle.lab("demo")
      local s1 = lab:switch("s1")
      local r = lab:host("r", { forward = true })
      local h1 = lab:host("h1", { hostname = "alpha", gateway = "10.0.0.254" })
      local up = lab:host("up", { routes = { { dst = "198.51.100.0/24", dev = "eth0",
        metric = 5 } } })
      lab:link(h1, s1, { ip = "10.0.0.1/24", delay = "5ms", loss = 1 })
      lab:link(r, s1, { ip = { "10.0.0.254/24", "2001:db8::fe/64" } })
      lab:link(r, up, { ip = { "192.0.2.1/24", "192.0.2.2/24" }, ifname = { "wan", nil } })
      lab:nat(r, { out = up, source = "10.0.0.0/24" })
      lab:uplink(s1, { ip = "10.0.0.200/24" })
      local p = lab:validate()
      assert.same({ "r", "h1", "up" }, lab:hosts())
      local hosts = {}
      for _, h in ipairs(p.hosts) do hosts[h.name] = h end
      assert.equal("demo-h1", hosts.h1.netns)
      assert.equal("alpha", hosts.h1.hostname)
      assert.is_true(hosts.r.forward)
      assert.same({ { name = "eth0", ips = { "10.0.0.254/24", "2001:db8::fe/64" } },
        { name = "wan", ips = { "192.0.2.1/24" } } }, hosts.r.ifaces)
      assert.same({ { dst = "default", via = "10.0.0.254", family = 4 } }, hosts.h1.routes)
      assert.same({ { dst = "198.51.100.0/24", dev = "eth0", metric = 5 } }, hosts.up.routes)
      assert.same({ name = "h1-s1", delay = "5ms", loss = 1,
        { host = "h1", netns = "demo-h1", ifname = "eth0", ips = { "10.0.0.1/24" } },
        { switch = "s1", ifname = "s1-eth1", ips = {} } }, p.links[1])
      assert.equal("s1-eth2", p.links[2][2].ifname)
      assert.same({ { host = "r", ifname = "wan", source = "10.0.0.0/24" } }, p.nats)
      assert.same({ switch = "s1", ifname = "demo-up", swifname = "s1-up",
        ips = { "10.0.0.200/24" } }, p.uplink)
      assert.equal(3, p.switches[1].ports)
      assert.same({ "10.0.0.254\tr", "2001:db8::fe\tr", "192.0.2.1\tr", "10.0.0.1\th1 alpha",
        "192.0.2.2\tup" }, p.etc_hosts)
      assert.equal("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        .. table.concat(p.etc_hosts, "\n") .. "\n", build.hosts_text(p, hosts.h1))
      -- a host without addresses still resolves its own name
      local l2 = isle.lab("x")
      l2:host("lonely", { hostname = "solo" })
      local p2 = l2:validate()
      assert.matches("\n127.0.1.1\tsolo\n", build.hosts_text(p2, p2.hosts[1]))
    end)

    it("keeps generated names unique and reports clashes with given names", function()
      local lab = newlab()
      local s1, h1 = lab:switch("s1"), lab:host("h1")
      lab:link(h1, s1, { ifname = { nil, "s1-eth2" } })
      lab:link(lab:host("h2"), s1)
      raises("link h2-s1: interface name s1-eth2 is taken by link h1-s1",
        function() lab:validate() end)
      local lab2 = newlab()
      local sw = lab2:switch("sw12345678")
      for i = 1, 10 do lab2:link(lab2:host("h" .. i), sw) end
      raises("generated port name sw12345678-eth10 is longer than 15 bytes",
        function() lab2:validate() end)
      local lab3 = newlab()
      local a, b = lab3:host("a"), lab3:host("b")
      lab3:link(a, b, { ifname = { "eth1" } })
      lab3:link(a, lab3:host("c"))
      raises("link a-c: host a already has an interface eth1", function() lab3:validate() end)
    end)

    it("draws the declaration as DOT", function()
      local dot = small(function(l, _, s1) l:link(l:host("h2"), s1,
        { ip = "10.0.0.2/24", delay = "5ms" }) end):graph()
      assert.matches('^graph "unit%d+" {', dot)
      -- the switch ranked above the host, the interface names at the ends
      -- (a port without its switch's name), the addresses on the host
      assert.matches('"s1" %-%- "h1" %[taillabel = "eth1", headlabel = "eth0"', dot)
      assert.matches('"h1" [shape = box, label = "h1\\n10.0.0.1/24"];', dot, 1, true)
      assert.matches('{ rank = max; "h1"; "h2"; }', dot, 1, true)
      assert.matches('label = "delay 5ms"', dot, 1, true)
    end)
  end)
end)
