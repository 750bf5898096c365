"""An Overleaf / arXiv bundle: main.tex, main.bbl, the .bib and every file the last pass read, in one zip.

main.tex is build/tex/report.tex itself, preamble and all (the build only precompiles that preamble into a
format, which nothing else needs), so `latexmk -pdf` typesets the same pages from it in an empty folder.
The TikZ diagrams travel as the PDFs the build typeset from them; every path is relative (arXiv's rule),
and the .bbl is included because arXiv does not run BibTeX.

A report in a script pdfLaTeX cannot set is a LuaLaTeX one (genreport/latex/engines.py): its bundle names
the engine in a latexmkrc, which latexmk and Overleaf read, carries the Lua file its preamble runs and
subsets of its Noto and Symbola fonts under fonts/ (genreport/export/fonts.py), so TeX Live alone typesets it.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from genreport import paths
from genreport.errors import BuildError
from genreport.export import convert, fonts, source
from genreport.latex import engines

MAIN = "main"  # the file name Overleaf opens and compiles first
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can record: same bytes on every export
HEADER = ("% Exported by `python build.py export overleaf` from build/tex/report.tex. Typeset with pdfLaTeX and BibTeX\n"
          "% (latexmk -pdf main.tex; Overleaf's default). main.bbl is the bibliography BibTeX made, for arXiv.\n")
LUALATEX_HEADER = ("% Exported by `python build.py export overleaf` from build/tex/report.tex. Typeset with lualatex and BibTeX\n"
                   "% (latexmk main.tex: latexmkrc names the engine, for Overleaf too). fonts/ holds the Noto and Symbola\n"
                   "% fonts the text uses, as subsets; main.bbl is the bibliography BibTeX made.\n")
# $pdf_mode = 4 is latexmk's LuaLaTeX mode. Overleaf runs latexmk with the compiler of the project's settings
# (-pdf for its default, pdfLaTeX), and a command-line mode wins over the rc file's: $pdflatex makes that one
# run lualatex too, as does a `latexmk -pdf main.tex` typed out of habit.
LATEXMKRC = ("# Exported by `python build.py export overleaf`: this report is typeset with LuaLaTeX (its text has\n"
             "# characters pdfLaTeX cannot set), whichever mode latexmk is started in.\n"
             "$pdf_mode = 4;\n"
             "$pdflatex = 'lualatex %O %S';\n")
# The Lua files the LuaLaTeX preamble runs (templates/report.tex.j2: actualtext.lua). Lua's dofile reads them
# past TeX's recorder, so report.fls does not list them.
LUA_FILE = re.compile(r"\\directlua\{dofile\(\"([^\"]+)\"\)\}")


def bundle_files(tex_dir: Path = paths.TEX_DIR) -> dict[str, bytes]:
    """Name in the zip -> content."""
    report = source.tex_file(f"{source.JOB}.tex", tex_dir).read_text(encoding="utf-8")
    lualatex = source.engine(tex_dir) == engines.LUALATEX
    bibliographies = re.findall(r"^\\bibliography\{([^}]*)\}", report, re.MULTILINE)
    files = {f"{MAIN}.tex": (HEADER + report).encode(), f"{MAIN}.bbl": source.bibliography(tex_dir).encode()}
    lua = LUA_FILE.findall(report) if lualatex else []
    for name in [f"{bib.strip()}.bib" for names in bibliographies for bib in names.split(",")] + source.recorded_inputs(tex_dir) + lua:
        file = tex_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not file.is_file():
            raise BuildError(f"the report reads {name}, which cannot go into the bundle", path=tex_dir / f"{source.JOB}.tex",
                             hint="rebuild with `python build.py --force latex`")
        files[name] = file.read_bytes()
    if lualatex:
        typeset = "".join(data.decode("utf-8", errors="replace") for name, data in files.items() if name.endswith((".tex", ".bbl")))
        report, subsets = fonts.bundle(report, typeset)
        files |= {f"{MAIN}.tex": (LUALATEX_HEADER + report).encode(), "latexmkrc": LATEXMKRC.encode(), **subsets}
    return files


def read_besides(tex_dir: Path = paths.TEX_DIR) -> list[Path]:
    """What the bundle holds from outside build/tex: the font files a LuaLaTeX report's subsets are made from."""
    report = source.tex_file(f"{source.JOB}.tex", tex_dir).read_text(encoding="utf-8")
    return fonts.font_files(report) if source.engine(tex_dir) == engines.LUALATEX else []


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()


def export(output: Path) -> list[Path]:
    convert.publish(output, zip_bytes(bundle_files()))
    return [output]
