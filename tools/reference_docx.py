"""Write templates/reference.docx, the styles of `python build.py export docx`: pandoc's own reference
document with the PDF's page (A4, 25 mm margins). Run once after changing it; the file is committed.

    .venv/bin/python tools/reference_docx.py
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from docx import Document
from docx.shared import Mm, Pt

from genreport import paths
from genreport.latex.content import pandoc_binary


def main() -> None:
    default = subprocess.run([pandoc_binary(), "--print-default-data-file", "reference.docx"], capture_output=True, check=True).stdout
    document = Document(io.BytesIO(default))
    for section in document.sections:  # templates/report.tex.j2: a4paper, margin=25mm
        section.page_width, section.page_height = Mm(210), Mm(297)
        section.left_margin = section.right_margin = section.top_margin = section.bottom_margin = Mm(25)
    document.styles["Body Text"].font.size = Pt(11)  # the PDF's 11pt
    document.save(paths.TEMPLATES_DIR / "reference.docx")


if __name__ == "__main__":
    main()
