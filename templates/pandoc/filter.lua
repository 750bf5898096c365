-- What pandoc's LaTeX writer does not do by itself for the report:
--   @fig:x / @tbl:x / @sec:x / @eq:x become cleveref links;
--   a citation written in the text (@key, not [@key]) is numbered like the others: the numeric
--   bibliography style has no author names for natbib's \citet;
--   $$...$$ {#eq:x} becomes a numbered equation with that label;
--   the student's image paths (relative to report/) point at their copies in build/tex;
--   long identifiers and paths may break after _ / . (TeX would let them stick out of the margin);
--   captions and image paths are recorded for the build (the checklist and the image checks).
local prefixes = { fig = true, tbl = true, sec = true, eq = true }
local records_file = os.getenv("GENREPORT_RECORDS")
local image_dir = os.getenv("GENREPORT_IMAGE_DIR") or "content"
local LONG = 20  -- shorter words fit a line anyway

local function record(kind, text)
  if records_file and text ~= "" then
    local handle = io.open(records_file, "a")
    handle:write(kind .. "\t" .. text:gsub("[\t\n]", " ") .. "\n")
    handle:close()
  end
end

-- Pandoc reads "@fig:x [@paper]" as one citation group of both keys: a group is split into runs of
-- cross-references (\Cref) and runs of works cited (natbib's \cite, numbered), in the order written.
function Cite(element)
  local out, refs, works = {}, {}, {}
  local function flush()
    if #refs > 0 then
      if #out > 0 then table.insert(out, pandoc.Space()) end
      table.insert(out, pandoc.RawInline("latex", "\\Cref{" .. table.concat(refs, ",") .. "}"))
      refs = {}
    end
    if #works > 0 then
      if #out > 0 then table.insert(out, pandoc.Space()) end
      table.insert(out, pandoc.Cite({}, works))
      works = {}
    end
  end
  for _, citation in ipairs(element.citations) do
    local prefix = citation.id:match("^(%a+):")
    if prefix and prefixes[prefix] then
      if #works > 0 then flush() end
      table.insert(refs, citation.id)
    else
      if #refs > 0 then flush() end
      if citation.mode == "AuthorInText" then
        citation.mode = "NormalCitation"
      end
      table.insert(works, citation)
    end
  end
  flush()
  if #out == 1 and out[1].t == "Cite" then
    element.citations = out[1].citations  -- a plain group keeps its own text, as pandoc read it
    return element
  end
  return out
end

-- A caption as the checklist compares it with the PDF's text: maths, citations and references print
-- differently from their source (a symbol, "[3]", "Figure 2"), so each is kept as a $...$ gap between the
-- words the PDF does show as typed.
local function caption_text(caption)
  local gaps = {
    Math = function(math) return pandoc.Str("$" .. math.text .. "$") end,
    RawInline = function() return pandoc.Str("$$") end,
    Cite = function() return pandoc.Str("$$") end,
  }
  return pandoc.utils.stringify(pandoc.Div(caption.long):walk(gaps))
end

function Figure(element)
  record("figure", caption_text(element.caption))
end

-- A table is set as a longtable, which may break after any row: a break right after its first rows or
-- before its last ones leaves a row or two on a page of their own under a repeated header. A row that ends
-- in \\* cannot be broken after, so a break leaves at least KEPT rows on either side, and a table of fewer
-- than 2 * KEPT rows is never broken (TeX moves it to the next page whole). Tables pandoc writes otherwise (no
-- \endlastfoot, a cell with a line break) are left as they are.
local KEPT = 3

function Table(element)
  record("table", caption_text(element.caption))
  if not FORMAT:match("latex") then
    return nil
  end
  -- the conversion's own options: natbib citations, the same column arithmetic
  local latex = pandoc.write(pandoc.Pandoc({ element }), "latex", PANDOC_WRITER_OPTIONS)
  local head, body, tail = latex:match("^(.-\\endlastfoot\n)(.-)(\\end{longtable}%s*)$")
  if not body then
    return nil
  end
  local rows = {}
  for row in body:gmatch(".-\\\\\n") do
    table.insert(rows, row)
  end
  if table.concat(rows) ~= body then
    return nil
  end
  for i = 1, #rows - 1 do
    if i < KEPT or i > #rows - KEPT then
      rows[i] = rows[i]:gsub("\\\\\n$", "\\\\*\n")
    end
  end
  return pandoc.RawBlock("latex", head .. table.concat(rows) .. tail)
end

function Image(element)
  record("image", element.src)
  if not element.src:match("^figures/") then
    element.src = image_dir .. "/" .. element.src:gsub("^%./", "")
    return element
  end
end

-- A display formula followed by {#eq:label} (pandoc reads the label as text after the formula).
local function is_gap(inline)
  return inline and (inline.t == "Space" or inline.t == "SoftBreak")
end

function Inlines(inlines)
  local out = pandoc.Inlines({})
  local i = 1
  while i <= #inlines do
    local inline = inlines[i]
    local j = i + 1
    while is_gap(inlines[j]) do
      j = j + 1
    end
    local label = inline.t == "Math" and inline.mathtype == "DisplayMath" and inlines[j] and inlines[j].t == "Str"
      and inlines[j].text:match("^{#(eq:[%w:._-]+)}$")
    if label then
      out:insert(pandoc.RawInline("latex", "\\begin{equation}" .. inline.text .. "\\label{" .. label .. "}\\end{equation}"))
      i = j + 1
    else
      out:insert(inline)
      i = i + 1
    end
  end
  return out
end

-- Pieces of a long word, each ending after a _ / or . that is followed by more of the word.
local function pieces(text)
  local parts, start = {}, 1
  for position in text:gmatch("()[_/.]") do
    if position < #text and position - start >= 3 then
      table.insert(parts, text:sub(start, position))
      start = position + 1
    end
  end
  table.insert(parts, text:sub(start))
  return parts
end

local function breakable(text, make)
  if #text < LONG or text:match("://") then
    return nil
  end
  local parts = pieces(text)
  if #parts == 1 then
    return nil
  end
  local out = {}
  for index, part in ipairs(parts) do
    if index > 1 then
      table.insert(out, pandoc.RawInline("latex", "\\allowbreak{}"))
    end
    table.insert(out, make(part))
  end
  return out
end

function Str(element)
  return breakable(element.text, pandoc.Str)
end

function Code(element)
  return breakable(element.text, function(part) return pandoc.Code(part, element.attr) end)
end

-- The bare-address autolinks the reader makes (a typed URL must stay a link) also turn "Recall@5" or "n@k"
-- into a mailto link in code type: an address without a dot after its @ is text as typed.
function Link(element)
  if element.target:match("^mailto:") and not element.target:match("@[^@]+%.[^@.]+$") then
    return element.content
  end
end

return {
  { Inlines = Inlines, Link = Link },  -- equations first: their labels are Str elements the rest must not split
  { Str = Str, Code = Code, Cite = Cite, Figure = Figure, Table = Table, Image = Image },
}
