"""GitHub-flavoured Markdown for a repository's README.md, its figures as PNGs in report-figures/ beside it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from genreport import paths
from genreport.export import convert

IMAGE_DIR = "report-figures"  # beside the README; not figures/, which is where the build draws


def export(output: Path) -> list[Path]:
    document = convert.read_report("gfm", IMAGE_DIR)
    markdown = convert.run_pandoc(["--from=json", "--to=gfm", "--wrap=none"], document.ast, paths.TEX_DIR)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Everything is written into a scratch folder first; the images then replace their old versions and the
    # README comes last, so an export that fails half-way leaves the last good README and its images.
    scratch = Path(tempfile.mkdtemp(dir=output.parent, prefix=".export-"))
    try:
        images = convert.write_images(document, scratch)
        placed = []
        for image in images:
            target = output.parent / image.relative_to(scratch)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(image, target)
            placed.append(target)
        image_root = output.parent / IMAGE_DIR
        for stale in [p for p in image_root.rglob("*") if p.is_file() and p not in placed]:
            stale.unlink()
        convert.publish(output, markdown)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [output, *placed]
