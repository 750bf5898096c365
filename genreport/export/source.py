"""What every export reads: the build's outputs in build/tex, never the Markdown or the list of sections.

build/tex/report.tex is the whole report as the template laid it out; report.aux holds the numbers LaTeX
gave to every label and citation (so an export numbers Figure 3 as the PDF does); report.bbl the
references as BibTeX formatted them; report.fls (pdfTeX's -recorder) every file the last pass read;
manifest.json the title block. An export made from these follows whatever the engine puts into the report.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from genreport import paths
from genreport.errors import BuildError

JOB = "report"  # build/tex/report.tex, the job genreport/latex/texrun.py typesets
# The title block's fields as the title page prints them: (label, key of manifest.json's title_block).
TITLE_FIELDS = (("Name", "student_name"), ("Register Number", "register_number"), ("Course", "course"), ("Date", "date"))

NEWLABEL = re.compile(r"^\\newlabel\{([^}@]+)\}\{\{([^{}]*)\}", re.MULTILINE)
CREF_KIND = re.compile(r"^\\newlabel\{([^}]+)@cref\}\{\{\[([a-z]+)\]", re.MULTILINE)
BIBCITE = re.compile(r"^\\bibcite\{([^}]+)\}\{\{?(\d+)", re.MULTILINE)
BIBITEM = re.compile(r"\\bibitem(?:\[[^\]]*\])?\{([^}]+)\}")
BEGIN_DOCUMENT = re.compile(r"^\\begin\{document\}", re.MULTILINE)  # the line itself, not a comment that names it
BIBLIOGRAPHY_COMMAND = re.compile(r"^\\bibliography\{[^}]*\}\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Numbers:
    """The numbers the PDF shows: label -> "3" or "4.2", label -> LaTeX counter, citation key -> n."""

    labels: dict[str, str]
    kinds: dict[str, str]
    citations: dict[str, int]


def tex_file(name: str, tex_dir: Path) -> Path:
    path = tex_dir / name
    if not path.is_file():
        raise BuildError(f"{name} is missing: the report has not been built", path=tex_dir,
                         hint="run `python build.py` (or `make pdf`) first")
    return path


def bibliography(tex_dir: Path) -> str:
    """report.bbl's text, or nothing for a report that cites nothing (BibTeX never ran, so there is no .bbl)."""
    if not (tex_dir / f"{JOB}.bbl").is_file() and "\\citation{" not in tex_file(f"{JOB}.aux", tex_dir).read_text(errors="replace"):
        return ""
    return tex_file(f"{JOB}.bbl", tex_dir).read_text(encoding="utf-8")


def read_numbers(tex_dir: Path = paths.TEX_DIR) -> Numbers:
    aux = tex_file(f"{JOB}.aux", tex_dir).read_text(encoding="utf-8", errors="replace")
    return Numbers(labels=dict(NEWLABEL.findall(aux)), kinds=dict(CREF_KIND.findall(aux)),
                   citations={key: int(number) for key, number in BIBCITE.findall(aux)})


def bibliography_entries(tex_dir: Path = paths.TEX_DIR) -> list[tuple[str, str]]:
    """(key, LaTeX of the entry) in the order of report.bbl, which is the order of the numbers."""
    bbl = bibliography(tex_dir)
    body = bbl.split("\\end{thebibliography}")[0]
    pieces = BIBITEM.split(body)[1:]
    return [(key, text.strip()) for key, text in zip(pieces[::2], pieces[1::2])]


def references_latex(entries: list[tuple[str, str]], numbers: Numbers) -> str:
    """The bibliography as a numbered list whose items carry the anchors ref-<key>, in LaTeX that pandoc
    reads without loss (its reader drops \\bibitem keys and the text of \\path{...}, which prints the DOIs)."""
    from pylatex.utils import escape_latex

    if not entries:  # a lab that cites nothing gets no empty References heading
        return ""
    items = []
    for position, (key, text) in enumerate(entries, start=1):
        if numbers.citations.get(key) != position:
            raise BuildError(f"reference {key} is number {numbers.citations.get(key)} in report.aux but {position} in report.bbl",
                             path=paths.TEX_DIR / f"{JOB}.bbl", hint="rebuild with `python build.py --force latex`")
        text = re.sub(r"\\path\{([^}]*)\}", lambda match: escape_latex(match.group(1)), text)
        items.append(f"\\item \\label{{ref-{key}}}{text.replace(chr(92) + 'newblock', ' ')}")
    return "\\section*{References}\n\\begin{enumerate}\n" + "\n".join(items) + "\n\\end{enumerate}\n"


