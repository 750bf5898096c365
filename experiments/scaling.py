"""A scaling sweep of character-level GPT-style transformers on Shakespeare.

Every model sees the same number of training characters (the token budget rule: D fixed, N varied),
so the fitted L(N) = E + A * N^-alpha is the loss-versus-size curve at that budget (Kaplan et al.,
2020, Sec. 3). Training compute is counted as C = 6 * N * D with N the non-embedding parameters.

IsoFLOP profiles (Hoffmann et al., 2022, Sec. 3.2, their Approach 2) ask the section's other question,
how to split a fixed compute between N and D: the compute of the sweep's run of a given width is spent
again on smaller models trained on more characters and larger ones on fewer, each run with its schedule
ending at its own end; a parabola in log N through each profile locates the best size for that compute.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import scipy.optimize
import torch
import torch.nn.functional as F
from torch import nn

from experiments.data import shakespeare_text
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
HEADLINES = ("models.0.val_loss", "models.-1.val_loss", "fit.alpha", "fit.r2", "loss_decreases_with_size")
SAMPLE_PROMPT = "ROMEO:\n"
NGRAM_SMOOTHING = 0.1  # Lidstone's add-k of the n-gram baselines
FLOOR_STANDARD_ERRORS = 2  # how far above zero a fitted floor must lie to count as identified
ATTENTION_TEXT = "To be, or not to be, that is the question"


@dataclass(frozen=True)
class ModelSize:
    layers: int
    width: int
    heads: int


@dataclass(frozen=True)
class Config:
    # One depth for all sizes, so the sweep varies width alone: mixing depths put a step into the curve.
    sizes: tuple[ModelSize, ...] = tuple(ModelSize(4, width, max(2, width // 16)) for width in (8, 12, 16, 24, 32, 48, 64, 96))
    # Seeds seed, seed + 1, ...: each draws its own initialisation and training windows, and every point of the
    # sweep is their mean. Two seeds of width 48 ended 0.060 nats/char apart (1.955, 2.015), three times the step
    # from width 48 to 64 in a one-seed sweep (issue 22, 2026-12-07).
    seeds_per_size: int = 2
    context: int = 64
    # Measured on the largest model (width 96, 1M characters, seed 0): batch 32 at a peak of 3e-3 x sqrt(64/width)
    # ended at 2.090 nats/char, still falling; 9e-3 at 1.928; batch 16 (twice the steps) at 6e-3 at 1.881.
    batch_size: int = 16
    train_tokens: int = 1_000_000
    # The peak at width `learning_rate_width`, picked from `learning_rates_tried`, each at every width with both seeds
    # (issue 22, 2026-12-07, numerics "fast"; mean final loss of the two seeds, and the law fitted to those means;
    # scripts not in the repository):
    #   peak        8      12     16     24     32     48     64     96  | mean over sizes | alpha  E     | R^2
    #   6e-3    2.437  2.343  2.265  2.173  2.088  1.984  1.939  1.885  | 2.1394          | 0.105  1.00  | 0.9959
    #   9e-3    2.392  2.313  2.242  2.131  2.030  1.953  1.911  1.870  | 2.1051          | 0.139  1.27  | 0.9893
    #   1.35e-2 2.392  2.257  2.189  2.111  2.038  1.945  1.904  1.882  | 2.0897          | 0.225  1.60  | 0.9948
    #   2.03e-2 2.396  2.252  2.188  2.105  2.032  1.937  1.907  1.893  | 2.0888          | 0.268  1.68  | 0.9927
    # The two largest tie on the mean over sizes (a thousandth apart; two seeds of one size differ by up to 0.03-0.05):
    # we took the smaller step, also the better at the two largest widths. Another peak did better by at most 0.012
    # (width 96, 9e-3; its two seeds differ by 0.004 at 1.35e-2), and the best peak of each width gives alpha 0.223,
    # E 1.59, R^2 0.996: the choice of the one peak moves the fit more than tuning it per size would.
    learning_rate: float = 1.35e-2
    learning_rates_tried: tuple[float, ...] = (6e-3, 9e-3, 1.35e-2, 2.025e-2)  # for the text: the tuning above
    learning_rate_width: int = 64  # narrower models get a proportionally larger step (lr ~ width^-1/2)
    adam_betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05  # of the steps, linear from zero
    final_learning_rate_fraction: float = 0.1  # where the cosine decay ends, at the last step
    eval_every_tokens: int = 100_000
    extra_eval_steps: tuple[int, ...] = ()  # evaluated as well: the step counts of the IsoFLOP runs of the same width
    eval_tokens: int = 32_768
    validation_fraction: float = 0.05
    sample_chars: int = 240
    # IsoFLOP profiles at the compute of the sweep's first-seed runs of these widths, over the sweep's sizes up to
    # `isoflop_reach` places either side. Measured at seed 0 before choosing (issue 22, 2026-12-07): at width 16's
    # compute the loss was lowest at width 12, at width 24's at width 16, the larger sizes ever worse (widths 32, 48
    # and 64 trained on 115k-255k characters: 2.42-2.53 nats/char), so two places either side bracketed the minimum.
    # With the peak at 1.35e-2 they did not on every kernel path: at width 24's compute widths 12 and 16 ended 0.005
    # apart (2.061, 2.056), and under ATEN_CPU_CAPABILITY=avx2 or =default alone (tools/robustness.py) width 12, the
    # profile's edge, came out best. So three places either side: width 8 on 8.3M characters (about 130 CPU-s) joins
    # that profile. The profiles cost about 290 CPU-s, most of it the small models' long runs; one seed, the sweep's first.
    # Their runs keep the sweep's learning rates, tuned on 976-step runs, and neither end of a profile is at its best
    # with them (seed 0, measured when the peak was 9e-3; loss at 1x / other multipliers of that peak): width 48 in 249 steps 2.416 / 2.407 at 1.5x,
    # 2.381 at 2x (2.395 at 1x with a 20% warm-up); width 32 in 252 steps 2.449 / 2.439 at 1.5x, 2.424 at 2x; width 8
    # in 3,671 steps 2.256 / 2.229 at 1.4x, 2.283 at 0.5x; width 12 in 3,742 steps 2.068 / 2.092 at 0.7x, 2.107 at 0.5x.
    isoflop_widths: tuple[int, ...] = (16, 24)
    isoflop_reach: int = 3
    seed: int = 0

    @classmethod
    def fast(cls) -> Config:
        return cls(sizes=tuple(ModelSize(2, width, 2) for width in (8, 16, 24, 32)), train_tokens=40_000,
                   eval_every_tokens=20_000, eval_tokens=4096, sample_chars=80, isoflop_widths=(16,), isoflop_reach=1)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context

    def steps(self) -> int:
        return self.train_tokens // self.tokens_per_step


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.heads = heads

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """Queries, keys and values stacked: (3, batch, heads, length, head width)."""
        batch, length, width = x.shape
        return self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Causal self-attention, with PyTorch's fused kernel."""
        q, k, v = self._heads(x)
        return self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(2))

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The same attention written out, to return its weights (batch, heads, query, key) for the figure."""
        q, k, _ = self._heads(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).tril()
        return scores.masked_fill(~mask, float("-inf")).softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CharGPT(nn.Module):
    def __init__(self, vocab: int, size: ModelSize, context: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, size.width)
        self.position_embedding = nn.Embedding(context, size.width)
        self.blocks = nn.ModuleList(Block(size.width, size.heads) for _ in range(size.layers))
        self.norm = nn.LayerNorm(size.width)
        self.head = nn.Linear(size.width, vocab)

    def non_embedding_params(self) -> int:
        """Kaplan et al.'s N: everything except token and position embeddings (and the output head tied to them in spirit)."""
        return sum(p.numel() for p in self.blocks.parameters())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.position_embedding(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    @torch.no_grad()
    def last_layer_attention(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.position_embedding(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks[:-1]:
            x = block(x)
        return self.blocks[-1].attention_weights(self.blocks[-1].norm1(x))[0]

    @torch.no_grad()
    def sample(self, prompt: torch.Tensor, length: int, context: int, generator: torch.Generator) -> torch.Tensor:
        tokens = prompt
        for _ in range(length):
            logits = self(tokens[:, -context:])[:, -1]
            probabilities = logits.softmax(-1).cpu()
            tokens = torch.cat([tokens, torch.multinomial(probabilities, 1, generator=generator).to(tokens.device)], dim=1)
        return tokens


def non_embedding_params(size: ModelSize) -> int:
    """N of a CharGPT of this size, counted on one built on the meta device: no memory, no draw from the seeded
    generators (the vocabulary and context do not enter N)."""
    with torch.device("meta"):
        return CharGPT(1, size, 1).non_embedding_params()


def training_windows(train: torch.Tensor, config: Config) -> torch.Tensor:
    """Every training window of the sweep, (steps, batch, context + 1), drawn once: each size trains on the
    same batches, and the n-gram baselines are counted on the same characters."""
    steps = config.steps()
    generator = torch.Generator().manual_seed(config.seed)
    starts = torch.randint(0, len(train) - config.context - 1, (steps, config.batch_size), generator=generator)
    return train[starts[..., None] + torch.arange(config.context + 1)]


@torch.no_grad()
def evaluation_chars(config: Config, validation_chars: int) -> int:
    """How many validation characters are predicted: the first `eval_tokens`, in whole windows."""
    return min(validation_chars - 1, config.eval_tokens) // config.context * config.context


@torch.no_grad()
def evaluate(model: CharGPT, data: torch.Tensor, config: Config, device: torch.device) -> float:
    """Mean loss in nats/char over fixed, non-overlapping validation windows."""
    usable = evaluation_chars(config, len(data))
    inputs = data[:usable].view(-1, config.context).to(device)
    targets = data[1 : usable + 1].view(-1, config.context).to(device)
    return float(F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()))


def train_model(size: ModelSize, vocab: int, windows: torch.Tensor, validation: torch.Tensor, config: Config,
                device: torch.device) -> tuple[CharGPT, dict]:
    seed_everything(config.seed)
    model = CharGPT(vocab, size, config.context).to(device)
    n = model.non_embedding_params()
    tokens_per_step = config.tokens_per_step
    steps = len(windows)
    learning_rate = config.learning_rate * math.sqrt(config.learning_rate_width / size.width)
    optimizer = torch.optim.AdamW(model.parameters(), learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay, fused=True)
    warmup, floor = max(1, round(steps * config.warmup_fraction)), config.final_learning_rate_fraction
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)) * (1 - floor) + floor))
    eval_every = max(1, config.eval_every_tokens // tokens_per_step)
    curve: list[dict] = []
    clock = Stopwatch()
    flops = TrainingFlops()
    for step in progress(range(1, steps + 1), f"gpt L{size.layers} d{size.width}"):
        with flops.step():
            window = windows[step - 1].to(device)
            loss = F.cross_entropy(model(window[:, :-1]).flatten(0, 1), window[:, 1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if step % eval_every == 0 or step == steps or step in config.extra_eval_steps:
            model.eval()
            tokens_seen = step * tokens_per_step
            curve.append({"tokens": tokens_seen, "flops": 6.0 * n * tokens_seen, "val_loss": round(evaluate(model, validation, config, device), 4)})
            model.train()
    model.eval()
    record = {
        "layers": size.layers, "width": size.width, "heads": size.heads,
        "non_embedding_params": n, "total_params": sum(p.numel() for p in model.parameters()),
        "learning_rate": learning_rate, "steps": steps, "warmup_steps": warmup,
        "tokens": steps * tokens_per_step, "flops": 6.0 * n * steps * tokens_per_step,
        "val_loss": curve[-1]["val_loss"], "seconds": round(clock.seconds, 2), "curve": curve,
        # every operation torch's FLOP counter knows, which is not its CPU flash-attention kernel; `flops` is Kaplan's 6ND
        "measured_train_flops": flops.total,
    }
    return model, record


def _ngram_codes(sequences: np.ndarray, order: int, vocab: int) -> np.ndarray:
    """Each n-gram inside each row of `sequences` (rows, length) as one integer, row by row."""
    length = sequences.shape[1] - order + 1
    codes = np.zeros((len(sequences), length), dtype=np.int64)
    for offset in range(order):
        codes = codes * vocab + sequences[:, offset : offset + length]
    return codes.ravel()


def ngram_loss(train: np.ndarray, validation: np.ndarray, order: int, vocab: int, smoothing: float = NGRAM_SMOOTHING) -> float:
    """Validation loss (nats/char) of a count-based n-gram model with add-`smoothing` (Lidstone) estimates.

    The classical baselines a reader can place the transformers against: unigram, bigram, trigram.
    `train` is one sequence or rows of windows (counted within each row); `validation` one sequence.
    """
    joint = np.bincount(_ngram_codes(np.atleast_2d(train), order, vocab), minlength=vocab ** order).astype(float)
    context = joint.reshape(-1, vocab).sum(1)
    grams = _ngram_codes(validation[None], order, vocab)
    probability = (joint[grams] + smoothing) / (context[grams // vocab] + smoothing * vocab)
    return float(-np.log(probability).mean())


def fit_power_law(params: np.ndarray, losses: np.ndarray) -> dict[str, float | bool | list]:
    """Least-squares fit of L(N) = E + A * N^-alpha, with R^2 and the covariance for a 1-sigma band.

    The data identify a floor only when the fitted E lies more than two standard errors above zero. Otherwise
    (E on its bound of 0, where the three-parameter covariance is meaningless, or E within noise of it) we
    refit the pure power law A * N^-alpha (E fixed at 0) and report its covariance, with zero variance for E;
    `free_floor` keeps the three-parameter fit's E and its standard error, so the text can say why.
    """
    def law(n: np.ndarray, e: float, a: float, alpha: float) -> np.ndarray:
        return e + a * n ** -alpha

    (e, a, alpha), covariance = scipy.optimize.curve_fit(
        law, params, losses, p0=(losses.min() * 0.8, 10.0, 0.3), bounds=([0, 0, 0], [np.inf, np.inf, 3]), maxfev=20000)
    floor_error = float(np.sqrt(covariance[0, 0])) if np.isfinite(covariance[0, 0]) and covariance[0, 0] >= 0 else float("inf")
    free_floor = {"E": float(e), "standard_error": floor_error}
    floor_identified = bool(e > 1e-6 * losses.min() and e > FLOOR_STANDARD_ERRORS * floor_error)
    if not floor_identified:
        (a, alpha), pure = scipy.optimize.curve_fit(lambda n, a, alpha: a * n ** -alpha, params, losses, p0=(a, alpha), maxfev=20000)
        e, covariance = 0.0, np.zeros((3, 3))
        covariance[1:, 1:] = pure
    residual = losses - law(params, e, a, alpha)
    r2 = 1 - (residual ** 2).sum() / ((losses - losses.mean()) ** 2).sum()
    return {"E": float(e), "A": float(a), "alpha": float(alpha), "r2": float(r2), "floor_identified": floor_identified,
            "free_floor": free_floor, "covariance": covariance.tolist(), "largest_residual": round(float(np.abs(residual).max()), 4)}


# A run's CPU time is about its characters times (N + this): on one thread the per-character work that does not
# grow with N (embeddings, the 65-way output, layer norms, attention) costs what ~100k parameters' products do.
PER_CHARACTER_OVERHEAD_PARAMS = 100_000


def isoflop_parts(config: Config) -> list[Config]:
    """The IsoFLOP profiles' runs: at each centre width's compute C = 6 N_c D, each neighbouring size N trains on
    C / 6N characters (in whole steps). The centre itself is the sweep's first-seed run; every run ends its schedule."""
    widths = [size.width for size in config.sizes]
    runs = []
    for centre in config.isoflop_widths:
        if centre not in widths:
            raise ValueError(f"isoflop_widths: {centre} is not one of the sweep's widths {widths}")
        index = widths.index(centre)
        compute = 6 * non_embedding_params(config.sizes[index]) * config.steps() * config.tokens_per_step
        for size in config.sizes[max(0, index - config.isoflop_reach) : index + config.isoflop_reach + 1]:
            if size.width != centre:
                steps = max(1, round(compute / (6 * non_embedding_params(size)) / config.tokens_per_step))
                runs.append(replace(config, sizes=(size,), train_tokens=steps * config.tokens_per_step, isoflop_widths=(centre,),
                                    eval_every_tokens=steps * config.tokens_per_step, sample_chars=0))
    return runs


def parts(config: Config) -> list[Config]:
    """One training run per size and seed of the sweep (marked by no IsoFLOP width), then the IsoFLOP profiles'
    runs, the costliest first: the stage gives each its own worker in the order given, and the longest parts
    started first finish soonest."""
    isoflop = isoflop_parts(config)

    def shorter_isoflop_runs(size: ModelSize) -> tuple[int, ...]:
        """The steps at which the IsoFLOP runs of this size ended before the sweep's: its runs are evaluated there
        too, so a finished short run can be set against the checkpoint of a longer one at the same step."""
        return tuple(sorted({run.steps() for run in isoflop if run.sizes[0] == size and run.steps() < config.steps()}))

    # Only the first seed's models write the samples the report shows.
    sweep = [replace(config, sizes=(size,), seed=config.seed + offset, isoflop_widths=(), sample_chars=0 if offset else config.sample_chars,
                     extra_eval_steps=shorter_isoflop_runs(size))
             for size in config.sizes for offset in range(config.seeds_per_size)]
    return sorted(sweep + isoflop,
                  key=lambda part: -part.steps() * (non_embedding_params(part.sizes[0]) + PER_CHARACTER_OVERHEAD_PARAMS))


@functools.cache  # a worker runs several parts: the 5 MB of text is read and encoded once
def _corpus(validation_fraction: float) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The plays' alphabet and the training and validation characters as indices into it."""
    text = shakespeare_text()
    alphabet = sorted(set(text))
    code_points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    data = torch.from_numpy(np.searchsorted(np.array([ord(ch) for ch in alphabet], dtype=np.uint32), code_points).astype(np.int64))
    split = int(len(data) * (1 - validation_fraction))
    return alphabet, data[:split], data[split:]


def run_part(part: Config, device_name: str = "auto") -> Results:
    """Train the part's one size at the part's seed, on the training windows that seed draws, and let the model
    write a sample and show its last layer's attention (the report shows the smallest and largest models')."""
    device = resolve_device(device_name)
    configure_torch(device)
    alphabet, train, validation = _corpus(part.validation_fraction)
    (size,) = part.sizes
    model, record = train_model(size, len(alphabet), training_windows(train, part), validation, part, device)
    index = {ch: i for i, ch in enumerate(alphabet)}
    prompt = torch.tensor([[index[ch] for ch in SAMPLE_PROMPT]], device=device)
    sample = model.sample(prompt, part.sample_chars, part.context, torch.Generator().manual_seed(part.seed))
    attention = model.last_layer_attention(torch.tensor([[index[ch] for ch in ATTENTION_TEXT]], device=device))
    return Results({"model": {**record, "seed": part.seed}, "sample": "".join(alphabet[i] for i in sample[0].tolist())},
                   {"attention": attention.cpu().numpy()})


def _mean_over_seeds(runs: list[dict]) -> dict:
    """One size's record: the seeds' mean loss (at the end and along the curve), each seed's, and their summed cost."""
    losses = [run["val_loss"] for run in runs]
    curve = [{**point, "val_loss": round(float(np.mean([run["curve"][i]["val_loss"] for run in runs])), 4)}
             for i, point in enumerate(runs[0]["curve"])]
    return {**{key: value for key, value in runs[0].items() if key != "seed"},
            "val_loss": round(float(np.mean(losses)), 4), "val_loss_seeds": losses, "seeds": [run["seed"] for run in runs],
            "val_loss_spread": round(max(losses) - min(losses), 4), "curve": curve,
            "seconds": round(sum(run["seconds"] for run in runs), 2),
            "measured_train_flops": sum(run["measured_train_flops"] for run in runs)}


def _parabola_minimum(params: np.ndarray, losses: np.ndarray) -> tuple[float, float, list[float]]:
    """The size and loss where loss = a (ln N)^2 + b ln N + c, fitted to the runs, is lowest, and (a, b, c)."""
    curvature, slope, offset = np.polyfit(np.log(params), losses, 2)
    log_params = -slope / (2 * curvature)
    return float(np.exp(log_params)), float(curvature * log_params ** 2 + slope * log_params + offset), [float(curvature), float(slope), float(offset)]


def profile_minimum(params: np.ndarray, losses: np.ndarray) -> dict[str, float | bool | None]:
    """Where an IsoFLOP profile is lowest: the minimum of the parabola in ln N through its best run and the two
    sizes beside it (Hoffmann et al.'s Approach 2 fits a parabola to each profile).

    Only the three runs around the best are used: the profile rises far more steeply towards the large models
    (trained on a few characters per parameter) than towards the small ones, and one parabola through all five
    runs put both minima of our profiles at the smaller neighbour (N = 7,700 and 9,000 where the best runs were
    7,536 and 13,120; issue 22, 2026-12-07). The minimum counts as bracketed only when the sizes on either side of
    the best run did worse; otherwise the best size lies beyond the sizes tried and no parabola is read.
    """
    best = int(np.argmin(losses))
    if not 0 < best < len(losses) - 1:
        return {"bracketed": False, "params": None, "val_loss": None, "parabola": None, "fitted_params": None}
    around = slice(best - 1, best + 2)
    size, loss, parabola = _parabola_minimum(params[around], losses[around])
    # the parabola over the fitted sizes is what the figure draws
    return {"bracketed": True, "params": size, "val_loss": loss, "parabola": parabola, "fitted_params": params[around].tolist()}


def _size_exponent(compute: list[float], params: list[float]) -> float:
    """The slope of ln N against ln C: how a best size grows with compute."""
    return float(np.polyfit(np.log(compute), np.log(params), 1)[0])


def isoflop_profiles(config: Config, first_seed: dict[int, dict], runs: list[tuple[int, dict]]) -> dict:
    """Each IsoFLOP profile (its centre from the sweep's first seed, the others from their own runs), the size and
    characters where its parabola is lowest, and how the best size grew with compute between the profiles."""
    profiles = []
    for centre in config.isoflop_widths:
        points = sorted([first_seed[centre], *(run for width, run in runs if width == centre)], key=lambda run: run["non_embedding_params"])
        compute = first_seed[centre]["flops"]
        params = np.array([run["non_embedding_params"] for run in points], dtype=float)
        losses = np.array([run["val_loss"] for run in points])
        minimum = profile_minimum(params, losses)
        if minimum["bracketed"]:
            minimum["tokens"] = compute / (6 * minimum["params"])
            minimum["tokens_per_param"] = minimum["tokens"] / minimum["params"]
            # The same parabola through every run of the profile, to show how much the choice of runs moves it.
            size, _, (curvature, _, _) = _parabola_minimum(params, losses)
            minimum["all_runs_params"] = size if curvature > 0 else None

        def checkpoint(run: dict) -> float | None:
            """The loss of the same size's sweep run (same seed) at the step this shorter run ended on."""
            at_step = [point["val_loss"] for point in first_seed[run["width"]]["curve"] if point["tokens"] == run["tokens"]]
            return at_step[0] if at_step and run["steps"] < first_seed[run["width"]]["steps"] else None

        profiles.append({
            "centre_width": centre, "flops": compute, "minimum": minimum,
            "best_run": points[int(np.argmin(losses))]["width"],
            "points": [{key: run[key] for key in ("layers", "width", "non_embedding_params", "tokens", "steps", "flops", "val_loss")}
                       | {"tokens_per_param": run["tokens"] / run["non_embedding_params"], "sweep_checkpoint_loss": checkpoint(run)}
                       for run in points],
        })
    located = [profile for profile in profiles if profile["minimum"]["bracketed"]]
    # How close the runs beside each located minimum came to its best run (the smallest such difference), and how
    # far above the same size's sweep checkpoint at the same step each shorter run finished.
    neighbour_gaps = [point["val_loss"] - best["val_loss"] for profile in located
                      for best in [next(point for point in profile["points"] if point["width"] == profile["best_run"])]
                      for point in profile["points"]
                      if point is not best and point["non_embedding_params"] in profile["minimum"]["fitted_params"]]
    exponents = {}
    if len(located) >= 2:  # through two or more profiles' minima
        compute = [profile["flops"] for profile in located]
        exponents = {"parabola": _size_exponent(compute, [profile["minimum"]["params"] for profile in located]),
                     "best_runs": _size_exponent(compute, [next(point["non_embedding_params"] for point in profile["points"]
                                                                if point["width"] == profile["best_run"]) for profile in located])}
        if all(profile["minimum"]["all_runs_params"] for profile in located):
            exponents["all_runs_parabola"] = _size_exponent(compute, [profile["minimum"]["all_runs_params"] for profile in located])
    return {"profiles": profiles, "seed": config.seed, "optimal_size_exponents": exponents, "located": len(located),
            "closest_neighbour_gap": round(min(neighbour_gaps), 4) if neighbour_gaps else None,
            "shorter_runs_above_checkpoint": [round(point["val_loss"] - point["sweep_checkpoint_loss"], 4) for profile in profiles
                                              for point in profile["points"] if point["sweep_checkpoint_loss"] is not None],
            "larger_size_did_worse": any(profile["best_run"] != profile["points"][-1]["width"] for profile in profiles)}


def combine(config: Config, results: list[Results], device_name: str = "auto") -> Results:
    """The sweep from its parts: each size's loss averaged over its seeds, the fit, and the n-gram baselines."""
    device = resolve_device(device_name)
    clock = Stopwatch()
    alphabet, train, validation = _corpus(config.validation_fraction)
    plan = parts(config)
    by_size = {(size.layers, size.width, size.heads): [] for size in config.sizes}
    for part in sorted((result for part, result in zip(plan, results) if not part.isoflop_widths),
                       key=lambda part: part.metrics["model"]["seed"]):
        model = part.metrics["model"]
        by_size[model["layers"], model["width"], model["heads"]].append(part)
    first_seed = {runs[0].metrics["model"]["width"]: runs[0].metrics["model"] for runs in by_size.values()}
    isoflop_runs = [(part.isoflop_widths[0], result.metrics["model"]) for part, result in zip(plan, results) if part.isoflop_widths]
    isoflop = isoflop_profiles(config, first_seed, isoflop_runs)
    records = [_mean_over_seeds([part.metrics["model"] for part in runs]) for runs in by_size.values()]
    # The samples and the attention map are those of the first seed's smallest and largest models.
    smallest, largest = by_size[next(iter(by_size))][0], by_size[next(reversed(by_size))][0]

    # The n-grams on the transformers' terms: counted on the windows the first seed trained on, scored on the
    # characters every model is evaluated on. Counted on all training text and scored on all validation text
    # as well, which is what a trigram on this corpus can do with 4.6 times the data.
    evaluated = validation[: evaluation_chars(config, len(validation)) + 1].numpy()
    windows = training_windows(train, config)
    ngram = {str(order): round(ngram_loss(windows.flatten(0, 1).numpy(), evaluated, order, len(alphabet)), 4) for order in (1, 2, 3)}
    ngram_all_data = {str(order): round(ngram_loss(train.numpy(), validation.numpy(), order, len(alphabet)), 4) for order in (1, 2, 3)}
    params = np.array([r["non_embedding_params"] for r in records], dtype=float)
    losses = np.array([r["val_loss"] for r in records])
    fit = fit_power_law(params, losses)

    metrics = {
        "models": records,
        "train_flops": sum(r["measured_train_flops"] for r in records + [run for _, run in isoflop_runs]),
        "fit": fit,
        "loss_decreases_with_size": bool(np.all(np.diff(losses) < 0)),
        "seeds_per_size": config.seeds_per_size,
        # The largest difference between two seeds of one size, against the smallest step between two sizes; and
        # how far apart the closest seeds of neighbouring sizes ended (negative: some seed of a size did better
        # than some seed of the next larger one, so one seed per size could have put them out of order).
        "largest_seed_spread": max(r["val_loss_spread"] for r in records),
        "smallest_size_step": round(float(-np.diff(losses).max()), 4),
        "closest_seeds_of_neighbouring_sizes": round(min(min(smaller["val_loss_seeds"]) - max(larger["val_loss_seeds"])
                                                         for smaller, larger in itertools.pairwise(records)), 4),
        "vocab_size": len(alphabet),
        "train_chars": len(train),
        "validation_chars": len(validation),
        "token_budget_rule": "every model trains on the same number of characters",
        # The schedule is tied to each run's full length, so only a curve's last point has its learning rate
        # decayed; the earlier points are mid-run checkpoints (Hoffmann et al., 2022, Sec. 3.1, on why that
        # overstates the loss of a shorter run). Ending a schedule at each point would take a run per point.
        "schedule": (f"AdamW, linear warm-up over the first {config.warmup_fraction:.0%} of the steps, cosine decay to "
                     f"{config.final_learning_rate_fraction:.0%} of the peak at the last step; peak "
                     f"{config.learning_rate:g} x sqrt({config.learning_rate_width} / width)"),
        "curve_points_end_their_schedule": False,
        "isoflop": isoflop,
        "ngram_val_loss": ngram,
        "ngram_data": "counted on the first seed's training windows, scored on the transformers' evaluation characters",
        "ngram_smoothing": NGRAM_SMOOTHING,
        "ngram_all_data_val_loss": ngram_all_data,
        "evaluation_chars": evaluation_chars(config, len(validation)),
        "samples": {"smallest": smallest.metrics["sample"], "largest": largest.metrics["sample"]},
        "attention_text": ATTENTION_TEXT,
        **provenance(config, config.seed, device,
                     clock.seconds + sum(r["seconds"] for r in records + [run for _, run in isoflop_runs])),
    }
    return Results(metrics, {"attention": largest.arrays["attention"]})


def run(config: Config, device_name: str = "auto") -> Results:
    """The whole sweep in this process, part after part: what the build's workers compute side by side."""
    return combine(config, [run_part(part, device_name) for part in parts(config)], device_name)
