"""report.toml: the title block the student fills in, the assignment's exercises, and the experiment profiles.

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

from genreport.errors import BuildError
from genreport.latex.engines import check_characters

PROFILES = ("default", "fast")
# The tables report.toml may hold and the keys each knows; anything else is a typo, reported at its line.
TABLES = {"report": None, "assignment": {"exercises", "min_references", "pages"}, "build": {"seed", "numerics"}, "profile": None}
MIN_REFERENCES = 15  # the checklist's defaults when [assignment] does not say
PAGES = (10, 30)
# How the experiments' CPU kernels are pinned (genreport.experiments.numerics): "portable" (the default) gives
# the same bits on Intel and AMD machines with AVX2 as far as emulation shows, its matrix products by OpenBLAS;
# "fast" only on machines of the author's vendor, for about an eighth less run time (docs/numerics.md).
NUMERICS = ("fast", "portable")
DEFAULT_NUMERICS = "portable"


@dataclass(frozen=True)
class TitleBlock:
    experiment_number: int
    title: str
    student_name: str
    register_number: str
    course: str
    date: str


@dataclass(frozen=True)
class Exercise:
    title: str  # the heading the report gives it (the first heading of one content file)
    line: int | None  # where report.toml declares it, for errors


@dataclass(frozen=True)
class ReportConfig:
    title_block: TitleBlock
    seed: int
    profiles: dict[str, dict[str, dict[str, Any]]]  # profile -> experiment -> overrides
    source: Path
    numerics: str = DEFAULT_NUMERICS  # one of NUMERICS
    exercises: tuple[Exercise, ...] = ()
    min_references: int = MIN_REFERENCES
    pages: tuple[int, int] = PAGES  # the fewest and most pages the checklist accepts

    def overrides(self, profile: str, experiment: str) -> dict[str, Any]:
        return self.profiles.get(profile, {}).get(experiment, {})


def _line_of(text: str, key: str) -> int | None:
    match = re.search(rf"^\s*{re.escape(key)}\s*=", text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _check_keys(data: dict[str, Any], text: str, path: Path) -> None:
    for table, value in data.items():
        if table not in TABLES:
            header = re.search(rf"^\s*\[\[?{re.escape(table)}[.\]]", text, re.MULTILINE)
            raise BuildError(f"unknown table or key `{table}`; report.toml knows {', '.join(f'[{t}]' for t in TABLES)}", path=path,
                             line=text.count("\n", 0, header.start()) + 1 if header else _line_of(text, table))
        known = TABLES[table] if table != "report" else {field.name for field in fields(TitleBlock)}
        if known is None or not isinstance(value, dict):
            continue
        for key in value:
            if key not in known:
                raise BuildError(f"[{table}] has no setting `{key}`; known: {', '.join(sorted(known))}", path=path,
                                 line=_line_in_table(path, table, key))


def _exercises(section: Any, text: str, path: Path) -> tuple[Exercise, ...]:
    titles = section.get("exercises", [])
    if not isinstance(titles, list) or not all(isinstance(t, str) and t.strip() for t in titles):
        raise BuildError("`exercises` must be a list of the exercises' headings, in quotes", path=path,
                         line=_line_of(text, "exercises"))
    start = _line_of(text, "exercises") or 1
    lines = text.splitlines()
    exercises = []
    for title in titles:
        # The line that holds the title's string, searched from the `exercises =` line on.
        found = next((number for number in range(start, len(lines) + 1) if f'"{title}"' in lines[number - 1]
                      or f"'{title}'" in lines[number - 1]), None)
        exercises.append(Exercise(title.strip(), found))
    seen: dict[str, Exercise] = {}
    for exercise in exercises:
        if exercise.title.casefold() in seen:
            raise BuildError(f"the exercise {exercise.title!r} is declared twice", path=path, line=exercise.line)
        seen[exercise.title.casefold()] = exercise
    return tuple(exercises)


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

    _check_keys(data, text, path)
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
    numerics = data.get("build", {}).get("numerics", DEFAULT_NUMERICS)
    if numerics not in NUMERICS:
        raise BuildError(f"`numerics` must be one of {', '.join(map(repr, NUMERICS))}, not {numerics!r}", path=path,
                         line=_line_of(text, "numerics"), hint=f"\"{DEFAULT_NUMERICS}\" is the default; see docs/numerics.md")
    profiles = data.get("profile", {})
    unknown = set(profiles) - set(PROFILES)
    if unknown:
        raise BuildError(f"unknown profile(s) {sorted(unknown)}; the profiles are {list(PROFILES)}", path=path)
    assignment = data.get("assignment", {})
    if not isinstance(assignment, dict):
        raise BuildError("`assignment` must be a table: [assignment]", path=path, line=_line_of(text, "assignment"))
    min_references = assignment.get("min_references", MIN_REFERENCES)
    if not isinstance(min_references, int) or isinstance(min_references, bool) or min_references < 0:
        raise BuildError(f"`min_references` must be a whole number, not {min_references!r}", path=path,
                         line=_line_of(text, "min_references"))
    pages = assignment.get("pages", list(PAGES))
    if not (isinstance(pages, list) and len(pages) == 2 and all(isinstance(p, int) and not isinstance(p, bool) for p in pages)
            and 1 <= pages[0] <= pages[1]):
        raise BuildError(f"`pages` must be [fewest, most], two whole numbers, not {pages!r}", path=path, line=_line_of(text, "pages"))
    return ReportConfig(TitleBlock(**values), seed, profiles, path, numerics, _exercises(assignment, text, path), min_references,
                        (pages[0], pages[1]))


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