def pandoc_input(tex_dir: Path = paths.TEX_DIR) -> str:
    """report.tex's body with its bibliography written out, ready for pandoc's LaTeX reader (run in tex_dir,
    so that its \\input{...} finds the diagrams and the figure provenance). The preamble stays behind:
    pandoc would expand the template's own definitions (\\pandocbounded's box arithmetic) into the text."""
    report = tex_file(f"{JOB}.tex", tex_dir).read_text(encoding="utf-8")
    begin = BEGIN_DOCUMENT.search(report)
    if begin is None:
        raise BuildError("report.tex has no \\begin{document}", path=tex_dir / f"{JOB}.tex")
    report = readable("\\documentclass{article}\n" + report[begin.start():])
    references = references_latex(bibliography_entries(tex_dir), read_numbers(tex_dir))
    if not BIBLIOGRAPHY_COMMAND.search(report):
        raise BuildError("report.tex has no \\bibliography{...} line", path=tex_dir / f"{JOB}.tex")
    return BIBLIOGRAPHY_COMMAND.sub(lambda _: references, report, count=1)  # a function's result is not escape-processed


# pandoc 3.9's LaTeX reader loses the first cell of a long table's first row after \endlastfoot, and of
# later rows when the columns are declared >{\raggedright\arraybackslash}p{...}: the repeated head and
# the foot (page furniture) are taken out, and such columns become l, r or c (alignment kept, widths left
# to the target) before it reads the table.
REPEATED_HEAD = re.compile(r"\\endfirsthead.*?\\endhead", re.DOTALL)
LAST_FOOT = re.compile(r"\\bottomrule(?:\\noalign\{\})?\s*\\endlastfoot")
ALIGNED_COLUMN = re.compile(r">\{\\(raggedright|raggedleft|centering)\\arraybackslash\}p\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}")
COLUMN_TYPE = {"raggedright": "l", "raggedleft": "r", "centering": "c"}
# filter.lua ends rows that a page must not break after with \\* (longtable's no-break row end), which the
# reader takes for a row end followed by a "*" in the next row's first cell.
UNBREAKABLE_ROW_END = re.compile(r"\\\\\*$", re.MULTILINE)


# \tightlist (list spacing, defined by the template) makes the reader take a description list for a plain block.
TIGHTLIST = re.compile(r"^\\tightlist\n", re.MULTILINE)
# Highlighted code (pandoc's Shaded/Highlighting, a Verbatim with command characters) is lost by the reader:
# it goes back to plain verbatim text, token macros removed and the escapes of pandoc's highlighter undone.
HIGHLIGHTED = re.compile(r"\\begin\{Shaded\}\s*\\begin\{Highlighting\}(?:\[[^\]]*\])?\n(.*?)\\end\{Highlighting\}\s*\\end\{Shaded\}", re.DOTALL)
HIGHLIGHT_PIECE = re.compile(r"\\[A-Za-z]+Tok\{|\\([A-Za-z]+)\{\}|\\\^\{\}|\{-\}|\\([{}_&%#$])|\}")
HIGHLIGHT_CHARACTERS = {"textbackslash": "\\", "VerbBar": "|", "textasciigrave": "`", "textquotesingle": "'", "textasciitilde": "~",
                        "textasciicircum": "^", "textgreater": ">", "textless": "<"}


def _code_piece(match: re.Match) -> str:
    piece = match.group(0)
    if piece.endswith("Tok{") or piece == "}":
        return ""
    if match.group(1):
        return HIGHLIGHT_CHARACTERS.get(match.group(1), piece)
    if match.group(2):
        return match.group(2)
    return {"\\^{}": "^", "{-}": "-"}[piece]


def plain_code(match: re.Match) -> str:
    return "\\begin{verbatim}\n" + HIGHLIGHT_PIECE.sub(_code_piece, match.group(1)) + "\\end{verbatim}"


