"""Other labs' reports: `build.py new`, and the report's structure declared by the project, not the engine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genreport.grading.check import pdf_text
from tests.conftest import ROOT

TITLE = "Prompt Patterns for Code Generation"


def run_build(project: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    # A new project's build.py finds the engine itself; GENREPORT_PROJECT must not leak in from outside.
    env = {k: v for k, v in os.environ.items() if k != "GENREPORT_PROJECT"}
    return subprocess.run([sys.executable, "build.py", *args], cwd=project, capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)


def engine_status() -> str | None:
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    return done.stdout if done.returncode == 0 else None


ENGINE_STATUS_BEFORE: dict[str, str | None] = {}


@pytest.fixture(scope="module")
def new_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ENGINE_STATUS_BEFORE["status"] = engine_status()
    project = tmp_path_factory.mktemp("labs") / "exp2"
    done = subprocess.run([sys.executable, str(ROOT / "build.py"), "new", str(project), "--number", "2", "--title", TITLE,
                           "--exercise", "Zero-shot and few-shot prompts", "--exercise", "Chain of thought",
                           "--exercise", "Evaluation"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    built = run_build(project, "--fast")
    assert built.returncode == 0, built.stdout + built.stderr
    return project


def test_new_project_builds_to_a_checked_pdf_of_its_own(new_project: Path) -> None:
    text = pdf_text(new_project / "report.pdf")
    assert "EXPERIMENT 2" in text and TITLE in text
    for number, heading in enumerate(("Zero-shot and few-shot prompts", "Chain of thought", "Evaluation"), start=1):
        assert re.search(rf"^{number}\s+{heading}$", text, re.MULTILINE), heading
    assert "Figure 1:" in text and "example_fit.pdf" in text  # the example's figure and its provenance row
    # Nothing of Experiment 1: its text, its experiments, its figures.
    for foreign in ("Generative adversarial", "Shakespeare", "gan_ring", "EXPERIMENT 1"):
        assert foreign not in text
    assert sorted(p.name for p in (new_project / "figures").iterdir()) == ["example_fit.pdf"]
    done = run_build(new_project, "check", "report.pdf")
    assert done.returncode == 0, done.stdout
    assert "[x] exercise 3: Evaluation" in done.stdout


def test_new_project_numbers_come_from_its_experiment(new_project: Path) -> None:
    import json

    metrics = json.loads((new_project / "build/results/example.json").read_text())
    text = " ".join(pdf_text(new_project / "report.pdf").split())
    assert f"After {metrics['config']['steps']} steps" in text and f"{metrics['test_mse']:.3g}" in text


def test_new_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    done = subprocess.run([sys.executable, str(ROOT / "build.py"), "new", str(tmp_path), "--number", "3", "--title", "X"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "not empty" in done.stderr and sorted(os.listdir(tmp_path)) == ["notes.txt"]


@pytest.fixture()
def broken_copy(new_project: Path, tmp_path: Path) -> Path:
    """A copy of the built project (its results cached) that a test may break; report.pdf is the last good one."""
    target = tmp_path / "exp2"
    shutil.copytree(new_project, target, symlinks=True)
    return target


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize(("break_it", "where", "message"), [
    (lambda p: (p / "experiments/extra.py").write_text("from dataclasses import dataclass\n\n\n@dataclass(frozen=True)\nclass Config:\n    steps: int = 1\n"),
     r"experiments/extra\.py:5:", "no `def run"),
    (lambda p: _replace(p / "experiments/plots.py", "def example_fit(example: Result):", "def example_fit(exampel: Result):"),
     r"experiments/plots\.py:\d+:", "reads results of `exampel`"),
    (lambda p: _replace(p / "report.toml", '  "Evaluation",', '  "Evaluation",\n  "Ablations",'),
     r"report\.toml:19:", "'Ablations' is declared"),
    (lambda p: (p / "report/2-duplicate.md").write_text("# Another\n"),
     r"report/2-", "two sections have the number 2"),
    (lambda p: _replace(p / "report.toml", "seed = 0", "seed = 0\nsead = 1"), r"report\.toml:\d+:", "[build] has no setting `sead`"),
    (lambda p: _replace(p / "report.toml", "[profile.fast.example]", "[profile.fast.exampel]"),
     r"report\.toml:\d+:", "[profile.fast.exampel] names no experiment"),
])
def test_structure_errors_name_the_file_and_line_and_keep_the_pdf(broken_copy: Path, break_it, where: str, message: str) -> None:
    before = (broken_copy / "report.pdf").read_bytes()
    break_it(broken_copy)
    done = run_build(broken_copy, "--fast")
    assert done.returncode == 1, done.stdout
    assert re.search(where, done.stderr) and message in done.stderr, done.stderr
    assert (broken_copy / "report.pdf").read_bytes() == before


SWEEP_IN_PARTS = """
import os
from dataclasses import dataclass, replace

from genreport.experiments.common import Results


@dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...] = (1, 2, 3)
    seed: int = 0

    @classmethod
    def fast(cls) -> "Config":
        return cls()


