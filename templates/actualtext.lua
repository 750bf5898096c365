-- LuaLaTeX only (genreport/latex/engines.py): a word that \genreportactualtext wraps carries its typed characters
-- as one /ActualText span, and its nodes carry the attribute below. luaotfload's HarfBuzz mode also spans
-- clusters inside it (as page literals that inherit the glyph's attributes), and PDF readers (poppler,
-- PDFium) do not nest spans: the inner one would end the word's. So before each page is shipped out, the
-- spans luaotfload placed inside our words are taken out again.
local direct = node.direct
local whatsit, hlist, vlist = node.id("whatsit"), node.id("hlist"), node.id("vlist")
local literal = node.subtype("pdf_literal")
local PAGE = 1  -- luaotfload's literals; ours are direct ones
local spanned = luatexbase.new_attribute("genreport_actualtext")

local function theirs(n)
  if direct.getsubtype(n) ~= literal or direct.getfield(n, "mode") ~= PAGE or not direct.has_attribute(n, spanned) then
    return false
  end
  local data = direct.getfield(n, "data")
  return data == "EMC" or data:sub(1, 18) == "/Span<</ActualText"
end

local function unspan(head)
  local n = head
  while n do
    local following, id = direct.getnext(n), direct.getid(n)
    if id == whatsit and theirs(n) then
      head = direct.remove(head, n)
      direct.flush_node(n)
    elseif id == hlist or id == vlist then
      direct.setlist(n, unspan(direct.getlist(n)))
    end
    n = following
  end
  return head
end

luatexbase.add_to_callback("pre_shipout_filter", function(head)
  return direct.tonode(unspan(direct.todirect(head)))
end, "genreport.actualtext")
token.set_macro("genreportactualtextattribute", tostring(spanned))
