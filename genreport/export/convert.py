"""The report's LaTeX, read by pandoc once per export and made fit for the target by filter.lua, then
written by pandoc in the target's format; the images the filter names, written as the target shows them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from genreport import paths
from genreport.build import cache
from genreport.errors import BuildError
from genreport.export import source
from genreport.latex.content import pandoc_binary

FILTER = Path(__file__).with_name("filter.lua")
PANDOC_TIMEOUT_S = 120
# PDF figures become PNGs at this resolution; the PNG records it, so Word prints them at the PDF's size.
PNG_DPI = 150


@dataclass(frozen=True)
class Document:
    ast: str  # pandoc's JSON, filtered
    images: list[tuple[str, str]]  # (path in build/tex, path the export writes), in the order of the report


def run_pandoc(arguments: list[str], stdin: str, cwd: Path, env: dict[str, str] | None = None) -> bytes:
    try:
        done = subprocess.run([pandoc_binary(), *arguments], input=stdin.encode(), cwd=cwd, capture_output=True,
                              timeout=PANDOC_TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(f"pandoc did not finish within {PANDOC_TIMEOUT_S} s", path=paths.TEX_DIR / "report.tex") from None
    if done.returncode != 0:
        raise BuildError(f"pandoc failed: {done.stderr.decode(errors='replace').strip()}", path=paths.TEX_DIR / "report.tex")
    return done.stdout


def read_report(target: str, image_dir: str, tex_dir: Path = paths.TEX_DIR) -> Document:
    """report.tex as pandoc's AST for `target` ("gfm" or "docx"), numbered like the PDF."""
    numbers = source.read_numbers(tex_dir)
    config = {"target": target, "image_dir": image_dir, "labels": numbers.labels, "kinds": numbers.kinds,
              "citations": numbers.citations, "title_block": source.title_block(tex_dir),
              "title_fields": [list(field) for field in source.TITLE_FIELDS]}
    with tempfile.TemporaryDirectory(prefix="genreport-export-") as scratch:
        config_file, records_file = Path(scratch) / "config.json", Path(scratch) / "images.tsv"
        config_file.write_text(json.dumps(config))
        env = {**os.environ, "GENREPORT_EXPORT": str(config_file), "GENREPORT_EXPORT_RECORDS": str(records_file)}
        ast = run_pandoc(["--from=latex", "--to=json", f"--lua-filter={FILTER}"], source.pandoc_input(tex_dir), tex_dir, env)
        images = [tuple(line.split("\t")) for line in records_file.read_text().splitlines()]
    return Document(ast.decode(), list(dict.fromkeys(images)))  # type: ignore[arg-type]


def publish(path: Path, data: bytes) -> None:
    """Write atomically, readable as a file the user made is (a temporary file starts private, 0600)."""
    cache.write_atomic(path, data)
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def write_image(original: Path, target: Path) -> None:
    """PNG and JPEG as they are; the first page of a PDF (a figure, a diagram, a student's drawing) as a PNG."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if original.suffix.lower() != ".pdf":
        shutil.copyfile(original, target)
        return
    import pypdfium2

    document = pypdfium2.PdfDocument(original)
    try:
        image = document[0].render(scale=PNG_DPI / 72, fill_color=(255, 255, 255, 255)).to_pil()
    finally:
        document.close()
    image.convert("RGB").save(target, format="PNG", dpi=(PNG_DPI, PNG_DPI), optimize=True)


def write_images(document: Document, into: Path, tex_dir: Path = paths.TEX_DIR) -> list[Path]:
    written = []
    for original, exported in document.images:
        file = tex_dir / original
        if not file.is_file():
            raise BuildError(f"the report includes {original}, which is not in build/tex", path=tex_dir / "report.tex",
                             hint="rebuild with `python build.py`")
        write_image(file, into / exported)
        written.append(into / exported)
    return written
