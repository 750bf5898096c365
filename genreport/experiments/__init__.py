"""The experiment stage: run each experiment unless an intact cached result with the same key exists.

The experiments are the project's: every module of its experiments/ folder that defines the entry
point, a `run(config, device)` function beside a frozen dataclass `Config` (with a `fast()` profile),
is one, named by its file; its budgets come from report.toml's [profile.*.<name>] tables. They are
found by parsing, not importing, so an unchanged build never loads torch. Modules with neither (shared
data loaders, plot functions) are helpers.

An experiment made of independent runs (a sweep's sizes and seeds) may also define `parts(config) ->
list[Config]`, `run_part(part, device_name) -> Results` and `combine(config, results, device_name) ->
Results`; its `run` is then `combine` over `run_part` of each part. The stage runs each part in a worker
of its own and caches it on its own, then combines them in a worker: a long sweep no longer holds one
core while the other waits, and an interrupted build keeps the parts it finished.

A key covers everything a result depends on: the experiment's source and the project modules it
imports, its profile overrides, the seed, the device and the torch/numpy versions. Computing it needs
no torch import, so an unchanged build never pays for loading torch.

Stale experiments run in worker processes, one per experiment (up to two per CPU core), each with one
torch thread. One thread makes a result independent of the machine's core count and of the scheduling
(torch's CPU kernels split their sums by thread, so 1 and 2 threads give different bits), and these
small models use a core better on their own than two threads share two cores.

One thread removes the core count from the arithmetic but not the CPU: MKL, ATen's vectorised kernels
and oneDNN each pick a code path per CPU (AVX-512 on one machine, AVX2 on another), and the paths round
differently. On x86-64 with AVX2 (Linux) the workers pin them to their AVX2 paths before torch is imported
(`PINNED_NUMERICS`, with numpy's OpenBLAS and loops). ATen's own kernels and oneDNN then computed the same
bits on every processor we could emulate; MKL honours its
AVX2 branch on Intel processors only, so Intel and AMD machines still differ in MKL's matrix products
and vector math, unless report.toml asks for `numerics = "portable"` (MKL's branch without vector
extensions, 1.8 times the experiment stage's run time; measured under emulation: tools/crosscpu.py, README "Same numbers
on every machine"). Either way the experiments stay off the few operations that differ whatever MKL is
told (`PROCESSOR_DEPENDENT_OPS`).
"""

from __future__ import annotations

import ast
import functools
import importlib
import io
import json
import os
import platform
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from genreport import paths
from genreport.build import cache, explain, interrupts, versions
from genreport.build.config import ReportConfig, apply_overrides
from genreport.errors import BuildError

if TYPE_CHECKING:  # the process pool is imported only when an experiment runs (10 ms of every rebuild)
    import multiprocessing

    from genreport.experiments.common import Results

