"""Bad input, interrupted builds and untrusted sources, each on a copy of the built fast project.

Every case checks the message a student would read and that the last good report.pdf is untouched.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def replace_line(path: Path, start: str, new: str | None) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(line if not line.startswith(start) else (new + "\n" if new is not None else "") for line in lines))


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


# Each case breaks the project in one way and names what the error must say (regexes on stderr).
BAD_INPUTS: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "unknown citation": (
        lambda p: append(p / "report/2-architectures.md", "\nAs shown before [@nosuchkey2099].\n"),
        [r"report/2-architectures\.md:\d+:", "nosuchkey2099", r"references\.bib"]),
    "reference to a missing figure": (
        lambda p: append(p / "report/4-scaling.md", "\nSee @fig:nothing-here for details.\n"),
        [r"report/4-scaling\.md:\d+:", "fig:nothing-here"]),
    "missing content file": (
        lambda p: (p / "report/3-applications.md").unlink(),
        [r"report\.toml:\d+:", "'Generative AI applications' is declared, but no file of report/ has it"]),
    "config value of the wrong type": (
        lambda p: replace_line(p / "report.toml", "experiment_number", 'experiment_number = "one"'),
        [r"report\.toml:\d+:", "experiment_number"]),
    "experiment setting of the wrong type": (
        lambda p: replace_line(p / "report.toml", "train_tokens = 40_000", 'train_tokens = "forty thousand"'),
        [r"report\.toml:\d+:", "train_tokens", "must be of type int"]),
    "config value missing": (
        lambda p: replace_line(p / "report.toml", "student_name", None),
        [r"report\.toml", "student_name"]),
    "Jinja syntax error in a content file": (
        lambda p: append(p / "report/aim.md", "\nWe captured {{ gan.ring.modes_captured modes.\n"),
        [r"report/aim\.md:\d+:", "template syntax"]),
    "Jinja syntax error in a LaTeX template": (
        lambda p: replace_line(p / "templates/report.tex.j2", r"\begin{document}", r"\begin{document}<% if %>"),
        [r"templates/report\.tex\.j2:\d+:", "template syntax"]),
    "replacement character from a broken paste": (
        lambda p: append(p / "report/1-foundations.md", "\nA human\ufffdlike answer.\n"),
        [r"report/1-foundations\.md:\d+:", "U\\+FFFD"]),
    "bytes that are not UTF-8": (
        lambda p: (p / "report/1-foundations.md").write_bytes((p / "report/1-foundations.md").read_bytes() + b"\nna\xefve caf\xe9\n"),
        [r"report/1-foundations\.md:\d+:", "not UTF-8"]),
    "character no loaded font has": (
        lambda p: append(p / "report/3-applications.md", "\nChat agents reply with emoji \U0001F979 now.\n"),  # Unicode 14: newer than Symbola
        [r"report/3-applications\.md:\d+: column 30:", "U\\+1F979"]),
    "CUDA asked for on a machine without it": (
        lambda p: shutil.rmtree(p / "build/cache/experiments/diffusion"),
        ["--device cuda was asked for", "--device cpu"]),
    "LaTeX error inside math": (
        lambda p: append(p / "report/4-scaling.md", "\nThe loss is $\\notamacro{L}$ here.\n"),
        ["LaTeX error", "Undefined control sequence", r"report/4-scaling\.md"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_stops_with_a_clear_error_and_keeps_the_pdf(scratch_project: Path, case: str) -> None:
    breaks, expected = BAD_INPUTS[case]
    if "CUDA" in case:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    before = (scratch_project / "report.pdf").read_bytes()
    breaks(scratch_project)
    done = build(scratch_project, "--fast", *(["--device", "cuda"] if "CUDA" in case else []))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for pattern in expected:
        assert re.search(pattern, done.stderr), f"{pattern!r} not in:\n{done.stderr}"
    assert len(done.stderr.strip().splitlines()) <= 25, "more than one screen"
    assert (scratch_project / "report.pdf").read_bytes() == before


def test_error_line_points_at_the_students_line(scratch_project: Path) -> None:
    content = scratch_project / "report/2-architectures.md"
    append(content, "\nAs shown before [@nosuchkey2099].\n")
    done = build(scratch_project, "--fast")
    assert f"build failed: report/2-architectures.md:{line_count(content)}:" in done.stderr  # relative to the project


def test_special_characters_come_out_as_typed(scratch_project: Path) -> None:
    ascii_specials = "Costs: 50% of $5 & #3_a {x} ~y ^z in C:\\temp"
    unicode_text = "naïve café — “quoted” … α β ≤ ∞"
    append(scratch_project / "report/aim.md", f"\n{ascii_specials}; {unicode_text}\n")
    done = build(scratch_project, "--fast")
    assert done.returncode == 0, done.stderr
    from pypdf import PdfReader

    text = " ".join(page.extract_text() for page in PdfReader(scratch_project / "report.pdf").pages[:4])
    assert ascii_specials in text
    # Text extraction drops the spaces around math symbols and spells the ellipsis as three dots.
    assert re.sub(r"\s", "", unicode_text.replace("…", "...")) in re.sub(r"\s", "", text)


# --- untrusted sources ---------------------------------------------------------------------------

def test_a_macro_that_never_ends_is_stopped_within_a_minute(scratch_project: Path) -> None:
    before = (scratch_project / "report.pdf").read_bytes()
    append(scratch_project / "report/aim.md", "\nLoop: $\\def\\again{\\again}\\again$.\n")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "build.py", "--fast"], cwd=scratch_project, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "GENREPORT_LATEX_TIMEOUT_S": "30"})
    assert time.monotonic() - start < 75
    assert done.returncode == 1 and "did not finish within" in done.stderr, done.stderr
    assert (scratch_project / "report.pdf").read_bytes() == before


def test_content_cannot_run_commands_or_read_outside_the_project(scratch_project: Path, tmp_path: Path) -> None:
    marker = tmp_path / "shell-escape-ran"
    append(scratch_project / "report/aim.md", f"\nShell: $\\immediate\\write18{{touch {marker}}}x$.\n")
    done = build(scratch_project, "--fast")
    assert not marker.exists()
    assert done.returncode == 0, done.stderr

    before = (scratch_project / "report.pdf").read_bytes()
    append(scratch_project / "report/aim.md", "\nSecret: $\\input{/etc/passwd}$.\n")
    done = build(scratch_project, "--fast")
    assert done.returncode == 1 and "LaTeX error" in done.stderr, done.stderr
    assert "root:" not in done.stderr and (scratch_project / "report.pdf").read_bytes() == before


# --- interrupted and concurrent builds ----------------------------------------------------------

def start_build(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "build.py", *args], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wait_for_line(process: subprocess.Popen, needle: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    for line in process.stdout:
        if needle in line:
            return
        assert time.monotonic() < deadline, f"no {needle!r} within {timeout} s"
    pytest.fail(f"build ended without printing {needle!r}")


def tex_processes(project: Path) -> list[int]:
    """PIDs of TeX programs working in the project's build/tex (they run in their own process group)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "comm").read_text().strip() in ("latexmk", "pdflatex", "bibtex", "perl") and \
                    Path(os.readlink(entry / "cwd")) == project / "build/tex":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_for_tex(project: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not tex_processes(project):
        assert time.monotonic() < deadline, f"LaTeX did not start within {timeout} s"
        time.sleep(0.05)


