"""Sentences about our experiments follow the results: typeset the report with doctored results and read it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pypdf import PdfReader

TYPESET_ONLY = ("from pathlib import Path; from genreport.build import config; from genreport.latex import document; "
                "document.build(config.load(Path('report.toml').resolve()), force=True)")


def flat_text(pdf: Path) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(pdf).pages).split())


def doctor(results: Path, name: str, change) -> None:
    path = results / f"{name}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def collapsed_gan(gan: dict) -> None:
    gan["ring"].update(modes_captured=5, high_quality_fraction=0.612)
    for run in gan["ring"]["seeds"]:
        run.update(modes_captured=5, high_quality_fraction=0.612)


def test_text_changes_with_a_doctored_result(scratch_project: Path) -> None:
    before = flat_text(scratch_project / "report.pdf")
    results = scratch_project / "build/results"
    gan = json.loads((results / "gan.json").read_text())
    scaling = json.loads((results / "scaling.json").read_text())
    # The undoctored report says what its own results say.
    assert ("captured all 8 modes of the ring" in before) == (gan["ring"]["modes_captured"] == 8)
    assert ("fell with every increase in size" in before) == scaling["loss_decreases_with_size"]

    doctor(results, "gan", collapsed_gan)
    doctor(results, "scaling", lambda s: s.update(loss_decreases_with_size=False))
    # The LaTeX stage alone: a full build would first restore build/results from the experiment cache.
    done = subprocess.run([sys.executable, "-c", TYPESET_ONLY], cwd=scratch_project, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    after = flat_text(scratch_project / "report.pdf")
    assert "captured 5 of the 8 modes of the ring" in after
    assert "61.2% HQ" in after
    assert "captured all 8 modes" not in after
    assert "did not fall with every increase in size" in after
    assert "fell with every increase in size" not in after.replace("did not fall with every increase in size", "")
