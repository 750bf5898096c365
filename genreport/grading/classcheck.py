"""`build.py check DIR`: check a whole class's PDFs at once.

Writes one table (results.csv: a row per file) and one JSON per submission in the spirit of Gradescope's
results.json (score, max_score, tests), and flags pairs of submissions that share experiment results,
figures or much of their text. A file that cannot be checked (not a PDF, truncated, encrypted, damaged)
gets its own row with the reason; it never stops the batch.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genreport.build import cache
from genreport.grading import check, verify
from genreport.latex import provenance

OUTPUT_DIR = "checklist-results"
SHINGLE_WORDS = 5
TEXT_OVERLAP_FLAG = 0.5  # Jaccard of word 5-gram sets; independent write-ups on one topic stay far below
SHARED_FIGURES_FLAG = 2  # one shared image may be a logo; two identical figures are a copied experiment
BOILERPLATE_SHARE = 0.5  # shingles in more than half of the class are the template's or the assignment's wording
MIN_FIGURE_BYTES = 2048  # smaller images are icons and rules, not figures


@dataclass
class Submission:
    file: str
    status: str = "checked"  # or "unreadable"
    reason: str = ""
    student_name: str | None = None
    register_number: str | None = None
    pages: int | None = None
    provenance: str = "none"  # none | intact | modified after build | unreadable manifest
    commit: str | None = None
    items: list[check.Item] = field(default_factory=list)
    result_digests: dict[str, str] = field(default_factory=dict)
    figure_digests: set[str] = field(default_factory=set)
    shingles: set[int] = field(default_factory=set)
    flags: list[str] = field(default_factory=list)


def _image_digests(reader: Any) -> set[str]:
    """Digests of the images and embedded vector figures in the PDF itself, so identical figures are
    found even in a PDF whose manifest was stripped or that another tool made."""
    return {figure.digest for figure in verify.pdf_figures(reader) if figure.size >= MIN_FIGURE_BYTES}


def shingles(text: str) -> set[int]:
    """Hashed word 5-grams of the body text (before the bibliography, which a class shares by design)."""
    body = text[:text.rfind("References")] if "References" in text else text
    words = re.findall(r"[a-z]+", unicodedata.normalize("NFKC", body).lower())
    return {hash(" ".join(words[i:i + SHINGLE_WORDS])) for i in range(len(words) - SHINGLE_WORDS + 1)}


def inspect(path: Path, root: Path) -> Submission:
    from pypdf import PdfReader

    submission = Submission(str(path.relative_to(root)))
    data = path.read_bytes()
    reason = check.why_unreadable(data)
    if reason is None:
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                reason = check.ENCRYPTED
            else:
                _check(submission, path, data, reader)
        # One damaged file must never stop a class's batch; whatever the readers raise becomes its row.
        except Exception as error:  # noqa: BLE001
            reason = f"unreadable: {type(error).__name__}: {str(error)[:160]}"
    if reason is not None:
        submission.status, submission.reason, submission.items = "unreadable", reason, []
    return submission


def _check(submission: Submission, path: Path, data: bytes, reader: Any) -> None:
    submission.pages = len(reader.pages)
    text = check.pdf_text(path)
    manifest, origin = check.manifest_for(path, data)
    if origin.startswith("embedded manifest unreadable"):
        submission.provenance = "unreadable manifest"
    submission.items = check.run_checks(path, manifest, text)
    printed = check.title_from_text(text)
    submission.student_name, submission.register_number = printed["student_name"], printed["register_number"]
    if manifest is not None:
        submission.items += check.provenance_items(data, manifest)
        submission.provenance = "intact" if provenance.intact(data, manifest) else "modified after build"
        submission.commit = (manifest.get("source") or {}).get("commit")
        submission.result_digests = {name: entry["digest"] for name, entry in (manifest.get("results") or {}).items()}
        title = manifest.get("title_block") or {}
        for key in ("student_name", "register_number"):
            built = str(title.get(key, ""))
            shown = getattr(submission, key)
            if shown and built and check.letters(shown) != check.letters(built):
                submission.flags.append(f"{key.replace('_', ' ')} printed ({shown}) differs from the build's manifest ({built})")
            if not shown:
                setattr(submission, key, built or None)
    submission.figure_digests = _image_digests(reader)
    submission.shingles = shingles(text)


def flag_pairs(submissions: list[Submission]) -> list[dict[str, Any]]:
    """Pairs that share results, figures or text, each pair once, with what they share."""
    checked = [s for s in submissions if s.status == "checked"]
    counts = Counter(h for s in checked for h in s.shingles)
    boilerplate = {h for h, n in counts.items() if n > BOILERPLATE_SHARE * len(checked)} if len(checked) >= 4 else set()
    pairs = []
    for first, second in itertools.combinations(checked, 2):
        reasons = []
        same_results = sorted(name for name, digest in first.result_digests.items() if second.result_digests.get(name) == digest)
        if same_results:
            reasons.append(f"identical experiment results: {', '.join(same_results)}")
        shared_figures = len(first.figure_digests & second.figure_digests)
        if shared_figures >= SHARED_FIGURES_FLAG:
            reasons.append(f"{shared_figures} identical figures")
        a, b = first.shingles - boilerplate, second.shingles - boilerplate
        overlap = len(a & b) / len(a | b) if a and b else 0.0
        if overlap >= TEXT_OVERLAP_FLAG:
            reasons.append(f"text overlap {overlap:.0%} (word {SHINGLE_WORDS}-grams)")
        if first.register_number and check.letters(first.register_number) == check.letters(second.register_number or ""):
            reasons.append(f"same register number {first.register_number}")
        if reasons:
            pairs.append({"files": [first.file, second.file], "reasons": reasons, "text_overlap": round(overlap, 3)})
    for pair in pairs:
        for own, other in (pair["files"], reversed(pair["files"])):
            next(s for s in checked if s.file == own).flags.append(f"with {other}: {'; '.join(pair['reasons'])}")
    return pairs


def results_json(submission: Submission) -> dict[str, Any]:
    """Gradescope's results.json shape (score, max_score, tests) plus what a grader of this lab needs."""
    tests = [{"name": item.name, "status": {True: "passed", False: "failed", None: "not run"}[item.ok], "output": item.detail}
             for item in submission.items]
    ran = [item for item in submission.items if item.ok is not None]
    return {
        "file": submission.file, "status": submission.status, "reason": submission.reason,
        "student_name": submission.student_name, "register_number": submission.register_number,
        "pages": submission.pages, "provenance": submission.provenance, "commit": submission.commit,
        "score": sum(1 for item in ran if item.ok), "max_score": len(ran),
        "tests": tests, "result_digests": submission.result_digests, "flags": submission.flags,
    }


