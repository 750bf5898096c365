"""The grader's side: the PDF carries its manifest, `check` works on any PDF anywhere, `check DIR` grades a class."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from genreport.grading import check, classcheck, verify
from genreport.latex import provenance
from tests.conftest import ROOT, build
from tests.pdfs import prose, student_report


def test_manifest_in_the_pdf_names_its_sources_results_figures_and_tools(fast_project: Path) -> None:
    data = (fast_project / "report.pdf").read_bytes()
    manifest = provenance.read(data)
    assert manifest is not None and provenance.intact(data, manifest)
    checklist = json.loads((fast_project / "build/tex/manifest.json").read_text())
    assert {key: manifest[key] for key in checklist} == checklist  # what the checklist needs, as the build saw it
    assert manifest["profile"] == "fast"
    for name, entry in manifest["results"].items():
        assert entry["digest"] == provenance.result_digests(name, fast_project / "build/results")["digest"]
    generated = [f for f in manifest["figures"] if f["file"].startswith("figures/")]
    assert len(generated) == 9 and all(f["drawn_by"].startswith("experiments/plots.py:") for f in generated)
    for figure in manifest["figures"]:
        assert figure["number"].isdigit()
        if figure in generated:
            assert figure["sha256"] == provenance.cache.file_digest(fast_project / figure["file"])
    assert manifest["files"]["report/aim.md"] == provenance.cache.file_digest(fast_project / "report/aim.md")
    assert manifest["versions"]["texlive"].startswith("pdfTeX") and manifest["versions"]["pandoc"]
    assert manifest["versions"]["torch"]


def test_result_digest_ignores_wall_clock_but_not_numbers(tmp_path: Path, fast_project: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(fast_project / "build/results", results)
    before = provenance.result_digests("vae", results)["digest"]
    metrics = json.loads((results / "vae.json").read_text())
    (results / "vae.json").write_text(json.dumps({**metrics, "seconds": metrics["seconds"] + 7}))
    assert provenance.result_digests("vae", results)["digest"] == before
    (results / "vae.json").write_text(json.dumps({**metrics, "latent_knn_accuracy": metrics["latent_knn_accuracy"] + 0.001}))
    assert provenance.result_digests("vae", results)["digest"] != before


def test_figure_provenance_table_in_the_pdf(fast_project: Path) -> None:
    manifest = provenance.read((fast_project / "report.pdf").read_bytes())
    text = " ".join(check.pdf_text(fast_project / "report.pdf").split())
    appendix = text[text.rfind("Figure provenance"):]
    for figure in manifest["figures"]:
        if figure["file"].startswith("figures/"):
            name = Path(figure["file"]).name
            digest = next(iter(figure["results"].values()))[:provenance.DIGEST_PREFIX]
            assert f"{figure['number']} {name} {Path(name).stem}()" in appendix
            assert digest in appendix


def test_pdf_copied_to_a_bare_directory_passes_the_full_checklist(fast_project: Path, tmp_path: Path) -> None:
    submitted = tmp_path / "student.pdf"
    shutil.copy(fast_project / "report.pdf", submitted)
    done = build(fast_project, "check", str(submitted))
    assert done.returncode == 0, done.stdout
    assert "manifest: embedded in the PDF" in done.stdout and "not run" not in done.stdout
    assert "[x] exercise 4: Impact of scaling in large language models" in done.stdout
    assert "[x] PDF unchanged since its build" in done.stdout


def test_pdf_without_manifest_gets_no_false_failures(fast_project: Path, tmp_path: Path) -> None:
    """pdfTeX's own output (before the manifest is embedded) stands in for a PDF from another tool."""
    submitted = tmp_path / "other-tool.pdf"
    shutil.copy(fast_project / "build/tex/report.pdf", submitted)
    done = build(fast_project, "check", str(submitted))
    assert done.returncode == 0, done.stdout
    assert "not run (the PDF carries no genreport manifest): the assignment's exercise headings" in done.stdout
    assert "[x] title block: register_number  (212223050033)" in done.stdout


