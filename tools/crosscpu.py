"""`make crosscpu`: which of the experiments' operations give the same bits on another processor?

The build pins MKL, ATen and oneDNN (genreport.experiments.PINNED_NUMERICS, or PORTABLE_NUMERICS with
report.toml's `numerics = "portable"`) so that machines compute alike. Whether they do can only be seen on other processors; QEMU's user-mode emulator runs this
machine's Python on an emulated one (`qemu-x86_64 -cpu Haswell`: an Intel processor with AVX2 and
no AVX-512; `-cpu EPYC`: an AMD Zen 1), and the libraries choose their code paths by the processor
they are shown (vendor and instruction sets). A probe computes each operation the experiments rely
on from fixed inputs, with the pinned settings, natively and under each emulated processor, and the
table says which results are bit-identical. Optionally a whole experiment (fast profile) is compared
by the digests that results.lock.json uses. Emulation is slow (minutes per run) and not bit-exact for
the few instructions whose results the hardware leaves open (approximate reciprocals); it is a
stand-in for the real machines, not a test.

    python tools/crosscpu.py                         # the probe, natively and on Haswell and EPYC
    python tools/crosscpu.py --cpus Haswell --experiment vae
    python tools/crosscpu.py --numerics portable --experiment gan
    python tools/crosscpu.py --set MKL_CBWR=AVX2,STRICT    # try another value of one setting
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genreport.build.config import NUMERICS, apply_overrides  # after the path is set; neither imports torch
from genreport.experiments import PINNED_NUMERICS, PORTABLE_NUMERICS, TORCH_THREADS


def probe() -> dict[str, str]:
    """Digests of the operations the experiments use, on fixed random inputs."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from genreport.experiments.blas import route_matmuls_if_portable

    torch.set_num_threads(TORCH_THREADS)
    route_matmuls_if_portable()  # as configure_torch does in the experiments
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(257, 300, generator=generator), torch.randn(300, 129, generator=generator)
    images, kernels = torch.randn(64, 1, 28, 28, generator=generator), torch.randn(16, 1, 5, 5, generator=generator)
    codes, up = torch.randn(8, 16, 7, 7, generator=generator), torch.randn(16, 8, 4, 4, generator=generator)
    v = torch.randn(100_000, generator=generator)
    parameter = torch.nn.Parameter(a.clone())
    optimizer = torch.optim.AdamW([parameter], 1e-3, fused=True)
    for _ in range(3):
        optimizer.zero_grad()
        (parameter.tanh() ** 2).sum().backward()
        optimizer.step()
    per_tensor = torch.nn.Parameter(a.clone())
    optimizer = torch.optim.Adam([per_tensor], 1e-3)
    for _ in range(3):
        optimizer.zero_grad()
        (per_tensor.tanh() ** 2).sum().backward()
        optimizer.step()
    results = {
        "randn (torch's generator)": v, "matmul (MKL sgemm)": a @ b,
        "matmul 8x8x8 (MKL's small-matrix path)": a[:8, :8].contiguous() @ b[:8, :8].contiguous(),
        "linear (transposed weight)": F.linear(a, b.T.contiguous(), b[0]), "exp": torch.exp(v), "log": torch.log(v.abs() + 1),
        "sqrt": torch.sqrt(v.abs()), "tanh": torch.tanh(v), "sigmoid": torch.sigmoid(v), "gelu": F.gelu(v),
        "softmax": torch.softmax(a, -1), "log_softmax": F.log_softmax(a, -1), "layer_norm": F.layer_norm(a, (300,)),
        "conv2d (oneDNN)": F.conv2d(images, kernels), "conv_transpose2d (oneDNN)": F.conv_transpose2d(codes, up, stride=2),
        "sum": v.sum(), "AdamW, 3 fused steps": parameter.detach(), "numpy matmul (OpenBLAS)": torch.from_numpy(a.numpy() @ b.numpy()),
        "numpy exp, float64": torch.from_numpy(np.exp(v.numpy().astype(np.float64))),
        "log1p": torch.log1p(v.abs()), "expm1": torch.expm1(v), "rsqrt": torch.rsqrt(v.abs() + 1), "erf": torch.erf(v),
        "sin": torch.sin(v), "pow 0.5": v.abs().pow(0.5), "exp2": torch.exp2(v), "softplus": F.softplus(v),
        "logsigmoid": F.logsigmoid(v), "BCE with logits": F.binary_cross_entropy_with_logits(a, torch.sigmoid(a), reduction="none"),
        "cdist": torch.cdist(a[:, :2].contiguous(), b.T[:, :2].contiguous()), "Adam, 3 per-tensor steps": per_tensor.detach(),
        "cos": torch.cos(v), "tan": torch.tan(v), "atan": torch.atan(v), "log2": torch.log2(v.abs() + 1),
        "log10": torch.log10(v.abs() + 1), "erfc": torch.erfc(v), "erfinv": torch.erfinv(torch.tanh(v)), "sinh": torch.sinh(v),
        "cosh": torch.cosh(v), "silu": F.silu(v), "logspace": torch.logspace(0, 3, 1000), "vector_norm": torch.linalg.vector_norm(a, dim=1),
        "grid_sample, bilinear": F.grid_sample(images, F.affine_grid(torch.eye(2, 3).expand(64, 2, 3) * 0.9, [64, 1, 28, 28], align_corners=True), align_corners=True),
        "scaled_dot_product_attention": F.scaled_dot_product_attention(*(a.view(1, 257, 4, 75).transpose(1, 2),) * 3, is_causal=True),
        "bmm": torch.bmm(a[:256].reshape(4, 64, 300), b.expand(4, 300, 129)),
        "baddbmm": torch.baddbmm(b[:1, :].expand(4, 1, 129), a[:256].reshape(4, 64, 300), b.expand(4, 300, 129)),
    }
    digests = {name: hashlib.sha256(np.ascontiguousarray(t.numpy()).tobytes()).hexdigest()[:12] for name, t in results.items()}
    digests["ATen capability"] = torch.backends.cpu.get_cpu_capability()
    return digests