CSV_COLUMNS = ("file", "status", "reason", "student_name", "register_number", "pages", "passed", "failed", "not_run",
               "failed_items", "provenance", "commit", "flags")


def csv_row(submission: Submission) -> dict[str, Any]:
    failed = [item.name for item in submission.items if item.ok is False]
    return {**{key: value for key, value in asdict(submission).items() if key in CSV_COLUMNS},
            "commit": (submission.commit or "")[:10],
            "passed": sum(1 for item in submission.items if item.ok), "failed": len(failed),
            "not_run": sum(1 for item in submission.items if item.ok is None),
            "failed_items": "; ".join(failed), "flags": " | ".join(submission.flags)}


def json_name(file: str) -> str:
    return re.sub(r"[^\w.-]", "_", file.replace("/", "__")).removesuffix(".pdf").removesuffix(".PDF") + ".json"


def main(directory: Path, out: Path | None = None) -> int:
    out = out or directory / OUTPUT_DIR
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf" and out not in p.parents)
    if not files:
        print(f"check: no .pdf files in {directory}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    submissions = []
    for number, path in enumerate(files, start=1):
        if sys.stderr.isatty():
            print(f"\r  checking {number}/{len(files)}: {path.name[:50]:<50}", end="", file=sys.stderr, flush=True)
        submissions.append(inspect(path, directory))
    if sys.stderr.isatty():
        print("\r" + " " * 80 + "\r", end="", file=sys.stderr)
    pairs = flag_pairs(submissions)

    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(csv_row(s) for s in submissions)
    cache.write_atomic(out / "results.csv", buffer.getvalue().encode())
    for submission in submissions:
        cache.write_atomic(out / json_name(submission.file), json.dumps(results_json(submission), indent=1).encode())
    cache.write_atomic(out / "flags.json", json.dumps(pairs, indent=1).encode())

    print(f"{'file':<28} {'student':<22} {'reg. no.':<14} {'pages':>5} {'checks':>7}  provenance")
    for s in submissions:
        if s.status != "checked":
            print(f"{s.file[:28]:<28} {s.reason}")
            continue
        row = csv_row(s)
        checks = f"{row['passed']}/{row['passed'] + row['failed']}"
        print(f"{s.file[:28]:<28} {(s.student_name or '?')[:22]:<22} {(s.register_number or '?')[:14]:<14} {s.pages:>5} {checks:>7}  {s.provenance}")
    for pair in pairs:
        print(f"FLAG {pair['files'][0]} + {pair['files'][1]}: {'; '.join(pair['reasons'])}")
    unreadable = sum(1 for s in submissions if s.status != "checked")
    print(f"\n{len(submissions)} files in {time.perf_counter() - start:.1f} s: {len(submissions) - unreadable} checked, "
          f"{unreadable} unreadable, {len(pairs)} flagged pairs; table: {out / 'results.csv'}, one JSON per submission beside it")
    return 0
