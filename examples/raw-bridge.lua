#!/usr/bin/env lua5.4
--- The docker0 picture with isle.netns and isle.net only: two "containers"
-- (named netns) on a bridge with a gateway address in a "host" namespace,
-- default routes through it, and NAT to a simulated upstream namespace on
-- TEST-NET addresses. Nothing touches the machine's own namespace; all is
-- removed at the end (also on failure).
local isle = require "isle"
local netns, net = isle.netns, isle.net

local tag = arg and arg[1] or tostring(io.open("/proc/self/stat"):read("n"))
local names = { host = "rb" .. tag .. "-host", up = "rb" .. tag .. "-up",
  c1 = "rb" .. tag .. "-c1", c2 = "rb" .. tag .. "-c2" }
local handles = {}

local function cleanup()
  for _, h in ipairs(handles) do h:close() end
  for _, n in pairs(names) do netns.del(n) end
end

local function open(name)
  local ns = assert(netns.add(name))
  local n = assert(net.open(ns))
  handles[#handles + 1] = n
  handles[#handles + 1] = ns
  assert(n:link_set("lo", { up = true }))
  return n, ns
end

local ok, err = pcall(function()
  local host = open(names.host)            -- plays the docker host
  local up, upns = open(names.up)          -- the "internet"
  assert(host:sysctl("ipv4.ip_forward", 1))
  assert(host:link_add { name = "docker0", kind = "bridge", up = true })
  assert(host:addr_add("docker0", "172.17.0.1/16"))
  for i, c in ipairs { names.c1, names.c2 } do
    local cn, cns = open(c)
    assert(host:link_add { name = "veth" .. i, kind = "veth", master = "docker0", up = true,
      peer = { name = "eth0", netns = cns } })
    assert(cn:link_set("eth0", { up = true }))
    assert(cn:addr_add("eth0", "172.17.0." .. (i + 1) .. "/16"))
    assert(cn:route_add { dst = "default", via = "172.17.0.1" })
  end
  assert(host:link_add { name = "eth0", kind = "veth", up = true,
    peer = { name = "eth0", netns = upns } })
  assert(up:link_set("eth0", { up = true }))
  assert(host:addr_add("eth0", "198.51.100.1/24"))
  assert(up:addr_add("eth0", "198.51.100.2/24"))
  assert(up:addr_add("lo", "203.0.113.1/32"))
  assert(host:route_add { dst = "default", via = "198.51.100.2" })
  assert(host:nat("eth0", { source = "172.17.0.0/16" }))
  print("built: " .. table.concat({ names.c1, names.c2, names.host, names.up }, " "))
  -- traffic: container to container, and out through NAT
  assert(os.execute("ip netns exec " .. names.c1 .. " ping -c1 -W2 172.17.0.3 >/dev/null"),
    "c1 -> c2")
  assert(os.execute("ip netns exec " .. names.c1 .. " ping -c1 -W2 203.0.113.1 >/dev/null"),
    "c1 -> upstream")
  print("ping c1 -> c2 and c1 -> 203.0.113.1 (NAT): ok")
end)
cleanup()
if not ok then
  io.stderr:write("raw-bridge: ", tostring(err), "\n")
  os.exit(1)
end
