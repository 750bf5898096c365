"""results.lock.json: record, compare, and survive a corrupted or hand-edited lock; pinned CPU numerics."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from genreport import experiments
from genreport.build import lock

INPUTS = {"sources": {"experiments/gan.py": "abc"}, "profile": "fast", "seed": 0, "torch": "2.13.0+cpu"}


def write_results(directory: Path, modes: int = 8, hq: float = 0.91, seconds: float = 12.5, pixel: float = 0.5) -> None:
    metrics = {"ring": {"modes_captured": modes, "modes_total": 8, "high_quality_fraction": hq},
               "seconds": seconds, "device_name": "some cpu", "versions": {"python": "3.11.7"}}
    (directory / "gan.json").write_text(json.dumps(metrics))
    buffer = io.BytesIO()
    np.savez(buffer, samples=np.full((2, 2), pixel, dtype=np.float32))
    (directory / "gan.npz").write_bytes(buffer.getvalue())


def records(directory: Path, inputs: dict = INPUTS) -> dict:
    return {"gan": lock.record_of("gan", directory, inputs)}


def test_identical_results_are_reported_identical_despite_other_wall_times(tmp_path: Path) -> None:
    write_results(tmp_path)
    lock_file = tmp_path / "results.lock.json"
    lock.write(lock_file, "fast", records(tmp_path))
    write_results(tmp_path, seconds=99.0)  # another machine, another duration, same numbers
    verdict = lock.compare(lock_file, "fast", records(tmp_path))
    assert verdict == ["results: identical to results.lock.json (fast profile, 1 experiments)"]


def test_a_changed_headline_number_is_named_with_its_change(tmp_path: Path) -> None:
    write_results(tmp_path)
    lock_file = tmp_path / "results.lock.json"
    lock.write(lock_file, "fast", records(tmp_path))
    write_results(tmp_path, modes=6, hq=0.853)
    changed_inputs = {**INPUTS, "sources": {"experiments/gan.py": "def"}}
    verdict = "\n".join(lock.compare(lock_file, "fast", records(tmp_path, changed_inputs)))
    assert "differ from results.lock.json" in verdict
    assert "ring.modes_captured 8 -> 6 (-2, -25.00%)" in verdict
    assert "ring.high_quality_fraction 0.91 -> 0.853" in verdict
    assert "source experiments/gan.py" in verdict


def test_other_numerics_are_named_by_the_setting_that_changed(tmp_path: Path) -> None:
    write_results(tmp_path)
    lock_file = tmp_path / "results.lock.json"
    pinned = {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    lock.write(lock_file, "fast", records(tmp_path, {**INPUTS, "numerics": pinned}))
    write_results(tmp_path, hq=0.92)
    verdict = "\n".join(lock.compare(lock_file, "fast", records(tmp_path, {**INPUTS, "numerics": {**pinned, "MKL_CBWR": "COMPATIBLE"}})))
    assert "made differently: numerics MKL_CBWR 'AVX2' -> 'COMPATIBLE'" in verdict and "ATEN" not in verdict
    verdict = "\n".join(lock.compare(lock_file, "fast", records(tmp_path, {**INPUTS, "numerics": {}})))  # a machine without AVX2
    assert "numerics ATEN_CPU_CAPABILITY 'avx2' -> unset, numerics MKL_CBWR 'AVX2' -> unset" in verdict


def test_different_arrays_with_equal_headlines_are_not_called_identical(tmp_path: Path) -> None:
    write_results(tmp_path)
    lock_file = tmp_path / "results.lock.json"
    lock.write(lock_file, "fast", records(tmp_path))
    write_results(tmp_path, pixel=0.5000001)
    verdict = lock.compare(lock_file, "fast", records(tmp_path))
    assert verdict[0].startswith("results: differ") and "other digits" in verdict[1]


def test_record_keeps_other_profiles(tmp_path: Path) -> None:
    write_results(tmp_path)
    lock_file = tmp_path / "results.lock.json"
    lock.write(lock_file, "default", records(tmp_path))
    lock.write(lock_file, "fast", records(tmp_path))
    assert set(json.loads(lock_file.read_text())["profiles"]) == {"default", "fast"}


@pytest.mark.parametrize(("content", "expected"), [
    (None, "does not exist"),
    ('{"format": 1, "profiles": {\n  "fast": {\n  oops\n}}}', "results.lock.json:3: not valid JSON"),
    ('[1, 2, 3]', 'expected an object with a "profiles" table'),
    ('{"format": 7, "profiles": {}}', "format 7"),
    ('{"format": 1, "profiles": {"default": {}}}', "no record for the fast profile"),
])
def test_a_broken_lock_is_a_warning_naming_the_file(tmp_path: Path, content: str | None, expected: str) -> None:
    write_results(tmp_path)
    lock_file = tmp_path / "results.lock.json"
    if content is not None:
        lock_file.write_text(content)
    verdict = lock.compare(lock_file, "fast", records(tmp_path))
    assert len(verdict) == 1 and verdict[0].startswith("results: not compared:") and expected in verdict[0]


def test_a_missing_or_mistyped_entry_is_named_with_its_line(tmp_path: Path) -> None:
    write_results(tmp_path)
    lock_file = tmp_path / "results.lock.json"
    lock_file.write_text('{"format": 1, "profiles": {"fast": {\n"gan": "not a record"\n}}}')
    verdict = "\n".join(lock.compare(lock_file, "fast", records(tmp_path)))
    assert "results.lock.json:2: entry malformed" in verdict
    lock_file.write_text('{"format": 1, "profiles": {"fast": {}}}')
    assert "gan: not in results.lock.json" in "\n".join(lock.compare(lock_file, "fast", records(tmp_path)))


def test_cpu_workers_are_pinned_to_avx2_kernels_on_x86_with_avx2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(experiments.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(experiments, "_has_avx2", lambda: True)
    pinned = experiments.numerics("cpu")
    assert {pinned["MKL_CBWR"], pinned["ATEN_CPU_CAPABILITY"], pinned["ONEDNN_MAX_CPU_ISA"], pinned["OPENBLAS_CORETYPE"]} == {"AVX2", "avx2", "Haswell"}
    assert "X86_V4" in pinned["NPY_DISABLE_CPU_FEATURES"]
    portable = experiments.numerics("cpu", "portable")
    # MKL's vendor-independent branch, and the matrix products by OpenBLAS on one thread (genreport/experiments/blas.py)
    added = {"GENREPORT_MATMUL": "openblas", "OPENBLAS_NUM_THREADS": "1"}
    assert portable["MKL_CBWR"] == "COMPATIBLE" and {k: v for k, v in portable.items() if k != "MKL_CBWR"} == {
        **{k: v for k, v in pinned.items() if k != "MKL_CBWR"}, **added}
    assert experiments.numerics("cuda") == {} and experiments.numerics("cuda", "portable") == {}
    monkeypatch.setattr(experiments, "_has_avx2", lambda: False)
    assert experiments.numerics("cpu") == {}
    monkeypatch.setattr(experiments, "_has_avx2", lambda: True)
    monkeypatch.setattr(experiments.platform, "machine", lambda: "aarch64")
    assert experiments.numerics("cpu") == {}


def test_the_numerics_setting_of_report_toml_reaches_the_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from genreport.build.config import load
    from genreport.paths import ROOT

    monkeypatch.setattr(experiments.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(experiments, "_has_avx2", lambda: True)
    config = load(ROOT / "report.toml")
    fast = experiments.key_inputs("diffusion", dataclasses.replace(config, numerics="fast"), "fast", "cpu")
    portable = experiments.key_inputs("diffusion", dataclasses.replace(config, numerics="portable"), "fast", "cpu")
    assert fast["numerics"]["MKL_CBWR"] == "AVX2" and portable["numerics"]["MKL_CBWR"] == "COMPATIBLE"
    assert experiments.cache_key(fast) != experiments.cache_key(portable)


def test_a_lock_from_another_vendors_processor_is_named_with_the_remedy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_results(tmp_path)
    lock_file = tmp_path / "results.lock.json"
    inputs = {**INPUTS, "numerics": {"MKL_CBWR": "AVX2"}}
    monkeypatch.setattr(lock, "processor", lambda: {"vendor": "GenuineIntel", "model": "Intel Xeon"})
    lock.write(lock_file, "fast", records(tmp_path, inputs))
    write_results(tmp_path, hq=0.92)
    monkeypatch.setattr(lock, "processor", lambda: {"vendor": "AuthenticAMD", "model": "AMD EPYC"})
    verdict = "\n".join(lock.compare(lock_file, "fast", records(tmp_path, inputs)))
    assert "recorded on Intel Xeon (GenuineIntel), rebuilt on AMD EPYC (AuthenticAMD)" in verdict
    assert 'numerics = "portable"' in verdict
    monkeypatch.setattr(lock, "processor", lambda: {"vendor": "GenuineIntel", "model": "Intel Core"})
    assert "recorded on" not in "\n".join(lock.compare(lock_file, "fast", records(tmp_path, inputs)))  # same vendor
    monkeypatch.setattr(lock, "processor", lambda: {"vendor": "", "model": "arm64"})  # no /proc/cpuinfo: vendor unknown
    assert "recorded on" not in "\n".join(lock.compare(lock_file, "fast", records(tmp_path, inputs)))
    document = json.loads(lock_file.read_text())
    document["profiles"]["fast"]["gan"]["processor"] = {"vendor": ["edited"]}  # a hand-edited lock
    lock_file.write_text(json.dumps(document))
    monkeypatch.setattr(lock, "processor", lambda: {"vendor": "AuthenticAMD", "model": "AMD EPYC"})
    assert "recorded on" not in "\n".join(lock.compare(lock_file, "fast", records(tmp_path, inputs)))
