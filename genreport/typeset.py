"""LaTeX -> PDF: the template, build/tex, the TeX runs (genreport/texrun.py), and what the log says.

Takes the LaTeX body that genreport/content.py made; knows nothing about Markdown, Jinja numbers or
pandoc. Errors and warnings point back at the student's content file through the `% source:` markers
that each section starts with.
"""

from __future__ import annotations

import re
import subprocess
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genreport import cache, diagrams, paths, texfigures, texformat, texrun
from genreport.config import ReportConfig
from genreport.errors import BuildError

if TYPE_CHECKING:
    from genreport.content import Body

LATEX_TIMEOUT_S = 55
OVERFULL_LIMIT_PT = 1.0

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


def write_sources(body: Body, config: ReportConfig, unicode_latex: dict[str, str]) -> None:
    """Generate build/tex: report.tex, bibliography, figures, diagrams."""
    from pylatex.utils import escape_latex

    tex_dir = paths.TEX_DIR
    tex_dir.mkdir(parents=True, exist_ok=True)
    title = {field: escape_latex(str(value)) for field, value in vars(config.title_block).items()}
    newunicodechars = "\n".join(rf"\newunicodechar{{{ch}}}{{{latex}}}" for ch, latex in unicode_latex.items())
    document = render_template("report.tex.j2", title=title, sections=body.sections, newunicodechars=newunicodechars,
                               bibliography=body.bibliography.name, pdf_title=escape_latex(config.title_block.title),
                               pdf_author=escape_latex(config.title_block.student_name))
    tex_file = tex_dir / "report.tex"
    if not tex_file.exists() or tex_file.read_text() != document:  # untouched sources let latexmk skip its runs
        cache.write_atomic(tex_file, document.encode())
    texfigures.sync(paths.FIGURES_DIR, tex_dir / "figures")  # opaque PNGs without their alpha channel
    _sync_dir(paths.TEMPLATES_DIR / "diagrams", tex_dir / diagrams.SOURCE_DIR)  # typeset by genreport/diagrams.py
    target = tex_dir / body.bibliography.name
    if not target.exists() or cache.file_digest(target) != cache.file_digest(body.bibliography):
        cache.copy_atomic(body.bibliography, target)


def _sync_dir(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in source.glob("*") if p.is_file()}
    for stale in target.glob("*"):
        if stale.name not in wanted:
            stale.unlink()
    for name in wanted:
        if not (target / name).exists() or cache.file_digest(target / name) != cache.file_digest(source / name):
            cache.copy_atomic(source / name, target / name)


@dataclass(frozen=True)
class TexOutcome:
    preamble: texformat.FormatOutcome
    diagrams: list[diagrams.DiagramOutcome]
    passes: texrun.PassesOutcome


def run_tex() -> TexOutcome:
    """Typeset build/tex/report.tex: the preamble's format and the diagrams when they changed, then the passes."""
    runner = texrun.Runner(paths.TEX_DIR, source_date_epoch(), LATEX_TIMEOUT_S)
    preamble = texformat.ensure(runner)
    drawn = diagrams.ensure(runner, preamble.key)
    passes = texrun.typeset(runner, texformat.NAME, latex_failure, paths.CONTENT_DIR)
    check_log(paths.TEX_DIR / "report.log")
    return TexOutcome(preamble, drawn, passes)


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