def kill_group(process: subprocess.Popen, sig: signal.Signals) -> int:
    os.killpg(process.pid, sig)
    return process.wait(timeout=60)


def statuses(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^(experiment \w+|latex|figures \(\d+\))\s+(reused|ran|redrew \d+)", stdout, re.MULTILINE))


def test_sigkill_in_the_middle_of_training_keeps_the_cache_consistent(scratch_project: Path) -> None:
    shutil.rmtree(scratch_project / "build/cache/experiments/gan")
    process = start_build(scratch_project, "--fast")
    wait_for_line(process, "running experiment gan")
    time.sleep(1.0)
    assert kill_group(process, signal.SIGKILL) == -signal.SIGKILL
    done = build(scratch_project, "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    status = statuses(done.stdout)
    assert status["experiment gan"] == "ran"
    assert status["experiment vae"] == status["experiment scaling"] == status["experiment diffusion"] == "reused"


@pytest.mark.parametrize("delay", [0.1, 0.4, 1.0])  # while torch loads, and while the model trains
def test_ctrl_c_in_the_middle_of_training_says_what_is_kept(scratch_project: Path, delay: float) -> None:
    shutil.rmtree(scratch_project / "build/cache/experiments/vae")
    process = start_build(scratch_project, "--fast")
    wait_for_line(process, "running experiment vae")
    time.sleep(delay)
    assert kill_group(process, signal.SIGINT) == 130
    rest = process.stdout.read()
    assert "interrupted" in rest and "Traceback" not in rest
    done = build(scratch_project, "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    assert statuses(done.stdout)["experiment gan"] == "reused" and statuses(done.stdout)["experiment vae"] == "ran"


def experiment_workers(project: Path) -> list[int]:
    """PIDs of Python processes (the experiment workers) whose working directory is the project."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "comm").read_text().strip().startswith("python") and Path(os.readlink(entry / "cwd")) == project \
                    and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_worker_killed_from_outside_fails_the_build_clearly(scratch_project: Path) -> None:
    shutil.rmtree(scratch_project / "build/cache/experiments/gan")
    shutil.rmtree(scratch_project / "build/cache/experiments/vae")
    process = start_build(scratch_project, "--fast")
    wait_for_line(process, "running experiment gan")
    time.sleep(0.5)
    workers = experiment_workers(scratch_project)
    assert workers, "no experiment worker found"
    os.kill(workers[0], signal.SIGKILL)  # as the kernel's out-of-memory killer would
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "worker process died" in rest and "Traceback" not in rest
    assert experiment_workers(scratch_project) == []


def test_no_worker_outlives_a_build_killed_alone(scratch_project: Path) -> None:
    shutil.rmtree(scratch_project / "build/cache/experiments/gan")
    process = start_build(scratch_project, "--fast")
    wait_for_line(process, "running experiment gan")
    assert experiment_workers(scratch_project)
    process.kill()  # the build process only, not its process group
    process.wait(timeout=60)
    deadline = time.monotonic() + 10
    while experiment_workers(scratch_project):
        assert time.monotonic() < deadline, "an experiment worker outlived the killed build"
        time.sleep(0.1)


def test_sigkill_in_the_middle_of_latex_keeps_the_pdf_and_recovers(scratch_project: Path) -> None:
    before = (scratch_project / "report.pdf").read_bytes()
    aim = scratch_project / "report/aim.md"
    original = aim.read_text(encoding="utf-8")
    # A pass over this report takes well under a second, less than it takes to see TeX start and kill
    # it; two thousand more paragraphs keep TeX busy for seconds, so the kill lands in the middle of a pass.
    append(aim, "".join(f"\nParagraph {i} added so that the pass takes a while.\n" for i in range(2000)))
    process = start_build(scratch_project, "--fast")
    wait_for_tex(scratch_project)
    time.sleep(0.2)
    kill_group(process, signal.SIGKILL)
    time.sleep(1.0)
    assert tex_processes(scratch_project) == [], "a TeX process outlived the killed build"
    assert (scratch_project / "report.pdf").read_bytes() == before
    aim.write_text(original + "\nA sentence added after the build was killed.\n", encoding="utf-8")
    done = build(scratch_project, "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    assert statuses(done.stdout)["latex"] == "ran"
    assert all(status == "reused" for name, status in statuses(done.stdout).items() if name.startswith("experiment"))
    assert (scratch_project / "report.pdf").read_bytes() != before


def test_two_builds_at_once_do_not_corrupt_each_other(scratch_project: Path) -> None:
    append(scratch_project / "report/aim.md", "\nA sentence that makes both builds typeset.\n")
    shutil.rmtree(scratch_project / "build/cache/experiments/diffusion")
    first = start_build(scratch_project, "--fast")
    wait_for_line(first, "running experiment diffusion")
    second = start_build(scratch_project, "--fast")
    second_out, _ = second.communicate(timeout=300)
    first_rest, _ = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, first_rest + second_out
    assert "another build is running" in second_out
    assert statuses(second_out)["experiment diffusion"] == "reused"  # it waited, then used the first build's result
    check = build(scratch_project, "check")
    assert check.returncode == 0, check.stdout
