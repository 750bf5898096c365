"""The build's summary table: printed at the end of a build, and read back by `make watch` and `make bench`."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

from genreport import paths


def unchanged_summary(summary: list[tuple[str, str, float]], pages: int | None, warnings: list[str],
                      results_verdict: list[str], verdict: Path) -> str:
    """What this build would print if it ran again with nothing changed (results.lock.json is among the
    no-op check's inputs, so the comparison with it still holds)."""
    text = io.StringIO()
    with redirect_stdout(text):
        print_summary([(name, "reused", 0.0) for name, status, _ in summary if status], pages, warnings)
        print("\n".join(results_verdict))
    passed = verdict.read_text().split()[1]
    return text.getvalue() + f"checklist: {passed} passed (same PDF as at the last check)\n"


# A stage's line in print_summary's table, as `make watch` and `make bench` read it back from a build's output.
STAGE_LINE = re.compile(r"^(experiment \w+|figures \(\d+\)|latex)\s+(reused|ran|redrew \d+)\s+([\d.]+)$", re.MULTILINE)


def read_summary(stdout: str) -> list[tuple[str, str, float]]:
    """The stage lines of a build's printed summary: (stage, status, seconds)."""
    return [(name, status, float(seconds)) for name, status, seconds in STAGE_LINE.findall(stdout)]


def print_summary(summary: list[tuple[str, str, float]], pages: int | None, warnings: list[str]) -> None:
    width = max(len(name) for name, *_ in summary)
    print("\nstage".ljust(width + 2) + "  status       seconds")
    for name, status, seconds in summary:
        print(f"{name.ljust(width)}  {status.ljust(11)}  {seconds:7.1f}")
    if paths.REPORT_PDF.exists():
        if pages is None:
            manifest = paths.TEX_DIR / "manifest.json"
            pages = json.loads(manifest.read_text()).get("pages") if manifest.exists() else "?"
        print(f"\noutput: {paths.REPORT_PDF.relative_to(paths.ROOT)} ({pages} pages)")
    if warnings:
        print(f"\nwarnings ({len(warnings)}; `--strict` makes them errors):")
        for warning in warnings:
            print(f"  {warning}")