def parts(config: Config) -> list[Config]:
    return [replace(config, sizes=(size,)) for size in config.sizes]


def run_part(part: Config, device_name: str = "auto") -> Results:
    (size,) = part.sizes
    return Results({"size": size, "square": size * size, "pid": os.getpid(), "parent": os.getppid()})


def combine(config: Config, results: list[Results], device_name: str = "auto") -> Results:
    return Results({"squares": [r.metrics["square"] for r in results], "pids": sorted({r.metrics["pid"] for r in results}),
                    "parents": sorted({r.metrics["parent"] for r in results}), "combined_by": os.getppid()})


def run(config: Config, device_name: str = "auto") -> Results:
    return combine(config, [run_part(part, device_name) for part in parts(config)], device_name)
"""


def test_an_experiment_in_parts_runs_them_in_workers_and_keeps_each_one(broken_copy: Path) -> None:
    import json

    (broken_copy / "experiments/sweep.py").write_text(SWEEP_IN_PARTS)
    done = run_build(broken_copy, "experiments", "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "experiment sweep: 3 parts, 0 cached" in done.stdout
    first = json.loads((broken_copy / "build/results/sweep.json").read_text())
    assert first["squares"] == [1, 4, 9]  # the parts' results, in the order parts() gave them
    # Run in worker processes of the build (one parent, not itself a worker), and combined in one too.
    assert len(first["parents"]) == 1 and first["parents"][0] not in first["pids"] and first["combined_by"] == first["parents"][0]
    # The combined result lost (as when a build is stopped before the combine): the parts are not run again.
    store = broken_copy / "build/cache/experiments/sweep"
    combined = [entry for entry in store.iterdir() if entry.is_dir() and (entry / "sweep.json").exists()
                and "squares" in json.loads((entry / "sweep.json").read_text())]
    assert len(combined) == 1
    shutil.rmtree(combined[0])
    again = run_build(broken_copy, "experiments", "--fast")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "experiment sweep: 3 parts, 3 cached" in again.stdout
    assert json.loads((broken_copy / "build/results/sweep.json").read_text())["pids"] == first["pids"]
    forced = run_build(broken_copy, "experiments", "--fast", "--force", "sweep")
    assert "experiment sweep: 3 parts, 0 cached" in forced.stdout, forced.stdout + forced.stderr


def test_an_experiment_with_parts_but_no_combine_is_refused(broken_copy: Path) -> None:
    (broken_copy / "experiments/sweep.py").write_text(SWEEP_IN_PARTS.replace("def combine(", "def merge("))
    done = run_build(broken_copy, "experiments", "--fast")
    assert done.returncode == 1
    assert re.search(r"experiments/sweep\.py:\d+:", done.stderr) and "not `combine`" in done.stderr, done.stderr


def test_a_text_only_lab_builds_without_torch(broken_copy: Path) -> None:
    shutil.rmtree(broken_copy / "experiments")
    shutil.rmtree(broken_copy / "build")
    first = broken_copy / "report/1-zero-shot-and-few-shot-prompts.md"
    first.write_text("# Zero-shot and few-shot prompts\n\nOnly words here.\n")
    _replace(broken_copy / "report.toml", "[profile.default.example]\nsteps = 400\n\n[profile.fast.example]\nsteps = 100\n", "")
    # Any import of torch by the build fails loudly: a module named torch that raises, first on the path.
    (broken_copy / "no_torch").mkdir()
    (broken_copy / "no_torch/torch.py").write_text("raise ImportError('torch was imported by a text-only build')\n")
    env = {**{k: v for k, v in os.environ.items() if k != "GENREPORT_PROJECT"}, "PYTHONPATH": str(broken_copy / "no_torch")}
    done = subprocess.run([sys.executable, "build.py"], cwd=broken_copy, capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "experiment" not in done.stdout.split("stage")[1].split("output:")[0].replace("experiments", "")
    assert "Only words here." in pdf_text(broken_copy / "report.pdf")


def test_the_engine_checkout_is_untouched_by_a_new_lab(new_project: Path) -> None:
    if ENGINE_STATUS_BEFORE["status"] is None:
        pytest.skip("the engine is not a git checkout")
    assert engine_status() == ENGINE_STATUS_BEFORE["status"]  # creating and building the lab wrote nothing into the engine


def test_a_lab_that_cites_nothing_exports_to_every_format(new_project: Path, tmp_path: Path) -> None:
    # A new lab cites nothing yet, so BibTeX never ran and there is no report.bbl to read.
    project = tmp_path / "lab"
    shutil.copytree(new_project, project, symlinks=True)
    assert not (project / "build/tex/report.bbl").exists()
    for target in ("github", "overleaf", "docx"):
        done = run_build(project, "export", target, "--no-build")
        assert done.returncode == 0, done.stdout + done.stderr
    readme = (project / "build/export/github/README.md").read_text(encoding="utf-8")
    assert readme.startswith("# Experiment 2:") and "![" in readme  # the title block and the example figure
    assert "References" not in readme  # no heading over an empty list
