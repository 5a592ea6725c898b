-- isle.lab.model (no root, no system call): the model file's text is the
-- plan, one record a line (strings with newlines included), and what
-- `apply` reads of it: the running lab's plan, sharing with the declared
-- plan exactly the objects that are equal, and their lines.
local isle = require "isle"
local model = require "isle.lab.model"
local same = require("isle.lab.same").same

local function plan_of(n, edit)
  local lab = isle.lab("m")
  local s1 = lab:switch("s1")
  for i = 1, n do
    local h = lab:host("h" .. i, edit and edit(i) or nil)
    lab:link(h, s1, { ip = "10.0.0." .. i .. "/24" })
  end
  local p = lab:validate()
  p.backend = "tbf+nft"
  return p
end

local function read(text)
  return load("return " .. text, "=model", "t", {})()
end

describe("isle.lab.model", function()
  it("writes the plan as a Lua literal, one record a line, keys sorted", function()
    local p = plan_of(3)
    p.hosts[2].files = { { path = "/etc/motd", text = "two\nlines \"quoted\" \\ \r\0 é\n",
      mode = 420 } }
    local text = model.text(p)
    assert.is_true(same(read(text), p))
    assert.are.equal(text, model.text(read(text)))
    local lines = {}
    for l in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    assert.are.equal("{", lines[1])
    assert.are.equal("}", lines[#lines])
    local hosts = 0
    for _, l in ipairs(lines) do
      if l:match('^{.*name="h%d"') and l:match("netns=") then hosts = hosts + 1 end
    end
    assert.are.equal(3, hosts) -- one line each, the one with a two-line file too
    assert.is_nil(text:find("\\\n", 1, true))
  end)

  it("serializes like a Lua literal: sequences, sorted keys, numbers, odd keys", function()
    local v = { "a", 2, 2.5, true, { x = 1 }, [10] = "ten", ["not ident"] = 1, _k = "v" }
    local text = table.concat(model.serialize(v, {}))
    assert.are.equal('{"a",2,2.5,true,{x=1,},[10]="ten",_k="v",["not ident"]=1,}', text)
    assert.is_true(same(read(text), v))
  end)

  it("reads a running lab sharing the declared objects that are equal", function()
    local text = model.text(plan_of(4))
    local sp = assert(model.split(text))
    assert.are.equal(4, #sp.lists.hosts)
    assert.are.equal(4, #sp.lists.links)
    -- the declaration: one host more, host h2 changed
    local p1 = plan_of(5, function(i) return i == 2 and { forward = true } or nil end)
    local p0, shared = model.assemble(text, sp, p1)
    assert.is_true(same(p0, read(text)))
    for i = 1, 4 do
      assert.are.equal(i ~= 2, p0.hosts[i] == p1.hosts[i], "host h" .. i)
      assert.are.equal(p0.links[i], p1.links[i], "link " .. i) -- the links are the same
    end
    assert.is_nil(shared[p1.hosts[2]])
    assert.is_nil(shared[p1.hosts[5]])
    assert.are.equal(sp.lists.hosts[1], shared[p1.hosts[1]])
    -- the new model: the lines kept, the others made
    assert.are.equal(model.text(p1), model.text(p1, shared))
    assert.are.equal("tbf+nft", model.value(sp, "backend"))
  end)

  it("picks the objects whose line holds every needle, without reading the rest", function()
    local p = plan_of(12)
    local text = model.text(p)
    -- h1's link, not h10's, h11's, h12's: the needle is a whole quoted value
    local ls = model.pick(text, "links", { '="h1"', '="s1"' })
    assert.are.equal(1, #ls)
    assert.is_true(same(p.links[1], ls[1]))
    assert.are.same({}, model.pick(text, "links", { '="h1"', '="h2"' }))
    assert.are.equal(12, #model.pick(text, "links", { '="s1"' }))
    local hs = model.pick(text, "hosts", { "name=" .. model.quote("h12") })
    assert.are.equal(1, #hs)
    assert.is_true(same(p.hosts[12], hs[1]))
    assert.are.same({}, model.pick(text, "nats", { '="h1"' }))
    assert.are.equal("tbf+nft", model.pick_value(text, "backend"))
    assert.are.equal("m", model.pick_value(text, "name"))
    assert.is_nil(model.pick_value(text, "uplink"))
    -- a model of an older isle: nil (read it whole)
    assert.is_nil(model.pick('{name="m",links={},}', "links", { '="h1"' }))
    assert.is_nil(model.pick(nil, "links", { '="h1"' }))
  end)

  it("leaves the models of an older isle (one line) to be read whole", function()
    assert.is_nil(model.split('{name="m",hosts={},}'))
    assert.is_nil(model.split(nil))
    assert.is_nil(model.split("{\nname=\"m\",\nwhat is this\n}\n"))
  end)
end)
