"""Matrix products through numpy's OpenBLAS, for `numerics = "portable"`.

MKL computes torch's matrix products on the CPU, and it follows `MKL_CBWR` on Intel processors only: the one
branch it computes alike on Intel and AMD, `COMPATIBLE`, has no vector instructions, and its matrix products
are two to three times slower than its AVX2 branch's (the experiment stage took 1.8 times as long:
docs/numerics.md). numpy's OpenBLAS, pinned to its Haswell (AVX2) kernels by `OPENBLAS_CORETYPE`, gave the
same bits on both vendors' processors in `make crosscpu` and is as fast as MKL's AVX2 branch on our shapes.

So under "portable" the CPU kernels of torch's matrix products (`mm`, `addmm`, `bmm`, `baddbmm`: what
`nn.Linear`, `@` and their gradients reach) and of its fused attention (which multiplies with MKL inside) are
replaced by ones that multiply with OpenBLAS. Everything else still runs where it did, MKL's vector functions
on `COMPATIBLE`, so every operation computes alike on both vendors; the replacement only buys speed.
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import torch

# The environment variable (set with the other numerics pins, so part of every experiment's cache key) that
# makes configure_torch replace the kernels.
MATMUL_VARIABLE = "GENREPORT_MATMUL"


def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mm and bmm. Below autograd (it records the product itself), the tensors still carry requires_grad."""
    return torch.from_numpy(np.matmul(a.detach().numpy(), b.detach().numpy()))


def _accumulated_product(base: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1, alpha: float = 1
                         ) -> torch.Tensor:
    """addmm and baddbmm: beta * base + alpha * a b, where beta == 0 ignores base, NaNs included, as BLAS does."""
    product = _product(a, b)
    if alpha != 1:
        product = product * alpha
    return product if beta == 0 else (base if beta == 1 else base * beta) + product


def _attention_weights(query: torch.Tensor, key: torch.Tensor, is_causal: bool, scale: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The scores q k^T scale (the future masked where causal) and their softmax. ATen's softmax, not `exp`, which
    is one of MKL's vector functions, slow on the `COMPATIBLE` branch; the scale is applied to the smaller q."""
    scores = _product(query * scale, key.mT)
    if is_causal:
        scores.add_(_causal_bias(query.shape[-2], key.shape[-2]))
    return scores, scores.softmax(-1)


@functools.cache
def _causal_bias(queries: int, keys: int) -> torch.Tensor:
    """0 where a query may attend to a key, -inf after it: added to the scores (a broadcast masked_fill_ took twice as long)."""
    return torch.full((queries, keys), float("-inf")).triu(1)


def flash_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout_p: float = 0.0,
                    is_causal: bool = False, *, attn_mask: torch.Tensor | None = None, scale: float | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused kernel's contract, the output and each row's log-sum-exp of the scores, with OpenBLAS's products."""
    if dropout_p or attn_mask is not None:
        raise NotImplementedError("attention with dropout or a mask under numerics = 'portable'")
    with torch.no_grad():
        scores, weights = _attention_weights(query, key, is_causal, scale or query.shape[-1] ** -0.5)
        # log-sum-exp = the largest score minus the log of its weight, the largest weight (at least 1/length)
        log_normaliser = scores.amax(-1) - weights.amax(-1).log()
        return _product(weights, value), log_normaliser


def flash_attention_backward(grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             out: torch.Tensor, log_normaliser: torch.Tensor, dropout_p: float, is_causal: bool, *,
                             attn_mask: torch.Tensor | None = None, scale: float | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of softmax(q k^T scale) v, the weights recomputed (as the fused kernel does)."""
    with torch.no_grad():
        factor = scale or query.shape[-1] ** -0.5
        _, weights = _attention_weights(query, key, is_causal, factor)
        grad_scores = _product(grad, value.mT).sub_((grad * out).sum(-1, keepdim=True)).mul_(weights)
        return (_product(grad_scores, key).mul_(factor), _product(grad_scores.mT, query).mul_(factor),
                _product(weights.mT, grad))


_library: torch.library.Library | None = None


def route_matmuls_if_portable() -> None:
    """Under numerics = "portable" (the environment says so), replace the CPU kernels for the rest of the process
    (an experiment worker); otherwise, or when they are replaced already, do nothing."""
    global _library
    if _library is not None or os.environ.get(MATMUL_VARIABLE) != "openblas":
        return
    _library = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Warning only once for all operators")  # that we override a kernel
        for name, kernel in (("mm", _product), ("bmm", _product), ("addmm", _accumulated_product), ("baddbmm", _accumulated_product),
                             ("_scaled_dot_product_flash_attention_for_cpu", flash_attention),
                             ("_scaled_dot_product_flash_attention_for_cpu_backward", flash_attention_backward)):
            _library.impl(name, kernel, "CPU")
