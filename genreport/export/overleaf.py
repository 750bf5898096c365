"""An Overleaf / arXiv bundle: main.tex, main.bbl, the .bib and every file the last pass read, in one zip.

main.tex is build/tex/report.tex itself, preamble and all (the build only precompiles that preamble into a
format, which nothing else needs), so `latexmk -pdf` typesets the same pages from it in an empty folder.
The TikZ diagrams travel as the PDFs the build typeset from them; every path is relative (arXiv's rule),
and the .bbl is included because arXiv does not run BibTeX.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from genreport import paths
from genreport.errors import BuildError
from genreport.export import convert, source

MAIN = "main"  # the file name Overleaf opens and compiles first
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can record: same bytes on every export
HEADER = ("% Exported by `python build.py export overleaf` from build/tex/report.tex. Typeset with pdfLaTeX and BibTeX\n"
          "% (latexmk -pdf main.tex; Overleaf's default). main.bbl is the bibliography BibTeX made, for arXiv.\n")


def bundle_files(tex_dir: Path = paths.TEX_DIR) -> dict[str, bytes]:
    """Name in the zip -> content."""
    report = source.tex_file(f"{source.JOB}.tex", tex_dir).read_text(encoding="utf-8")
    bibliographies = re.findall(r"^\\bibliography\{([^}]*)\}", report, re.MULTILINE)
    files = {f"{MAIN}.tex": (HEADER + report).encode(), f"{MAIN}.bbl": source.tex_file(f"{source.JOB}.bbl", tex_dir).read_bytes()}
    for name in [f"{bib.strip()}.bib" for names in bibliographies for bib in names.split(",")] + source.recorded_inputs(tex_dir):
        file = tex_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not file.is_file():
            raise BuildError(f"the report reads {name}, which cannot go into the bundle", path=tex_dir / f"{source.JOB}.tex",
                             hint="rebuild with `python build.py --force latex`")
        files[name] = file.read_bytes()
    return files


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