PACKAGE = "experiments"  # the import name of the project's experiments folder
ENTRY_POINT = "run"
PART_FUNCTIONS = ("parts", "run_part", "combine")  # all three, or none
TORCH_THREADS = 1  # per experiment, whatever the machine: see the module docstring
# MKL's conditional numerical reproducibility, ATen's dispatch and oneDNN's ISA, each held to AVX2.
PINNED_NUMERICS = {
    "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
    # numpy and scipy (the scaling fit, the Frechet distance) compute with OpenBLAS, which picks its kernels
    # by processor, and numpy's own loops dispatch to AVX-512 where there is one: tools/crosscpu.py showed
    # both giving other bits on an AVX2 processor than here; pinned, they agree.
    "OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
# MKL's branch without vector extensions is the one it computed alike on emulated Intel and AMD processors
# (make crosscpu), but its matrix products are three times slower than its AVX2 branch's: under "portable" the
# matrix products go to numpy's OpenBLAS instead (genreport/experiments/blas.py), and MKL is left the vector
# functions (exp, log, erf), which cost little.
PORTABLE_NUMERICS = {**PINNED_NUMERICS, "MKL_CBWR": "COMPATIBLE", "GENREPORT_MATMUL": "openblas", "OPENBLAS_NUM_THREADS": "1"}
# ATen operations whose CPU kernels hand the work to MKL's vector functions and gave other bits on an
# emulated processor than on this one whatever MKL_CBWR said (make crosscpu): whether real Intel and AMD
# processors agree on them, emulation cannot tell, so the experiments do without them (square roots by
# numpy, squared distances, the fused Adam); tests/test_numerics.py holds them to it. pow(x, 0.5) is a
# square root too (the test checks its exponent); cdist reaches the dispatcher as _cdist_forward or
# _euclidean_dist.
PROCESSOR_DEPENDENT_OPS = frozenset({
    "aten::sqrt", "aten::sqrt_", "aten::_foreach_sqrt", "aten::_foreach_sqrt_", "aten::atan", "aten::atan_",
    "aten::log10", "aten::log10_", "aten::_cdist_forward", "aten::_euclidean_dist",
})


@dataclass(frozen=True)
class Outcome:
    name: str
    key: str
    inputs: dict[str, object]  # what the key is a digest of
    reused: bool
    seconds: float


@dataclass(frozen=True)
class StageOutcome:
    experiments: list[Outcome]
    wall_seconds: float | None  # None when every result was reused; otherwise less than the sum, as they overlap


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    headlines: tuple[str, ...]  # the numbers a reader sees first (dotted paths into the metrics), from HEADLINES
    in_parts: bool = False  # defines PART_FUNCTIONS: the stage runs its parts in separate workers


DISCOVERY_CACHE = paths.CACHE_DIR / "project-experiments.json"
DESCRIPTION_VERSION = "2"  # 2: whether the experiment runs in parts


def discover() -> dict[str, Experiment]:
    """The project's experiments by name, in name order: the modules of experiments/ with the entry point."""
    if not paths.EXPERIMENTS_DIR.is_dir():
        return {}
    found = {}
    for path in sorted(paths.EXPERIMENTS_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        described = _describe(path.read_text(encoding="utf-8"))
        if "error" in described:
            raise BuildError(described["error"], path=path, line=described["line"],
                             hint=f"an experiment defines `class Config` (a frozen dataclass) and `def {ENTRY_POINT}(config, device_name)`; "
                                  "a helper module defines neither")
        if described["experiment"]:
            found[path.stem] = Experiment(path.stem, path, tuple(described["headlines"]), bool(described["in_parts"]))
    return found


@functools.cache  # asked by the stage, the lock, the provenance page and the no-op check in one build
def _describe(source: str) -> dict[str, object]:
    # The parser's version is part of the key: what an older parser wrote lacks what this one reads.
    known, key = cache.read_json_dict(DISCOVERY_CACHE), cache.digest([DESCRIPTION_VERSION, source])
    if not isinstance(known.get(key), dict):
        known[key] = _parse_experiment(source)
        while len(known) > 256:  # sources edited over time leave entries behind: the oldest go first
            known.pop(next(iter(known)))
        cache.write_atomic(DISCOVERY_CACHE, json.dumps(known, indent=0).encode())
    return known[key]


def _parse_experiment(source: str) -> dict[str, object]:
    """Whether a module is an experiment, its HEADLINES, or what is wrong with it (and the line)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return {"error": f"not valid Python: {error.msg}", "line": error.lineno}
    entry = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == ENTRY_POINT), None)
    config = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config"), None)
    if config is not None and entry is None:
        return {"error": f"defines `class Config` but no `def {ENTRY_POINT}(config, device_name)`, the experiment's entry point",
                "line": config.lineno}
    if entry is not None and config is None:
        return {"error": f"defines `{ENTRY_POINT}` but no `class Config` with the experiment's settings", "line": entry.lineno}
    if entry is not None and len(entry.args.args) < 1:
        return {"error": f"`{ENTRY_POINT}` must take the config (and the device name)", "line": entry.lineno}
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    defined = [name for name in PART_FUNCTIONS if name in functions]
    if entry is not None and defined and len(defined) < len(PART_FUNCTIONS):
        missing = ", ".join(f"`{name}`" for name in PART_FUNCTIONS if name not in functions)
        return {"error": f"defines `{defined[0]}` but not {missing}: an experiment in parts defines all of "
                         f"{', '.join(PART_FUNCTIONS)}", "line": functions[defined[0]].lineno}
    headlines: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HEADLINES" for t in node.targets):
            try:
                headlines = [str(item) for item in ast.literal_eval(node.value)]
            except ValueError:
                return {"error": "HEADLINES must be a literal tuple of dotted metric names", "line": node.lineno}
    return {"experiment": entry is not None, "headlines": headlines, "in_parts": entry is not None and bool(defined)}


def import_project_package() -> None:
    """Make `import experiments...` mean this project's folder, whatever else sys.path holds (the engine's
    own checkout has an experiments/ folder too: Experiment 1's)."""
    import importlib.util
    import types

    existing = sys.modules.get(PACKAGE)
    if existing is not None and [Path(p).resolve() for p in getattr(existing, "__path__", [])] == [paths.EXPERIMENTS_DIR]:
        return
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    init = paths.EXPERIMENTS_DIR / "__init__.py"
    if init.exists():
        spec = importlib.util.spec_from_file_location(PACKAGE, init, submodule_search_locations=[str(paths.EXPERIMENTS_DIR)])
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    else:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(paths.EXPERIMENTS_DIR)]
        sys.modules[PACKAGE] = package


def _module_path(module: str) -> Path:
    parts = module.split(".")
    if parts[0] == PACKAGE:
        return paths.EXPERIMENTS_DIR.joinpath(*parts[1:]).with_suffix(".py")
    return paths.ENGINE_ROOT / Path(*parts).with_suffix(".py")


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
        pending.extend(_project_imports(path.read_text(encoding="utf-8")))
    return [seen[name] for name in sorted(seen)]


IMPORTS_CACHE = paths.CACHE_DIR / "project-imports.json"


@functools.cache
def _known_imports() -> dict[str, list[str]]:
    return cache.read_json_dict(IMPORTS_CACHE)


@functools.lru_cache(maxsize=64)  # the experiments share most of their sources: each is looked up once a build
def _project_imports(source: str) -> tuple[str, ...]:
    """Names a module's source imports from the project (modules, and names that may be modules).
    Parsing the experiments' sources took 40 ms of every rebuild, so the answer is kept by the source's digest."""
    known, key = _known_imports(), cache.digest([source])
    if not isinstance(known.get(key), list):
        known[key] = list(_parse_project_imports(source))
        while len(known) > 256:  # sources edited over time leave entries behind: the oldest go first
            known.pop(next(iter(known)))
        cache.write_atomic(IMPORTS_CACHE, json.dumps(known, indent=0).encode())
    return tuple(known[key])


def _parse_project_imports(source: str) -> tuple[str, ...]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("genreport", PACKAGE):
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names if alias.name.split(".")[0] in ("genreport", PACKAGE))
    return tuple(found)


