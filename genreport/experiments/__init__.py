"""The experiment stage: run each experiment unless an intact cached result with the same key exists.

A key covers everything a result depends on: the experiment's source and the project modules it
imports, its profile overrides, the seed, the device and the torch/numpy versions. Computing it needs
no torch import, so an unchanged build never pays for loading torch.

Stale experiments run in worker processes, one per CPU core, each with one torch thread. One thread
makes a result independent of the machine's core count (torch's CPU kernels split their sums by
thread, so 1 and 2 threads give different bits), and these small models use a core better on their
own than two threads share two cores.
"""

from __future__ import annotations

import ast
import ctypes
import importlib
import importlib.metadata
import io
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from genreport import cache, explain, interrupts, paths
from genreport.config import ReportConfig, apply_overrides
from genreport.errors import BuildError

EXPERIMENTS = ("gan", "vae", "scaling", "diffusion")
LONGEST_FIRST = ("scaling", "gan", "vae", "diffusion")  # so the last one to finish is a short one
TORCH_THREADS = 1  # per experiment, whatever the machine: see the module docstring


@dataclass(frozen=True)
class Outcome:
    name: str
    key: str
    reused: bool
    seconds: float


@dataclass(frozen=True)
class StageOutcome:
    experiments: list[Outcome]
    wall_seconds: float | None  # None when every result was reused; otherwise less than the sum, as they overlap


def _module_path(module: str) -> Path:
    return paths.ROOT / Path(*module.split(".")).with_suffix(".py")


def project_sources(module: str) -> list[Path]:
    """The module's file and, transitively, every project module it imports (found by parsing, not importing)."""
    seen: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        path = _module_path(name)
        if name in seen or not path.exists():
            continue
        seen[name] = path
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genreport"):
                pending.append(node.module)
                pending.extend(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                pending.extend(alias.name for alias in node.names if alias.name.startswith("genreport"))
    return [seen[name] for name in sorted(seen)]


def resolve_device_name(requested: str) -> str:
    """What `auto` will mean, decided without importing torch: a CUDA build of torch plus an NVIDIA driver."""
    if requested != "auto":
        return requested
    cpu_only_torch = "+cpu" in importlib.metadata.version("torch")
    return "cuda" if not cpu_only_torch and Path("/proc/driver/nvidia").exists() else "cpu"


def cache_key(name: str, config: ReportConfig, profile: str, device: str) -> str:
    module = f"genreport.experiments.{name}"
    parts = [f"{p.relative_to(paths.ROOT)}\n{p.read_text(encoding='utf-8')}" for p in project_sources(module)]
    parts += [
        profile,
        json.dumps(config.overrides(profile, name), sort_keys=True),
        f"seed={config.seed}",
        f"device={device}",
        f"torch_threads={TORCH_THREADS}",
        f"torch={importlib.metadata.version('torch')}",
        f"numpy={importlib.metadata.version('numpy')}",
    ]
    return cache.digest(parts)


def _run_and_store(name: str, config: ReportConfig, profile: str, device: str, key: str) -> tuple[str, float]:
    """Runs in a worker process: train, then write the result into the cache. Returns the name and seconds."""
    start = time.perf_counter()
    print(f"  running experiment {name} ({profile} profile, {device})", flush=True)
    import numpy as np
    import torch

    module = importlib.import_module(f"genreport.experiments.{name}")
    torch.set_num_threads(TORCH_THREADS)
    base = module.Config.fast() if profile == "fast" else module.Config()
    experiment_config = apply_overrides(base, {"seed": config.seed, **config.overrides(profile, name)}, f"profile.{profile}.{name}",
                                        config.source)
    results = module.run(experiment_config, device)

    def write(directory: Path) -> None:
        (directory / f"{name}.json").write_text(json.dumps(results.metrics, indent=1, sort_keys=True) + "\n")
        buffer = io.BytesIO()
        np.savez(buffer, **results.arrays)
        (directory / f"{name}.npz").write_bytes(buffer.getvalue())

    _store(name).put(key, write)
    return name, time.perf_counter() - start


def _start_worker(progress_lock: object, progress_rows: multiprocessing.Queue, parent: int) -> None:
    # SIGINT stays blocked here (inherited from the parent, see _run_in_workers): Ctrl-C is the parent's
    # to handle, and it stops the workers. A worker must not outlive a parent that was killed outright.
    if sys.platform == "linux":  # elsewhere an orphaned worker finishes its experiment and then exits
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)
    from tqdm import tqdm

    from genreport.experiments.common import PROGRESS_ROW_VARIABLE

    tqdm.set_lock(progress_lock)
    os.environ[PROGRESS_ROW_VARIABLE] = str(progress_rows.get())


