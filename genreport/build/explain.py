"""`python build.py --explain`: why each stage, figure and experiment reran, or that its key matched.

A unit's cache key is a digest of its inputs; to say *which* input changed, the inputs themselves are
kept, as a flat dict of name -> value (a file's name -> "sha256:<digest>", a setting -> its value):
- experiments: beside their cache entries, build/cache/experiments/<name>/<key>.inputs.json, plus the
  key the last build used (the inputs are computed for every experiment on every build, as its cache key
  is their digest; they are written only when an experiment reruns);
- figures and the LaTeX stage: the last build's inputs, in build/cache/explain.json.
A rerun is explained by the names whose values differ from the previous build's; a reuse by its key.
The stages call the small hooks below; cli.py prints `report()` and calls `save()` after a build.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreport import paths
from genreport.build import cache

RECORD = paths.CACHE_DIR / "explain.json"
DIGEST = "sha256:"
MATCHED = "key matched"


@dataclass(frozen=True)
class Reason:
    unit: str
    reran: bool
    why: str


_reasons: list[Reason] = []
_records: dict[str, dict[str, str]] | None = None  # unit -> inputs, as read from RECORD and updated by this build
_dirty = False


def file_input(path: Path) -> str:
    return DIGEST + cache.file_digest(path) if path.exists() else "missing"


def text_input(text: str) -> str:
    return DIGEST + cache.digest([text])


def flatten(table: dict[str, Any], prefix: str) -> dict[str, str]:
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value)
    return flat


def changes(previous: dict[str, str], current: dict[str, str]) -> list[str]:
    """What differs between two input dicts, in words: a file 'changed', a setting 'old -> new'."""
    found = []
    for name in sorted(set(previous) | set(current)):
        old, new = previous.get(name), current.get(name)
        if old == new:
            continue
        if old is None:
            found.append(f"{name} is new")
        elif new is None:
            found.append(f"{name} is gone")
        elif old.startswith(DIGEST):
            found.append(f"{name} changed")
        else:
            found.append(f"{name}: {old} -> {new}")
    # A file spelled out key by key ("report.toml build.seed"): its keys say more than "report.toml changed".
    def spelled_out(line: str) -> bool:
        return line.endswith(" changed") and any(other != line and other.startswith(line.removesuffix("changed")) for other in found)

    return [line for line in found if not spelled_out(line)]


def _load() -> dict[str, dict[str, str]]:
    global _records
    if _records is None:
        try:
            _records = json.loads(RECORD.read_text()) if RECORD.exists() else {}
        except ValueError:
            _records = {}
    return _records


def _why(previous: dict[str, str] | None, current: dict[str, str], forced: bool, missing: str) -> str:
    if forced:
        return "--force asked for it"
    if previous is None:
        return "no earlier build recorded its inputs"
    return "; ".join(changes(previous, current)) or missing


def note(unit: str, reran: bool, inputs: dict[str, str], forced: bool = False,
         missing: str = "inputs unchanged, but its previous output was missing or damaged") -> None:
    """A unit whose inputs are cheap to list: say why it reran (against the last build's inputs) and record them."""
    global _dirty
    records = _load()
    previous = records.get(unit)
    _reasons.append(Reason(unit, reran, _why(previous, inputs, forced, missing) if reran else MATCHED))
    if previous != inputs:
        records[unit] = inputs
        _dirty = True


def detail(unit: str, reran: bool, why: str) -> None:
    """A step inside a stage that explains itself (the preamble's format, a diagram, the TeX passes)."""
    _reasons.append(Reason(unit, reran, why))


def experiment_inputs(inputs: dict[str, Any], name: str, config_file: str) -> dict[str, str]:
    """An experiment's key inputs (genreport/experiments/__init__.py, key_inputs) as a flat dict, named as
    the student finds them: files by path, settings by their place in report.toml."""
    flat = {path: DIGEST + digest for path, digest in inputs["sources"].items()}
    flat |= flatten(inputs["overrides"], f"{config_file} profile.{inputs['profile']}.{name}.")
    flat[f"{config_file} build.seed"] = json.dumps(inputs["seed"])
    rest = {key: value for key, value in inputs.items() if key not in ("sources", "overrides", "seed")}
    return flat | flatten(rest, "")


def experiment(name: str, inputs: dict[str, Any], config_file: str, key: str, reran: bool, forced: bool) -> None:
    """Hook for the experiment stage, called once per experiment with its key inputs and the key it looked up."""
    global _dirty
    records = _load()
    unit = f"experiment {name}"
    last_key = records.get("experiment keys", {}).get(name)
    if not reran:
        _reasons.append(Reason(unit, False, f"{MATCHED} (cached result {key[:12]})"))
    else:
        current = experiment_inputs(inputs, name, config_file)
        store = paths.EXPERIMENT_CACHE_DIR / name
        cache.write_atomic(store / f"{key}.inputs.json", json.dumps(current, indent=1).encode())
        previous_file = store / f"{last_key}.inputs.json"
        previous = json.loads(previous_file.read_text()) if last_key and previous_file.exists() else None
        _reasons.append(Reason(unit, True, _why(previous, current, forced, "no intact cached result for these inputs")))
    if last_key != key:
        records.setdefault("experiment keys", {})[name] = key
        _dirty = True


def latex_inputs(files: dict[str, str], config_file: Path) -> dict[str, str]:
    """The LaTeX stage's input files, with report.toml also spelled out key by key."""
    inputs = dict(files)
    try:
        inputs |= flatten(tomllib.loads(config_file.read_text(encoding="utf-8")), f"{config_file.name} ")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        pass  # the config stage has already reported a broken file
    return inputs


def report() -> str:
    if not _reasons:
        return ""
    width = max(len(reason.unit) for reason in _reasons)
    lines = ["\nwhy (build.py --explain):"]
    for reason in _reasons:
        status = "reran " if reason.reran else "reused"
        lines.append(f"  {reason.unit.ljust(width)}  {status}  {reason.why}")
    return "\n".join(lines)


def save() -> None:
    global _dirty
    if _dirty and _records is not None:
        cache.write_atomic(RECORD, json.dumps(_records, indent=1, sort_keys=True).encode())
        _dirty = False
