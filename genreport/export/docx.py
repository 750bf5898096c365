"""A Word file through pandoc: figures as images (PDF figures as PNGs), numbered captions, tables and
equations, references; the styles (A4, margins, fonts) come from templates/reference.docx."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from genreport import paths
from genreport.export import convert, source

REFERENCE_DOCX = paths.TEMPLATES_DIR / "reference.docx"


def export(output: Path) -> list[Path]:
    from genreport.latex.typeset import source_date_epoch

    document = convert.read_report("docx", "images")
    title = source.title_block()
    heading = f"Experiment {title['experiment_number']}: {title['title']}"
    with tempfile.TemporaryDirectory(prefix="genreport-docx-") as scratch:
        convert.write_images(document, Path(scratch))
        # pandoc dates the file (docProps/core.xml, the zip entries) by SOURCE_DATE_EPOCH: the build's date.
        env = {**os.environ, "SOURCE_DATE_EPOCH": source_date_epoch()}
        docx = convert.run_pandoc(["--from=json", "--to=docx", f"--reference-doc={REFERENCE_DOCX}", f"--metadata=title:{heading}",
                                   "--output=-"], document.ast, Path(scratch), env)
    convert.publish(output, docx)
    return [output]