def _version(package: str) -> str:
    installed = versions.version(package)
    if installed is None:
        raise BuildError(f"the package {package} is not installed", hint="run `make setup`")
    return installed


def resolve_device_name(requested: str) -> str:
    """What `auto` will mean, decided without importing torch: a CUDA build of torch plus an NVIDIA driver."""
    if requested != "auto":
        return requested
    cpu_only_torch = "+cpu" in _version("torch")
    return "cuda" if not cpu_only_torch and Path("/proc/driver/nvidia").exists() else "cpu"


@functools.cache  # read once per build, not once per experiment
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux
        return ""


def _has_avx2() -> bool:
    return bool(re.search(r"^flags\s*:.*\bavx2\b", _cpuinfo(), re.MULTILINE))


def processor() -> dict[str, str]:
    """The processor's vendor and model, as Linux names them: not part of any key, but what explains a
    rebuild's other digits when the numerics follow the vendor (results.lock.json records it)."""
    fields = dict(re.findall(r"^(vendor_id|model name)\s*:\s*(.*?)\s*$", _cpuinfo(), re.MULTILINE)[:2])
    # Without /proc/cpuinfo the vendor is unknown (""), and no comparison of vendors is made.
    return {"vendor": fields.get("vendor_id", ""), "model": fields.get("model name", platform.processor() or platform.machine())}


