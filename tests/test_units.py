"""Fast unit tests for each stage's own logic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.data import Digits, deslant, ring_centers, ring_metrics
from experiments.dcgan import frechet_distance
from experiments.diffusion import cosine_schedule
from experiments.gan import Config as RingConfig
from experiments.scaling import Config as ScalingConfig
from experiments.scaling import fit_power_law, isoflop_parts, ngram_loss, non_embedding_params, profile_minimum, training_windows
from experiments.vae import knn_accuracy, pca_projection, pixel_knn_accuracy
from genreport.build import cache
from genreport.build.config import apply_overrides, load
from genreport.build.figures import registry
from genreport.errors import BuildError
from genreport.experiments import project_sources
from genreport.experiments.common import r1_penalty
from genreport.grading.check import pdf_text
from genreport.latex.content import check_characters, check_references, read_text

ROOT = Path(__file__).resolve().parent.parent


# --- config ---------------------------------------------------------------------------------

def test_config_loads_title_block() -> None:
    config = load(ROOT / "report.toml")
    assert config.title_block.register_number == "212223050033"
    assert config.title_block.experiment_number == 1


def test_config_wrong_type_names_file_and_line(tmp_path: Path) -> None:
    text = (ROOT / "report.toml").read_text().replace("experiment_number = 1", 'experiment_number = "one"')
    (tmp_path / "report.toml").write_text(text)
    with pytest.raises(BuildError) as error:
        load(tmp_path / "report.toml")
    assert error.value.line == text.splitlines().index('experiment_number = "one"') + 1


def test_config_missing_value(tmp_path: Path) -> None:
    (tmp_path / "report.toml").write_text((ROOT / "report.toml").read_text().replace('student_name = "Noorul aslina M"\n', ""))
    with pytest.raises(BuildError, match="student_name"):
        load(tmp_path / "report.toml")


def test_numerics_setting_is_read_and_checked(tmp_path: Path) -> None:
    text = (ROOT / "report.toml").read_text().replace('numerics = "portable"', 'numerics = "fast"')
    (tmp_path / "report.toml").write_text(text)
    assert load(tmp_path / "report.toml").numerics == "fast"
    (tmp_path / "report.toml").write_text(text.replace('numerics = "fast"', ''))
    assert load(tmp_path / "report.toml").numerics == "portable"  # the default
    (tmp_path / "report.toml").write_text(text.replace('numerics = "fast"', 'numerics = "exact"'))
    with pytest.raises(BuildError, match="numerics") as error:
        load(tmp_path / "report.toml")
    assert error.value.line == text.splitlines().index('numerics = "fast"') + 1


def test_overrides_are_type_checked() -> None:
    assert apply_overrides(RingConfig(), {"steps": 10}, "x").steps == 10
    with pytest.raises(BuildError, match="steps"):
        apply_overrides(RingConfig(), {"steps": "many"}, "x")
    with pytest.raises(BuildError, match="no setting"):
        apply_overrides(RingConfig(), {"stpes": 10}, "x")


# --- cache ------------------------------------------------------------------------------------

def test_store_round_trip_and_corruption(tmp_path: Path) -> None:
    store = cache.Store(tmp_path)
    entry = store.put("k1", lambda d: (d / "a.json").write_text("{}"))
    assert store.get("k1") == entry
    (entry / "a.json").write_text('{"tampered": 1}')
    assert store.get("k1") is None  # detected and removed, never used
    assert not entry.exists()


def test_half_written_entry_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "k2").mkdir()
    (tmp_path / "k2" / "a.json").write_text("{}")  # no manifest: a build killed mid-write
    assert cache.Store(tmp_path).get("k2") is None


def test_digest_is_length_prefixed() -> None:
    assert cache.digest(["ab", "c"]) != cache.digest(["a", "bc"])


def test_experiment_key_covers_imported_modules() -> None:
    names = {p.name for p in project_sources("experiments.gan")}
    assert {"gan.py", "data.py", "common.py"} <= names


# --- content ----------------------------------------------------------------------------------

def test_replacement_character_is_reported_with_line(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as error:
        check_characters(tmp_path / "x.md", "fine\nhuman\ufffdlike\n")
    assert error.value.line == 2 and "U+FFFD" in error.value.message


def test_typographic_and_greek_characters_are_accepted(tmp_path: Path) -> None:
    check_characters(tmp_path / "x.md", "“quotes” – dashes — … café naïve α β ≤ ≥ × ± °")


def test_character_in_no_font_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"column 3: .*U\+1F979") as error:  # Unicode 14: newer than Symbola
        check_characters(tmp_path / "x.md", "ok\nok🥹")
    assert error.value.line == 2


def test_non_utf8_bytes_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "x.md"
    path.write_bytes(b"line one\nline \xff two\n")
    with pytest.raises(BuildError) as error:
        read_text(path)
    assert error.value.line == 2


def test_unknown_citation_and_reference(tmp_path: Path) -> None:
    path = tmp_path / "x.md"
    with pytest.raises(BuildError, match="nosuchkey"):
        check_references({path: "text [@nosuchkey]"}, {"kaplan2020"})
    with pytest.raises(BuildError, match="fig:missing"):
        check_references({path: "see @fig:missing"}, set())
    assert check_references({path: "![c](a.pdf){#fig:a} @fig:a [@kaplan2020], mail a@b.com"}, {"kaplan2020"}) == {"kaplan2020"}


def test_bibliography_has_at_least_15_entries() -> None:
    from genreport.latex.content import bibliography_keys

    assert len(bibliography_keys(ROOT / "report/references.bib")) >= 15


# --- experiments ------------------------------------------------------------------------------

def test_ring_metrics_perfect_and_collapsed() -> None:
    perfect = ring_centers().repeat(100, 1)
    assert ring_metrics(perfect)["modes_captured"] == 8
    assert ring_metrics(perfect)["high_quality_fraction"] == 1.0
    collapsed = ring_centers()[:1].repeat(800, 1)
    assert ring_metrics(collapsed)["modes_captured"] == 1
    scattered = torch.zeros(800, 2)
    assert ring_metrics(scattered)["high_quality_fraction"] == 0.0


def test_power_law_fit_recovers_parameters() -> None:
    n = np.geomspace(1e3, 1e6, 7)
    fit = fit_power_law(n, 1.5 + 20 * n ** -0.4)
    assert fit["alpha"] == pytest.approx(0.4, rel=1e-3) and fit["r2"] > 0.9999
    assert fit["floor_identified"] and fit["E"] == pytest.approx(1.5, rel=1e-3)


def test_power_law_without_a_floor_reports_a_usable_band() -> None:
    # A sweep whose curve steepens in log-log (an earlier run of ours): the best floor is E = 0.
    n = np.array([3768, 6560, 14448, 25408, 84816, 199936, 447360], dtype=float)
    fit = fit_power_law(n, np.array([2.5376, 2.487, 2.4656, 2.4226, 2.2798, 2.1816, 2.0733]))
    assert not fit["floor_identified"] and fit["E"] == 0
    covariance = np.array(fit["covariance"])
    assert covariance[0].tolist() == [0, 0, 0] and np.sqrt(covariance[2, 2]) < 0.01  # alpha is pinned down


def test_a_floor_within_two_standard_errors_of_zero_is_not_identified() -> None:
    # The fast profile's four sizes (2026-12-07): the three-parameter fit puts a floor above zero, with a
    # standard error far larger than itself.
    n = np.array([1744, 6560, 14448, 25408], dtype=float)
    fit = fit_power_law(n, np.array([3.354, 3.136, 3.043, 2.929]))
    assert not fit["floor_identified"] and fit["E"] == 0
    assert fit["free_floor"]["E"] < 2 * fit["free_floor"]["standard_error"]
    identified = fit_power_law(np.geomspace(1e3, 1e6, 7), 1.5 + 20 * np.geomspace(1e3, 1e6, 7) ** -0.4)
    assert identified["floor_identified"] and identified["free_floor"]["standard_error"] < 0.01


def test_an_isoflop_profile_locates_its_minimum_only_when_sizes_on_both_sides_did_worse() -> None:
    params = np.geomspace(3e3, 5e4, 5)
    losses = 2.0 + 0.1 * (np.log(params) - np.log(1e4)) ** 2
    minimum = profile_minimum(params, losses)
    assert minimum["bracketed"] and minimum["params"] == pytest.approx(1e4, rel=1e-6) and minimum["val_loss"] == pytest.approx(2.0)
    # Falling all the way: the best size lies beyond the largest tried, and no parabola is read into it.
    assert not any(profile_minimum(params, 3.0 - 0.1 * np.log(params)).values())
    # Only the best run and its neighbours shape the parabola: a steep far end does not drag the minimum.
    steep = losses + np.array([0, 0, 0, 0, 0.5])
    assert profile_minimum(params, steep)["params"] == pytest.approx(1e4, rel=1e-6)


def test_isoflop_runs_spend_the_centre_runs_compute_on_their_neighbours() -> None:
    from experiments.scaling import CharGPT

    config = ScalingConfig()
    assert all(CharGPT(65, size, config.context).non_embedding_params() == non_embedding_params(size) for size in config.sizes)
    runs = isoflop_parts(config)
    # up to three sizes either side; width 16 has only two below it
    assert [run.isoflop_widths for run in runs] == [(16,)] * 5 + [(24,)] * 6
    assert [run.sizes[0].width for run in runs] == [8, 12, 24, 32, 48, 8, 12, 16, 32, 48, 64]
    for run in runs:
        centre = next(size for size in config.sizes if size.width == run.isoflop_widths[0])
        compute = 6 * non_embedding_params(centre) * config.steps() * config.tokens_per_step
        run_compute = 6 * non_embedding_params(run.sizes[0]) * run.train_tokens
        # whole steps: within half a step's compute of the centre's
        assert abs(run_compute - compute) <= 3 * non_embedding_params(run.sizes[0]) * config.tokens_per_step
        assert run.train_tokens % config.tokens_per_step == 0
    # The sweep's runs are also evaluated where a shorter IsoFLOP run of their size ended, for both seeds alike.
    from experiments.scaling import parts

    sweep = [part for part in parts(config) if not part.isoflop_widths]
    assert {part.extra_eval_steps for part in sweep if part.sizes[0].width == 32} == {(252, 555)}
    assert {part.extra_eval_steps for part in sweep if part.sizes[0].width == 48} == {(113, 249)}
    assert all(part.extra_eval_steps == () for part in sweep if part.sizes[0].width in (8, 12, 16, 96))


def test_attention_weights_shown_in_the_figure_are_the_ones_the_model_uses() -> None:
    from experiments.scaling import Block

    torch.manual_seed(0)
    block, x = Block(32, 2), torch.randn(2, 10, 32)
    weights = block.attention_weights(x)
    _, _, values = block._heads(x)
    written_out = block.proj((weights @ values).transpose(1, 2).flatten(2))
    assert torch.allclose(written_out, block.attention(x), atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 2, 10)) and weights[0, 0, 0, 1:].abs().max() == 0  # causal


def test_training_flops_count_forward_and_backward_of_a_linear_layer() -> None:
    from genreport.experiments.common import TrainingFlops

    layer, flops = torch.nn.Linear(10, 20, bias=False), TrainingFlops()
    for _ in range(3):
        with flops.step():
            layer(torch.randn(4, 10, requires_grad=True)).sum().backward()
    # forward 2*B*in*out, backward twice that (input and weight gradients), for each of 3 steps
    assert flops.total == 3 * 3 * 2 * 4 * 10 * 20


def test_r1_penalty_of_a_linear_critic_is_half_gamma_times_its_squared_weight_norm() -> None:
    # A linear score w.x has gradient w at every sample: the penalty is gamma / 2 |w|^2 per member, times the
    # lazy interval, whatever the batch; members' penalties add up.
    weights = torch.tensor([[1.0, 2.0], [3.0, 0.0]])  # two members trained side by side
    real = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    scores = (real * weights[:, None]).sum(-1, keepdim=True)
    penalty = r1_penalty(scores, real, gamma=0.5, every=4, sample_dims=2)
    assert torch.isclose(penalty, torch.tensor(0.5 * 4 / 2 * (5.0 + 9.0)))
    images = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    kernel = torch.arange(4.0).view(1, 1, 2, 2)
    assert torch.isclose(r1_penalty((images * kernel).flatten(1).sum(1, keepdim=True), images, gamma=1.0),
                         torch.tensor(0.5 * 14.0))


def test_ngram_baseline_on_random_and_periodic_text() -> None:
    random_text = np.random.default_rng(0).integers(0, 5, 20_000)
    assert ngram_loss(random_text[:16_000], random_text[16_000:], 1, 5) == pytest.approx(np.log(5), abs=0.01)
    periodic = np.tile(np.arange(5), 4000)
    assert ngram_loss(periodic[:16_000], periodic[16_000:], 2, 5) < 0.01  # each letter fixes the next
    assert ngram_loss(periodic[:16_000], periodic[16_000:], 1, 5) == pytest.approx(np.log(5), abs=0.01)


def test_ngram_counted_on_windows_never_spans_two_windows() -> None:
    windows = np.tile([0, 1], (1000, 1))  # "01" again and again, each pair its own window: "1 then 0" is never seen
    alternating = np.tile([0, 1], 500)
    assert ngram_loss(windows, alternating, 2, 5) > 0.5  # half the pairs follow a "1", which no window continues
    assert ngram_loss(windows.ravel(), alternating, 2, 5) < 0.01  # as one text, both pairs are seen


def test_training_windows_are_slices_of_the_text_and_fill_the_token_budget() -> None:
    text = torch.arange(1000)
    config = ScalingConfig(context=8, batch_size=4, train_tokens=320)
    windows = training_windows(text, config)
    assert windows.shape == (10, 4, 9)  # 320 tokens / (4 x 8) per step
    assert torch.equal(windows, windows[..., :1] + torch.arange(9))  # consecutive characters
    assert int(windows.max()) < 1000


def test_cosine_schedule_follows_its_alpha_bar() -> None:
    betas = cosine_schedule(100, 0.008, 0.999)
    alpha_bar = np.cos((np.arange(101) / 100 + 0.008) / 1.008 * np.pi / 2) ** 2
    assert np.allclose(np.cumprod(1 - betas)[:-1], alpha_bar[1:-1] / alpha_bar[0])  # the last beta is clipped
    assert betas[-1] == 0.999 and np.all(np.diff(betas) > 0)


def test_baselines_of_the_latent_space() -> None:
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(np.repeat(np.arange(2), 100))
    # The classes differ by 0.3 along one pixel direction with the widest spread; a second direction carries small noise.
    pixels = np.zeros((200, 784), dtype=np.float32)
    pixels[:, 0] = labels.numpy() * 3 + rng.normal(0, 0.3, 200)
    pixels[:, 1] = rng.normal(0, 0.1, 200)
    pixels[:, 2:] = rng.normal(0, 0.01, (200, 782))
    digits = Digits(torch.from_numpy(pixels).view(-1, 1, 28, 28), labels)
    train, test = pca_projection(digits, digits, 1)
    assert train.shape == (200, 1)
    assert knn_accuracy(train, labels, test, labels, k=5) == 1.0  # the first component is the one that separates
    assert pixel_knn_accuracy(digits, digits, k=5) == 1.0
    shuffled = Digits(digits.images, labels[torch.randperm(200, generator=torch.Generator().manual_seed(0))])
    assert pixel_knn_accuracy(digits, shuffled, k=5) < 0.7


def test_frechet_distance_zero_for_same_set_and_positive_for_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + 3) == pytest.approx(36, rel=0.01)


def test_deslant_makes_a_slanted_stroke_upright_and_keeps_an_upright_one() -> None:
    def stroke(slant: float) -> torch.Tensor:
        image = torch.zeros(1, 1, 28, 28)
        for row in range(6, 22):
            image[0, 0, row, round(14 + slant * (row - 14))] = 1.0
        return image

    def column_spread(image: torch.Tensor) -> float:
        columns = torch.arange(28.0)
        centre_per_row = [(row * columns).sum() / row.sum() for row in image[0, 0, 6:22] if row.sum() > 0.1]
        return float(torch.stack(centre_per_row).std())

    slanted = stroke(-0.5)
    assert column_spread(slanted) > 2.0
    assert column_spread(deslant(slanted)) < 0.5  # what is left is the rounding of the drawn stroke
    upright_and_centred = torch.zeros(1, 1, 28, 28)
    upright_and_centred[0, 0, 6:22, 13:15] = 1.0
    assert torch.allclose(deslant(upright_and_centred), upright_and_centred, atol=1e-5)


def test_knn_accuracy() -> None:
    points = torch.tensor([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5]])
    labels = torch.tensor([0, 0, 1, 1])
    assert knn_accuracy(points, labels, torch.tensor([[0.05, 0], [5, 5.1]]), torch.tensor([0, 1]), k=1) == 1.0
    assert knn_accuracy(points, labels, torch.tensor([[0.05, 0]]), torch.tensor([1]), k=1) == 0.0


def test_pdf_text_sees_what_the_checklist_looks_for(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # DejaVu has a glyph for U+FFFD; the report's figures use Computer Modern (set by genreport.plotkit), which has none.
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.family": "DejaVu Sans", "mathtext.fontset": "dejavusans"}):
        figure = plt.figure()
        figure.text(0.1, 0.6, "EXPERIMENT 1")
        figure.text(0.1, 0.4, "See Figure ?? and a broken \ufffd character")
        figure.savefig(tmp_path / "page.pdf")
    text = pdf_text(tmp_path / "page.pdf")
    assert "EXPERIMENT 1\n" in text and "Figure ??" in text and "\ufffd" in text and "\r" not in text


# --- figures ----------------------------------------------------------------------------------

def test_each_figure_has_its_own_source_for_the_cache_key() -> None:
    figures = registry()
    assert len(figures) == 9 and {"gan_ring.pdf", "gan_mnist_samples.png", "attention_map.pdf"} <= set(figures)
    for figure in figures.values():
        assert f"def {figure.function}(" in figure.source and f"def {figure.function}(" not in figure.shared
        assert "def _ring_axes" in figure.shared and figure.source.startswith("@figure(")
    assert figures["gan_ring.pdf"].results == ("gan",) and figures["attention_map.pdf"].results == ("scaling",)
    assert figures["gan_mnist_samples.png"].results == ("dcgan",)


def test_unchanged_build_path_does_not_import_numpy_or_matplotlib() -> None:
    code = ("import sys; from genreport import cli; from genreport.build import figures; from genreport.latex import document; "
            "from genreport.grading import check; from genreport.experiments import discover; figures.registry(); discover(); "
            "print(sorted(m for m in ('numpy', 'matplotlib', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_results_json_is_deterministic_on_cpu() -> None:
    from experiments import diffusion

    config = diffusion.Config(train_steps=20, diffusion_steps=10, eval_samples=200)
    first, second = diffusion.run(config, "cpu").metrics, diffusion.run(config, "cpu").metrics
    first.pop("seconds"), second.pop("seconds")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_number_filters_never_print_negative_zero() -> None:
    from genreport.latex.content import _number, _percent

    assert (_number(-0.0, 2), _number(-0.0004, 3), _percent(-0.00001)) == ("0.00", "0.000", "0.0%")
    assert _number(-1.5, 1) == "-1.5"


def test_diagram_calls_in_either_quotes_give_a_label_and_a_caption() -> None:
    from genreport.latex.content import DIAGRAM

    text = """{{ diagram("gan", "A GAN. It's adversarial.") }} {{ diagram('vae', 'The "VAE".') }}"""
    assert [(m.group(2), m.group(4)) for m in DIAGRAM.finditer(text)] == [("gan", "A GAN. It's adversarial."), ("vae", 'The "VAE".')]


def test_the_stage_summary_reads_back_as_the_build_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    from genreport.build import summary

    printed = [("experiment gan", "reused", 0.0), ("experiments, wall clock", "", 12.3), ("figures (9)", "redrew 2", 1.3),
               ("latex", "ran", 9.5)]
    summary.print_summary(printed, None, [])
    assert summary.read_summary(capsys.readouterr().out) == [("experiment gan", "reused", 0.0), ("figures (9)", "redrew 2", 1.3),
                                                          ("latex", "ran", 9.5)]


def test_a_cited_entry_with_only_biblatex_fields_stops_the_build_at_its_line(tmp_path: Path) -> None:
    from genreport.errors import BuildError
    from genreport.latex.content import check_bibliography_fields

    bib = tmp_path / "references.bib"
    bib.write_text("@article{old2001,\n  author = {A. Author}, title = {T}, journal = {J}, year = {2001}}\n"
                   "@article{new2024,\n  author = {B. Author}, title = {T},\n  journaltitle = {J}, year = {2024}}\n")
    check_bibliography_fields(bib, {"old2001"})  # the biblatex-only entry is not cited: nothing to say
    with pytest.raises(BuildError) as raised:
        check_bibliography_fields(bib, {"old2001", "new2024"})
    assert raised.value.line == 5 and "journaltitle" in raised.value.message
