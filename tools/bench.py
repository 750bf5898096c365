"""`make bench`: speed ratios of the build against latexmk on the same generated sources.

Prints, in one run: no-op build vs latexmk's own no-op; one sentence edited vs latexmk on the .tex
that edit generated (latexmk reads the preamble and draws the TikZ diagrams on every run, as the build
did before it precompiled the one and cached the other), for the Latin report (pdfLaTeX) and for one whose
name and text need the Unicode engine (LuaLaTeX, against latexmk -lualatex); experiment wall times and training FLOP/s as a fraction of
this machine's fp32 matmul peak (measured here); with `build.py watch` running, the seconds from a
save to the new report.pdf for a sentence and for a plot. Works on a copy so the checkout is untouched.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genreport import paths
from genreport.build.summary import read_summary
from tests.conftest import copy_project, widen_page_range


@dataclass
class Cost:
    """Wall clock and CPU seconds (user + system of the command and its children) of one command."""
    wall: float
    cpu: float


def run_measured(command: list[str], cwd: Path) -> tuple[Cost, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Cost(wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime), done.stdout


def median(costs: list[Cost]) -> Cost:
    return Cost(statistics.median(c.wall for c in costs), statistics.median(c.cpu for c in costs))


def timed(command: list[str], cwd: Path, repeat: int = 5) -> Cost:
    return median([run_measured(command, cwd)[0] for _ in range(repeat)])


def ratio_line(what: str, ours: Cost, theirs: Cost, target: float) -> str:
    """Wall clock is what a student waits; CPU time is the same comparison undisturbed by other load on the machine."""
    return (f"{what}: ours {ours.wall:.3f} s vs latexmk {theirs.wall:.3f} s wall, ratio {ours.wall / theirs.wall:.2f}; "
            f"CPU {ours.cpu:.3f} s vs {theirs.cpu:.3f} s, ratio {ours.cpu / theirs.cpu:.2f} (target <= {target})")


# latexmk as the build ran it before it had a precompiled preamble and cached diagrams.
LATEXMK = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
           "-pdflatex=pdflatex -no-shell-escape %O %S", "-silent", "report.tex"]
# The same for a report that needs the Unicode engine (genreport/latex/engines.py).
LATEXMK_LUA = ["latexmk", "-lualatex", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
               "-lualatex=lualatex -no-shell-escape %O %S", "-silent", "report.tex"]
EDITS = 7
# A name and a sentence that pdfLaTeX cannot set, so the build switches to LuaLaTeX.
UNICODE_NAME = "Nguyễn Thị Minh Khai"
UNICODE_SENTENCE = " Tamil: செயற்கை நுண்ணறிவு; Hindi: कृत्रिम बुद्धिमत्ता; Chinese: 人工智能."


def latexmk_tree(tex: Path, latexmk: list[str] = LATEXMK, name: str = "tex-latexmk") -> Path:
    """build/tex as latexmk alone would typeset it: the same generated report.tex, the diagrams as TikZ code."""
    tree = tex.parent / name
    shutil.copytree(tex, tree, ignore=shutil.ignore_patterns("preamble*", "diagram-*", "*.fls", ".bibtex-inputs"))
    for source in (tree / "tikz").glob("*.tex"):
        (tree / "diagrams" / f"{source.stem}.pdf").unlink(missing_ok=True)
        shutil.copy2(source, tree / "diagrams" / source.name)
    subprocess.run(latexmk, cwd=tree, check=True, capture_output=True)
    return tree


def sentence_edits(project: Path, baseline: Path, latexmk: list[str], original: str) -> tuple[list[Cost], list[Cost], list[str]]:
    """Our build after a sentence is added, then latexmk on the very report.tex it generated, EDITS times.

    Each edit is one sentence added to the aim's first paragraph of `original` (a different sentence each
    time, so each build sees a one-sentence change): edits that pile up would move page breaks and turn
    some rebuilds into two passes for both tools, which is another measurement."""
    content = project / "report" / "aim.md"
    first_paragraph_end = original.index("\n\n")
    ours, theirs, after_edit = [], [], {}
    for i in range(EDITS):
        content.write_text(original[:first_paragraph_end] + f" Edited sentence number {i}." + original[first_paragraph_end:])
        cost, after_edit = build(project)
        ours.append(cost)
        shutil.copy2(project / "build" / "tex" / "report.tex", baseline / "report.tex")
        theirs.append(run_measured(latexmk, baseline)[0])
    return ours, theirs, [name for name, (status, _) in after_edit.items() if status != "reused" and name != "latex"]


def unicode_report(project: Path, latin_edit: Cost) -> None:
    """The same measurements for a report whose name and text need LuaLaTeX: its first build, and a sentence
    edit against latexmk -lualatex and against the same edit of the Latin report (`latin_edit`, pdfLaTeX)."""
    config = project / "report.toml"
    content = project / "report" / "aim.md"
    latin_config, latin_text = config.read_text(), content.read_text()
    paragraph_end = latin_text.index("\n\n")
    unicode_text = latin_text[:paragraph_end] + UNICODE_SENTENCE + latin_text[paragraph_end:]
    config.write_text("\n".join(f'student_name = "{UNICODE_NAME}"' if line.startswith("student_name") else line
                                for line in latin_config.splitlines()) + "\n")
    content.write_text(unicode_text)
    first, _ = build(project)
    print(f"report needing the Unicode engine (LuaLaTeX), first build: {first.wall:.1f} s wall, {first.cpu:.1f} s CPU")
    baseline = latexmk_tree(project / "build" / "tex", LATEXMK_LUA, "tex-latexmk-lua")
    ours, theirs, rerun = sentence_edits(project, baseline, LATEXMK_LUA, unicode_text)
    print(ratio_line(f"Unicode report, one sentence edited (median of {EDITS})", median(ours), median(theirs), 0.7))
    print("  per edit, ours / latexmk -lualatex: " + ", ".join(f"{o.wall:.2f}/{t.wall:.2f}" for o, t in zip(ours, theirs)))
    print(f"  also rerun after the edit: {rerun or 'nothing'}")
    print(f"  the Unicode path's edit costs {median(ours).wall / latin_edit.wall:.1f} times the pdfLaTeX path's wall clock, "
          f"{median(ours).cpu / latin_edit.cpu:.1f} times its CPU")
    config.write_text(latin_config)
    content.write_text(latin_text)
    build(project)


def matmul_peak_flops(threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    start, runs = time.perf_counter(), 20
    for _ in range(runs):
        a @ b
    return 2 * 1024**3 * runs / (time.perf_counter() - start)


def build(project: Path) -> tuple[Cost, dict[str, tuple[str, float]]]:
    """Run build.py; return its cost and the summary table: stage -> (status, seconds)."""
    cost, stdout = run_measured([sys.executable, "build.py"], project)
    return cost, {name: (status, seconds) for name, status, seconds in read_summary(stdout)}


def wait_for_new_pdf(pdf: Path, before: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while pdf.stat().st_mtime_ns == before:
        if time.monotonic() > deadline:
            raise TimeoutError("the watcher wrote no new report.pdf")
        time.sleep(0.005)


def next_status(watcher: subprocess.Popen) -> str:
    assert watcher.stdout is not None
    for line in watcher.stdout:
        if line.startswith("[") and ("rebuilt in" in line or "build FAILED" in line):
            return line
    raise RuntimeError("the watcher ended")


def watch_latencies(project: Path) -> tuple[float, float]:
    """Seconds from a save to the new report.pdf, with `build.py watch` running: a sentence, then a plot's title."""
    watcher = subprocess.Popen([sys.executable, "build.py", "watch"], cwd=project, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        next_status(watcher)  # the build at start
        pdf = project / "report.pdf"
        latencies = []
        for path, old, new in ((project / "report" / "aim.md", "\n", "\nA sentence saved while watching.\n"),
                               (project / "experiments" / "plots.py", 'bars_ax.set_title("all heads"',
                                'bars_ax.set_title("All heads"')):
            before = pdf.stat().st_mtime_ns
            text = path.read_text()
            if old not in text:
                raise RuntimeError(f"bench: {path.name} no longer contains {old!r}; pick another edit")
            start = time.perf_counter()
            path.write_text(text.replace(old, new, 1) if old != "\n" else text + new)
            wait_for_new_pdf(pdf, before)
            latencies.append(time.perf_counter() - start)
            next_status(watcher)
        return latencies[0], latencies[1]
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=60)


