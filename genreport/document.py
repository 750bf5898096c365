"""The LaTeX stage: content (Markdown + numbers from results) -> LaTeX body -> report.pdf.

Two halves with one direction of flow: genreport/content.py turns the student's Markdown into a
LaTeX body and a manifest; genreport/typeset.py turns that body into a PDF. This module decides
whether the stage must run at all, and replaces report.pdf only when a build has succeeded.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from genreport import cache, content, images, paths, provenance, typeset
from genreport.config import ReportConfig
from genreport.errors import BuildError


def stage_inputs(config: ReportConfig) -> list[Path]:
    code = [Path(module.__file__) for module in (content, images, typeset)] + [Path(__file__)]
    files = [config.source, *code, *provenance.CODE, *sorted(p for p in paths.TEMPLATES_DIR.rglob("*") if p.is_file())]
    files += sorted(p for p in paths.CONTENT_DIR.rglob("*") if p.is_file())
    files += sorted(paths.RESULTS_DIR.glob("*.json"))
    files += sorted(p for p in paths.FIGURES_DIR.glob("*") if p.is_file())
    return files


def inputs_key(config: ReportConfig) -> str:
    files = [f"{p.relative_to(paths.ROOT)}\0{cache.file_digest(p)}" for p in stage_inputs(config)]
    return cache.digest([*files, json.dumps(provenance.git_state())])  # the PDF's manifest names commit and dirty files


@dataclass(frozen=True)
class LatexOutcome:
    reused: bool
    seconds: float
    pages: int | None
    warnings: list[str]  # lines that stick out of the margin, with the content file and line


def recorded_warnings() -> list[str]:
    manifest = paths.TEX_DIR / "manifest.json"
    return json.loads(manifest.read_text()).get("layout_warnings", []) if manifest.exists() else []


def _refuse(warnings: list[str]) -> BuildError:
    listed = "\n  ".join(warnings[:10]) + ("\n  ..." if len(warnings) > 10 else "")
    return BuildError(f"{len(warnings)} line(s) stick out of the margin, an error with --strict:\n  {listed}",
                      hint="rephrase, or give the line a place to break (a space in a long name, a narrower image or table)")


def _load_pdf_readers() -> None:
    import pypdf  # noqa: F401
    import pypdfium2  # noqa: F401


def build(config: ReportConfig, force: bool, strict: bool = False) -> LatexOutcome:
    """Typeset report.pdf unless nothing it depends on changed; `strict` refuses a PDF with layout warnings."""
    start = time.perf_counter()
    key = inputs_key(config)
    stamp = paths.CACHE_DIR / "latex.key"
    if not force and paths.REPORT_PDF.exists() and stamp.exists() and stamp.read_text().split() == [key, cache.file_digest(paths.REPORT_PDF)]:
        warnings = recorded_warnings()
        if strict and warnings:
            raise _refuse(warnings)
        return LatexOutcome(True, time.perf_counter() - start, None, warnings)
    body = content.convert(config)
    typeset.write_sources(body, config)
    provenance.write_figure_table(paths.TEX_DIR)
    print("  typesetting with latexmk (pdflatex, biber)", flush=True)
    # TeX keeps one core busy; the other loads the PDF readers that the page count and the checklist use
    # (0.1 s, a twentieth of a rebuild after a one-sentence edit).
    preload = threading.Thread(target=_load_pdf_readers)
    preload.start()
    try:
        warnings = [str(warning) for warning in typeset.run_latexmk()]
    finally:
        preload.join()
    if strict and warnings:
        raise _refuse(warnings)
    built = paths.TEX_DIR / "report.pdf"
    from pypdf import PdfReader

    pages = len(PdfReader(built).pages)
    manifest = {**body.manifest, "pages": pages, "layout_warnings": warnings}
    cache.write_atomic(paths.TEX_DIR / "manifest.json", json.dumps(manifest, indent=1).encode())
    # Replace the deliverable only now that the build has succeeded, and atomically.
    tmp = paths.REPORT_PDF.with_name(".report.pdf.tmp")
    provenance.embed(built, tmp, provenance.collect(config, manifest))  # the PDF carries its manifest
    os.replace(tmp, paths.REPORT_PDF)
    cache.write_atomic(stamp, f"{key} {cache.file_digest(paths.REPORT_PDF)}\n".encode())
    return LatexOutcome(False, time.perf_counter() - start, pages, warnings)
