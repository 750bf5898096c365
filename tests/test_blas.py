"""Under numerics = "portable" torch's matrix products are numpy's OpenBLAS ones, forward and backward.

The kernels are replaced for the rest of a process, so each check runs in a fresh one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import json, numpy as np, torch, torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from genreport.experiments.common import configure_torch
torch.manual_seed(0)
a, b = torch.randn(257, 300), torch.randn(300, 129)
x = torch.randn(4, 64, 300, requires_grad=True)
linear = torch.nn.Linear(300, 129)
q, k, v = (torch.randn(2, 3, 16, 8, requires_grad=True) for _ in range(3))
base, w = torch.randn(4, 1, 129, requires_grad=True), torch.randn(4, 300, 129, requires_grad=True)

def losses():
    return [linear(x).square().sum(), F.scaled_dot_product_attention(q, k, v, is_causal=True).square().sum(),
            torch.baddbmm(base, x, w).square().sum(), (x @ x.mT).sum()]

def gradients(values):
    leaves = [x, linear.weight, linear.bias, q, k, v, base, w]
    return [[g for g in torch.autograd.grad(value, leaves, allow_unused=True) if g is not None] for value in values]

with FlopCounterMode(display=False) as before:
    reference = losses()
reference_gradients = gradients(reference)
configure_torch(torch.device("cpu"))
with FlopCounterMode(display=False) as after:
    routed = losses()
routed_gradients = gradients(routed)
print(json.dumps({
    "mm_is_numpys": bool(np.array_equal((a @ b).numpy(), a.numpy() @ b.numpy())),
    "bmm_is_numpys": bool(np.array_equal(torch.bmm(x.detach(), w.detach()).numpy(), x.detach().numpy() @ w.detach().numpy())),
    "losses_close": [bool(torch.allclose(r, n, rtol=1e-5)) for r, n in zip(reference, routed)],
    # within float32 rounding of the largest element (sums of up to 300 products in another order)
    "gradients_close": [len(rs) == len(ns) and all(float((r - n).abs().max()) <= 1e-5 * float(r.abs().max()) for r, n in zip(rs, ns))
                        for rs, ns in zip(reference_gradients, routed_gradients)],
    "flops": [before.get_total_flops(), after.get_total_flops()],
}))
"""


def run_check(matmul: str | None) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "GENREPORT_MATMUL"}
    if matmul:
        env["GENREPORT_MATMUL"] = matmul
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env={**env, "OPENBLAS_NUM_THREADS": "1"},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_portable_numerics_compute_matrix_products_with_openblas_and_the_same_gradients() -> None:
    routed = run_check("openblas")
    assert routed["mm_is_numpys"] and routed["bmm_is_numpys"]
    assert all(routed["losses_close"]) and all(routed["gradients_close"])
    # The products are still ATen's mm, bmm and fused attention to torch's FLOP counter: the same count.
    assert routed["flops"][1] == routed["flops"][0] > 0


def test_without_the_setting_torch_keeps_its_own_kernels() -> None:
    # MKL's product of these shapes does not round as OpenBLAS's does: the check above can tell the two apart.
    assert not run_check(None)["mm_is_numpys"]
