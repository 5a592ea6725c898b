-- examples/ospf.lua: five FRR routers in a ring running OSPF, a LAN with h1
-- behind r1 and r3, h2 behind r4.
--
--            h1 10.1.0.10 (LAN s1: r1 .1, r3 .3)
--          r1 ---- r2 ---- r3            ring: /30 point-to-point links
--           |                |            10.0.AB.0/30 between rA and rB
--          r5 -------------- r4 ---- h2 10.2.0.10
--
-- Each router runs zebra and ospfd (FRR, `make deps` installs it) as
-- services, configured through `files` in its own /etc/frr; short timers
-- (hello 1 s, dead 4 s, SPF and LSA throttling off) make it converge in
-- about two seconds. h1 reaches h2 over r1-r5-r4 (cost 30); take r1's link
-- to r5 down and the traffic goes round the other way (r1-r2-r3-r4).
--
--   isle up examples/ospf.lua                  (lab name: $ISLE_LAB or ospf)
--   isle exec ospf r1 -- vtysh -c 'show ip ospf neighbor'
--   isle exec ospf h1 -- traceroute -n h2
--   isle exec ospf r1 -- ip link set to-r5 down
--   isle ps ospf; isle logs ospf r1 ospfd
local isle = require "isle"

local lab = isle.lab(os.getenv("ISLE_LAB") or "ospf")
local FRR = "/usr/lib/frr/"

local ring = { { 1, 2 }, { 2, 3 }, { 3, 4 }, { 4, 5 }, { 1, 5 } }
local lan = { [1] = "10.1.0.1/24", [3] = "10.1.0.3/24", [4] = "10.2.0.1/24" }

-- ospfd.conf of router n: its ring interfaces point-to-point with short
-- timers, its LAN passive (advertised, no adjacency on it).
local function ospfd_conf(n)
  local t = { "frr defaults traditional", "hostname r" .. n, "!" }
  for _, p in ipairs(ring) do
    local peer = p[1] == n and p[2] or p[2] == n and p[1]
    if peer then
      t[#t + 1] = "interface to-r" .. peer
      t[#t + 1] = " ip ospf area 0\n ip ospf network point-to-point"
      t[#t + 1] = " ip ospf hello-interval 1\n ip ospf dead-interval 4\nexit\n!"
    end
  end
  if lan[n] then
    t[#t + 1] = "interface lan\n ip ospf area 0\n ip ospf passive\nexit\n!"
  end
  t[#t + 1] = "router ospf\n ospf router-id 10.255.0." .. n
  -- FRR's defaults hold SPF and LSAs back for seconds: converge at once
  t[#t + 1] = " timers throttle spf 0 50 500\n timers throttle lsa all 0"
  t[#t + 1] = " timers lsa min-arrival 0\nexit\n!"
  return table.concat(t, "\n") .. "\n"
end

local r = {}
for n = 1, 5 do
  r[n] = lab:host("r" .. n, { forward = true, files = {
    ["/etc/frr/zebra.conf"] = ("frr defaults traditional\nhostname r%d\nip forwarding\n"
      .. "no ipv6 forwarding\n"):format(n),
    ["/etc/frr/ospfd.conf"] = ospfd_conf(n),
  } })
  -- in the foreground, logging to the service log; each switches itself to
  -- the user frr and keeps the capabilities it needs
  lab:service(r[n], "zebra", { argv = { FRR .. "zebra", "-A", "127.0.0.1", "-f",
    "/etc/frr/zebra.conf", "--log", "stdout" }, ready = { file = "/run/frr/zserv.api" } })
  lab:service(r[n], "ospfd", { argv = { FRR .. "ospfd", "-A", "127.0.0.1", "-f",
    "/etc/frr/ospfd.conf", "--log", "stdout" }, after = { "zebra" },
    ready = { file = "/run/frr/ospfd.vty" } })
end
for _, p in ipairs(ring) do
  local a, b = p[1], p[2]
  lab:link(r[a], r[b], { ip = { ("10.0.%d%d.1/30"):format(a, b), ("10.0.%d%d.2/30"):format(a, b) },
    ifname = { "to-r" .. b, "to-r" .. a } })
end
local s1 = lab:switch("s1")
local h1 = lab:host("h1", { gateway = "10.1.0.1" })
lab:link(h1, s1, { ip = "10.1.0.10/24" })
lab:link(r[1], s1, { ip = lan[1], ifname = "lan" })
lab:link(r[3], s1, { ip = lan[3], ifname = "lan" })
local h2 = lab:host("h2", { gateway = "10.2.0.1" })
lab:link(r[4], h2, { ip = { lan[4], "10.2.0.10/24" }, ifname = { "lan", "eth0" } })
return lab
