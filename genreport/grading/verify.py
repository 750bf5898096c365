"""`build.py verify PDF`: build the report again from this checkout and say whether it is the PDF.

The rebuild runs in a copy of the sources under build/verify (never touching the checkout's report.pdf
or its caches), with the experiment profile and device the PDF's manifest names, and by default retrains
every experiment. Verdicts, in order:
  identical        the same bytes;
  within tolerance the same text, every number within the stated tolerance, every figure identical or
                   drawn from results that differ (named);
  does not match   what differs: which number in which sentence, which figure, which page, which source
                   file changed since the PDF's build, and whether the PDF was rewritten after its build.
With --sandbox the rebuild runs under bubblewrap: no network, and nothing writable but build/verify.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genreport import paths
from genreport.errors import BuildError
from genreport.latex import provenance

if TYPE_CHECKING:
    from pypdf import PdfReader

REBUILD_DIR = paths.BUILD_DIR / "verify"
COPIED = ("build.py", "report.toml", "requirements.txt", "requirements-data.txt", "genreport", "templates", "report", "experiments")
DEFAULT_RTOL = 0.01
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?|[^\W\d_]+")
EXPECTED_MINUTES = {"default": "about 4 minutes on a 2-core CPU", "fast": "under a minute"}
MAX_LISTED = 25
CONTEXT_CHARS = 90  # either side of a difference, when no sentence ends nearer (tables, captions)


@dataclass(frozen=True)
class Token:
    text: str
    page: int  # 1-based
    start: int
    end: int


@dataclass(frozen=True)
class PdfText:
    pages: list[str]
    tokens: list[Token]


def read_text(pdf: Path) -> PdfText:
    from genreport.grading.pdftext import pdf_pages

    pages = pdf_pages(pdf)
    tokens = [Token(m.group(0), number, m.start(), m.end()) for number, text in enumerate(pages, start=1) for m in TOKEN.finditer(text)]
    return PdfText(pages, tokens)


def sentence(text: PdfText, token: Token) -> str:
    page = text.pages[token.page - 1]
    left = max(page.rfind(". ", 0, token.start), page.rfind(".\n", 0, token.start), token.start - CONTEXT_CHARS)
    right = min(x for x in (page.find(". ", token.end), page.find(".\n", token.end), token.end + CONTEXT_CHARS, len(page)) if x >= 0)
    return " ".join(page[max(left + 1, 0):right + 1].split())


def _value(token: Token) -> float | None:
    return float(token.text.replace(",", "")) if NUMBER.fullmatch(token.text) else None


def within(submitted: float, rebuilt: float, rtol: float) -> bool:
    return abs(submitted - rebuilt) <= rtol * max(abs(submitted), abs(rebuilt))


def compare_text(submitted: PdfText, rebuilt: PdfText, rtol: float) -> tuple[list[str], list[str]]:
    """(differences beyond tolerance, numbers within tolerance), each as a line a grader can read."""
    matcher = difflib.SequenceMatcher(None, [t.text for t in submitted.tokens], [t.text for t in rebuilt.tokens], autojunk=False)
    beyond, tolerated = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        left, right = submitted.tokens[i1:i2], rebuilt.tokens[j1:j2]
        pairs = list(zip(left, right))
        if tag == "replace" and len(left) == len(right) and all(_value(a) is not None and _value(b) is not None for a, b in pairs):
            for a, b in pairs:
                line = f"page {a.page}: {a.text} (rebuild: {b.text}) in \"{sentence(submitted, a)}\""
                (tolerated if within(_value(a), _value(b), rtol) else beyond).append(line)
            continue
        if left:
            words = " ".join(t.text for t in left) + (f" ... ({len(left)} words)" if len(left) > 20 else "")
            what = f"reads \"{words[:120]}\" where the rebuild has \"{' '.join(t.text for t in right)[:120]}\"" if right else f"has \"{words[:120]}\" that the rebuild does not"
            beyond.append(f"page {left[0].page}: {what}, in \"{sentence(submitted, left[0])}\"")
        else:
            missing = " ".join(t.text for t in right)[:120] + (f" ... ({len(right)} words)" if len(right) > 20 else "")
            beyond.append(f"page {right[0].page} of the rebuild: \"{missing}\" is missing from the PDF, "
                          f"in \"{sentence(rebuilt, right[0])}\"")
    return beyond, tolerated


@dataclass(frozen=True)
class PdfFigure:
    """An image or embedded vector figure (an Image or Form XObject) as a page of the PDF names it."""

    page: int  # 1-based
    name: str  # its name in the page's resources; pdfTeX numbers a page's inclusions /Im1, /Im2, ...
    digest: str  # SHA-256 of its stream
    size: int  # bytes in its stream


def pdf_figures(reader: PdfReader) -> Iterator[PdfFigure]:
    """Every image and embedded figure of every page, with the digest of its stream."""
    for number, page in enumerate(reader.pages, start=1):
        for name, xobject in ((page.get("/Resources") or {}).get("/XObject") or {}).items():
            xobject = xobject.get_object()
            if xobject.get("/Subtype") in ("/Image", "/Form"):
                data = xobject.get_data()
                yield PdfFigure(number, name, hashlib.sha256(data).hexdigest(), len(data))


def figure_streams(pdf: Path) -> list[tuple[str, int]]:
    """(digest, page) of each image or embedded figure, in page order and, on a page, in the order LaTeX
    included them (/Im1, /Im2, ...)."""
    from pypdf import PdfReader

    found: dict[tuple[int, int], str] = {}
    for figure in pdf_figures(PdfReader(pdf)):
        index = re.fullmatch(r"/Im(\d+)", figure.name)
        if index:
            found[(figure.page, int(index.group(1)))] = figure.digest
    return [(found[key], key[0]) for key in sorted(found)]


def compare_figures(submitted_pdf: Path, rebuilt_pdf: Path, submitted: dict[str, Any], rebuilt: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(figures that differ unexplained or are missing, figures redrawn from results that differ).

    Figures are aligned by content, so a removed page costs its own figures only, not every later one."""
    generated = [f for f in rebuilt.get("figures", []) if f["file"].startswith("figures/")]
    ours, theirs = figure_streams(submitted_pdf), figure_streams(rebuilt_pdf)
    recorded = {name: entry["digest"] for name, entry in submitted.get("results", {}).items()}
    beyond, explained = [], []

    def named(index: int) -> tuple[str, dict[str, Any]]:
        figure = generated[index] if index < len(generated) else {"file": f"image {index + 1}", "number": "?", "results": {}}
        return f"Figure {figure['number']} ({figure['file']})", figure

    matcher = difflib.SequenceMatcher(None, [d for d, _ in ours], [d for d, _ in theirs], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for offset, j in enumerate(range(j1, j2)):
            where, figure = named(j)
            if i1 + offset >= i2:
                beyond.append(f"{where} is missing from the PDF")
                continue
            page = ours[i1 + offset][1]
            changed = sorted(name for name, value in figure.get("results", {}).items() if recorded.get(name) != value)
            if changed:
                explained.append(f"{where}, page {page}: redrawn from {', '.join(changed)} results that differ from the PDF's")
            else:
                beyond.append(f"{where}, page {page}: differs from the rebuild although the results it is drawn from are the same "
                              "(replaced in the PDF, or its plotting code changed)")
        for i in range(i1 + (j2 - j1), i2):
            beyond.append(f"an image on page {ours[i][1]} of the PDF that the rebuild does not have")
    return beyond, explained


def source_changes(manifest: dict[str, Any]) -> list[str]:
    recorded, current = manifest.get("files", {}), provenance.source_digests()
    lines = [f"changed: {path}" for path in sorted(recorded) if path in current and current[path] != recorded[path]]
    lines += [f"new since the build: {path}" for path in sorted(set(current) - set(recorded))]
    lines += [f"gone since the build: {path}" for path in sorted(set(recorded) - set(current))]
    return lines


def prepare_sources(reuse_results: bool) -> Path:
    shutil.rmtree(REBUILD_DIR, ignore_errors=True)
    sources = REBUILD_DIR / "src"
    sources.mkdir(parents=True)
    for name in COPIED:
        origin = paths.ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, sources / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif origin.exists():
            shutil.copy2(origin, sources / name)
    if reuse_results and paths.EXPERIMENT_CACHE_DIR.is_dir():
        shutil.copytree(paths.EXPERIMENT_CACHE_DIR, sources / "build/cache/experiments")
    return sources


def sandboxed(command: list[str], writable: Path, workdir: Path) -> list[str]:
    """bubblewrap: the file system read-only, the grader's home directory hidden behind an empty one (the
    checkout and the Python it runs shown again if they live there), a private /tmp, no network, new
    PID/IPC/UTS namespaces, only `writable` writable, and the sandbox dies with this process."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise BuildError("--sandbox needs bubblewrap (bwrap), which is not installed",
                         hint="install it with `apt-get install bubblewrap`, or run `make verify`")
    home = Path.home().resolve()
    hidden = [home] if home.is_dir() and home != Path("/") else []
    hidden.append(Path("/tmp"))  # private: nothing of the grader's, nothing left behind
    # As named (the command runs sys.executable as named) and as resolved (where symlinks lead).
    named = [paths.ROOT, Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent]
    needed = {p.absolute() for p in named} | {p.resolve() for p in named} | {Path(sys.executable).resolve().parent}
    # A checkout or a Python that lives under a hidden directory (a clone in /tmp, a venv in the home) is shown again, read-only.
    under_hidden = sorted(p for p in needed if any(p.is_relative_to(h) for h in hidden))
    # One bind per outermost path: a bind inside an earlier one would land on its (possibly symlinked) copy.
    outermost = [p for p in under_hidden if not any(p != q and p.is_relative_to(q) for q in under_hidden)]
    shown_again = [arg for path in outermost for arg in ("--ro-bind", str(path), str(path))]
    return [bwrap, "--ro-bind", "/", "/", *(arg for h in hidden for arg in ("--tmpfs", str(h))), *shown_again,
            "--dev", "/dev", "--proc", "/proc",
            "--bind", str(writable), str(writable), "--unshare-all", "--die-with-parent", "--new-session",
            "--setenv", "HOME", "/tmp", "--setenv", "MPLCONFIGDIR", "/tmp/matplotlib", "--chdir", str(workdir), *command]


def rebuild(profile: str, device: str, sandbox: bool, reuse_results: bool) -> Path:
    sources = prepare_sources(reuse_results)
    command = [sys.executable, "build.py", *(["--fast"] if profile == "fast" else []), "--device", device, "latex"]
    if sandbox:
        command = sandboxed(command, REBUILD_DIR, sources)
    print(f"  $ {' '.join(command[-6:]) if sandbox else ' '.join(command)}   (in {sources.relative_to(paths.ROOT)})", flush=True)
    done = subprocess.run(command, cwd=sources, check=False)
    if done.returncode != 0:
        raise BuildError(f"the rebuild failed (exit status {done.returncode}); its output is above",
                         path=sources, hint="a rebuild that fails cannot confirm the PDF")
    return sources / "report.pdf"


def describe(manifest: dict[str, Any]) -> str:
    source, versions = manifest.get("source") or {}, manifest.get("versions") or {}
    commit = (source.get("commit") or "")[:10] or "none"
    state = {True: f"with {len(source.get('changed', []))} uncommitted change(s)", False: "clean", None: "outside git"}[source.get("dirty")]
    return (f"commit {commit} ({state}), {manifest.get('profile') or '?'} profile; torch {versions.get('torch')}, "
            f"{versions.get('texlive')}, pandoc {versions.get('pandoc')}")


def _print_list(title: str, lines: list[str]) -> None:
    if lines:
        print(f"  {title}:")
        for line in lines[:MAX_LISTED]:
            print(f"    - {line}")
        if len(lines) > MAX_LISTED:
            print(f"    ... and {len(lines) - MAX_LISTED} more")


def main(pdf: Path, sandbox: bool = False, reuse_results: bool = False, rtol: float = DEFAULT_RTOL) -> int:
    if not pdf.is_file():
        print(f"verify: {pdf} does not exist", file=sys.stderr)
        return 2
    data = pdf.read_bytes()  # read now: the grader may be verifying this checkout's own report.pdf
    try:
        manifest = provenance.read(data)
    except (provenance.ManifestError, provenance.UnreadablePdf) as error:
        print(f"verify: cannot read {pdf}'s manifest: {error}", file=sys.stderr)
        return 2
    if manifest is None:
        print(f"verify: {pdf} carries no genreport manifest, so nothing says which sources made it; "
              "`python build.py check` runs the checks that need none", file=sys.stderr)
        return 2
    submitted_pdf = REBUILD_DIR.parent / "verify-submitted.pdf"  # a copy outside the rebuild, which starts by clearing build/verify
    submitted_pdf.parent.mkdir(parents=True, exist_ok=True)
    submitted_pdf.write_bytes(data)

    intact = provenance.intact(data, manifest)
    print(f"{pdf}: built from {describe(manifest)}")
    print(f"  file: {'unchanged since its build' if intact else 'REWRITTEN OR EDITED after its build'}")
    recorded, current = (manifest.get("source") or {}), provenance.git_state()
    if recorded.get("commit") != current["commit"] or recorded.get("dirty") != current["dirty"]:
        print(f"  commit: the PDF names {(recorded.get('commit') or 'none')[:10]} ({'dirty' if recorded.get('dirty') else 'clean'}), "
              f"this checkout is at {(current['commit'] or 'none')[:10]} ({'dirty' if current['dirty'] else 'clean'}); "
              "the manifest and the date in the rebuild follow the checkout")
    changes = source_changes(manifest)
    print(f"  sources: {'this checkout has the same sources as the build' if not changes else f'{len(changes)} file(s) differ from the build'}")
    _print_list("source files that differ from the PDF's build", changes)

    profile = manifest.get("profile") or "default"
    devices = {entry.get("device") for entry in manifest.get("results", {}).values()}
    device = devices.pop() if len(devices) == 1 and None not in devices else "auto"
    if reuse_results and not paths.EXPERIMENT_CACHE_DIR.is_dir():
        print("--reuse-results: this checkout has no cached experiment results, so they are retrained")
        reuse_results = False
    if reuse_results:
        print("rebuilding with this checkout's cached experiment results (--reuse-results): this verifies the text, "
              "numbers, figures and typesetting, not the training itself", flush=True)
    else:
        print(f"rebuilding from scratch: every experiment is retrained ({profile} profile, {device}), which takes "
              f"{EXPECTED_MINUTES.get(profile, 'as long as the experiments take')}; progress follows", flush=True)
    if sandbox:
        print(f"  sandbox: bubblewrap, no network, writable only {REBUILD_DIR.relative_to(paths.ROOT)}", flush=True)
    rebuilt_pdf = rebuild(profile, device, sandbox, reuse_results)
    rebuilt_data = rebuilt_pdf.read_bytes()
    if rebuilt_data == data:
        print("\nverdict: IDENTICAL - the PDF is byte for byte what this checkout builds")
        return 0

    rebuilt = provenance.read(rebuilt_data) or {}
    submitted_text, rebuilt_text = read_text(submitted_pdf), read_text(rebuilt_pdf)
    text_beyond, tolerated = compare_text(submitted_text, rebuilt_text, rtol)
    figures_beyond, redrawn = compare_figures(submitted_pdf, rebuilt_pdf, manifest, rebuilt)
    results = [f"{name}: digest {entry['digest'][:12]} in the PDF, {rebuilt.get('results', {}).get(name, {}).get('digest', '?')[:12]} rebuilt"
               for name, entry in manifest.get("results", {}).items()
               if rebuilt.get("results", {}).get(name, {}).get("digest") != entry["digest"]]
    versions = [f"{tool}: {value} in the PDF, {rebuilt.get('versions', {}).get(tool)} here"
                for tool, value in manifest.get("versions", {}).items() if rebuilt.get("versions", {}).get(tool) != value]
    pages = (len(submitted_text.pages), len(rebuilt_text.pages))
    print()
    if pages[0] != pages[1]:
        text_beyond.insert(0, f"the PDF has {pages[0]} pages, the rebuild {pages[1]}")
    matches = intact and not text_beyond and not figures_beyond
    if matches:
        print(f"verdict: WITHIN TOLERANCE - the same text, every number within {rtol:.0%} (relative), "
              "every figure identical or redrawn from results that differ")
    else:
        print("verdict: DOES NOT MATCH - the PDF is not what this checkout builds")
        if not intact:
            print("  the PDF was rewritten or edited after its build (its first bytes are no longer what pdfTeX wrote)")
    _print_list(f"numbers beyond the tolerance of {rtol:.0%}, and text that differs", text_beyond)
    _print_list(f"numbers within the tolerance of {rtol:.0%}", tolerated)
    _print_list("figures that differ", figures_beyond)
    _print_list("figures redrawn from different results", redrawn)
    _print_list("experiment results that differ", results)
    _print_list("tool versions that differ", versions)
    if not (text_beyond or tolerated or figures_beyond or redrawn) and not intact:
        print("  the visible text and figures are the same; the file's bytes differ (rewritten by a PDF tool?)")
    return 0 if matches else 1
