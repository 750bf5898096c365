"""Variational autoencoder with a 2-D latent space on MNIST (Kingma & Welling, 2014).

Likelihood: independent Bernoulli per pixel on grey levels scaled to [0, 1] (binary cross-entropy
with logits), the usual choice for MNIST VAEs; the ELBO is therefore a bound in nats per image
under that likelihood, not a density of the 8-bit data.

Two measures keep a 2-D latent space from spending itself on nuisance: digits are deslanted first
(LeCun et al., 1998), so slant need not be encoded, and the encoder sees its input with half the pixels
masked (the denoising criterion of Im et al., 2017), which generalises better from 4,000 training
digits. With a wider network they raised the 5-NN accuracy of the test latent means from 68% to
80.4-82.9% over seeds 0-4 (the settings tried are in the project's issue notes).

Tried for issue 22 (5-NN accuracy at seed 0, CPU seconds; this recipe: 80.8%, 48 s) and not adopted: none
moved the accuracy beyond the spread between seeds. The learning rate 2e-3 (82.0%), batch 256 with 80 epochs
(83.7%, 81 s; but 81.3% and 80.5% at seeds 1 and 2), a cosine learning-rate decay (77.8%; 79.9% over 80
epochs), batch 64 (79.1%, 82 s), a 20-epoch KL warm-up (79.7%), masking 30% or 70% (80.4%, 79.8%),
shifting or thickening/thinning the encoder's input by up to 2 pixels (78.1%, 78.7%), a learned 10-component
Gaussian-mixture prior (80.9%), convolutional networks (70.5-73.2%, 62-88 s). Later (seeds 0 / 1): a KL weight
of 0.5 or 0.25 after warm-up (81.5 / 81.6%, 79.9 / 80.3%), dropout 0.2 or 0.3 after the hidden layers, weight decay
0.5 or both (77.7-79.9%), weights averaged over training (EMA 0.999: 78.7 / 77.3%), the 5-sample importance-weighted
bound of Burda et al. (78.2% at seed 0, twice the time), digits binarised afresh each step (81.0 / 80.2%), and the
continuous Bernoulli likelihood of Loaiza-Ganem & Cunningham (61.5% at seed 0). Then (seed 0): random rotations,
scalings and shifts of input and target alike (up to 10 degrees, 10%, 1 pixel: 77.3%; 15 degrees, 15%, 2 pixels:
67.7%), every digit redrawn with one pen (skeleton blurred to one stroke width: 79.8%), a KL weight of 1.5 (80.9%).
Trained on 1,000 / 2,000 / 4,000 of the training digits, the accuracy was 77.2 / 80.2 / 81.4% at seed 0 and
76.8 / 79.0 / 77.6% at seed 1: past 2,000 digits more of them did not help beyond the seeds' spread, so the 5,000
digits the package ships are not what holds it near 80%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from experiments.data import Digits, deslant, load_mnist
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
HEADLINES = ("latent_knn_accuracy", "test_neg_elbo")


@dataclass(frozen=True)
class Config:
    epochs: int = 40
    batch_size: int = 128
    hidden: int = 1024
    latent_dim: int = 2
    learning_rate: float = 1e-3
    deslant: bool = True
    input_mask_probability: float = 0.5
    kl_warmup_epochs: int = 10
    knn_k: int = 5
    manifold_size: int = 15
    seed: int = 0

    @classmethod
    def fast(cls) -> Config:
        return cls(epochs=2)


class VAE(nn.Module):
    def __init__(self, hidden: int, latent_dim: int, input_mask_probability: float = 0.0) -> None:
        super().__init__()
        # Dropout on the input is masking noise while training and the identity in eval mode, so every
        # reported ELBO and latent mean is that of the clean digit.
        self.encoder = nn.Sequential(nn.Flatten(), nn.Dropout(input_mask_probability), nn.Linear(784, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden // 2), nn.ReLU())
        self.to_mean = nn.Linear(hidden // 2, latent_dim)
        self.to_log_var = nn.Linear(hidden // 2, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, hidden), nn.ReLU(), nn.Linear(hidden, 784),
        )

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(images)
        return self.to_mean(hidden), self.to_log_var(hidden)

    def decode_logits(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def negative_elbo(self, images: torch.Tensor, kl_weight: float = 1.0) -> torch.Tensor:
        """Per-image negative ELBO in nats: reconstruction NLL plus KL(q(z|x) || N(0, I)).

        kl_weight < 1 is only used during KL warm-up; every reported number uses the true ELBO.
        """
        mean, log_var = self.encode(images)
        latent = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        logits = self.decode_logits(latent)
        reconstruction = F.binary_cross_entropy_with_logits(logits, images.flatten(1), reduction="none").sum(1)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)
        return reconstruction + kl_weight * kl


def knn_accuracy(train_points: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor, k: int) -> float:
    # Squared distances rank the neighbours as distances do, without torch.cdist's square root (MKL's
    # vector function, whose last bits differ between processors: tools/crosscpu.py).
    squared_distances = (query[:, None, :] - train_points[None]).pow(2).sum(-1)
    neighbours = squared_distances.topk(k, largest=False).indices
    votes = F.one_hot(train_labels[neighbours], 10).sum(1)
    return float((votes.argmax(1) == query_labels).float().mean())


def pixel_knn_labels(train: Digits, query: torch.Tensor, k: int) -> np.ndarray:
    """The digit k nearest training digits (raw pixels) vote for, for each query image.

    In float64 with numpy (OpenBLAS, pinned alike on every processor), as |q|^2 + |p|^2 - 2 q.p: the
    784-wide differences of every pair would take 12 GB.
    """
    points = train.images.flatten(1).double().numpy()
    queries = query.flatten(1).double().numpy()
    squared_distances = (queries ** 2).sum(1)[:, None] + (points ** 2).sum(1)[None] - 2 * queries @ points.T
    neighbours = np.argpartition(squared_distances, k, axis=1)[:, :k]
    votes = np.apply_along_axis(np.bincount, 1, train.labels.numpy()[neighbours], minlength=10)
    return votes.argmax(1)


def pixel_knn_accuracy(train: Digits, test: Digits, k: int) -> float:
    """k-NN accuracy on the raw pixels: the ceiling a 2-D code is measured against."""
    return float((pixel_knn_labels(train, test.images, k) == test.labels.numpy()).mean())


def pca_projection(train: Digits, test: Digits, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test digits projected on the training set's first `dims` principal components: the
    linear 2-D code a VAE's latent space should beat. numpy's eigh, in float64, sorts eigenvalues ascending."""
    points = train.images.flatten(1).double().numpy()
    centre = points.mean(0)
    _, vectors = np.linalg.eigh(np.cov(points - centre, rowvar=False))
    components = vectors[:, ::-1][:, :dims]

    def project(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(((images.flatten(1).double().numpy() - centre) @ components).astype(np.float32))

    return project(train.images), project(test.images)


def run(config: Config, device_name: str = "auto") -> Results:
    device = resolve_device(device_name)
    configure_torch(device)
    clock = Stopwatch()
    seed_everything(config.seed)
    train, test = load_mnist()
    if config.deslant:
        train, test = (Digits(deslant(split.images), split.labels) for split in (train, test))
    model = VAE(config.hidden, config.latent_dim, config.input_mask_probability).to(device)
    # fused: one kernel per step, whose square root is ATen's own; the per-tensor path's goes through MKL's
    # vector functions, which give other bits on other processors (tools/crosscpu.py).
    optimizer = torch.optim.Adam(model.parameters(), config.learning_rate, fused=True)
    images = train.images.to(device)
    flops = TrainingFlops()
    model.train()
    for epoch in progress(range(config.epochs), "vae"):
        # KL warm-up (Bowman et al., 2016; Sonderby et al., 2016) lets the encoder spread the digits
        # apart before the prior pulls them together.
        kl_weight = min(1.0, (epoch + 1) / config.kl_warmup_epochs) if config.kl_warmup_epochs else 1.0
        for batch in torch.randperm(len(images), device=device).split(config.batch_size):
            with flops.step():
                loss = model.negative_elbo(images[batch], kl_weight).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    model.eval()
    with torch.no_grad():
        test_images = test.images.to(device)
        test_neg_elbo = float(model.negative_elbo(test_images).mean())
        train_means = model.encode(images)[0].cpu()
        test_means = model.encode(test_images)[0].cpu()
        accuracy = knn_accuracy(train_means, train.labels, test_means, test.labels, config.knn_k)
        # Grid points at evenly spaced quantiles of the N(0, I) prior, as in Kingma & Welling's figure.
        quantiles = torch.linspace(0.05, 0.95, config.manifold_size)
        axis = torch.distributions.Normal(0.0, 1.0).icdf(quantiles)
        grid = torch.stack(torch.meshgrid(axis, axis.flip(0), indexing="xy"), dim=-1).view(-1, 2)
        manifold = torch.sigmoid(model.decode_logits(grid.to(device))).view(config.manifold_size, config.manifold_size, 28, 28)
        shown = torch.arange(0, len(test_images), len(test_images) // 10)[:10]
        originals = test_images[shown]
        reconstructions = torch.sigmoid(model.decode_logits(model.encode(originals)[0])).view(-1, 28, 28)
    # Which shown reconstructions read as another digit, judged by the pixel 5-NN classifier of the
    # baselines below (no human in the loop: a number the text can state whatever the run gives).
    read_as = pixel_knn_labels(train, reconstructions.cpu(), config.knn_k)
    other_digit = int((read_as != test.labels[shown].numpy()).sum())

    # Baselines on the same digits (deslanted when the VAE's are) and the same split as the latent 5-NN.
    pca_train, pca_test = pca_projection(train, test, config.latent_dim)
    baselines = {
        "pca": round(knn_accuracy(pca_train, train.labels, pca_test, test.labels, config.knn_k), 4),
        "pixels": round(pixel_knn_accuracy(train, test, config.knn_k), 4),
    }

    metrics = {
        "test_neg_elbo": round(test_neg_elbo, 2),
        "latent_knn_accuracy": round(accuracy, 4),
        # k-NN accuracy of the test digits' first `latent_dim` principal components, and of their raw pixels.
        "baseline_knn_accuracy": baselines,
        "knn_k": config.knn_k,
        "likelihood": "Bernoulli on grey levels in [0, 1]",
        "deslanted": config.deslant,
        "input_mask_probability": config.input_mask_probability,
        "reconstructions_shown": len(shown),
        "reconstructions_other_digit": other_digit,  # of those shown, read as another digit by the pixel 5-NN
        "train_images": len(train.labels),
        "test_images": len(test.labels),
        "train_flops": flops.total,
        **provenance(config, config.seed, device, clock.seconds),
    }
    arrays = {
        "test_latent_means": test_means.numpy(),
        "test_labels": test.labels.numpy(),
        "manifold": manifold.cpu().numpy(),
        "manifold_axis": axis.numpy(),
        "originals": originals.cpu().numpy().squeeze(1),
        "reconstructions": reconstructions.cpu().numpy(),
    }
    return Results(metrics, arrays)