def test_pdf_changed_after_its_build_is_reported(fast_project: Path, tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=PdfReader(fast_project / "report.pdf"))  # a full rewrite keeps the attachment
    writer.add_metadata({"/Title": "edited"})
    rewritten = tmp_path / "rewritten.pdf"
    writer.write(rewritten)
    manifest = provenance.read(rewritten.read_bytes())
    assert manifest is not None and not provenance.intact(rewritten.read_bytes(), manifest)
    done = build(fast_project, "check", str(rewritten))
    assert done.returncode == 1 and "[ ] PDF unchanged since its build" in done.stdout
    # An editor's incremental save keeps the built bytes first but appends a second update.
    appended = PdfWriter(fast_project / "report.pdf", incremental=True)
    appended.add_metadata({"/Title": "edited"})
    buffer = io.BytesIO()
    appended.write(buffer)
    assert buffer.getvalue().startswith((fast_project / "report.pdf").read_bytes())
    assert not provenance.intact(buffer.getvalue(), manifest)


def test_damaged_manifest_is_named_and_the_checks_still_run(tmp_path: Path) -> None:
    writer = PdfWriter(student_report(tmp_path / "a.pdf", "A B", "1", seed=1))
    writer.add_attachment(provenance.MANIFEST_NAME, b"{not json")
    buffer = io.BytesIO()
    writer.write(buffer)
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(buffer.getvalue())
    manifest, origin = check.manifest_for(damaged, damaged.read_bytes())
    assert manifest is None and origin.startswith("embedded manifest unreadable")
    items = {item.name: item.ok for item in check.run_checks(damaged, None)}
    # The checks that need no manifest ran on the text and passed; those that need one are "not run", never failed.
    assert items["heading AIM"] is True and items["heading RESULT"] is True
    assert items["title block: student_name"] is True
    assert items["the assignment's exercise headings"] is None and items["figure and table captions as built"] is None


# --- a whole class --------------------------------------------------------------------------------

