"""Every kind of Markdown a student writes typesets: the corpus in tests/markdown/ built once, on a copy."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.conftest import build, widen_page_range

CORPUS = Path(__file__).parent / "markdown" / "features.md"


def draw_images(folder: Path) -> None:
    """The corpus's images, drawn here so that the repository holds no binaries: a PNG, a JPEG, a PDF."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    screenshot = Image.new("RGB", (480, 240), "white")
    draw = ImageDraw.Draw(screenshot)
    draw.rectangle((10, 10, 470, 230), outline="navy", width=4)
    draw.text((30, 100), "a PNG screenshot", fill="navy", font_size=36)
    screenshot.save(folder / "shot.png")
    photo = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    ImageDraw.Draw(photo).ellipse((100, 60, 220, 180), fill="darkorange")
    photo.save(folder / "photo.jpg", quality=85)
    drawing = Image.new("RGB", (600, 200), "white")
    ImageDraw.Draw(drawing).polygon([(20, 180), (300, 20), (580, 180)], outline="darkgreen", width=6)
    drawing.save(folder / "drawing.pdf")


def install_corpus(project: Path) -> None:
    content = project / "report"
    result = content / "result.md"
    result.write_text(result.read_text(encoding="utf-8") + "\n" + CORPUS.read_text(encoding="utf-8"), encoding="utf-8")
    widen_page_range(project)
    draw_images(content / "images")


@pytest.fixture(scope="module")
def corpus_project(fast_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("corpus") / "project"
    shutil.copytree(fast_project, project, symlinks=True)
    install_corpus(project)
    done = build(project, "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    return project


def test_every_feature_of_the_corpus_is_in_the_pdf(corpus_project: Path) -> None:
    text = "\n".join(page.extract_text() for page in PdfReader(corpus_project / "report.pdf").pages)
    flat = re.sub(r"\s+", "", text)
    markers = sorted(set(re.findall(r"\w*Marker\b", CORPUS.read_text(encoding="utf-8"))) - {"FeatureNameMarker"})
    assert len(markers) > 30
    missing = [marker for marker in markers if marker not in flat]
    assert not missing, f"not in the PDF: {missing}"
    for row in (1, 35, 70):  # the long table: every row, on more than one page
        assert f"LongRow{row}" in flat
    assert "??" not in text


def test_a_line_that_sticks_out_warns_with_its_content_line_and_strict_refuses_it(corpus_project: Path) -> None:
    # The corpus's captioned pipe table gives its first column 7 dashes of 44, too narrow for its one long word.
    line = next(number for number, text in enumerate((corpus_project / "report/result.md").read_text().splitlines(), start=1)
                if "PipeCaptionedMarker" in text)
    done = build(corpus_project, "--fast")
    assert done.returncode == 0, done.stderr
    assert re.search(r"latex\s+reused", done.stdout)  # an unchanged build still shows its warnings
    assert re.search(rf"report/result\.md:{line}: a line sticks out of the margin by [\d.]+ pt near: PipeCaptionedMarker", done.stdout), done.stdout
    # and it is the only one: long URLs, code lines, identifiers and wide images found room
    assert "warnings (1;" in done.stdout, done.stdout
    assert build(corpus_project, "check").returncode == 0
    strict = build(corpus_project, "check", "--strict")
    assert strict.returncode == 1 and "no line sticks out of the margin" in strict.stdout, strict.stdout
    before = (corpus_project / "report.pdf").read_bytes()
    refused = build(corpus_project, "--fast", "--strict")
    assert refused.returncode == 1 and "stick out of the margin" in refused.stderr, refused.stderr
    assert (corpus_project / "report.pdf").read_bytes() == before


def test_an_edited_image_retypesets_and_an_untouched_one_does_not(corpus_project: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(corpus_project, project, symlinks=True)
    assert re.search(r"latex\s+reused", build(project, "--fast").stdout)
    from PIL import Image

    Image.new("RGB", (480, 240), "black").save(project / "report/images/shot.png")
    done = build(project, "--fast")
    assert done.returncode == 0 and re.search(r"latex\s+ran", done.stdout), done.stdout + done.stderr
    assert (project / "build/tex/content/images/shot.png").read_bytes() == (project / "report/images/shot.png").read_bytes()


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def huge_png(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (12_000, 10)).save(path)


# Each case: the image reference appended to report/aim.md, what to put on disk, what the error must say.
BAD_IMAGES: dict[str, tuple[str, Callable[[Path], None], list[str]]] = {
    "missing file": ("images/nothere.png", lambda p: None, ["no such file", "report/images/nothere.png"]),
    "text file named .png": ("images/fake.png", lambda p: write_bytes(p / "report/images/fake.png", b"not an image\n"),
                             ["not an image"]),
    "JPEG named .png": ("images/photo.png", lambda p: shutil.copy(p / "report/images/photo.jpg", p / "report/images/photo.png"),
                        ["a JPEG file", r"\.png"]),
    "path with ..": ("../report.toml", lambda p: None, ["leaves report/"]),
    "absolute path": ("/etc/passwd", lambda p: None, ["leaves report/"]),
    "symlink out of report/": ("images/link.png", lambda p: (p / "report/images/link.png").symlink_to(p / "report.toml"),
                               ["symbolic link"]),
    "too many pixels": ("images/huge.png", lambda p: huge_png(p / "report/images/huge.png"), ["12,000 x 10 pixels", "too large"]),
    "too many bytes": ("images/big.pdf", lambda p: write_bytes(p / "report/images/big.pdf", b"%PDF-1.4\n" + bytes(21 * 2**20)),
                       ["21 MB is too large"]),
    "format pdfLaTeX cannot include": ("images/plot.svg", lambda p: write_bytes(p / "report/images/plot.svg", b"<svg/>"),
                                       ["cannot include .svg", "PNG"]),
    "web address": ("https://example.org/x.png", lambda p: None, ["not web addresses"]),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_a_bad_image_stops_the_build_naming_the_content_line(corpus_project: Path, tmp_path: Path, case: str) -> None:
    src, make, expected = BAD_IMAGES[case]
    project = tmp_path / "project"
    shutil.copytree(corpus_project, project, symlinks=True)
    before = (project / "report.pdf").read_bytes()
    make(project)
    aim = project / "report/aim.md"
    aim.write_text(aim.read_text(encoding="utf-8") + f"\n![My own image.]({src}){{width=50%}}\n", encoding="utf-8")
    done = build(project, "--fast")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    line = len(aim.read_text(encoding="utf-8").splitlines())
    assert f"report/aim.md:{line}: image {src!r}" in done.stderr, done.stderr
    for pattern in expected:
        assert re.search(pattern, done.stderr), f"{pattern!r} not in:\n{done.stderr}"
    assert (project / "report.pdf").read_bytes() == before