# Task list boxes are item labels, which the reader drops; as the item's first character (pandoc's own form
# of a task list) GitHub gets - [ ] / - [x] back.
TASK_BOXES = {"\\item[$\\square$]": "\\item ☐ ", "\\item[$\\boxtimes$]": "\\item ☒ "}


# An ordered list that starts elsewhere than 1 sets its counter (\setcounter{enumi}{6}), which the reader
# ignores; it becomes a marker block before the list that filter.lua turns into the list's start.
LIST_START = re.compile(r"(\\begin\{enumerate\}\n(?:\\def\\labelenum[iv]+\{[^\n]*\}\n)?)\\setcounter\{enum[iv]+\}\{(\d+)\}\n")
LIST_START_MARKER = "genreportliststart"


def _marked_list_start(match: re.Match) -> str:
    start = int(match.group(2)) + 1
    return f"\\begin{{{LIST_START_MARKER}}}{start}\\end{{{LIST_START_MARKER}}}\n{match.group(1)}"


def readable_tables(latex: str) -> str:
    latex = UNBREAKABLE_ROW_END.sub(lambda _: "\\\\", LAST_FOOT.sub("", REPEATED_HEAD.sub(lambda _: "\\endhead", latex)))
    return ALIGNED_COLUMN.sub(lambda match: COLUMN_TYPE[match.group(1)], latex)


# The reader drops \textbar{} (a | in text and code alike), reads a control space inside \texttt as a no-break
# space and the brackets pandoc's writer groups ({[}, {]}) as separate code spans, and makes two code spans of
# the pieces filter.lua splits long inline code into at its break points.
CODE_SPAN = re.compile(r"\\texttt\{((?:[^{}\\]|\{[\[\]]\}|\\[A-Za-z]+\{\}|\\.)*)\}")
SPLIT_CODE_SPAN = re.compile(rf"{CODE_SPAN.pattern}(?:\\allowbreak\{{\}}{CODE_SPAN.pattern})+")


def _plain_code_span(match: re.Match) -> str:
    return "\\texttt{" + match.group(1).replace("\\ ", " ").replace("{[}", "[").replace("{]}", "]") + "}"


def readable_code(latex: str) -> str:
    latex = SPLIT_CODE_SPAN.sub(lambda match: "\\texttt{" + "".join(CODE_SPAN.findall(match.group(0))) + "}",
                                latex.replace("\\textbar{}", "|"))
    return CODE_SPAN.sub(_plain_code_span, latex)


def readable(latex: str) -> str:
    """What pandoc's reader mistakes, rewritten so that it reads it as the PDF shows it."""
    for box, character in TASK_BOXES.items():
        latex = latex.replace(box, character)
    return LIST_START.sub(_marked_list_start, HIGHLIGHTED.sub(plain_code, TIGHTLIST.sub("", readable_code(readable_tables(latex)))))


def title_block(tex_dir: Path = paths.TEX_DIR) -> dict:
    return json.loads(tex_file("manifest.json", tex_dir).read_text())["title_block"]


def engine(tex_dir: Path = paths.TEX_DIR) -> str:
    """The TeX engine the build typeset report.tex with (engines.engine_for decided it; manifest.json records it)."""
    return json.loads(tex_file("manifest.json", tex_dir).read_text())["engine"]


def recorded_inputs(tex_dir: Path = paths.TEX_DIR) -> list[str]:
    """The files of tex_dir that the last pdfLaTeX pass read (report.fls), besides the job's own files
    and the precompiled format: figures, diagrams, the student's images, \\input files."""
    fls = tex_file(f"{JOB}.fls", tex_dir).read_text(encoding="utf-8", errors="replace")
    outputs = {line.split(" ", 1)[1] for line in fls.splitlines() if line.startswith("OUTPUT ")}
    found = set()
    for line in fls.splitlines():
        if not line.startswith("INPUT "):
            continue
        name = line.split(" ", 1)[1].removeprefix("./")
        if name.startswith("/") or name in outputs or name.endswith(".fmt") or Path(name).stem == JOB:
            continue
        found.add(name)
    return sorted(found)
