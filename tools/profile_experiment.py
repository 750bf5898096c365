"""Profile one experiment on a shortened budget, under the experiment stage's numerics and one torch thread.

    .venv/bin/python tools/profile_experiment.py gan '{"steps": 1200}'
    .venv/bin/python tools/profile_experiment.py dcgan '{"steps": 200}'
    .venv/bin/python tools/profile_experiment.py scaling '{"train_tokens": 200000}' --torch

Prints cProfile's top functions by cumulative and by own time (or, with --torch, torch.profiler's
operators by self CPU time), the wall clock and CPU seconds of the run, and the machine's 1-thread fp32
matmul peak (tools/bench.py's measure) for the achieved FLOP/s of the training loops.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genreport.experiments import TORCH_THREADS, numerics  # imports no torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON overrides of the default Config")
    parser.add_argument("--torch", action="store_true", help="torch.profiler's operator table instead of cProfile")
    parser.add_argument("--rows", type=int, default=35)
    args = parser.parse_args()
    os.environ.update(numerics("cpu"))  # before torch is imported, as the stage's workers do
    import importlib

    import torch

    from genreport.build.config import apply_overrides

    torch.set_num_threads(TORCH_THREADS)
    module = importlib.import_module(f"experiments.{args.name}")
    config = apply_overrides(module.Config(), json.loads(args.overrides), "profile")
    wall, cpu = time.perf_counter(), time.process_time()
    if args.torch:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            results = module.run(config, "cpu")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    else:
        profiler = cProfile.Profile()
        results = profiler.runcall(module.run, config, "cpu")
        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(args.rows)
            print(out.getvalue())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    flops = results.metrics.get("train_flops", 0)
    from tools.bench import matmul_peak_flops

    peak = matmul_peak_flops(threads=TORCH_THREADS)
    print(f"{args.name}: {wall:.1f} s wall, {cpu:.1f} s CPU; training FLOPs {flops:.3g} "
          f"-> {flops / cpu / 1e9:.2f} GFLOP/s over the whole run's CPU time; "
          f"1-thread fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
