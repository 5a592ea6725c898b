-- isle.net with iproute2 (`ip -j -n NAME ...`) and traffic as witnesses.
local H = require "spec.helper"
local netns = require "isle.netns"
local net = require "isle.net"
local E = H.E

-- Named namespaces made for one test; removed in finally.
local function lab()
  local made, handles = {}, {}
  local L = {}
  function L.ns(prefix)
    local name = H.unique(prefix or "isle-n")
    local ns = assert(netns.add(name))
    made[#made + 1] = name
    local n = assert(net.open(ns))
    handles[#handles + 1] = n
    handles[#handles + 1] = ns
    assert(n:link_set("lo", { up = true }))
    return name, n, ns
  end
  function L.cleanup()
    for _, h in ipairs(handles) do h:close() end
    for _, name in ipairs(made) do netns.del(name) end
  end
  return L
end

local function iplink(ns, dev)
  local t = H.ipj("-n " .. ns .. " link show dev " .. dev)
  return t and t[1]
end

local function run(ns, cmd)
  return os.execute("ip netns exec " .. ns .. " " .. cmd .. " >/dev/null 2>&1")
end

local function ping(ns, addr, extra)
  return run(ns, "ping -c1 -W2 " .. (extra or "") .. " " .. addr)
end

-- A veth between two namespaces, both ends up and addressed: end a_if
-- (a_ip) made through handle na, its peer b_if (b_ip) born in namespace nsb
-- (handle nb).
local function veth(na, a_if, a_ip, nb, nsb, b_if, b_ip)
  assert(na:link_add { name = a_if, kind = "veth", up = true, peer = { name = b_if, netns = nsb } })
  assert(nb:link_set(b_if, { up = true }))
  assert(na:addr_add(a_if, a_ip))
  assert(nb:addr_add(b_if, b_ip))
end

describe("isle.net #root", function()
  local before, self_id, L
  lazy_setup(function()
    collectgarbage()
    before = H.census()
  end)
  before_each(function()
    self_id = H.nsid("self", "net")
    L = lab()
  end)
  after_each(function()
    L.cleanup()
    assert.equal(self_id, H.nsid("self", "net"))
  end)

  describe("open()", function()
    it("makes a socket inside the target namespace, leaving the caller's alone", function()
      local name, n, ns = L.ns()
      assert.equal(ns.id, n:nsid())
      local by_name = assert(net.open(name))
      local by_path = assert(net.open("/run/netns/" .. name))
      assert.equal(ns.id, by_name:nsid())
      assert.equal(ns.id, by_path:nsid())
      local mine = assert(net.open())
      assert.equal(self_id, mine:nsid())
      by_name:close(); by_path:close(); mine:close()
      assert.has_error(function() mine:links() end, "attempt to use a closed isle.Net")
    end)

    it("fails with ENOENT for a missing namespace", function()
      local ok, msg, e = net.open("isle-missing-" .. H.mypid())
      assert.is_nil(ok)
      assert.matches("^net open /run/netns/isle%-missing%-%d+: No such file or directory", msg)
      assert.equal(E.ENOENT, e)
    end)

    it("raises for a target of the wrong type", function()
      assert.has_error(function() net.open({}) end, "bad argument 'target' to 'open' (netns "
        .. "target expected (Netns, Namespace, Process, name, path or pid), got table)")
      assert.has_error(function() net.open("..") end,
        "bad argument 'target' to 'open' (name must not be '.' or '..')")
    end)
  end)

  describe("link_add()", function()
    it("creates a veth whose peer is born in another namespace", function()
      local a, na = L.ns()
      local b, nb, nsb = L.ns()
      assert(na:link_add { name = "va", kind = "veth", up = true, mtu = 1400,
        peer = { name = "eth0", netns = nsb } })
      local va = iplink(a, "va")
      assert.equal(1400, va.mtu)
      local eth0 = iplink(b, "eth0")
      assert.truthy(eth0)
      assert.is_nil(iplink(a, "eth0"))
      local l = assert(na:link("va"))
      assert.equal("veth", l.kind)
      assert.equal(va.ifindex, l.index)
      assert.equal(va.address, l.address)
      assert.equal(eth0.ifindex, l.peer)
      assert.is_true(l.up)
      assert(nb:link_set("eth0", { up = true }))
      assert.truthy(nb:link("eth0").up)
    end)

    it("returns nil, msg, EEXIST naming the link for a duplicate", function()
      local _, na = L.ns()
      assert(na:link_add { name = "veth0", kind = "veth", peer = { name = "veth1" } })
      local ok, msg, e = na:link_add { name = "veth0", kind = "veth", peer = { name = "veth2" } }
      assert.is_nil(ok)
      assert.equal("link_add veth0: File exists", msg)
      assert.equal(E.EEXIST, e)
    end)

    it("leaves no host end when the peer cannot be made", function()
      local a, na = L.ns()
      local _, nb, nsb = L.ns()
      assert(nb:link_add { name = "eth0", kind = "veth" })
      local ok, _, e = na:link_add { name = "vx", kind = "veth", peer = { name = "eth0", netns = nsb } }
      assert.is_nil(ok)
      assert.equal(E.EEXIST, e)
      assert.is_nil(iplink(a, "vx"))
      local ok2, msg2, e2 = na:link_add { name = "vy", kind = "veth",
        peer = { name = "p", netns = "isle-missing-" .. H.mypid() } }
      assert.is_nil(ok2)
      assert.matches("^link_add vy: peer", msg2)
      assert.equal(E.ENOENT, e2)
      assert.is_nil(iplink(a, "vy"))
    end)

    it("creates a bridge with stp (and vlan_filtering where the kernel has it)", function()
      local a, na = L.ns()
      assert(na:link_add { name = "br0", kind = "bridge", stp = true, up = true })
      local d = H.ipj("-d -n " .. a .. " link show dev br0")[1]
      assert.equal("bridge", d.linkinfo.info_kind)
      assert.equal(1, d.linkinfo.info_data.stp_state)
      local ok, msg, e = na:link_add { name = "br1", kind = "bridge", vlan_filtering = true }
      if not ok and e == E.EOPNOTSUPP then
        pending("kernel without CONFIG_BRIDGE_VLAN_FILTERING: " .. msg)
        return
      end
      assert(ok, msg)
      d = H.ipj("-d -n " .. a .. " link show dev br1")[1]
      assert.equal(1, d.linkinfo.info_data.vlan_filtering)
    end)

    it("creates macvlan and vxlan links (dummy and vlan where available)", function()
      local a, na = L.ns()
      assert(na:link_add { name = "v0", kind = "veth" })
      assert(na:link_add { name = "mv0", kind = "macvlan", mode = "bridge", link = "v0" })
      assert.equal("macvlan", na:link("mv0").kind)
      assert(na:link_add { name = "vx0", kind = "vxlan", vni = 42, remote = "192.0.2.9",
        dstport = 4789, learning = false })
      local d = H.ipj("-d -n " .. a .. " link show dev vx0")[1]
      assert.equal(42, d.linkinfo.info_data.id)
      assert.equal("192.0.2.9", d.linkinfo.info_data.remote)
      local missing = {}
      local module = { dummy = "dummy", vlan = "8021q (vlan)" }
      for _, l in ipairs { { name = "d0", kind = "dummy" },
        { name = "v0.5", kind = "vlan", id = 5, link = "v0" } } do
        local ok, _, e = na:link_add(l)
        if ok then
          assert.equal(l.kind, na:link(l.name).kind)
        else
          assert.equal(E.EOPNOTSUPP, e) -- the kernel lacks the driver
          missing[#missing + 1] = module[l.kind]
        end
      end
      if #missing > 0 then
        pending("kernel without the modules " .. table.concat(missing, ", "))
      end
    end)

    it("raises for bad input before any syscall", function()
      local _, na = L.ns()
      assert.has_error(function() na:link_add { name = "0123456789abcdef", kind = "veth" } end,
        "bad argument (name '0123456789abcdef': interface name longer than 15 bytes)")
      assert.has_error(function() na:link_add { name = "ok", kind = "tun" } end,
        "bad argument (field 'kind': invalid option 'tun')")
      assert.has_error(function() na:link_add { name = "ok", kind = "veth", colour = 1 } end,
        "bad argument 'spec' to 'link_add' (unknown option 'colour')")
      assert.has_error(function() na:link_add { name = "ok", kind = "bridge", address = "zz" } end,
        "bad argument (field 'address': malformed MAC address 'zz')")
      assert.has_error(function()
        na:link_add { name = "ok", kind = "veth", peer = { name = "0123456789abcdef" } }
      end, "bad argument (name '0123456789abcdef': interface name longer than 15 bytes)")
      assert.is_nil(na:link("ok"))
    end)
  end)

  describe("link_set()", function()
    it("changes up, mtu, address, name, master and namespace as ip sees them", function()
      local a, na = L.ns()
      local b, _, nsb = L.ns()
      assert(na:link_add { name = "br0", kind = "bridge", up = true })
      assert(na:link_add { name = "v1", kind = "veth", peer = { name = "v2" } })
      assert(na:link_set("v1", { up = true, mtu = 1300, address = "02:00:00:00:00:09",
        master = "br0" }))
      local v1 = iplink(a, "v1")
      assert.equal(1300, v1.mtu)
      assert.equal("02:00:00:00:00:09", v1.address)
      assert.equal("br0", v1.master)
      assert.truthy(table.concat(v1.flags, ","):find("UP"))
      assert.equal("br0", na:link("v1").master)
      assert(na:link_set("v1", { master = false, name = "v1new" }))
      assert.is_nil(iplink(a, "v1"))
      assert.is_nil(iplink(a, "v1new").master)
      assert.truthy(table.concat(iplink(a, "v1new").flags, ","):find("UP"))
      assert(na:link_set("v2", { netns = nsb }))
      assert.is_nil(iplink(a, "v2"))
      assert.truthy(iplink(b, "v2"))
    end)

    it("renames a link that is up, and a failed request renames nothing", function()
      -- Linux < 6.2 refuses to rename a link that is up: link_set downs it
      -- for the rename and brings it up again, on every path.
      local a, na = L.ns()
      assert(na:link_add { name = "v1", kind = "veth", up = true, peer = { name = "v2" } })
      local function up(dev)
        return table.concat(iplink(a, dev).flags, ","):find("UP") ~= nil
      end
      assert(na:link_set("v1", { name = "w1", mtu = 1400 }))
      assert.is_nil(iplink(a, "v1"))
      assert.equal(1400, iplink(a, "w1").mtu)
      assert.is_true(up("w1"))
      -- the name is taken: nothing changes
      local ok, msg, e = na:link_set("w1", { name = "v2", mtu = 1300 })
      assert.is_nil(ok)
      assert.equal("link_set w1: name v2: File exists", msg)
      assert.equal(E.EEXIST, e)
      assert.equal(1400, iplink(a, "w1").mtu)
      assert.is_true(up("w1"))
      -- the rest fails (no veth takes an MTU of 1 MB): the rename is undone
      ok, msg, e = na:link_set("w1", { name = "x1", mtu = 1000000 })
      assert.is_nil(ok)
      assert.matches("^link_set w1: Invalid argument", msg)
      assert.equal(E.EINVAL, e)
      assert.is_nil(iplink(a, "x1"))
      assert.equal(1400, iplink(a, "w1").mtu)
      assert.is_true(up("w1"))
      -- down and renamed in one request
      assert(na:link_set("w1", { name = "y1", up = false }))
      assert.is_false(up("y1"))
      assert.is_false(na:link("y1").up)
    end)

    it("fails clearly for a missing link or namespace", function()
      local a, na = L.ns()
      local ok, msg, e = na:link_set("nope", { up = true })
      assert.is_nil(ok)
      assert.matches("^link_set nope: No such device", msg)
      assert.equal(E.ENODEV, e)
      assert(na:link_add { name = "v1", kind = "veth" })
      ok, msg, e = na:link_set("v1", { netns = "isle-missing-" .. H.mypid() })
      assert.is_nil(ok)
      assert.matches("^link_set v1: netns", msg)
      assert.equal(E.ENOENT, e)
      assert.truthy(iplink(a, "v1"))
    end)
  end)

  describe("link_del() and links()", function()
    it("deletes links and lists what ip lists", function()
      local a, na = L.ns()
      assert(na:link_add { name = "v1", kind = "veth", peer = { name = "v2" } })
      local names = {}
      for _, l in ipairs(assert(na:links())) do names[l.name] = l end
      for _, l in ipairs(H.ipj("-n " .. a .. " link show")) do
        assert.truthy(names[l.ifname])
        assert.equal(l.ifindex, names[l.ifname].index)
        assert.equal(l.mtu, names[l.ifname].mtu)
        assert.equal(l.operstate, names[l.ifname].operstate)
      end
      assert.equal(names.v2.index, names.v1.peer)
      assert.is_true(na:link_del("v1"))
      assert.is_nil(iplink(a, "v2"))
      local ok, msg, e = na:link_del("v1")
      assert.is_nil(ok)
      assert.equal("link_del v1: No such device", msg)
      assert.equal(E.ENODEV, e)
    end)
  end)

  describe("addresses and routes", function()
    it("adds and removes IPv4 and IPv6 addresses as ip sees them", function()
      local a, na = L.ns()
      assert(na:link_add { name = "v1", kind = "veth", up = true })
      assert(na:addr_add("v1", "10.9.0.1/24"))
      assert(na:addr_add("v1", "2001:db8::1/64", { nodad = true }))
      local got = {}
      for _, x in ipairs(H.ipj("-n " .. a .. " addr show dev v1")[1].addr_info) do
        got[string.format("%s/%d", x["local"], x.prefixlen)] = true
      end
      assert.is_true(got["10.9.0.1/24"])
      assert.is_true(got["2001:db8::1/64"])
      local mine = {}
      for _, x in ipairs(assert(na:addrs("v1"))) do mine[x.cidr] = x end
      assert.equal("inet", mine["10.9.0.1/24"].family)
      assert.equal("inet6", mine["2001:db8::1/64"].family)
      local ok, msg, e = na:addr_add("v1", "10.9.0.1/24")
      assert.is_nil(ok)
      assert.matches("^addr_add v1 10%.9%.0%.1/24: File exists", msg)
      assert.equal(E.EEXIST, e)
      assert(na:addr_del("v1", "10.9.0.1/24"))
      assert(na:addr_del("v1", "2001:db8::1/64"))
      local rest = H.ipj("-n " .. a .. " -4 addr show dev v1") or {}
      assert.equal(0, rest[1] and #rest[1].addr_info or 0)
      assert.has_error(function() na:addr_add("v1", "10.9.0.300/24") end,
        "bad argument #2 to 'addr_add' (malformed address '10.9.0.300/24')")
      assert.has_error(function() na:addr_add("v1", "10.9.0.1/33") end,
        "bad argument #2 to 'addr_add' (malformed address '10.9.0.1/33')")
      assert.has_error(function() na:addr_add("v1", "nonsense") end,
        "bad argument #2 to 'addr_add' (malformed address 'nonsense')")
    end)

    it("adds routes (default, via, dev, metric, table) in both families", function()
      local a, na = L.ns()
      assert(na:link_add { name = "v1", kind = "veth", up = true, peer = { name = "v2" } })
      assert(na:link_set("v2", { up = true }))
      assert(na:addr_add("v1", "10.9.0.1/24"))
      assert(na:addr_add("v1", "2001:db8::1/64", { nodad = true }))
      assert(na:route_add { dst = "default", via = "10.9.0.2" })
      assert(na:route_add { dst = "198.51.100.0/24", dev = "v1", metric = 50 })
      assert(na:route_add { dst = "203.0.113.0/24", via = "10.9.0.2", table = 1000 })
      assert(na:route_add { dst = "default", via = "2001:db8::2" })
      local r4 = H.ipj("-n " .. a .. " -4 route show")
      local seen = {}
      for _, r in ipairs(r4) do seen[r.dst] = r end
      assert.equal("10.9.0.2", seen.default.gateway)
      assert.equal(50, seen["198.51.100.0/24"].metric)
      assert.equal("10.9.0.2", H.ipj("-n " .. a .. " route show table 1000")[1].gateway)
      assert.equal("2001:db8::2", H.ipj("-n " .. a .. " -6 route show default")[1].gateway)
      local mine = {}
      for _, r in ipairs(assert(na:routes())) do mine[r.family .. " " .. r.dst] = r end
      assert.equal("10.9.0.2", mine["inet default"].via)
      assert.equal("v1", mine["inet 198.51.100.0/24"].dev)
      assert.equal("2001:db8::2", mine["inet6 default"].via)
      local ok, msg, e = na:route_add { dst = "default", via = "10.9.0.2" }
      assert.is_nil(ok)
      assert.equal("route_add default: File exists", msg)
      assert.equal(E.EEXIST, e)
      assert(na:route_del { dst = "198.51.100.0/24", dev = "v1", metric = 50 })
      assert.equal(0, #(H.ipj("-n " .. a .. " route show 198.51.100.0/24") or {}))
      assert.has_error(function() na:route_add { dst = "default" } end,
        "bad argument (route needs 'via' or 'dev')")
      assert.has_error(function() na:route_add { dst = "10.0.0.0/24", via = "2001:db8::2" } end,
        "bad argument (field 'via': address family differs from dst)")
    end)
  end)

  describe("traffic", function()
    it("pings across a veth pair", function()
      local a, na = L.ns()
      local _, nb, nsb = L.ns()
      veth(na, "va", "10.9.0.1/24", nb, nsb, "vb", "10.9.0.2/24")
      assert(na:addr_add("va", "2001:db8::1/64", { nodad = true }))
      assert(nb:addr_add("vb", "2001:db8::2/64", { nodad = true }))
      assert.is_true(ping(a, "10.9.0.2"))
      assert.is_true(ping(a, "2001:db8::2", "-6"))
    end)

    it("pings across a bridge living in a third namespace", function()
      local s, ns_ = L.ns("isle-s")
      assert(ns_:link_add { name = "br0", kind = "bridge", up = true })
      local hosts = {}
      for i = 1, 2 do
        local h, nh, nsh = L.ns("isle-h")
        assert(ns_:link_add { name = "p" .. i, kind = "veth", master = "br0", up = true,
          peer = { name = "eth0", netns = nsh } })
        assert(nh:link_set("eth0", { up = true }))
        assert(nh:addr_add("eth0", "10.9.1." .. i .. "/24"))
        hosts[i] = h
      end
      assert.equal("br0", iplink(s, "p1").master)
      assert.is_true(ping(hosts[1], "10.9.1.2"))
    end)

    it("pings through a router namespace between two subnets", function()
      local r, nr, nsr = L.ns("isle-r")
      assert(nr:sysctl("ipv4.ip_forward", 1))
      local h1, n1 = L.ns("isle-h")
      local _, n2 = L.ns("isle-h")
      veth(n1, "eth0", "10.1.0.2/24", nr, nsr, "r1", "10.1.0.1/24")
      veth(n2, "eth0", "10.2.0.2/24", nr, nsr, "r2", "10.2.0.1/24")
      assert(n1:route_add { dst = "default", via = "10.1.0.1" })
      assert(n2:route_add { dst = "default", via = "10.2.0.1" })
      assert.is_true(ping(h1, "10.2.0.2"))
      assert.equal("1", (H.sh("ip netns exec " .. r .. " cat /proc/sys/net/ipv4/ip_forward"):gsub("%s", "")))
    end)

    for _, backend in ipairs { "libnftables", "nft -f -" } do
      it("NATs to a simulated internet whose listener sees the router's address (" .. backend .. ")", function()
        local Net = require("isle.net").Net
        if backend == "nft -f -" then
          -- as where libnftables cannot be loaded: nat's commands go to nft
          local nft = Net.nft
          Net.nft = Net._nft_cli
          finally(function() Net.nft = nft end)
        end
        local lua_ok = pcall(require, "socket")
        if not lua_ok then
          pending("lua-socket not installed (UDP listener)")
          return
        end
        local r, nr, nsr = L.ns("isle-r")
        local h, nh = L.ns("isle-h")
        local i, ni, nsi = L.ns("isle-i")
        assert(nr:sysctl("ipv4.ip_forward", 1))
        veth(nh, "eth0", "10.1.0.2/24", nr, nsr, "lan", "10.1.0.1/24")
        veth(nr, "wan", "198.51.100.1/24", ni, nsi, "eth0", "198.51.100.2/24")
        assert(ni:addr_add("lo", "203.0.113.1/32"))
        assert(nh:route_add { dst = "default", via = "10.1.0.1" })
        assert(nr:route_add { dst = "203.0.113.0/24", via = "198.51.100.2" })
        assert(nr:nat("wan", { source = "10.1.0.0/24" }))
        local rules = H.sh("ip netns exec " .. r .. " nft list table inet isle")
        assert.matches('oifname "wan" ip saddr 10.1.0.0/24 masquerade', rules)
        -- the machine's own namespace has no isle table
        assert.equal("", H.sh("nft list table inet isle 2>/dev/null"))
        local listener = io.popen("ip netns exec " .. i .. [[ lua5.4 -e '
          local s = require("socket").udp()
          assert(s:setsockname("203.0.113.1", 9999)); s:settimeout(5)
          local _, ip = s:receivefrom(); print(ip)']])
        os.execute("sleep 0.3")
        run(h, [[lua5.4 -e '
          local s = require("socket").udp()
          for _ = 1, 10 do s:sendto("hi", "203.0.113.1", 9999); require("socket").sleep(0.1) end']])
        local src = listener:read("l")
        listener:close()
        assert.equal("198.51.100.1", src)
        assert.is_true(nr:nat("wan", nil))
        assert.equal("", H.sh("ip netns exec " .. r .. " nft list table inet isle 2>/dev/null"))
        assert.is_true(nr:nat("wan", nil))
      end)
    end

    it("raises for netem and NAT values the kernel cannot take, before any syscall", function()
      local _, na = L.ns()
      assert.has_error(function() na:netem("lo", { delay = 0 / 0 }) end, "bad argument "
        .. "'opts.delay' to 'netem' (time '" .. tostring(0 / 0) .. "' out of range [0, 274.878 s] "
        .. "(netem's 32-bit tick count))")
      assert.has_error(function() na:netem("lo", { jitter = "275s" }) end, "bad argument "
        .. "'opts.jitter' to 'netem' (time '275s' out of range [0, 274.878 s] (netem's 32-bit "
        .. "tick count))")
      assert.has_error(function() na:netem("lo", { delay = "1e9s" }) end, "bad argument "
        .. "'opts.delay' to 'netem' (malformed time '1e9s' (e.g. \"10ms\", \"500us\", \"1s\"))")
      assert.has_error(function() na:netem("lo", { rate = "40gbit" }) end, "bad argument "
        .. "'opts.rate' to 'netem' (rate '40gbit' out of range [8 bit/s, 4294967295 bytes/s] "
        .. "(netem's 32-bit rate))")
      assert.has_error(function() na:netem("lo", { loss = 0 / 0 }) end, "bad argument "
        .. "'opts.loss' to 'netem' (percentage in [0, 100] expected, got " .. tostring(0 / 0) .. ")")
      assert.has_error(function() na:netem("lo", { limit = 2 ^ 31 }) end, "bad argument "
        .. "'opts.limit' to 'netem' (integer in [1, 2147483647] expected, got 2147483648.0)")
      assert.has_error(function() na:nat("lo", { source = "10.0.0.1/24" }) end, "bad argument "
        .. "'opts.source' to 'nat' ('10.0.0.1/24' has host bits set (the network is 10.0.0.0/24))")
      assert.has_error(function() na:nat('a"b', {}) end, "bad argument 'ifname' to 'nat' "
        .. "(interface name with a quote or backslash: 'a\"b')")
      -- the C layer itself refuses NaN (it used to cast it to an int)
      assert.has_error(function() na:_netem("lo", { loss = 0 / 0 }) end,
        "bad argument (field 'loss': out of range)")
    end)

    it("shows netem delay in the ping RTT", function()
      local a, na = L.ns()
      local _, nb, nsb = L.ns()
      veth(na, "va", "10.9.0.1/24", nb, nsb, "vb", "10.9.0.2/24")
      local ok, msg, e = na:netem("va", { delay = "40ms", loss = 0, rate = "100mbit" })
      if not ok and e == E.ENOENT and msg:find("unknown", 1, true) then
        pending("kernel without sch_netem: " .. msg)
        return
      end
      assert(ok, msg)
      local out = H.sh("ip netns exec " .. a .. " ping -c2 -i0.2 10.9.0.2")
      local avg = tonumber(out:match("= [%d.]+/([%d.]+)/"))
      assert.is_true(avg >= 40)
      assert(na:netem("va", nil))
      assert.is_true(na:netem("va", nil))
    end)
  end)

  describe("qdiscs without netem: tbf(), qdisc_clear(), qdisc_probe(), qdiscs()", function()
    local function tc(ns, dev)
      return H.json.decode((H.sh("ip netns exec " .. ns .. " tc -j qdisc show dev " .. dev)))[1]
    end

    it("probes a qdisc kind with a message that changes nothing", function()
      local a, na = L.ns()
      assert.is_true(na:qdisc_probe("tbf")) -- built into this kernel and Debian's
      local netem = na:qdisc_probe("netem")
      assert.is_boolean(netem)
      local modules = H.readfile("/proc/modules")
      if not modules then -- no modules: the probe says what /proc/config.gz says
        local cfg = H.sh("zcat /proc/config.gz 2>/dev/null | grep '^CONFIG_NET_SCH_NETEM='")
        assert.equal(cfg ~= "", netem)
      end
      assert.equal("noqueue", tc(a, "lo").kind) -- lo kept its default
      assert.has_error(function() na:qdisc_probe("fq_codel") end)
    end)

    it("shapes a link with tbf (its bucket, queue, rate64), changes it in place, clears any "
      .. "root qdisc", function()
      local a, na = L.ns()
      local _, nb, nsb = L.ns()
      veth(na, "va", "10.9.0.1/24", nb, nsb, "vb", "10.9.0.2/24")
      assert.is_true(na:tbf("va", { rate = "8mbit" }))
      local q = tc(a, "va")
      assert.equal("tbf", q.kind)
      assert.equal(1000000, q.options.rate)
      assert.equal(4000, q.options.burst) -- rate / 250
      local handle = q.handle
      assert.is_true(na:tbf("va", { rate = "100mbit" })) -- changed, not replaced
      q = tc(a, "va")
      assert.equal(handle, q.handle)
      assert.equal(12500000, q.options.rate)
      assert.equal(50000, q.options.burst)
      -- a low rate still passes a full frame (the bucket is one frame at least)
      assert.is_true(na:tbf("va", { rate = "2kbit" }))
      assert.equal(1518, tc(a, "va").options.burst)
      -- above 2^31-1 bytes/s: TCA_TBF_RATE64
      assert.is_true(na:tbf("va", { rate = "20gbit", burst = 20000000, limit = 30000000 }))
      assert.equal(2500000000, tc(a, "va").options.rate)
      local list = assert(na:qdiscs())
      assert.equal(1, #list)
      assert.equal("tbf", list[1].kind)
      assert.equal(iplink(a, "va").ifindex, list[1].index)
      assert.is_true(na:qdisc_clear("va"))
      assert.equal("noqueue", tc(a, "va").kind)
      assert.is_false(na:qdisc_clear("va")) -- nothing there
      assert.is_true(na:tbf("va", { rate = "1mbit" }))
      assert.is_true(na:tbf("va", nil))
      assert.equal("noqueue", tc(a, "va").kind)
      local ok, msg, e = na:tbf("nope0", { rate = "1mbit" })
      assert.is_nil(ok)
      assert.equal("tbf nope0: No such device", msg)
      assert.equal(E.ENODEV, e)
      ok, msg, e = na:qdisc_clear("nope0")
      assert.is_nil(ok)
      assert.equal("qdisc_clear nope0: No such device", msg)
      assert.equal(E.ENODEV, e)
      assert.has_error(function() na:tbf("va", { rate = "fast" }) end, "bad argument 'opts.rate' "
        .. "to 'tbf' (malformed rate 'fast' (e.g. \"10mbit\", \"1gbit\", \"125kbps\"))")
      assert.has_error(function() na:tbf("va", { burst = 10 }) end,
        "bad argument 'opts.rate' to 'tbf' (a rate expected)")
      assert.has_error(function() na:tbf("va", { rate = "1mbit", burst = 0 }) end,
        "bad argument 'opts.burst' to 'tbf' (integer in [1, 2147483647] expected, got 0)")
    end)
  end)

  describe("icmp_socket() and core.ping()", function()
    it("pings many targets from inside several namespaces at once", function()
      local a, na = L.ns()
      local _, nb, nsb = L.ns()
      veth(na, "va", "10.9.0.1/24", nb, nsb, "vb", "10.9.0.2/24")
      assert(na:addr_add("va", "fd00:9::1/64", { nodad = true }))
      assert(nb:addr_add("vb", "fd00:9::2/64", { nodad = true }))
      -- until the kernel's link watch has seen both carriers (up to a second
      -- later under load), a veth drops what is sent on it: poll the state
      local sys = require "isle._sys"
      for _ = 1, 500 do
        if na:link("va").operstate == "UP" and nb:link("vb").operstate == "UP" then break end
        sys.sleep(0.01)
      end
      assert.equal("UP", na:link("va").operstate)
      assert.equal("UP", nb:link("vb").operstate)
      local s4 = assert(na:icmp_socket("inet"))
      local s6 = assert(na:icmp_socket("inet6"))
      local r4 = assert(nb:icmp_socket())
      local core = require "isle.core"
      local res = core.ping({ { fd = s4:fd(), dst = "10.9.0.2" }, { fd = s6:fd(), dst = "fd00:9::2" },
        { fd = r4:fd(), dst = "10.9.0.1" }, { fd = s4:fd(), dst = "10.9.0.77" } },
        -- a link just up may lose IPv6's first neighbour solicitation: the
        -- next one goes a second later
        { count = 2, timeout = 1.5, interval = 0.01 })
      for i = 1, 3 do
        assert.equal(2, res[i].sent)
        assert.equal(2, res[i].received, "probe " .. i)
        assert.is_true(res[i].rtt_ms > 0 and res[i].rtt_ms < 1500)
      end
      assert.equal(0, res[4].received) -- no one there
      assert.is_nil(res[4].rtt_ms)
      s4:close(); s6:close(); r4:close()
      assert.has_error(function() core.ping({ { fd = 0, dst = "nowhere" } }) end,
        "bad argument #1 to 'ping' (probes[1].dst: address expected)")
      local _ = a
    end)
  end)

  describe("sysctl()", function()
    it("reads and writes inside the namespace and leaves the machine's value alone", function()
      local a, na = L.ns()
      local host = H.readfile("/proc/sys/net/ipv4/ip_forward")
      local want = host:find("1") and "0" or "1"
      assert.is_true(na:sysctl("ipv4.ip_forward", want))
      assert.equal(want, na:sysctl("ipv4.ip_forward"))
      assert.equal(want, (H.sh("ip netns exec " .. a .. " cat /proc/sys/net/ipv4/ip_forward"):gsub("%s", "")))
      assert.equal(host, H.readfile("/proc/sys/net/ipv4/ip_forward"))
      assert.is_true(na:sysctl("ipv6/conf/all/forwarding", true))
      local ok, msg, e = na:sysctl("ipv4.nope")
      assert.is_nil(ok)
      assert.equal("sysctl ipv4.nope: No such file or directory", msg)
      assert.equal(E.ENOENT, e)
      assert.has_error(function() na:sysctl("../../etc/passwd") end,
        "bad argument 'key' to 'sysctl' (malformed key '../../etc/passwd')")
      assert.has_error(function() na:sysctl("ipv4..x") end,
        "bad argument 'key' to 'sysctl' (malformed key 'ipv4..x')")
    end)
  end)

  it("leaves nothing behind", function()
    collectgarbage()
    H.assert_clean(before)
  end)
end)
