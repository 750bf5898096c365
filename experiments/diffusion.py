"""A denoising diffusion probabilistic model (Ho et al., 2020) on the 8-Gaussian ring.

Scored with the same modes-captured / high-quality metrics as the GAN, so the report can compare
the two families on equal terms; the reverse process is stored for the figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from experiments.data import ring_metrics, sample_ring
from genreport.experiments.common import (
    Results,
    Stopwatch,
    TrainingFlops,
    configure_torch,
    progress,
    provenance,
    resolve_device,
    seed_everything,
)

# The numbers a reader of the report sees first (dotted paths into the metrics): results.lock.json
# names each one that moved in a rebuild.
HEADLINES = ("ring.modes_captured", "ring.high_quality_fraction")


@dataclass(frozen=True)
class Config:
    diffusion_steps: int = 100
    beta_start: float = 1e-4
    beta_end: float = 0.1
    train_steps: int = 4000
    batch_size: int = 512
    hidden: int = 128
    learning_rate: float = 2e-3
    eval_samples: int = 2500
    snapshots: int = 6
    seed: int = 0

    @classmethod
    def fast(cls) -> Config:
        return cls(train_steps=200, diffusion_steps=50)


class Denoiser(nn.Module):
    """Predicts the noise added to x_t, given x_t and a sinusoidal embedding of t."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 + 32, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2),
        )

    @staticmethod
    def embed(t: torch.Tensor) -> torch.Tensor:
        frequencies = torch.logspace(0, 3, 16, device=t.device)  # 1 to 1000, geometrically
        angles = t.float()[:, None] * frequencies[None, :] / 100
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, self.embed(t)], dim=1))


def run(config: Config, device_name: str = "auto") -> Results:
    device = resolve_device(device_name)
    configure_torch(device)
    clock = Stopwatch()
    data_rng = seed_everything(config.seed)
    betas = torch.linspace(config.beta_start, config.beta_end, config.diffusion_steps, device=device)
    alphas = 1 - betas
    alpha_bars = alphas.cumprod(0)
    # The schedule's square roots, once, by numpy: the processor's own correctly rounded instruction.
    # torch.sqrt on the CPU goes through MKL's vector functions, whose last bits differ between processors.
    sqrt_betas, sqrt_alphas, sqrt_alpha_bars, sqrt_one_minus_alpha_bars = (
        torch.from_numpy(np.sqrt(values.cpu().numpy())).to(device) for values in (betas, alphas, alpha_bars, 1 - alpha_bars)
    )

    model = Denoiser(config.hidden).to(device)
    # fused: one kernel per step, whose square root is ATen's own; the per-tensor path's goes through MKL's
    # vector functions, which give other bits on other processors (tools/crosscpu.py).
    optimizer = torch.optim.Adam(model.parameters(), config.learning_rate, fused=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.train_steps)
    flops = TrainingFlops()
    for _ in progress(range(config.train_steps), "diffusion"):
        with flops.step():
            x0 = sample_ring(config.batch_size, data_rng).to(device)
            t = torch.randint(0, config.diffusion_steps, (config.batch_size,), device=device)
            noise = torch.randn_like(x0)
            xt = sqrt_alpha_bars[t][:, None] * x0 + sqrt_one_minus_alpha_bars[t][:, None] * noise
            loss = (model(xt, t) - noise).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()

    # Ancestral sampling (Ho et al., Algorithm 2) with sigma_t^2 = beta_t.
    snapshot_steps = set(np.linspace(config.diffusion_steps, 0, config.snapshots).round().astype(int).tolist())
    snapshots, snapshot_labels = [], []
    with torch.no_grad():
        x = torch.randn(config.eval_samples, 2, device=device)
        for t in reversed(range(config.diffusion_steps + 1)):
            if t in snapshot_steps:
                snapshots.append(x.cpu().numpy())
                snapshot_labels.append(t)
            if t == 0:
                break
            step = torch.full((len(x),), t - 1, device=device)
            predicted_noise = model(x, step)
            x = (x - betas[t - 1] / sqrt_one_minus_alpha_bars[t - 1] * predicted_noise) / sqrt_alphas[t - 1]
            if t > 1:
                x = x + sqrt_betas[t - 1] * torch.randn_like(x)

    metrics = {
        "ring": ring_metrics(x.cpu()),
        "final_alpha_bar": round(float(alpha_bars[-1]), 5),
        "snapshot_steps": snapshot_labels,
        "train_flops": flops.total,
        **provenance(config, config.seed, device, clock.seconds),
    }
    return Results(metrics, {"snapshots": np.stack(snapshots)})
