"""The grader's checklist: read report.pdf as a grader would and say what is missing.

Reads the PDF and the manifest the build embedded in it (genreport/latex/provenance.py: title block, headings,
captions, cited keys, digests), so a PDF checks the same on any machine. A PDF without one (another tool,
an older build) gets the checks its text allows; the others are reported as not run, never as failed.
`check DIR` checks a whole class (genreport/grading/classcheck.py). Exit status 1 when any item fails.
"""

from __future__ import annotations

import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from genreport import paths
from genreport.build import cache
from genreport.grading.pdftext import letters, normalise, pdf_pages, pdf_text  # noqa: F401  (pdf_pages: part of what check offers)

MIN_PAGES, MAX_PAGES = 10, 30
MIN_REFERENCES = 15


@dataclass(frozen=True)
class Item:
    name: str
    ok: bool | None  # None: could not be run (no manifest to say what to expect)
    detail: str = ""


def caption_probe(caption: str) -> str:
    """What of a built caption the PDF's text must hold: its longest run of words between the $...$ gaps the
    build leaves where maths, a citation or a reference prints differently from its source
    (templates/pandoc/filter.lua), normalised, at most 60 characters."""
    return max((normalise(words) for words in re.split(r"\$[^$]*\$", caption)), key=len)[:60]


def font_problems(document) -> list[str]:
    """Type 3 (bitmap) and non-embedded fonts on any page, figures' own fonts included; `document` is pikepdf's."""
    problems, seen = set(), set()
    for page in document.pages:
        pending = [page.obj.get("/Resources")]
        while pending:
            resources = pending.pop()
            if resources is None or (resources.is_indirect and resources.objgen in seen):
                continue
            if resources.is_indirect:
                seen.add(resources.objgen)
            for font in (resources.get("/Font") or {}).values():
                name = str(font.get("/BaseFont", "?"))
                if font.get("/Subtype") == "/Type3":
                    problems.add(f"Type 3 font {name}")
                    continue
                descendants = font.get("/DescendantFonts")
                descriptor = (descendants[0] if descendants else font).get("/FontDescriptor")
                if descriptor is not None and not any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")):
                    problems.add(f"font not embedded: {name}")
            for xobject in (resources.get("/XObject") or {}).values():
                if xobject.get("/Subtype") == "/Form" and "/Resources" in xobject:
                    pending.append(xobject["/Resources"])
    return sorted(problems)


@dataclass(frozen=True)
class Structure:
    """What the checklist reads from the PDF's objects (the text comes from PDFium)."""
    pages: int
    font_problems: list[str]
    metadata: dict[str, str]
    links: int


def pdf_structure(pdf: Path) -> Structure | str:
    """The PDF's structure, or why it cannot be read. pikepdf (qpdf, C++) takes 10 ms where pypdf's
    parser took 70 ms: pdfTeX packs the objects into object streams, which pypdf parses whole, in Python."""
    import pikepdf

    try:
        with pikepdf.open(pdf) as document:
            if document.is_encrypted:
                return ENCRYPTED
            links = sum(1 for page in document.pages for annot in (page.obj.get("/Annots") or [])
                        if annot.get("/Subtype") == "/Link")
            metadata = {str(key): str(value) for key, value in document.docinfo.items()}
            return Structure(len(document.pages), font_problems(document), metadata, links)
    except pikepdf.PasswordError:
        return ENCRYPTED
    except (pikepdf.PdfError, OSError, ValueError) as error:
        return str(error)


NO_MANIFEST = "the PDF carries no genreport manifest"
TITLE_PAGE_CHARS = 3000  # the title block is on the first page: the start of the text is enough


