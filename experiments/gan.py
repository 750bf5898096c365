"""An MLP GAN on a ring of 8 Gaussians, scored by modes captured and high-quality fraction over seeds.

A plain GAN collapses here, so we use the non-saturating loss with an R1 gradient penalty on real data
(Mescheder et al., 2018), cosine learning-rate decay and an exponential moving average of the generator
weights (Yazici et al., 2019). The MNIST GAN, the other half of the report's GAN experiment, is
experiments/dcgan.py.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from experiments.data import ring_metrics, sample_ring
from genreport.experiments.common import (
    Results,
    Stopwatch,
    TrainingFlops,
    configure_torch,
    ema_update,
    progress,
    provenance,
    r1_penalty,
    resolve_device,
    seed_everything,
)

# The numbers a reader of the report sees first (dotted paths into the metrics): results.lock.json
# names each one that moved in a rebuild.
HEADLINES = ("ring.modes_captured", "ring.high_quality_fraction")


@dataclass(frozen=True)
class Config:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 9000
    # Issue 22 (seeds 0-4 stacked, 9,000 steps, pinned AVX2 path, 2026-12-07; worst seed's HQ, CPU-s): the former
    # 16-D latent with batch 256 held 8/8 at 92.9-95.0% HQ (214 s), batch 512 94.0% (3 seeds, 2x the time), an R1
    # gamma of 0.02 lost a mode. A 2-D latent: 96.3-97.8% (188 s); with batch 192 96.5-97.2% (157 s), batch 128
    # 95.5% (106 s); 7,000 steps 94.1%, 5,000 steps 91.6%; hidden width 96: 96.0%, 64: 86.2%.
    batch_size: int = 192
    latent_dim: int = 2
    hidden: int = 128
    learning_rate: float = 1e-3
    # gamma 0.005 and 6000 steps lost modes or fell below 90% HQ on some seeds and kernel paths (16-D latent).
    r1_gamma: float = 0.05
    r1_every: int = 4
    ema_rate: float = 0.005
    eval_samples: int = 2500
    seed: int = 0

    @classmethod
    def fast(cls) -> Config:
        return cls(seeds=(0,), steps=300)


# --- ring of Gaussians -------------------------------------------------------------------------

class StackedMLP(nn.Module):
    """Independent MLPs, one per seed, evaluated together with batched matrix products.

    Three seeds stacked take about half the time of three separate runs (measured: 25 ms against
    48 ms per step on one thread). Each member keeps its own initialisation (its seed's nn.Linear
    layers) and, because Adam, the schedule and the EMA act element by element, trains as it would alone.
    """

    def __init__(self, members: list[list[nn.Linear]], activation: nn.Module) -> None:
        super().__init__()
        depth = len(members[0])
        self.weights = nn.ParameterList(nn.Parameter(torch.stack([m[i].weight.detach().T for m in members])) for i in range(depth))
        self.biases = nn.ParameterList(nn.Parameter(torch.stack([m[i].bias.detach()[None] for m in members])) for i in range(depth))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (members, batch, features) -> (members, batch, outputs)."""
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(bias, x, weight)
            if index < len(self.weights) - 1:
                x = self.activation(x)
        return x


def _linears(inputs: int, outputs: int, hidden: int) -> list[nn.Linear]:
    return [nn.Linear(inputs, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, outputs)]


def train_ring_gans(cfg: Config, device: torch.device) -> tuple[list[dict], np.ndarray, int]:
    """One GAN per seed in cfg.seeds, trained side by side; returns per-seed metrics, samples and training FLOPs."""
    generators, discriminators, rngs = [], [], []
    for seed in cfg.seeds:
        rngs.append(seed_everything(seed))
        generators.append(_linears(cfg.latent_dim, 2, cfg.hidden))
        discriminators.append(_linears(2, 1, cfg.hidden))
    gen = StackedMLP(generators, nn.ReLU()).to(device)
    disc = StackedMLP(discriminators, nn.LeakyReLU(0.2)).to(device)
    gen_ema = copy.deepcopy(gen)
    # fused: one kernel per step, whose square root is ATen's own; the per-tensor path's goes through MKL's
    # vector functions, which give other bits on other processors (tools/crosscpu.py).
    opt_g = torch.optim.Adam(gen.parameters(), cfg.learning_rate, betas=(0.5, 0.9), fused=True)
    opt_d = torch.optim.Adam(disc.parameters(), cfg.learning_rate, betas=(0.5, 0.9), fused=True)
    schedules = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps) for opt in (opt_g, opt_d)]

    flops = TrainingFlops(counted_steps=cfg.r1_every)

    def noise() -> torch.Tensor:
        return torch.stack([torch.randn(cfg.batch_size, cfg.latent_dim, generator=rng) for rng in rngs]).to(device)

    # Losses are summed over members (each member's mean over its batch), so every member gets the
    # gradient it would get training alone.
    for step in progress(range(cfg.steps), f"gan ring x{len(cfg.seeds)} seeds"):
        with flops.step():
            # Lazy R1 (Karras et al., 2020): the penalty, scaled up, every few steps, saving its second backward pass.
            regularise = step % cfg.r1_every == 0
            real = torch.stack([sample_ring(cfg.batch_size, rng) for rng in rngs]).to(device)
            if regularise:  # differentiate through a non-leaf copy: torch's FLOP counter fails on grad() to a leaf
                real = real.requires_grad_(True) * 1.0
            fake = gen(noise())
            real_scores, fake_scores = disc(real), disc(fake.detach())
            loss_d = (F.softplus(-real_scores).mean(1) + F.softplus(fake_scores).mean(1)).sum()
            if regularise:
                loss_d = loss_d + r1_penalty(real_scores, real, cfg.r1_gamma, cfg.r1_every, sample_dims=2)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

            loss_g = F.softplus(-disc(fake)).mean(1).sum()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            for schedule in schedules:
                schedule.step()
            ema_update(gen_ema, gen, cfg.ema_rate)

    eval_noise = torch.stack([torch.randn(cfg.eval_samples, cfg.latent_dim, generator=rng) for rng in rngs]).to(device)
    with torch.no_grad():
        samples = gen_ema(eval_noise).cpu()
    runs = [{"seed": seed, **ring_metrics(member)} for seed, member in zip(cfg.seeds, samples)]
    return runs, samples.numpy(), flops.total


def run(config: Config, device_name: str = "auto") -> Results:
    device = resolve_device(device_name)
    configure_torch(device)
    clock = Stopwatch()
    runs, samples, flops = train_ring_gans(config, device)
    worst = min(runs, key=lambda r: (r["modes_captured"], r["high_quality_fraction"]))
    metrics = {
        # The headline ring numbers are the worst seed's, so a lucky seed cannot flatter the report.
        "ring": {
            "modes_captured": worst["modes_captured"],
            "modes_total": worst["modes_total"],
            "high_quality_fraction": worst["high_quality_fraction"],
            "min_count": worst["min_count"],
            "radius": worst["radius"],
            "std": worst["std"],
            "seeds": runs,
        },
        "train_flops": flops,
        **provenance(config, config.seed, device, clock.seconds),
    }
    return Results(metrics, {"ring_samples": samples})
