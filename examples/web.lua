-- examples/web.lua: a web server as a service; another host fetches its
-- page by name.
--
--   srv 10.0.0.1 (busybox httpd on :80, serving /srv/www) -- s1 -- c1 10.0.0.2
--
-- The page is one of srv's `files`: /srv/www does not exist on the
-- machine, so srv gets it in an overlay of /srv of its own (the machine's
-- /srv is never written).
--
--   isle up examples/web.lua                  (lab name: $ISLE_LAB or web)
--   isle exec web c1 -- busybox wget -qO- http://srv/
--   isle logs web srv httpd
local isle = require "isle"

local lab = isle.lab(os.getenv("ISLE_LAB") or "web")
local s1 = lab:switch("s1")
local srv = lab:host("srv", { files = { ["/srv/www/index.html"] = "hello from srv\n" } })
local c1 = lab:host("c1")
lab:link(srv, s1, { ip = "10.0.0.1/24" })
lab:link(c1, s1, { ip = "10.0.0.2/24" })
-- -f: in the foreground; -vv: a log line per request
lab:service(srv, "httpd", { argv = { "busybox", "httpd", "-f", "-vv", "-p", "80", "-h",
  "/srv/www" }, ready = { port = 80 }, restart = "on-failure" })
return lab
