"""Build with --fast in a temporary copy and check the PDF as a grader would."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from pypdf import PdfReader

from genreport.grading.check import normalise, run_checks
from tests.conftest import build


def pdf_text(project: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(project / "report.pdf").pages)


def test_pdf_has_title_block_headings_and_captions(fast_project: Path) -> None:
    text = pdf_text(fast_project)
    flat = normalise(text)
    for expected in ("EXPERIMENT 1", "Noorul aslina M", "212223050033", "AIM", "OUTPUT", "RESULT", "References"):
        assert expected in text
    for heading in ("Foundational concepts of Generative AI", "Generative AI architectures",
                    "Generative AI applications", "Impact of scaling in large language models"):
        assert normalise(heading) in flat
    manifest = json.loads((fast_project / "build/tex/manifest.json").read_text())
    assert len(manifest["figure_captions"]) >= 9
    for caption in manifest["figure_captions"]:
        assert normalise(caption)[:60] in flat
    assert "??" not in text


def test_grader_checklist_passes(fast_project: Path) -> None:
    done = build(fast_project, "check")
    assert done.returncode == 0, done.stdout
    manifest = json.loads((fast_project / "build/tex/manifest.json").read_text())
    assert all(item.ok for item in run_checks(fast_project / "report.pdf", manifest))


def test_checklist_fails_on_a_pdf_missing_things(fast_project: Path, tmp_path: Path) -> None:
    manifest = json.loads((fast_project / "build/tex/manifest.json").read_text())
    manifest["figure_captions"].append("A caption that is not in the document at all")
    failed = [item for item in run_checks(fast_project / "report.pdf", manifest) if not item.ok]
    assert {item.name for item in failed} >= {"every figure numbered and captioned"}


def test_sentence_numbers_come_from_results(fast_project: Path) -> None:
    gan = json.loads((fast_project / "build/results/gan.json").read_text())
    vae = json.loads((fast_project / "build/results/vae.json").read_text())
    text = " ".join(pdf_text(fast_project).split())
    ring = gan["ring"]
    assert f"captured {ring['modes_captured']} of {ring['modes_total']} modes with {100 * ring['high_quality_fraction']:.1f}% HQ" in text
    assert f"{100 * vae['latent_knn_accuracy']:.1f}% accurate" in text


def test_results_have_the_keys_other_stages_rely_on(fast_project: Path) -> None:
    results = {name: json.loads((fast_project / f"build/results/{name}.json").read_text())
               for name in ("gan", "dcgan", "vae", "scaling", "diffusion")}
    for key in ("modes_captured", "modes_total", "high_quality_fraction"):
        assert key in results["gan"]["ring"] and key in results["diffusion"]["ring"]
    for key in ("fd", "fd_real_floor", "class_entropy", "mean_confidence", "asked_digit_read"):
        assert key in results["dcgan"]
    assert {"test_neg_elbo", "latent_knn_accuracy"} <= set(results["vae"])
    for model in results["scaling"]["models"]:
        assert {"non_embedding_params", "tokens", "flops", "val_loss", "seconds"} <= set(model)
    assert {"alpha", "E", "A", "r2"} <= set(results["scaling"]["fit"])
    for result in results.values():
        assert {"config", "seed", "device", "versions", "seconds"} <= set(result)


def test_two_clean_builds_are_byte_identical(scratch_project: Path) -> None:
    first = hashlib.sha256((scratch_project / "report.pdf").read_bytes()).hexdigest()
    for generated in ("build", "figures", "report.pdf"):  # everything, cached experiment results too
        path = scratch_project / generated
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    done = build(scratch_project, "--fast")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^experiment gan\s+ran", done.stdout, re.MULTILINE)  # rerun from nothing, not reused
    assert hashlib.sha256((scratch_project / "report.pdf").read_bytes()).hexdigest() == first


def test_text_edit_reruns_only_latex(scratch_project: Path) -> None:
    content = scratch_project / "report/aim.md"
    content.write_text(content.read_text() + "\nOne more sentence about 50% & $5 costs_with #hash.\n")
    done = build(scratch_project, "--fast")
    assert done.returncode == 0, done.stderr
    assert re.search(r"experiment gan\s+reused", done.stdout)
    assert re.search(r"figures \(\d+\)\s+reused", done.stdout)
    assert re.search(r"latex\s+ran", done.stdout)
    assert "50% & $5 costs_with #hash" in pdf_text(scratch_project)


def test_failed_build_keeps_last_good_pdf(scratch_project: Path) -> None:
    before = (scratch_project / "report.pdf").read_bytes()
    content = scratch_project / "report/3-applications.md"
    content.write_text(content.read_text() + "\nA broken paste: human\ufffdlike text.\n")
    done = build(scratch_project, "--fast")
    assert done.returncode == 1
    assert "3-applications.md" in done.stderr and "U+FFFD" in done.stderr
    assert (scratch_project / "report.pdf").read_bytes() == before
