"""results.lock.json: the author's experiment results, committed beside the sources.

`build.py --record` writes it from build/results; every other build compares build/results with it and
says in its summary whether the rebuild reproduced the author's numbers, and if not, which headline
numbers moved and by how much. The lock is a comparison, never a gate: a missing, corrupted or
hand-edited lock gives a warning and the build goes on.

Digests cover what an experiment computed, not how long it took or on which machine it ran: wall-clock
times, the processor's name and the Python version are left out.
"""

from __future__ import annotations

import functools
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreport import paths
from genreport.build import cache
from genreport.experiments import discover, processor  # processor reads /proc/cpuinfo with the numerics' own check

FORMAT = 1
# Fields that say how a result was made, not what it is; differences in them are not differences in results.
CIRCUMSTANTIAL_FIELDS = {"seconds", "device_name", "versions"}
def _without_circumstances(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_circumstances(v) for k, v in value.items() if k not in CIRCUMSTANTIAL_FIELDS}
    if isinstance(value, list):
        return [_without_circumstances(v) for v in value]
    return value


def metrics_digest(metrics: dict[str, Any]) -> str:
    canonical = json.dumps(_without_circumstances(metrics), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def arrays_digest(npz_file: Path) -> str:
    """Digest of the arrays' names, dtypes, shapes and bytes, read without numpy (the zip holds .npy files)."""
    info = npz_file.stat()
    return _arrays_digest(str(npz_file), info.st_size, info.st_mtime_ns, info.st_ino)


@functools.lru_cache(maxsize=64)  # asked by the lock, the manifest and the figure table in one build
def _arrays_digest(npz_file: str, size: int, mtime_ns: int, inode: int) -> str:
    with zipfile.ZipFile(npz_file) as archive:
        return cache.digest(part for name in sorted(archive.namelist()) for part in (name, archive.read(name)))


def headline(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers a reader of the report sees first: the experiment module's HEADLINES (dotted paths into
    its metrics, -1 the last item of a list)."""
    experiment = discover().get(name)
    numbers = {}
    for dotted in experiment.headlines if experiment else ():
        value: Any = metrics
        try:
            for part in dotted.split("."):
                value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, ValueError, TypeError):
            continue
        numbers[dotted] = value
    return numbers


def record_of(name: str, results_dir: Path, key_inputs: dict[str, Any]) -> dict[str, Any]:
    metrics = json.loads((results_dir / f"{name}.json").read_text())
    return {
        "key_inputs": key_inputs,
        "metrics_digest": metrics_digest(metrics),
        "arrays_digest": arrays_digest(results_dir / f"{name}.npz"),
        "headline": headline(name, metrics),
        "processor": processor(),
    }


def write(lock_file: Path, profile: str, records: dict[str, dict[str, Any]]) -> None:
    """Record this profile's results (other profiles' records are kept), atomically."""
    existing = read(lock_file)
    profiles = existing.profiles if existing.problem is None else {}
    profiles[profile] = records
    document = {"format": FORMAT, "profiles": profiles}
    cache.write_atomic(lock_file, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode())


@dataclass(frozen=True)
class Lock:
    profiles: dict[str, dict[str, Any]]
    problem: str | None  # why the file could not be used; None when it could


def _shown(lock_file: Path) -> str:
    return paths.shown(lock_file)


def read(lock_file: Path) -> Lock:
    where = _shown(lock_file)
    try:
        text = lock_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Lock({}, f"{where} does not exist (write it with `python build.py --record`)")
    except (OSError, UnicodeDecodeError) as error:
        return Lock({}, f"{where} cannot be read: {error}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        return Lock({}, f"{where}:{error.lineno}: not valid JSON ({error.msg})")
    if not isinstance(document, dict) or not isinstance(document.get("profiles"), dict):
        return Lock({}, f"{where}: expected an object with a \"profiles\" table (format {FORMAT})")
    if document.get("format") != FORMAT:
        return Lock({}, f"{where}: format {document.get('format')!r}, this build reads format {FORMAT}")
    return Lock(document["profiles"], None)


def _line_of(lock_file: Path, needle: str) -> str:
    """`file:line` of the first line containing needle, for warnings about one entry of a hand-edited lock."""
    where = _shown(lock_file)
    try:
        for number, line in enumerate(lock_file.read_text(encoding="utf-8").splitlines(), start=1):
            if needle in line:
                return f"{where}:{number}"
    except OSError:
        pass
    return str(where)


def _differences(locked: dict[str, Any], current: dict[str, Any]) -> list[str]:
    lines = []
    for path, now in current["headline"].items():
        then = locked.get("headline", {}).get(path)
        if then == now:
            continue
        if isinstance(then, (int, float)) and isinstance(now, (int, float)) and not isinstance(then, bool):
            change = now - then
            relative = f", {100 * change / then:+.2f}%" if then else ""
            lines.append(f"{path} {then} -> {now} ({change:+.4g}{relative})")
        else:
            lines.append(f"{path} {then!r} -> {now!r}")
    if not lines:
        lines.append("headline numbers equal; other digits of the results differ")
    inputs_then, inputs_now = locked.get("key_inputs", {}), current["key_inputs"]
    if isinstance(inputs_then, dict):
        changed = sorted(k for k in set(inputs_then) | set(inputs_now) if inputs_then.get(k) != inputs_now.get(k))
        if "sources" in changed:
            then_sources, now_sources = inputs_then.get("sources") or {}, inputs_now["sources"]
            files = sorted(f for f in set(then_sources) | set(now_sources) if then_sources.get(f) != now_sources.get(f))
            changed = [k for k in changed if k != "sources"] + [f"source {f}" for f in files]
        if changed:
            lines.append("made differently: " + ", ".join(
                entry for k in changed for entry in ([k] if k.startswith("source ") else _changes(k, inputs_then.get(k), inputs_now.get(k)))))
    return lines


def _shown_value(table: dict[str, Any], entry: str) -> str:
    return repr(table[entry]) if entry in table else "unset"


def _changes(key: str, then: object, now: object) -> list[str]:
    """`key then -> now`; for a table (numerics, overrides) only its entries that changed."""
    if isinstance(then, dict) and isinstance(now, dict):
        return [f"{key} {entry} {_shown_value(then, entry)} -> {_shown_value(now, entry)}"
                for entry in sorted(set(then) | set(now)) if then.get(entry) != now.get(entry)]
    return [f"{key} {then!r} -> {now!r}"]


def compare(lock_file: Path, profile: str, current: dict[str, dict[str, Any]]) -> list[str]:
    """Lines for the build summary: the first says identical or not; the rest say what differs."""
    lock = read(lock_file)
    if lock.problem:
        return [f"results: not compared: {lock.problem}"]
    records = lock.profiles.get(profile)
    if not isinstance(records, dict):
        return [f"results: not compared: {lock_file.name} has no record for the {profile} profile"]
    report = []
    for name, now in current.items():
        then = records.get(name)
        if then is None:
            report.append(f"  {name}: not in {lock_file.name}")
            continue
        if not isinstance(then, dict) or not isinstance(then.get("headline"), dict):
            where = _line_of(lock_file, json.dumps(name))
            report.append(f"  {name}: {where}: entry malformed (expected metrics_digest, arrays_digest, headline)")
            continue
        if then.get("metrics_digest") == now["metrics_digest"] and then.get("arrays_digest") == now["arrays_digest"]:
            continue
        report.extend(f"  {name}: {line}" for line in _differences(then, now))
    if not report:
        return [f"results: identical to {lock_file.name} ({profile} profile, {len(current)} experiments)"]
    return [f"results: differ from {lock_file.name} ({profile} profile):", *report, *_other_processor(records, current)]


def _other_processor(records: dict[str, Any], current: dict[str, dict[str, Any]]) -> list[str]:
    """A line naming the processor the lock was recorded on when it is another vendor's: with the "fast"
    numerics MKL computes differently on Intel and AMD processors, and "portable" is the remedy."""
    then = next((r.get("processor") for r in records.values() if isinstance(r, dict) and isinstance(r.get("processor"), dict)), None)
    now = next(iter(current.values()), {}).get("processor")
    vendors = [p.get("vendor") if isinstance(p, dict) else None for p in (then, now)]
    if not all(isinstance(vendor, str) and vendor for vendor in vendors) or vendors[0] == vendors[1]:
        return []
    line = f"  recorded on {then.get('model')} ({vendors[0]}), rebuilt on {now.get('model')} ({vendors[1]})"
    if any(r["key_inputs"].get("numerics", {}).get("MKL_CBWR") == "AVX2" for r in current.values()):
        line += (': with numerics = "fast" MKL computes differently on the two vendors\' processors; for the same bits on both,'
                 ' the author sets numerics = "portable" in report.toml and records the lock again (docs/numerics.md)')
    return [line]
