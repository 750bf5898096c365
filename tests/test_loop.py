"""The edit loop: the precompiled preamble, cached diagrams, passes only while needed, --explain, the no-op."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import build


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def explained(project: Path, *args: str) -> str:
    """Build the fast profile with --explain (and `args`); the build must succeed. Returns its output."""
    done = build(project, "--fast", *args, "--explain")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def why(stdout: str, unit: str) -> tuple[str, str]:
    """(status, reason) of one unit in the --explain listing."""
    match = re.search(rf"^\s+{re.escape(unit)}\s+(reran|reused)\s+(.*)$", stdout, re.MULTILINE)
    assert match, f"{unit!r} not explained in:\n{stdout}"
    return match.group(1), match.group(2)


def test_a_sentence_edit_takes_one_pass_and_equals_a_clean_build(scratch_project: Path) -> None:
    # A word changed for one of the same length: the text moves no page break, so no page number in the
    # .aux or .toc changes and one pass is all LaTeX needs (an edit that moves a heading's page needs two).
    aim = scratch_project / "report/aim.md"
    edited = aim.read_text().replace("To develop a comprehensive report", "To prepare a comprehensive report", 1)
    assert edited != aim.read_text()
    aim.write_text(edited)
    out = explained(scratch_project)
    assert why(out, "latex") == ("reran", "report/aim.md changed")
    assert why(out, "preamble format")[0] == "reused"
    assert why(out, "diagram gan")[0] == "reused"
    assert "pdflatex pass 1" in out and "pdflatex pass 2" not in out
    assert why(out, "experiment gan")[0] == "reused"
    assert why(out, "figure gan_ring.pdf") == ("reused", "key matched")
    incremental = digest(scratch_project / "report.pdf")

    shutil.rmtree(scratch_project / "build/tex")  # the format, the passes' .aux/.toc/.bbl, the diagrams' copies
    shutil.rmtree(scratch_project / "build/cache/diagrams")
    out = explained(scratch_project, "--force", "latex")
    assert why(out, "preamble format") == ("reran", "no format built yet")
    assert "pdflatex pass 2" in out  # a clean build needs the .aux, .toc and .bbl passes
    assert digest(scratch_project / "report.pdf") == incremental


def test_a_new_citation_runs_bibtex_and_the_passes_it_needs(scratch_project: Path) -> None:
    aim = scratch_project / "report/aim.md"
    bib = (scratch_project / "report/references.bib").read_text()
    # Not cited in the first section yet: citing it there adds it or moves it up the numbered list.
    key = next(k for k in re.findall(r"^@\w+\{([^,]+),", bib, re.MULTILINE) if f"@{k}" not in aim.read_text())
    append(aim, f"\nAs argued before [@{key}].\n")
    out = explained(scratch_project)
    assert why(out, "BibTeX") == ("reran", "the citations in report.aux or references.bib changed")
    assert "pdflatex pass 2" in out


def test_a_damaged_format_or_diagram_is_rebuilt_not_used(scratch_project: Path) -> None:
    fmt = scratch_project / "build/tex/preamble.fmt"
    fmt.write_bytes(fmt.read_bytes()[: fmt.stat().st_size // 2])
    (entry,) = [p for p in (scratch_project / "build/cache/diagrams/gan").iterdir() if p.is_dir()]
    (entry / "gan.pdf").write_bytes(b"%PDF-1.5 damaged")
    append(scratch_project / "report/aim.md", "\nA sentence so that LaTeX runs.\n")
    out = explained(scratch_project)
    assert why(out, "preamble format") == ("reran", "the format file was damaged (its digest does not match), so it was rebuilt")
    assert why(out, "diagram gan") == ("reran", "its cached PDF was missing or damaged")
    assert why(out, "diagram vae")[0] == "reused"


def test_a_preamble_change_rebuilds_the_format_and_the_diagrams(scratch_project: Path) -> None:
    config = scratch_project / "report.toml"
    config.write_text(re.sub(r'^title = "', 'title = "Revised: ', config.read_text(), count=1, flags=re.MULTILINE))
    out = explained(scratch_project)
    assert why(out, "latex")[1].startswith('report.toml report.title: "Comprehensive')  # the key, not just the file
    assert why(out, "preamble format")[1].startswith("the preamble changed")  # the PDF title is set in the preamble
    assert why(out, "diagram gan") == ("reran", "the preamble's format changed")


def test_explain_names_the_config_key_that_reran_an_experiment(scratch_project: Path) -> None:
    append(scratch_project / "report.toml", "\n[profile.fast.diffusion]\ntrain_steps = 150\n")
    out = explained(scratch_project)
    assert why(out, "experiment diffusion") == ("reran", "report.toml profile.fast.diffusion.train_steps is new")
    assert why(out, "experiment gan")[0] == "reused"
    assert why(out, "figure diffusion_reverse.pdf") == ("reran", "build/results/diffusion.json changed; build/results/diffusion.npz changed")
    assert why(out, "figure gan_ring.pdf") == ("reused", "key matched")


def test_an_unchanged_build_is_answered_but_a_damaged_output_is_not_missed(scratch_project: Path) -> None:
    assert build(scratch_project, "--fast").returncode == 0
    done = build(scratch_project, "--fast")
    assert done.returncode == 0 and "same PDF as at the last check" in done.stdout
    assert re.search(r"^latex\s+reused", done.stdout, re.MULTILINE)
    assert re.search(r"^results: (identical|differ|not compared)", done.stdout, re.MULTILINE)  # the lock's verdict, every time
    figure = scratch_project / "figures/gan_ring.pdf"
    figure.write_bytes(figure.read_bytes() + b"\n% damaged")
    done = build(scratch_project, "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^figures \(9\)\s+redrew 1", done.stdout, re.MULTILINE)


def test_a_half_written_aux_from_a_killed_build_is_discarded(scratch_project: Path) -> None:
    aux = scratch_project / "build/tex/report.aux"
    aux.write_bytes(aux.read_bytes()[:3000])  # what a pass killed while writing it leaves
    append(scratch_project / "report/aim.md", "\nA sentence after the killed build.\n")
    out = explained(scratch_project)
    assert why(out, "started over")[1].startswith("the pass reading report.aux")


def test_an_error_in_the_text_is_reported_without_starting_over(scratch_project: Path) -> None:
    append(scratch_project / "report/aim.md", "\nThe loss is $\\notamacro{L}$ here.\n")
    done = build(scratch_project, "--fast")
    assert done.returncode == 1 and "report/aim.md" in done.stderr and "Undefined control sequence" in done.stderr
    assert (scratch_project / "build/tex/.bibtex-inputs").exists()  # starting over would have discarded it


def test_a_commit_is_not_an_unchanged_build_so_the_pdf_names_the_new_commit(scratch_project: Path) -> None:
    from genreport.latex import provenance

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.org", *args], cwd=scratch_project,
                              capture_output=True, text=True, check=True).stdout.strip()

    (scratch_project / ".gitignore").write_text("build/\nfigures/\nreport.pdf\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "first")
    assert build(scratch_project, "--fast").returncode == 0
    assert build(scratch_project, "--fast").stdout.count("same PDF as at the last check") == 1
    git("commit", "-q", "--allow-empty", "-m", "second")  # no file changes: only the commit differs
    done = build(scratch_project, "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "same PDF as at the last check" not in done.stdout
    assert provenance.read(scratch_project / "report.pdf")["source"]["commit"] == git("rev-parse", "HEAD")