def numerics(device: str, mode: str = "fast") -> dict[str, str]:
    """Environment that pins the CPU kernels' code paths; empty where no common path exists (no AVX2, ARM) or on a GPU.

    mode (report.toml's `numerics`) "portable" adds MKL's vendor-independent branch: MKL honours its AVX2
    branch on Intel processors only, so "fast" gives Intel and AMD machines other matrix products.
    """
    if device == "cpu" and platform.machine().lower() in ("x86_64", "amd64") and _has_avx2():
        return dict(PORTABLE_NUMERICS if mode == "portable" else PINNED_NUMERICS)
    return {}


def key_inputs(name: str, config: ReportConfig, profile: str, device: str) -> dict[str, object]:
    """Everything an experiment's result depends on, by name; the cache key is their digest."""
    module = f"{PACKAGE}.{name}"
    sources = {paths.shown(p): cache.digest([p.read_bytes()]) for p in project_sources(module)}
    return {
        "sources": sources,
        "profile": profile,
        "overrides": config.overrides(profile, name),
        "seed": config.seed,
        "device": device,
        "torch_threads": TORCH_THREADS,
        "numerics": numerics(device, config.numerics),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
    }


def cache_key(inputs: dict[str, object]) -> str:
    return cache.digest([json.dumps(inputs, sort_keys=True)])


@dataclass(frozen=True)
class Job:
    """One unit of work for a worker: a whole experiment, or (for one in parts) counting its parts, one
    part, or combining the parts' results. `key` is the cache entry the job writes."""

    kind: str  # "whole", "count", "part" or "combine"
    name: str
    config: ReportConfig
    profile: str
    device: str
    key: str
    index: int = 0  # of the part
    part_keys: tuple[str, ...] = ()  # the parts a combine reads


def part_key(key: str, index: int) -> str:
    """A part's cache key: the experiment's key covers everything its parts depend on."""
    return cache.digest([key, f"part {index}"])


def _work(job: Job) -> tuple[int, float]:
    """Runs in a worker process: do the job, writing any result into the cache. Returns the part count (for
    a count job; 0 otherwise) and the worker's CPU seconds for it (the parent keeps the wall clock: on a shared
    machine it says more about the neighbours)."""
    cpu_start = time.process_time()
    if job.kind in ("whole", "count"):
        print(f"  running experiment {job.name} ({job.profile} profile, {job.device})", flush=True)
    import torch

    import_project_package()
    module = importlib.import_module(f"{PACKAGE}.{job.name}")
    torch.set_num_threads(TORCH_THREADS)
    base = module.Config.fast() if job.profile == "fast" else module.Config()
    experiment_config = apply_overrides(base, {"seed": job.config.seed, **job.config.overrides(job.profile, job.name)},
                                        f"profile.{job.profile}.{job.name}", job.config.source)
    count = 0
    if job.kind == "count":
        count = len(module.parts(experiment_config))
    elif job.kind == "whole":
        _store_results(job.name, job.key, module.run(experiment_config, job.device))
    elif job.kind == "part":
        _store_results(job.name, job.key, module.run_part(module.parts(experiment_config)[job.index], job.device))
    else:
        parts = [_read_results(_store(job.name).entry(key), job.name) for key in job.part_keys]
        _store_results(job.name, job.key, module.combine(experiment_config, parts, job.device))
    return count, time.process_time() - cpu_start


def _store_results(name: str, key: str, results: Results) -> None:
    import numpy as np

    def write(directory: Path) -> None:
        (directory / f"{name}.json").write_text(json.dumps(results.metrics, indent=1, sort_keys=True) + "\n")
        buffer = io.BytesIO()
        np.savez(buffer, **results.arrays)
        (directory / f"{name}.npz").write_bytes(buffer.getvalue())

    _store(name).put(key, write)


def _read_results(entry: Path, name: str) -> Results:
    import numpy as np

    from genreport.experiments.common import Results

    with np.load(entry / f"{name}.npz") as arrays:
        return Results(json.loads((entry / f"{name}.json").read_text()), {label: arrays[label] for label in arrays.files})


