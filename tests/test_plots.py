"""Figures drawn from synthetic results: what they show, and that it stays readable at print size."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from experiments import plots
from genreport.plotkit import TEXT_WIDTH_IN, Result

ATTENTION_TEXT = "To be, or not to be, that is the question"  # the line scaling.py feeds the model


def causal_uniform(heads: int, length: int) -> np.ndarray:
    """Attention that spreads evenly over every key a query may see."""
    allowed = np.tril(np.ones((length, length)))
    return np.repeat((allowed / allowed.sum(axis=1, keepdims=True))[None], heads, axis=0)


@pytest.fixture(autouse=True)
def close_figures():
    """pyplot keeps every figure it made open until closed."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def attention_figure():
    weights = causal_uniform(heads=4, length=len(ATTENTION_TEXT))
    # Head 3 looks only at the previous character: the one head far from uniform, and the only one with a short reach.
    weights[2] = np.eye(len(ATTENTION_TEXT), k=-1)
    weights[2, 0, 0] = 1.0
    return plots.attention_map(Result({"attention_text": ATTENTION_TEXT}, {"attention": weights}))


def test_attention_map_shows_the_head_the_rule_picks(attention_figure) -> None:
    heatmap, _, bars = attention_figure.axes
    assert heatmap.get_title().startswith("head 3 of 4")
    previous_character = np.asarray(heatmap.get_images()[0].get_array()).diagonal(-1)
    assert np.all(previous_character == 1.0)
    # Every head's mean distance is drawn; the picked head's bar is the shortest here and stands out in colour.
    widths = [bar.get_width() for bar in bars.patches]
    assert len(widths) == 4 and int(np.argmin(widths)) == 2
    colours = {tuple(bar.get_facecolor()) for i, bar in enumerate(bars.patches) if i != 2}
    assert len(colours) == 1 and tuple(bars.patches[2].get_facecolor()) not in colours


def test_attention_map_labels_every_character_readably_at_print_size(attention_figure) -> None:
    heatmap = attention_figure.axes[0]
    expected = ["_" if ch == " " else ch for ch in ATTENTION_TEXT]
    for labels in (heatmap.get_xticklabels(), heatmap.get_yticklabels()):
        assert [label.get_text() for label in labels] == expected
        assert min(label.get_fontsize() for label in labels) >= 7
    # The figure is included at natural size, so its inches are print inches: one row must hold a 7 pt label.
    width_in, height_in = attention_figure.get_size_inches()
    assert width_in <= TEXT_WIDTH_IN + 1e-9
    box = heatmap.get_position()
    assert box.width * width_in * 72 / len(ATTENTION_TEXT) >= 7
    assert box.height * height_in * 72 / len(ATTENTION_TEXT) >= 7


def test_scaling_legend_sits_beside_the_data_not_on_it() -> None:
    params = np.geomspace(3e3, 5e5, 8)
    losses = 3.7 * params**-0.042
    metrics = {"models": [{"non_embedding_params": int(n), "val_loss": float(loss)} for n, loss in zip(params, losses)],
               "fit": {"E": 0.0, "A": 3.7, "alpha": 0.042, "r2": 0.98, "floor_identified": False,
                       "covariance": (np.eye(3) * 1e-6).tolist()},
               "ngram_val_loss": {"2": 2.49, "3": 2.05}}
    figure = plots.scaling_loss_vs_params(Result(metrics, {}))
    figure.canvas.draw()
    axes = figure.axes[0]
    assert axes.get_legend().get_window_extent().x0 >= axes.get_window_extent().x1
    assert figure.get_size_inches()[0] <= TEXT_WIDTH_IN


def test_gan_samples_are_all_shown_unselected_by_asked_digit_with_the_classifier_label() -> None:
    rng = np.random.default_rng(0)
    asked = np.arange(30) % 10
    samples = rng.uniform(size=(30, 28, 28)).astype(np.float32)
    labels = asked.copy()
    labels[[3, 17]] = [8, 2]  # two samples the classifier reads as another digit
    confidence = rng.uniform(0.1, 0.9, size=30).astype(np.float32)
    confidence[20:] = 0.99  # the most confident samples come last: a picker by confidence would show those
    figure = plots.gan_mnist_samples(Result({}, {"samples": samples, "sample_asked": asked, "sample_labels": labels,
                                                  "sample_confidence": confidence}))
    panels = figure.axes
    assert len(panels) == 30
    for index, panel in enumerate(panels):
        assert np.array_equal(np.asarray(panel.get_images()[0].get_array()), samples[index])
        assert panel.xaxis.label.get_text() == f"{labels[index]} ({100 * confidence[index]:.0f}%)"
        assert panel.xaxis.label.get_fontsize() >= 7
        misread = to_hex(panel.xaxis.label.get_color()) != "#000000"
        assert misread == (index in (3, 17))
    assert [panel.get_title() for panel in panels[:10]] == [f"asked: {digit}" for digit in range(10)]
    assert all(panel.get_title() == "" for panel in panels[10:])
    assert figure.get_size_inches()[0] <= TEXT_WIDTH_IN


def test_diffusion_panels_keep_tick_labels_readable() -> None:
    steps = [100, 50, 0]
    snapshots = np.random.default_rng(0).normal(size=(len(steps), 200, 2)).astype(np.float32)
    figure = plots.diffusion_reverse(Result({"snapshot_steps": steps}, {"snapshots": snapshots}))
    for panel in figure.axes:
        assert min(label.get_fontsize() for label in [*panel.get_xticklabels(), *panel.get_yticklabels()]) >= 7
