"""`python build.py export github|overleaf|docx` on a copy of the built fast project that also holds the
Markdown corpus (tests/markdown/features.md) and the issue's bad input: a student's PDF image, a raw URL with
Markdown specials and a caption with maths. Each export is checked against the PDF the same build made."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.conftest import build, copy_project
from tests.test_markdown import CORPUS, install_corpus

EXPORT_CASES = r"""

### Export cases

A raw URL with Markdown specials https://example.org/a_b*c*/d_(e)?q=[1]&r=`x`#frag ExportUrlMarker.

![A student's PDF with maths $\alpha^2 + \sqrt{x}$ in its caption, MathCaptionMarker.](images/drawing.pdf){#fig:export-math width=50%}

As @fig:export-math and @eq:corpus-power show, and @sec:corpus says [@kaplan2020; @hoffmann2022].
"""
# The link the PDF makes of that URL: pandoc's Markdown reader percent-encodes [ ] and ` (tests/markdown has the PDF side).
EXPORT_URL = "https://example.org/a_b*c*/d_(e)?q=%5B1%5D&r=%60x%60#frag"
MARKERS = sorted(set(re.findall(r"\b[A-Z]\w+Marker\b", CORPUS.read_text() + EXPORT_CASES)) - {"FeatureNameMarker"})
OUTPUTS = {"github": "build/export/github/README.md", "overleaf": "build/export/overleaf.zip", "docx": "build/export/report.docx"}


def export(project: Path, name: str, *options: str) -> subprocess.CompletedProcess:
    return build(project, "export", name, "--fast", *options)


@pytest.fixture(scope="module")
def export_project(fast_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("export") / "project"
    shutil.copytree(fast_project, project, symlinks=True)
    install_corpus(project)
    result = project / "report" / "result.md"
    result.write_text(result.read_text(encoding="utf-8") + EXPORT_CASES, encoding="utf-8")
    for name, output in OUTPUTS.items():  # the first one builds: the content changed since the fast build
        done = export(project, name)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip().splitlines()[-1] == output  # the path written is the last line
    return project


def aux_numbers(project: Path) -> tuple[dict[str, str], dict[str, int]]:
    aux = (project / "build/tex/report.aux").read_text()
    labels = dict(re.findall(r"^\\newlabel\{([^}@]+)\}\{\{([^{}]*)\}", aux, re.MULTILINE))
    citations = {key: int(n) for key, n in re.findall(r"^\\bibcite\{([^}]+)\}\{\{(\d+)\}", aux, re.MULTILINE)}
    return labels, citations


def pdf_text(pdf: Path) -> list[str]:
    return [page.extract_text() for page in PdfReader(pdf).pages]


def citation_groups(text: str) -> set[str]:
    """The PDF's citation brackets as printed, e.g. [2,3] and [23–25], without whitespace (an extractor may
    keep or drop the space after a comma)."""
    return {re.sub(r"\s+", "", group) for group in re.findall(r"\[\d+(?:(?:,\s*|–)\d+)*\]", text)}


class Rendered(HTMLParser):
    """What a GFM renderer made of the README: image sources, link targets, element ids, visible text."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.images, self.links, self.ids, self.text, self.headings = [], [], set(), [], []
        self._heading: list[str] | None = None
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes["src"])
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)


def render_gfm(markdown: str) -> Rendered:
    from markdown_it import MarkdownIt
    from mdit_py_plugins.footnote import footnote_plugin
    from mdit_py_plugins.tasklists import tasklists_plugin

    # GitHub's dialect: CommonMark with tables, strikethrough, footnotes, task lists and raw HTML.
    renderer = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).use(footnote_plugin).use(tasklists_plugin)
    return Rendered(renderer.render(markdown))


