"""The experiments stay off the operations whose bits follow the processor (PROCESSOR_DEPENDENT_OPS)."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from genreport.experiments import PROCESSOR_DEPENDENT_OPS, discover


class ProcessorDependentCalls(TorchDispatchMode):
    """Records each ATen call (forward and backward) that MKL's vector functions would compute."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in PROCESSOR_DEPENDENT_OPS:
            self.seen.add(name)
        elif name in ("aten::pow", "aten::pow_") and len(args) > 1 and isinstance(args[1], float) and args[1] == 0.5:
            self.seen.add(f"{name}(x, 0.5)")  # ATen computes it as a square root
        return func(*args, **(kwargs or {}))


def test_the_guard_sees_what_it_is_meant_to_see() -> None:
    with ProcessorDependentCalls() as calls:
        parameter = torch.nn.Parameter(torch.rand(8))
        optimizer = torch.optim.Adam([parameter])  # the per-tensor Adam takes a square root
        parameter.sum().backward()
        optimizer.step()
        torch.cdist(torch.rand(3, 2), torch.rand(4, 2))
        torch.cdist(torch.rand(30, 2), torch.rand(40, 2))  # above 25 rows it takes the matrix-product path
        torch.rand(3).pow(0.5), torch.rand(3).pow_(0.5), torch.rand(3).atan(), torch.rand(3).log10()
        torch.rand(3).pow(torch.rand(3)), torch.rand(3).pow(2)  # other exponents are not square roots
    assert calls.seen == {"aten::sqrt", "aten::_cdist_forward", "aten::_euclidean_dist", "aten::pow(x, 0.5)",
                          "aten::pow_(x, 0.5)", "aten::atan", "aten::log10"}


@pytest.mark.parametrize("name", sorted(discover()))
def test_experiment_avoids_processor_dependent_operations(name: str) -> None:
    module = importlib.import_module(f"experiments.{name}")
    with ProcessorDependentCalls() as calls:
        module.run(module.Config.fast(), "cpu")
    assert not calls.seen, f"{name} calls {sorted(calls.seen)}: their bits differ between processors (make crosscpu)"
