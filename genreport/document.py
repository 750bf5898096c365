"""The LaTeX stage: content (Markdown + numbers from results) -> templates -> latexmk -> report.pdf.

Student text is Markdown, rendered first by Jinja (so numbers come from build/results) and then by
pandoc with raw TeX switched off, so that whatever a student types is printed, never executed.
Cross-references (@fig:x, @tbl:x, @sec:x) and citations (@key) are checked here, with file and line,
before LaTeX ever sees them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreport import cache, paths, provenance
from genreport.config import ReportConfig
from genreport.errors import BuildError

SECTIONS = ("aim", "1-foundations", "2-architectures", "3-applications", "4-scaling", "result")
EXERCISES = SECTIONS[1:5]
BIBLIOGRAPHY = "references.bib"
LATEX_TIMEOUT_S = 55
PANDOC_TIMEOUT_S = 30
OVERFULL_LIMIT_PT = 1.0

# Characters beyond Latin-1 that the template maps for pdfLaTeX (newunicodechar); everything else
# outside ASCII, Latin-1 and Latin Extended-A is refused with its file, line and column.
UNICODE_LATEX = {
    **{chr(0x3B1 + i): rf"\ensuremath{{\{name}}}" for i, name in enumerate(
        ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "o", "pi", "rho", "varsigma", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"]) if name not in {"o"}},
    "Γ": r"\ensuremath{\Gamma}", "Δ": r"\ensuremath{\Delta}", "Θ": r"\ensuremath{\Theta}", "Λ": r"\ensuremath{\Lambda}",
    "Π": r"\ensuremath{\Pi}", "Σ": r"\ensuremath{\Sigma}", "Φ": r"\ensuremath{\Phi}", "Ψ": r"\ensuremath{\Psi}",
    "Ω": r"\ensuremath{\Omega}", "≤": r"\ensuremath{\leq}", "≥": r"\ensuremath{\geq}", "≠": r"\ensuremath{\neq}",
    "≈": r"\ensuremath{\approx}", "→": r"\ensuremath{\rightarrow}", "←": r"\ensuremath{\leftarrow}",
    "↔": r"\ensuremath{\leftrightarrow}", "⇒": r"\ensuremath{\Rightarrow}", "∞": r"\ensuremath{\infty}",
    "∑": r"\ensuremath{\sum}", "√": r"\ensuremath{\surd}", "∈": r"\ensuremath{\in}", "∝": r"\ensuremath{\propto}",
    "−": r"\ensuremath{-}", "∼": r"\ensuremath{\sim}", "⋅": r"\ensuremath{\cdot}", "∂": r"\ensuremath{\partial}",
    "∇": r"\ensuremath{\nabla}", "′": r"\ensuremath{'}", "‑": "-", "\u2009": r"\,", "\u202f": r"\,",
    "€": r"\texteuro{}", "™": r"\texttrademark{}", "•": r"\textbullet{}", "†": r"\textdagger{}",
}
TYPOGRAPHIC = set("‘’‚“”„–—…")  # handled by pdfLaTeX's utf8 input encoding with T1 fonts


def is_printable(ch: str) -> bool:
    code = ord(ch)
    return (
        ch in "\n\t" or 0x20 <= code < 0x7F or 0xA0 <= code <= 0x17F and code != 0xAD
        or ch in TYPOGRAPHIC or ch in UNICODE_LATEX
    )


def check_characters(path: Path, text: str) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        for column, ch in enumerate(line, start=1):
            if is_printable(ch):
                continue
            if ch == "\ufffd":
                raise BuildError(
                    f"column {column}: U+FFFD REPLACEMENT CHARACTER (\ufffd) - text broken by a copy-paste",
                    path=path, line=number, hint="retype the character that was lost (often a hyphen or a quote)")
            raise BuildError(
                f"column {column}: character {ch!r} (U+{ord(ch):04X}) cannot be typeset by the report's fonts",
                path=path, line=number, hint="replace it, or write maths between $...$ (e.g. $\\alpha$)")


def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BuildError("content file is missing", path=path, hint=f"the report needs {', '.join(s + '.md' for s in SECTIONS)}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise BuildError(f"byte 0x{data[error.start]:02X} is not UTF-8", path=path, line=line,
                         hint="save the file as UTF-8 in your editor") from None
    check_characters(path, text)
    return text


# --- Markdown with numbers from results ----------------------------------------------------------

def _number(value: float, digits: int | None = None) -> str:
    if digits is None:
        return f"{value:,}" if isinstance(value, int) else f"{value:,.3g}"
    return f"{value:,.{digits}f}"


def _percent(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f}%"


def _scientific(value: float, digits: int = 1) -> str:
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"${mantissa} \\times 10^{{{int(exponent)}}}$"


def _diagram(name: str, caption: str) -> str:
    from pylatex.utils import escape_latex

    return (f"\n```{{=latex}}\n\\begin{{figure}}[tbp]\n\\centering\n\\input{{diagrams/{name}}}\n"
            f"\\caption{{{escape_latex(caption)}}}\\label{{fig:diagram-{name}}}\n\\end{{figure}}\n```\n")


def markdown_environment():
    import jinja2

    # Pandoc's attribute syntax {#fig:x} would open a Jinja comment, so comments use {%# ... #%} instead.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                             comment_start_string="{%#", comment_end_string="#%}")
    env.filters.update(num=_number, pct=_percent, sci=_scientific)
    env.globals["diagram"] = _diagram
    return env


def render_markdown(path: Path, text: str, context: dict[str, Any]) -> str:
    import jinja2

    try:
        return markdown_environment().from_string(text).render(context)
    except jinja2.TemplateSyntaxError as error:
        raise BuildError(f"template syntax: {error.message}", path=path, line=error.lineno) from None
    except (jinja2.UndefinedError, TypeError, ValueError, KeyError) as error:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == "<template>"]
        raise BuildError(f"cannot fill in a value: {error}", path=path, line=frames[-1].lineno if frames else None,
                         hint="names available: " + ", ".join(sorted(context))) from None


# --- references and citations -----------------------------------------------------------------

CITATION = re.compile(r"(?<![\w.@])@([A-Za-z][\w:.-]*\w)")
LABEL = re.compile(r"\{#((?:fig|tbl|sec):[\w:.-]+)")
DIAGRAM = re.compile(r"""diagram\(\s*["']([\w-]+)["']""")


def bibliography_keys(path: Path) -> set[str]:
    return set(re.findall(r"^@\w+\s*\{\s*([^,\s]+)\s*,", read_text(path), re.MULTILINE))


def check_references(sources: dict[Path, str], bib_keys: set[str]) -> set[str]:
    """Every @key must be in the bibliography, every @fig/@tbl/@sec must name a label. Returns the cited keys."""
    labels = set()
    for text in sources.values():
        labels |= set(LABEL.findall(text)) | {f"fig:diagram-{name}" for name in DIAGRAM.findall(text)}
    cited = set()
    for path, text in sources.items():
        for number, line in enumerate(text.splitlines(), start=1):
            for key in CITATION.findall(line):
                if key.split(":")[0] in {"fig", "tbl", "sec"}:
                    if key not in labels:
                        raise BuildError(f"reference to @{key}, but no figure, table or section has the label {{#{key}}}",
                                         path=path, line=number, hint="known labels: " + ", ".join(sorted(labels)))
                elif key not in bib_keys:
                    raise BuildError(f"citation @{key} is not in {BIBLIOGRAPHY}", path=path, line=number,
                                     hint="add a BibTeX entry with that key, or fix the spelling")
                else:
                    cited.add(key)
    return cited


@dataclass(frozen=True)
class Converted:
    latex: str
    captions: list[list[str]]  # (kind, caption) pairs the filter recorded, in order
    cache_file: Path


def pandoc_to_latex(path: Path, markdown: str) -> Converted:
    """LaTeX for one content file.

    Pandoc costs about 50 ms a file; its output is cached by input, filter and pandoc version, so an edit
    to one file converts only that file.
    """
    import pypandoc

    filter_file = paths.TEMPLATES_DIR / "pandoc" / "filter.lua"
    command = [pypandoc.get_pandoc_path(), "--from=markdown-raw_tex-raw_html", "--to=latex", "--biblatex",
               "--wrap=preserve", "--top-level-division=section", f"--lua-filter={filter_file}"]
    key = cache.digest([*command, importlib.metadata.version("pypandoc-binary"), filter_file.read_text(encoding="utf-8"), markdown])
    cached = paths.PANDOC_CACHE_DIR / f"{key}.json"
    try:
        stored = json.loads(cached.read_text())
        return Converted(stored["latex"], stored["captions"], cached)
    except (OSError, ValueError, KeyError):
        pass
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("r", dir=cached.parent, suffix=".tsv") as captions_file:
        env = {**os.environ, "GENREPORT_CAPTIONS": captions_file.name}
        try:
            done = subprocess.run(command, input=markdown, check=False, capture_output=True, text=True, timeout=PANDOC_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise BuildError(f"pandoc did not finish within {PANDOC_TIMEOUT_S} s", path=path) from None
        if done.returncode != 0:
            raise BuildError(f"pandoc failed: {done.stderr.strip()}", path=path)
        captions = [line.split("\t", 1) for line in captions_file.read().splitlines()]
    # Pandoc escapes a typed ^ as an accent on nothing (\^{}), which prints as a small raised hat; the
    # student typed a caret.
    latex = done.stdout.replace("\\^{}", "\\textasciicircum{}")
    cache.write_atomic(cached, json.dumps({"latex": latex, "captions": captions}).encode())
    return Converted(latex, captions, cached)


# --- the LaTeX document ---------------------------------------------------------------------------

def latex_environment():
    import jinja2

    # Delimiters that never appear in LaTeX, so braces and percent signs stay LaTeX's.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths.TEMPLATES_DIR), undefined=jinja2.StrictUndefined, autoescape=False,
        block_start_string="<%", block_end_string="%>", variable_start_string="<<", variable_end_string=">>",
        comment_start_string="<#", comment_end_string="#>", keep_trailing_newline=True)


def render_template(name: str, **values: Any) -> str:
    import jinja2

    try:
        return latex_environment().get_template(name).render(**values)
    except jinja2.TemplateSyntaxError as error:
        raise BuildError(f"template syntax: {error.message}", path=error.filename or paths.TEMPLATES_DIR / name,
                         line=error.lineno, hint="template tags are << value >>, <% block %> and <# comment #>") from None
    except jinja2.TemplateNotFound as error:
        raise BuildError(f"template {error.name} is missing", path=paths.TEMPLATES_DIR,
                         hint="restore it with `git checkout templates/`") from None
    except jinja2.UndefinedError as error:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.endswith(".j2")]
        raise BuildError(f"template uses an unknown value: {error.message}", path=frames[-1].filename if frames else paths.TEMPLATES_DIR / name,
                         line=frames[-1].lineno if frames else None, hint="values passed: " + ", ".join(sorted(values))) from None


def load_results() -> dict[str, Any]:
    results = {}
    for path in sorted(paths.RESULTS_DIR.glob("*.json")):
        results[path.stem] = json.loads(path.read_text())
    return results


def stage_inputs(config: ReportConfig) -> list[Path]:
    files = [config.source, Path(__file__), *provenance.CODE, *sorted(p for p in paths.TEMPLATES_DIR.rglob("*") if p.is_file())]
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


def source_date_epoch() -> str:
    """The last commit's date, so that two builds of one commit stamp the same date into the PDF.

    Outside a git checkout (a tarball, a copy) it is the newest modification time of the content and
    the configuration: still the same for two builds of unchanged sources.
    """
    try:
        done = subprocess.run(["git", "log", "-1", "--format=%ct"], check=False, cwd=paths.ROOT, capture_output=True, text=True, timeout=10)
        stamp = done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        stamp = ""
    if stamp.isdigit():
        return stamp
    sources = [paths.CONFIG_FILE, *paths.CONTENT_DIR.glob("*")]
    return str(int(max(path.stat().st_mtime for path in sources if path.is_file())))


def write_sources(config: ReportConfig) -> dict[str, Any]:
    """Generate build/tex: report.tex, bibliography, figures, diagrams. Returns the manifest for the checks."""
    from pylatex.utils import escape_latex

    tex_dir = paths.TEX_DIR
    tex_dir.mkdir(parents=True, exist_ok=True)

    bib_path = paths.CONTENT_DIR / BIBLIOGRAPHY
    bib_keys = bibliography_keys(bib_path)
    raw = {path: read_text(path) for path in (paths.CONTENT_DIR / f"{name}.md" for name in SECTIONS)}
    cited = check_references(raw, bib_keys)
    results = load_results()
    missing = {"gan", "vae", "scaling", "diffusion"} - set(results)
    if missing:
        raise BuildError(f"results missing for {sorted(missing)}", path=paths.RESULTS_DIR, hint="run `python build.py experiments`")
    context = {**results, "report": config.title_block}

    sections, captions, conversions = {}, [], set()
    for path, text in raw.items():
        markdown = render_markdown(path, text, context)
        check_characters(path, markdown)
        converted = pandoc_to_latex(path, markdown)
        sections[path.stem.split("-")[-1]] = f"% source: {path.relative_to(paths.ROOT)}\n" + converted.latex
        captions += converted.captions
        conversions.add(converted.cache_file)
    for stale in set(paths.PANDOC_CACHE_DIR.glob("*")) - conversions:  # earlier versions of the text
        stale.unlink(missing_ok=True)

    title = {field: escape_latex(str(value)) for field, value in vars(config.title_block).items()}
    newunicodechars = "\n".join(rf"\newunicodechar{{{ch}}}{{{latex}}}" for ch, latex in UNICODE_LATEX.items())
    document = render_template("report.tex.j2", title=title, sections=sections, newunicodechars=newunicodechars,
                               bibliography=BIBLIOGRAPHY, pdf_title=escape_latex(config.title_block.title),
                               pdf_author=escape_latex(config.title_block.student_name))
    tex_file = tex_dir / "report.tex"
    if not tex_file.exists() or tex_file.read_text() != document:  # untouched sources let latexmk skip its runs
        cache.write_atomic(tex_file, document.encode())
    _sync_dir(paths.FIGURES_DIR, tex_dir / "figures")
    _sync_dir(paths.TEMPLATES_DIR / "diagrams", tex_dir / "diagrams")
    if not (tex_dir / BIBLIOGRAPHY).exists() or cache.file_digest(tex_dir / BIBLIOGRAPHY) != cache.file_digest(bib_path):
        cache.copy_atomic(bib_path, tex_dir / BIBLIOGRAPHY)

    exercise_titles = [re.search(r"\\section\{(.*?)\}\\label", sections[name.split("-")[-1]]) for name in EXERCISES]
    return {
        "title_block": vars(config.title_block),
        "exercise_headings": [_plain(m.group(1)) if m else "" for m in exercise_titles],
        "figure_captions": [text for kind, text in captions if kind == "figure"],
        "diagram_captions": re.findall(r'diagram\(\s*"[\w-]+"\s*,\s*"([^"]+)"', "\n".join(raw.values())),
        "table_captions": [text for kind, text in captions if kind == "table"],
        "cited_keys": sorted(cited),
    }


def _plain(latex: str) -> str:
    return re.sub(r"\\[a-zA-Z]+\{?|[{}]", "", latex)


def _sync_dir(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in source.glob("*") if p.is_file()}
    for stale in target.glob("*"):
        if stale.name not in wanted:
            stale.unlink()
    for name in wanted:
        if not (target / name).exists() or cache.file_digest(target / name) != cache.file_digest(source / name):
            cache.copy_atomic(source / name, target / name)


def run_latexmk() -> None:
    env = {
        **os.environ,
        # Untrusted sources: no shell escape, and TeX may read and write only inside build/tex.
        "shell_escape": "f", "openout_any": "p", "openin_any": "p",
        "SOURCE_DATE_EPOCH": source_date_epoch(), "FORCE_SOURCE_DATE": "1", "max_print_line": "10000",
    }
    # coreutils `timeout` holds the whole TeX process tree in its own process group and kills all of it
    # at the limit, even if this Python process is gone; and if this process dies (Ctrl-C, SIGKILL),
    # the kernel sends `timeout` SIGTERM (util-linux setpriv's parent-death signal), which it passes on
    # to the tree, so no TeX run outlives a build.
    command = ["setpriv", "--pdeathsig", "TERM", "timeout", "--signal=KILL", str(LATEX_TIMEOUT_S),
               "latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
               "-pdflatex=pdflatex -no-shell-escape %O %S", "-silent", "report.tex"]
    process = subprocess.Popen(command, cwd=paths.TEX_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    output, _ = process.communicate()
    if process.returncode in (124, -signal.SIGKILL, 128 + signal.SIGKILL):
        raise BuildError(f"LaTeX did not finish within {LATEX_TIMEOUT_S} s (a macro that never ends?)",
                         path=paths.TEX_DIR / "report.log", hint="look for a recursive definition in your content") from None
    (paths.TEX_DIR / "latexmk.out").write_text(output)
    if process.returncode != 0:
        raise latex_failure()
    check_log(paths.TEX_DIR / "report.log")


def latex_failure() -> BuildError:
    """Summarise the first LaTeX error and point at the student's source, not only the generated file."""
    log_path = paths.TEX_DIR / "report.log"
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    match = re.search(r"^(?:\./)?report\.tex:(\d+): (.*)$", log, re.MULTILINE) or re.search(r"^! (.*)$", log, re.MULTILINE)
    if not match:
        return BuildError("LaTeX failed without an error message", path=log_path)
    tex_line = int(match.group(1)) if match.lastindex == 2 else None
    message = match.group(match.lastindex)
    where = locate_in_content(tex_line) if tex_line else None
    hint = f"generated source: build/tex/report.tex:{tex_line}; full log: {log_path.relative_to(paths.ROOT)}" if tex_line else None
    if where:
        return BuildError(f"LaTeX error: {message}", path=where[0], line=where[1], hint=hint)
    return BuildError(f"LaTeX error: {message}", path=paths.TEX_DIR / "report.tex", line=tex_line, hint=hint)


def locate_in_content(tex_line: int) -> tuple[Path, int | None] | None:
    lines = (paths.TEX_DIR / "report.tex").read_text().splitlines()
    source = None
    for index in range(min(tex_line, len(lines)) - 1, -1, -1):
        marker = re.match(r"% source: (\S+)", lines[index])
        if marker:
            source = paths.ROOT / marker.group(1)
            break
    if source is None:
        return None
    words = re.findall(r"[A-Za-z]{4,}", re.sub(r"\\[a-zA-Z]+", " ", lines[tex_line - 1]))
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if words and all(word in line for word in words[:3]):
            return source, number
    return source, None


def check_log(log_path: Path) -> None:
    log = log_path.read_text(errors="replace")
    undefined = re.findall(r"(Reference|Citation) [`']([^']+)' on page \d+ undefined", log)
    if undefined:
        kind, key = undefined[0]
        raise BuildError(f"undefined {kind.lower()} `{key}` in the PDF", path=log_path,
                         hint="check the label or the BibTeX key; the PDF would show '??'")
    for amount in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too (?:wide|high)\)", log):
        if float(amount) > OVERFULL_LIMIT_PT:
            context = re.search(rf"Overfull \\[hv]box \({re.escape(amount)}pt.*?\n(.*?)\n", log)
            raise BuildError(f"a line sticks out of the margin by {amount} pt", path=log_path,
                             hint=f"rephrase or allow a break near: {context.group(1)[:120] if context else '?'}")
    if "Font shape" in log and "undefined" in log and re.search(r"Font shape `[^']+' undefined", log):
        raise BuildError("a font shape is missing, so LaTeX substituted another", path=log_path)


def _load_pdf_readers() -> None:
    import pypdf  # noqa: F401
    import pypdfium2  # noqa: F401


def build(config: ReportConfig, force: bool) -> LatexOutcome:
    start = time.perf_counter()
    key = inputs_key(config)
    stamp = paths.CACHE_DIR / "latex.key"
    if not force and paths.REPORT_PDF.exists() and stamp.exists() and stamp.read_text().split() == [key, cache.file_digest(paths.REPORT_PDF)]:
        return LatexOutcome(True, time.perf_counter() - start, None)
    manifest = write_sources(config)
    provenance.write_figure_table(paths.TEX_DIR)
    print("  typesetting with latexmk (pdflatex, biber)", flush=True)
    # TeX keeps one core busy; the other loads the PDF readers that the page count and the checklist use
    # (0.1 s, a twentieth of a rebuild after a one-sentence edit).
    preload = threading.Thread(target=_load_pdf_readers)
    preload.start()
    try:
        run_latexmk()
    finally:
        preload.join()
    built = paths.TEX_DIR / "report.pdf"
    from pypdf import PdfReader

    pages = len(PdfReader(built).pages)
    manifest["pages"] = pages
    cache.write_atomic(paths.TEX_DIR / "manifest.json", json.dumps(manifest, indent=1).encode())
    # Replace the deliverable only now that the build has succeeded, and atomically.
    tmp = paths.REPORT_PDF.with_name(".report.pdf.tmp")
    provenance.embed(built, tmp, provenance.collect(config, manifest))  # the PDF carries its manifest
    os.replace(tmp, paths.REPORT_PDF)
    cache.write_atomic(stamp, f"{key} {cache.file_digest(paths.REPORT_PDF)}\n".encode())
    return LatexOutcome(False, time.perf_counter() - start, pages)
