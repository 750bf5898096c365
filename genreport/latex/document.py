"""The LaTeX stage: content (Markdown + numbers from results) -> LaTeX body -> report.pdf.

Two halves with one direction of flow: genreport/latex/content.py turns the student's Markdown into a
LaTeX body and a manifest; genreport/latex/typeset.py turns that body into a PDF. This module decides
whether the stage must run at all, and replaces report.pdf only when a build has succeeded.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from genreport import paths
from genreport.build import cache, explain
from genreport.build.config import ReportConfig
from genreport.errors import BuildError
from genreport.grading import check
from genreport.latex import content, diagrams, images, provenance, texfigures, texformat, texrun, typeset


def stage_inputs(config: ReportConfig) -> list[Path]:
    # Every module that turns content into the PDF: a change to any of them must typeset again.
    stage_code = (content, images, typeset, texrun, texformat, diagrams, texfigures)
    code = [Path(module.__file__) for module in stage_code] + [Path(__file__)]
    templates = {p for folder in (paths.TEMPLATES_DIR, paths.DIAGRAMS_DIR) if folder.is_dir() for p in folder.rglob("*") if p.is_file()}
    files = [config.source, *code, *provenance.code(), *sorted(templates)]
    files += sorted(p for p in paths.CONTENT_DIR.rglob("*") if p.is_file())
    files += sorted(paths.RESULTS_DIR.glob("*.json"))
    files += sorted(p for p in paths.FIGURES_DIR.glob("*") if p.is_file())
    return files


def input_digests(config: ReportConfig, git_state: dict) -> dict[str, str]:
    digests = {paths.shown(p): cache.file_digest(p) for p in stage_inputs(config)}
    # The PDF's manifest names the commit and the changed files, so they are inputs too.
    return {**digests, "git state": cache.digest([json.dumps(git_state)])}


def inputs_key(digests: dict[str, str]) -> str:
    return cache.digest(f"{name}\0{digest}" for name, digest in digests.items())


def _explain(reran: bool, digests: dict[str, str], config: ReportConfig, force: bool, tex: typeset.TexOutcome | None) -> None:
    files = {name: explain.DIGEST + digest for name, digest in digests.items()}
    explain.note("latex", reran, explain.latex_inputs(files, config.source), forced=force,
                 missing="inputs unchanged, but report.pdf was missing or not the one the last build wrote")
    if tex is not None:
        explain.detail("  preamble format", tex.preamble.rebuilt, tex.preamble.why)
        for diagram in tex.diagrams:
            explain.detail(f"  diagram {diagram.name}", not diagram.reused, diagram.why)
        for step in tex.passes.steps:
            explain.detail(f"  {step.name}", step.ran, step.why)


@dataclass(frozen=True)
class LatexOutcome:
    reused: bool
    seconds: float
    pages: int | None
    warnings: list[str]  # lines that stick out of the margin, with the content file and line
    tex: typeset.TexOutcome | None = None  # what the TeX runs did and why (None when reused)
    text: str | None = None  # the pages' text, read while the manifest was embedded (None when reused)


def recorded_warnings() -> list[str]:
    manifest = paths.TEX_DIR / "manifest.json"
    return json.loads(manifest.read_text()).get("layout_warnings", []) if manifest.exists() else []


def _refuse(warnings: list[str]) -> BuildError:
    listed = "\n  ".join(warnings[:10]) + ("\n  ..." if len(warnings) > 10 else "")
    return BuildError(f"{len(warnings)} line(s) stick out of the margin, an error with --strict:\n  {listed}",
                      hint="rephrase, or give the line a place to break (a space in a long name, a narrower image or table)")


def _load_pdf_readers() -> None:
    import pikepdf  # noqa: F401
    import pypdfium2  # noqa: F401


def build(config: ReportConfig, force: bool, strict: bool = False, profile: str | None = None) -> LatexOutcome:
    """Typeset report.pdf unless nothing it depends on changed; `strict` refuses a PDF with layout warnings."""
    start = time.perf_counter()
    git_state = provenance.git_state()  # asked once: an input of the stage and a field of the manifest
    digests = input_digests(config, git_state)
    key = inputs_key(digests)
    stamp = paths.CACHE_DIR / "latex.key"
    if not force and paths.REPORT_PDF.exists() and stamp.exists() and stamp.read_text().split() == [key, cache.file_digest(paths.REPORT_PDF)]:
        _explain(False, digests, config, force, None)
        warnings = recorded_warnings()
        if strict and warnings:
            raise _refuse(warnings)
        return LatexOutcome(True, time.perf_counter() - start, None, warnings)
    body = content.convert(config)
    typeset.write_sources(body, config)
    provenance.write_figure_table(paths.TEX_DIR)
    print(f"  typesetting ({typeset.ENGINE_SUMMARY[body.engine]}, BibTeX when citations changed)", flush=True)
    # TeX keeps one core busy; the other loads the PDF libraries that the manifest and the checklist use
    # (pikepdf and PDFium, 0.1 s, a tenth of a rebuild after a one-sentence edit). The page count comes
    # from TeX's log.
    preload = threading.Thread(target=_load_pdf_readers)
    preload.start()
    try:
        tex = typeset.run_tex(body.engine)
    finally:
        preload.join()
    warnings = [str(warning) for warning in tex.warnings]
    if strict and warnings:
        raise _refuse(warnings)
    built = paths.TEX_DIR / "report.pdf"
    pages = tex.passes.pages
    manifest = {**body.manifest, "pages": pages, "layout_warnings": warnings}
    cache.write_atomic(paths.TEX_DIR / "manifest.json", json.dumps(manifest, indent=1).encode())
    # Replace the deliverable only now that the build has succeeded, and atomically. Meanwhile PDFium
    # reads the pages' text for the checklist (the manifest is appended after them, the pages stay as
    # pdfTeX wrote them); it releases the GIL, so the two overlap on the second core.
    tmp = paths.REPORT_PDF.with_name(".report.pdf.tmp")
    with ThreadPoolExecutor(max_workers=1) as pool:
        text = pool.submit(check.pdf_text, built)
        provenance.embed(built, tmp, provenance.collect(config, manifest, git_state, profile))  # the PDF carries its manifest
        os.replace(tmp, paths.REPORT_PDF)
    cache.write_atomic(stamp, f"{key} {cache.file_digest(paths.REPORT_PDF)}\n".encode())
    _explain(True, digests, config, force, tex)
    return LatexOutcome(False, time.perf_counter() - start, pages, warnings, tex, text.result())