def experiment_digests(name: str, overrides: list[str]) -> dict[str, str]:
    """An experiment's fast profile, by the digests results.lock.json compares (metrics without wall times, arrays)."""
    import importlib

    import numpy as np
    import torch

    from genreport.build import lock

    torch.set_num_threads(TORCH_THREADS)
    module = importlib.import_module(f"experiments.{name}")
    config = apply_overrides(module.Config.fast(), {k: tomllib.loads(f"v = {v}")["v"] for k, _, v in (o.partition("=") for o in overrides)}, name)
    results = module.run(config, "cpu")
    with tempfile.TemporaryDirectory() as scratch:
        arrays = Path(scratch) / "arrays.npz"
        np.savez(arrays, **results.arrays)
        return {f"{name} (fast) metrics": lock.metrics_digest(json.loads(json.dumps(results.metrics, default=float)))[:12],
                f"{name} (fast) arrays": lock.arrays_digest(arrays)[:12]}


def run(cpu: str | None, experiment: str | None, overrides: list[str], settings: dict[str, str | None]) -> dict[str, str]:
    """The probe in a fresh process with the settings, natively (cpu None) or on an emulated processor."""
    command = [sys.executable, __file__, "--child"] + (["--experiment", experiment, "--override", *overrides] if experiment else [])
    if cpu:
        command = ["qemu-x86_64", "-cpu", cpu, *command]
    env = {**os.environ, **{k: v for k, v in settings.items() if v is not None}}
    for name in [k for k, v in settings.items() if v is None]:
        env.pop(name, None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", nargs="+", default=["Haswell", "EPYC"], help="QEMU processor models (qemu-x86_64 -cpu help)")
    parser.add_argument("--experiment", choices=["gan", "dcgan", "vae", "scaling", "diffusion"], help="also compare this experiment's fast profile")
    parser.add_argument("--override", nargs="*", default=[], metavar="NAME=VALUE",
                        help="change the experiment's fast profile (a TOML value: deslant=false)")
    parser.add_argument("--numerics", choices=NUMERICS, default="fast", help="which of report.toml's settings to start from (default fast)")
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE",
                        help="try another setting in place of the chosen one (an empty VALUE leaves the variable unset)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.override and not args.experiment:
        parser.error("--override changes an experiment: name it with --experiment")
    if args.child:
        print(json.dumps({**probe(), **(experiment_digests(args.experiment, args.override) if args.experiment else {})}))
        return 0
    if shutil.which("qemu-x86_64") is None:
        print("crosscpu needs QEMU's user-mode emulator: apt-get install qemu-user", file=sys.stderr)
        return 2
    settings: dict[str, str | None] = dict(PORTABLE_NUMERICS if args.numerics == "portable" else PINNED_NUMERICS)
    for assignment in args.set:
        name, _, value = assignment.partition("=")
        settings[name] = value or None
    shown = " ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
    print(f"settings: {shown}; emulating {', '.join(args.cpus)} (minutes each)", flush=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        runs = dict(zip(["native", *args.cpus], pool.map(lambda cpu: run(cpu, args.experiment, args.override, settings), [None, *args.cpus])))
    names = list(runs["native"])
    print(f"\n| operation | native | {' | '.join(args.cpus)} |\n|---|---|{'---|' * len(args.cpus)}")
    for name in names:
        cells = [runs[cpu].get(name, runs[cpu].get("failed", "?")) for cpu in args.cpus]
        marks = ["same" if cell == runs["native"][name] else f"differs ({cell})" for cell in cells]
        print(f"| {name} | {runs['native'][name]} | {' | '.join(marks)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
