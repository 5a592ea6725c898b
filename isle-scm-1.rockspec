-- LuaRocks: `luarocks --lua-version=5.4 make` (or `make install`) from the
-- checkout builds isle.core with the Makefile (the same flags as `make`,
-- including -fvisibility=hidden, which the builtin build type cannot pass)
-- and installs lua/isle/*.lua as isle.*, build/isle/core.so and core_nl.so as
-- isle.core and isle.core_nl, and
-- bin/isle as the `isle` command.
rockspec_format = "3.0"
package = "isle"
version = "scm-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "Linux namespaces, scriptable from Lua",
  detailed = [[
isle is a Lua 5.4 library with a C core (isle.core) for Linux namespaces:
spawn processes in new namespaces, join them, map ids, shift clocks, mount,
and build network topologies from veths and bridges over netlink.]],
  license = "MIT",
  labels = { "linux", "namespaces", "containers" },
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.4",
}
external_dependencies = {
  NL3 = { header = "libnl3/netlink/netlink.h", library = "nl-3" },
  NLROUTE3 = { library = "nl-route-3" },
  NFTABLES = { header = "nftables/libnftables.h", library = "nftables" },
}
build = {
  type = "make",
  build_target = "all",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA = "lua5.4",
  },
  install_target = "rock-install",
  install_variables = {
    INST_LUADIR = "$(LUADIR)",
    INST_LIBDIR = "$(LIBDIR)",
  },
  install = {
    bin = { isle = "bin/isle" },
  },
}