def _start_worker(progress_lock: object, progress_rows: multiprocessing.Queue, parent: int, environment: dict[str, str]) -> None:
    # Kernel settings are read when torch loads its libraries, so they must be in place before any import of torch.
    assert "torch" not in sys.modules and "numpy" not in sys.modules, "torch or numpy was imported before the worker pinned its numerics"
    os.environ.update(environment)
    # SIGINT stays blocked here (inherited from the parent, see _run_in_workers): Ctrl-C is the parent's
    # to handle, and it stops the workers. A worker must not outlive a parent that was killed outright.
    if sys.platform == "linux":  # elsewhere an orphaned worker finishes its experiment and then exits
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)
    from tqdm import tqdm

    from genreport.experiments.common import PROGRESS_ROW_VARIABLE

    tqdm.set_lock(progress_lock)
    os.environ[PROGRESS_ROW_VARIABLE] = str(progress_rows.get())


def _run_in_workers(stale: list[tuple[str, str, bool]], config: ReportConfig, profile: str, device: str, workers: int,
                    environment: dict[str, str], forced: set[str], on_done: Callable[[str, float, float], None]) -> None:
    """Run the stale experiments (name, key, in parts) in `workers` processes, calling on_done(name, seconds,
    cpu_seconds) as each finishes. An experiment in parts is counted first, then its parts not yet cached
    (all of them when it is in `forced`) run side by side with everything else, then a worker combines them.

    A failed experiment, a worker killed from outside, or Ctrl-C stops the build and every worker.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")  # a forked child could inherit locks held by the parent's threads
    rows = context.Queue()
    for row in range(workers):
        rows.put(row)
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                   initargs=(context.RLock(), rows, os.getpid(), environment))
    running: dict[Future, Job] = {}
    started = {name: time.perf_counter() for name, _, _ in stale}
    keys = {name: key for name, key, _ in stale}
    cpu = dict.fromkeys(started, 0.0)
    parts_left: dict[str, int] = {}
    part_keys: dict[str, tuple[str, ...]] = {}

    def submit(job: Job) -> None:
        with interrupts.held():  # a submit may start a worker: it begins with SIGINT blocked and keeps it so
            running[executor.submit(_work, job)] = job

    def combine(name: str) -> None:
        submit(Job("combine", name, config, profile, device, keys[name], part_keys=part_keys[name]))

    finished = False
    try:
        for name, key, in_parts in stale:
            submit(Job("count" if in_parts else "whole", name, config, profile, device, key))
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                try:
                    count, cpu_seconds = future.result()
                except BrokenProcessPool:
                    raise BuildError("an experiment's worker process died (killed from outside, or out of memory)",
                                     hint="run the build again; finished experiments (and parts) are cached") from None
                cpu[job.name] += cpu_seconds
                if job.kind == "count":
                    part_keys[job.name] = tuple(part_key(job.key, index) for index in range(count))
                    missing = [index for index, key in enumerate(part_keys[job.name])
                               if job.name in forced or _store(job.name).get(key) is None]
                    print(f"  experiment {job.name}: {count} parts, {count - len(missing)} cached", flush=True)
                    parts_left[job.name] = len(missing)
                    for index in missing:
                        submit(Job("part", job.name, config, profile, device, part_keys[job.name][index], index))
                    if not missing:
                        combine(job.name)
                elif job.kind == "part":
                    parts_left[job.name] -= 1
                    if not parts_left[job.name]:
                        combine(job.name)
                else:
                    on_done(job.name, time.perf_counter() - started[job.name], cpu[job.name])
        finished = True
    finally:
        if not finished:
            for worker in multiprocessing.active_children():
                worker.kill()
        # Waiting also when the workers were killed: the pool's manager thread then closes its wake-up pipe before
        # the interpreter's exit handler writes to it (Python 3.11 races there and prints an OSError traceback).
        executor.shutdown(wait=True, cancel_futures=True)


def _store(name: str) -> cache.Store:
    return cache.Store(paths.EXPERIMENT_CACHE_DIR / name)


def publish(entry: Path, name: str) -> None:
    """Copy a cached entry to build/results, where the figure and LaTeX stages read it."""
    for suffix in (".json", ".npz"):
        source, target = entry / f"{name}{suffix}", paths.RESULTS_DIR / f"{name}{suffix}"
        if not target.exists() or cache.file_digest(target) != cache.file_digest(source):
            cache.copy_atomic(source, target)


def check_profiles(config: ReportConfig, experiments: dict[str, Experiment]) -> None:
    """A [profile.*.<name>] table for an experiment the project does not have is a typo, not a wish."""
    for profile, tables in config.profiles.items():
        for name in tables:
            if name not in experiments:
                text = config.source.read_text(encoding="utf-8") if config.source.exists() else ""
                header = re.search(rf"^\s*\[profile\.{re.escape(profile)}\.{re.escape(name)}[.\]]", text, re.MULTILINE)
                known = ", ".join(experiments) or f"none: {paths.shown(paths.EXPERIMENTS_DIR)}/ holds no experiment"
                raise BuildError(f"[profile.{profile}.{name}] names no experiment of this project (experiments: {known})",
                                 path=config.source, line=text.count("\n", 0, header.start()) + 1 if header else None,
                                 hint=f"an experiment is a module experiments/<name>.py with `def {ENTRY_POINT}` and `class Config`")


def _longest_first(names: list[str]) -> list[str]:
    """The stale experiments, longest first by their last run's time (so the last to finish is a short one)."""
    last = cache.read_json_dict(paths.EXPERIMENT_STAGE_RECORD).get("seconds", {})
    last = last if isinstance(last, dict) else {}
    return sorted(names, key=lambda name: (-float(last.get(name, 0) or 0), name))