def main() -> None:
    # Python caches compiled modules in __pycache__ unless told not to; some sandboxes and CI images set
    # PYTHONDONTWRITEBYTECODE, which would time the compilation of the build's own modules in every run.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as scratch:
        project = copy_project(Path(scratch))
        widen_page_range(project)  # the Unicode variant adds lines to a report at its page limit: timed, not graded
        for name in ("Makefile", "requirements.txt", "requirements-data.txt"):  # so that the no-op is timed as a user runs it: `make pdf`
            shutil.copy2(ROOT / name, project / name)
        (project / ".venv").symlink_to(ROOT / ".venv")
        if (ROOT / "build" / "cache").exists():
            shutil.copytree(ROOT / "build" / "cache" / "experiments", project / "build" / "cache" / "experiments")
        cost, stages = build(project)
        print(f"build from cached experiment results: {cost.wall:.1f} s")

        tex = project / "build" / "tex"
        baseline = latexmk_tree(tex)
        print(ratio_line("no-op `make pdf`", timed(["make", "-s", "pdf"], project), timed(LATEXMK, baseline), 2))

        content = project / "report" / "aim.md"
        original = content.read_text()
        edits_ours, edits_latexmk, rerun = sentence_edits(project, baseline, LATEXMK, original)
        content.write_text(original)
        print(ratio_line(f"one sentence edited, `python build.py` (median of {EDITS})", median(edits_ours), median(edits_latexmk), 0.7))
        print("  per edit, ours / latexmk: " + ", ".join(f"{o.wall:.2f}/{t.wall:.2f}" for o, t in zip(edits_ours, edits_latexmk)))
        print(f"  also rerun after the edit: {rerun or 'nothing'}")
        unicode_report(project, median(edits_ours))

        plots = project / "experiments" / "plots.py"
        plots.write_text(plots.read_text().replace("def attention_map(scaling: Result):\n",
                                                   "def attention_map(scaling: Result):\n    # edited\n"))
        cost, after_plot_edit = build(project)
        experiments_rerun = [name for name, (status, _) in after_plot_edit.items() if name.startswith("experiment") and status != "reused"]
        figures_stage = next(name for name in after_plot_edit if name.startswith("figures"))
        print(f"one plotting function edited: figures {after_plot_edit[figures_stage][0]}, "
              f"experiments rerun: {experiments_rerun or 'none'} ({cost.wall:.1f} s)")

        sentence, plot = watch_latencies(project)
        print(f"`make watch`, save to new report.pdf: sentence edit {sentence:.2f} s, plot edit {plot:.2f} s")

    peak, all_cores_peak = matmul_peak_flops(threads=1), matmul_peak_flops(threads=os.cpu_count() or 1)
    results = {name: json.loads((ROOT / "build" / "results" / f"{name}.json").read_text())
               for name in ("gan", "dcgan", "vae", "scaling", "diffusion") if (ROOT / "build" / "results" / f"{name}.json").exists()}
    print("\nclean build, default profile, by stage (experiment times from their results):")
    for name, result in results.items():
        print(f"  experiment {name:10s} {result['seconds']:7.1f} s")
    print(f"  experiments, summed   {sum(r['seconds'] for r in results.values()):7.1f} s (they run side by side, one per core)")
    record = json.loads(paths.EXPERIMENT_STAGE_RECORD.read_text()) if paths.EXPERIMENT_STAGE_RECORD.exists() else {}
    if record.get("profile") == "default" and len(record.get("ran", [])) == len(results):
        print(f"  experiment stage      {record['wall_seconds']:7.1f} s wall clock, {record['workers']} workers (target <= 240), "
              f"load average at its end {record.get('load_average', '?')}")
    else:
        print("  experiment stage      wall clock unknown: the last build did not run every experiment "
              "(`python build.py --force experiments`)")
    for stage in (next(name for name in stages if name.startswith("figures")), "latex"):
        print(f"  {stage:21s} {stages[stage][1]:7.1f} s")
    print(f"\nfp32 matmul peak measured here (1024x1024): {peak / 1e9:.1f} GFLOP/s with 1 thread, "
          f"{all_cores_peak / 1e9:.1f} GFLOP/s with {os.cpu_count()}")
    print("each experiment runs on one core with one thread, so its rate is set against the 1-thread peak:")
    # CPU seconds (from the stage record) when the last stage ran them all: on a shared machine the wall clock
    # also counts the time the experiment waited for a core.
    cpu_seconds = record.get("cpu_seconds", {}) if record.get("profile") == "default" else {}
    for name, result in results.items():
        seconds, clock = (cpu_seconds[name], "CPU") if name in cpu_seconds else (result["seconds"], "wall")
        rate = result["train_flops"] / seconds
        print(f"  {name:10s} {result['train_flops']:9.2e} FLOP in {seconds:6.1f} s ({clock}) on {result['device']}: "
              f"{rate / 1e9:6.2f} GFLOP/s = {rate / peak:6.1%} of peak")


if __name__ == "__main__":
    main()
