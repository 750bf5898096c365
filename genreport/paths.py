"""Where every stage reads and writes. One place, so stages cannot disagree."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / "report.toml"
RESULTS_LOCK = ROOT / "results.lock.json"  # the author's results, committed: see genreport/lock.py
CONTENT_DIR = ROOT / "report"
TEMPLATES_DIR = ROOT / "templates"
BUILD_DIR = ROOT / "build"
CACHE_DIR = BUILD_DIR / "cache"
EXPERIMENT_CACHE_DIR = CACHE_DIR / "experiments"
EXPERIMENT_STAGE_RECORD = EXPERIMENT_CACHE_DIR / "last_run.json"  # wall clock of the last stage that trained
PANDOC_CACHE_DIR = CACHE_DIR / "pandoc"
RESULTS_DIR = BUILD_DIR / "results"
FIGURES_DIR = ROOT / "figures"
TEX_DIR = BUILD_DIR / "tex"
REPORT_PDF = ROOT / "report.pdf"