def _labelled(text: str, label: str) -> str | None:
    """The value after `label:` on the title page, e.g. `Name: A. Student`."""
    match = re.search(rf"^\s*{label}\s*:\s*(\S.*?)\s*$", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


def title_from_text(text: str) -> dict[str, str | None]:
    """Name and register number as printed on the first page, for a PDF whatever its manifest says."""
    first_page = text[:TITLE_PAGE_CHARS]
    return {"student_name": _labelled(first_page, "(?:student\\s+)?name"),
            "register_number": _labelled(first_page, r"reg(?:ister|istration|\.)?\s*(?:number|no\.?)")}


def _title_items(text: str, flat: str, manifest: dict | None) -> list[Item]:
    if manifest is None:
        printed = title_from_text(text)
        items = [Item(f"title block: {field}", True, value) if value else Item(f"title block: {field}", None, NO_MANIFEST)
                 for field, value in printed.items()]
        experiment = re.search(r"EXPERIMENT\s+\d+", text)
        return items + [Item("title block: experiment number", experiment is not None, experiment.group(0) if experiment else "")]
    title = manifest.get("title_block", {})
    title_page = letters(text[:TITLE_PAGE_CHARS])
    items = []
    for field in ("title", "student_name", "register_number", "date"):
        value = str(title.get(field, ""))
        items.append(Item(f"title block: {field}", bool(value) and normalise(value) in flat and letters(value) in title_page, value))
    number = title.get("experiment_number", "?")
    items.append(Item("title block: experiment number", f"EXPERIMENT {number}" in text, f"EXPERIMENT {number}"))
    return items


def _figure_and_reference_items(text: str, flat: str, manifest: dict | None) -> list[Item]:
    figure_labels = sorted({int(n) for n in re.findall(r"Figure (\d+):", text)})
    bibliography = text[text.rfind("References"):]
    listed = len(re.findall(r"^\s*\[(\d+)\]", bibliography, re.MULTILINE))
    if manifest is None:
        # What the text alone can show: figures numbered 1..n, enough works listed, no citation past the list.
        cited_numbers = [int(n) for group in re.findall(r"\[(\d+(?:\s*[,\u2013-]\s*\d+)*)\]", text[:text.rfind("References")])
                         for n in re.findall(r"\d+", group)]
        return [
            Item("figures numbered 1 to n", figure_labels == list(range(1, len(figure_labels) + 1)),
                 f"{len(figure_labels)} figures") if figure_labels else Item("figures numbered 1 to n", None, "no 'Figure N:' captions found"),
            Item(f"at least {MIN_REFERENCES} references listed", listed >= MIN_REFERENCES, f"{listed} listed")
            if listed else Item(f"at least {MIN_REFERENCES} references listed", None, "no numbered bibliography found"),
            Item("bibliography lists every cited work", max(cited_numbers) <= listed, f"citations up to [{max(cited_numbers)}], {listed} listed")
            if cited_numbers and listed else Item("bibliography lists every cited work", None, "no numbered citations found"),
            *(Item(name, None, NO_MANIFEST) for name in ("the assignment's exercise headings", "figure and table captions as built")),
        ]
    items = []
    # The exercises the project's report.toml declares, with the section numbers the build gave them
    # (a manifest from before exercises were declared lists the four headings alone, numbered 1 to 4).
    exercises = manifest.get("exercises") or [{"number": i, "title": t} for i, t in enumerate(manifest.get("exercise_headings", []), 1)]
    items.append(Item("the assignment's exercise headings", all(e.get("title") for e in exercises), f"{len(exercises)} declared"))
    for index, exercise in enumerate(exercises, start=1):
        items.append(Item(f"exercise {index}: {exercise['title']}", normalise(f"{exercise['number']}{exercise['title']}") in flat))
    captions = manifest.get("figure_captions", []) + manifest.get("diagram_captions", [])
    for caption in captions:
        probe = caption_probe(caption)
        items.append(Item(f"figure caption: {caption[:50]}...", bool(probe) and probe in flat))
    items.append(Item("every figure numbered and captioned", len(figure_labels) == len(captions), f"{len(figure_labels)} of {len(captions)}"))
    for caption in manifest.get("table_captions", []):
        items.append(Item(f"table caption: {caption[:50]}...", caption_probe(caption) in flat))
    cited, wanted = len(manifest.get("cited_keys", [])), manifest.get("min_references", MIN_REFERENCES)
    items.append(Item(f"at least {wanted} references cited", cited >= wanted, f"{cited} cited"))
    items.append(Item("bibliography lists every cited work", listed >= cited and (listed > 0 or cited == 0), f"{listed} entries"))
    return items


ENCRYPTED = "encrypted: the PDF is password-protected; ask for an unprotected copy"


def why_unreadable(data: bytes) -> str | None:
    """A reason a grader understands for a file that cannot be checked, or None when it looks like a PDF."""
    if not data:
        return "empty file"
    if b"%PDF-" not in data[:1024]:
        kind = "text" if all(32 <= b < 127 or b in b"\r\n\t" for b in data[:512]) else "binary data"
        return f"not a PDF (the file holds {kind}, starting {data[:24]!r})"
    if b"%%EOF" not in data[-2048:]:
        return "truncated: the PDF has no end-of-file marker (the upload or copy was cut short)"
    return None


def run_checks(pdf: Path, manifest: dict | None, text: str | None = None, strict: bool = False) -> list[Item]:
    """The checklist. With `manifest` None (a PDF from another tool) the items that need it are
    reported as not run (ok None) and the text alone is checked where it can be."""
    reason = why_unreadable(pdf.read_bytes())
    if reason is not None:
        return [Item("PDF opens", False, reason)]
    # PDFium extracts the text in its own thread while qpdf reads the structure: both release the GIL.
    with ThreadPoolExecutor(max_workers=1) as pool:
        extraction = pool.submit(pdf_text, pdf) if text is None else None
        structure = pdf_structure(pdf)
        if isinstance(structure, str):
            return [Item("PDF opens", False, structure)]
        text = extraction.result() if extraction is not None else text
    pages = structure.pages
    flat = normalise(text)
    # The assignment's page range and whether it asks for references, as its report.toml declared them.
    low, high = (manifest or {}).get("page_range", (MIN_PAGES, MAX_PAGES))
    items = [Item("PDF opens", True, f"{pages} pages"),
             Item(f"{low} to {high} pages", low <= pages <= high, f"{pages} pages")]
    items += _title_items(text, flat, manifest)
    cites = manifest is None or bool(manifest.get("cited_keys")) or manifest.get("min_references", MIN_REFERENCES) > 0
    for heading in ("AIM", "OUTPUT", "RESULT", *(["References"] if cites else []), "Contents"):
        items.append(Item(f"heading {heading}", re.search(rf"^\s*{heading}\s*$", text, re.MULTILINE) is not None))
    items += _figure_and_reference_items(text, flat, manifest)
    items.append(Item("no unresolved '??'", "??" not in text))
    items.append(Item("no U+FFFD replacement characters", "\ufffd" not in text))

    problems = structure.font_problems
    items.append(Item("all fonts embedded, no Type 3", not problems, "; ".join(problems[:3])))
    for key in ("/Title", "/Author", "/Subject", "/Keywords"):
        value = structure.metadata.get(key, "")
        items.append(Item(f"PDF metadata {key[1:]}", bool(value), value[:60]))
    items.append(Item("internal hyperlinks", structure.links > 0, f"{structure.links} links"))
    if strict:  # a grader's stricter reading: the layout warnings of the build count as failures
        if manifest is None:
            items.append(Item("no line sticks out of the margin", None, NO_MANIFEST))
        else:
            overfull = manifest.get("layout_warnings", [])
            items.append(Item("no line sticks out of the margin", not overfull, "; ".join(overfull[:3])))
    return items


def provenance_items(data: bytes, manifest: dict) -> list[Item]:
    """Items about the embedded manifest itself: where the PDF says it came from, and whether it is
    still the file the build wrote."""
    from genreport.latex import provenance

    source = manifest.get("source") or {}
    commit = (source.get("commit") or "")[:10] or "not a git checkout"
    state = {True: f", uncommitted changes in {len(source.get('changed', []))} file(s)", False: ", clean", None: ""}[source.get("dirty")]
    unchanged = provenance.intact(data, manifest)
    return [Item("provenance embedded", True, f"commit {commit}{state}; {manifest.get('profile') or '?'} profile"),
            Item("PDF unchanged since its build", unchanged,
                 "" if unchanged else "rewritten or edited after the build; `python build.py verify` shows what differs")]


def manifest_for(pdf: Path, data: bytes) -> tuple[dict | None, str]:
    """The manifest to check `pdf` against, and where it came from: the one embedded in the PDF; for
    this checkout's own report.pdf from an older build, build/tex/manifest.json; otherwise none."""
    from genreport.latex import provenance

    try:
        embedded = provenance.read(data)
    except provenance.ManifestError as error:
        return None, f"embedded manifest unreadable ({error})"
    except (provenance.UnreadablePdf, KeyError, TypeError):  # the checklist's first item says the PDF cannot be read
        embedded = None
    if embedded is not None:
        return embedded, "embedded in the PDF"
    local = paths.TEX_DIR / "manifest.json"
    if pdf.resolve() == paths.REPORT_PDF.resolve() and local.exists():
        return json.loads(local.read_text()), str(local.relative_to(paths.ROOT))
    return None, NO_MANIFEST


VERDICT = paths.CACHE_DIR / "check.verdict"


def _verdict_key(pdf: Path, manifest_path: Path) -> str:
    parts = [cache.file_digest(pdf), Path(__file__).read_text(encoding="utf-8")]
    return cache.digest(parts + ([manifest_path.read_text()] if manifest_path.exists() else []))


def main(pdf: Path, quiet: bool = False, strict: bool = False, text: str | None = None) -> int:
    """Print the checklist; `quiet` (the end of a build) lists only failures and trusts an earlier
    pass of the very same PDF, manifest and checks, so an unchanged build does not parse the PDF again.
    `text` is the pages' text when the caller has read it already (the build, from the PDF it just wrote)."""
    manifest_path = paths.TEX_DIR / "manifest.json"
    if not pdf.exists():
        print(f"check: {pdf} does not exist; build it with `make pdf`", file=sys.stderr)
        return 1
    key = _verdict_key(pdf, manifest_path) + ("-strict" if strict else "")
    recorded = VERDICT.read_text().split() if VERDICT.exists() else []
    if quiet and recorded[:1] == [key]:
        print(f"checklist: {recorded[1]} passed (same PDF as at the last check)")
        return 0
    data = pdf.read_bytes()
    manifest, origin = manifest_for(pdf, data)
    items = run_checks(pdf, manifest, text=text, strict=strict)
    if manifest is not None and origin == "embedded in the PDF":
        items += provenance_items(data, manifest)
    failed = [item for item in items if item.ok is False]
    not_run = [item for item in items if item.ok is None]
    ran = len(items) - len(not_run)
    if not failed and not not_run and pdf.resolve() == paths.REPORT_PDF.resolve():
        cache.write_atomic(VERDICT, f"{key} {ran}/{ran}\n".encode())
    if not quiet or failed:
        print(f"\ngrader's checklist for {pdf} (manifest: {origin}):")
        for item in items:
            if not quiet or item.ok is False:
                mark = {True: "x", False: " ", None: "?"}[item.ok]
                print(f"  [{mark}] {item.name}{f'  ({item.detail})' if item.detail else ''}")
    print(f"checklist: {ran - len(failed)}/{ran} passed")
    if not_run:
        print(f"not run ({origin}): " + ", ".join(item.name for item in not_run))
    return 1 if failed else 0
