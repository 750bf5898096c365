-- The report's LaTeX (build/tex/report.tex, read by pandoc) made fit for another format, with the numbers
-- the PDF shows. The numbers come from LaTeX's own .aux (labels and citations), handed over as JSON by
-- genreport/export/convert.py in GENREPORT_EXPORT: so "Figure 3" here is Figure 3 in report.pdf.
--   citations become numbered links to the References list, compressed as natbib prints them ([2, 3], [23-25]);
--   \Cref / \cref / \ref become "Figure 3", "Sections 2 and 4", "3";
--   numbered headings, figure and table captions carry their numbers; labelled equations their tag;
--   the title page becomes a title block; image paths point at the copies the export writes (PDF -> PNG).
local config = pandoc.json.decode(io.open(os.getenv("GENREPORT_EXPORT")):read("a"), false)
local target = config.target  -- "gfm" or "docx"
local records = io.open(os.getenv("GENREPORT_EXPORT_RECORDS"), "w")

-- JSON numbers arrive as floats (2.0); the PDF prints 2.
local function text_of(value)
  return math.type(value) == "float" and value == math.floor(value) and string.format("%d", value) or tostring(value)
end

local function number_of(label)
  local number = config.labels[label]
  if number == nil then
    error("the PDF has no number for the label " .. label .. " (build/tex/report.aux); rebuild with `python build.py`")
  end
  return number
end

