"""`make bench`: speed ratios of the build against latexmk on the same generated sources.

Prints, in one run: no-op build vs latexmk's own no-op; one sentence edited vs latexmk after an
equivalent edit of the generated .tex; experiment wall times and training FLOP/s as a fraction of
this machine's fp32 matmul peak (measured here). Works on a copy so the checkout is untouched.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import copy_project


def timed(command: list[str], cwd: Path, repeat: int = 3) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


LATEXMK = ["latexmk", "-pdf", "-interaction=nonstopmode", "-silent", "report.tex"]


def matmul_peak_flops() -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    start, runs = time.perf_counter(), 20
    for _ in range(runs):
        a @ b
    return 2 * 1024**3 * runs / (time.perf_counter() - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        project = copy_project(Path(scratch))
        if (ROOT / "build" / "cache").exists():
            shutil.copytree(ROOT / "build" / "cache" / "experiments", project / "build" / "cache" / "experiments")
        python = [sys.executable, "build.py"]
        start = time.perf_counter()
        subprocess.run(python, cwd=project, check=True, capture_output=True)
        print(f"build from cached experiment results: {time.perf_counter() - start:.1f} s")

        tex = project / "build" / "tex"
        noop_ours, noop_latexmk = timed(python, project), timed(LATEXMK, tex)
        print(f"no-op build: {noop_ours:.3f} s vs latexmk no-op {noop_latexmk:.3f} s  ratio {noop_ours / noop_latexmk:.2f} (target <= 3, <= 0.3 s)")

        content = project / "report" / "aim.md"
        edits_ours, edits_latexmk = [], []
        for i in range(2):
            content.write_text(content.read_text() + f"\nEdited sentence number {i}.\n")
            start = time.perf_counter()
            subprocess.run(python, cwd=project, check=True, capture_output=True)
            edits_ours.append(time.perf_counter() - start)
            source = tex / "report.tex"
            source.write_text(source.read_text().replace("\\end{document}", f"Another edit {i}.\n\\end{{document}}"))
            start = time.perf_counter()
            subprocess.run(LATEXMK, cwd=tex, check=True, capture_output=True)
            edits_latexmk.append(time.perf_counter() - start)
        ours, theirs = statistics.median(edits_ours), statistics.median(edits_latexmk)
        print(f"one sentence edited: {ours:.2f} s vs latexmk {theirs:.2f} s  ratio {ours / theirs:.2f} (target <= 1.3)")

    peak = matmul_peak_flops()
    print(f"\nfp32 matmul peak measured here: {peak / 1e9:.1f} GFLOP/s")
    for name in ("gan", "vae", "scaling", "diffusion"):
        path = ROOT / "build" / "results" / f"{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        line = f"  {name:10s} {result['seconds']:7.1f} s on {result['device']}"
        if name == "scaling":
            flops = sum(m["flops"] for m in result["models"])
            seconds = sum(m["seconds"] for m in result["models"])
            line += f"  training {flops / seconds / 1e9:.2f} GFLOP/s = {flops / seconds / peak:.1%} of peak"
        print(line)


if __name__ == "__main__":
    main()
