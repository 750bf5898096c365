"""`make robustness`: do the experiments' bars hold on other machines' kernel paths and other seeds?

The build pins MKL, ATen and oneDNN (MKL to its AVX2 branch with `numerics = "fast"`, to its branch
without vector extensions with "portable"), so that machines like the author's compute the same bits.
A machine without AVX2, an ARM machine, a GPU or a future torch computes other bits; this grid stands
in for them. Each cell runs one experiment in a fresh process (one torch thread) with one
kernel setting and one seed, and the table gives min / median / max of every metric that has a bar,
with the number of runs that miss it. It takes long (the default profile, every cell); it is not a test.

    python tools/robustness.py                      # the whole grid
    python tools/robustness.py --experiments gan --seeds 0 1 2 3 4 --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genreport.experiments import PINNED_NUMERICS, PORTABLE_NUMERICS, TORCH_THREADS  # after the path is set; imports no torch

# Stand-ins for other machines: ATen's dispatch levels and MKL's code paths. Each is applied alone, the
# other libraries left to choose for themselves, as they would on a machine with no pinning.
KERNEL_PATHS: dict[str, dict[str, str]] = {
    "ATEN=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ATEN=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATEN=avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "MKL=AVX2": {"MKL_CBWR": "AVX2"},
    "MKL=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "fast (numerics = \"fast\")": PINNED_NUMERICS,
    "portable (numerics = \"portable\", the default)": PORTABLE_NUMERICS,
}


@dataclasses.dataclass(frozen=True)
class Bar:
    metric: str
    minimum: float | None = None
    maximum: float | None = None

    def holds(self, value: float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def __str__(self) -> str:
        return f">= {self.minimum:g}" if self.maximum is None else f"<= {self.maximum:g}" if self.minimum is None else "?"


# The bars of the README's experiment table.
BARS = {
    "gan": [Bar("ring modes captured", 8), Bar("ring high-quality fraction", 0.96)],
    "dcgan": [Bar("class entropy", 2.2), Bar("Frechet distance over the real floor", maximum=3)],
    "vae": [Bar("5-NN accuracy of latent means", 0.80)],
    "scaling": [Bar("loss falls with every size step", 1), Bar("R^2 of the fit", 0.99), Bar("largest model's loss", maximum=1.95),
                Bar("largest model's loss minus the trigram's (same data)", maximum=0),
                Bar("every IsoFLOP profile's best run has a worse size on either side", 1)],
    "diffusion": [Bar("ring modes captured", 8), Bar("ring high-quality fraction", 0.80)],
}


def measurements(name: str, metrics: dict) -> dict[str, list[float]]:
    """The metrics that have bars, one value per seed where an experiment trains several."""
    if name == "gan":
        seeds = metrics["ring"]["seeds"]
        return {"ring modes captured": [s["modes_captured"] for s in seeds],
                "ring high-quality fraction": [s["high_quality_fraction"] for s in seeds]}
    if name == "dcgan":
        return {"class entropy": [metrics["class_entropy"]],
                "Frechet distance over the real floor": [round(metrics["fd"] / metrics["fd_real_floor"], 3)]}
    if name == "vae":
        return {"5-NN accuracy of latent means": [metrics["latent_knn_accuracy"]]}
    if name == "scaling":
        largest = metrics["models"][-1]["val_loss"]
        return {"loss falls with every size step": [float(metrics["loss_decreases_with_size"])],
                "R^2 of the fit": [metrics["fit"]["r2"]], "largest model's loss": [largest],
                "largest model's loss minus the trigram's (same data)": [round(largest - metrics["ngram_val_loss"]["3"], 4)],
                "every IsoFLOP profile's best run has a worse size on either side":
                    [float(all(profile["minimum"]["bracketed"] for profile in metrics["isoflop"]["profiles"]))]}
    return {"ring modes captured": [metrics["ring"]["modes_captured"]], "ring high-quality fraction": [metrics["ring"]["high_quality_fraction"]]}


def run_cell(name: str, seeds: list[int], fast: bool, out: Path) -> None:
    """In the child process: one experiment, the kernel setting already in the environment. The ring GAN
    trains one member per seed side by side (as the build does); the other experiments take one seed."""
    import importlib

    import torch

    from genreport.build.config import apply_overrides, load

    torch.set_num_threads(TORCH_THREADS)
    module = importlib.import_module(f"experiments.{name}")
    base = module.Config.fast() if fast else module.Config()
    profile = "fast" if fast else "default"
    config = apply_overrides(base, {**load(ROOT / "report.toml").overrides(profile, name), "seed": seeds[0]}, f"profile.{profile}.{name}")
    if name == "gan":
        config = dataclasses.replace(config, seeds=tuple(seeds))
    metrics = module.run(config, "cpu").metrics
    metrics["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    out.write_text(json.dumps(metrics))


def launch(name: str, path: str, seeds: tuple[int, ...], fast: bool, scratch: Path) -> tuple[str, str, str, dict | None, float]:
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_NUMERICS}
    env.update(KERNEL_PATHS[path])
    seed = ",".join(map(str, seeds))
    out = scratch / f"{name}-{path.split()[0]}-{seed}.json"
    start = time.perf_counter()
    command = [sys.executable, __file__, "--cell", name, seed, str(out)] + (["--fast"] if fast else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(f"  {name} {path} seed {seed}: FAILED\n{done.stderr[-2000:]}", file=sys.stderr)
        return name, path, seed, None, seconds
    metrics = json.loads(out.read_text())
    # The z option prints an entropy of -0.0 (one class only) as 0, as the report does.
    shown = "; ".join(f"{metric} {', '.join(f'{value:z.4g}' for value in values)}" for metric, values in measurements(name, metrics).items())
    print(f"  {name:9s} {path:22s} seed {seed}: {shown} ({seconds:.0f} s, {metrics['cpu_capability']})", flush=True)
    return name, path, seed, metrics, seconds


def table(rows: list[tuple[str, str, str, dict | None, float]]) -> str:
    lines = ["| experiment | metric | bar | runs | min | median | max | misses |", "|---|---|---|--:|--:|--:|--:|--:|"]
    for name, bars in BARS.items():
        done = [(path, seed, m) for n, path, seed, m, _ in rows if n == name and m is not None]
        if not done:
            continue
        for bar in bars:
            values = [(v, path, each) for path, seed, m in done
                      for v, each in zip(measurements(name, m)[bar.metric], seed.split(","))]
            misses = [f"{path} seed {seed}: {v:g}" for v, path, seed in values if not bar.holds(v)]
            numbers = [v for v, *_ in values]
            lines.append(f"| {name} | {bar.metric} | {bar} | {len(numbers)} | {min(numbers):z.4g} | {statistics.median(numbers):z.4g} "
                         f"| {max(numbers):z.4g} | {len(misses)}{' (' + '; '.join(misses) + ')' if misses else ''} |")
    failed = [f"{n} {path} seed {seed}" for n, path, seed, m, _ in rows if m is None]
    if failed:
        lines.append(f"\nfailed runs: {', '.join(failed)}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="+", default=list(BARS), choices=list(BARS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--paths", nargs="+", default=list(KERNEL_PATHS), choices=list(KERNEL_PATHS), metavar="PATH")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="cells run at once (one core each)")
    parser.add_argument("--fast", action="store_true", help="the fast profile (checks the tool, not the bars)")
    parser.add_argument("--json", type=Path, help="also write every cell's metrics here")
    parser.add_argument("--cell", nargs=3, metavar=("EXPERIMENT", "SEED", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        run_cell(args.cell[0], [int(seed) for seed in args.cell[1].split(",")], args.fast, Path(args.cell[2]))
        return 0
    # The ring GAN's seeds train side by side in one process; every other experiment runs once per seed.
    cells = [(name, path, tuple(args.seeds) if name == "gan" else (seed,))
             for name, path in itertools.product(args.experiments, args.paths)
             for seed in ([args.seeds[0]] if name == "gan" else args.seeds)]
    print(f"{len(cells)} runs, {args.jobs} at a time (one torch thread each); this takes a while", flush=True)
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda cell: launch(*cell, args.fast, Path(scratch)), cells))
    if args.json:
        args.json.write_text(json.dumps([{"experiment": n, "path": p, "seed": s, "metrics": m, "seconds": t}
                                         for n, p, s, m, t in rows], indent=1))
    print()
    print(table(rows))
    return 0 if all(m is not None for *_, m, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