-- Citations: [n] links, sorted; runs of three or more as n-m (natbib's sort&compress).
local function citation_links(keys)
  local numbered = {}
  for _, key in ipairs(keys) do
    local number = config.citations[key]
    if number == nil then
      error("the PDF has no number for the citation " .. key .. " (build/tex/report.aux)")
    end
    table.insert(numbered, { number = number, key = key })
  end
  table.sort(numbered, function(a, b) return a.number < b.number end)
  local function link(entry)
    return pandoc.Link(text_of(entry.number), "#ref-" .. entry.key)
  end
  local out = pandoc.Inlines({ pandoc.Str("[") })
  local i = 1
  while i <= #numbered do
    local j = i
    while j < #numbered and numbered[j + 1].number == numbered[j].number + 1 do
      j = j + 1
    end
    if #out > 1 then
      out:insert(pandoc.Str(", "))
    end
    if j - i >= 2 then
      out:insert(link(numbered[i]))
      out:insert(pandoc.Str("–"))
      out:insert(link(numbered[j]))
      i = j + 1
    else
      out:insert(link(numbered[i]))
      i = i + 1
    end
  end
  out:insert(pandoc.Str("]"))
  return out
end

function Cite(element)
  local keys = {}
  for _, citation in ipairs(element.citations) do
    table.insert(keys, citation.id)
  end
  return citation_links(keys)
end

-- cleveref's names (capitalise, noabbrev) by LaTeX counter.
local NAMES = {
  figure = { "Figure", "Figures" }, table = { "Table", "Tables" }, equation = { "Equation", "Equations" },
  section = { "Section", "Sections" }, subsection = { "Section", "Sections" }, subsubsection = { "Section", "Sections" },
}

local function shown_number(label)
  if config.kinds[label] == "equation" then
    return "(" .. number_of(label) .. ")"
  end
  return number_of(label)
end

local function cross_reference(labels, kind)
  local out = pandoc.Inlines({})
  if kind ~= "ref" then
    local names = NAMES[config.kinds[labels[1]]] or { "", "" }
    local name = #labels > 1 and names[2] or names[1]
    if kind == "ref+label" then
      name = name:lower()
    end
    if name ~= "" then
      out:insert(pandoc.Str(name))
      out:insert(pandoc.Space())
    end
  end
  for index, label in ipairs(labels) do
    if index > 1 then
      out:insert(pandoc.Str(index == #labels and " and " or ", "))
    end
    out:insert(pandoc.Link(shown_number(label), "#" .. label))
  end
  return out
end

function Link(element)
  local kind = element.attributes["reference-type"]
  if kind == nil then
    return nil
  end
  local labels = {}
  for label in element.attributes["reference"]:gmatch("[^,%s]+") do
    table.insert(labels, label)
  end
  return cross_reference(labels, kind)
end

-- Images: the export writes each one under config.image_dir, PDF pages as PNG (GitHub and Word show no PDF).
local function exported_path(src)
  local path = src:gsub("^%./", "")
  if path:lower():match("%.pdf$") then
    path = path:sub(1, -5) .. ".png"
  end
  return config.image_dir .. "/" .. path
end

function Image(element)
  local exported = exported_path(element.src)
  records:write(element.src .. "\t" .. exported .. "\n")
  records:flush()
  element.src = exported
  if target == "gfm" then
    element.attributes = {}  -- GitHub drops style widths; the PNG's own size is what it shows
  end
  return element
end

local function anchor(id)
  return pandoc.Span({}, { id = id })
end

local function prefixed(caption_blocks, prefix)
  local inlines = pandoc.utils.blocks_to_inlines(caption_blocks)
  local out = pandoc.Inlines({ pandoc.Strong(prefix), pandoc.Space() })
  out:extend(inlines)
  return out
end

function Figure(element)
  local number = number_of(element.identifier)
  local caption = prefixed(element.caption.long, "Figure " .. number .. ":")
  if target == "gfm" then
    local blocks = pandoc.Blocks({})
    local images = pandoc.Inlines({ anchor(element.identifier) })
    local alt = pandoc.utils.stringify(element.caption.long)
    element.content:walk({ Image = function(image)
      image.caption = { pandoc.Str(alt) }
      images:insert(image)
    end })
    blocks:insert(pandoc.Para(images))
    blocks:insert(pandoc.Para(caption))
    return blocks
  end
  element.caption.long = { pandoc.Plain(caption) }
  return element
end

-- Table cells lose pandoc's minipage wrappers and, for GitHub, their paragraphs, so that GitHub gets a
-- pipe table where one fits.
function Table(element)
  return element:walk({
    Div = function(div) if div.classes:includes("minipage") then return div.content end end,
    Para = function(para) if target == "gfm" then return pandoc.Plain(para.content) end end,
  })
end

-- The title page: "Experiment N: title" and the student's lines, from the build's manifest; the page's
-- other paragraphs (the note on how the report was made) are kept.
local function title_block(page)
  local title = config.title_block
  local blocks = pandoc.Blocks({})
  local heading = "Experiment " .. text_of(title.experiment_number) .. ": " .. title.title
  if target == "gfm" then
    blocks:insert(pandoc.Header(1, heading, { id = "title", class = "unnumbered title" }))
  end
  local lines = pandoc.Inlines({})
  for _, field in ipairs(config.title_fields) do
    if #lines > 0 then
      lines:insert(pandoc.LineBreak())
    end
    lines:insert(pandoc.Strong(field[1] .. ":"))
    lines:insert(pandoc.Space())
    lines:insert(pandoc.Str(text_of(title[field[2]])))
  end
  blocks:insert(pandoc.Para(lines))
  for _, block in ipairs(page.content) do
    if block.t == "Para" and not (#block.content == 1 and block.content[1].t == "Strong") then
      blocks:insert(block)
    end
  end
  return blocks
end

-- Tables sit in a Div that carries their label; the caption becomes a numbered line above the table.
function Div(element)
  if element.classes:includes("titlepage") then
    return title_block(element)
  end
  local label = element.identifier
  if not label:match("^tbl:") or #element.content ~= 1 or element.content[1].t ~= "Table" then
    return nil
  end
  local table_element = element.content[1]
  local caption = prefixed(table_element.caption.long, "Table " .. number_of(label) .. ":")
  if target == "gfm" then
    table_element.caption.long = {}
    return pandoc.Blocks({ pandoc.Para(pandoc.Inlines({ anchor(label) }) .. caption), table_element })
  end
  table_element.caption.long = { pandoc.Plain(caption) }
  return element
end

-- Headings carry LaTeX's numbers (1, 4.3); under GitHub's title they move one level down.
local counters = {}
function Header(element)
  if not element.classes:includes("unnumbered") then
    counters[element.level] = (counters[element.level] or 0) + 1
    for deeper = element.level + 1, 9 do
      counters[deeper] = nil
    end
    local parts = {}
    for level = 1, element.level do
      table.insert(parts, tostring(counters[level] or 0))
    end
    local number = table.concat(parts, ".")
    if element.identifier ~= "" and config.labels[element.identifier] and config.labels[element.identifier] ~= number then
      error("heading " .. pandoc.utils.stringify(element) .. " is numbered " .. number .. " here but "
        .. config.labels[element.identifier] .. " in the PDF")
    end
    element.content = pandoc.Inlines({ pandoc.Str(number), pandoc.Space() }) .. element.content
  end
  if target == "gfm" and element.identifier ~= "title" then
    element.level = element.level + 1
    if config.labels[element.identifier] then  -- a label the text refers to; GitHub makes its own anchors for the rest
      element.content = pandoc.Inlines({ anchor(element.identifier) }) .. element.content
    end
  end
  return element
end

-- \begin{equation} ... \label{eq:x} \end{equation}: the label becomes the PDF's number.
local equation_labels = {}  -- the equation's text as written out -> its label
function Math(element)
  if element.mathtype ~= "DisplayMath" then
    return nil
  end
  local text = element.text:gsub("^%s*\\begin{equation%*?}", ""):gsub("\\end{equation%*?}%s*$", "")
  local label = text:match("\\label{([^}]*)}")
  if label then
    local number = number_of(label)
    text = text:gsub("\\label{[^}]*}", target == "gfm" and ("\\tag{" .. number .. "}") or ("\\qquad(" .. number .. ")"))
    equation_labels[text] = label
  end
  element.text = text
  return element
end

-- GitHub: a labelled equation's anchor goes in a paragraph of its own before it; on the line of the
-- ```math fence it would turn the fence into HTML.
function Para(element)
  if target ~= "gfm" then
    return nil
  end
  local anchors = pandoc.Blocks({})
  for _, inline in ipairs(element.content) do
    if inline.t == "Math" and equation_labels[inline.text] then
      anchors:insert(pandoc.Plain({ anchor(equation_labels[inline.text]) }))
    end
  end
  if #anchors == 0 then
    return nil
  end
  anchors:insert(element)
  return anchors
end

-- A task list item (☐ or ☒ first, see genreport/export/source.py) in a tight list, as pandoc writes - [ ] for it.
function BulletList(element)
  for _, item in ipairs(element.content) do
    local first = item[1]
    if first and first.t == "Para" and first.content[1] and first.content[1].t == "Str"
        and (first.content[1].text == "☐" or first.content[1].text == "☒") then
      local content = first.content
      if content[2] and content[2].t == "SoftBreak" then
        content[2] = pandoc.Space()  -- the item's text began on the next line of the LaTeX
      end
      item[1] = pandoc.Plain(content)
    end
  end
  return element
end

-- \label{ref-key} in the References list: an anchor, without pandoc's echo of the label.
function Span(element)
  if element.attributes["label"] then
    element.attributes["label"] = nil
    return element
  end
end

-- \texttt{genreport{-}manifest.json} arrives as three pieces of code; GitHub would show three.
function Inlines(inlines)
  local out = pandoc.Inlines({})
  for _, inline in ipairs(inlines) do
    local last = out[#out]
    if inline.t == "Code" and last and last.t == "Code" then
      last.text = last.text .. inline.text
    else
      out:insert(inline)
    end
  end
  return out
end

function RawInline(element)
  if element.format == "latex" or element.format == "tex" then
    return {}
  end
end

function RawBlock(element)
  if element.format == "latex" or element.format == "tex" then
    return {}
  end
end

-- genreport/export/source.py marks where an ordered list starts elsewhere than 1, just before the list.
function Blocks(blocks)
  local out = pandoc.Blocks({})
  for index, block in ipairs(blocks) do
    local following = blocks[index + 1]
    if block.t == "Div" and block.classes:includes("genreportliststart") then
      if following and following.t == "OrderedList" then
        following.listAttributes.start = tonumber(pandoc.utils.stringify(block))
      end
    else
      out:insert(block)
    end
  end
  return out
end

return {
  { Blocks = Blocks },
  { Div = Div },  -- the title page and the labelled tables first, while their captions are whole
  { Header = Header, Math = Math, Para = Para, Cite = Cite, Link = Link, Image = Image, Figure = Figure, Table = Table,
    BulletList = BulletList, Span = Span, RawInline = RawInline, RawBlock = RawBlock },
  { Inlines = Inlines },
}