@pytest.fixture()
def class_folder(tmp_path: Path) -> Path:
    """30 submissions: 24 independent reports, two sharing figures, one copying another's text,
    a truncated PDF, a text file named .pdf and a password-protected PDF."""
    folder = tmp_path / "submissions"
    folder.mkdir()
    for index in range(24):
        student_report(folder / f"s{index:02d}.pdf", f"Student {chr(65 + index)}", f"21222305{index:04d}", seed=index)
    rng = random.Random(99)
    shared = [bytes(rng.randrange(256) for _ in range(32 * 32 * 3)) for _ in range(2)]
    student_report(folder / "figures-a.pdf", "Ravi Shankar", "212223059001", seed=101, images=shared)
    student_report(folder / "figures-b.pdf", "Priya Nair", "212223059002", seed=102, images=shared)
    student_report(folder / "text-copy.pdf", "Arun Raj", "212223059003", seed=103, text=prose(5))
    intact = (folder / "s01.pdf").read_bytes()
    (folder / "truncated.pdf").write_bytes(intact[:len(intact) // 2])
    (folder / "notes.pdf").write_text("my notes, not a PDF\n")
    writer = PdfWriter(clone_from=PdfReader(folder / "s02.pdf"))
    writer.encrypt("secret")
    writer.write(folder / "encrypted.pdf")
    return folder


def test_class_check_writes_one_row_per_file_and_flags_copies(class_folder: Path) -> None:
    assert classcheck.main(class_folder) == 0
    out = class_folder / classcheck.OUTPUT_DIR
    rows = {row["file"]: row for row in csv.DictReader((out / "results.csv").open())}
    assert len(rows) == 30
    assert rows["truncated.pdf"]["status"] == "unreadable" and "truncated" in rows["truncated.pdf"]["reason"]
    assert "not a PDF" in rows["notes.pdf"]["reason"] and "encrypted" in rows["encrypted.pdf"]["reason"]
    assert rows["s07.pdf"]["student_name"] == "Student H" and rows["s07.pdf"]["register_number"] == "212223050007"
    assert rows["s07.pdf"]["pages"] == "4" and rows["s07.pdf"]["provenance"] == "none"
    flagged = {tuple(pair["files"]): pair["reasons"] for pair in json.loads((out / "flags.json").read_text())}
    assert set(flagged) == {("figures-a.pdf", "figures-b.pdf"), ("s05.pdf", "text-copy.pdf")}
    assert flagged[("figures-a.pdf", "figures-b.pdf")] == ["2 identical figures"]
    assert "text overlap" in flagged[("s05.pdf", "text-copy.pdf")][0]
    result = json.loads((out / "s07.json").read_text())
    assert result["max_score"] == len([t for t in result["tests"] if t["status"] != "not run"])
    assert {"name": "the assignment's exercise headings", "status": "not run", "output": check.NO_MANIFEST} in result["tests"]


def test_class_check_flags_identical_experiment_results(fast_project: Path, tmp_path: Path) -> None:
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(fast_project / "report.pdf", folder / "first.pdf")
    shutil.copy(fast_project / "report.pdf", folder / "second.pdf")
    student_report(folder / "other.pdf", "Someone Else", "212223059999", seed=7)
    assert classcheck.main(folder) == 0
    result = json.loads((folder / classcheck.OUTPUT_DIR / "first.json").read_text())
    assert result["provenance"] == "intact" and result["score"] == result["max_score"]
    assert result["flags"][0].startswith("with second.pdf: identical experiment results: dcgan, diffusion, gan, scaling, vae")
    assert json.loads((folder / classcheck.OUTPUT_DIR / "other.json").read_text())["flags"] == []


# --- verify ---------------------------------------------------------------------------------------

def bwrap_works() -> bool:
    bwrap = shutil.which("bwrap")
    return bwrap is not None and subprocess.run([bwrap, "--ro-bind", "/", "/", "--unshare-net", "true"], check=False).returncode == 0


def edit_number(pdf: Path, target: Path) -> tuple[str, str]:
    """Change the VAE's accuracy where the PDF first prints it, as an edit after the build would; returns (old, new)."""
    vae = json.loads((pdf.parent / "build/results/vae.json").read_text())
    old = f"{100 * vae['latent_knn_accuracy']:.1f}"
    new = ("1" if old[0] != "1" else "2") + old[1:]
    writer = PdfWriter(clone_from=PdfReader(pdf))
    for page in writer.pages:
        contents = page.get_contents()
        data = contents.get_data()
        if f"{old}%".encode() in data:
            contents.set_data(data.replace(f"{old}%".encode(), f"{new}%".encode(), 1))
            page.replace_contents(contents)
            writer.write(target)
            return old, new
    raise AssertionError(f"{old}% is not in any page's content stream")


def test_verify_names_a_number_edited_after_the_build(scratch_project: Path) -> None:
    old, new = edit_number(scratch_project / "report.pdf", scratch_project / "edited.pdf")
    arguments = ["verify", "edited.pdf", "--reuse-results", *(["--sandbox"] if bwrap_works() else [])]
    done = build(scratch_project, *arguments)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REWRITTEN OR EDITED after its build" in done.stdout
    assert "verdict: DOES NOT MATCH" in done.stdout
    assert re.search(rf"page \d+: {re.escape(new)} \(rebuild: {re.escape(old)}\) in \".*{re.escape(new)}%", done.stdout), done.stdout
    assert (scratch_project / "report.pdf").read_bytes() == (scratch_project / "build/verify/src/report.pdf").read_bytes()


def test_verify_of_an_untouched_pdf_is_identical(scratch_project: Path) -> None:
    done = build(scratch_project, "verify", "report.pdf", "--reuse-results")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: IDENTICAL" in done.stdout and "rebuilding with this checkout's cached experiment results" in done.stdout


def test_verify_compares_pages_text_and_figures(fast_project: Path, tmp_path: Path) -> None:
    original = fast_project / "report.pdf"
    shortened = tmp_path / "shortened.pdf"
    reader = PdfReader(original)
    # A page that holds a generated figure (its caption), wherever the text has moved it.
    removed = next(i for i, page in enumerate(reader.pages) if "Figure 2:" in page.extract_text())
    writer = PdfWriter(clone_from=reader)
    writer.remove_page(removed)
    writer.write(shortened)
    beyond, tolerated = verify.compare_text(verify.read_text(shortened), verify.read_text(original), rtol=0.01)
    assert beyond and all("missing from the PDF" in line for line in beyond) and not tolerated
    assert beyond[0].startswith(f"page {removed + 1} of the rebuild")
    manifest = provenance.read(original.read_bytes())
    figures_beyond, _ = verify.compare_figures(shortened, original, manifest, manifest)
    assert figures_beyond  # the removed page held a figure


def test_numbers_within_tolerance_are_told_apart_from_those_beyond() -> None:
    assert verify.within(85.3, 85.9, rtol=0.01) and not verify.within(85.3, 90.8, rtol=0.01)


def test_verify_says_so_when_the_pdf_has_no_manifest(fast_project: Path) -> None:
    done = build(fast_project, "verify", "build/tex/report.pdf")
    assert done.returncode == 2 and "carries no genreport manifest" in done.stderr


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not installed or cannot create namespaces here")
def test_sandbox_allows_writes_only_to_the_rebuild_directory_and_no_network(tmp_path: Path) -> None:
    # Not under /tmp, which the sandbox replaces with its own: a file the grader's checkout holds.
    writable, outside = tmp_path / "build", ROOT / "build" / f"sandbox-probe-{os.getpid()}"
    writable.mkdir()
    home = Path.home()
    listener = socket.create_server(("127.0.0.1", 0))  # the grader's machine: reachable from outside the sandbox only
    port = listener.getsockname()[1]
    script = ("import pathlib, socket, sys\n"
              f"pathlib.Path({str(writable / 'ok')!r}).write_text('ok')\n"
              f"try:\n    pathlib.Path({str(outside)!r}).write_text('escaped')\nexcept OSError:\n    print('read-only')\n"
              f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=5)\nexcept OSError:\n    print('no network')\n"
              f"print(*sorted(p.name for p in pathlib.Path({str(home)!r}).iterdir()))\n")
    done = subprocess.run(verify.sandboxed([sys.executable, "-c", script], writable, writable), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    listener.close()
    outside.unlink(missing_ok=True)
    assert done.stdout.split()[:3] == ["read-only", "no", "network"]
    # The grader's home is hidden, but for the Python interpreter the rebuild needs, if it lives there.
    interpreter = {Path(sys.executable).resolve().parent, Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    needed = {path.relative_to(home).parts[0] for path in interpreter if path.is_relative_to(home)}
    assert set(done.stdout.split()[3:]) == needed
    assert (writable / "ok").exists() and not outside.exists()


def test_verify_names_a_figure_replaced_after_the_build(fast_project: Path, tmp_path: Path) -> None:
    original = fast_project / "report.pdf"
    writer = PdfWriter(clone_from=PdfReader(original))
    for page in writer.pages:
        forms = [x.get_object() for x in ((page.get("/Resources") or {}).get("/XObject") or {}).values()
                 if x.get_object().get("/Subtype") == "/Form"]
        if forms:
            forms[0].set_data(forms[0].get_data() + b"\n0 0 m 100 100 l S\n")  # one extra line drawn on the figure
            break
    swapped = tmp_path / "swapped.pdf"
    writer.write(swapped)
    manifest = provenance.read(original.read_bytes())
    beyond, redrawn = verify.compare_figures(swapped, original, manifest, manifest)
    assert len(beyond) == 1 and not redrawn
    assert beyond[0].startswith("Figure 2 (figures/gan_ring.pdf), page") and "results it is drawn from are the same" in beyond[0]


def test_bitmap_fonts_in_a_figure_fail_the_font_check(tmp_path: Path) -> None:
    # matplotlib's default for PDFs is Type 3 (bitmap-like) fonts; a figure saved that way carries them into the report.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure()
    figure.text(0.5, 0.5, "loss")
    for fonttype, expected in ((3, ["Type 3 font"]), (42, [])):
        with matplotlib.rc_context({"pdf.fonttype": fonttype}):
            figure.savefig(tmp_path / f"type{fonttype}.pdf")
        structure = check.pdf_structure(tmp_path / f"type{fonttype}.pdf")
        assert [problem.split(" /")[0] for problem in structure.font_problems] == expected
    plt.close(figure)
