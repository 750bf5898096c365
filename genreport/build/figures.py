"""The figure stage: redraw a figure only when its plotting function or the results it reads changed.

Plot functions are registered with `@figure("name.pdf")` (genreport/plotkit.py) in the modules of the
project's experiments/ folder. The registry is read by parsing those modules, not importing them, so an
unchanged build never loads numpy or matplotlib: which results a figure reads is taken from its
function's parameter names, its key from its own source text and the rest of its module's.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from genreport import paths
from genreport.build import cache, explain, interrupts
from genreport.errors import BuildError

PLOTKIT_SOURCE = Path(__file__).parent.parent / "plotkit.py"


@dataclass(frozen=True)
class Figure:
    file: str  # under figures/, e.g. "gan_ring.pdf"
    module: Path  # the module that defines the function
    function: str
    line: int
    source: str  # the function's own lines
    shared: str  # the rest of its module: helpers every figure of the module may call
    results: tuple[str, ...]  # the experiments whose results it reads, by parameter name

    @property
    def kind(self) -> str:
        return Path(self.file).suffix.lstrip(".")

    @property
    def drawn_by(self) -> str:
        return f"{paths.shown(self.module)}:{self.function}"


def registry() -> dict[str, Figure]:
    """Every registered figure of the project, by file name, in the order of the modules and functions."""
    figures: dict[str, Figure] = {}
    if not paths.EXPERIMENTS_DIR.is_dir():
        return figures
    for module in sorted(paths.EXPERIMENTS_DIR.glob("*.py")):
        for figure in _module_figures(module, module.read_text(encoding="utf-8")):
            if figure.file in figures:
                raise BuildError(f"two functions draw figures/{figure.file}: {figures[figure.file].drawn_by} and {figure.function}",
                                 path=module, line=figure.line, hint="give each @figure its own file name")
            figures[figure.file] = figure
    return figures


@functools.lru_cache(maxsize=32)  # asked by the figure stage, the LaTeX stage's key, the provenance page and the no-op check
def _module_figures(module: Path, source: str) -> tuple[Figure, ...]:
    if "figure(" not in source:  # an experiment or data module: no need to parse it
        return ()
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise BuildError(f"not valid Python: {error.msg}", path=module, line=error.lineno) from None
    lines = source.splitlines(keepends=True)
    found, shared = [], source
    for node in tree.body:
        file = _registered_file(node)
        if file is None or not isinstance(node, ast.FunctionDef):
            continue
        if Path(file).suffix not in (".pdf", ".png") or "/" in file or not Path(file).stem:
            raise BuildError(f"@figure({file!r}): a figure is a file name ending in .pdf (plots) or .png (image grids)",
                             path=module, line=node.lineno)
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        # Whole lines of the function (ast.get_source_segment splits the file again for every node).
        segment = "".join(lines[first - 1:node.end_lineno]).rstrip("\n")
        shared = shared.replace(segment, "")
        found.append((file, node, segment))
    return tuple(Figure(file, module, node.name, node.lineno, segment, shared, tuple(arg.arg for arg in node.args.args))
                 for file, node, segment in found)


def _registered_file(node: ast.stmt) -> str | None:
    for decorator in getattr(node, "decorator_list", []):
        if isinstance(decorator, ast.Call) and decorator.args and isinstance(decorator.args[0], ast.Constant):
            name = decorator.func.id if isinstance(decorator.func, ast.Name) else getattr(decorator.func, "attr", None)
            if name == "figure" and isinstance(decorator.args[0].value, str):
                return decorator.args[0].value
    return None


def check_inputs(figures: dict[str, Figure], experiments: set[str]) -> None:
    """A figure that reads an experiment the project does not have is stopped at its line, before anything draws."""
    for figure in figures.values():
        for result in figure.results:
            if result not in experiments:
                raise BuildError(f"figure {figure.file} ({figure.function}) reads results of `{result}`, which is no experiment "
                                 f"of this project (experiments: {', '.join(sorted(experiments)) or 'none'})",
                                 path=figure.module, line=figure.line,
                                 hint="name each parameter after the experiment whose results it receives")


def figure_key(figure: Figure) -> str:
    parts = [PLOTKIT_SOURCE.read_text(encoding="utf-8"), figure.shared, figure.source, figure.file]
    for result in figure.results:
        parts += [cache.file_digest(paths.RESULTS_DIR / f"{result}.json"), cache.file_digest(paths.RESULTS_DIR / f"{result}.npz")]
    return cache.digest(parts)


def explain_inputs(figure: Figure) -> dict[str, str]:
    """figure_key's inputs by name, for `build.py --explain`."""
    module = paths.shown(figure.module)
    inputs = {"genreport/plotkit.py": explain.text_input(PLOTKIT_SOURCE.read_text(encoding="utf-8")),
              f"{module} (code outside the figure functions)": explain.text_input(figure.shared),
              f"{module} (this figure's function)": explain.text_input(figure.source)}
    for result in figure.results:
        for suffix in (".json", ".npz"):
            path = paths.RESULTS_DIR / f"{result}{suffix}"
            inputs[paths.shown(path)] = explain.file_input(path)
    return inputs


def load_result(name: str):
    import numpy as np

    from genreport.plotkit import Result

    metrics = json.loads((paths.RESULTS_DIR / f"{name}.json").read_text())
    with np.load(paths.RESULTS_DIR / f"{name}.npz") as archive:
        return Result(metrics, {key: archive[key] for key in archive.files})


def draw_all(force: bool, experiments: set[str]) -> list[tuple[str, bool, float]]:
    """Redraw each figure whose key changed; return (file, reused, seconds)."""
    figures = registry()
    check_inputs(figures, experiments)
    keys_dir = paths.CACHE_DIR / "figures"
    outcomes = []
    for file, figure in figures.items():
        start = time.perf_counter()
        key = figure_key(figure)
        stamp = keys_dir / f"{file}.key"
        target = paths.FIGURES_DIR / file
        recorded = stamp.read_text().split() if stamp.exists() else []
        reused = not force and target.exists() and recorded == [key, cache.file_digest(target)]
        explain.note(f"figure {file}", not reused, explain_inputs(figure), forced=force)
        if reused:
            outcomes.append((file, True, time.perf_counter() - start))
            continue
        print(f"  drawing figure {file}", flush=True)
        with interrupts.held():
            from genreport.experiments import PACKAGE, import_project_package

            import_project_package()
            module = importlib.import_module(f"{PACKAGE}.{figure.module.stem}")
        drawn = getattr(module, figure.function)(*(load_result(result) for result in figure.results))
        save_figure(drawn, target, figure.kind)
        cache.write_atomic(stamp, f"{key} {cache.file_digest(target)}\n".encode())
        outcomes.append((file, False, time.perf_counter() - start))
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