def test_github_readme_renders_with_every_image_and_link_resolved(export_project: Path) -> None:
    from PIL import Image

    readme = export_project / OUTPUTS["github"]
    markdown = readme.read_text(encoding="utf-8")
    for leftover in ("{{", "{%", "@fig:", "@tbl:", "@sec:", "@eq:", "\\cite", "\\ref", "\\Cref", "\\label"):
        assert leftover not in markdown, leftover
    # An environment is GitHub maths only inside a maths block (`aligned`); anywhere else it is LaTeX left over.
    prose = re.sub(r"\$`.*?`\$", "", re.sub(r"```\s*math\n.*?```", "", markdown, flags=re.DOTALL))
    assert "\\begin{" not in prose
    assert "\\begin{aligned}" in markdown  # the report's one multi-line equation, kept as maths
    rendered = render_gfm(markdown)
    assert len(rendered.images) >= 17
    for source in rendered.images:
        image = readme.parent / source
        assert image.is_file(), source
        with Image.open(image) as opened:
            assert opened.format in ("PNG", "JPEG"), source  # GitHub shows no PDF: the student's drawing.pdf too
    assert "report-figures/content/images/drawing.png" in rendered.images
    internal = [link[1:] for link in rendered.links if link.startswith("#")]
    assert internal and not set(internal) - rendered.ids, sorted(set(internal) - rendered.ids)
    text = html.unescape("".join(rendered.text))
    for marker in MARKERS:
        assert marker in text, marker
    assert EXPORT_URL in [html.unescape(link) for link in rendered.links]
    assert r"$`\alpha^2 + \sqrt{x}`$" in markdown  # the caption's maths, in GitHub's syntax
    assert "``` math" in markdown or "```math" in markdown
    assert "- [ ] TaskOpenMarker" in markdown and "- [x] TaskDoneMarker" in markdown  # GitHub's task list
    assert re.search(r"^7\.\s+SevenStartMarker", markdown, re.MULTILINE)  # a list that starts at seven still does


def test_github_readme_has_the_title_block_headings_numbers_and_citations_of_the_pdf(export_project: Path) -> None:
    markdown = (export_project / OUTPUTS["github"]).read_text(encoding="utf-8")
    rendered = render_gfm(markdown)
    manifest = json.loads((export_project / "build/tex/manifest.json").read_text())
    title = manifest["title_block"]
    assert rendered.headings[0] == f"Experiment {title['experiment_number']}: {title['title']}"
    text = html.unescape("".join(rendered.text))
    assert f"Name: {title['student_name']}" in text and f"Register Number: {title['register_number']}" in text
    labels, citations = aux_numbers(export_project)
    for number, heading in enumerate(manifest["exercise_headings"], start=1):
        assert f"{number} {heading}" in rendered.headings
    assert {"AIM", "OUTPUT", "RESULT", "References"} <= set(rendered.headings)
    results = {p.stem: json.loads(p.read_text()) for p in (export_project / "build/results").glob("*.json")}
    assert f"{100 * results['vae']['latent_knn_accuracy']:.1f}%" in text
    fit = results['scaling']['fit']
    assert f"{fit['alpha']:.2f} (± {fit['covariance'][2][2] ** 0.5:.2f})" in text  # RESULT's exponent and its error
    # Figures, tables, equations and sections carry the PDF's numbers (report.aux), links to citations too.
    captions = dict(re.findall(r'<span id="(fig:[^"]+)"></span>!\[(?:\\.|[^\]\\])*\]\([^)]*\)\n\n\*\*Figure (\d+):\*\*', markdown))
    assert captions == {label: number for label, number in labels.items() if label.startswith("fig:")}
    assert dict(re.findall(r'<span id="(tbl:[^"]+)"></span>\*\*Table (\d+):\*\*', markdown)) == {
        label: number for label, number in labels.items() if label.startswith("tbl:")}
    assert f"\\tag{{{labels['eq:corpus-power']}}}" in markdown
    assert f"Section [{labels['sec:corpus']}](#sec:corpus)" in markdown
    cited = re.findall(r"\[(\d+)\]\(#ref-([^)]+)\)", markdown)
    assert cited and all(int(number) == citations[key] for number, key in cited)
    assert len(re.findall(r'^\d+\. +<span id="ref-', markdown, re.MULTILINE)) == len(citations)
    body = " ".join(pdf_text(export_project / "report.pdf")).rsplit("References", 1)[0]  # not the list's own [n] labels
    assert citation_groups(text) == citation_groups(body)


