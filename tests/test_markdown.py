"""Every kind of Markdown a student writes typesets: the corpus in tests/markdown/ built once, on a copy."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.conftest import build

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
