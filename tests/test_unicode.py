"""Names and text in any script: the engine the build picks, the errors at the student's line and column, and
a report in a temporary copy whose name and text need LuaLaTeX, read back with pdftotext and PDFium, and its
Overleaf bundle typeset alone from its own font subsets."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pikepdf
import pytest

from genreport.build import config
from genreport.errors import BuildError
from genreport.export import fonts
from genreport.grading.check import run_checks
from genreport.grading.pdftext import pdf_text
from genreport.latex import engines
from tests.conftest import build, widen_page_range

# Names and phrases in each script; each goes on a line of its own, so a line break cannot split it.
HELD_OUT = {
    "vietnamese": "Nguyễn Thị Minh Khai",
    "tamil": "செயற்கை நுண்ணறிவு",
    "hindi": "कृत्रिम बुद्धिमत्ता",
    "greek": "Μηχανική μάθηση",
    "russian": "Машинное обучение",
    "chinese": "大语言模型",
    "japanese": "東京の大学で学ぶ",
    "bengali": "কৃত্রিম বুদ্ধিমত্তা",
    "emoji": "🚀",
}
STUDENT_NAME = "செல்வி அருண்மொழி"  # Tamil, in the title block


def test_latin_text_keeps_pdflatex() -> None:
    assert engines.engine_for(["Łukasz Żółć, café, “quotes” – α ≤ β"]) == engines.PDFLATEX
    assert engines.engine_for(["plain", HELD_OUT["vietnamese"]]) == engines.LUALATEX
    assert engines.engine_for(["Ελληνικά"]) == engines.LUALATEX  # a Greek word, not a maths letter


def test_report_toml_character_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    toml = tmp_path / "report.toml"
    toml.write_text('[report]\nexperiment_number = 1\ntitle = "T"\nstudent_name = "Ali علي"\n'
                    'register_number = "1"\ncourse = "C"\ndate = "D"\n', encoding="utf-8")
    with pytest.raises(BuildError, match=r"column 21: .*U\+0639 .*right-to-left") as error:
        config.load(toml)
    assert error.value.path == toml and error.value.line == 4


def test_report_toml_accepts_any_script_a_font_has(tmp_path: Path) -> None:
    toml = tmp_path / "report.toml"
    toml.write_text(f'[report]\nexperiment_number = 1\ntitle = "{HELD_OUT["chinese"]}"\nstudent_name = "{STUDENT_NAME}"\n'
                    'register_number = "1"\ncourse = "C"\ndate = "D"\n', encoding="utf-8")
    assert config.load(toml).title_block.student_name == STUDENT_NAME


def test_marks_leave_names_maths_and_verbatim_alone() -> None:
    latex = (r"\section{செயற்கை}\label{sec:செயற்கை} \(\alpha\) 大语言 \url{http://x/大}"
             "\n\\begin{verbatim}\nசெய\n\\end{verbatim}\n")
    marked = engines.mark_text(latex)
    tamil = engines.FALLBACK_FONTS.index(engines.font_for("ச"))
    hex_word = "செயற்கை".encode("utf-16-be").hex().upper()
    assert rf"\section{{\genreportscript{{{tamil}}}{{\genreportactualtext{{FEFF{hex_word}}}{{செயற்கை}}}}}}" in marked
    assert r"\label{sec:செயற்கை}" in marked and r"\url{http://x/大}" in marked and "\\(\\alpha\\)" in marked
    assert "\\begin{verbatim}\nசெய\n\\end{verbatim}" in marked
    assert r"大\genreportcjkbreak{}语\genreportcjkbreak{}言}" in marked


@pytest.fixture(scope="module")
def unicode_project(tmp_path_factory: pytest.TempPathFactory, fast_project: Path) -> tuple[Path, subprocess.CompletedProcess]:
    project = tmp_path_factory.mktemp("unicode") / "project"
    shutil.copytree(fast_project, project, symlinks=True)
    widen_page_range(project)
    toml = project / "report.toml"
    toml.write_text(re.sub(r'(?m)^student_name = .*$', f'student_name = "{STUDENT_NAME}"', toml.read_text()), encoding="utf-8")
    aim = project / "report" / "aim.md"
    phrases = "\n\n".join(HELD_OUT.values())
    aim.write_text(aim.read_text() + f"\n{phrases}\n\n| script | text |\n|---|---|\n| Tamil | {HELD_OUT['tamil']} |\n",
                   encoding="utf-8")
    return project, build(project, "--fast")


def test_unicode_report_builds_with_lualatex(unicode_project: tuple[Path, subprocess.CompletedProcess]) -> None:
    project, done = unicode_project
    assert done.returncode == 0, done.stdout + done.stderr
    assert "typesetting (lualatex" in done.stdout
    assert json.loads((project / "build/tex/manifest.json").read_text())["engine"] == engines.LUALATEX


def test_pdftotext_and_pdfium_give_every_string_back(unicode_project: tuple[Path, subprocess.CompletedProcess]) -> None:
    project, _ = unicode_project
    poppler = subprocess.run(["pdftotext", "report.pdf", "-"], cwd=project, capture_output=True, text=True, check=True).stdout
    pdfium = pdf_text(project / "report.pdf")
    for text in (poppler, pdfium):
        for phrase in [*HELD_OUT.values(), STUDENT_NAME]:
            assert phrase in text
    assert re.search(rf"Tamil\s+{HELD_OUT['tamil']}", pdfium)  # in the table too


def test_checklist_reads_the_name_in_its_script(unicode_project: tuple[Path, subprocess.CompletedProcess]) -> None:
    project, _ = unicode_project
    assert build(project, "check").returncode == 0
    manifest = json.loads((project / "build/tex/manifest.json").read_text())
    manifest["title_block"]["student_name"] = "செல்வன் அருண்"  # another Tamil name: a-z alone could not tell them apart
    failed = [item.name for item in run_checks(project / "report.pdf", manifest) if not item.ok]
    assert failed == ["title block: student_name"]


def test_fonts_are_embedded_and_subset(unicode_project: tuple[Path, subprocess.CompletedProcess]) -> None:
    project, _ = unicode_project
    names = set()
    with pikepdf.open(project / "report.pdf") as pdf:
        for page in pdf.pages:
            for font in (page.obj.Resources.get("/Font") or {}).values():
                names.add(str(font.BaseFont))
    assert {"NotoSerifTamil-Regular", "NotoSerifDevanagari-Regular", "NotoSerifBengali-Regular", "Symbola"} <= {
        name.split("+", 1)[-1] for name in names}
    assert all(re.fullmatch(r"/[A-Z]{6}\+.+", name) for name in names if "Noto" in name or "Symbola" in name)


def test_unicode_rebuild_is_byte_identical(unicode_project: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> None:
    project = tmp_path / "again"
    shutil.copytree(unicode_project[0], project, symlinks=True)
    first = hashlib.sha256((project / "report.pdf").read_bytes()).hexdigest()
    for typeset in ("build/tex", "build/cache/diagrams", "build/cache/latex.key", "report.pdf"):
        path = project / typeset
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    done = build(project, "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    assert hashlib.sha256((project / "report.pdf").read_bytes()).hexdigest() == first


def test_overleaf_fonts_become_relative_subsets_that_keep_what_shaping_needs() -> None:
    texts = ["மொழி", HELD_OUT["chinese"]]  # ொ, which HarfBuzz splits into ெ and ா; Chinese without kana: the .ttc's Chinese face
    verbatim = f"\\begin{{verbatim}}\n{texts[0]} {texts[1]}\n\\end{{verbatim}}"
    latex = f"{engines.font_families(texts)}\n\\directlua{{{engines.verbatim_fallbacks([verbatim], texts)}}}\n"
    assert "[/usr/share/fonts/" in latex and "FontIndex=2" in latex
    moved, subsets = fonts.bundle(latex, "".join(texts))
    assert fonts.bundle(latex, "".join(texts)) == (moved, subsets)  # the same bytes every time
    assert not fonts.ABSOLUTE_FONT.search(moved) and "/usr/" not in moved and "FontIndex" not in moved
    tamil = next(name for name in subsets if re.fullmatch(r"fonts/NotoSerifTamil-Regular-[0-9a-f]{8}\.ttf", name))
    chinese = next(name for name in subsets if re.fullmatch(r"fonts/NotoSerifCJKsc-Regular-[0-9a-f]{8}\.otf", name))
    assert f'"[{tamil}]:mode=harf;"' in moved and f'"[{chinese}]:mode=harf;"' in moved  # the verbatim fallback list
    assert f"{{{Path(tamil).name}}}[Path=fonts/," in moved
    from fontTools.ttLib import TTFont

    font = TTFont(io.BytesIO(subsets[tamil]))
    assert {0x0BCA, 0x0BC6, 0x0BBE} <= set(font.getBestCmap())  # ொ, and the ெ and ா HarfBuzz splits it into
    assert {"taml", "tml2"} <= {record.ScriptTag for record in font["GSUB"].table.ScriptList.ScriptRecord}
    assert font["head"].modified == TTFont(engines.font_path("NotoSerifTamil-Regular.ttf"))["head"].modified
    assert all(len(data) < 100_000 for data in subsets.values()), {name: len(data) for name, data in subsets.items()}


def test_overleaf_bundle_typesets_alone_with_lualatex(unicode_project: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> None:
    project, _ = unicode_project
    for output in ("build/export/overleaf.zip", "build/export/again.zip"):
        done = build(project, "export", "overleaf", "--no-build", "--out", output)
        assert done.returncode == 0, done.stdout + done.stderr
    bundle = (project / "build/export/overleaf.zip").read_bytes()
    assert (project / "build/export/again.zip").read_bytes() == bundle
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        names = archive.namelist()
        main = archive.read("main.tex").decode()
        latexmkrc = archive.read("latexmkrc").decode()
        archive.extractall(tmp_path / "overleaf")
    assert {"main.tex", "main.bbl", "references.bib", "actualtext.lua"} <= set(names)
    assert any(re.fullmatch(r"fonts/NotoSerifTamil-Regular-[0-9a-f]{8}\.ttf", name) for name in names)
    assert "$pdf_mode = 4;" in latexmkrc.splitlines() and "Typeset with lualatex" in main.splitlines()[0]
    assert str(project) not in main and not re.search(r"(?<![\w/])/(?:usr|home|var|opt|tmp|etc|root|srv|mnt)/", main)
    assert not [name for name in names if name.startswith("/") or ".." in name.split("/")]
    folder = tmp_path / "overleaf"
    # No -pdf or -lualatex: latexmkrc names the engine. No shell escape: the bundle needs none.
    done = subprocess.run(["latexmk", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "main.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert (folder / "main.log").read_text(errors="replace").startswith("This is LuaHBTeX")
    fls = (folder / "main.fls").read_text(errors="replace")
    assert not [root for root in engines.FONT_ROOTS if str(root) in fls or str(root).replace("/", ":") in fls]  # the bundle's fonts only
    text = subprocess.run(["pdftotext", "main.pdf", "-"], cwd=folder, capture_output=True, text=True, check=True).stdout
    for phrase in [*HELD_OUT.values(), STUDENT_NAME]:
        assert phrase in text
    with pikepdf.open(folder / "main.pdf") as bundled, pikepdf.open(project / "report.pdf") as built:
        assert len(bundled.pages) == len(built.pages)
    # The same pixels too: ActualText gives a word back however it was drawn, so a shaping a subset broke (மொ
    # printed as ம◌ொ when its font lost ெ and ா) passes the text check.
    for pdf, prefix in ((folder / "main.pdf", "bundle"), (project / "report.pdf", "build")):
        subprocess.run(["pdftoppm", "-r", "40", "-gray", str(pdf), str(tmp_path / prefix)], check=True, timeout=300)
    pages = sorted(tmp_path.glob("build-*.pgm"))
    different = [page.name for page in pages if page.read_bytes() != page.with_name(page.name.replace("build-", "bundle-")).read_bytes()]
    assert pages and not different, different
