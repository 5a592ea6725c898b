--- `isle graph FILE|NAME`: a lab as Graphviz DOT (or SVG).
-- @module isle.cli.graph

-- The path of an executable `name` in PATH, or nil.
local function which(name)
  for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
    local p = dir .. "/" .. name
    local f = io.open(p, "r")
    if f then
      f:close()
      return p
    end
  end
end

return {
  summary = "a lab as Graphviz DOT (--svg: SVG through dot)",
  usage = [[isle graph [--svg] [-o FILE] FILE.lua|NAME [ARGS...]

Prints the topology as Graphviz DOT for `dot`: switches (blue) and
routers (yellow) ranked above the hosts, the interface names at the link
ends, the addresses on the nodes, a link's impairments as its label; for
a running lab also its state: a link that is down dashed, one that is
cut red. The argument is a topology script (not built; ARGS are passed
to it) or the name of a lab that is up.

Options:
  --svg       render SVG with Graphviz's `dot` (package graphviz)
  -o FILE     write to FILE instead of standard output]],
  run = function(args, cli)
    local opts, pos = cli.getopt(args, { svg = "flag", o = "string" })
    local what = pos[1]
    if not what then
      cli.usage_error("missing FILE.lua or NAME")
    end
    local lab = require("isle").lab
    local dot
    local f = io.open(what, "r")
    if f or what:find("/", 1, true) or what:match("%.lua$") then
      if f then f:close() end
      local l, err = lab.load(what, table.unpack(pos, 2))
      if not l then
        return nil, err
      end
      dot = l:graph()
    else
      local l, err = lab.open(what)
      if not l then
        return nil, err
      end
      dot = l:graph()
    end
    if opts.svg then
      local bin = which("dot")
      if not bin then
        return nil, "graph --svg needs Graphviz's dot in PATH (apt-get install graphviz)"
      end
      local tmp = os.tmpname()
      local tf = assert(io.open(tmp, "w"))
      tf:write(dot)
      tf:close()
      local p = io.popen(string.format("'%s' -Tsvg < '%s'", bin, tmp), "r")
      dot = p:read("a")
      local ok = p:close()
      os.remove(tmp)
      if not ok then
        return nil, "graph: dot -Tsvg failed"
      end
    end
    if opts.o then
      local out, err = io.open(opts.o, "w")
      if not out then
        return nil, err
      end
      out:write(dot)
      out:close()
    else
      cli.stdout:write(dot)
    end
  end,
}
