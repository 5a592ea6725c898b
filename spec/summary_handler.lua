-- busted output handler for `make test` (busted -o spec/summary_handler.lua).
--
-- Prints one line per test as it ends ("ok", "FAIL", "ERR", "skip", with the
-- file, line and full name), then every failure and error in full, then the
-- pending reasons, and finally, as the very last line, the summary that CI
-- reads:
--
--   N passed, N failed, N skipped
--
-- "failed" counts busted's failures and errors (a spec file that does not
-- load, a raising before_each, ...); "skipped" counts pending tests.
local pretty = require "pl.pretty"

local io_write, io_flush, format = io.write, io.flush, string.format

return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.base")()

  local function where(t)
    local trace = t and (t.element and t.element.trace or t.trace)
    if trace and trace.short_src then
      return format("%s:%s", trace.short_src, tostring(trace.currentline))
    end
    return "?"
  end

  local function message(m)
    if type(m) == "string" then
      return m
    elseif m == nil then
      return "(no message)"
    end
    return pretty.write(m)
  end

  local function indent(s)
    return "    " .. tostring(s):gsub("\n", "\n    ")
  end

  local tag = { success = "ok  ", failure = "FAIL", error = "ERR ", pending = "skip" }

  handler.testEnd = function(element, _, status)
    local trace = element.trace or {}
    io_write(format("%s %s:%s %s%s\n", tag[status] or status, trace.short_src or "?",
      tostring(trace.currentline or "?"), handler.getFullName(element),
      element.duration and format(" (%.0f ms)", element.duration * 1000) or ""))
    io_flush()
    return nil, true
  end

  -- errors outside an `it` (a file that does not load, a describe that raises)
  handler.fileError = function(element, _, msg)
    io_write(format("ERR  %s: %s\n", handler.getFullName(element), message(msg):match("[^\n]*")))
    io_flush()
    return nil, true
  end

  handler.suiteEnd = function()
    local function section(title, list, with_message)
      if #list == 0 then
        return
      end
      io_write(format("\n%s (%d):\n", title, #list))
      for _, f in ipairs(list) do
        io_write(format("\n  %s\n  %s\n", f.name, where(f)))
        if with_message then
          io_write(indent(message(f.message)), "\n")
          if options.verbose and f.trace and f.trace.traceback then
            io_write(indent(f.trace.traceback), "\n")
          end
        elseif f.message then
          io_write(indent(message(f.message)), "\n")
        end
      end
    end
    section("Skipped", handler.pendings, false)
    section("Failures", handler.failures, true)
    section("Errors", handler.errors, true)

    local failed = handler.failuresCount + handler.errorsCount
    io_write(format("\n%d passed, %d failed, %d skipped\n", handler.successesCount, failed,
      handler.pendingsCount))
    io_flush()
    return nil, true
  end

  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  busted.subscribe({ "error", "file" }, handler.fileError)
  busted.subscribe({ "failure", "file" }, handler.fileError)
  busted.subscribe({ "error", "describe" }, handler.fileError)
  busted.subscribe({ "failure", "describe" }, handler.fileError)

  return handler
end
