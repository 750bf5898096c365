"""The figures, as pure functions of stored results: each takes the results it names and returns a figure.

No training happens here. Plots are vector PDF; image grids are PNG. Fonts are Computer Modern
(matplotlib's bundled cmr10) so that plots match the report's Latin Modern body text, and sizes are
given in inches of the LaTeX text block so that nothing is rescaled when included.
"""

from __future__ import annotations

import itertools

import numpy as np

from genreport.plotkit import TEXT_WIDTH_IN, Result, figure, pyplot

DIGIT_COLOURS = "tab10"


def _ring_axes(ax, points: np.ndarray, title: str) -> None:
    from matplotlib.patches import Circle

    from experiments.data import RING_MODES, RING_RADIUS, RING_STD

    angles = np.arange(RING_MODES) * 2 * np.pi / RING_MODES
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", linewidths=0, rasterized=True, zorder=1)
    # Each mode's high-quality disc, drawn over the samples at the radius ring_metrics counts (3 std), so
    # the reader sees exactly which samples the HQ fraction calls good.
    for angle in angles:
        ax.add_patch(Circle((RING_RADIUS * np.cos(angle), RING_RADIUS * np.sin(angle)), 3 * RING_STD, fill=False,
                            edgecolor="tab:red", linewidth=0.6, zorder=2))
    ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", title=title)
    ax.set_xticks([-2, 0, 2])
    ax.set_yticks([-2, 0, 2])


# --- figures: one function each; the stage redraws a figure when its function or inputs change ----

@figure("gan_ring.pdf")
def gan_ring(gan: Result):
    plt = pyplot()
    runs = gan.metrics["ring"]["seeds"]
    # More than three panels leave too little width for the seed and its scores on one line.
    narrow = len(runs) > 3
    separator = "\n" if narrow else ", "
    fig, axes = plt.subplots(1, len(runs), figsize=(TEXT_WIDTH_IN, TEXT_WIDTH_IN / max(3, len(runs)) + (0.5 if narrow else 0.3)),
                             squeeze=False)
    for ax, run, samples in zip(axes[0], runs, gan.arrays["ring_samples"]):
        _ring_axes(ax, samples, f"seed {run['seed']}, {run['modes_captured']}/{run['modes_total']} modes{separator}"
                                f"HQ {100 * run['high_quality_fraction']:.1f}%")
        if narrow:
            ax.title.set_fontsize(8)
    fig.tight_layout()
    return fig


@figure("gan_mnist_samples.png")
def gan_mnist_samples(dcgan: Result):
    plt = pyplot()
    # Every stored sample, unfiltered (choosing by the classifier's confidence would flatter the GAN); they ask
    # for the digits in turn, so each column holds one digit.
    asked = dcgan.arrays["sample_asked"]
    columns = len(np.unique(asked))
    rows = len(asked) // columns
    images, labels, confidence = (dcgan.arrays[key][: rows * columns] for key in ("samples", "sample_labels", "sample_confidence"))
    tile = 0.48  # inches per digit: about 12 mm in print, each of the 28 pixels about 0.4 mm
    fig, axes = plt.subplots(rows, columns, figsize=(columns * (tile + 0.1), rows * (tile + 0.25) + 0.2), squeeze=False)
    for ax, image, wanted, label, probability in zip(axes.flat, images, asked, labels, confidence):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():  # a light frame shows each sample's extent without competing with it
            spine.set(color="0.75", linewidth=0.5)
        # Red where the classifier reads another digit than the one asked for.
        ax.set_xlabel(f"{label} ({100 * probability:.0f}%)", fontsize=8, labelpad=2, color="black" if label == wanted else "#c0392b")
    for ax, wanted in zip(axes[0], asked):
        ax.set_title(f"asked: {wanted}", fontsize=8, pad=3)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.1, wspace=0.15, hspace=0.35)
    return fig


