"""Content -> LaTeX body: what the student wrote becomes LaTeX, checked on the way.

Student text is Markdown, rendered first by Jinja (so numbers come from build/results) and then by
pandoc with raw TeX switched off, so that whatever a student types is printed, never executed.
Cross-references (@fig:x, @tbl:x, @sec:x) and citations (@key) are checked here, with file and line,
before LaTeX ever sees them. Nothing here knows about the template or latexmk (genreport/latex/typeset.py).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreport import paths
from genreport.build import cache, versions
from genreport.build.config import ReportConfig
from genreport.errors import BuildError
from genreport.latex import engines, images
from genreport.latex.engines import check_characters  # which engine and font can set a character: genreport/latex/engines.py

AIM, RESULT = "aim", "result"  # the lab record's first and last parts; every other report/*.md comes under OUTPUT
SECTION_NUMBER = re.compile(r"^(\d+)(?=\D)")  # 1-foundations.md: its place among the sections
BIBLIOGRAPHY = "references.bib"
PANDOC_TIMEOUT_S = 30

def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BuildError("content file is missing", path=path, hint=f"the report needs {AIM}.md and {RESULT}.md in report/") from None
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
    # Python's "z" format option prints a value that rounds to zero as 0, never as -0 (an entropy of -0.0).
    if digits is None:
        return f"{value:,}" if isinstance(value, int) else f"{value:z,.3g}"
    return f"{value:z,.{digits}f}"


def _percent(value: float, digits: int = 1) -> str:
    return f"{100 * value:z.{digits}f}%"


def _scientific(value: float, digits: int = 1) -> str:
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"${mantissa} \\times 10^{{{int(exponent)}}}$"


def _diagram(name: str, caption: str) -> str:
    from pylatex.utils import escape_latex

    return (f"\n```{{=latex}}\n\\begin{{figure}}[tbp]\n\\centering\n\\input{{diagrams/{name}}}\n"
            f"\\caption{{{escape_latex(caption)}}}\\label{{fig:diagram-{name}}}\n\\end{{figure}}\n```\n")


def markdown_environment(sources: dict[str, str]):
    """Jinja for the content files in `sources` (name -> text). Compiled templates are kept in
    build/cache/jinja, keyed by name and text, so an edit recompiles only the file that changed."""
    import jinja2

    cache.JINJA_DIR.mkdir(parents=True, exist_ok=True)
    # Pandoc's attribute syntax {#fig:x} would open a Jinja comment, so comments use {%# ... #%} instead.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                             comment_start_string="{%#", comment_end_string="#%}",
                             loader=jinja2.FunctionLoader(sources.get),
                             bytecode_cache=jinja2.FileSystemBytecodeCache(str(cache.JINJA_DIR)))
    env.filters.update(num=_number, pct=_percent, sci=_scientific)
    env.globals["diagram"] = _diagram
    return env


def render_markdown(path: Path, text: str, context: dict[str, Any]) -> str:
    import jinja2

    try:
        return markdown_environment({path.name: text}).get_template(path.name).render(context)
    except jinja2.TemplateSyntaxError as error:
        raise BuildError(f"template syntax: {error.message}", path=path, line=error.lineno) from None
    except (jinja2.UndefinedError, TypeError, ValueError, KeyError) as error:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == "<template>"]
        raise BuildError(f"cannot fill in a value: {error}", path=path, line=frames[-1].lineno if frames else None,
                         hint="names available: " + ", ".join(sorted(context))) from None


# --- references and citations -----------------------------------------------------------------

CITATION = re.compile(r"(?<![\w.@])@([A-Za-z][\w:.-]*\w)")
REFERENCE_KINDS = ("fig", "tbl", "sec", "eq")  # @fig:x and friends; the Lua filter knows the same four
LABEL = re.compile(rf"\{{#((?:{'|'.join(REFERENCE_KINDS)}):[\w:.-]+)")
# {{ diagram("name", "caption") }} in either quotes: the name makes a label, the caption goes to the checklist.
DIAGRAM = re.compile(r"""diagram\(\s*(["'])([\w-]+)\1(?:\s*,\s*(["'])(.*?)\3)?""")


ENTRY_START = re.compile(r"^@\w+\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
# biblatex's names for fields that BibTeX (which typesets the bibliography) knows under another name;
# a reference manager's biblatex export uses them, and BibTeX would drop them without a word.
BIBLATEX_ONLY = {"date": "year", "journaltitle": "journal"}


def bibliography_keys(path: Path) -> set[str]:
    return set(ENTRY_START.findall(read_text(path)))


def check_bibliography_fields(path: Path, cited: set[str]) -> None:
    """A cited entry that gives its year or journal only in biblatex's form stops the build, with its line."""
    text = read_text(path)
    starts = list(ENTRY_START.finditer(text))
    for start, following in zip(starts, [*starts[1:], None]):
        if start.group(1) not in cited:
            continue
        entry = text[start.start():following.start() if following else len(text)]
        fields = {match.group(1).lower(): match for match in re.finditer(r"([A-Za-z]+)\s*=", entry)}
        for biblatex, bibtex in BIBLATEX_ONLY.items():
            if biblatex in fields and bibtex not in fields:
                line = text.count("\n", 0, start.start() + fields[biblatex].start()) + 1
                raise BuildError(f"entry {start.group(1)} gives `{biblatex}`, which BibTeX does not read", path=path, line=line,
                                 hint=f"write `{bibtex} = {{...}}` instead (the report's bibliography is made by BibTeX)")


CODE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$|(`+)(?!`).+?(?<!`)\2(?!`)", re.MULTILINE | re.DOTALL)


def _without_code(text: str) -> str:
    """The text with fenced code blocks and inline code spans blanked (newlines kept, so lines still count):
    an `@name` in code is code, not a citation."""
    return CODE.sub(lambda match: re.sub(r"[^\n]", " ", match.group(0)), text)


def check_references(sources: dict[Path, str], bib_keys: set[str]) -> set[str]:
    """Every @key must be in the bibliography, every @fig/@tbl/@sec must name a label. Returns the cited keys."""
    labels = set()
    for text in sources.values():
        labels |= set(LABEL.findall(text)) | {f"fig:diagram-{m.group(2)}" for m in DIAGRAM.finditer(text)}
    cited = set()
    for path, text in sources.items():
        for number, line in enumerate(_without_code(text).splitlines(), start=1):
            for key in CITATION.findall(line):
                if key.split(":")[0] in REFERENCE_KINDS:
                    if key not in labels:
                        raise BuildError(f"reference to @{key}, but no figure, table, section or equation has the label {{#{key}}}",
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
    records: list[list[str]]  # (kind, text) pairs the filter recorded in order: figure/table captions, image paths
    cache_file: Path

    def recorded(self, kind: str) -> list[str]:
        return [text for recorded_kind, text in self.records if recorded_kind == kind]


PANDOC_READER = "markdown-raw_tex-raw_html+autolink_bare_uris"  # a typed URL becomes a link that can break


@functools.cache
def pandoc_binary() -> str:
    """pypandoc-binary's pandoc, found without importing pypandoc (15 ms of each rebuild): the wheel puts
    it in pypandoc/files/, which is where pypandoc itself looks first."""
    spec = importlib.util.find_spec("pypandoc")
    for location in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(location) / "files" / "pandoc"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    import pypandoc

    return pypandoc.get_pandoc_path()


def _pandoc(arguments: list[str], source: str, path: Path, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run([pandoc_binary(), *arguments], input=source, check=False, capture_output=True,
                              text=True, timeout=PANDOC_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise BuildError(f"pandoc did not finish within {PANDOC_TIMEOUT_S} s", path=path) from None
    if done.returncode != 0:
        raise BuildError(f"pandoc failed: {done.stderr.strip()}", path=path)
    return done.stdout


def _cache_file(parts: list[str]) -> Path:
    return paths.PANDOC_CACHE_DIR / f"{cache.digest([str(versions.version('pypandoc-binary')), *parts])}.json"


def pandoc_to_latex(path: Path, markdown: str) -> Converted:
    """LaTeX for one content file.

    Pandoc costs about 50 ms a file; its output is cached by input, filter and pandoc version, so an edit
    to one file converts only that file.
    """
    filter_file = paths.TEMPLATES_DIR / "pandoc" / "filter.lua"
    arguments = [f"--from={PANDOC_READER}", "--to=latex", "--natbib", "--wrap=preserve", "--top-level-division=section",
                 f"--lua-filter={filter_file}"]
    cached = _cache_file([*arguments, filter_file.read_text(encoding="utf-8"), markdown])
    try:
        stored = json.loads(cached.read_text())
        return Converted(stored["latex"], stored["records"], cached)
    except (OSError, ValueError, KeyError):
        pass
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("r", dir=cached.parent, suffix=".tsv") as records_file:
        env = {**os.environ, "GENREPORT_RECORDS": records_file.name, "GENREPORT_IMAGE_DIR": images.TEX_SUBDIR}
        latex = _pandoc(arguments, markdown, path, env)
        records = [line.split("\t", 1) for line in records_file.read().splitlines()]
    # Pandoc escapes a typed ^ as an accent on nothing (\^{}), which prints as a small raised hat; the
    # student typed a caret.
    latex = latex.replace("\\^{}", "\\textasciicircum{}")
    cache.write_atomic(cached, json.dumps({"latex": latex, "records": records}).encode())
    return Converted(latex, records, cached)


def highlighting_macros() -> tuple[str, Path]:
    """The LaTeX macros (Shaded, Highlighting, \\KeywordTok, ...) that pandoc's highlighted code uses, from
    pandoc itself so that they always match its output; cached like a conversion."""
    template = paths.TEMPLATES_DIR / "pandoc" / "highlighting.latex"
    arguments = ["--from=markdown", "--to=latex", f"--template={template}"]
    cached = _cache_file([*arguments, template.read_text(encoding="utf-8")])
    try:
        return json.loads(cached.read_text())["latex"], cached
    except (OSError, ValueError, KeyError):
        pass
    macros = _pandoc(arguments, "```python\npass\n```\n", template)
    cache.write_atomic(cached, json.dumps({"latex": macros}).encode())
    return macros, cached


def load_results() -> dict[str, Any]:
    results = {}
    for path in sorted(paths.RESULTS_DIR.glob("*.json")):
        results[path.stem] = json.loads(path.read_text())
    return results



def section_files(content_dir: Path) -> list[Path]:
    """The report's sections: aim.md, then the other Markdown files of report/ in the order of their file
    names (a leading number in numeric order: 2-x.md before 10-y.md), then result.md."""
    files = {path.stem: path for path in content_dir.glob("*.md")}
    for part in (AIM, RESULT):
        if part not in files:
            raise BuildError(f"content file is missing: report/ has no {part}.md", path=content_dir / f"{part}.md",
                             hint=f"the lab record has an {part.upper()} part: create {part}.md (it may be short)")
    numbered: dict[int, Path] = {}
    for path in files.values():
        number = SECTION_NUMBER.match(path.stem)
        if number is None:
            continue
        if int(number.group(1)) in numbered:
            raise BuildError(f"two sections have the number {int(number.group(1))}: {numbered[int(number.group(1))].name} and {path.name}",
                             path=path, hint="number each file of report/ once (1-..., 2-...): the numbers give their order")
        numbered[int(number.group(1))] = path

    def order(path: Path) -> tuple[float, str]:
        number = SECTION_NUMBER.match(path.stem)
        return (int(number.group(1)) if number else float("inf"), path.name)

    middle = sorted((p for name, p in files.items() if name not in (AIM, RESULT)), key=order)
    return [files[AIM], *middle, files[RESULT]]


HEADING = re.compile(r"^#\s+(.+?)\s*(?:\{[^}]*\})?\s*#*\s*$", re.MULTILINE)


def first_heading(markdown: str) -> str | None:
    """The text of a file's first top-level heading (`# Title {#sec:x}`), outside fenced code."""
    outside_code = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.MULTILINE | re.DOTALL)
    match = HEADING.search(outside_code)
    return match.group(1).strip() if match else None


def match_exercises(config: ReportConfig, headings: dict[Path, str | None]) -> list[dict[str, Any]]:
    """Each declared exercise with the section number LaTeX gives it; a declared exercise that no file of
    report/ has as its first heading stops the build at its line in report.toml."""
    from genreport.grading.pdftext import normalise

    # Sections under OUTPUT are numbered 1, 2, ... by LaTeX in file order; AIM and RESULT are unnumbered.
    numbered = [(path, heading) for path, heading in headings.items() if path.stem not in (AIM, RESULT) and heading]
    found = []
    for exercise in config.exercises:
        match = next(((number, path) for number, (path, heading) in enumerate(numbered, start=1)
                      if normalise(heading) == normalise(exercise.title)), None)
        if match is None:
            present = "; ".join(f"{path.name}: {heading!r}" for path, heading in numbered) or "none"
            raise BuildError(f"the exercise {exercise.title!r} is declared, but no file of report/ has it as its first heading",
                             path=config.source, line=exercise.line,
                             hint=f"headings found: {present}. Write `# {exercise.title}` at the top of its file, or correct the title")
        found.append({"number": match[0], "title": exercise.title, "file": match[1].name})
    return found


@dataclass(frozen=True)
class Body:
    """Everything typesetting needs from the content: LaTeX per section, the preamble definitions the
    converted text relies on, the student's images, and what the grader's checklist compares against."""

    sections: dict[str, str]  # LaTeX by content file name without .md, in the report's order (aim first, result last)
    preamble: str  # pandoc's code-highlighting macros (typeset.py adds the engine's character mappings)
    engine: str  # engines.PDFLATEX, or engines.LUALATEX when the text or the title block needs it
    texts: list[str]  # what the student wrote, as typeset: the Unicode engine picks its fonts by it
    bibliography: Path
    images: dict[str, Path]  # path inside build/tex -> the student's file under report/
    image_dir: str  # the folder of build/tex that holds exactly those images
    manifest: dict[str, Any]  # title block, headings, captions, cited keys


def convert(config: ReportConfig, content_dir: Path = paths.CONTENT_DIR) -> Body:
    """Read, check, fill in and convert every content file; the LaTeX body of the report."""
    bib_path = content_dir / BIBLIOGRAPHY
    bib_keys = bibliography_keys(bib_path)
    raw = {path: read_text(path) for path in section_files(content_dir)}
    # The declared exercises first: a missing exercise file is named as such, not as the references to it.
    exercises = match_exercises(config, {path: first_heading(text) for path, text in raw.items()})
    cited = check_references(raw, bib_keys)
    check_bibliography_fields(bib_path, cited)
    results = load_results()
    from genreport.experiments import discover

    missing = set(discover()) - set(results)
    if missing:
        raise BuildError(f"results missing for {sorted(missing)}", path=paths.RESULTS_DIR, hint="run `python build.py experiments`")
    context = {**results, "report": config.title_block}

    sections, figure_captions, table_captions, student_images = {}, [], [], {}
    macros, macros_file = highlighting_macros()
    conversions = {macros_file}
    texts = [*map(str, vars(config.title_block).values()), bib_path.read_text(encoding="utf-8")]
    for path, text in raw.items():
        markdown = render_markdown(path, text, context)
        texts.append(markdown)
        check_characters(path, markdown)
        converted = pandoc_to_latex(path, markdown)
        sections[path.stem] = f"% source: {paths.shown(path)}\n" + converted.latex
        figure_captions += converted.recorded("figure")
        table_captions += converted.recorded("table")
        for src in converted.recorded("image"):
            checked = images.resolve(src, content_dir, path, text)
            if checked:
                student_images[checked[0]] = checked[1]
        conversions.add(converted.cache_file)
    for stale in set(paths.PANDOC_CACHE_DIR.glob("*")) - conversions:  # earlier versions of the text
        stale.unlink(missing_ok=True)

    manifest = {
        "title_block": vars(config.title_block),
        "exercise_headings": [exercise["title"] for exercise in exercises],
        "exercises": exercises,
        "min_references": config.min_references,
        "page_range": list(config.pages),
        "figure_captions": figure_captions,
        "diagram_captions": [m.group(4) for text in raw.values() for m in DIAGRAM.finditer(text) if m.group(4)],
        "table_captions": table_captions,
        "cited_keys": sorted(cited),
        "engine": engines.engine_for(texts),  # which TeX engine the text needed (genreport/latex/engines.py)
    }
    return Body(sections, macros, manifest["engine"], texts, bib_path, student_images, images.TEX_SUBDIR, manifest)
