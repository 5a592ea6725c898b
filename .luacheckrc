-- luacheck configuration (Debian's lua-check): `make lint`.
std = "lua54"
max_line_length = 100
codes = true
exclude_files = { "build/**", "build-asan/**", "doc/**" }

-- busted globals for the specs and their helpers
-- (no line length limit there: test names and expected messages read best
-- unbroken)
files["spec/**/*.lua"] = { std = "+busted", max_line_length = false }
-- the busted output handler runs inside busted, not under it
files["spec/summary_handler.lua"] = { std = "lua54" }
-- config.ld is LDoc's, evaluated with its own globals
files["config.ld"] = { std = "+ldoc" }
stds.ldoc = {
  globals = { "project", "title", "description", "file", "dir", "format", "readme",
    "style", "template", "sort", "no_space_before_args", "merge", "boilerplate",
    "full_description", "examples", "topics", "all", "custom_see_handler" },
}