@figure("vae_latent.pdf")
def vae_latent(vae: Result):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN * 0.6, TEXT_WIDTH_IN * 0.5))
    means, labels = vae.arrays["test_latent_means"], vae.arrays["test_labels"]
    cmap = plt.get_cmap(DIGIT_COLOURS)
    for digit in range(10):
        chosen = labels == digit
        ax.scatter(means[chosen, 0], means[chosen, 1], s=5, color=cmap(digit), label=str(digit), linewidths=0)
    ax.set(xlabel="$z_1$", ylabel="$z_2$")
    ax.legend(title="digit", markerscale=2.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


@figure("vae_manifold.png")
def vae_manifold(vae: Result):
    grid = vae.arrays["manifold"]
    rows = [np.concatenate(list(row), axis=1) for row in grid]
    return _image_from_array(np.concatenate(rows, axis=0), width=TEXT_WIDTH_IN * 0.55)


@figure("vae_reconstructions.png")
def vae_reconstructions(vae: Result):
    pairs = np.concatenate([vae.arrays["originals"], vae.arrays["reconstructions"]])
    return _image_grid(pairs, columns=len(vae.arrays["originals"]), width=TEXT_WIDTH_IN * 0.8)


@figure("scaling_loss_vs_params.pdf")
def scaling_loss_vs_params(scaling: Result):
    plt = pyplot()
    models, fit = scaling.metrics["models"], scaling.metrics["fit"]
    n = np.array([m["non_embedding_params"] for m in models], dtype=float)
    loss = np.array([m["val_loss"] for m in models])
    grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 200)
    # Band: 16th-84th percentile of the law under parameter draws from the fit's covariance.
    covariance = np.array(fit["covariance"])
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN * 0.9, TEXT_WIDTH_IN * 0.38))
    if np.isfinite(covariance).all():  # too few models leave the fit without an uncertainty estimate
        draws = np.random.default_rng(0).multivariate_normal([fit["E"], fit["A"], fit["alpha"]], covariance, size=2000)
        curves = draws[:, :1] + draws[:, 1:2] * grid[None, :] ** -draws[:, 2:3]
        low, high = np.percentile(curves, [16, 84], axis=0)
        ax.fill_between(grid, low, high, color="tab:orange", alpha=0.25, linewidth=0, label="fit, 68% band")
    floor = f"{fit['E']:.2f} + " if fit["floor_identified"] else ""
    ax.plot(grid, fit["E"] + fit["A"] * grid ** -fit["alpha"], color="tab:orange",
            label=rf"$L = {floor}{fit['A']:.1f}\,N^{{-{fit['alpha']:.3f}}}$  ($R^2={fit['r2']:.3f}$)")
    seeds = [m.get("val_loss_seeds", [m["val_loss"]]) for m in models]
    if max(map(len, seeds)) > 1:  # the seeds' range behind the mean the fit is made to, each seed a tick
        ax.vlines(n, [min(runs) for runs in seeds], [max(runs) for runs in seeds], color="tab:blue", linewidth=1, zorder=3,
                  label="range over seeds")
        ax.scatter([count for count, runs in zip(n, seeds) for _ in runs], [run for runs in seeds for run in runs],
                   color="tab:blue", s=16, marker="_", linewidths=1, zorder=3)
    ax.scatter(n, loss, color="tab:blue", zorder=4, s=14,
               label=f"mean of {max(map(len, seeds))} seeds" if max(map(len, seeds)) > 1 else "trained models")
    # Count-based n-gram models of the same text place the transformers on a familiar scale.
    baselines = {"bigram": scaling.metrics["ngram_val_loss"]["2"], "trigram": scaling.metrics["ngram_val_loss"]["3"]}
    for name, level in baselines.items():
        ax.axhline(level, color="grey", linestyle=":", linewidth=0.8)
        # At the right end, above the line: the fit's band widens towards the left, where it would hide the label.
        ax.annotate(f"{name} counts", (grid[-1], level), xytext=(-3, 2), textcoords="offset points", fontsize=7, color="grey",
                    ha="right")
    # The axis follows the measurements; a wide band (a poorly constrained fit) is clipped, not allowed to rescale it.
    every_loss = [run for runs in seeds for run in runs]
    low_end, high_end = min(*every_loss, *baselines.values()), max(*every_loss, *baselines.values())
    ax.set(xscale="log", yscale="log", xlabel="non-embedding parameters $N$", ylabel="validation loss (nats/char)",
           ylim=(low_end * 0.96, high_end * 1.04), xlim=(grid[0], grid[-1]))
    ax.yaxis.set_minor_formatter(plt.FormatStrFormatter("%.1f"))
    # Beside the axes: inside, wherever the points and baselines fall, it would cover some of them.
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


