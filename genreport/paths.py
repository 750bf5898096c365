"""Where every stage reads and writes. One place, so stages cannot disagree.

The engine (this package and its templates) and the report project it builds are two folders: for
Experiment 1 they are the same checkout; a lab made with `build.py new DIR` is its own folder, whose
build.py names the project in GENREPORT_PROJECT and uses this engine.
"""

import os
from pathlib import Path

PROJECT_VARIABLE = "GENREPORT_PROJECT"

ENGINE_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ENGINE_ROOT / "templates"  # the report's layout and pandoc's filter, shared by every lab

ROOT = Path(os.environ.get(PROJECT_VARIABLE) or ENGINE_ROOT).resolve()  # the report project
CONFIG_FILE = ROOT / "report.toml"
RESULTS_LOCK = ROOT / "results.lock.json"  # the author's results, committed: see genreport/build/lock.py
CONTENT_DIR = ROOT / "report"
EXPERIMENTS_DIR = ROOT / "experiments"  # the project's experiments and the plot functions that read their results
DIAGRAMS_DIR = ROOT / "templates" / "diagrams"  # the project's TikZ diagrams, typeset once each
BUILD_DIR = ROOT / "build"
CACHE_DIR = BUILD_DIR / "cache"
EXPERIMENT_CACHE_DIR = CACHE_DIR / "experiments"
EXPERIMENT_STAGE_RECORD = EXPERIMENT_CACHE_DIR / "last_run.json"  # wall clock of the last stage that trained
PANDOC_CACHE_DIR = CACHE_DIR / "pandoc"
RESULTS_DIR = BUILD_DIR / "results"
FIGURES_DIR = ROOT / "figures"
TEX_DIR = BUILD_DIR / "tex"
REPORT_PDF = ROOT / "report.pdf"


def shown(path: Path) -> str:
    """A path as messages and manifests name it: relative to the project, else to the engine, else absolute."""
    resolved = path.resolve()
    for base in (ROOT, ENGINE_ROOT):
        if resolved.is_relative_to(base):
            return str(resolved.relative_to(base))
    return str(resolved)
