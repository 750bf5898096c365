"""Shared fixtures: a fast-profile build in a temporary copy of the project, made once per session."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("build.py", "report.toml", "genreport", "templates", "report", "experiments")


def copy_project(target: Path) -> Path:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    return target


def widen_page_range(project: Path) -> None:
    """For a test that adds pages of its own: the assignment's page limit is not what it tests."""
    toml = project / "report.toml"
    widened, count = re.subn(r"(?m)^pages = \[(\d+), \d+\]", r"pages = [\1, 99]", toml.read_text(encoding="utf-8"))
    assert count == 1, "report.toml declares no page range to widen"
    toml.write_text(widened, encoding="utf-8")


def build(project: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "build.py", *args], cwd=project, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def fast_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("project"))
    done = build(project, "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    return project


@pytest.fixture()
def scratch_project(fast_project: Path, tmp_path: Path) -> Path:
    """A copy of the built fast project (cached results included) that a test may break."""
    target = tmp_path / "project"
    shutil.copytree(fast_project, target, symlinks=True)
    return target