@figure("scaling_loss_vs_compute.pdf")
def scaling_loss_vs_compute(scaling: Result):
    """Left: every model's validation loss along its training against compute, with the frontier those checkpoints
    draw, and the IsoFLOP runs (each ended its schedule) at their compute. Right: the IsoFLOP profiles against N."""
    plt = pyplot()
    models = scaling.metrics["models"]
    profiles = scaling.metrics["isoflop"]["profiles"]
    fig, (curves_ax, profile_ax) = plt.subplots(1, 2, figsize=(TEXT_WIDTH_IN, TEXT_WIDTH_IN * 0.37), width_ratios=(1.25, 1))
    cmap = plt.get_cmap("viridis")
    sizes = np.log([m["non_embedding_params"] for m in models])
    colour = plt.Normalize(sizes.min(), sizes.max())
    points = []
    for model, log_size in zip(models, sizes):
        flops = [p["flops"] for p in model["curve"]]
        losses = [p["val_loss"] for p in model["curve"]]
        points += list(zip(flops, losses))
        curves_ax.plot(flops, losses, color=cmap(colour(log_size)), marker=".", markersize=2.5, linewidth=0.9)
    # Compute-efficient frontier: the lowest loss reached by any model at or below each compute level.
    points.sort()
    frontier, best = [], np.inf
    for flops, loss in points:
        if loss < best:
            best = loss
            frontier.append((flops, loss))
    curves_ax.plot(*zip(*frontier), color="black", linestyle="--", linewidth=1, label="frontier of the checkpoints")
    for profile, marker in zip(profiles, itertools.cycle("os^Dv")):  # a marker per profile, however many
        runs = profile["points"]
        mantissa, exponent = f"{profile['flops']:.1e}".split("e+")
        label = rf"$C = {mantissa}\times10^{{{int(exponent)}}}$ FLOP"
        style = {"marker": marker, "s": 16, "facecolors": "none", "linewidths": 0.8, "zorder": 4}
        curves_ax.scatter([run["flops"] for run in runs], [run["val_loss"] for run in runs], edgecolors="black", **style)
        params = np.array([run["non_embedding_params"] for run in runs], dtype=float)
        losses = np.array([run["val_loss"] for run in runs])
        profile_ax.scatter(params, losses, edgecolors=cmap(colour(np.log(params))), label=label, **style)
        profile_ax.plot(params, losses, color="grey", linewidth=0.6, zorder=2)
        minimum = profile["minimum"]
        if minimum["bracketed"]:
            curvature, slope, offset = minimum["parabola"]
            grid = np.geomspace(min(minimum["fitted_params"]), max(minimum["fitted_params"]), 100)
            profile_ax.plot(grid, curvature * np.log(grid) ** 2 + slope * np.log(grid) + offset, color="black", linewidth=0.8,
                            linestyle=":", zorder=3)
            profile_ax.scatter([minimum["params"]], [minimum["val_loss"]], marker="*", s=60, color="tab:red", zorder=5)
    if any(profile["minimum"]["bracketed"] for profile in profiles):
        profile_ax.scatter([], [], marker="*", s=60, color="tab:red", label="parabola's minimum")
    colourbar = fig.colorbar(plt.cm.ScalarMappable(norm=colour, cmap=cmap), ax=curves_ax, pad=0.02, fraction=0.05)
    ticks = [m["non_embedding_params"] for m in models][::2]
    colourbar.set_ticks(np.log(ticks), labels=[f"{n / 1000:.0f}k" if n >= 1000 else str(n) for n in ticks])
    colourbar.ax.tick_params(labelsize=7)
    colourbar.set_label("$N$", fontsize=8)
    curves_ax.set(xscale="log", yscale="log", xlabel=r"training compute $C \approx 6ND$ (FLOP)", ylabel="validation loss (nats/char)")
    profile_ax.set(xscale="log", xlabel="non-embedding parameters $N$", ylabel="loss at the end of the run")
    for ax in (curves_ax, profile_ax):
        ax.yaxis.set_minor_formatter(plt.FormatStrFormatter("%.1f"))
    curves_ax.legend(frameon=False, fontsize=7, loc="upper right")
    # Headroom above the highest run, for the legend to sit clear of the profiles' lines.
    low, high = profile_ax.get_ylim()
    profile_ax.set_ylim(low, high + 0.35 * (high - low))
    profile_ax.legend(frameon=False, fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


@figure("attention_map.pdf")
def attention_map(scaling: Result):
    plt = pyplot()
    from matplotlib.colors import PowerNorm

    weights = scaling.arrays["attention"]  # (heads, query, key), each row a distribution over keys <= query
    text = scaling.metrics["attention_text"]
    heads, length = len(weights), len(text)
    # The head shown is chosen by a rule, not by eye: the one furthest from uniform attention (lowest mean entropy).
    entropy = -(weights * np.log(np.where(weights > 0, weights, 1.0))).sum(axis=2).mean(axis=1)
    shown = int(np.argmin(entropy))
    # How far back each head looks: the attention-weighted distance query - key, averaged over queries.
    offsets = np.arange(length)[:, None] - np.arange(length)[None, :]
    mean_distance = (weights * np.clip(offsets, 0, None)).sum(axis=2).mean(axis=1)

    # Laid out in inches so that each character's row and column is at least as tall as its 7 pt label.
    side, left, bottom, top = 4.0, 0.4, 0.42, 0.3
    height = bottom + side + top
    fig = plt.figure(figsize=(TEXT_WIDTH_IN, height))
    ax = fig.add_axes((left / TEXT_WIDTH_IN, bottom / height, side / TEXT_WIDTH_IN, side / height))
    colour_ax = fig.add_axes(((left + side + 0.08) / TEXT_WIDTH_IN, bottom / height, 0.1 / TEXT_WIDTH_IN, side / height))
    bars_left = left + side + 1.12
    bars_ax = fig.add_axes((bars_left / TEXT_WIDTH_IN, (bottom + 0.5) / height,
                            (TEXT_WIDTH_IN - bars_left - 0.15) / TEXT_WIDTH_IN, (side - 0.5) / height))

    # Square-root colour scale: most weights are small, and a linear scale would leave them invisible.
    image = ax.imshow(weights[shown], cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1), interpolation="nearest")
    _label_characters(ax, text)
    ax.tick_params(length=0, pad=1.5)
    ax.set(xlabel="key (attended character)", ylabel="query (attending character)")
    ax.set_title(f"head {shown + 1} of {heads}: the least uniform (lowest mean entropy)")
    colour_bar = fig.colorbar(image, cax=colour_ax, ticks=[0, 0.05, 0.2, 0.5, 1], format="{x:g}")
    colour_bar.ax.tick_params(labelsize=7)
    colour_bar.set_label("attention weight", fontsize=8)

    numbers = np.arange(1, heads + 1)
    colours = ["tab:blue" if head == shown else "0.6" for head in range(heads)]
    bars_ax.barh(numbers, mean_distance, color=colours, height=0.6)
    for number, distance in zip(numbers, mean_distance):
        bars_ax.annotate(f"{distance:.1f}", (distance, number), xytext=(2, 0), textcoords="offset points",
                         va="center", fontsize=7)
    bars_ax.set_yticks(numbers, [str(n) for n in numbers], fontsize=8)
    bars_ax.invert_yaxis()
    bars_ax.set_xlim(0, mean_distance.max() * 1.3)
    bars_ax.set(ylabel="head")
    bars_ax.set_xlabel("mean distance\n(characters)", fontsize=8)
    bars_ax.set_title("all heads", fontsize=9)
    bars_ax.spines[["top", "right"]].set_visible(False)
    return fig