def _run_in_workers(tasks: list[tuple[str, ReportConfig, str, str, str]], workers: int,
                    on_done: Callable[[str, float], None]) -> None:
    """Run the tasks in `workers` processes, calling on_done(name, seconds) as each finishes.

    A failed experiment, a worker killed from outside, or Ctrl-C stops the build and every worker.
    """
    context = multiprocessing.get_context("spawn")  # a forked child could inherit locks held by the parent's threads
    rows = context.Queue()
    for row in range(workers):
        rows.put(row)
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                   initargs=(context.RLock(), rows, os.getpid()))
    finished = False
    try:
        with interrupts.held():  # submit starts the workers: they begin with SIGINT blocked and keep it so
            futures = [executor.submit(_run_and_store, *task) for task in tasks]
        for future in as_completed(futures):
            try:
                on_done(*future.result())
            except BrokenProcessPool:
                raise BuildError("an experiment's worker process died (killed from outside, or out of memory)",
                                 hint="run the build again; finished experiments are cached") from None
        finished = True
    finally:
        if not finished:
            for worker in multiprocessing.active_children():
                worker.kill()
        executor.shutdown(wait=finished, cancel_futures=True)


def _store(name: str) -> cache.Store:
    return cache.Store(paths.EXPERIMENT_CACHE_DIR / name)


def publish(entry: Path, name: str) -> None:
    """Copy a cached entry to build/results, where the figure and LaTeX stages read it."""
    for suffix in (".json", ".npz"):
        source, target = entry / f"{name}{suffix}", paths.RESULTS_DIR / f"{name}{suffix}"
        if not target.exists() or cache.file_digest(target) != cache.file_digest(source):
            cache.copy_atomic(source, target)


def run_all(config: ReportConfig, profile: str, device: str, forced: set[str]) -> StageOutcome:
    device = resolve_device_name(device)
    outcomes: dict[str, Outcome] = {}
    stale: dict[str, str] = {}
    for name in EXPERIMENTS:
        start = time.perf_counter()
        store = _store(name)
        store.prune_partials()
        key = cache_key(name, config, profile, device)
        entry = None if name in forced else store.get(key)
        explain.experiment(name, config, profile, device, key, reran=entry is None, forced=name in forced)
        if entry is None:
            stale[name] = key
            continue
        publish(entry, name)
        outcomes[name] = Outcome(name, key, True, time.perf_counter() - start)
    if not stale:
        return StageOutcome([outcomes[name] for name in EXPERIMENTS], None)
    tasks = [(name, config, profile, device, stale[name]) for name in LONGEST_FIRST if name in stale]
    # One GPU is best given to one experiment at a time; on the CPU each worker takes a core.
    workers = min(len(tasks), os.cpu_count() or 1) if device == "cpu" else 1

    def finished(name: str, seconds: float) -> None:
        publish(_store(name).entry(stale[name]), name)
        outcomes[name] = Outcome(name, stale[name], False, seconds)
        print(f"  experiment {name} done in {seconds:.1f} s", flush=True)

    start = time.perf_counter()
    _run_in_workers(tasks, workers, finished)
    wall_seconds = time.perf_counter() - start
    record = {"ran": sorted(stale), "workers": workers, "profile": profile, "wall_seconds": round(wall_seconds, 2)}
    cache.write_atomic(paths.EXPERIMENT_STAGE_RECORD, (json.dumps(record) + "\n").encode())  # read by `make bench`
    return StageOutcome([outcomes[name] for name in EXPERIMENTS], wall_seconds)
