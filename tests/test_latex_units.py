"""Unit tests of the LaTeX stage's own logic, without a build: image checks, the Lua filter, log reading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from genreport import paths
from genreport.errors import BuildError
from genreport.latex import content, images, texrun, typeset

# --- the student's images ------------------------------------------------------------------------


@pytest.fixture()
def content_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "report"
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (40, 20), "navy").save(folder / "images/ok.png")
    Image.new("RGB", (40, 20), "navy").save(folder / "images/ok.jpg")
    (folder / "images/ok.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    return folder


def check(src: str, folder: Path) -> tuple[str, Path] | None:
    text = f"Intro line.\n\n![Caption]({src}){{width=50%}}\n"
    return images.resolve(src, folder, folder / "aim.md", text)


def refused(src: str, folder: Path) -> BuildError:
    with pytest.raises(BuildError) as error:
        check(src, folder)
    assert error.value.line == 3 and Path(error.value.path).name == "aim.md"  # the content file and line
    return error.value


@pytest.mark.parametrize("name", ["ok.png", "ok.jpg", "ok.pdf"])
def test_png_jpeg_and_pdf_under_report_are_accepted_and_placed_in_build_tex(content_dir: Path, name: str) -> None:
    assert check(f"images/{name}", content_dir) == (f"content/images/{name}", content_dir / "images" / name)


def test_a_file_name_with_a_space_is_found(content_dir: Path) -> None:
    (content_dir / "images/ok.png").rename(content_dir / "images/my shot.png")
    # pandoc hands the filter <images/my shot.png> as images/my%20shot.png
    text = "![Caption](<images/my shot.png>)\n"
    assert images.resolve("images/my%20shot.png", content_dir, content_dir / "aim.md", text) == (
        "content/images/my shot.png", content_dir / "images/my shot.png")


def test_a_generated_figure_is_not_a_student_image(content_dir: Path) -> None:
    drawn = sorted(paths.FIGURES_DIR.glob("*.pdf"))
    if not drawn:
        pytest.skip("no figures drawn in this checkout")
    assert check(f"figures/{drawn[0].name}", content_dir) is None
    assert "draws no such figure" in refused("figures/my_own.png", content_dir).message


def test_missing_and_misnamed_files_are_refused(content_dir: Path) -> None:
    assert "no such file" in refused("images/none.png", content_dir).message
    (content_dir / "images/text.png").write_text("hello")
    assert "not an image" in refused("images/text.png", content_dir).message
    (content_dir / "images/ok.jpg").rename(content_dir / "images/photo.png")
    assert "a JPEG file" in refused("images/photo.png", content_dir).message
    (content_dir / "images/fake.pdf").write_bytes(b"\x89PNG but not really")
    assert "not an image" in refused("images/fake.pdf", content_dir).message
    Image.new("RGB", (4, 4)).save(content_dir / "images/anim.gif")
    assert "cannot include .gif" in refused("images/anim.gif", content_dir).message
    assert "folder" in refused("images", content_dir).message


def test_paths_that_leave_report_are_refused(content_dir: Path, tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.png")
    assert "leaves report/" in refused("../outside.png", content_dir).message
    assert "leaves report/" in refused("images/../../outside.png", content_dir).message
    assert "leaves report/" in refused(str(tmp_path / "outside.png"), content_dir).message
    (content_dir / "images/link.png").symlink_to(tmp_path / "outside.png")
    assert "symbolic link" in refused("images/link.png", content_dir).message
    (content_dir / "linked").symlink_to(tmp_path, target_is_directory=True)
    assert "symbolic link" in refused("linked/outside.png", content_dir).message


def test_images_too_large_are_refused(content_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("1", (images.MAX_SIDE_PX + 1, 8)).save(content_dir / "images/wide.png")
    assert "10,001 x 8 pixels is too large" in refused("images/wide.png", content_dir).message
    Image.new("1", (images.MAX_SIDE_PX, 8)).save(content_dir / "images/edge.png")
    assert check("images/edge.png", content_dir)  # the limit itself is allowed
    monkeypatch.setattr(images, "MAX_BYTES", 10)
    assert "too large" in refused("images/ok.png", content_dir).message


def test_a_truncated_png_is_not_an_image(content_dir: Path) -> None:
    data = (content_dir / "images/ok.png").read_bytes()
    (content_dir / "images/cut.png").write_bytes(data[: len(data) // 2])
    assert "not an image" in refused("images/cut.png", content_dir).message


# --- Markdown -> LaTeX (pandoc and the Lua filter) -----------------------------------------------

@pytest.fixture()
def pandoc_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(paths, "PANDOC_CACHE_DIR", tmp_path / "pandoc")
    return tmp_path / "pandoc"


def test_labelled_display_maths_is_a_numbered_equation_and_at_eq_refers_to_it(pandoc_cache: Path) -> None:
    converted = content.pandoc_to_latex(Path("x.md"), "$$ a = b $$ {#eq:ab}\n\nSee @eq:ab.\n\n$$ c $$\n")
    assert r"\begin{equation} a = b \label{eq:ab}\end{equation}" in converted.latex
    assert r"\Cref{eq:ab}" in converted.latex
    assert r"\[ c \]" in converted.latex  # unlabelled: unnumbered
    content.check_references({Path("x.md"): "$$ a $$ {#eq:ab}\n@eq:ab\n"}, set())
    with pytest.raises(BuildError, match="eq:nothing"):
        content.check_references({Path("x.md"): "See @eq:nothing.\n"}, set())


def test_student_images_point_into_build_tex_and_are_recorded(pandoc_cache: Path) -> None:
    converted = content.pandoc_to_latex(Path("x.md"), "![Mine.](images/a.png)\n\n![Drawn.](figures/gan_ring.pdf)\n")
    assert "{content/images/a.png}" in converted.latex and "{figures/gan_ring.pdf}" in converted.latex
    assert converted.recorded("image") == ["images/a.png", "figures/gan_ring.pdf"]
    assert converted.recorded("figure") == ["Mine.", "Drawn."]


def test_a_table_breaks_only_where_three_rows_stay_on_either_side(pandoc_cache: Path) -> None:
    def row_ends(rows: int) -> list[str]:
        markdown = "| A | B |\n|--|--|\n" + "".join(f"| {i} | `code_{i}` |\n" for i in range(rows)) + "\n: Caption [@x]. {#tbl:t}\n"
        latex = content.pandoc_to_latex(Path("x.md"), markdown).latex
        body = latex.split("\\endlastfoot")[1].split("\\end{longtable}")[0]
        assert r"\citep{x}" in latex and r"\label{tbl:t}" in latex  # the rest of the filter still applies
        return re.findall(r"(\\\\\*?)\n", body)

    assert row_ends(5) == ["\\\\*"] * 4 + ["\\\\"]  # short: never broken
    assert row_ends(10) == ["\\\\*"] * 2 + ["\\\\"] * 5 + ["\\\\*"] * 2 + ["\\\\"]


def test_a_word_with_an_at_sign_is_text_and_an_email_address_a_link(pandoc_cache: Path) -> None:
    latex = content.pandoc_to_latex(Path("x.md"), "Recall@5 rose; write to ada@example.org.\n").latex
    assert latex.startswith("Recall@5 rose") and "mailto:Recall" not in latex
    assert r"\href{mailto:ada@example.org}" in latex


def test_long_identifiers_and_bare_urls_may_break(pandoc_cache: Path) -> None:
    latex = content.pandoc_to_latex(Path("x.md"), "Use model_checkpoint_directory_name and `a_long/inline_code_path` "
                                                  "at https://example.org/a/b.\n").latex
    assert r"model\_\allowbreak{}checkpoint\_\allowbreak{}directory\_\allowbreak{}name" in latex
    # Each piece at least four characters: no break right after a one-letter prefix such as a_.
    assert r"\texttt{a\_long/}\allowbreak{}\texttt{inline\_}\allowbreak{}\texttt{code\_}\allowbreak{}\texttt{path}" in latex
    assert r"\url{https://example.org/a/b}" in latex


def test_highlighting_macros_define_what_highlighted_code_uses(pandoc_cache: Path) -> None:
    macros, _ = content.highlighting_macros()
    code = content.pandoc_to_latex(Path("x.md"), "```python\nx = 1  # c\n```\n").latex
    for name in ("Shaded", "Highlighting", "NormalTok", "CommentTok", "OperatorTok", "DecValTok"):
        assert name in code and name in macros


# --- the LaTeX log ----------------------------------------------------------------------------------

@pytest.fixture()
def tex_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(paths, "TEX_DIR", tmp_path / "build/tex")
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    (tmp_path / "report").mkdir()
    (tmp_path / "report/aim.md").write_text("# Aim\n\nA first plain line of text.\n\n| Narrow | Table |\n|-|-|\n"
                                            "| Supercalifragilistic expialidocious | 1 |\n")
    (tmp_path / "build/tex").mkdir(parents=True)
    (tmp_path / "build/tex/report.tex").write_text(
        "\\documentclass{article}\n\\begin{document}\n% source: report/aim.md\n\\section{Aim}\n\n"
        "A first plain line of text.\n\n\\begin{longtable}{ll}\nNarrow & Table \\\\\n"
        "Supercalifragilistic expialidocious & 1 \\\\\n\\end{longtable}\n\\end{document}\n")
    return tmp_path


def write_log(project: Path, body: str) -> Path:
    log = project / "build/tex/report.log"
    log.write_text("This is pdfTeX\n" + body + "\nOutput written on report.pdf\n")
    return log


def test_an_overfull_line_is_a_warning_naming_the_content_file_and_line(tex_project: Path) -> None:
    log = write_log(tex_project, "Overfull \\hbox (41.72151pt too wide) in paragraph at lines 10--10\n"
                                 "[]|\\T1/lmr/m/n/10.95 (-20) Supercalifragilistic expialidocious|\n []\n\n"
                                 "Overfull \\hbox (0.5pt too wide) in paragraph at lines 6--6\n[]\\T1/lmr/m/n/10.95 A first|\n")
    [warning] = typeset.check_log(log)  # the half point is below the limit
    assert warning.path == tex_project / "report/aim.md" and warning.line == 7
    assert warning.points == pytest.approx(41.72151)
    assert str(warning).endswith("report/aim.md:7: a line sticks out of the margin by 41.7 pt near: Supercalifragilistic expialidocious")


def test_an_overfull_line_outside_any_content_file_is_still_reported(tex_project: Path) -> None:
    log = write_log(tex_project, "Overfull \\hbox (12.0pt too wide) detected at line 2\n[][]\n")
    [warning] = typeset.check_log(log)
    assert warning.path is None and str(warning).startswith("build/tex/report.tex: a line sticks out")


def test_undefined_references_and_missing_glyphs_stay_errors(tex_project: Path) -> None:
    with pytest.raises(BuildError, match="undefined reference `fig:x`"):
        typeset.check_log(write_log(tex_project, "LaTeX Warning: Reference `fig:x' on page 3 undefined on input line 9."))
    with pytest.raises(BuildError, match="has no"):
        typeset.check_log(write_log(tex_project, "Missing character: There is no ^^A in font cmr10!"))


@pytest.mark.parametrize(("message", "context", "advice"), [
    ("Undefined control sequence.", "The loss is $\\notamacro", "does not know the command \\notamacro"),
    ("Missing $ inserted.", "x^2", "outside $...$"),
    ("Double superscript.", "$x^a^", "x^{ab}"),
    ("Misplaced alignment tab character &.", "$a &", "\\&"),
    ("Illegal unit of measure (pt inserted).", "", "width=50%"),
])
def test_common_tex_errors_get_advice_in_words(message: str, context: str, advice: str) -> None:
    assert advice in typeset.human_hint(message, context)


def test_an_unknown_tex_error_gets_no_invented_advice() -> None:
    assert typeset.human_hint("Something entirely new.", "") is None


def test_the_first_error_of_a_log_is_read_with_its_file_line_and_context() -> None:
    log = ("./tikz/gan.tex:3: Missing $ inserted.\nl.3 x^2\n"
           "./report.tex:9: Undefined control sequence.\nl.9 The loss is \\oops\n")
    assert texrun.first_error(log) == texrun.LogError("Missing $ inserted.", "tikz/gan.tex", 3, "x^2")
    assert texrun.first_error(log, in_file="report.tex") == texrun.LogError(
        "Undefined control sequence.", "report.tex", 9, "The loss is \\oops")
    assert texrun.first_error("! Emergency stop.\n", in_file="report.tex") == texrun.LogError("Emergency stop.", None, None, "")
    preamble = "! LaTeX Error: Option clash for package xcolor.\nl.4 \\begin{document}\n./report.tex:4: Emergency stop.\n"
    assert texrun.first_error(preamble, in_file="report.tex").message == "LaTeX Error: Option clash for package xcolor."
    assert texrun.first_error("This is pdfTeX\nOutput written on report.pdf (1 page).\n") is None


def test_latex_failure_names_the_content_line_and_says_what_to_do(tex_project: Path) -> None:
    write_log(tex_project, "./report.tex:6: Undefined control sequence.\nl.6 A first plain line of text \\oops\n")
    error = typeset.latex_failure()
    assert error.path == tex_project / "report/aim.md" and error.line == 3
    assert "Undefined control sequence" in error.message and "\\oops" in error.hint


def test_an_argument_that_runs_to_the_end_of_the_file_is_traced_to_where_it_began(tex_project: Path) -> None:
    report = tex_project / "build/tex/report.tex"
    report.write_text(report.read_text().replace("A first plain line of text.", "A first plain \\(\\frac{a}{b\\) line of text."))
    write_log(tex_project, "Runaway argument?\n{b\\) line of text. \\par \\par \\begin {longtable}\\ETC.\n"
                           "! File ended while scanning use of \\frac .\n<inserted text>\n")
    error = typeset.latex_failure()
    assert error.path == tex_project / "report/aim.md" and error.line == 3
    assert "no matching }" in error.hint


def test_citations_become_numbered_natbib_citations_whether_bracketed_or_in_the_text(pandoc_cache: Path) -> None:
    # unsrturl has no author names, so natbib's \citet would print "(author?)": an in-text @key is numbered too.
    latex = content.pandoc_to_latex(Path("x.md"), "As @kaplan2020 show [@hoffmann2022; @brown2020]; see @fig:gan-ring.\n").latex
    assert "\\citep{kaplan2020}" in latex and "\\citep{hoffmann2022, brown2020}" in latex
    assert "\\citet" not in latex and "\\Cref{fig:gan-ring}" in latex


def test_bibtex_runs_when_the_citations_change_and_never_for_a_document_without_any(tmp_path: Path) -> None:
    runner = texrun.Runner(tmp_path, "0", 120)
    (tmp_path / "refs.bib").write_text("@misc{a, title = {A title}, author = {Some Author}, year = {2020}}\n")
    document = ("\\documentclass{article}\n\\usepackage[numbers]{natbib}\n\\begin{document}\nSome text%s.\n"
                "\\bibliographystyle{unsrturl}\n\\bibliography{refs}\n\\end{document}\n")

    def typeset_with(citation: str) -> texrun.PassesOutcome:
        (tmp_path / "report.tex").write_text(document % citation)
        return texrun.typeset(runner, "pdflatex", lambda: BuildError("LaTeX failed"), tmp_path / "report")

    assert typeset_with("").bibtex_runs == 0 and not (tmp_path / "report.bbl").exists()  # BibTeX would stop with an error
    assert typeset_with(" \\citep{a}").bibtex_runs == 1 and "Some Author" in (tmp_path / "report.bbl").read_text()
    assert typeset_with(" \\citep{a}").bibtex_runs == 0  # same citations, same .bib: the .bbl is kept
    assert typeset_with("").bibtex_runs == 0 and not (tmp_path / "report.bbl").exists()
