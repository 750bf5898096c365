"""The unchanged build: answered from file metadata and git's status, before any stage starts.

Every stage already skips itself when the digest of its inputs is unchanged, but finding that out
parses the experiment and plotting code, reads every cached result to check its manifest and hashes
the PDF: about 0.15 s of CPU, three times what latexmk's own no-op takes. Like make, this looks at
size, modification time and inode of every file a stage reads or checks (configuration, content,
templates, the code, the virtualenv's package list, results.lock.json, every cache, result and figure,
report.pdf), and asks git for the commit and the changed files that the PDF's manifest names (as the
LaTeX stage's key in genreport/latex/document.py does); when none differs from the end of the last
successful build with the same options, it prints that build's summary as reused without starting any
stage. Any difference (an edit, a commit, a damaged or deleted cache entry, a package installed) runs
the full build, whose own digests then decide. The inputs are taken as the build starts and the
outputs as it ends, so a file saved while a build runs (which the build may or may not have read)
makes the next build a full one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path

from genreport import paths
from genreport.grading.check import VERDICT as CHECK_VERDICT  # a no-op build needs the last check to have passed

FINGERPRINT = paths.CACHE_DIR / "unchanged.fingerprint"
SUMMARY = paths.CACHE_DIR / "unchanged.summary"
# Written by every build itself, so never a reason to rebuild.
OWN_FILES = {FINGERPRINT.name, SUMMARY.name, ".lock"}


def _walk(root: Path, into: list[str]) -> None:
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except FileNotFoundError:
        into.append(f"{root} missing")
        return
    except NotADirectoryError:
        entries = []
    for entry in entries:
        if entry.name in OWN_FILES or entry.name == "__pycache__":
            continue
        if entry.is_dir(follow_symlinks=False):
            _walk(Path(entry.path), into)
        else:
            info = entry.stat(follow_symlinks=False)
            into.append(f"{entry.path} {info.st_size} {info.st_mtime_ns} {info.st_ino}")


def _stats(roots: list[Path], lines: list[str]) -> str:
    for root in roots:
        if root.is_dir():
            _walk(root, lines)
        else:
            info = root.stat() if root.exists() else None
            lines.append(f"{root} {info.st_size} {info.st_mtime_ns} {info.st_ino}" if info else f"{root} missing")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@functools.cache  # taken once, when the build starts: the no-op check and the record after the build share it
def inputs(options: str, config_file: Path) -> str:
    """What the stages read: taken when a build starts, so that a save during the build is not taken as built."""
    lines = [options, sys.executable, f"nvidia driver: {os.path.exists('/proc/driver/nvidia')}"]
    from genreport.build import versions
    from genreport.latex import provenance

    lines.append(f"site-packages: {json.dumps(versions.site_packages())}")  # a package installed or upgraded

    lines.append(f"git: {json.dumps(provenance.git_state(), sort_keys=True)}")  # report.pdf's manifest names them
    return _stats([config_file, paths.ROOT / "build.py", paths.RESULTS_LOCK, paths.CONTENT_DIR, paths.EXPERIMENTS_DIR,
                   paths.DIAGRAMS_DIR, paths.TEMPLATES_DIR, paths.ENGINE_ROOT / "genreport"], lines)


def outputs() -> str:
    """What the stages wrote and check: taken when a build has finished."""
    return _stats([paths.CACHE_DIR, paths.RESULTS_DIR, paths.FIGURES_DIR, paths.TEX_DIR / "manifest.json", paths.REPORT_PDF], [])


def answer(options: str, config_file: Path) -> bool:
    """Print the last build's summary and return True when nothing it depends on has changed."""
    if not (FINGERPRINT.exists() and SUMMARY.exists() and CHECK_VERDICT.exists()):
        return False
    if FINGERPRINT.read_text() != f"{inputs(options, config_file)} {outputs()}":
        return False
    print(SUMMARY.read_text(), end="")
    return True


def record(inputs_at_start: str, summary: str) -> None:
    """After a successful build: what a following unchanged build prints, and the state it is valid for."""
    from genreport.build import cache

    cache.write_atomic(SUMMARY, summary.encode())
    cache.write_atomic(FINGERPRINT, f"{inputs_at_start} {outputs()}".encode())
