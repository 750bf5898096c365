"""The experiment stage: run each experiment unless an intact cached result with the same key exists.

A key covers everything a result depends on: the experiment's source and the project modules it
imports, its profile overrides, the seed, the device and the torch/numpy versions. Computing it needs
no torch import, so an unchanged build never pays for loading torch.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from genreport import cache, interrupts, paths
from genreport.config import ReportConfig, apply_overrides

EXPERIMENTS = ("gan", "vae", "scaling", "diffusion")


@dataclass(frozen=True)
class Outcome:
    name: str
    key: str
    reused: bool
    seconds: float


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
        f"torch={importlib.metadata.version('torch')}",
        f"numpy={importlib.metadata.version('numpy')}",
    ]
    return cache.digest(parts)


def _run_and_store(name: str, config: ReportConfig, profile: str, device: str, store: cache.Store, key: str) -> None:
    with interrupts.held():  # heavy imports only on the path that trains
        import numpy as np
        import torch

        module = importlib.import_module(f"genreport.experiments.{name}")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    base = module.Config.fast() if profile == "fast" else module.Config()
    experiment_config = apply_overrides(base, {"seed": config.seed, **config.overrides(profile, name)}, f"profile.{profile}.{name}",
                                        config.source)
    results = module.run(experiment_config, device)

    def write(directory: Path) -> None:
        (directory / f"{name}.json").write_text(json.dumps(results.metrics, indent=1, sort_keys=True) + "\n")
        buffer = io.BytesIO()
        np.savez(buffer, **results.arrays)
        (directory / f"{name}.npz").write_bytes(buffer.getvalue())

    store.put(key, write)


def publish(entry: Path, name: str) -> None:
    """Copy a cached entry to build/results, where the figure and LaTeX stages read it."""
    for suffix in (".json", ".npz"):
        source, target = entry / f"{name}{suffix}", paths.RESULTS_DIR / f"{name}{suffix}"
        if not target.exists() or cache.file_digest(target) != cache.file_digest(source):
            cache.copy_atomic(source, target)


def run_all(config: ReportConfig, profile: str, device: str, forced: set[str]) -> list[Outcome]:
    device = resolve_device_name(device)
    outcomes = []
    for name in EXPERIMENTS:
        store = cache.Store(paths.CACHE_DIR / "experiments" / name)
        store.prune_partials()
        key = cache_key(name, config, profile, device)
        entry = None if name in forced else store.get(key)
        reused = entry is not None
        start = time.perf_counter()
        if not reused:
            print(f"  running experiment {name} ({profile} profile, {device})", flush=True)
            _run_and_store(name, config, profile, device, store, key)
            entry = store.entry(key)
        publish(entry, name)
        outcomes.append(Outcome(name, key, reused, time.perf_counter() - start))
    return outcomes
