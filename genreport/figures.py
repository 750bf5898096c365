"""The figure stage: redraw a figure only when its plotting function or the results it reads changed.

The drawing code lives in genreport/plots.py and is imported only when something must be drawn, so
an unchanged build never loads numpy or matplotlib. Which results a figure reads is taken from its
function's parameter names, and its key from its own source text, both by parsing plots.py.
"""

from __future__ import annotations

import ast
import functools
import json
import time
from pathlib import Path

from genreport import cache, explain, interrupts, paths

PLOTS_SOURCE = Path(__file__).with_name("plots.py")

# Figure name (= function in plots.py) -> file type: vector PDF for plots, PNG for image grids.
FIGURES: dict[str, str] = {
    "gan_ring": "pdf",
    "gan_mnist_samples": "png",
    "vae_latent": "pdf",
    "vae_manifold": "png",
    "vae_reconstructions": "png",
    "scaling_loss_vs_params": "pdf",
    "scaling_loss_vs_compute": "pdf",
    "attention_map": "pdf",
    "diffusion_reverse": "pdf",
}


def _parse_plots() -> tuple[str, dict[str, str], dict[str, list[str]]]:
    """plots.py as (shared source, source per figure function, results each figure reads)."""
    return _split_plots(PLOTS_SOURCE.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=4)  # asked by the figure stage, the LaTeX stage's key and the no-op check
def _split_plots(source: str) -> tuple[str, dict[str, str], dict[str, list[str]]]:
    lines = source.splitlines(keepends=True)
    per_figure, inputs, shared = {}, {}, source
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name in FIGURES:
            # Whole lines of the function (ast.get_source_segment splits the file again for every node).
            segment = "".join(lines[node.lineno - 1:node.end_lineno]).rstrip("\n")
            per_figure[node.name] = segment
            inputs[node.name] = [arg.arg for arg in node.args.args]
            shared = shared.replace(segment, "")
    missing = set(FIGURES) - set(per_figure)
    if missing:
        raise RuntimeError(f"{PLOTS_SOURCE} defines no function for figure(s) {sorted(missing)}")
    return shared, per_figure, inputs


def figure_key(name: str, shared: str, source: str, inputs: list[str]) -> str:
    parts = [shared, source, FIGURES[name]]
    for result in inputs:
        parts += [cache.file_digest(paths.RESULTS_DIR / f"{result}.json"), cache.file_digest(paths.RESULTS_DIR / f"{result}.npz")]
    return cache.digest(parts)


def explain_inputs(shared: str, source: str, results: list[str]) -> dict[str, str]:
    """figure_key's inputs by name, for `build.py --explain`."""
    inputs = {"genreport/plots.py (code outside the figure functions)": explain.text_input(shared),
              "genreport/plots.py (this figure's function)": explain.text_input(source)}
    for result in results:
        for suffix in (".json", ".npz"):
            path = paths.RESULTS_DIR / f"{result}{suffix}"
            inputs[str(path.relative_to(paths.ROOT))] = explain.file_input(path)
    return inputs


def load_result(name: str):
    import numpy as np

    from genreport.plots import Result

    metrics = json.loads((paths.RESULTS_DIR / f"{name}.json").read_text())
    with np.load(paths.RESULTS_DIR / f"{name}.npz") as archive:
        return Result(metrics, {key: archive[key] for key in archive.files})


def output_path(name: str) -> Path:
    return paths.FIGURES_DIR / f"{name}.{FIGURES[name]}"


def draw_all(force: bool) -> list[tuple[str, bool, float]]:
    """Redraw each figure whose key changed; return (name, reused, seconds)."""
    shared, per_figure, inputs = _parse_plots()
    keys_dir = paths.CACHE_DIR / "figures"
    outcomes = []
    for name, kind in FIGURES.items():
        start = time.perf_counter()
        key = figure_key(name, shared, per_figure[name], inputs[name])
        stamp = keys_dir / f"{name}.key"
        target = output_path(name)
        recorded = stamp.read_text().split() if stamp.exists() else []
        reused = not force and target.exists() and recorded == [key, cache.file_digest(target)]
        explain.note(f"figure {name}", not reused, explain_inputs(shared, per_figure[name], inputs[name]), forced=force)
        if reused:
            outcomes.append((name, True, time.perf_counter() - start))
            continue
        print(f"  drawing figure {name}", flush=True)
        with interrupts.held():
            from genreport import plots

        figure = getattr(plots, name)(*(load_result(result) for result in inputs[name]))
        save_figure(figure, target, kind)
        cache.write_atomic(stamp, f"{key} {cache.file_digest(target)}\n".encode())
        outcomes.append((name, False, time.perf_counter() - start))
    return outcomes


def save_figure(figure, target: Path, kind: str) -> None:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    # No timestamps or software tags: the same results must give the same bytes.
    metadata = {"CreationDate": None, "Producer": None, "Creator": None} if kind == "pdf" else {"Software": None}
    figure.savefig(buffer, format=kind, metadata=metadata)
    plt.close(figure)
    cache.write_atomic(target, buffer.getvalue())
