"""report.toml: the title block the student fills in and the experiment profiles.

Parsed with tomllib and checked by hand against the dataclass below, so that a missing or mistyped
value is reported with its file and line instead of surfacing later as a LaTeX or Python error.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from genreport.engines import check_characters
from genreport.errors import BuildError

PROFILES = ("default", "fast")
# How the experiments' CPU kernels are pinned (genreport.experiments.numerics): "fast" gives the same bits
# on machines of the author's vendor; "portable" on Intel and AMD alike as far as emulation shows, at 1.8
# times the experiments' run time (README, Same numbers on every machine).
NUMERICS = ("fast", "portable")


@dataclass(frozen=True)
class TitleBlock:
    experiment_number: int
    title: str
    student_name: str
    register_number: str
    course: str
    date: str


@dataclass(frozen=True)
class ReportConfig:
    title_block: TitleBlock
    seed: int
    profiles: dict[str, dict[str, dict[str, Any]]]  # profile -> experiment -> overrides
    source: Path
    numerics: str = "fast"  # one of NUMERICS

    def overrides(self, profile: str, experiment: str) -> dict[str, Any]:
        return self.profiles.get(profile, {}).get(experiment, {})


def _line_of(text: str, key: str) -> int | None:
    match = re.search(rf"^\s*{re.escape(key)}\s*=", text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _value_start(text: str, key: str) -> tuple[int, int]:
    """Line and column of the first character inside the quotes of `key = "..."`, so that a character the
    report cannot set is reported where the student typed it (exact unless the value uses escapes)."""
    line = _line_of(text, key) or 1
    source_line = text.splitlines()[line - 1] if text else ""
    value = re.match(rf"""\s*{re.escape(key)}\s*=\s*(?:\"\"\"|'''|["'])""", source_line)
    return line, (value.end() + 1 if value else 1)


def load(path: Path) -> ReportConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BuildError("the configuration file is missing", path=path, hint="restore it with `git checkout report.toml`") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = re.search(r"line (\d+)", str(error))
        raise BuildError(f"not valid TOML: {error}", path=path, line=int(line.group(1)) if line else None) from None

    section = data.get("report")
    if not isinstance(section, dict):
        raise BuildError("missing the [report] table with the title block", path=path)
    values = {}
    for field in fields(TitleBlock):
        expected = int if field.type == "int" else str
        value = section.get(field.name)
        if value is None:
            raise BuildError(f"[report] has no `{field.name}`", path=path, hint=f"add a line `{field.name} = ...` under [report]")
        if not isinstance(value, expected) or isinstance(value, bool):
            raise BuildError(
                f"`{field.name}` must be {'an integer' if expected is int else 'a string in quotes'}, not {value!r}",
                path=path, line=_line_of(text, field.name))
        if expected is str and not value.strip():
            raise BuildError(f"`{field.name}` is empty", path=path, line=_line_of(text, field.name))
        if expected is str:
            check_characters(path, value, *_value_start(text, field.name))
        values[field.name] = value

    seed = data.get("build", {}).get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise BuildError(f"`seed` must be an integer, not {seed!r}", path=path, line=_line_of(text, "seed"))
    numerics = data.get("build", {}).get("numerics", "fast")
    if numerics not in NUMERICS:
        raise BuildError(f"`numerics` must be one of {', '.join(map(repr, NUMERICS))}, not {numerics!r}", path=path,
                         line=_line_of(text, "numerics"), hint="\"fast\" is the default; see README, Same numbers on every machine")
    profiles = data.get("profile", {})
    unknown = set(profiles) - set(PROFILES)
    if unknown:
        raise BuildError(f"unknown profile(s) {sorted(unknown)}; the profiles are {list(PROFILES)}", path=path)
    return ReportConfig(TitleBlock(**values), seed, profiles, path, numerics)


def _line_in_table(source: Path | None, table: str, key: str) -> int | None:
    """Line of `key = ...` inside the TOML table [table] (or of the table header), for error messages."""
    if source is None or not source.exists():
        return None
    text = source.read_text(encoding="utf-8")
    header = re.search(rf"^\s*\[{re.escape(table)}\]\s*$", text, re.MULTILINE)
    if not header:
        return None
    following = re.search(rf"^\s*(?:{re.escape(key)}\s*=|\[)", text[header.end():], re.MULTILINE)
    if following and not following.group(0).lstrip().startswith("["):
        return text.count("\n", 0, header.end() + following.start()) + 1
    return text.count("\n", 0, header.start()) + 1


def apply_overrides(config: Any, overrides: dict[str, Any], where: str, source: Path | None = None) -> Any:
    """Return `config` (a frozen dataclass) with TOML overrides applied, checking names and types.

    `where` names the TOML table the overrides come from, `source` the file, for the error messages.
    """
    known = {f.name: f for f in fields(config)}
    changes = {}

    def error(name: str, message: str) -> BuildError:
        return BuildError(f"[{where}] {message}", path=source, line=_line_in_table(source, where, name))

    for name, value in overrides.items():
        if name not in known:
            raise error(name, f"has no setting `{name}`; known settings: {', '.join(sorted(known))}")
        current = getattr(config, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise error(name, f"`{name}` must be a table")
            changes[name] = apply_overrides(current, value, f"{where}.{name}", source)
            continue
        if isinstance(current, tuple):
            value = tuple(value) if isinstance(value, list) else value
        wanted = float if isinstance(current, float) else type(current)
        if wanted is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, wanted) or isinstance(value, bool) != isinstance(current, bool):
            raise error(name, f"`{name}` must be of type {wanted.__name__}, not {value!r}")
        changes[name] = value
    return dataclasses.replace(config, **changes)