def test_overleaf_zip_typesets_alone_to_the_same_pages_and_text(export_project: Path, tmp_path: Path) -> None:
    bundle = export_project / OUTPUTS["overleaf"]
    with zipfile.ZipFile(bundle) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert names == sorted(names) and {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {"main.tex", "main.bbl", "references.bib", "content/images/drawing.pdf", "figures/gan_ring.pdf"} <= set(names)
        assert not [name for name in names if name.startswith("/") or ".." in name.split("/")]
        main = archive.read("main.tex").decode()
        archive.extractall(tmp_path / "overleaf")
    assert str(export_project) not in main and not re.search(r"\\(?:input|includegraphics(?:\[[^\]]*\])?|graphicspath)\{\{?/", main)
    folder = tmp_path / "overleaf"
    done = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "main.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert pdf_text(folder / "main.pdf") == pdf_text(export_project / "report.pdf")


def test_docx_has_every_figure_numbered_caption_heading_and_reference(export_project: Path) -> None:
    from docx import Document

    document = Document(str(export_project / OUTPUTS["docx"]))
    labels, citations = aux_numbers(export_project)
    figures = sorted(int(number) for label, number in labels.items() if label.startswith("fig:"))
    tables = sorted(int(number) for label, number in labels.items() if label.startswith("tbl:"))
    assert len(document.inline_shapes) >= len(figures)
    paragraphs = document.paragraphs
    by_style = {style: [p.text for p in paragraphs if p.style.name == style] for style in {p.style.name for p in paragraphs}}
    assert [int(re.match(r"Figure (\d+):", caption).group(1)) for caption in by_style["Image Caption"]] == figures
    assert [int(re.match(r"Table (\d+):", caption).group(1)) for caption in by_style["Table Caption"]] == tables
    headings = [p.text for p in paragraphs if p.style.name.startswith("Heading")]
    manifest = json.loads((export_project / "build/tex/manifest.json").read_text())
    for number, heading in enumerate(manifest["exercise_headings"], start=1):
        assert f"{number} {heading}" in headings
    assert {"AIM", "OUTPUT", "RESULT", "References"} <= set(headings)
    start = next(i for i, p in enumerate(paragraphs) if p.text == "References" and p.style.name.startswith("Heading")) + 1
    end = next(i for i, p in enumerate(paragraphs) if i >= start and p.style.name.startswith("Heading"))
    numbered = [p for p in paragraphs[start:end] if p._p.pPr is not None and p._p.pPr.numPr is not None]  # Word's numbered list
    assert len(numbered) == len(citations)
    xml = (zipfile.ZipFile(export_project / OUTPUTS["docx"]).read("word/document.xml")).decode()
    assert "<m:oMathPara>" in xml and f"({labels['eq:corpus-power']})" in xml  # the numbered equation
    footnotes = re.sub(r"<[^>]+>", "", zipfile.ZipFile(export_project / OUTPUTS["docx"]).read("word/footnotes.xml").decode())
    text = "\n".join([p.text for p in paragraphs] + [cell.text for table in document.tables for row in table.rows for cell in row.cells]
                     + [footnotes])
    for marker in MARKERS:
        assert marker in text, marker


def test_exports_skip_unchanged_inputs_and_give_the_same_bytes_again(export_project: Path) -> None:
    again = export(export_project, "github")
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr
    before = {path: path.read_bytes() for path in (export_project / "build/export").rglob("*") if path.is_file()}
    shutil.rmtree(export_project / "build/export")
    for name in OUTPUTS:
        done = export(export_project, name, "--no-build")
        assert done.returncode == 0 and "written" in done.stdout, done.stdout + done.stderr
    after = {path: path.read_bytes() for path in (export_project / "build/export").rglob("*") if path.is_file()}
    assert after.keys() == before.keys() and all(after[path] == before[path] for path in before)


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


# A build that fails before LaTeX (the content), and one that fails in LaTeX after build/tex/report.tex was
# rewritten: an export that went on would show the marker.
FAILED_BUILDS = {
    "unknown citation": (lambda p: append(p / "report/aim.md", "\nAs shown before [@nosuchkey2099].\n"),
                         r"report/aim\.md:\d+:.*nosuchkey2099"),
    "LaTeX error": (lambda p: append(p / "report/aim.md", "\nA formula $\\notamacro{x}$, BrokenBuildMarker.\n"),
                    r"report/aim\.md:\d+: LaTeX error"),
}


@pytest.mark.parametrize("case", FAILED_BUILDS)
def test_a_failed_build_leaves_the_last_exports_and_names_the_line(export_project: Path, tmp_path: Path, case: str) -> None:
    project = tmp_path / "project"
    shutil.copytree(export_project, project, symlinks=True)
    breaks, message = FAILED_BUILDS[case]
    breaks(project)
    readme = project / OUTPUTS["github"]
    last_good = readme.read_bytes()
    done = export(project, "github")
    assert done.returncode != 0
    assert re.search(message, done.stderr), done.stderr
    assert "last export is unchanged" in done.stderr
    assert readme.read_bytes() == last_good


def test_an_export_without_a_build_says_what_to_run(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    done = export(project, "overleaf", "--no-build")
    assert done.returncode == 1
    assert "build/tex" in done.stderr and "python build.py" in done.stderr, done.stderr
    assert not (project / OUTPUTS["overleaf"]).exists()


def test_a_bar_and_split_inline_code_reach_pandoc_as_the_pdf_shows_them() -> None:
    """The LaTeX filter.lua writes for `{{ example.test_mse | num }}` (split at its break points, control spaces)
    a | in prose and a bracket in code: pandoc's reader dropped the bars and made three code spans of one."""
    import pypandoc

    from genreport.export.source import readable

    latex = ("Write \\texttt{\\{\\{\\ example.}\\allowbreak{}\\texttt{test\\_}\\allowbreak{}\\texttt{mse\\ \\textbar{}\\ num\\ \\}\\}}"
             " here; x \\textbar{} y; cite with \\texttt{{[}@key{]}}.")
    markdown = pypandoc.convert_text(readable(latex), "gfm", format="latex")
    assert "`{{ example.test_mse | num }}`" in markdown and "x \\| y" in markdown and "`[@key]`" in markdown


def test_rows_a_page_must_not_break_after_reach_pandoc_as_plain_rows() -> None:
    """filter.lua ends such rows with longtable's \\\\*, which pandoc's reader split into a row end and a "*"."""
    import pypandoc

    from genreport.export.source import readable

    latex = ("\\begin{longtable}[]{@{}ll@{}}\n\\caption{C.}\\label{tbl:t}\\tabularnewline\n\\toprule\\noalign{}\nA & B \\\\\n"
             "\\midrule\\noalign{}\n\\endfirsthead\n\\toprule\\noalign{}\nA & B \\\\\n\\midrule\\noalign{}\n\\endhead\n"
             "\\bottomrule\\noalign{}\n\\endlastfoot\n1 & x \\\\*\n2 & y \\\\*\n3 & z \\\\\n\\end{longtable}\n")
    markdown = pypandoc.convert_text(readable(latex), "gfm", format="latex")
    rows = [line.replace(" ", "") for line in markdown.splitlines() if line.startswith("|")]
    assert rows[0] == "|A|B|" and rows[2:] == ["|1|x|", "|2|y|", "|3|z|"], markdown