def run_all(config: ReportConfig, profile: str, device: str, forced: set[str]) -> StageOutcome:
    device = resolve_device_name(device)
    experiments = discover()
    check_profiles(config, experiments)
    outcomes: dict[str, Outcome] = {}
    stale: dict[str, str] = {}
    inputs: dict[str, dict[str, object]] = {}
    for name in experiments:
        start = time.perf_counter()
        store = _store(name)
        store.prune_partials()
        inputs[name] = key_inputs(name, config, profile, device)
        key = cache_key(inputs[name])
        entry = None if name in forced else store.get(key)
        explain.experiment(name, inputs[name], config.source.name, key, reran=entry is None, forced=name in forced)
        if entry is None:
            stale[name] = key
            continue
        publish(entry, name)
        outcomes[name] = Outcome(name, key, inputs[name], True, time.perf_counter() - start)
    if not stale:
        return StageOutcome([outcomes[name] for name in experiments], None)
    tasks = [(name, stale[name], experiments[name].in_parts) for name in _longest_first(list(stale))]
    # One GPU is best given to one experiment at a time. On the CPU every stale experiment gets its own
    # process (up to two per core) and the kernel shares the cores among them: with one worker per core
    # the two long experiments each queued a short one behind them (GAN + diffusion, scaling + VAE: 254 s
    # on 2 cores, where the total CPU time split evenly is 240 s). Each still runs one torch thread, so
    # the results do not depend on how the work is scheduled.
    # An experiment in parts brings more tasks than it names; the pool starts a worker only when it has work for it.
    most = 2 * (os.cpu_count() or 1)
    workers = (most if any(in_parts for _, _, in_parts in tasks) else min(len(tasks), most)) if device == "cpu" else 1

    cpu_seconds: dict[str, float] = {}

    def finished(name: str, seconds: float, cpu: float) -> None:
        publish(_store(name).entry(stale[name]), name)
        outcomes[name] = Outcome(name, stale[name], inputs[name], False, seconds)
        cpu_seconds[name] = round(cpu, 2)
        print(f"  experiment {name} done in {seconds:.1f} s ({cpu:.1f} s of CPU)", flush=True)

    start = time.perf_counter()
    _run_in_workers(tasks, config, profile, device, workers, numerics(device, config.numerics), forced, finished)
    wall_seconds = time.perf_counter() - start
    record = {"ran": sorted(stale), "workers": workers, "profile": profile, "wall_seconds": round(wall_seconds, 2),
              "seconds": {**cache.read_json_dict(paths.EXPERIMENT_STAGE_RECORD).get("seconds", {}),
                          **{name: round(outcomes[name].seconds, 2) for name in sorted(stale)}},
              "cpu_seconds": cpu_seconds, "load_average": [round(load, 2) for load in os.getloadavg()]}
    cache.write_atomic(paths.EXPERIMENT_STAGE_RECORD, (json.dumps(record) + "\n").encode())  # read by `make bench`
    return StageOutcome([outcomes[name] for name in experiments], wall_seconds)