def _label_characters(ax, text: str) -> None:
    """Label each row and column of an attention map with its character, a space shown as an underscore."""
    positions = range(len(text))
    labels = ["_" if ch == " " else ch.replace("$", r"\$") for ch in text]  # '$' would start mathtext
    ax.set_xticks(positions, labels, fontsize=7)
    ax.set_yticks(positions, labels, fontsize=7)
    for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        if label.get_text() == "_":  # cmr10 has a dot accent where ASCII has '_'
            label.set_fontfamily("DejaVu Serif")
    for label in ax.get_yticklabels():
        if label.get_text() == "_":  # raised to the middle of its row; lower it reads as a bar over the next character
            label.set_verticalalignment("bottom")


@figure("diffusion_reverse.pdf")
def diffusion_reverse(diffusion: Result):
    plt = pyplot()
    snapshots, steps = diffusion.arrays["snapshots"], diffusion.metrics["snapshot_steps"]
    fig, axes = plt.subplots(1, len(steps), figsize=(TEXT_WIDTH_IN, TEXT_WIDTH_IN / len(steps) + 0.3), squeeze=False)
    for ax, points, t in zip(axes[0], snapshots, steps):
        _ring_axes(ax, points, f"$t={t}$")
        ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _image_grid(images: np.ndarray, columns: int, width: float):
    rows = int(np.ceil(len(images) / columns))
    padded = np.ones((rows * columns, *images.shape[1:]))
    padded[: len(images)] = images
    tiles = np.pad(padded, ((0, 0), (1, 1), (1, 1)), constant_values=1.0)
    sheet = tiles.reshape(rows, columns, *tiles.shape[1:]).transpose(0, 2, 1, 3).reshape(rows * tiles.shape[1], columns * tiles.shape[2])
    return _image_from_array(sheet, width)


def _image_from_array(sheet: np.ndarray, width: float):
    plt = pyplot()
    height = width * sheet.shape[0] / sheet.shape[1]
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(sheet, cmap="gray_r" if sheet.mean() < 0.5 else "gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    return fig
