-- examples/dhcp.lua: dnsmasq serving DHCP and DNS on a switch; two clients
-- without addresses get leases from it and resolve names it serves.
--
--   srv 10.0.0.1 (dnsmasq: leases 10.0.0.100-199, DNS for .lab) -- s1 -- c1, c2
--
-- dnsmasq (`make deps` installs dnsmasq-base: the program, no service of
-- the machine's) and busybox's udhcpc run as services; each client's
-- /etc/resolv.conf is its own (udhcpc's script writes it in place), so
-- `getent hosts web.lab` asks srv. Clients send their host names, so
-- dnsmasq serves c1.lab and c2.lab too.
--
--   isle up examples/dhcp.lua                 (lab name: $ISLE_LAB or dhcp)
--   isle exec dhcp c1 -- ip -4 addr show eth0
--   isle exec dhcp c1 -- getent hosts web.lab
--   isle exec dhcp c2 -- ping -c1 c1.lab
--   isle logs dhcp srv dnsmasq
local isle = require "isle"

local lab = isle.lab(os.getenv("ISLE_LAB") or "dhcp")
local s1 = lab:switch("s1")
local srv = lab:host("srv", { private = { "/var/lib/misc" } }) -- the lease file's directory
lab:link(srv, s1, { ip = "10.0.0.1/24" })
lab:service(srv, "dnsmasq", {
  argv = { "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null",
    "--no-resolv", "--bind-interfaces", "--interface=eth0", "--interface=lo",
    "--pid-file=/run/dnsmasq.pid", "--dhcp-leasefile=/var/lib/misc/dnsmasq.leases",
    "--dhcp-range=10.0.0.100,10.0.0.199,255.255.255.0,1h",
    "--dhcp-option=option:router,10.0.0.1", "--dhcp-option=option:dns-server,10.0.0.1",
    "--domain=lab", "--local=/lab/", "--no-ping", "--host-record=web.lab,10.0.0.80",
    "--log-queries", "--log-dhcp" },
  ready = { port = 53 } })

-- udhcpc's event script: the lease's address, default route and name
-- servers (resolv.conf written in place: it is a file of the host's own)
local SCRIPT = [[
#!/bin/sh
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	: > /etc/resolv.conf
	[ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
	for ns in $dns; do echo "nameserver $ns" >> /etc/resolv.conf; done
	;;
esac
exit 0
]]

for i = 1, 2 do
  local c = lab:host("c" .. i, { files = {
    ["/etc/resolv.conf"] = "",
    ["/run/udhcpc.script"] = { text = SCRIPT, mode = 493 },
  } })
  lab:link(c, s1)
  -- keeps asking (a DISCOVER every second) until srv answers, then renews
  lab:service(c, "udhcpc", { argv = { "busybox", "udhcpc", "-i", "eth0", "-f", "-R", "-t", "3",
    "-T", "1", "-A", "1", "-x", "hostname:c" .. i, "-s", "/run/udhcpc.script" },
    ready = { argv = { "sh", "-c", "ip -4 addr show eth0 | grep -q inet" } } })
end
return lab
