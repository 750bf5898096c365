"""What every report's plot functions share: the figure registry, the results they receive, and a pyplot
set up to match the report's typesetting.

A plot function is registered with `@figure("name.pdf")` (vector PDF for plots, PNG for image grids) in
any module of the project's experiments/ folder; its parameters name the experiments whose results it
reads (`def gan_ring(gan: Result)`). The figure stage finds registered functions by parsing the modules
(genreport/build/figures.py), so an unchanged build never imports them, matplotlib or numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

TEXT_WIDTH_IN = 160 / 25.4  # A4 minus 25 mm margins, as set in templates/report.tex.j2
FIGURE_FORMATS = ("pdf", "png")

Function = TypeVar("Function", bound=Callable[..., Any])


def figure(file: str) -> Callable[[Function], Function]:
    """Register the decorated function as the one that draws `file` (under figures/) from results."""

    def register(function: Function) -> Function:
        function.figure_file = file  # type: ignore[attr-defined]
        return function

    return register


@dataclass(frozen=True)
class Result:
    """One experiment's results as the figure stage hands them over: metrics (JSON) and arrays (npz)."""

    metrics: dict[str, Any]
    arrays: dict[str, Any]  # name -> numpy array


def pyplot():
    """matplotlib's pyplot, headless, in the report's fonts: Computer Modern (matplotlib's bundled cmr10)
    so that plots match the Latin Modern body text; sizes are given in inches of the text block so that
    nothing is rescaled when included."""
    import logging

    import matplotlib

    # Fonts are embedded with zeroed timestamps (reproducible bytes), which fontTools warns about.
    logging.getLogger("fontTools").setLevel(logging.ERROR)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.family": "serif", "font.serif": ["cmr10"], "mathtext.fontset": "cm",
        "axes.formatter.use_mathtext": True, "axes.unicode_minus": False,
        "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
        "xtick.labelsize": 8, "ytick.labelsize": 8, "pdf.fonttype": 42, "axes.grid": False,
        "savefig.dpi": 200,
    })
    return plt
