"""The grader's checklist: read report.pdf as a grader would and say what is missing.

Reads the PDF and the manifest the LaTeX stage wrote (build/tex/manifest.json: title block, headings,
captions, cited keys). Exit status 1 when any item fails.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from genreport import cache, paths

MIN_PAGES, MAX_PAGES = 10, 30
MIN_REFERENCES = 15


@dataclass(frozen=True)
class Item:
    name: str
    ok: bool
    detail: str = ""


def normalise(text: str) -> str:
    """Lower-case letters and digits only: immune to ligatures, hyphenation and line breaks."""
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"[^0-9a-z]", "", text.lower())


def pdf_text(pdf: Path) -> str:
    """The text of every page, extracted by PDFium: pypdf's pure-Python extractor took 0.3 s, an eighth of
    a rebuild after a one-sentence edit; PDFium takes 0.05 s. (The tests read the PDF with pypdf, a
    second, independent extractor.)"""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        return "\n".join(document[index].get_textpage().get_text_range() for index in range(len(document))).replace("\r\n", "\n")
    finally:
        document.close()


def font_problems(reader) -> list[str]:
    problems = set()
    for page in reader.pages:
        resources = page.get("/Resources") or {}
        pending = [resources]
        while pending:
            res = pending.pop().get_object()
            for font in (res.get("/Font") or {}).values():
                font = font.get_object()
                name = str(font.get("/BaseFont", "?"))
                if font.get("/Subtype") == "/Type3":
                    problems.add(f"Type 3 font {name}")
                    continue
                descendants = font.get("/DescendantFonts")
                descriptor = (descendants[0].get_object() if descendants else font).get("/FontDescriptor")
                if descriptor is not None:
                    descriptor = descriptor.get_object()
                    if not any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")):
                        problems.add(f"font not embedded: {name}")
            for xobject in (res.get("/XObject") or {}).values():
                xobject = xobject.get_object()
                if xobject.get("/Subtype") == "/Form" and "/Resources" in xobject:
                    pending.append(xobject["/Resources"])
    return sorted(problems)


def run_checks(pdf: Path, manifest: dict, strict: bool = False) -> list[Item]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(pdf)
        pages = len(reader.pages)
    except (OSError, PdfReadError) as error:
        return [Item("PDF opens", False, str(error))]
    text = pdf_text(pdf)
    flat = normalise(text)
    items = [Item("PDF opens", True, f"{pages} pages"),
             Item(f"{MIN_PAGES} to {MAX_PAGES} pages", MIN_PAGES <= pages <= MAX_PAGES, f"{pages} pages")]

    title = manifest.get("title_block", {})
    for field in ("title", "student_name", "register_number", "date"):
        value = str(title.get(field, ""))
        items.append(Item(f"title block: {field}", bool(value) and normalise(value) in flat, value))
    number = title.get("experiment_number", "?")
    items.append(Item("title block: experiment number", f"EXPERIMENT {number}" in text, f"EXPERIMENT {number}"))

    for heading in ("AIM", "OUTPUT", "RESULT", "References", "Contents"):
        items.append(Item(f"heading {heading}", re.search(rf"^\s*{heading}\s*$", text, re.MULTILINE) is not None))
    headings = manifest.get("exercise_headings", [])
    items.append(Item("four exercise headings", len(headings) == 4 and all(h for h in headings), f"{len(headings)} found"))
    for index, heading in enumerate(headings, start=1):
        items.append(Item(f"exercise {index}: {heading}", normalise(f"{index}{heading}") in flat))

    captions = manifest.get("figure_captions", []) + manifest.get("diagram_captions", [])
    for caption in captions:
        probe = normalise(caption)[:60]
        items.append(Item(f"figure caption: {caption[:50]}...", bool(probe) and probe in flat))
    figure_labels = len(set(re.findall(r"Figure (\d+):", text)))
    items.append(Item("every figure numbered and captioned", figure_labels == len(captions), f"{figure_labels} of {len(captions)}"))
    for caption in manifest.get("table_captions", []):
        items.append(Item(f"table caption: {caption[:50]}...", normalise(caption)[:60] in flat))

    cited = len(manifest.get("cited_keys", []))
    items.append(Item(f"at least {MIN_REFERENCES} references cited", cited >= MIN_REFERENCES, f"{cited} cited"))
    listed = len(re.findall(r"^\s*\[(\d+)\]", text[text.rfind("References"):], re.MULTILINE))
    items.append(Item("bibliography lists every cited work", listed >= cited and listed > 0, f"{listed} entries"))
    items.append(Item("no unresolved '??'", "??" not in text))
    items.append(Item("no U+FFFD replacement characters", "\ufffd" not in text))

    problems = font_problems(reader)
    items.append(Item("all fonts embedded, no Type 3", not problems, "; ".join(problems[:3])))
    info = reader.metadata or {}
    for key in ("/Title", "/Author", "/Subject", "/Keywords"):
        items.append(Item(f"PDF metadata {key[1:]}", bool(info.get(key)), str(info.get(key, ""))[:60]))
    links = sum(1 for page in reader.pages for annot in (page.get("/Annots") or []) if annot.get_object().get("/Subtype") == "/Link")
    items.append(Item("internal hyperlinks", links > 0, f"{links} links"))
    if strict:  # a grader's stricter reading: the layout warnings of the build count as failures
        overfull = manifest.get("layout_warnings", [])
        items.append(Item("no line sticks out of the margin", not overfull, "; ".join(overfull[:3])))
    return items


VERDICT = paths.CACHE_DIR / "check.verdict"


def _verdict_key(pdf: Path, manifest_path: Path) -> str:
    parts = [cache.file_digest(pdf), Path(__file__).read_text(encoding="utf-8")]
    return cache.digest(parts + ([manifest_path.read_text()] if manifest_path.exists() else []))


def main(pdf: Path, quiet: bool = False, strict: bool = False) -> int:
    """Print the checklist; `quiet` (the end of a build) lists only failures and trusts an earlier
    pass of the very same PDF, manifest and checks, so an unchanged build does not parse the PDF again."""
    manifest_path = paths.TEX_DIR / "manifest.json"
    if not pdf.exists():
        print(f"check: {pdf} does not exist; build it with `make pdf`", file=sys.stderr)
        return 1
    key = _verdict_key(pdf, manifest_path) + ("-strict" if strict else "")
    recorded = VERDICT.read_text().split() if VERDICT.exists() else []
    if quiet and recorded[:1] == [key]:
        print(f"checklist: {recorded[1]} passed (same PDF as at the last check)")
        return 0
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    items = run_checks(pdf, manifest, strict)
    failed = [item for item in items if not item.ok]
    if not failed and pdf.resolve() == paths.REPORT_PDF.resolve():
        cache.write_atomic(VERDICT, f"{key} {len(items)}/{len(items)}\n".encode())
    if not quiet or failed:
        print(f"\ngrader's checklist for {pdf}:")
        for item in items:
            if not quiet or not item.ok:
                print(f"  [{'x' if item.ok else ' '}] {item.name}{f'  ({item.detail})' if item.detail else ''}")
    print(f"checklist: {len(items) - len(failed)}/{len(items)} passed")
    return 1 if failed else 0
